"""Metrics with their official definitions."""

from __future__ import annotations

import numpy as np


def ams(signal: float, background: float, b_reg: float = 10.0) -> float:
    """Approximate median significance of the HiggsML challenge.

    ``AMS = sqrt(2 ((s + b + b_reg) ln(1 + s / (b + b_reg)) - s))`` with ``s`` and ``b`` the
    sums of weights of selected true-signal and true-background events and ``b_reg = 10``.
    """
    if signal < 0 or background < 0:
        raise ValueError("s and b are sums of weights and cannot be negative")
    total = background + b_reg
    return float(np.sqrt(2.0 * ((signal + total) * np.log1p(signal / total) - signal)))


def ams_of_selection(
    labels: np.ndarray, selected: np.ndarray, weights: np.ndarray, b_reg: float = 10.0
) -> float:
    """AMS of a selection: ``labels`` (1 signal, 0 background), ``selected`` bool, ``weights``
    (for the official score: ``KaggleWeight`` of the public or private test set)."""
    labels = np.asarray(labels)
    selected = np.asarray(selected, dtype=bool)
    weights = np.asarray(weights, dtype=np.float64)
    signal = float(weights[selected & (labels == 1)].sum())
    background = float(weights[selected & (labels == 0)].sum())
    return ams(signal, background, b_reg)
