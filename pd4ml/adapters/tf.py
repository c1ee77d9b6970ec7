"""TensorFlow view of a prepared split: a streaming ``tf.data.Dataset``.

    from pd4ml import TopTagging
    train = TopTagging.tf("train", graph=True).dataset(batch_size=1024, shuffle=True)
    model.fit(train, epochs=10)        # elements: (inputs, labels, sample_weights)

    # Keras models written against the original pd4ml (inputs named "features", "adj_matrix"):
    train = TopTagging.tf("train", graph=True).dataset(batch_size=256, original=True)

Batches are read from the memory maps one whole batch at a time (``shuffle=True``: a uniform
random permutation of the split per pass; ``shuffle="blocks"``: block shuffling; see
:func:`pd4ml.adapters.common.batch_rows`) by a parallel map that reads ahead; a split is never
materialised. Elements are ``(inputs, labels, weights)``: ``inputs`` a dict of the per-event
arrays other than labels and weights (node indices as int64), or with ``original=True``
``{"features": x}`` and, for a graph, ``"adj_matrix"`` — the dense ``(batch, P, P)``
adjacency of :func:`pd4ml.adapters.common.dense_adjacency`, built per batch from the sparse
graph; ``labels`` int64 (classification) or float32 (regression), ``weights`` float32 — the
triple that ``keras.Model.fit`` takes as sample-weighted data. (Keras binds inputs by name, so
``features`` is one array here, where the original's NumPy ``load_data`` gave a list.)

Batch numbers and the per-pass shuffling key are drawn in-graph (``tf.data.Dataset.random``
with the seed); the reads are Python (``tf.numpy_function``), so the pipeline lives in this
process: it cannot be serialised for the tf.data service or multi-worker strategies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import tensorflow as tf

from pd4ml.adapters.common import (
    EventArrays,
    Rows,
    Shuffle,
    batch_rows,
    check_graph,
    count_batches,
    dense_adjacency,
    graph_kind,
    node_form,
    shuffle_mode,
)

if TYPE_CHECKING:
    from pd4ml.datasets.base import PreparedData

Element = tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]


class TfEvents:
    """One prepared split for TensorFlow.

    Args:
        data: the prepared split (``Dataset.load_data(...)``).
        names: per-event arrays to serve (default: all; ``labels`` and ``weights`` always).
        weights: the array used as weights (default ``weights`` where present, else 1).
    """

    def __init__(
        self, data: PreparedData, names: Sequence[str] | None = None, weights: str | None = None
    ) -> None:
        self.data = data
        self.events = EventArrays(data, names, weights)
        self.graph = bool(data.metadata.get("params", {}).get("graph", False))

    def __len__(self) -> int:
        return self.events.n_events

    @property
    def shared(self) -> dict[str, np.ndarray]:
        """Arrays that are the same for every event (grid neighbours, station positions)."""
        return dict(self.events.shared)

    def element(self, rows: Rows, original: bool = False, copy: bool = True) -> Element:
        """The ``(inputs, labels, weights)`` NumPy arrays of the events ``rows``."""
        batch = self.events.read(rows, copy=copy)
        labels = batch.pop("labels")
        weights = batch.pop("weights")
        if not original:
            return batch, labels, weights
        if "features" not in batch:
            raise KeyError("original=True needs the 'features' array among the names")
        kind = graph_kind(self.data)
        inputs = {"features": np.ascontiguousarray(node_form(batch["features"], kind))}
        if self.graph:
            inputs["adj_matrix"] = np.ascontiguousarray(dense_adjacency(self.data, rows))
        return inputs, labels, weights

    def dataset(
        self,
        batch_size: int = 256,
        shuffle: Shuffle = False,
        *,
        seed: int = 0,
        drop_last: bool = False,
        window: int = 8,
        original: bool = False,
        prefetch: int | None = None,
    ) -> tf.data.Dataset:
        """A ``tf.data.Dataset`` of ``(inputs, labels, weights)`` batches.

        Each pass over it is a new epoch with a new, seeded order when ``shuffle`` is set:
        ``True`` a uniform random permutation of all events, ``"blocks"`` block shuffling
        (``window`` blocks of ``batch_size`` consecutive events pooled at a time; see
        :func:`pd4ml.adapters.common.batch_rows`). Batches are read by parallel calls,
        delivered in order, and read ahead by the parallel map itself; ``prefetch`` adds an
        extra buffer of that many batches (default none). ``original=True`` gives the original
        pd4ml's inputs (see the module docstring).
        """
        shuffled = shuffle_mode(shuffle) != "none"
        if original and self.graph:
            check_graph(self.data)  # a clear error now rather than in the first batch
        n_batches = count_batches(len(self), batch_size, drop_last)
        plans: dict[int, list[Rows]] = {}

        def plan(epoch: int) -> list[Rows]:
            """The batches of the epoch with this key (deterministic: recomputed if dropped)."""
            if epoch not in plans:
                while len(plans) >= 4:  # a few live iterators at most; drop the oldest
                    del plans[next(iter(plans))]
                plans[epoch] = list(
                    batch_rows(
                        len(self),
                        batch_size,
                        shuffle=shuffle,
                        seed=seed,
                        epoch=epoch,
                        drop_last=drop_last,
                        window=window,
                    )
                )
            return plans[epoch]

        first_inputs, first_labels, first_weights = self.element(
            slice(0, min(1, len(self))), original
        )
        names = list(first_inputs)
        specs = [_spec(first_inputs[name]) for name in names]
        specs += [_spec(first_labels), _spec(first_weights)]

        def read(epoch: np.int64, index: np.int64) -> list[np.ndarray]:
            rows = plan(int(epoch))[int(index)]
            inputs, labels, weights = self.element(rows, original, copy=False)
            return [*(inputs[name] for name in names), labels, weights]

        def load(epoch: tf.Tensor, index: tf.Tensor) -> tuple[Any, Any, Any]:
            values = tf.numpy_function(
                read, [epoch, index], [spec.dtype for spec in specs], stateful=False
            )
            for value, spec in zip(values, specs, strict=True):
                value.set_shape(spec.shape)
            inputs = dict(zip(names, values[: len(names)], strict=True))
            return inputs, values[-2], values[-1]

        if shuffled:
            # a new epoch key for each pass (iterator), drawn in-graph from the seed: a
            # Python generator here would throttle the parallel reads below
            keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
            indices = keys.flat_map(
                lambda key: tf.data.Dataset.range(n_batches).map(
                    lambda index: (tf.math.abs(key) % (1 << 62), index)
                )
            )
        else:  # every epoch is the same: batch numbers in-graph
            indices = tf.data.Dataset.range(n_batches).map(
                lambda index: (tf.constant(0, tf.int64), index)
            )
        dataset = indices.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(n_batches))
        # the parallel map already reads ahead; an extra prefetch buffer only keeps more
        # batch-sized tensors alive (measured: 3-4x slower shuffled epochs), so it is opt-in
        return dataset.prefetch(prefetch) if prefetch else dataset


def _spec(value: np.ndarray) -> tf.TensorSpec:
    return tf.TensorSpec(shape=(None, *value.shape[1:]), dtype=tf.as_dtype(value.dtype))


def keras_inputs(view: TfEvents, original: bool = False) -> dict[str, Any]:
    """``keras.Input`` layers matching :meth:`TfEvents.dataset` inputs, by name."""
    import keras

    batch, _, _ = view.element(slice(0, min(1, len(view))), original)
    return {
        name: keras.Input(shape=value.shape[1:], dtype=str(value.dtype), name=name)
        for name, value in batch.items()
    }
