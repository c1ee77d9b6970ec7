"""Download progress: a rich bar on a terminal, nothing otherwise (no flooded batch logs)."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any


class Progress:
    """Byte progress of one file. ``update`` takes the bytes just received."""

    def __init__(self, label: str, total: int | None, enabled: bool) -> None:
        self._bar: Any = None
        self._task: Any = None
        if not enabled:
            return
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as RichProgress

        self._bar = RichProgress(
            TextColumn("[bold blue]{task.description}", justify="right"),
            BarColumn(bar_width=None),
            "[progress.percentage]{task.percentage:>3.1f}%",
            "•",
            DownloadColumn(),
            "•",
            TransferSpeedColumn(),
            "•",
            TimeRemainingColumn(),
            transient=False,
        )
        self._bar.start()
        self._task = self._bar.add_task(label, total=total)

    def advance(self, size: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, size)

    def reset(self, completed: int = 0) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=completed)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def progress_enabled(mode: str) -> bool:
    """``on``/``off`` as set; ``auto`` shows a bar only when stderr is a terminal."""
    if mode == "on":
        return True
    if mode == "off":
        return False
    return sys.stderr.isatty()
