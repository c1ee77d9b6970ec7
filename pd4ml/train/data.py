"""Training data for the trainer: a prepared split or plain arrays, read a whole batch at a time.

    TrainingData.from_prepared(HiggsML.load_data("train"))               # memory maps
    TrainingData.from_arrays(features=x, labels=y, weights=w, mask=m)    # a user's own arrays

Batches are dicts of NumPy arrays (``labels`` int64 for classification, float32 for
regression; ``weights`` float32; node indices int64), as the adapters serve them. A prepared
split is never loaded whole: each batch is one read of the memory maps
(:class:`pd4ml.adapters.common.EventArrays`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from pd4ml.adapters.common import INDEX_ARRAYS, EventArrays, batch_rows
from pd4ml.errors import Pd4mlError
from pd4ml.models.description import NOT_INPUTS, DataDescription, describe, describe_arrays

if TYPE_CHECKING:
    from pd4ml.datasets.results import PreparedData

Batch = dict[str, np.ndarray]

#: Events read at a time when a whole split is scanned (class totals, target moments).
_SCAN_CHUNK = 65_536


class TrainingDataError(Pd4mlError, ValueError):
    """Training arrays that cannot be used (inconsistent lengths, unknown weight array)."""


class Augmentation(Protocol):
    """The physical transforms of a batch (``pd4ml.datasets.augment.Augmentation``): one random
    transform per event for training, ``n`` fixed copies (the first unchanged) for test-time
    augmentation."""

    def random(self, batch: Mapping[str, np.ndarray], generator: np.random.Generator) -> Batch: ...

    def variants(self, batch: Mapping[str, np.ndarray], n: int) -> list[Batch]: ...


class TrainingData:
    """Events to train or validate on; build with :meth:`from_prepared` or :meth:`from_arrays`.

    Attributes:
        n_events: number of events.
        description: the :class:`DataDescription` of the inputs (computed once).
        shared: arrays used by every event (grid neighbour tables), passed to models.
        augmentation: the transform used when a recipe asks for augmentation (None: none).
        class_factors: per-class factors the weights are multiplied by (None: unchanged).
    """

    def __init__(
        self,
        *,
        n_events: int,
        description: DataDescription,
        events: EventArrays | None = None,
        arrays: Mapping[str, np.ndarray] | None = None,
        shared: Mapping[str, np.ndarray] | None = None,
        augmentation: Augmentation | None = None,
        prepared: PreparedData | None = None,
        class_factors: np.ndarray | None = None,
    ) -> None:
        self.n_events = n_events
        self.description = description
        self._events = events
        self._arrays = dict(arrays) if arrays is not None else None
        self.shared = dict(shared or {})
        self.augmentation = augmentation
        self.prepared = prepared
        self.class_factors = class_factors
        #: memory-map readers of chosen arrays, by array names (see :meth:`_reader`)
        self._readers: dict[tuple[str, ...], EventArrays] = {}

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_prepared(
        cls,
        prepared: PreparedData,
        weights: str | None = None,
        names: Sequence[str] | None = None,
    ) -> TrainingData:
        """A prepared split (``Dataset.load_data(...)``): batches are read from its memory maps.

        ``weights`` names the sample-weight array (default ``weights``, 1 where absent);
        ``names`` restricts the per-event arrays read (default: all).
        """
        try:
            events = EventArrays(prepared, names, weights)
        except KeyError as error:
            raise TrainingDataError(str(error.args[0])) from None
        return cls(
            n_events=events.n_events,
            description=describe(prepared),
            events=events,
            shared=events.shared,
            prepared=prepared,
        )

    @classmethod
    def from_arrays(
        cls,
        features: np.ndarray,
        labels: np.ndarray,
        weights: np.ndarray | None = None,
        *,
        shared: Mapping[str, np.ndarray] | None = None,
        augmentation: Augmentation | None = None,
        task: str | None = None,
        **inputs: np.ndarray,
    ) -> TrainingData:
        """Plain arrays: ``features`` ``(N, ...)``, ``labels`` ``(N,)`` (integers: a
        classification, floats: a regression, unless ``task`` says), ``weights`` ``(N,)``
        (default 1), other per-event inputs by keyword (``mask=``, ``neighbours=``, ...) and
        ``shared`` arrays used by every event. float64 inputs are stored as float32 (what the
        models compute in); node indices as int64."""
        features = np.asarray(features)
        labels = np.asarray(labels)
        n = len(features)
        description = describe_arrays(features, labels, task=task, shared=shared, **inputs)  # type: ignore[arg-type]
        arrays: dict[str, np.ndarray] = {"features": _model_dtype("features", features)}
        for name, value in inputs.items():
            if name in NOT_INPUTS:
                raise TrainingDataError(f"{name!r} is not an input; pass labels/weights directly")
            arrays[name] = _model_dtype(name, np.asarray(value))
        arrays["labels"] = labels.astype(
            np.int64 if description.task == "classification" else np.float32, copy=False
        )
        if weights is None:
            arrays["weights"] = np.ones(n, dtype=np.float32)
        else:
            weight_array = np.asarray(weights, dtype=np.float32)
            if weight_array.shape != (n,):
                raise TrainingDataError(
                    f"weights have shape {weight_array.shape}, expected ({n},) like features"
                )
            if not np.all(np.isfinite(weight_array)) or np.any(weight_array < 0):
                raise TrainingDataError("weights must be finite and non-negative")
            arrays["weights"] = weight_array
        return cls(
            n_events=n,
            description=description,
            arrays=arrays,
            shared={key: np.asarray(value) for key, value in (shared or {}).items()},
            augmentation=augmentation,
        )

    # -- variants -------------------------------------------------------------------------------
    def balanced(self) -> TrainingData:
        """The same events with weights rescaled so that every class has the same total weight
        (the total over all classes unchanged). Classification only."""
        if self.description.task != "classification":
            raise TrainingDataError("balance_classes needs a classification, not a regression")
        n_classes = self.description.n_classes
        totals = np.zeros(n_classes, dtype=np.float64)
        for start in range(0, self.n_events, _SCAN_CHUNK):
            batch = self._read(slice(start, min(start + _SCAN_CHUNK, self.n_events)), ("labels",))
            totals += np.bincount(batch["labels"], batch["weights"], minlength=n_classes)
        present = totals > 0
        factors = np.zeros(n_classes, dtype=np.float32)
        factors[present] = totals.sum() / (present.sum() * totals[present])
        return self._copy(class_factors=factors)

    def target_moments(self) -> tuple[float, float]:
        """The weighted mean and standard deviation of the labels (a regression's targets),
        scanned :data:`_SCAN_CHUNK` events at a time."""
        total = weighted = squares = 0.0
        for start in range(0, self.n_events, _SCAN_CHUNK):
            batch = self._read(slice(start, min(start + _SCAN_CHUNK, self.n_events)), ("labels",))
            labels = batch["labels"].astype(np.float64)
            weights = batch["weights"].astype(np.float64)
            total += float(weights.sum())
            weighted += float((weights * labels).sum())
        if total <= 0:
            raise TrainingDataError("the training weights sum to zero")
        mean = weighted / total
        for start in range(0, self.n_events, _SCAN_CHUNK):
            batch = self._read(slice(start, min(start + _SCAN_CHUNK, self.n_events)), ("labels",))
            deviation = batch["labels"].astype(np.float64) - mean
            squares += float((batch["weights"].astype(np.float64) * deviation**2).sum())
        return mean, float(np.sqrt(squares / total))

    def with_augmentation(self, augmentation: Augmentation | None) -> TrainingData:
        """The same events with ``augmentation`` as their train-time transform."""
        return self._copy(augmentation=augmentation)

    def default_augmentation(self) -> Augmentation | None:
        """The augmentation to use: the one given, else the dataset's declared one."""
        if self.augmentation is not None or self.prepared is None:
            return self.augmentation
        from pd4ml.datasets.registry import get as get_dataset

        dataset = get_dataset(str(self.prepared.metadata.get("dataset")))
        declared = getattr(dataset, "augmentation", None)
        return declared(self.prepared) if declared is not None else None

    def _copy(self, **changes: Any) -> TrainingData:
        copied = copy.copy(self)
        for name, value in changes.items():
            setattr(copied, name, value)
        return copied

    # -- reading --------------------------------------------------------------------------------
    def batches(
        self,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        epoch: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        *,
        names: Sequence[str] | None = None,
        drop_last: bool = False,
        augment: bool = False,
        smallest: int = 1,
    ) -> Iterator[Batch]:
        """The batches of one epoch, each a dict of arrays (``names`` + labels + weights).

        ``shuffle``: a uniform permutation per ``(seed, epoch)``, batches read as sorted rows.
        ``num_replicas`` > 1 (data-parallel): every *global* batch of ``batch_size`` events is
        cut into ``num_replicas`` contiguous, disjoint parts and rank ``rank`` gets its part, so
        the ranks together see exactly the batches of one process (a last global batch with
        fewer than ``num_replicas`` events is dropped). ``smallest``: a last batch of fewer than
        ``smallest`` events per rank is dropped (training uses 2: batch norm needs two events).
        ``augment``: the augmentation's random transform, drawn from a generator seeded by
        ``(seed, epoch, rank)``.
        """
        if not 0 <= rank < num_replicas:
            raise TrainingDataError(f"rank must be in [0, {num_replicas}), not {rank}")
        wanted = tuple(names) if names is not None else None
        augmentation = self.default_augmentation() if augment else None
        if augment and augmentation is None:
            raise TrainingDataError(
                f"augment=True but {self.description.dataset or 'these arrays'} declare no "
                "augmentation; pass one with TrainingData.with_augmentation(...) or set "
                "augment=False"
            )
        if wanted is not None and augmentation is not None:
            # the augmentation may read arrays the model does not (HiggsML: ``missing``)
            needs = tuple(getattr(augmentation, "needs", ()))
            wanted = wanted + tuple(name for name in needs if name not in wanted)
        generator = np.random.default_rng([seed, epoch, rank, 1]) if augment else None
        for rows in batch_rows(
            self.n_events, batch_size, shuffle=shuffle, seed=seed, epoch=epoch, drop_last=drop_last
        ):
            if _length(rows) < smallest * num_replicas:
                continue
            part = _rank_part(rows, num_replicas, rank) if num_replicas > 1 else rows
            if part is None:
                continue
            batch = self._read(part, wanted)
            if augmentation is not None and generator is not None:
                batch = augmentation.random(batch, generator)
            yield batch

    def _read(self, rows: slice | np.ndarray, names: Sequence[str] | None) -> Batch:
        if self._arrays is not None:
            keys = (
                self._arrays.keys()
                if names is None
                else [*(n for n in names if n not in ("labels", "weights")), "labels", "weights"]
            )
            batch = {name: _take(self._arrays[name], rows) for name in keys}
        else:
            assert self._events is not None
            batch = self._reader(names).read(rows)
        if self.class_factors is not None:
            batch["weights"] = batch["weights"] * self.class_factors[batch["labels"]]
        return batch

    def _reader(self, names: Sequence[str] | None) -> EventArrays:
        """The memory-map reader of ``names`` only (the model's inputs and what the
        augmentation needs), so a batch never reads arrays nobody uses."""
        assert self._events is not None
        if names is None:
            return self._events
        wanted = tuple(n for n in names if n not in ("labels", "weights"))
        if wanted not in self._readers:
            self._readers[wanted] = EventArrays(self._events.data, wanted, self._events.weight_name)
        return self._readers[wanted]

    def inputs_missing(self, names: Sequence[str]) -> list[str]:
        """The names among ``names`` that these data do not provide."""
        available = set(self.description.arrays)
        return [name for name in names if name not in available]


def _take(array: np.ndarray, rows: slice | np.ndarray) -> np.ndarray:
    if isinstance(rows, slice):
        return array[rows]
    return np.take(array, rows, axis=0)


def _length(rows: slice | np.ndarray) -> int:
    return int(rows.stop - rows.start) if isinstance(rows, slice) else len(rows)


def _rank_part(rows: slice | np.ndarray, num_replicas: int, rank: int) -> slice | np.ndarray | None:
    if isinstance(rows, slice):
        start, stop = rows.start, rows.stop
        size = stop - start
        if size < num_replicas:
            return None
        bounds = [start + size * part // num_replicas for part in range(num_replicas + 1)]
        return slice(bounds[rank], bounds[rank + 1])
    if len(rows) < num_replicas:
        return None
    part: np.ndarray = np.array_split(rows, num_replicas)[rank]
    return part


def _model_dtype(name: str, array: np.ndarray) -> np.ndarray:
    if name in INDEX_ARRAYS:
        return array.astype(np.int64, copy=False)
    if array.dtype == np.float64:
        return array.astype(np.float32)
    return array


def to_tensors(
    batch: Mapping[str, np.ndarray], device: torch.device | str = "cpu"
) -> dict[str, torch.Tensor]:
    """The batch as tensors on ``device`` (no copy on the CPU where the arrays allow it)."""
    target = torch.device(device)
    tensors = {}
    for name, value in batch.items():
        if not value.flags.c_contiguous or not value.flags.writeable:
            value = np.array(value)
        tensor = torch.from_numpy(value)
        tensors[name] = tensor if target.type == "cpu" else tensor.to(target, non_blocking=True)
    return tensors


def as_training_data(data: TrainingData | PreparedData, weights: str | None = None) -> TrainingData:
    """``data`` as :class:`TrainingData` (a prepared split is wrapped)."""
    if isinstance(data, TrainingData):
        if weights is not None and data.prepared is not None:
            return TrainingData.from_prepared(data.prepared, weights)._copy(
                augmentation=data.augmentation, class_factors=data.class_factors
            )
        if weights not in (None, "weights"):
            raise TrainingDataError(
                f"Recipe.weights names the array {weights!r}, but arrays given with "
                "TrainingData.from_arrays carry their weights in `weights`; pass that array "
                "as weights= there and leave Recipe.weights as None"
            )
        return data
    from pd4ml.datasets.results import PreparedData

    if isinstance(data, PreparedData):
        return TrainingData.from_prepared(data, weights)
    raise TrainingDataError(
        f"training data must be a PreparedData or a TrainingData "
        f"(TrainingData.from_arrays(features=..., labels=...)), not {type(data).__name__}"
    )
