"""The original pd4ml's ``load_data`` return value, ``X, y``, from a prepared split.

Without a graph ``X = {"features": [features]}``; with one
``X = {"features": features, "adj_matrix": A}`` (features in node form and the dense
``(n_events, P, P)`` int8 adjacency of the original's conventions, see
:func:`pd4ml.adapters.common.dense_adjacency`). Dense matrices of per-event graphs are written
once, chunk by chunk and under a lock, to ``adj_matrix-v<N>.npy`` beside the prepared split
(memory-mapped: P² bytes per event on disk, nothing in RAM), and reused afterwards; grids are a
read-only broadcast view of one matrix.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from pd4ml._logging import get_logger
from pd4ml.adapters.common import (
    ADJACENCY_VERSION,
    check_graph,
    dense_adjacency,
    graph_kind,
    node_form,
)
from pd4ml.cache import write_json_atomic
from pd4ml.datasets.pipeline import open_prepared
from pd4ml.datasets.results import PreparedData
from pd4ml.datasets.storage import STORAGE_VERSION, record_array
from pd4ml.fetch.locking import exclusive
from pd4ml.npyio import allocate_npy

log = get_logger("adapters")

#: Per-event matrices of at most this many bytes (with ``max_events``) stay in memory.
IN_MEMORY_BYTES = 256 << 20


def adjacency(data: PreparedData) -> np.ndarray:
    """The dense ``(n_events, P, P)`` int8 adjacency of the original pd4ml for ``data``."""
    kind = check_graph(data)
    n_nodes = int(data.features.shape[1]) if data.features.ndim >= 2 else 0
    in_memory = data.max_events is not None and data.n_events * n_nodes**2 <= IN_MEMORY_BYTES
    if kind == "grid" or data.directory is None or in_memory:
        return dense_adjacency(data, slice(None))
    path = data.directory / f"adj_matrix-v{ADJACENCY_VERSION}.npy"
    if not path.is_file():
        with exclusive(data.directory / ".adj_matrix.lock", "writing the dense adjacency"):
            if not path.is_file():
                write_dense_adjacency(data.directory, path)
    dense: np.ndarray = np.load(path, mmap_mode="r", allow_pickle=False)
    return dense[: data.max_events] if data.max_events is not None else dense


def write_dense_adjacency(directory: Path, path: Path, chunk: int = 2048) -> None:
    """Expand the sparse graph of the prepared split in ``directory`` into ``path``."""
    full = open_prepared(directory, None, quiet=True)
    n_events = full.n_events
    first = dense_adjacency(full, slice(0, min(1, n_events)))
    shape = (n_events, *first.shape[1:])
    log.info("writing the dense adjacency %s (%.2f GB) to %s", shape, np.prod(shape) / 1e9, path)
    handle, temporary = tempfile.mkstemp(prefix=".adj_matrix-", suffix=".npy", dir=directory)
    os.close(handle)
    try:
        output = allocate_npy(Path(temporary), shape, np.int8)
        for start in range(0, n_events, chunk):
            stop = min(start + chunk, n_events)
            output[start:stop] = dense_adjacency(full, slice(start, stop))
        output.flush()
        del output
        record = record_array(Path(temporary), per_event=True).to_json()
        os.replace(temporary, path)
        write_json_atomic(
            path.with_name(path.stem + ".meta.json"),
            {"storage_version": STORAGE_VERSION, "array_files": {path.stem: record}},
        )
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def original_inputs(data: PreparedData) -> tuple[dict[str, Any], np.ndarray]:
    """``(X, y)`` as the original pd4ml's ``load_data`` returned them for ``data``'s arrays.

    ``X = {"features": [features]}`` without a graph, ``{"features": nodes, "adj_matrix": A}``
    with one; ``y`` the labels. The arrays are those of ``data`` (its preprocessing); for the
    original's exact preprocessing (shapes, units, label scales) use :mod:`pd4ml.pd4ml`.
    """
    if data.graph:
        features = node_form(data.features, graph_kind(data))
        return {"features": features, "adj_matrix": adjacency(data)}, data.labels
    return {"features": [data.features]}, data.labels
