"""Helpers shared by the training benchmarks: a competing CPU load and table printing."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import numpy as np


def usable_cores() -> int:
    """Cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@contextlib.contextmanager
def competing_load(busy: bool) -> Iterator[int]:
    """With ``busy``, one spinning process per usable core for the duration of the block
    (a shared cluster node); yields their number (0 when idle)."""
    if not busy:
        yield 0
        return
    spinners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(usable_cores())
    ]
    try:
        time.sleep(0.5)  # let them start spinning
        yield len(spinners)
    finally:
        for spinner in spinners:
            spinner.kill()
        for spinner in spinners:
            spinner.wait()


def stratified_folds(labels: np.ndarray, n_folds: int, seed: int = 0) -> np.ndarray:
    """The fold of each event ``(N,)``: each class dealt round-robin in a seeded random order."""
    generator = np.random.default_rng(seed)
    folds = np.empty(len(labels), dtype=np.int64)
    for value in np.unique(labels):
        rows = np.flatnonzero(labels == value)
        generator.shuffle(rows)
        folds[rows] = np.arange(len(rows)) % n_folds
    return folds


def conditions(which: str) -> list[tuple[str, bool]]:
    """``"both"``, ``"idle"`` or ``"loaded"`` → the (label, busy) pairs to measure."""
    table = {"idle": [("idle", False)], "loaded": [("loaded", True)]}
    return table.get(which, [("idle", False), ("loaded", True)])


def print_table(header: list[str], rows: list[list[str]]) -> None:
    """A Markdown table."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
