"""Framework-free pieces shared by the adapters: batch reads, shuffling, graph forms.

Everything here is NumPy only; the PyTorch, PyTorch Geometric and TensorFlow adapters build on
it. The unit of reading is a **batch**: rows of a prepared split read from the memory maps in
one call, as one contiguous slice (unshuffled) or as a sorted row list (shuffled: a uniform
sample of the split, or with block shuffling rows of a few contiguous blocks), never one event
per call.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from pd4ml.graphs import decay_tree_dense, neighbours_to_dense

if TYPE_CHECKING:
    from pd4ml.datasets.base import PreparedData

#: Version of the dense-adjacency convention (in the name of the stored ``adj_matrix`` file).
ADJACENCY_VERSION = 2

#: Node-index arrays: stored compact, served as int64 (what frameworks index with).
INDEX_ARRAYS = frozenset({"neighbours", "edges"})

#: Arrays that are the graph of a prepared split, by graph kind.
GRAPH_ARRAYS = {
    "knn": ("neighbours", "neighbour_mask"),
    "decay": ("edges", "edge_mask"),
    "grid": ("grid_neighbours", "grid_mask"),
}

Rows = slice | np.ndarray

#: ``shuffle`` argument of the loaders: ``False``, ``True`` (uniform) or ``"blocks"``.
Shuffle = bool | Literal["blocks"]


def graph_kind(data: PreparedData) -> str | None:
    """``"knn"`` (per-event neighbour lists), ``"decay"`` (mother–daughter edges), ``"grid"``
    (one neighbourhood shared by all events) or ``None`` when the split has no graph."""
    for kind, (indices, _) in GRAPH_ARRAYS.items():
        if indices in data:
            return kind
    return None


def shuffle_mode(shuffle: Shuffle) -> str:
    """``"none"``, ``"uniform"`` (``shuffle=True``) or ``"blocks"`` (``shuffle="blocks"``)."""
    if shuffle is False:
        return "none"
    if shuffle is True:
        return "uniform"
    if shuffle == "blocks":
        return "blocks"
    raise ValueError(
        f"shuffle must be False, True (a uniform permutation of all events) or 'blocks' "
        f"(block shuffling, for splits larger than memory), not {shuffle!r}"
    )


def batch_rows(
    n_events: int,
    batch_size: int,
    *,
    shuffle: Shuffle = False,
    seed: int = 0,
    epoch: int = 0,
    drop_last: bool = False,
    window: int = 8,
) -> Iterator[Rows]:
    """The rows of each batch of one epoch.

    * ``shuffle=False``: consecutive slices ``[i, i + batch_size)``.
    * ``shuffle=True``: a uniform random permutation of all ``n_events`` events, cut into
      batches of ``batch_size``; every batch is a uniform sample of the split whatever the
      order of the file (sorted by class or energy, say).
    * ``shuffle="blocks"`` (block shuffling): the split is cut into blocks of ``batch_size``
      consecutive events, the blocks are visited in a random order, and the events of
      ``window`` blocks at a time are pooled, permuted and dealt into ``window`` batches, so an
      epoch reads the files nearly sequentially (for splits larger than memory). A batch then
      holds events of at most ``window`` neighbouring regions of the file: **not** a uniform
      sample where the file is ordered.

    Shuffled batches are returned as **sorted** row indices (int64), so that each is read in one
    ascending pass over the memory maps. The order depends on ``(seed, epoch)`` only; every
    event is in exactly one batch per epoch. At most one batch per epoch is short (the last;
    ``drop_last`` drops it). ``window`` is used by block shuffling only.
    """
    mode = shuffle_mode(shuffle)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    if window < 1:
        raise ValueError(f"window must be at least 1, not {window}")
    if mode == "none":
        for start in range(0, n_events, batch_size):
            stop = min(start + batch_size, n_events)
            if drop_last and stop - start < batch_size:
                return
            yield slice(start, stop)
        return
    generator = np.random.default_rng([seed, epoch])
    if mode == "uniform":
        order = generator.permutation(n_events)
        full = n_events // batch_size
        yield from np.sort(order[: full * batch_size].reshape(full, batch_size), axis=1)
        if not drop_last and n_events > full * batch_size:
            yield np.sort(order[full * batch_size :])
        return
    n_blocks = -(-n_events // batch_size)
    blocks = generator.permutation(n_blocks)
    for first in range(0, n_blocks, window):
        pooled = np.concatenate(
            [
                np.arange(block * batch_size, min((block + 1) * batch_size, n_events))
                for block in blocks[first : first + window]
            ]
        )
        generator.shuffle(pooled)
        for start in range(0, len(pooled), batch_size):
            rows = pooled[start : start + batch_size]
            if drop_last and len(rows) < batch_size:
                continue
            yield np.sort(rows)


def count_batches(n_events: int, batch_size: int, drop_last: bool) -> int:
    """Number of batches :func:`batch_rows` yields per epoch."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    return n_events // batch_size if drop_last else -(-n_events // batch_size)


def per_event_arrays(data: PreparedData) -> list[str]:
    """Names of the arrays of ``data`` with one entry per event (as recorded by the writer)."""
    return data.per_event()


class EventArrays:
    """The per-event arrays of one prepared split, read a batch at a time.

    Args:
        data: a prepared split (:meth:`pd4ml.datasets.base.Dataset.load_data`).
        names: the per-event arrays to read (default: all of them). ``labels`` and ``weights``
            are always included.
        weights: the name of the array used as the per-event sample weight (default:
            ``weights`` when the split has it, else 1 for every event). HiggsML also offers
            ``kaggle_weights``.

    Batches are dicts of fresh (writable) NumPy arrays keyed by array name: ``labels`` is
    int64 for classification and float32 for regression, ``weights`` float32 ``(batch,)``,
    node indices (``neighbours``, ``edges``; stored as small integers) int64, the rest as
    stored. Arrays that are the same for every event are in :attr:`shared`.
    The object pickles by file path (worker processes reopen the memory maps instead of
    copying them).
    """

    def __init__(
        self, data: PreparedData, names: Sequence[str] | None = None, weights: str | None = None
    ) -> None:
        self.data = data
        self.n_events = int(data.labels.shape[0])
        per_event = per_event_arrays(data)
        if names is None:
            chosen = [name for name in per_event if name != "weights"]
        else:
            unknown = [name for name in names if name not in per_event]
            if unknown:
                raise KeyError(
                    f"no per-event array(s) {unknown} in this split; available: {per_event}"
                )
            chosen = [name for name in names if name not in ("labels", "weights")] + ["labels"]
        if weights is not None and weights not in per_event:
            raise KeyError(f"no weight array {weights!r}; per-event arrays: {per_event}")
        if weights is None and "weights" in data:
            weights = "weights"
        self.weight_name = weights
        self.names = tuple(chosen)
        self.shared = {name: np.asarray(data[name]) for name in data.arrays if name in data.shared}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["data"] = _reopen_recipe(self.data)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        from pd4ml.datasets.pipeline import open_prepared

        directory, max_events = state["data"]
        state["data"] = open_prepared(Path(directory), max_events, quiet=True)
        self.__dict__.update(state)

    def __len__(self) -> int:
        return self.n_events

    def read(self, rows: Rows | int, copy: bool = True) -> dict[str, np.ndarray]:
        """One batch (``rows`` a slice or sorted row indices) or one event (``rows`` an int).

        With ``copy=False`` a slice gives read-only views of the memory maps (for consumers
        that copy anyway, such as TensorFlow); otherwise every array is a fresh copy.
        """
        if isinstance(rows, np.ndarray) and not np.issubdtype(rows.dtype, np.integer):
            raise TypeError(f"rows must be integer row numbers or a slice, not {rows.dtype}")
        batch = {name: _rows_of(self.data[name], rows, copy) for name in self.names}
        for name in INDEX_ARRAYS.intersection(batch):  # stored compact (int8/int16/int32)
            batch[name] = batch[name].astype(np.int64)
        labels = batch["labels"]
        batch["labels"] = labels.astype(
            np.int64 if np.issubdtype(labels.dtype, np.integer) else np.float32, copy=False
        )
        if self.weight_name is not None:
            weights = _rows_of(self.data[self.weight_name], rows, False)
            batch["weights"] = np.array(weights, dtype=np.float32)
        else:
            batch["weights"] = np.ones(labels.shape, dtype=np.float32)
        return batch


def _rows_of(array: np.ndarray, rows: Rows | int, copy: bool) -> np.ndarray:
    """``array[rows]`` as a plain ndarray: a view or copy of a slice, or a gather of row indices.

    Row indices are gathered by ``np.take`` in the calling thread (one block copy per row,
    about twice as fast as fancy indexing; out-of-range rows raise ``IndexError``). A parallel
    (numba) gather is faster only on an otherwise idle machine and collapses to a fraction of
    ``np.take``'s speed when other processes compete for the cores, the normal case on shared
    nodes (``benchmarks/bench_adapters.py`` measures both), so it is not used.
    """
    if not isinstance(rows, np.ndarray):
        return np.array(array[rows]) if copy else np.asarray(array[rows])
    return np.asarray(np.take(array, rows, axis=0))


def _reopen_recipe(data: PreparedData) -> tuple[str, int | None]:
    if data.directory is None:
        raise TypeError(
            "this PreparedData was not opened from the cache and cannot be sent to worker "
            "processes; use num_workers=0"
        )
    return str(data.directory), data.max_events


def node_form(features: np.ndarray, kind: str | None) -> np.ndarray:
    """Image features ``(n, C, H, W)`` of a grid graph as nodes ``(n, H·W, C)`` (a view when
    possible); anything else unchanged."""
    if kind == "grid" and features.ndim == 4:
        n, channels, height, width = features.shape
        return np.moveaxis(features.reshape(n, channels, height * width), 1, 2)
    return features


def dense_adjacency(data: PreparedData, rows: Rows) -> np.ndarray:
    """The original pd4ml's dense adjacency of the events ``rows``: ``(n, P, P)`` int8.

    As the original's ``adj_matrix`` (a GCN computes ``A · X``):

    * kNN graphs: ``A[i, j] = 1`` when **i** is among the k nearest neighbours of j (node i
      aggregates from the nodes that chose it — the original's transpose), plus a self-loop on
      every real node (from the node mask, so isolated real nodes have one too);
    * decay trees: mother ↔ daughter (symmetric), plus a self-loop on every particle with a
      mother;
    * grids: the 8-connected neighbourhood, no self-loops, the same for every event (a
      read-only broadcast view, no memory per event).
    """
    kind = check_graph(data)
    n_events = len(range(data.n_events)[rows]) if isinstance(rows, slice) else len(rows)
    if kind == "knn":
        if "adjacency" in data:  # stored as A[i, j] = 1 for j a neighbour of i
            return np.asarray(np.swapaxes(np.asarray(data["adjacency"][rows]), 1, 2))
        real = np.asarray(data["mask"][rows]) if "mask" in data else None
        dense = neighbours_to_dense(
            np.asarray(data["neighbours"][rows]),
            np.asarray(data["neighbour_mask"][rows]),
            self_loops=True,
            real=real,
        )
        return np.ascontiguousarray(np.swapaxes(dense, 1, 2))
    if kind == "decay":
        if "adjacency" in data:
            return np.asarray(data["adjacency"][rows])
        edges = np.asarray(data["edges"][rows])
        valid = np.asarray(data["edge_mask"][rows])
        n_nodes = _node_count(data)
        mothers = np.full((n_events, n_nodes), -1, dtype=np.int64)
        event, slot = np.nonzero(valid)
        mothers[event, edges[event, slot, 1]] = edges[event, slot, 0]
        return decay_tree_dense(mothers)
    grid = grid_dense(data)
    return np.broadcast_to(grid, (n_events, *grid.shape))


def check_graph(data: PreparedData) -> str:
    """The graph kind of a split, after checking that its nodes are the feature nodes."""
    kind = graph_kind(data)
    name = f"{data.metadata.get('dataset', 'this dataset')} {data.metadata.get('split', '')}"
    if kind is None:
        if data.metadata.get("params", {}).get("graph", False):
            raise ValueError(f"{name} has no graph: this dataset (or representation) has none")
        raise ValueError(f"{name} has no graph: load it with load_data(..., graph=True)")
    if kind == "knn":
        nodes = int(data["neighbours"].shape[1])
    elif kind == "decay":
        nodes = _node_count(data)
    else:
        nodes = int(data["grid_neighbours"].shape[0])
    features = data["features"]
    if feature_nodes(features, kind) != nodes:
        raise ValueError(
            f"{name}: the graph has {nodes} nodes but the features {tuple(features.shape[1:])} "
            "do not (CALICE: use representation='cloud' for a graph)"
        )
    return kind


def feature_nodes(features: np.ndarray, kind: str | None) -> int:
    """Number of nodes of per-event ``features`` (image grids: H·W)."""
    if kind == "grid" and features.ndim == 4:
        return int(features.shape[2] * features.shape[3])
    return int(features.shape[1]) if features.ndim >= 2 else 0


def grid_dense(data: PreparedData) -> np.ndarray:
    """The shared grid adjacency ``(P, P)`` int8 (no self-loops)."""
    neighbours = np.asarray(data["grid_neighbours"])
    valid = np.asarray(data["grid_mask"])
    dense: np.ndarray = neighbours_to_dense(neighbours[None], valid[None])[0]
    return dense


def _node_count(data: PreparedData) -> int:
    for name in ("mask", "pdg", "features"):
        if name in data and data[name].ndim >= 2:
            return int(data[name].shape[1])
    raise ValueError("cannot tell the number of nodes of this split")
