"""Provenance of a benchmark record: the code, the machine, the memory and the time.

``code_version()`` and ``hardware(threads)`` give the record's ``code`` and ``hardware`` blocks;
:class:`MemorySampler` measures its ``memory`` block::

    with MemorySampler() as memory:
        train_and_score()
    record["memory"] = memory.to_json()
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import platform
import shutil
import socket
import subprocess
import sys
import threading
import types
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

import pd4ml
from pd4ml._version import __version__

logger = logging.getLogger("pd4ml")

#: ``code.git_revision`` when pd4ml was not imported from a git checkout (or git is missing).
NOT_A_CHECKOUT = "unknown (not a git checkout)"
_GIT_TIMEOUT_SECONDS = 5.0
#: Variables that would point git at another repository than the one holding the package.
_GIT_VARIABLES = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_CEILING_DIRECTORIES")


def utc_now() -> str:
    """The current time in UTC, ISO 8601 with milliseconds: ``"2024-05-01T12:00:00.123+00:00"``
    (``datetime.fromisoformat`` reads it back on every supported Python)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _git(directory: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key not in _GIT_VARIABLES}
    environment["LC_ALL"] = "C"
    return subprocess.run(
        ["git", "-C", str(directory), *arguments],
        capture_output=True,
        text=True,
        timeout=_GIT_TIMEOUT_SECONDS,
        env=environment,
        check=False,
    )


def git_revision(package_directory: Path | None = None) -> str:
    """The git commit of the source tree ``package_directory`` (default: the imported ``pd4ml``
    package) lives in, ``"<sha>-dirty"`` when tracked files under that tree are modified, and
    :data:`NOT_A_CHECKOUT` when the package is not tracked by a git checkout (an installed
    wheel, even inside a repository's virtual environment) or git is not installed.

    Each git call has a 5 s timeout; a git that fails otherwise gives ``"unknown (git: …)"``.
    """
    package = Path(package_directory or Path(pd4ml.__file__).resolve().parent)
    tree = package.parent
    if shutil.which("git") is None or not package.is_dir():
        return NOT_A_CHECKOUT
    try:
        tracked = _git(package, "ls-files", "--", ".")
        if tracked.returncode != 0 or not tracked.stdout.strip():
            return NOT_A_CHECKOUT  # not a repository, or one that does not track the package
        head = _git(tree, "rev-parse", "HEAD")
        if head.returncode != 0:
            lines = head.stderr.strip().splitlines()
            return f"unknown (git: {lines[-1] if lines else 'rev-parse HEAD failed'})"
        status = _git(tree, "status", "--porcelain", "--untracked-files=no", "--", ".")
    except subprocess.TimeoutExpired:
        return f"unknown (git did not answer within {_GIT_TIMEOUT_SECONDS:g} s)"
    except OSError as error:
        return f"unknown (git: {error})"
    revision = head.stdout.strip()
    if status.returncode != 0:
        return f"{revision}-unknown-state"
    return f"{revision}-dirty" if status.stdout.strip() else revision


def _torch_version() -> str:
    torch = sys.modules.get("torch")
    if isinstance(torch, types.ModuleType) and hasattr(torch, "__version__"):
        return str(torch.__version__)
    try:  # without importing torch (seconds)
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


_SOURCE_SUFFIXES = (".py", ".toml", ".json")
_source_digests: dict[tuple[tuple[str, int, int], ...], str] = {}


#: Modules that present results but never change one (an edit to them is not a new cell).
PRESENTATION_MODULES = frozenset(
    {
        "pd4ml/cli.py",
        "pd4ml/bench/cli.py",
        "pd4ml/bench/display.py",
        "pd4ml/bench/leaderboard.py",
        "pd4ml/bench/report.py",
        "pd4ml/bench/published.py",
        "pd4ml/bench/citations.py",
    }
)


def _source_files(roots: list[Path]) -> list[tuple[str, Path]]:
    files = []
    for root in roots:
        for path in root.rglob("*"):
            label = f"{root.name}/{path.relative_to(root).as_posix()}"
            if (
                path.suffix in _SOURCE_SUFFIXES
                and "__pycache__" not in path.parts
                and not path.name.startswith(".")  # editor lock and swap files
                and label not in PRESENTATION_MODULES
                and path.is_file()  # no dangling links
            ):
                files.append((label, path))
    return sorted(files)


def source_digest(roots: list[Path] | None = None) -> str:
    """SHA-256 (16 hex characters) of pd4ml's own source: every ``.py``, ``.toml`` and
    ``.json`` file of the imported ``pd4ml`` package and of ``pd4ml.reference_models`` (and the
    bundled manifests), by relative path and content.

    Any edit changes it, committed or not, tracked or not, so two different working trees on
    one commit never share a benchmark cell, and an installed wheel is identified by its files
    rather than its version string alone. The modules that only present results
    (:data:`PRESENTATION_MODULES`: the command lines, the display, the leaderboard, report,
    published figures and citations) are left out, so editing them recomputes nothing. It
    describes the files on disk (not code changed in a running interpreter), memoised on their
    sizes and modification times.
    """
    if roots is None:
        roots = [Path(pd4ml.__file__).resolve().parent]
        for name in ("pd4ml.reference_models", "pd4ml.datasets_manifest"):
            module = sys.modules.get(name) or importlib.import_module(name)
            location = Path(str(getattr(module, "__file__", "") or "")).resolve().parent
            if location.is_dir() and not location.is_relative_to(roots[0]):
                roots.append(location)
    files = []
    for label, path in _source_files(roots):
        try:
            files.append((label, path, path.stat()))
        except OSError:  # removed while we looked
            continue
    stamp = tuple((label, info.st_size, info.st_mtime_ns) for label, _, info in files)
    if stamp not in _source_digests:
        digest = hashlib.sha256()
        for label, path, _ in files:
            try:
                content = path.read_bytes()
            except OSError:
                continue
            digest.update(label.encode() + b"\0" + content + b"\0")
        _source_digests.clear()
        _source_digests[stamp] = digest.hexdigest()[:16]
    return _source_digests[stamp]


def code_version() -> dict[str, str]:
    """The record's ``code`` block: ``pd4ml_version``, ``git_revision`` (:func:`git_revision`),
    ``source_digest`` (:func:`source_digest`), ``python``, ``torch`` (``"not installed"`` if
    missing) and ``numpy`` versions."""
    return {
        "pd4ml_version": __version__,
        "git_revision": git_revision(),
        "source_digest": source_digest(),
        "python": platform.python_version(),
        "torch": _torch_version(),
        "numpy": np.__version__,
    }


def cpu_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU model (``model name`` of ``cpuinfo``, else ``platform.processor()``, else the
    machine architecture, else ``"unknown"``)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if (
                    key.strip() in ("model name", "Model", "Hardware", "cpu model")
                    and value.strip()
                ):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def available_cores() -> int:
    """Logical CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def gpu_name() -> str | None:
    """The CUDA device name (``"2 × NVIDIA H100"`` for several alike devices), or ``None`` when
    torch is not installed or CUDA is not available."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    names = [torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())]
    if not names:
        return None
    if len(set(names)) == 1:
        return names[0] if len(names) == 1 else f"{len(names)} × {names[0]}"
    return ", ".join(names)


def hardware(threads: int) -> dict[str, Any]:
    """The record's ``hardware`` block: ``cpu`` (:func:`cpu_name`), ``cores``
    (:func:`available_cores`), ``threads`` (the torch intra-op threads of the cell, > 0),
    ``gpu`` (:func:`gpu_name`), ``hostname`` and ``platform``."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, not {threads!r}")
    return {
        "cpu": cpu_name(),
        "cores": available_cores(),
        "threads": threads,
        "gpu": gpu_name(),
        "hostname": socket.gethostname() or platform.node() or "unknown",
        "platform": platform.platform(),
    }


def memory_now(status: Path = Path("/proc/self/status")) -> tuple[int, int] | None:
    """``(resident, anonymous resident)`` bytes of this process from ``status`` (``VmRSS``,
    ``RssAnon`` of /proc/self/status), or ``None`` where it is missing."""
    values = {}
    try:
        with open(status, encoding="ascii", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "RssAnon"):
                    values[key] = int(value.split()[0]) * 1024  # reported in kB
    except (OSError, ValueError, IndexError):
        return None
    if "VmRSS" not in values:
        return None
    return values["VmRSS"], values.get("RssAnon", values["VmRSS"])


def _max_rss_bytes() -> int:
    """The process's lifetime peak RSS from ``getrusage`` (0 where unavailable)."""
    try:
        import resource
    except ImportError:  # Windows
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, else kB


class MemorySampler:
    """Peak memory of this process while the ``with`` block runs.

    A daemon thread reads ``VmRSS`` (all resident pages, memory-mapped files included) and
    ``RssAnon`` (anonymous pages: what the code allocated) from /proc/self/status every
    ``interval`` seconds (default 50 ms), and once on entry and on exit, and keeps the maxima.
    Peaks shorter than the interval can be missed. Where /proc is missing both peaks are
    ``resource.getrusage().ru_maxrss`` (the process's lifetime peak RSS, an upper bound).

    Attributes (bytes, after the block):
        peak_rss_bytes, peak_anonymous_rss_bytes: the maxima.
        start_rss_bytes, start_anonymous_rss_bytes: the values on entry.
        samples: how many samples were taken.
    """

    def __init__(self, interval: float = 0.05) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be positive seconds, not {interval!r}")
        self.interval = interval
        self.peak_rss_bytes = 0
        self.peak_anonymous_rss_bytes = 0
        self.start_rss_bytes = 0
        self.start_anonymous_rss_bytes = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._proc = memory_now() is not None

    def _sample(self) -> None:
        reading = memory_now() if self._proc else None
        if reading is None:
            peak = _max_rss_bytes()
            reading = (peak, peak)
        with self._lock:
            self.peak_rss_bytes = max(self.peak_rss_bytes, reading[0])
            self.peak_anonymous_rss_bytes = max(self.peak_anonymous_rss_bytes, reading[1])
            if self.samples == 0:
                self.start_rss_bytes, self.start_anonymous_rss_bytes = reading
            self.samples += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> MemorySampler:
        if self._thread is not None:
            raise RuntimeError("a MemorySampler measures one block; create a new one")
        if not self._proc:
            logger.debug("no /proc/self/status: the memory peaks are getrusage's ru_maxrss")
        self._sample()
        self._thread = threading.Thread(target=self._run, name="pd4ml-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()

    def to_json(self) -> dict[str, int]:
        """The record's ``memory`` block: the peaks while the block ran and the values at its
        start (so the growth of one cell can be told from what earlier cells left)."""
        return {
            "peak_rss_bytes": self.peak_rss_bytes,
            "peak_anonymous_rss_bytes": self.peak_anonymous_rss_bytes,
            "start_rss_bytes": self.start_rss_bytes,
            "start_anonymous_rss_bytes": self.start_anonymous_rss_bytes,
        }
