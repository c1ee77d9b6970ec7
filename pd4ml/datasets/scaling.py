"""Statistics fitted on a train split, in chunks (so a split is never read into memory whole)."""

from __future__ import annotations

import numpy as np


class RunningMoments:
    """Mean and standard deviation accumulated block by block over axis 0.

    ``update`` takes ``(n_rows, *shape)`` blocks; :attr:`mean` and :attr:`scale` have ``shape``.
    A zero standard deviation becomes 1 so that scaling never divides by zero.
    """

    def __init__(self, shape: tuple[int, ...] = ()) -> None:
        self.total = np.zeros(shape)
        self.squares = np.zeros(shape)
        self.count = 0

    def update(self, block: np.ndarray) -> None:
        """Add the rows of ``block``."""
        values = np.asarray(block, dtype=np.float64)
        self.total += values.sum(axis=0)
        self.squares += (values**2).sum(axis=0)
        self.count += len(values)

    @property
    def mean(self) -> np.ndarray:
        """The mean of everything added."""
        mean: np.ndarray = self.total / max(self.count, 1)
        return mean

    @property
    def scale(self) -> np.ndarray:
        """The standard deviation of everything added (1 where it is 0)."""
        variance = np.maximum(self.squares / max(self.count, 1) - self.mean**2, 0)
        return np.where(variance > 0, np.sqrt(variance), 1.0)


def target_moments(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, scale)`` of a regression target, as 0-d arrays (scale 1 for a constant)."""
    moments = RunningMoments()
    moments.update(np.asarray(values).reshape(-1))
    return np.array(moments.mean), np.array(moments.scale)
