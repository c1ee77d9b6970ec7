"""The array store: one writer and one open path for converted and prepared splits.

A split is a directory of ``.npy`` files plus ``meta.json``. The writer records, per array, its
shape, dtype, file size, SHA-256 (computed once when the split is finished: a second read of
each file, usually from the page cache) and whether it has one entry per event
(``per_event``) or describes the detector (``shared``, never cut by ``max_events``). Opening
a split checks only the file sizes against the record (a ``stat`` per file, no hashing), so a
truncated file is found at once; :func:`verify_split` re-hashes every array (``pd4ml verify``).

Big arrays are memory-mapped files whose disk blocks are reserved before anything is written
(``posix_fallocate``), so a full disk is a :class:`~pd4ml.errors.DiskFullError` naming the
path and the bytes needed and free, never a ``SIGBUS`` from writing into a sparse file.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npy_format

from pd4ml.errors import ConversionError, DamagedCacheError
from pd4ml.fetch.diskspace import (
    disk_full_as_error,
)
from pd4ml.npyio import allocate_npy, reserve

#: Version of the split layout (``meta.json`` fields); splits written before are rebuilt.
STORAGE_VERSION = 2

#: What every damaged-cache message says to do.
REBUILD = (
    "; pd4ml rebuilds it from the verified raw files on the next load (load() or load_data() "
    "again); `pd4ml verify` checks every cached array"
)

#: Prefixes of the staging directories of conversions and preparations.
STAGING_PREFIXES = (".convert-", ".prepare-")


# -- disk space ----------------------------------------------------------------------------------
def save_npy(path: Path, array: np.ndarray) -> None:
    """Write ``array`` as ``.npy`` with ordinary file I/O (a full disk is a clear error)."""
    array = np.asarray(array, order="C")  # not ascontiguousarray: it makes 0-d arrays 1-d
    with disk_full_as_error(path, array.nbytes), open(path, "wb") as handle:
        reserve(handle.fileno(), path, 0, array.nbytes + 128)
        np.save(handle, array, allow_pickle=False)
        handle.truncate()


# -- records -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArrayRecord:
    """What is known of one stored array: written into ``meta.json`` as a dict."""

    shape: tuple[int, ...]
    dtype: str
    bytes: int
    sha256: str
    per_event: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "shape": list(self.shape),
            "dtype": self.dtype,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "per_event": self.per_event,
        }

    @classmethod
    def from_json(cls, payload: Mapping[str, Any]) -> ArrayRecord:
        return cls(
            tuple(int(n) for n in payload["shape"]),
            str(payload["dtype"]),
            int(payload["bytes"]),
            str(payload["sha256"]),
            bool(payload["per_event"]),
        )


def file_sha256(path: Path, chunk: int = 8 << 20) -> str:
    """SHA-256 of a file, read in chunks (bounded memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def record_array(path: Path, per_event: bool) -> ArrayRecord:
    """Read the header of ``path`` and hash the file."""
    with open(path, "rb") as handle:
        major, _ = npy_format.read_magic(handle)
        read_header = (
            npy_format.read_array_header_1_0 if major == 1 else npy_format.read_array_header_2_0
        )
        shape, _, dtype = read_header(handle, max_header_size=1 << 20)
    return ArrayRecord(
        tuple(int(n) for n in shape),
        np.dtype(dtype).str,
        path.stat().st_size,
        file_sha256(path),
        per_event and len(shape) > 0,
    )


# -- writing -------------------------------------------------------------------------------------
class ArrayWriter:
    """Collects the arrays a converter or preparation produces, split by split, as ``.npy``.

    Use :meth:`empty` to fill big arrays chunk by chunk (a memory-mapped ``.npy`` whose disk
    space is reserved first), or :meth:`save` for small ones; arrays that are the same for
    every event (a grid's neighbour table, station positions) are written with
    ``per_event=False``. Then :meth:`describe` (converters) or :meth:`describe_arrays`
    (preparations) each split.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.splits: dict[str, dict[str, Any]] = {}
        self.shared: dict[str, set[str]] = {}

    def _path(self, split: str, name: str) -> Path:
        folder = self.directory / split
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{name}.npy"

    def _mark(self, split: str, name: str, per_event: bool) -> None:
        names = self.shared.setdefault(split, set())
        if per_event:
            names.discard(name)
        else:
            names.add(name)

    def empty(
        self,
        split: str,
        name: str,
        shape: Sequence[int],
        dtype: np.dtype[Any] | type | str,
        *,
        per_event: bool = True,
    ) -> np.memmap[Any, Any]:
        """A writable memory-mapped array that becomes ``<split>/<name>.npy``."""
        self._mark(split, name, per_event)
        return allocate_npy(self._path(split, name), shape, dtype)

    def save(self, split: str, name: str, array: np.ndarray, *, per_event: bool = True) -> None:
        """Write a whole array as ``<split>/<name>.npy``."""
        self._mark(split, name, per_event)
        save_npy(self._path(split, name), np.asarray(array))

    def path(self, split: str, name: str, *, per_event: bool = True) -> Path:
        """Where array ``name`` of ``split`` is written (for converters that stream into it)."""
        self._mark(split, name, per_event)
        return self._path(split, name)

    def describe(
        self,
        split: str,
        *,
        features: Sequence[str],
        labels: str,
        weights: str | None = None,
        extra: Sequence[str] = (),
        info: Mapping[str, Any] | None = None,
    ) -> None:
        """Declare which arrays of ``split`` are the inputs X (in order), labels and weights."""
        names = [*features, labels, *([weights] if weights else []), *extra]
        self._check_written(split, names)
        self.splits[split] = {
            "features": list(features),
            "labels": labels,
            "weights": weights,
            "extra": list(extra),
            "arrays": names,
            "info": dict(info or {}),
        }

    def describe_arrays(self, split: str, names: Sequence[str], info: Mapping[str, Any]) -> None:
        """Declare the arrays of a prepared ``split`` (see :meth:`Dataset.load_data`)."""
        self._check_written(split, names)
        self.splits[split] = {"arrays": list(names), "info": dict(info)}

    def _check_written(self, split: str, names: Iterable[str]) -> None:
        for name in names:
            if not (self.directory / split / f"{name}.npy").is_file():
                raise ConversionError(f"{split}/{name} was declared but not written")

    def records(self, split: str) -> dict[str, dict[str, Any]]:
        """The :class:`ArrayRecord` of every declared array of ``split`` (hashes the files)."""
        shared = self.shared.get(split, set())
        return {
            name: record_array(self.directory / split / f"{name}.npy", name not in shared).to_json()
            for name in self.splits[split]["arrays"]
        }


# -- opening -------------------------------------------------------------------------------------
def array_records(meta: Mapping[str, Any]) -> dict[str, ArrayRecord] | None:
    """The per-array records of a split's ``meta.json``, or ``None`` for an older layout."""
    if meta.get("storage_version") != STORAGE_VERSION or not isinstance(
        meta.get("array_files"), dict
    ):
        return None
    return {name: ArrayRecord.from_json(value) for name, value in meta["array_files"].items()}


def damaged_arrays(directory: Path, meta: Mapping[str, Any]) -> list[str]:
    """Arrays of a split whose file is missing or has the wrong size (a ``stat`` each)."""
    records = array_records(meta) or {}
    problems = []
    for name, record in records.items():
        try:
            size = (directory / f"{name}.npy").stat().st_size
        except OSError:
            problems.append(f"{name}.npy is missing")
            continue
        if size != record.bytes:
            problems.append(f"{name}.npy has {size:,} bytes, {record.bytes:,} were written")
    return problems


def open_arrays(
    directory: Path, meta: Mapping[str, Any], max_events: int | None
) -> tuple[dict[str, np.ndarray], frozenset[str]]:
    """Memory-map every array of a split; per-event arrays are cut to ``max_events``.

    Returns the arrays by name and the names of the shared (not per-event) arrays. A file of
    the wrong size is a :class:`~pd4ml.errors.DamagedCacheError`.
    """
    records = array_records(meta)
    if records is None:
        raise DamagedCacheError(f"{directory} was written by an older pd4ml{REBUILD}")
    problems = damaged_arrays(directory, meta)
    if problems:
        raise DamagedCacheError(f"{directory}: {'; '.join(problems)}{REBUILD}")
    arrays: dict[str, np.ndarray] = {}
    for name, record in records.items():
        path = directory / f"{name}.npy"
        try:
            array: np.ndarray = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as error:
            raise DamagedCacheError(f"{path} cannot be opened ({error}){REBUILD}") from error
        if record.per_event and max_events is not None:
            array = array[:max_events]
        arrays[name] = array
    shared = frozenset(name for name, record in records.items() if not record.per_event)
    return arrays, shared


def verify_split(directory: Path, meta: Mapping[str, Any]) -> list[str]:
    """Re-hash every array of a split against its record; the problems found (empty: good)."""
    records = array_records(meta)
    if records is None:
        return [f"{directory}: written by an older pd4ml (no checksums); it will be rebuilt"]
    problems = damaged_arrays(directory, meta)
    if problems:
        return [f"{directory}/{problem}" for problem in problems]
    for name, record in records.items():
        path = directory / f"{name}.npy"
        if file_sha256(path) != record.sha256:
            problems.append(f"{path}: SHA-256 differs from the one recorded when it was written")
    return problems


# -- staging -------------------------------------------------------------------------------------
def staging_directory(parent: Path, prefix: str) -> Path:
    """A new staging directory in ``parent`` (removed by the caller, or later as stale)."""
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))


def remove_stale_staging(parent: Path, prefix: str) -> int:
    """Remove the staging directories ``prefix*`` in ``parent``; bytes freed.

    Only call this while holding the lock under which such directories are made.
    """
    from pd4ml.cache import directory_size

    freed = 0
    for path in sorted(parent.glob(f"{prefix}*")) if parent.is_dir() else []:
        if path.is_dir():
            freed += directory_size(path)
            shutil.rmtree(path, ignore_errors=True)
    return freed
