"""Inter-process locks around downloads and conversions.

An OS lock (``flock``) is released by the kernel when its holder dies, so a lock left by a killed
process never blocks. On file systems without working ``flock`` (some NFS mounts) a lock file
with the holder's host and pid is used instead and taken over once that holder is gone.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import filelock

from pd4ml._logging import get_logger

log = get_logger("fetch")
_WAIT_LOG_INTERVAL = 10.0


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _soft_lock(path: Path, description: str) -> Iterator[None]:
    """Lock by exclusive creation of ``path``; stale locks of dead local processes are removed."""
    me = {"host": socket.gethostname(), "pid": os.getpid()}
    started = last_log = time.monotonic()
    while True:
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder: dict[str, object] = {}
            with contextlib.suppress(OSError, ValueError):
                holder = json.loads(path.read_text())
            pid = holder.get("pid")
            if (
                holder.get("host") == me["host"]
                and isinstance(pid, int)
                and not _process_alive(pid)
            ):
                log.warning("removing stale lock %s of dead process %d", path, pid)
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                continue
            now = time.monotonic()
            if now - last_log > _WAIT_LOG_INTERVAL:
                log.info("waiting %.0f s for %s (lock %s)", now - started, description, path)
                last_log = now
            time.sleep(0.2)
            continue
        with os.fdopen(descriptor, "w") as handle:
            json.dump(me, handle)
        break
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def exclusive(path: Path, description: str) -> Iterator[None]:
    """Hold an exclusive inter-process lock on ``path`` for the duration of the block.

    Waits as long as another live process holds it (logging every 10 s), since that process is
    doing the work this one would do.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(path))
    started = time.monotonic()
    while True:
        try:
            lock.acquire(timeout=_WAIT_LOG_INTERVAL)
            break
        except filelock.Timeout:
            log.info(
                "waiting %.0f s for another process: %s", time.monotonic() - started, description
            )
        except OSError as error:
            if error.errno not in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EIO):
                raise
            log.info("file system refuses flock (%s); using a lock file", error)
            with _soft_lock(path.with_name(path.name + ".soft"), description):
                yield
            return
    try:
        yield
    finally:
        lock.release()
