"""Seeded validation splits for datasets whose archive has no official one."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pd4ml.datasets.base import ArrayWriter
from pd4ml.errors import ConversionError

VALIDATION_FRACTION = 0.1
VALIDATION_SEED = 20210630
_CHUNK = 8_192  # at most this many events per chunk when copying rows into a split
_CHUNK_BYTES = 32 << 20  # and at most about this many bytes


def rows_per_chunk(array: np.ndarray) -> int:
    """Rows of ``array`` per chunk: :data:`_CHUNK`, fewer for wide rows (:data:`_CHUNK_BYTES`)."""
    row_bytes = max(int(np.prod(array.shape[1:], dtype=np.int64)) * array.dtype.itemsize, 1)
    return max(1, min(_CHUNK, _CHUNK_BYTES // row_bytes))


def copy_rows(
    source: np.ndarray,
    rows: np.ndarray,
    output: np.ndarray,
    dtype: np.dtype[Any] | type | None = None,
) -> None:
    """``output[:] = source[rows]`` (cast to ``dtype``), one chunk of rows at a time
    (:func:`rows_per_chunk`).

    ``source`` is usually a memory map: each chunk of rows is sorted before it is gathered,
    so the file is read in order and only one chunk is ever resident. ``rows`` may be in any
    order; ``output`` receives them in the order given.
    """
    step = rows_per_chunk(source)
    for start in range(0, len(rows), step):
        wanted = np.asarray(rows[start : start + step])
        order = np.argsort(wanted, kind="stable")
        gathered = np.empty((len(wanted), *source.shape[1:]), dtype=dtype or source.dtype)
        gathered[order] = source[wanted[order]]
        output[start : start + len(wanted)] = gathered


def copy_array(source: np.ndarray, output: np.ndarray) -> None:
    """``output[:] = source`` (with a cast), one chunk of rows at a time."""
    if source.ndim == 0:
        output[...] = source
        return
    step = rows_per_chunk(source)
    for start in range(0, len(source), step):
        output[start : start + step] = source[start : start + step]


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Bool mask of a seeded, per-class random ``fraction`` of the events."""
    generator = np.random.default_rng(seed)
    held = np.zeros(len(labels), dtype=bool)
    for value in np.unique(labels):
        members = np.flatnonzero(labels == value)
        chosen = generator.choice(members, size=round(fraction * len(members)), replace=False)
        held[chosen] = True
    return held


def split_off_validation(
    path: Path,
    writer: ArrayWriter,
    arrays: Mapping[str, Path],
    labels: np.ndarray,
    stratify: bool,
    info: Mapping[str, Any],
    features: list[str],
    shared: Collection[str] = (),
) -> None:
    """Write ``train`` and ``val`` from the training arrays (``name → .npy path``) of a file.

    ``val`` is a seeded 10 % (per class when ``stratify``); the arrays named in ``shared``
    are not per event (e.g. a detector geometry) and are copied to both splits unchanged.
    Per-event arrays are copied chunk by chunk into memory-mapped outputs (in their stored
    dtype), so memory does not grow with the number of events.
    """
    held = (
        stratified_holdout(labels, VALIDATION_FRACTION, VALIDATION_SEED)
        if stratify
        else np.random.default_rng(VALIDATION_SEED).random(len(labels)) < VALIDATION_FRACTION
    )
    for split, rows in (("train", np.flatnonzero(~held)), ("val", np.flatnonzero(held))):
        for name, source in arrays.items():
            array = np.load(source, mmap_mode="r", allow_pickle=False)
            if name not in shared:
                if array.shape[:1] != labels.shape:
                    raise ConversionError(
                        f"{path}: {name} has {array.shape[:1]} entries for {len(labels)} events"
                    )
                output = writer.empty(split, name, (len(rows), *array.shape[1:]), array.dtype)
                copy_rows(array, rows, output)
                output.flush()
                del output
            else:
                writer.save(split, name, np.asarray(array), per_event=False)
        writer.save(split, "labels", labels[rows])
        writer.describe(
            split,
            features=features,
            labels="labels",
            info={
                **info,
                "validation_fraction": VALIDATION_FRACTION,
                "validation_seed": VALIDATION_SEED,
                "source_file": path.name,
            },
        )
