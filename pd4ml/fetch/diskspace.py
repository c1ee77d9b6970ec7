"""Free-space checks and full-disk errors for downloads.

A full disk must not surface as a bare ``OSError: [Errno 28]``: it becomes a
:class:`~pd4ml.errors.DiskFullError` that names the file, the bytes still needed and free, and
the remedy. The partial file is left in place, so the download resumes once there is room.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from pd4ml.errors import DiskFullError

_DISK_FULL_ERRNOS = frozenset(
    code for code in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if code is not None
)


def format_bytes(n_bytes: int) -> str:
    """``n_bytes`` for people: ``1.23 GB (1234567890 bytes)``."""
    size = float(n_bytes)
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if abs(size) < 1000 or unit == "TB":
            human = f"{int(size)} bytes" if unit == "bytes" else f"{size:.2f} {unit}"
            break
        size /= 1000
    return human if n_bytes < 1000 else f"{human} ({n_bytes} bytes)"


def free_bytes(directory: Path) -> int | None:
    """Bytes free for this user on the file system holding ``directory`` (None: unknown)."""
    for candidate in (directory, *directory.parents):
        if candidate.exists():
            try:
                return int(shutil.disk_usage(candidate).free)
            except OSError:
                return None
    return None


def disk_full_error(
    path: Path, *, needed: int | None, free: int | None, resumable_from: int | None = None
) -> DiskFullError:
    """The error for a file that does not fit: what, how much, and what to do.

    ``needed`` and ``free`` are in bytes (None where unknown); ``resumable_from`` is the number of
    bytes kept in the partial file, when there is one to resume.
    """
    amounts = []
    if needed is not None:
        amounts.append(f"{format_bytes(needed)} still needed")
    if free is not None:
        amounts.append(f"{format_bytes(free)} free")
    detail = f" ({', '.join(amounts)})" if amounts else ""
    kept = ""
    if resumable_from is not None:
        kept = (
            f" The {format_bytes(resumable_from)} already received are kept in {path}; the "
            "download resumes from there once there is room."
        )
    error = DiskFullError(
        f"not enough disk space for {path}{detail}.{kept} Free space on that disk, or set "
        "PD4ML_DATA_DIR (or pass path=/--data-dir) to a directory on a disk with room."
    )
    # recognisable as ENOSPC by code that inspects OSError.errno; no ``filename``, which would
    # turn the message into "[Errno 28] None: path"
    error.errno = errno.ENOSPC
    return error


def is_disk_full(error: BaseException) -> bool:
    """True for an ``OSError`` that means the disk (or the user's quota) is full."""
    return isinstance(error, OSError) and error.errno in _DISK_FULL_ERRNOS


def ensure_free_space(path: Path, needed: int | None) -> None:
    """Raise :class:`DiskFullError` before writing ``needed`` more bytes to ``path`` when the
    file system holding it has fewer free (nothing when ``needed`` or the free space is
    unknown)."""
    if needed is None or needed <= 0:
        return
    free = free_bytes(path.parent)
    if free is not None and free < needed:
        raise disk_full_error(path, needed=needed, free=free)


@contextlib.contextmanager
def disk_full_as_error(
    path: Path, needed: int | None = None, resumable: Callable[[], int | None] | None = None
) -> Iterator[None]:
    """Turn an ``ENOSPC``/``EDQUOT`` ``OSError`` raised in the block into :class:`DiskFullError`.

    ``needed`` is the number of bytes the block was to write; ``resumable`` returns the bytes
    kept in a partial file at the moment of failure (None: nothing to resume).
    """
    try:
        yield
    except DiskFullError:
        raise
    except OSError as error:
        if not is_disk_full(error):
            raise
        kept = resumable() if resumable is not None else None
        remaining = needed - kept if needed is not None and kept is not None else needed
        raise disk_full_error(
            path, needed=remaining, free=free_bytes(path.parent), resumable_from=kept
        ) from error
