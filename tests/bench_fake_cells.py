"""Picklable stand-ins for benchmark cells, importable by Dask worker processes.

Every attempt at a cell appends one line to ``<directory>/<dataset>-<model>-<seed>.attempts``, so a
test counts how often each cell ran, across processes, and a cell can behave differently on its
first attempt (``die_once``: its worker process exits on the first attempt, the cell finishes on
the second).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BEHAVIOURS = (
    "finish",
    "fail",
    "raise",
    "raise_once",
    "die_once",
    "die_always",
    "interrupt",
    "sleep",
    "count_tasks",
    "threads",
)


@dataclass(frozen=True)
class FakeCell:
    dataset: str
    model: str
    seed: int
    key: str
    directory: str
    behaviour: str = "finish"


@dataclass(frozen=True)
class FakeOutcome:
    cell: FakeCell
    status: str
    message: str = ""


def attempts_file(cell: FakeCell) -> Path:
    return Path(cell.directory) / f"{cell.dataset}-{cell.model}-{cell.seed}.attempts"


def attempts(cell: FakeCell) -> int:
    """How many times the cell began, in any process."""
    path = attempts_file(cell)
    return len(path.read_text().splitlines()) if path.exists() else 0


def _record_attempt(cell: FakeCell) -> int:
    """Append this attempt; return the number of earlier attempts."""
    earlier = attempts(cell)
    descriptor = os.open(attempts_file(cell), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, f"{os.getpid()}\n".encode())
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    return earlier


def run_fake(cell: FakeCell) -> FakeOutcome:
    """The ``run`` of a fake cell: what happens is ``cell.behaviour``."""
    earlier = _record_attempt(cell)
    behaviour = cell.behaviour
    if behaviour == "fail":
        return FakeOutcome(cell, "failed", "the cell failed")
    if behaviour == "raise" or (behaviour == "raise_once" and earlier == 0):
        raise RuntimeError(f"run raised for {cell.dataset}")
    if behaviour == "die_always" or (behaviour == "die_once" and earlier == 0):
        os._exit(13)  # the worker process dies, as on an out-of-memory kill
    if behaviour == "sleep":
        time.sleep(3.0)
    if behaviour == "count_tasks":
        from distributed import get_client

        return FakeOutcome(cell, "finished", str(get_client().run_on_scheduler(scheduler_tasks)))
    if behaviour == "interrupt":
        raise KeyboardInterrupt
    if behaviour == "threads":
        threads = ",".join(
            os.environ.get(name, "unset") for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
        )
        return FakeOutcome(cell, "finished", threads)
    return FakeOutcome(cell, "finished", "ok")


def scheduler_tasks(dask_scheduler: Any) -> int:
    """The tasks the scheduler knows (run on the scheduler)."""
    return len(dask_scheduler.tasks)


def lost_fake(cell: FakeCell, error: BaseException) -> FakeOutcome:
    """The outcome of a cell that never returned one."""
    return FakeOutcome(cell, "failed", f"lost: {type(error).__name__}")


def fake_cells(directory: Path, behaviours: list[str]) -> list[FakeCell]:
    """One cell per behaviour, seeds 0, 1, …"""
    return [
        FakeCell("toy", "fcn", seed, f"{seed:016x}", str(directory), behaviour)
        for seed, behaviour in enumerate(behaviours)
    ]
