"""Training progress: a rich bar with the live loss and metric on a terminal, log lines
otherwise (one per epoch through the ``pd4ml.train`` logger).

``progress``: ``"auto"`` (a bar when stderr is a terminal; the ``PD4ML_PROGRESS`` environment
variable overrides), ``"on"`` or ``"off"`` (no bar; epochs are still logged at INFO level).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pd4ml._logging import get_logger
from pd4ml.fetch.progress import progress_enabled
from pd4ml.train.recipe import TrainingError

log = get_logger("train")


def bar_enabled(progress: str | None) -> bool:
    """Whether a progress bar is shown for ``progress`` (None: ``PD4ML_PROGRESS`` or auto)."""
    mode = progress if progress is not None else os.environ.get("PD4ML_PROGRESS", "auto")
    mode = mode.strip().lower()
    if mode not in ("auto", "on", "off"):
        raise TrainingError(f"progress must be 'auto', 'on' or 'off', not {progress!r}")
    return progress_enabled(mode)


class TrainingProgress:
    """One bar per run (``update`` every few batches with the running loss)."""

    def __init__(self, label: str, enabled: bool) -> None:
        self.label = label
        self._bar: Any = None
        self._task: Any = None
        if enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("[bold blue]{task.description}"),
                BarColumn(bar_width=None),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                transient=False,
            )
            self._bar.start()

    def start_epoch(self, epoch: int, epochs: int, batches: int) -> None:
        if self._bar is not None:
            if self._task is not None:
                self._bar.remove_task(self._task)
            self._task = self._bar.add_task(
                f"{self.label} epoch {epoch + 1}/{epochs}", total=batches, status=""
            )

    def update(self, batches: int, loss: float | None = None) -> None:
        if self._bar is not None and self._task is not None:
            status = f"loss {loss:.4g}" if loss is not None else ""
            self._bar.update(self._task, completed=batches, status=status)

    def end_epoch(self, record: Mapping[str, Any], monitor: str) -> None:
        parts = [f"train loss {record['train_loss']:.4g}"]
        if "val_loss" in record:
            parts.append(f"val loss {record['val_loss']:.4g}")
        value = record.get(f"val_{monitor}")
        if monitor != "loss" and value is not None:
            parts.append(f"val {monitor} {value:.4g}")
        text = ", ".join(parts)
        log.info("%s epoch %d: %s", self.label, record["epoch"] + 1, text)
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, status=text)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
