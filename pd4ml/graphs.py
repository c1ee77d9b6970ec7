"""Graph adjacency builders shared by the datasets — sparse first.

* :func:`knn_neighbours` — k nearest neighbours on padded point clouds (real nodes in any
  slots), compiled (numba) for 2-D points, never linking padding and never a node to itself.
  Returns per-node neighbour indices and a validity mask, ``(n_events, n_nodes, k)`` each.
* :func:`neighbours_to_edge_index` — the same as PyTorch-Geometric style ``edge_index``.
* :func:`neighbours_to_dense` — the dense ``(n_events, n_nodes, n_nodes)`` form, for
  compatibility with models written against the original pd4ml.
* :func:`decay_tree_edges` — mother ↔ daughter edges from mother indices.
* :func:`grid_neighbours` — the 8- (or 4-) connected neighbourhood of a fixed grid, built once
  and shared by all events.

Edge direction convention: neighbour ``j`` in row ``i`` is an edge ``j → i`` (node ``i``
aggregates from ``j``), i.e. ``edge_index = [[j, …], [i, …]]`` (source, target).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pd4ml.errors import Pd4mlError

_CHUNK_EVENTS = 256


class GraphInputError(Pd4mlError, ValueError):
    """Arrays given to a graph builder whose shapes do not fit together (the message says which)."""


def knn_neighbours(
    points: np.ndarray, mask: np.ndarray, k: int, chunk: int = _CHUNK_EVENTS
) -> tuple[np.ndarray, np.ndarray]:
    """k nearest neighbours of every real node, excluding padding and the node itself.

    Real nodes may be in any slots (padding before, between or after them). Squared distances
    are computed in float32 from the coordinates rounded to float32, ``Σ (a - b)²`` with each
    operation rounded to float32, in both implementations (the compiled kernel for 2-D points
    and the NumPy definition :func:`_knn_block`), which give identical results; ranking is by
    (squared distance, index), nearest first, so exact ties go to the lower index.

    Args:
        points: ``(n_events, n_nodes, n_dims)`` coordinates (e.g. Δη, Δφ).
        mask: ``(n_events, n_nodes)`` bool, True for real nodes.
        k: neighbours per node (``>= 0``).
        chunk: events per vectorised block of the NumPy path (bounds its memory:
            ``chunk × n_nodes²`` floats).

    Returns:
        ``(neighbours, valid)``: ``(n_events, n_nodes, k)`` int32 indices ordered by distance
        (nearest first; ``-1`` where fewer than ``k`` real neighbours exist) and the bool mask of
        valid entries. Rows of padded nodes are all invalid.

    Raises:
        GraphInputError: ``points`` is not 3-D, ``mask`` is not ``points.shape[:2]``, or
            ``k < 0``.
    """
    if points.ndim != 3 or np.shape(mask) != points.shape[:2]:
        raise GraphInputError(
            f"knn_neighbours: points must be (n_events, n_nodes, n_dims) and mask "
            f"(n_events, n_nodes); got points {points.shape} and mask {np.shape(mask)}"
        )
    if k < 0:
        raise GraphInputError(f"knn_neighbours: k must be >= 0, got {k}")
    mask = np.asarray(mask, dtype=bool)
    n_events, n_nodes = mask.shape
    kernel = _compiled_knn(k) if points.shape[-1] == 2 and k > 0 else None
    if kernel is not None:  # writes every element
        neighbours = np.empty((n_events, n_nodes, k), dtype=np.int32)
        valid = np.empty((n_events, n_nodes, k), dtype=bool)
        kernel(
            np.ascontiguousarray(points, dtype=np.float32),
            np.ascontiguousarray(mask),
            neighbours,
            valid,
        )
        return neighbours, valid
    neighbours = np.full((n_events, n_nodes, k), -1, dtype=np.int32)
    valid = np.zeros((n_events, n_nodes, k), dtype=bool)
    # slots after the last real node of every event of a block are padding: cut them
    last = np.where(mask.any(axis=1), n_nodes - np.argmax(mask[:, ::-1], axis=1), 0)
    for start in range(0, n_events, chunk):
        stop = min(start + chunk, n_events)
        width = int(last[start:stop].max(initial=0))
        if width < 2 or k == 0:
            continue
        neighbours[start:stop, :width], valid[start:stop, :width] = _knn_block(
            points[start:stop, :width].astype(np.float32), mask[start:stop, :width], k
        )
    return neighbours, valid


def _knn_block(points: np.ndarray, mask: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The NumPy definition of the kNN of one block: ``points`` ``(n_events, width, n_dims)``
    float32, ``mask`` ``(n_events, width)`` bool (real nodes in any slots) → ``(neighbours,
    valid)`` ``(n_events, width, k)``.

    Squared distances are ``difference²`` summed in float32 (each operation rounded to
    float32). Each candidate is ranked by the key ``(distance bits << 32) | index`` (uint64;
    non-negative floats order like their bit patterns), a total order, so that ties go to the
    lower index whatever the selection algorithm does.
    """
    n_events, width, _ = points.shape
    difference = points[:, :, None, :] - points[:, None, :, :]
    distance = np.einsum("enmc,enmc->enm", difference, difference)
    distance[~np.broadcast_to(mask[:, None, :], distance.shape)] = np.inf
    diagonal = np.arange(width)
    distance[:, diagonal, diagonal] = np.inf
    take = min(k, width - 1)
    keys = (distance.view(np.uint32).astype(np.uint64) << np.uint64(32)) | np.arange(
        width, dtype=np.uint64
    )
    nearest_keys = np.sort(np.partition(keys, take - 1, axis=-1)[..., :take], axis=-1)
    nearest = (nearest_keys & np.uint64(0xFFFFFFFF)).astype(np.int32)
    nearest_distance = (nearest_keys >> np.uint64(32)).astype(np.uint32).view(np.float32)
    ok = np.isfinite(nearest_distance) & mask[:, :, None]
    neighbours = np.full((n_events, width, k), -1, dtype=np.int32)
    valid = np.zeros((n_events, width, k), dtype=bool)
    neighbours[..., :take] = np.where(ok, nearest, -1)
    valid[..., :take] = ok
    return neighbours, valid


def index_dtype(n_nodes: int) -> np.dtype[Any]:
    """The smallest signed integer type that holds node indices ``0 … n_nodes - 1`` and ``-1``:
    int8 up to 128 nodes, int16 up to 32,768, else int32 (for compact stored graphs)."""
    for dtype in (np.int8, np.int16, np.int32):
        if n_nodes - 1 <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def neighbours_to_edge_index(neighbours: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``(2, n_edges)`` int64 ``[source, target]`` of one event's ``(n_nodes, k)`` neighbours."""
    target, slot = np.nonzero(valid)
    source = neighbours[target, slot]
    return np.stack([source, target]).astype(np.int64)


def neighbours_to_dense(
    neighbours: np.ndarray,
    valid: np.ndarray,
    self_loops: bool = False,
    real: np.ndarray | None = None,
) -> np.ndarray:
    """Dense ``(n_events, n_nodes, n_nodes)`` int8 adjacency ``A[e, i, j] = 1`` for ``j → i``.

    With ``self_loops``, ``A[e, i, i] = 1`` for every real node: ``real`` ``(n_events,
    n_nodes)`` bool says which (default: the nodes with at least one neighbour, which misses
    isolated real nodes — pass the node mask where there is one).
    """
    n_events, n_nodes, _ = neighbours.shape
    dense = np.zeros((n_events, n_nodes, n_nodes), dtype=np.int8)
    event, node, slot = np.nonzero(valid)
    dense[event, node, neighbours[event, node, slot]] = 1
    if self_loops:
        event, node = np.nonzero(valid.any(axis=-1) if real is None else real)
        dense[event, node, node] = 1
    return dense


def decay_tree_edges(mothers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mother ↔ daughter edges of decay trees, as per-node neighbour arrays.

    Args:
        mothers: ``(n_events, n_particles)`` index of each particle's mother, ``-1`` for roots
            and padding.

    Returns:
        ``(edges, valid)`` with ``edges`` ``(n_events, n_edges_max, 2)`` int32 ``[mother,
        daughter]`` pairs (one per particle with a mother, in particle order, ``-1`` padded) and
        ``valid`` ``(n_events, n_edges_max)``. Use both directions for an undirected graph.
    """
    has_mother = mothers >= 0
    n_particles = mothers.shape[1]
    daughters = np.broadcast_to(np.arange(n_particles, dtype=np.int32), mothers.shape)
    order = np.argsort(~has_mother, axis=1, kind="stable")
    width = int(has_mother.sum(axis=1).max(initial=0))
    order = order[:, :width]
    valid = np.take_along_axis(has_mother, order, axis=1)
    edges = np.stack(
        [np.take_along_axis(mothers, order, axis=1), np.take_along_axis(daughters, order, axis=1)],
        axis=-1,
    ).astype(np.int32)
    edges[~valid] = -1
    return edges, valid


def decay_tree_dense(mothers: np.ndarray) -> np.ndarray:
    """The original pd4ml's dense decay adjacency ``(n_events, n, n)`` int8.

    ``A[i, m] = A[m, i] = 1`` for each particle ``i`` with mother ``m``, plus a self-loop on every
    particle that has a mother (roots and padding get none), as the original built it.
    """
    n_events, n_particles = mothers.shape
    dense = np.zeros((n_events, n_particles, n_particles), dtype=np.int8)
    event, particle = np.nonzero(mothers >= 0)
    mother = mothers[event, particle]
    dense[event, particle, mother] = 1
    dense[event, mother, particle] = 1
    dense[event, particle, particle] = 1
    return dense


def _compiled_knn(k: int) -> Any:
    """The numba kernel for ``k`` (:func:`pd4ml._kernels.knn_kernel`), compiled on first use
    (or loaded from numba's on-disk cache); ``None`` when ``PD4ML_NO_NUMBA`` selects the NumPy
    reference path.

    Per event, brute force over its real nodes, without data-dependent branches: a distance row
    per node, a bound on the k-th distance from group minima, and the few candidates within it
    pushed through a sorted list of ``(distance, index)`` keys (ties: lower index first). Same
    result as the NumPy path.
    """
    from pd4ml._kernels import knn_kernel

    return knn_kernel(k)


def grid_neighbours(
    rows: int, columns: int, connectivity: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """Neighbours of every cell of a ``rows × columns`` grid, shared by all events.

    Cells are numbered row-major. ``connectivity`` is 8 (king moves) or 4. Returns
    ``(neighbours, valid)``, each ``(rows * columns, connectivity)``: neighbour indices (-1 where
    a border cell has fewer) and their mask. No self-loops. Memory is O(grid), whatever the
    number of events.
    """
    if connectivity == 8:
        offsets = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0)]
    elif connectivity == 4:
        offsets = [(-1, 0), (0, -1), (0, 1), (1, 0)]
    else:
        raise ValueError("connectivity must be 4 or 8")
    row, column = np.divmod(np.arange(rows * columns), columns)
    neighbour_row = row[:, None] + np.array([dr for dr, _ in offsets])[None, :]
    neighbour_column = column[:, None] + np.array([dc for _, dc in offsets])[None, :]
    valid = (
        (neighbour_row >= 0)
        & (neighbour_row < rows)
        & (neighbour_column >= 0)
        & (neighbour_column < columns)
    )
    neighbours = np.where(valid, neighbour_row * columns + neighbour_column, -1).astype(np.int32)
    return neighbours, valid
