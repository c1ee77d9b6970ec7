"""The learning-rate range test (Smith, arXiv:1506.01186 §3.3; arXiv:1803.09820 §4.1).

One short training sweeps the learning rate exponentially from ``start`` to ``stop``, one
optimiser step per rate, and records the batch loss. The loss is smoothed with an
exponential moving average (bias-corrected, as Adam's moments, so the first points are not
pulled towards 0); the sweep stops early once the smoothed loss exceeds ``divergence`` times
its best value (the training has blown up and later points carry no information).

**The suggestion** is the learning rate at the minimum of the smoothed loss divided by 10:
one decade below the point where larger steps stop helping, Smith's "an order of magnitude
below the divergence" and fastai's ``lr_min / 10``. It is robust to batch noise because it
uses the minimum of the smoothed curve, never a derivative of it (the steepest-slope rule
amplifies noise and depends on the smoothing); the smoothing lags behind the raw loss, which
places the minimum slightly late, and the division by 10 covers that. It is never below
``start``.

The trainer builds ``train_step(lr) -> loss`` (one step at that rate on the next batch) and
restores the model and optimiser afterwards; any callable works::

    result = find_learning_rate(train_step)
    result.suggestion, result.plot("lr_finder.svg")
"""

from __future__ import annotations

import dataclasses
import html
import importlib
import logging
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pd4ml.errors import Pd4mlError

logger = logging.getLogger("pd4ml")


class LRFinderError(Pd4mlError, ValueError):
    """Invalid arguments of the range test, or a sweep that gave no usable loss."""


@dataclasses.dataclass(frozen=True)
class LRFinderResult:
    """The outcome of :func:`find_learning_rate`.

    Attributes:
        learning_rates: the rates tried, in order (geometric sequence).
        losses: the batch loss returned at each rate (``nan``/``inf`` as returned).
        smoothed: the bias-corrected exponential moving average of the losses.
        suggestion: the suggested learning rate (see the module docstring).
        minimum: the rate at the minimum of the smoothed loss.
        stopped_early: whether the sweep stopped before ``stop`` (the loss diverged or became
            non-finite).
    """

    learning_rates: tuple[float, ...]
    losses: tuple[float, ...]
    smoothed: tuple[float, ...]
    suggestion: float
    minimum: float
    stopped_early: bool

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (non-finite losses become ``None``)."""

        def finite(values: tuple[float, ...]) -> list[float | None]:
            return [value if math.isfinite(value) else None for value in values]

        return {
            "learning_rates": list(self.learning_rates),
            "losses": finite(self.losses),
            "smoothed": finite(self.smoothed),
            "suggestion": self.suggestion,
            "minimum": self.minimum,
            "stopped_early": self.stopped_early,
        }

    def plot(self, path: str | os.PathLike[str]) -> Path:
        """Save the loss against the learning rate (log axis), with the suggestion marked.

        A ``.svg`` path is written by hand (no dependency); other suffixes (``.png``, ``.pdf``)
        use matplotlib when it is installed, and otherwise the plot is written as SVG next to
        the requested path (``name.svg``, logged). Returns the path written. The file appears
        atomically.
        """
        target = Path(path)
        if target.suffix.lower() != ".svg":
            try:  # optional: not a dependency of pd4ml
                matplotlib = importlib.import_module("matplotlib")
                matplotlib.use("Agg")
                pyplot = importlib.import_module("matplotlib.pyplot")
            except ImportError:
                svg = target.with_suffix(".svg")
                logger.warning(
                    "matplotlib is not installed: the LR finder plot is written as %s instead "
                    "of %s (pip install matplotlib for %s)",
                    svg,
                    target,
                    target.suffix,
                )
                target = svg
            else:
                return self._plot_matplotlib(pyplot, target)
        _write_atomic(target, self.svg().encode())
        return target

    def _plot_matplotlib(self, pyplot: Any, target: Path) -> Path:
        figure, axes = pyplot.subplots(figsize=(6.4, 4.0))
        axes.plot(self.learning_rates, self.losses, color="0.7", lw=1, label="batch loss")
        axes.plot(self.learning_rates, self.smoothed, color="C0", lw=2, label="smoothed")
        axes.axvline(
            self.suggestion, color="C3", ls="--", label=f"suggestion {self.suggestion:.2g}"
        )
        axes.set_xscale("log")
        axes.set_xlabel("learning rate")
        axes.set_ylabel("loss")
        low, high = _loss_range(self.smoothed)
        axes.set_ylim(low, high)
        axes.legend()
        figure.tight_layout()
        handle, temporary = tempfile.mkstemp(
            dir=target.parent, prefix=f".{target.name}.", suffix=target.suffix
        )
        os.close(handle)
        try:
            figure.savefig(temporary)
            os.replace(temporary, target)
        finally:
            pyplot.close(figure)
            if os.path.exists(temporary):
                os.unlink(temporary)
        return target

    def svg(self) -> str:
        """The plot as a self-contained SVG document."""
        width, height, left, right, top, bottom = 640, 400, 70, 20, 20, 50
        plot_w, plot_h = width - left - right, height - top - bottom
        log_lo = math.log10(self.learning_rates[0])
        log_hi = math.log10(self.learning_rates[-1])
        if log_hi <= log_lo:
            log_hi = log_lo + 1.0
        low, high = _loss_range(self.smoothed)

        def x(rate: float) -> float:
            return left + (math.log10(rate) - log_lo) / (log_hi - log_lo) * plot_w

        def y(loss: float) -> float:
            clipped = min(max(loss, low), high)
            return top + (high - clipped) / (high - low) * plot_h

        def polyline(values: tuple[float, ...], style: str) -> str:
            points = " ".join(
                f"{x(rate):.1f},{y(loss):.1f}"
                for rate, loss in zip(self.learning_rates, values, strict=True)
                if math.isfinite(loss)
            )
            return f'<polyline fill="none" {style} points="{points}"/>'

        parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
            "<title>Learning-rate range test</title>",
            f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="white" '
            'stroke="black"/>',
        ]
        for decade in range(math.ceil(log_lo), math.floor(log_hi) + 1):
            position = x(10.0**decade)
            parts.append(
                f'<line x1="{position:.1f}" y1="{top + plot_h}" x2="{position:.1f}" '
                f'y2="{top + plot_h + 5}" stroke="black"/>'
                f'<text x="{position:.1f}" y="{top + plot_h + 18}" text-anchor="middle">'
                f"1e{decade}</text>"
            )
        for value in (low, (low + high) / 2, high):
            parts.append(
                f'<text x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{value:.3g}</text>'
            )
        parts += [
            polyline(self.losses, 'stroke="#b0b0b0" stroke-width="1"'),
            polyline(self.smoothed, 'stroke="#1f77b4" stroke-width="2"'),
            f'<line x1="{x(self.suggestion):.1f}" y1="{top}" x2="{x(self.suggestion):.1f}" '
            f'y2="{top + plot_h}" stroke="#d62728" stroke-dasharray="6,4"/>',
            f'<text x="{left + plot_w / 2}" y="{height - 12}" text-anchor="middle">'
            "learning rate</text>",
            f'<text x="16" y="{top + plot_h / 2}" text-anchor="middle" '
            f'transform="rotate(-90 16 {top + plot_h / 2})">loss</text>',
            f'<text x="{left + plot_w - 6}" y="{top + 16}" text-anchor="end" fill="#d62728">'
            f"{html.escape(f'suggestion {self.suggestion:.2g}')}"
            f"{' (stopped early)' if self.stopped_early else ''}</text>",
            "</svg>",
        ]
        return "\n".join(parts) + "\n"


def _loss_range(smoothed: tuple[float, ...]) -> tuple[float, float]:
    """The loss axis: from the smoothed minimum to a little above the first point (the
    diverging tail is clipped)."""
    finite = [value for value in smoothed if math.isfinite(value)]
    if not finite:
        return 0.0, 1.0
    low = min(finite)
    high = min(max(finite), low + 2 * (finite[0] - low))
    if high <= low:
        high = low + (abs(low) if low else 1.0)
    margin = 0.05 * (high - low)
    return low - margin, high + margin


def _write_atomic(target: Path, data: bytes) -> None:
    handle, temporary = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def find_learning_rate(
    train_step: Callable[[float], float],
    *,
    start: float = 1e-7,
    stop: float = 10.0,
    steps: int = 100,
    smoothing: float = 0.98,
    divergence: float = 4.0,
) -> LRFinderResult:
    """Smith's range test: ``train_step(lr)`` at ``steps`` rates from ``start`` to ``stop``.

    Args:
        train_step: runs one optimiser step at the given learning rate and returns the batch
            loss (a float, or anything ``float()`` accepts).
        start, stop: the first and last learning rate, ``0 < start < stop``.
        steps: the number of rates (≥ 2); rate ``i`` is ``start · (stop/start)**(i/(steps−1))``.
        smoothing: the weight of the running average, in [0, 1) (0: no smoothing).
        divergence: stop once ``smoothed − best > (divergence − 1) · |best|`` (for positive
            losses: the smoothed loss exceeds ``divergence × best``), > 1.

    Returns:
        :class:`LRFinderResult`; ``stopped_early`` when the loss diverged or was not finite.
        Raises :class:`LRFinderError` when the very first loss is not finite.
    """
    _check_arguments(start, stop, steps, smoothing, divergence)
    ratio = stop / start
    rates: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    average = 0.0
    best = math.inf
    stopped_early = False
    for index in range(steps):
        rate = start * ratio ** (index / (steps - 1))
        loss = float(train_step(rate))
        rates.append(rate)
        losses.append(loss)
        if not math.isfinite(loss):
            if index == 0:
                raise LRFinderError(
                    f"the loss at the first learning rate ({rate:.3g}) is {loss}: check the "
                    "model and data before searching a learning rate"
                )
            smoothed.append(math.inf)
            stopped_early = index < steps - 1
            break
        average = smoothing * average + (1.0 - smoothing) * loss
        value = average / (1.0 - smoothing ** (index + 1))
        smoothed.append(value)
        best = min(best, value)
        if value - best > (divergence - 1.0) * abs(best):
            stopped_early = index < steps - 1
            break
    lowest = min(value for value in smoothed if math.isfinite(value))
    # the largest rate at the lowest loss (a flat start ties; the end of the flat part counts)
    minimum = max(rate for rate, value in zip(rates, smoothed, strict=True) if value == lowest)
    return LRFinderResult(
        learning_rates=tuple(rates),
        losses=tuple(losses),
        smoothed=tuple(smoothed),
        suggestion=max(minimum / 10.0, start),
        minimum=minimum,
        stopped_early=stopped_early,
    )


def _check_arguments(
    start: float, stop: float, steps: int, smoothing: float, divergence: float
) -> None:
    for name, value in (("start", start), ("stop", stop)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise LRFinderError(f"{name} must be a number, not {value!r}")
        if not (math.isfinite(value) and value > 0):
            raise LRFinderError(f"{name} must be a positive learning rate, not {value!r}")
    if start >= stop:
        raise LRFinderError(f"start ({start}) must be below stop ({stop})")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise LRFinderError(f"steps must be a whole number ≥ 2, not {steps!r}")
    if not 0.0 <= smoothing < 1.0:
        raise LRFinderError(f"smoothing must be in [0, 1), not {smoothing!r}")
    if not divergence > 1.0:
        raise LRFinderError(f"divergence must be > 1, not {divergence!r}")
