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
_UNREADABLE_LOCK_AGE = 5.0


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder_is_gone(path: Path, host: str) -> bool:
    """True when the lock file's holder is a dead process of this host, or the file is a
    leftover without readable content older than a few seconds."""
    try:
        holder = json.loads(path.read_text())
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        with contextlib.suppress(OSError):
            return time.time() - path.stat().st_mtime > _UNREADABLE_LOCK_AGE
        return False
    pid = holder.get("pid") if isinstance(holder, dict) else None
    same_host = isinstance(holder, dict) and holder.get("host") == host
    return same_host and isinstance(pid, int) and not _process_alive(pid)


@contextlib.contextmanager
def _soft_lock(path: Path, description: str) -> Iterator[None]:
    """Lock by atomically linking a file holding our host and pid to ``path``.

    The file is complete before it appears under ``path`` (written to a temporary name, then
    hard-linked), so a reader never sees a half-written holder. A lock of a dead process on
    this host, or an unreadable leftover, is moved aside and removed.
    """
    host = socket.gethostname()
    mine = path.with_name(f"{path.name}.{host}.{os.getpid()}")
    mine.write_text(json.dumps({"host": host, "pid": os.getpid()}))
    started = last_log = time.monotonic()
    try:
        while True:
            try:
                os.link(mine, path)
                break
            except FileExistsError:
                pass
            if _holder_is_gone(path, host):
                log.warning("removing the stale lock %s", path)
                aside = path.with_name(f"{path.name}.stale.{os.getpid()}")
                with contextlib.suppress(FileNotFoundError):
                    os.rename(path, aside)
                    aside.unlink()
                continue
            now = time.monotonic()
            if now - last_log > _WAIT_LOG_INTERVAL:
                log.info("waiting %.0f s for %s (lock %s)", now - started, description, path)
                last_log = now
            time.sleep(0.2)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            if path.exists() and os.path.samefile(path, mine):
                path.unlink()
        mine.unlink(missing_ok=True)


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


@contextlib.contextmanager
def try_exclusive(path: Path) -> Iterator[bool]:
    """Take the lock on ``path`` without waiting: yields ``True`` while this process holds it,
    ``False`` when another live process does (its work is running). For cleaning up after
    killed processes: remove their leftovers only inside ``with try_exclusive(...) as held:
    if held: ...``, so a writer cannot start meanwhile."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        yield False
        return
    except OSError as error:
        if error.errno not in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EIO):
            raise
        soft = path.with_name(path.name + ".soft")
        if soft.exists() and not _holder_is_gone(soft, socket.gethostname()):
            yield False
            return
        with _soft_lock(soft, "cleaning up"):
            yield True
        return
    try:
        yield True
    finally:
        lock.release()
