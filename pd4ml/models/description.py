"""What a model needs to know about its data: array shapes, the task, the graph kind.

A :class:`DataDescription` is built from a prepared split (:func:`describe`) or from plain
arrays (:func:`describe_arrays`), so that ``FCN.build(description)`` and
``GraphNet.build(description)`` work the same on every dataset and on a user's own data. It is
stored in every saved model's JSON, so a saved model can be rebuilt without the data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from pd4ml.errors import Pd4mlError

if TYPE_CHECKING:
    from pd4ml.datasets.results import PreparedData

Task = Literal["classification", "regression"]
GraphKind = Literal["none", "neighbours", "edges", "grid"]

#: Per-event arrays that are targets or weights, never model inputs.
NOT_INPUTS = frozenset({"labels", "weights", "kaggle_weights"})


class DescriptionError(Pd4mlError, ValueError):
    """The arrays cannot be described (inconsistent lengths, unknown task, bad labels)."""


@dataclass(frozen=True)
class ArraySpec:
    """One input array: ``shape`` per event (without the event axis) or, for an array shared
    by every event (``shared=True``, e.g. the neighbours of a fixed grid), its whole shape."""

    shape: tuple[int, ...]
    dtype: str
    shared: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "dtype": self.dtype, "shared": self.shared}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> ArraySpec:
        return cls(
            tuple(int(n) for n in value["shape"]), str(value["dtype"]), bool(value["shared"])
        )


@dataclass(frozen=True)
class DataDescription:
    """The model-facing summary of a dataset split.

    Attributes:
        task: ``"classification"`` or ``"regression"``.
        n_classes: number of classes (2 for binary classification: one logit), 0 for regression.
        arrays: the input arrays by name (``features`` always; masks, neighbour indices,
            ``jet_multiplicity``, ... where the dataset has them). Labels and weights are not
            inputs.
        graph: ``"neighbours"`` (per-event ``neighbours`` ``(P, k)`` + ``neighbour_mask``),
            ``"edges"`` (per-event ``edges`` ``(E, 2)`` + ``edge_mask``), ``"grid"`` (one shared
            ``grid_neighbours`` ``(P, k)`` + ``grid_mask``) or ``"none"``.
        dataset: the registry name of the dataset (``None`` for a user's own arrays).
        version: the dataset version name, if known.
        prepared_key: the prepared-cache key of the split the description came from.
        info: the dataset's own description of its arrays (e.g. HiggsML ``feature_names``).
    """

    task: Task
    n_classes: int
    arrays: Mapping[str, ArraySpec]
    graph: GraphKind = "none"
    dataset: str | None = None
    version: str | None = None
    prepared_key: str | None = None
    info: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in ("classification", "regression"):
            raise DescriptionError(
                f"task must be 'classification' or 'regression', not {self.task!r}"
            )
        if self.task == "classification" and self.n_classes < 2:
            raise DescriptionError(f"a classification needs n_classes >= 2, not {self.n_classes}")
        if self.task == "regression" and self.n_classes != 0:
            raise DescriptionError("a regression has n_classes = 0")
        if "features" not in self.arrays:
            raise DescriptionError("the inputs must contain a 'features' array")
        if self.graph not in ("none", "neighbours", "edges", "grid"):
            raise DescriptionError(f"unknown graph kind {self.graph!r}")

    @property
    def n_outputs(self) -> int:
        """Width of a model's raw output: 1 for binary classification and regression, else
        ``n_classes``."""
        return 1 if self.n_classes <= 2 else self.n_classes

    @property
    def features(self) -> ArraySpec:
        return self.arrays["features"]

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "n_classes": self.n_classes,
            "arrays": {name: spec.to_json() for name, spec in self.arrays.items()},
            "graph": self.graph,
            "dataset": self.dataset,
            "version": self.version,
            "prepared_key": self.prepared_key,
            "info": dict(self.info),
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> DataDescription:
        return cls(
            task=value["task"],
            n_classes=int(value["n_classes"]),
            arrays={name: ArraySpec.from_json(spec) for name, spec in value["arrays"].items()},
            graph=value["graph"],
            dataset=value.get("dataset"),
            version=value.get("version"),
            prepared_key=value.get("prepared_key"),
            info=dict(value.get("info") or {}),
        )


def graph_kind(names: set[str] | frozenset[str] | Mapping[str, Any]) -> GraphKind:
    """The graph kind implied by the array names present."""
    if "neighbours" in names:
        return "neighbours"
    if "edges" in names:
        return "edges"
    if "grid_neighbours" in names:
        return "grid"
    return "none"


def _classes(labels: np.ndarray) -> int:
    values = np.unique(np.asarray(labels))
    if values.size == 0:
        raise DescriptionError("labels are empty")
    if values.min() < 0 or not np.all(values == np.round(values)):
        raise DescriptionError("classification labels must be whole numbers 0, 1, ..., C-1")
    return max(2, int(values.max()) + 1)


def describe(data: PreparedData) -> DataDescription:
    """The description of a prepared split (``Dataset.load_data(...)``)."""
    from pd4ml.datasets.registry import get as get_dataset

    name = data.metadata.get("dataset")
    task: Task
    try:
        dataset = get_dataset(str(name))
        task = dataset.manifest().task
    except Exception:
        task = "classification" if np.issubdtype(data.labels.dtype, np.integer) else "regression"
    arrays = {
        key: ArraySpec(
            tuple(value.shape) if key in data.shared else tuple(value.shape[1:]),
            str(value.dtype),
            key in data.shared,
        )
        for key, value in data.items()
        if key not in NOT_INPUTS
    }
    n_classes = (
        _classes(np.asarray(data.labels[: min(len(data.labels), 100_000)]))
        if task == "classification"
        else 0
    )
    return DataDescription(
        task=task,
        n_classes=n_classes,
        arrays=arrays,
        graph=graph_kind(arrays),
        dataset=str(name) if name is not None else None,
        version=data.metadata.get("version"),
        prepared_key=data.directory.name if data.directory is not None else None,
        info={
            **dict(data.metadata.get("info") or {}),
            "synthetic": bool(data.metadata.get("synthetic")),
        },
    )


def describe_arrays(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    task: Task | None = None,
    shared: Mapping[str, np.ndarray] | None = None,
    **inputs: np.ndarray,
) -> DataDescription:
    """The description of plain arrays: ``features`` ``(N, ...)``, ``labels`` ``(N,)``, other
    per-event inputs ``(N, ...)`` by keyword (``mask``, ``neighbours``, ...), and ``shared``
    arrays used by every event (``grid_neighbours``). ``task`` defaults to classification for
    integer labels and regression otherwise."""
    features = np.asarray(features)
    labels = np.asarray(labels)
    n = len(features)
    if labels.shape[:1] != (n,):
        raise DescriptionError(
            f"labels have {labels.shape[:1]} entries but features have {n} events"
        )
    for key, value in inputs.items():
        if np.shape(value)[:1] != (n,):
            raise DescriptionError(f"{key!r} has {np.shape(value)[:1]} entries, features have {n}")
    if task is None:
        task = (
            "classification"
            if np.issubdtype(labels.dtype, np.integer) or labels.dtype == np.bool_
            else "regression"
        )
    arrays = {"features": ArraySpec(tuple(features.shape[1:]), str(features.dtype))}
    for key, value in inputs.items():
        if key not in NOT_INPUTS:
            array = np.asarray(value)
            arrays[key] = ArraySpec(tuple(array.shape[1:]), str(array.dtype))
    for key, value in (shared or {}).items():
        array = np.asarray(value)
        arrays[key] = ArraySpec(tuple(array.shape), str(array.dtype), shared=True)
    n_classes = _classes(labels) if task == "classification" else 0
    return DataDescription(task=task, n_classes=n_classes, arrays=arrays, graph=graph_kind(arrays))
