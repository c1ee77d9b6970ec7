"""The errors of the benchmark runner."""

from __future__ import annotations

from pd4ml.errors import Pd4mlError


class BenchError(Pd4mlError):
    """A benchmark run cannot go on: a bad option, a missing optional dependency, an output
    directory that cannot be written. The message says what to do."""
