"""What a load returns: :class:`LoadResult` (raw arrays) and :class:`PreparedData`
(preprocessed arrays), with their provenance (:class:`LoadMetadata`)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pd4ml.datasets.views import make_view


@dataclass(frozen=True)
class LoadMetadata:
    """Provenance of a loaded split.

    ``source`` says where the raw files came from: ``archive``, ``mirror``, ``shared``,
    ``import`` or ``synthetic`` (generated test data, never a real measurement).
    """

    dataset: str
    version: str
    split: str
    n_events: int
    doi: str | None
    source: str
    synthetic: bool
    files: Mapping[str, str] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class LoadResult:
    """Arrays of one split: unpacks as ``(X, y)`` like the original pd4ml's ``load``.

    ``X`` is a list of read-only memory-mapped arrays (one per input, shapes documented by each
    dataset), ``y`` the labels (or regression targets) of shape ``(n_events,)``, ``weights`` the
    per-event sample weights or ``None``, ``names`` the names of the arrays in ``X``, ``extra``
    the other arrays of the split by name. ``shared`` names the arrays that describe the
    detector rather than an event (the same for every event, never cut by ``max_events``).
    """

    X: list[np.ndarray]
    y: np.ndarray
    weights: np.ndarray | None
    names: tuple[str, ...]
    metadata: LoadMetadata
    extra: Mapping[str, np.ndarray] = field(default_factory=dict)
    shared: frozenset[str] = frozenset()

    def __iter__(self) -> Iterator[Any]:
        yield self.X
        yield self.y

    def __len__(self) -> int:
        return 2

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, int):
            return (self.X, self.y)[key]
        if key in self.names:
            return self.X[self.names.index(key)]
        if key in self.extra:
            return self.extra[key]
        raise KeyError(f"no array {key!r}; arrays: {list(self.names) + list(self.extra)}")

    @property
    def n_events(self) -> int:
        """Number of events in the split (after ``max_events``)."""
        return int(self.y.shape[0])


@dataclass(frozen=True, eq=False)
class PreparedData(Mapping[str, np.ndarray]):
    """Preprocessed arrays of one split: a read-only mapping of array name → memory map.

    Typical names: ``features`` (inputs), ``mask`` (real entries of padded inputs),
    ``neighbours``/``neighbour_mask`` (sparse graph), ``labels``, ``weights``. Each dataset
    documents its names, shapes and units; ``metadata`` records the parameters, the statistics
    fitted on train, the provenance of the underlying split and, per array, whether it has one
    entry per event (``per_event``) or describes the detector (``shared``: the same for every
    event, such as a grid's neighbour table or the station positions).

    Iterating gives the array names, as for any mapping (``dict(prepared)``, ``list(prepared)``,
    ``prepared.items()``). The original pd4ml's ``X, y = load_data(...)`` unpacking is
    :func:`pd4ml.adapters.original.original_inputs` (``X, y = original_inputs(prepared)``) or
    the classes of :mod:`pd4ml.pd4ml`, which keep the original's signatures.
    """

    arrays: Mapping[str, np.ndarray]
    metadata: Mapping[str, Any]
    directory: Path | None = None
    max_events: int | None = None
    shared: frozenset[str] = frozenset()

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.arrays[name]
        except KeyError:
            raise KeyError(f"no array {name!r}; arrays: {list(self.arrays)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.arrays)

    def __len__(self) -> int:
        return len(self.arrays)

    def __eq__(self, other: object) -> bool:
        """Identity: two objects are equal when they are the same view (comparing the arrays
        element-wise would be ambiguous and expensive)."""
        return self is other

    def __hash__(self) -> int:
        return id(self)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickles as its directory (worker processes reopen the memory maps, never copy the
        data); a split not opened from the cache pickles by value."""
        if self.directory is None:
            return (PreparedData, (dict(self.arrays), dict(self.metadata), None, None, self.shared))
        return (_reopen_prepared, (str(self.directory), self.max_events))

    def __repr__(self) -> str:
        shapes = ", ".join(f"{name}={tuple(array.shape)}" for name, array in self.arrays.items())
        return (
            f"PreparedData({self.metadata.get('dataset')}/{self.metadata.get('split')}, {shapes})"
        )

    def per_event(self) -> list[str]:
        """Names of the arrays with one entry per event (in storage order)."""
        return [name for name in self.arrays if name not in self.shared]

    @property
    def features(self) -> np.ndarray:
        """The model inputs."""
        return self["features"]

    @property
    def labels(self) -> np.ndarray:
        """Labels (classification) or targets (regression), ``(n_events,)``."""
        return self["labels"]

    @property
    def weights(self) -> np.ndarray | None:
        """Per-event sample weights, or ``None``."""
        return self.arrays.get("weights")

    @property
    def n_events(self) -> int:
        """Number of events (after ``max_events``)."""
        return int(self.labels.shape[0])

    @property
    def graph(self) -> bool:
        """Whether the split was prepared with ``graph=True``."""
        return bool(self.metadata.get("params", {}).get("graph", False))

    # -- framework views (registered by pd4ml.adapters) -----------------------------------------
    def torch(self, names: Sequence[str] | None = None, weights: str | None = None) -> Any:
        """A torch ``Dataset`` of this split (:class:`pd4ml.adapters.torch.TorchEvents`)."""
        return make_view("torch", self, names=names, weights=weights)

    def pyg(self, weights: str | None = None) -> Any:
        """PyTorch Geometric ``Data`` per event (:class:`pd4ml.adapters.pyg.GraphEvents`)."""
        return make_view("pyg", self, weights=weights)

    def tf(self, names: Sequence[str] | None = None, weights: str | None = None) -> Any:
        """A TensorFlow view of this split (:class:`pd4ml.adapters.tf.TfEvents`)."""
        return make_view("tf", self, names=names, weights=weights)


def _reopen_prepared(directory: str, max_events: int | None) -> PreparedData:
    from pd4ml.datasets.pipeline import open_prepared

    return open_prepared(Path(directory), max_events, quiet=True)
