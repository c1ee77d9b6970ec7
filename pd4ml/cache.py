"""Where things live on disk, and how they get there atomically.

Layout under a cache root (the writable user cache, or a read-only shared root)::

    <root>/<dataset>/<version>/raw/<key>                     verified archive files
    <root>/<dataset>/<version>/raw/.pd4ml/<key>.stamp.json   what was verified (size, mtime, sum)
    <root>/<dataset>/<version>/raw/.pd4ml/<key>.part         an interrupted download (resumable)
    <root>/<dataset>/<version>/record.json                   checksums taken from the record API
    <root>/<dataset>/<version>/arrays/<split>/<name>.npy     converted arrays (+ meta.json)
    <root>/<dataset>/<version>/prepared/<key>/...            preprocessed arrays

Everything that is produced is produced under a temporary name and renamed into place, so a
killed process never leaves a half-written file or directory under a final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pd4ml.config import Settings
from pd4ml.manifest import safe_key

STATE_DIR = ".pd4ml"


@dataclass(frozen=True)
class Stamp:
    """Proof that a file was verified: its size and mtime then, and the checksum it matched.

    A warm load compares size and mtime with ``os.stat`` and trusts the stamp instead of
    re-reading the file; ``pd4ml verify`` re-hashes on demand.
    """

    checksum: str
    size: int
    mtime_ns: int
    origin: str
    url: str | None
    verified_at: float

    def matches(self, path: Path) -> bool:
        """True when ``path`` still has the size and mtime it had when verified."""
        try:
            status = path.stat()
        except OSError:
            return False
        return status.st_size == self.size and status.st_mtime_ns == self.mtime_ns


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON to ``path`` through a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=1, sort_keys=True)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def read_json(path: Path) -> Any | None:
    """Parsed JSON from ``path``, or ``None`` when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Yield a temporary directory beside ``final``; rename it to ``final`` on success.

    On an exception the temporary directory is removed and ``final`` is untouched. If ``final``
    appeared meanwhile (another process won the race), it is replaced.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield temporary
        replace_directory(temporary, final)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def replace_directory(source: Path, final: Path) -> None:
    """Move the directory ``source`` to ``final`` atomically, replacing an older ``final``."""
    if final.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
        os.replace(final, trash / final.name)
        os.replace(source, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(source, final)


#: Directory names inside a version directory.
ARRAYS_DIR = "arrays"
PREPARED_DIR = "prepared"


def convert_lock(version_dir: Path) -> Path:
    """The lock held while the raw files of a version are converted."""
    return version_dir / STATE_DIR / "convert.lock"


def prepare_lock(version_dir: Path, key: str) -> Path:
    """The lock held while the prepared splits of cache key ``key`` are written."""
    return version_dir / PREPARED_DIR / STATE_DIR / f"{key}.lock"


@dataclass(frozen=True)
class Staging:
    """A staging directory, temporary or partial file, and the lock its writer holds (take it
    with :func:`pd4ml.fetch.locking.try_exclusive` before removing)."""

    path: Path
    lock: Path
    kind: str

    def size(self) -> int:
        """Bytes held."""
        return directory_size(self.path) if self.path.is_dir() else self.path.stat().st_size

    def remove(self) -> None:
        """Delete it."""
        if self.path.is_dir():
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            self.path.unlink(missing_ok=True)


class Cache:
    """Paths of the user cache and the read-only shared layers for given :class:`Settings`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.data_dir

    # -- layout -----------------------------------------------------------------------------
    def version_dir(self, dataset: str, version: str, root: Path | None = None) -> Path:
        """``<root>/<dataset>/<version>`` (user cache unless ``root`` is given)."""
        safe_key(dataset)
        safe_key(version)
        return (root or self.root) / dataset / version

    def raw_path(self, dataset: str, version: str, key: str, root: Path | None = None) -> Path:
        """Final location of an archive file."""
        return self.version_dir(dataset, version, root) / "raw" / safe_key(key)

    def state_path(self, raw_path: Path, suffix: str) -> Path:
        """A bookkeeping file beside a raw file (stamp, partial download, lock)."""
        return raw_path.parent / STATE_DIR / f"{raw_path.name}{suffix}"

    def arrays_dir(
        self, dataset: str, version: str, root: Path | None = None, variant: str = ""
    ) -> Path:
        """Directory of the converted arrays of a dataset version."""
        name = f"{ARRAYS_DIR}-{variant}" if variant else ARRAYS_DIR
        return self.version_dir(dataset, version, root) / name

    def record_path(self, dataset: str, version: str) -> Path:
        """Where checksums taken from the archive's record API are recorded."""
        return self.version_dir(dataset, version) / "record.json"

    def shared_roots(self) -> tuple[Path, ...]:
        """The read-only layers, in search order."""
        return self.settings.shared_dirs

    # -- stamps -----------------------------------------------------------------------------
    def _shared_stamp_path(self, path: Path) -> Path:
        digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:32]
        return self.root / STATE_DIR / "shared-stamps" / f"{digest}.json"

    def stamp_locations(self, path: Path) -> list[Path]:
        """Where a stamp for ``path`` may live: beside it, or (read-only file) in the cache."""
        return [self.state_path(path, ".stamp.json"), self._shared_stamp_path(path)]

    def read_stamp(self, path: Path) -> Stamp | None:
        """The stamp of ``path`` if one exists and still matches size and mtime."""
        for location in self.stamp_locations(path):
            payload = read_json(location)
            if not isinstance(payload, dict):
                continue
            try:
                stamp = Stamp(**payload)
            except TypeError:
                continue
            if stamp.matches(path):
                return stamp
        return None

    def write_stamp(
        self, path: Path, checksum: str, origin: str, url: str | None = None, *, beside: bool = True
    ) -> Stamp:
        """Record that ``path`` was verified: beside it (when ``beside`` and writable), else in
        the user cache. Files of a read-only shared layer always get ``beside=False``."""
        status = path.stat()
        stamp = Stamp(
            checksum=checksum,
            size=status.st_size,
            mtime_ns=status.st_mtime_ns,
            origin=origin,
            url=url,
            verified_at=time.time(),
        )
        next_to_file, in_cache = self.stamp_locations(path)
        if beside:
            try:
                write_json_atomic(next_to_file, asdict(stamp))
                return stamp
            except OSError:
                pass
        write_json_atomic(in_cache, asdict(stamp))
        return stamp

    # -- bookkeeping ------------------------------------------------------------------------
    def usage(self) -> dict[tuple[str, str], int]:
        """Bytes used per (dataset, version) in the user cache."""
        sizes: dict[tuple[str, str], int] = {}
        if not self.root.is_dir():
            return sizes
        for dataset_dir in sorted(self.root.iterdir()):
            if not dataset_dir.is_dir() or dataset_dir.name.startswith("."):
                continue
            for version_dir in sorted(dataset_dir.iterdir()):
                if version_dir.is_dir():
                    sizes[(dataset_dir.name, version_dir.name)] = directory_size(version_dir)
        return sizes

    def staging(self) -> list[Staging]:
        """Staging directories (and temporary files) of conversions and preparations in the
        user cache, with the lock their writer holds: left behind by a killed process unless
        that lock is held now."""
        found: list[Staging] = []
        if not self.root.is_dir():
            return found
        for version_dir in sorted(self.root.glob("*/*")):
            if not version_dir.is_dir() or version_dir.parent.name.startswith("."):
                continue
            for path in sorted(version_dir.glob(f"{ARRAYS_DIR}*/.convert-*")):
                found.append(Staging(path, convert_lock(version_dir), "conversion"))
            for key_dir in sorted((version_dir / PREPARED_DIR).glob("*")):
                if not key_dir.is_dir() or key_dir.name.startswith("."):
                    continue
                lock = prepare_lock(version_dir, key_dir.name)
                for pattern in (".prepare-*", ".statistics.tmp-*", ".statistics.old-*"):
                    for path in sorted(key_dir.glob(pattern)):
                        found.append(Staging(path, lock, "preparation"))
                for path in sorted(key_dir.glob("*/.adj_matrix-*.npy")):
                    found.append(Staging(path, path.parent / ".adj_matrix.lock", "adjacency"))
        return found

    def partial_downloads(self) -> list[Staging]:
        """Interrupted downloads (``raw/.pd4ml/<file>.part``) with their download locks."""
        if not self.root.is_dir():
            return []
        return [
            Staging(path, path.with_name(path.name[: -len(".part")] + ".lock"), "download")
            for path in sorted(self.root.rglob("*.part"))
            if path.parent.name == STATE_DIR
        ]

    def leftovers(self) -> list[Staging]:
        """Everything a killed process can leave in the user cache: interrupted downloads,
        staging of conversions and preparations, and the temporary directories of
        :func:`atomic_directory` (whose writers hold ``<parent>/.pd4ml/<name>.lock``)."""
        found = self.partial_downloads() + self.staging()
        known = {entry.path for entry in found}
        if self.root.is_dir():
            for path in sorted(self.root.rglob(".*.tmp-*")):
                if path in known or not path.is_dir():
                    continue
                name = path.name[1:].split(".tmp-")[0]
                found.append(Staging(path, path.parent / STATE_DIR / f"{name}.lock", "staging"))
        return found


def directory_size(path: Path) -> int:
    """Total size of the regular files below ``path`` in bytes."""
    total = 0
    for directory, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(directory, name)).st_size
    return total
