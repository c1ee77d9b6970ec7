"""Physics augmentations of prepared batches: train-time random transforms and test-time variants.

A batch is a ``dict[str, np.ndarray]`` of per-event arrays, as
:meth:`pd4ml.adapters.common.EventArrays.read` gives it (``features``, masks, graphs,
``labels``, ``weights`` …). An :class:`Augmentation` has two methods:

* ``random(batch, generator)`` — one random transform per event, drawn from ``generator``
  (train time); returns a new dict with the same keys, shapes and dtypes;
* ``variants(batch, n)`` — ``n`` deterministic transformed copies, the first the identity
  (test-time augmentation: average the predictions over them).

The input is never modified. Arrays a transform does not change are passed through as the
same objects (no copy), so the output's untouched arrays share memory with the input's.

Each dataset declares the transforms that are exact symmetries of its prepared representation
(``Dataset.augmentation(prepared)``, ``None`` where there is none) and says why in
``Dataset.symmetries``. The transforms here are group actions: :class:`CartesianMomenta`
(HiggsML: rotations about the beam axis and y/z reflections of standardised Cartesian
momenta), :class:`PolarAngles` (the same on standardised φ and η columns) and
:class:`ColumnReflection` (the sign of coordinate columns, e.g. Δφ of jet constituents).
:class:`Compose` chains any of them. NumPy only: the data layer imports no deep-learning
framework.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Protocol, overload, runtime_checkable

import numpy as np

from pd4ml.errors import Pd4mlError

Batch = Mapping[str, np.ndarray]
Parameters = dict[str, np.ndarray]


class AugmentationError(Pd4mlError, ValueError):
    """A batch or a request an augmentation cannot serve (a missing array, too many variants)."""


@runtime_checkable
class Augmentation(Protocol):
    """What the trainer and ``predict`` use: random transforms and deterministic variants."""

    def random(self, batch: Batch, generator: np.random.Generator) -> dict[str, np.ndarray]:
        """One random physical transform per event; a new dict, the input untouched."""
        ...

    def variants(self, batch: Batch, n: int) -> list[dict[str, np.ndarray]]:
        """``n`` deterministic transformed copies of the batch, the first the identity."""
        ...


def check_count(n: object, maximum: int | None, owner: str) -> int:
    """``n`` as a whole number ≥ 1 and ≤ ``maximum`` (the number of distinct variants)."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or int(n) < 1:
        raise AugmentationError(f"{owner}.variants(n=...) needs a whole number ≥ 1, not {n!r}")
    if maximum is not None and int(n) > maximum:
        raise AugmentationError(
            f"{owner} has {maximum} distinct variants; ask for n ≤ {maximum} "
            f"(e.g. tta={maximum}), not {n}"
        )
    return int(n)


def require(batch: Batch, names: Sequence[str], owner: str) -> None:
    """Raise :class:`AugmentationError` naming the arrays of ``names`` missing from ``batch``."""
    missing = [name for name in names if name not in batch]
    if missing:
        raise AugmentationError(
            f"{owner} needs the array(s) {missing} in the batch; it has {sorted(batch)} "
            "(read the batch with those names selected)"
        )


def _events(batch: Batch, name: str) -> int:
    return int(np.shape(batch[name])[0])


class GroupAugmentation(ABC):
    """An augmentation given by per-event parameters of a group element.

    Subclasses draw random parameters (:meth:`draw`), list the deterministic elements of the
    test-time variants (:meth:`elements`, the identity first) and apply parameters to a batch
    (:meth:`apply`). ``max_variants`` is the number of distinct elements (``None``: unlimited,
    as for continuous rotations).
    """

    max_variants: int | None = None
    #: The arrays the transform reads (checked before every call).
    needs: tuple[str, ...] = ("features",)

    @property
    def owner(self) -> str:
        """The name used in error messages."""
        return type(self).__name__

    @abstractmethod
    def draw(self, n_events: int, generator: np.random.Generator) -> Parameters:
        """Random parameters, one set per event."""

    @abstractmethod
    def elements(self, n: int) -> list[Parameters]:
        """``n`` parameter sets (scalars, the same for every event), the identity first."""

    @abstractmethod
    def apply(self, batch: Batch, parameters: Parameters) -> dict[str, np.ndarray]:
        """The transformed batch (a new dict) for per-event or scalar ``parameters``."""

    def random(self, batch: Batch, generator: np.random.Generator) -> dict[str, np.ndarray]:
        """One random group element per event (train time)."""
        require(batch, self.needs, self.owner)
        return self.apply(batch, self.draw(_events(batch, self.needs[0]), generator))

    def variants(self, batch: Batch, n: int) -> list[dict[str, np.ndarray]]:
        """``n`` deterministic copies (test time), the first the unchanged batch."""
        count = check_count(n, self.max_variants, self.owner)
        require(batch, self.needs, self.owner)
        _, *others = self.elements(count)  # the first element is the identity
        return [dict(batch), *(self.apply(batch, parameters) for parameters in others)]


def _sign(generator: np.random.Generator, n_events: int) -> np.ndarray:
    """-1 or +1 with probability 1/2 each, ``(n_events,)`` float64."""
    return np.where(generator.random(n_events) < 0.5, -1.0, 1.0)


def _rotations_and_flips(n: int) -> list[Parameters]:
    """The first ``n`` of ``ceil(n / 4)`` equally spaced angles × the four (y, z) flips, the
    angle varying slowest (n = 8: the two angles 0, π of LUMIN's 8 test-time versions)."""
    n_angles = math.ceil(n / 4)
    elements = [
        {
            "angle": np.array(2 * np.pi * rotation / n_angles),
            "flip_y": np.array(flip_y),
            "flip_z": np.array(flip_z),
        }
        for rotation in range(n_angles)
        for flip_y in (1.0, -1.0)
        for flip_z in (1.0, -1.0)
    ]
    return elements[:n]


def _random_rotations_and_flips(n_events: int, generator: np.random.Generator) -> Parameters:
    """A uniform angle in [0, 2π) and independent fair y and z flips per event."""
    return {
        "angle": generator.uniform(0, 2 * np.pi, n_events),
        "flip_y": _sign(generator, n_events),
        "flip_z": _sign(generator, n_events),
    }


class CartesianMomenta(GroupAugmentation):
    """Rotations about the beam axis and reflections y → -y, z → -z of every momentum.

    Acts on standardised features ``(n_events, n_features)`` (``features = (value - mean) /
    scale``): each 3-vector ``(px, py, pz)`` (and 2-vector ``(px, py)``, such as the missing
    transverse momentum) is unscaled, rotated by the event's angle about z, reflected, and
    rescaled; every other column is a rotation and reflection invariant and is passed through.
    Entries flagged in ``missing`` ``(n_events, n_features)`` bool stay exactly 0. The output
    is float32.

    ``random`` draws a uniform angle and fair flips per event; ``variants(batch, n)`` gives the
    first ``n`` of ``ceil(n / 4)`` equally spaced angles × the four flip combinations.

    The HiggsML instance (``HiggsML.augmentation``) wraps the dataset's
    :class:`~pd4ml.datasets.higgsml.MomentumAugmentation` and also accepts its array-form calls
    ``random(features, missing, generator)`` and ``variants(features, missing, n_rotations)``.
    """

    needs = ("features", "missing")

    def __init__(
        self,
        vectors: Sequence[tuple[int, int, int | None]],
        mean: np.ndarray,
        scale: np.ndarray,
        legacy: _ArrayAugmentation | None = None,
    ) -> None:
        self.vectors = [tuple(vector) for vector in vectors]
        self.mean = np.asarray(mean, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)
        self.legacy = legacy

    def draw(self, n_events: int, generator: np.random.Generator) -> Parameters:
        return _random_rotations_and_flips(n_events, generator)

    def elements(self, n: int) -> list[Parameters]:
        return _rotations_and_flips(n)

    def transform(
        self, features: np.ndarray, missing: np.ndarray, parameters: Parameters
    ) -> np.ndarray:
        """The transformed features ``(n_events, n_features)`` float32."""
        output = np.array(features, dtype=np.float32, copy=True)
        cos, sin = np.cos(parameters["angle"]), np.sin(parameters["angle"])
        flip_y, flip_z = parameters["flip_y"], parameters["flip_z"]
        mean, scale = self.mean, self.scale
        for x, y, z in self.vectors:
            px = output[:, x] * scale[x] + mean[x]
            py = output[:, y] * scale[y] + mean[y]
            output[:, x] = (px * cos - py * sin - mean[x]) / scale[x]
            output[:, y] = ((px * sin + py * cos) * flip_y - mean[y]) / scale[y]
            if z is not None:
                pz = output[:, z] * scale[z] + mean[z]
                output[:, z] = (pz * flip_z - mean[z]) / scale[z]
        output[np.asarray(missing, dtype=bool)] = 0.0
        return output

    def apply(self, batch: Batch, parameters: Parameters) -> dict[str, np.ndarray]:
        features = self.transform(batch["features"], batch["missing"], parameters)
        return {**batch, "features": features}

    @overload
    def random(self, batch: Batch, generator: np.random.Generator) -> dict[str, np.ndarray]: ...

    @overload
    def random(
        self, features: np.ndarray, missing: np.ndarray, generator: np.random.Generator, /
    ) -> np.ndarray: ...

    def random(
        self,
        batch: Batch | np.ndarray,
        generator: np.random.Generator | np.ndarray,
        legacy_generator: np.random.Generator | None = None,
    ) -> dict[str, np.ndarray] | np.ndarray:
        """One random rotation and flips per event: ``random(batch, generator)`` → batch, or
        the array form ``random(features, missing, generator)`` → features."""
        if isinstance(batch, Mapping) and isinstance(generator, np.random.Generator):
            return super().random(batch, generator)
        return self._legacy().random(
            np.asarray(batch), np.asarray(generator), _generator(legacy_generator)
        )

    @overload
    def variants(self, batch: Batch, n: int) -> list[dict[str, np.ndarray]]: ...

    @overload
    def variants(
        self, features: np.ndarray, missing: np.ndarray, /, n_rotations: int = 2
    ) -> list[np.ndarray]: ...

    def variants(
        self, batch: Batch | np.ndarray, n: int | np.ndarray, n_rotations: int = 2
    ) -> list[dict[str, np.ndarray]] | list[np.ndarray]:
        """``variants(batch, n)`` → ``n`` batches, or the array form ``variants(features,
        missing, n_rotations)`` → ``n_rotations × 4`` feature arrays; the first unchanged."""
        if isinstance(batch, Mapping) and not isinstance(n, np.ndarray):
            return super().variants(batch, n)
        if not isinstance(n, np.ndarray):
            raise AugmentationError(
                f"{self.owner}.variants: the array form takes (features, missing, n_rotations)"
            )
        return self._legacy().variants(np.asarray(batch), n, n_rotations)

    def _legacy(self) -> _ArrayAugmentation:
        if self.legacy is None:
            raise AugmentationError(
                f"{self.owner} takes batches (dicts of arrays): random(batch, generator), "
                "variants(batch, n)"
            )
        return self.legacy


def _generator(generator: np.random.Generator | None) -> np.random.Generator:
    if not isinstance(generator, np.random.Generator):
        raise AugmentationError(
            "random(features, missing, generator) needs a numpy.random.Generator "
            "(numpy.random.default_rng(seed))"
        )
    return generator


class _ArrayAugmentation(Protocol):
    """The array-form interface of :class:`pd4ml.datasets.higgsml.MomentumAugmentation`."""

    def random(
        self, features: np.ndarray, missing: np.ndarray, generator: np.random.Generator
    ) -> np.ndarray: ...

    def variants(
        self, features: np.ndarray, missing: np.ndarray, n_rotations: int = 2
    ) -> list[np.ndarray]: ...


class PolarAngles(GroupAugmentation):
    """Rotations about the beam axis and y/z reflections acting on (η, φ) columns.

    On standardised features ``(n_events, n_features)``: a rotation by α adds α to every φ
    column and wraps it to [-π, π); the reflection y → -y takes φ → -φ; z → -z takes η → -η.
    The columns are unscaled, transformed and rescaled with ``mean``/``scale``; the others (pT,
    masses, |Δη|, products of η, centralities — invariants) pass through, and entries flagged in
    ``missing`` stay exactly 0. ``random``/``variants`` draw and list the same group elements as
    :class:`CartesianMomenta`.
    """

    needs = ("features", "missing")

    def __init__(
        self,
        phi_columns: Sequence[int],
        eta_columns: Sequence[int],
        mean: np.ndarray,
        scale: np.ndarray,
    ) -> None:
        self.phi_columns = list(phi_columns)
        self.eta_columns = list(eta_columns)
        self.mean = np.asarray(mean, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)

    def draw(self, n_events: int, generator: np.random.Generator) -> Parameters:
        return _random_rotations_and_flips(n_events, generator)

    def elements(self, n: int) -> list[Parameters]:
        return _rotations_and_flips(n)

    def apply(self, batch: Batch, parameters: Parameters) -> dict[str, np.ndarray]:
        output = np.array(batch["features"], dtype=np.float32, copy=True)
        mean, scale = self.mean, self.scale
        angle, flip_y, flip_z = parameters["angle"], parameters["flip_y"], parameters["flip_z"]
        for column in self.phi_columns:
            phi = output[:, column] * scale[column] + mean[column]
            rotated = np.mod(phi + angle + np.pi, 2 * np.pi) - np.pi
            output[:, column] = (rotated * flip_y - mean[column]) / scale[column]
        for column in self.eta_columns:
            eta = output[:, column] * scale[column] + mean[column]
            output[:, column] = (eta * flip_z - mean[column]) / scale[column]
        output[np.asarray(batch["missing"], dtype=bool)] = 0.0
        return {**batch, "features": output}


class ColumnReflection(GroupAugmentation):
    """The reflection ``x → -x`` of some columns of the last axis of one array.

    ``ColumnReflection("features", [3])`` negates column 3 of ``features`` ``(..., n_columns)``
    in the events drawn (``random``: each event with probability 1/2); ``variants`` gives the
    identity and the reflection (``max_variants`` = 2). The sign is changed exactly (padding
    zeros stay +0, distances between entries are unchanged bit for bit, so neighbour tables
    built from these coordinates stay valid).
    """

    max_variants = 2

    def __init__(self, array: str, columns: Sequence[int]) -> None:
        self.array = array
        self.columns = list(columns)
        self.needs = (array,)

    def draw(self, n_events: int, generator: np.random.Generator) -> Parameters:
        return {"sign": _sign(generator, n_events)}

    def elements(self, n: int) -> list[Parameters]:
        return [{"sign": np.array(sign)} for sign in (1.0, -1.0)][:n]

    def apply(self, batch: Batch, parameters: Parameters) -> dict[str, np.ndarray]:
        values = np.asarray(batch[self.array])
        sign = np.asarray(parameters["sign"])
        output = np.array(values, copy=True)
        reflected = sign.reshape(sign.shape + (1,) * (values.ndim - 1 - sign.ndim)) < 0
        for column in self.columns:
            part = output[..., column]
            output[..., column] = np.where(reflected, 0 - part, part)  # 0 - (+0) is +0
        return {**batch, self.array: output}


class Compose:
    """Apply augmentations one after the other: ``Compose(a, b)`` is ``b ∘ a``.

    ``random`` applies each member's random transform with the same generator, in order.
    ``variants(batch, n)`` enumerates the product of the members' variants (the first member
    varying slowest) and keeps the first ``n``; the first is the identity, as every member's
    is. The members' shares are balanced within their ``max_variants`` (:meth:`_shares`).
    """

    def __init__(self, *augmentations: Augmentation) -> None:
        if not augmentations:
            raise AugmentationError("Compose needs at least one augmentation")
        self.augmentations = augmentations

    @property
    def max_variants(self) -> int | None:
        """The product of the members' numbers of distinct variants (``None``: unlimited)."""
        total = 1
        for augmentation in self.augmentations:
            count = getattr(augmentation, "max_variants", None)
            if count is None:
                return None
            total *= int(count)
        return total

    def random(self, batch: Batch, generator: np.random.Generator) -> dict[str, np.ndarray]:
        """Each member's random transform in turn."""
        output = dict(batch)
        for augmentation in self.augmentations:
            output = augmentation.random(output, generator)
        return output

    def variants(self, batch: Batch, n: int) -> list[dict[str, np.ndarray]]:
        """The first ``n`` of the product of the members' variants."""
        count = check_count(n, self.max_variants, "Compose")
        shares = self._shares(count)
        copies = [dict(batch)]
        for augmentation, share in zip(self.augmentations, shares, strict=True):
            copies = [variant for copy in copies for variant in augmentation.variants(copy, share)]
        return copies[:count]

    def _shares(self, count: int) -> list[int]:
        """Variants per member: balanced (the smallest share grows first, the earliest member on
        ties), within each member's ``max_variants``, until their product reaches ``count``."""
        caps = [getattr(member, "max_variants", None) for member in self.augmentations]
        shares = [1] * len(caps)
        while math.prod(shares) < count:
            growable = [i for i, cap in enumerate(caps) if cap is None or shares[i] < int(cap)]
            smallest = min(growable, key=lambda i: (shares[i], i))
            shares[smallest] += 1
        return shares


__all__ = [
    "Augmentation",
    "AugmentationError",
    "Batch",
    "CartesianMomenta",
    "ColumnReflection",
    "Compose",
    "GroupAugmentation",
    "PolarAngles",
    "check_count",
    "require",
]
