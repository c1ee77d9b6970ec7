"""What a run shows while it works: a live display on a terminal (cells done / running / failed,
the cell running now, the elapsed time and an estimate of the time left), plain log lines in
batch jobs (one line per finished cell)."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from pd4ml.bench.cells import Cell, CellOutcome
from pd4ml.bench.executors import CellEvent


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class Counts:
    """Cells done, running, failed and left, and the estimated time left (the mean time of
    the cells finished so far × the cells left, divided by the cells that run at once)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.failed = 0
        self.running: dict[str, float] = {}
        self.started = time.perf_counter()
        self.cell_seconds: list[float] = []
        self.parallel = 1

    def update(self, event: CellEvent[Cell, CellOutcome]) -> None:
        """Take one event into account."""
        label = event.cell.label
        if event.kind == "started":
            self.running[label] = time.perf_counter()
            self.parallel = max(self.parallel, len(self.running))
            return
        if event.kind == "retrying":
            return
        self.running.pop(label, None)
        if event.kind == "failed":
            self.failed += 1
        else:
            self.done += 1
        if event.outcome is not None and event.outcome.seconds > 0:
            self.cell_seconds.append(event.outcome.seconds)

    @property
    def left(self) -> int:
        """Cells neither finished nor failed."""
        return self.total - self.done - self.failed

    def eta(self) -> float | None:
        """Seconds left (None before the first cell ends)."""
        if not self.cell_seconds:
            return None
        mean = sum(self.cell_seconds) / len(self.cell_seconds)
        return mean * self.left / self.parallel

    def line(self) -> str:
        """One line: counts, elapsed, time left."""
        eta = self.eta()
        return (
            f"done {self.done}/{self.total}, running {len(self.running)}, failed {self.failed}; "
            f"elapsed {_duration(time.perf_counter() - self.started)}"
            + ("" if eta is None else f", about {_duration(eta)} left")
        )


class Display:
    """Messages and progress of a run (``mode``: ``auto``, ``live``, ``plain``, ``off``)."""

    def __init__(self, mode: str = "auto", echo: Callable[[str], None] | None = None) -> None:
        if mode == "auto":
            mode = "live" if sys.stdout.isatty() else "plain"
        self.mode = mode
        self.echo = echo or (lambda text: print(text, flush=True))

    def note(self, text: str) -> None:
        """A message line (not in ``off`` mode)."""
        if self.mode != "off":
            self.echo(f"pd4ml.bench: {text}")

    @contextlib.contextmanager
    def live(
        self, cells: Sequence[Cell]
    ) -> Iterator[Callable[[CellEvent[Cell, CellOutcome]], None]]:
        """A context giving the event callback of the executors."""
        counts = Counts(len(cells))
        if self.mode != "live":
            yield self._plain(counts)
            return
        from rich.console import Group
        from rich.live import Live
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
        from rich.text import Text

        bar = Progress(
            TextColumn("[bold]cells"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
        )
        task = bar.add_task("cells", total=len(cells), status="")
        running = Text("")

        def on_event(event: CellEvent[Cell, CellOutcome]) -> None:
            counts.update(event)
            bar.update(task, completed=counts.done + counts.failed, status=counts.line())
            running.plain = "running: " + (", ".join(counts.running) or "—")
            if event.kind == "failed" and event.outcome is not None:
                line = Text("failed ", style="red")
                line.append(f"{event.cell.label}: {event.outcome.message}")  # never markup
                live.console.print(line, highlight=False)

        with Live(Group(bar, running), refresh_per_second=4, transient=False) as live:
            yield on_event

    def _plain(self, counts: Counts) -> Callable[[CellEvent[Cell, CellOutcome]], None]:
        def on_event(event: CellEvent[Cell, CellOutcome]) -> None:
            counts.update(event)
            if self.mode == "off":
                return
            outcome: Any = event.outcome
            if event.kind == "started":
                self.echo(f"pd4ml.bench: started {event.cell.label}")
            elif event.kind == "retrying":
                self.echo(f"pd4ml.bench: retrying {event.cell.label} (its worker was lost)")
            else:
                detail = f" in {outcome.seconds:.1f} s" if outcome is not None else ""
                why = f": {outcome.message}" if event.kind == "failed" and outcome else ""
                self.echo(
                    f"pd4ml.bench: {event.kind} {event.cell.label}{detail}{why} — {counts.line()}"
                )

        return on_event
