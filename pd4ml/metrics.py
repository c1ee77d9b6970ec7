"""Metrics with their official definitions, weighted wherever the data have weights.

Every function takes NumPy arrays (anything ``np.asarray`` accepts, e.g. a CPU tensor's
``.numpy()``) and ``weights=None`` means unit weights. Weights are per-event, shape ``(N,)``,
non-negative (a zero weight removes an event); a metric is a ratio or mean of sums of weights, so
the overall scale of the weights never matters, except for the AMS, whose ``s`` and ``b`` are
expected event counts.

Classification (binary labels are 0 = background, 1 = signal; scores are the signal probability
or any monotonic discriminant where higher means more signal-like):
:func:`accuracy`, :func:`roc_curve`, :func:`roc_auc`, :func:`background_rejection`,
:func:`binary_cross_entropy`, :func:`cross_entropy`, :func:`ams`, :func:`ams_of_selection`,
:func:`best_ams`. Regression (``predictions - truth`` is the residual, in the units of the
target): :func:`mse`, :func:`mae`, :func:`bias`, :func:`resolution`, :func:`resolution_68`,
:func:`weighted_quantile`, :func:`energy_resolution`. Uncertainties: :func:`bootstrap`. One call
per task: :func:`evaluate`, with :func:`higher_is_better` for early stopping and model choice.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from pd4ml.errors import Pd4mlError, UnknownNameError
from pd4ml.naming import closest_hint

ArrayLike = npt.ArrayLike
FloatArray = npt.NDArray[np.float64]

#: Coverage of ±1 standard deviation of a normal distribution, erf(1/√2) = 0.6827: the central
#: interval of :func:`resolution_68` has this probability content, so for a Gaussian residual
#: its half-width equals the standard deviation.
ONE_SIGMA_COVERAGE = math.erf(1.0 / math.sqrt(2.0))


class MetricInputError(Pd4mlError, ValueError):
    """Arrays a metric cannot be computed from: mismatched lengths, NaN or infinite values,
    negative weights, an empty sample, labels that are not 0/1, or a single class for a ROC."""


# --------------------------------------------------------------------------------------------
# Input validation


def _vector(name: str, values: ArrayLike, *, function: str) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise MetricInputError(
            f"{function}: {name} must be one value per event, shape (N,), not {array.shape}"
        )
    if array.size == 0:
        raise MetricInputError(f"{function}: {name} is empty; a metric needs at least one event")
    if not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise MetricInputError(
            f"{function}: {name} has {bad} NaN or infinite value(s) (first at index "
            f"{int(np.flatnonzero(~np.isfinite(array))[0])}); remove or fix those events first"
        )
    return array


def _same_length(function: str, **arrays: np.ndarray) -> int:
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name} {length}" for name, length in lengths.items())
        raise MetricInputError(f"{function}: arrays of different lengths ({listed} events)")
    return next(iter(lengths.values()))


def _weights(weights: ArrayLike | None, n_events: int, *, function: str) -> FloatArray:
    if weights is None:
        return np.ones(n_events)
    array = _vector("weights", weights, function=function)
    if len(array) != n_events:
        raise MetricInputError(
            f"{function}: weights has {len(array)} entries for {n_events} events"
        )
    if np.any(array < 0):
        raise MetricInputError(
            f"{function}: weights must be non-negative ({int(np.count_nonzero(array < 0))} "
            "negative); a metric of negatively weighted events (e.g. NLO subtraction weights) "
            "is not defined here: drop them or use their absolute values knowingly"
        )
    if not array.sum() > 0:
        raise MetricInputError(f"{function}: the weights sum to zero; no event counts")
    return array


def _binary_labels(labels: ArrayLike, *, function: str) -> FloatArray:
    array = _vector("labels", labels, function=function)
    if not np.all((array == 0) | (array == 1)):
        found = np.unique(array[(array != 0) & (array != 1)])[:5]
        raise MetricInputError(
            f"{function}: binary labels must be 0 (background) or 1 (signal); found {found}"
        )
    return array


def _class_labels(labels: ArrayLike, n_classes: int, *, function: str) -> npt.NDArray[np.int64]:
    array = _vector("labels", labels, function=function)
    if not np.all((array == np.round(array)) & (array >= 0) & (array < n_classes)):
        raise MetricInputError(
            f"{function}: labels must be class indices 0..{n_classes - 1} for predictions "
            f"with {n_classes} columns"
        )
    return array.astype(np.int64)


def _probability_matrix(values: ArrayLike, *, function: str) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] < 2:
        raise MetricInputError(
            f"{function}: predictions must be class probabilities of shape (N, C) with C >= 2, "
            f"not {array.shape}"
        )
    if array.shape[0] == 0:
        raise MetricInputError(f"{function}: predictions are empty")
    if not np.all(np.isfinite(array)):
        raise MetricInputError(f"{function}: predictions contain NaN or infinite values")
    return array


def _check_probabilities(name: str, values: np.ndarray, *, function: str) -> None:
    if np.any(values < 0) or np.any(values > 1):
        raise MetricInputError(
            f"{function}: {name} must be probabilities in [0, 1] (found "
            f"{values.min():.4g}..{values.max():.4g}); apply a sigmoid or softmax to logits first"
        )


# --------------------------------------------------------------------------------------------
# Classification


def accuracy(
    labels: ArrayLike,
    predictions: ArrayLike,
    weights: ArrayLike | None = None,
    threshold: float = 0.5,
) -> float:
    """Weighted fraction of correctly classified events, ``Σ w·[ŷ = y] / Σ w``.

    Args:
        labels: ``(N,)`` true classes: 0/1 for binary, ``0..C-1`` for multi-class.
        predictions: ``(N,)`` signal probability (binary; ``ŷ = 1`` where ``p ≥ threshold``),
            or ``(N, C)`` class probabilities (``ŷ = argmax``, ``threshold`` unused).
        weights: ``(N,)`` non-negative event weights, or None for unit weights.
        threshold: the binary working point on the probability (0.5 is the convention).

    Returns:
        A fraction in [0, 1].
    """
    function = "accuracy"
    array = np.asarray(predictions, dtype=np.float64)
    if array.ndim == 2 and array.shape[1] > 1:
        probabilities = _probability_matrix(array, function=function)
        true = _class_labels(labels, probabilities.shape[1], function=function)
        _same_length(function, labels=true, predictions=probabilities)
        correct = np.argmax(probabilities, axis=1) == true
    else:
        scores = _vector("predictions", array, function=function)
        binary = _binary_labels(labels, function=function)
        _same_length(function, labels=binary, predictions=scores)
        correct = (scores >= threshold) == (binary == 1)
    w = _weights(weights, len(correct), function=function)
    return float(np.sum(w * correct) / np.sum(w))


def _binary_inputs(
    labels: ArrayLike, scores: ArrayLike, weights: ArrayLike | None, *, function: str
) -> tuple[FloatArray, FloatArray, FloatArray]:
    binary = _binary_labels(labels, function=function)
    values = _vector("scores", scores, function=function)
    _same_length(function, labels=binary, scores=values)
    return binary, values, _weights(weights, len(binary), function=function)


def _cumulative_by_threshold(
    labels: FloatArray, scores: FloatArray, weights: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Sums of signal and background weights with ``score ≥ t`` for every distinct score ``t``,
    in decreasing ``t``: ``(thresholds, signal, background)``, each ``(K,)``. Events with tied
    scores enter together, so a tie is one point of the curve (never split by sort order)."""
    order = np.argsort(scores)[::-1]  # the order within a tie does not matter: ties are merged
    sorted_scores = scores[order]
    sorted_weights = weights[order]
    signal_weights = sorted_weights * labels[order]
    signal = np.cumsum(signal_weights)
    background = np.cumsum(sorted_weights - signal_weights)
    last_of_tie = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(sorted_scores) - 1]
    return sorted_scores[last_of_tie], signal[last_of_tie], background[last_of_tie]


def roc_curve(
    labels: ArrayLike, scores: ArrayLike, weights: ArrayLike | None = None
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Weighted receiver operating characteristic of the selection ``score ≥ threshold``.

    ``ε_B(t) = Σ_{bkg, s ≥ t} w / Σ_bkg w`` (false-positive rate, background efficiency) and
    ``ε_S(t) = Σ_{sig, s ≥ t} w / Σ_sig w`` (true-positive rate, signal efficiency) at every
    distinct score ``t``, in decreasing ``t``, starting from the empty selection
    ``(0, 0)`` at ``t = +inf``. Events with equal scores are selected together, so a tie is a
    single step of the curve. This is scikit-learn's ``roc_curve(..., drop_intermediate=False)``.

    Args:
        labels: ``(N,)`` 0 (background) / 1 (signal).
        scores: ``(N,)`` discriminant, higher = more signal-like (no NaN).
        weights: ``(N,)`` non-negative event weights, or None.

    Returns:
        ``(false_positive_rate, true_positive_rate, thresholds)``, each ``(K + 1,)`` for ``K``
        distinct scores; both rates non-decreasing from 0 to 1.

    Raises:
        MetricInputError: invalid inputs, or a class with zero total weight (no ROC exists).
    """
    function = "roc_curve"
    return _roc(*_binary_inputs(labels, scores, weights, function=function), function=function)


def _roc(
    binary: FloatArray, values: FloatArray, w: FloatArray, *, function: str
) -> tuple[FloatArray, FloatArray, FloatArray]:
    thresholds, signal, background = _cumulative_by_threshold(binary, values, w)
    if not (signal[-1] > 0 and background[-1] > 0):
        missing = "signal (label 1)" if not signal[-1] > 0 else "background (label 0)"
        raise MetricInputError(
            f"{function}: no {missing} events with positive weight; a ROC curve needs both classes"
        )
    false_positive_rate = np.r_[0.0, background / background[-1]]
    true_positive_rate = np.r_[0.0, signal / signal[-1]]
    return false_positive_rate, true_positive_rate, np.r_[np.inf, thresholds]


def roc_auc(labels: ArrayLike, scores: ArrayLike, weights: ArrayLike | None = None) -> float:
    """Weighted area under the ROC curve, ``∫ ε_S dε_B``: the weighted probability that a
    random signal event scores higher than a random background event, a tie counting 1/2.

    The trapezoidal area under :func:`roc_curve` (exact for this definition, because a tied
    group is one straight step); O(N log N) for the sort.

    Args:
        labels: ``(N,)`` 0/1. scores: ``(N,)`` discriminant. weights: ``(N,)`` or None.

    Returns:
        The AUC in [0, 1] (0.5 = no separation).
    """
    false_positive_rate, true_positive_rate, _ = roc_curve(labels, scores, weights)
    return _area(false_positive_rate, true_positive_rate)


def _area(false_positive_rate: FloatArray, true_positive_rate: FloatArray) -> float:
    widths = np.diff(false_positive_rate)
    heights = 0.5 * (true_positive_rate[1:] + true_positive_rate[:-1])
    return float(np.sum(widths * heights))


def background_rejection(
    labels: ArrayLike,
    scores: ArrayLike,
    signal_efficiency: float,
    weights: ArrayLike | None = None,
) -> float:
    """Background rejection ``1/ε_B`` at the working point where the signal efficiency is
    ``ε_S = signal_efficiency`` (the top-tagging landscape's R30 and R50 for 0.3 and 0.5).

    ``ε_B`` is read off the weighted :func:`roc_curve` by linear interpolation in ``ε_S``
    between the two neighbouring points, the usual way tagging comparisons quote R30/R50
    (``1 / np.interp(ε_S, tpr, fpr)`` on the ROC curve). Where the curve reaches ``ε_S``
    exactly at several points, the smallest ``ε_B`` among them is taken (the best cut
    achieving it; ``np.interp`` would take the largest). The original pd4ml instead took the
    ROC point nearest in ``ε_S``; the two agree to the curve's granularity.

    Args:
        labels: ``(N,)`` 0/1. scores: ``(N,)`` discriminant. weights: ``(N,)`` or None.
        signal_efficiency: the working point, in (0, 1].

    Returns:
        ``1/ε_B``, dimensionless. ``math.inf`` where ``ε_B = 0`` at the working point (no
        background survives): the sample is too small to measure it; quote it as "more than
        the background's sum of weights" rather than printing ``inf`` in a table.
    """
    function = "background_rejection"
    if not 0.0 < signal_efficiency <= 1.0:
        raise MetricInputError(
            f"{function}: signal_efficiency must be in (0, 1], not {signal_efficiency}"
        )
    false_positive_rate, true_positive_rate, _ = roc_curve(labels, scores, weights)
    return _rejection(false_positive_rate, true_positive_rate, signal_efficiency)


def _rejection(
    false_positive_rate: FloatArray, true_positive_rate: FloatArray, signal_efficiency: float
) -> float:
    # The first ROC point reaching the working point and the last one below it; where several
    # points have exactly eps_S, this picks the one with the smallest eps_B (fraction = 1).
    above = int(np.searchsorted(true_positive_rate, signal_efficiency, side="left"))
    below = above - 1
    fraction = (signal_efficiency - true_positive_rate[below]) / (
        true_positive_rate[above] - true_positive_rate[below]
    )
    background_efficiency = float(
        false_positive_rate[below]
        + fraction * (false_positive_rate[above] - false_positive_rate[below])
    )
    return math.inf if background_efficiency <= 0 else 1.0 / background_efficiency


def binary_cross_entropy(
    labels: ArrayLike,
    probabilities: ArrayLike,
    weights: ArrayLike | None = None,
    epsilon: float = 1e-7,
) -> float:
    """Weighted binary cross-entropy (log loss) in nats,
    ``-Σ w [y ln p + (1 - y) ln(1 - p)] / Σ w``, with ``p`` clipped to ``[ε, 1 - ε]`` so a
    confident wrong answer costs at most ``-ln ε`` (16.1 for the default ``ε = 1e-7``).

    Args:
        labels: ``(N,)`` 0/1. probabilities: ``(N,)`` signal probability in [0, 1].
        weights: ``(N,)`` or None. epsilon: the clipping bound.
    """
    function = "binary_cross_entropy"
    binary = _binary_labels(labels, function=function)
    p = _vector("probabilities", probabilities, function=function)
    _same_length(function, labels=binary, probabilities=p)
    _check_probabilities("probabilities", p, function=function)
    w = _weights(weights, len(p), function=function)
    p = np.clip(p, epsilon, 1.0 - epsilon)
    losses = -(binary * np.log(p) + (1.0 - binary) * np.log1p(-p))
    return float(np.sum(w * losses) / np.sum(w))


def cross_entropy(
    labels: ArrayLike,
    probabilities: ArrayLike,
    weights: ArrayLike | None = None,
    epsilon: float = 1e-7,
) -> float:
    """Weighted multi-class cross-entropy in nats, ``-Σ w ln p_{y} / Σ w``, with the
    probability of the true class clipped to ``[ε, 1]``.

    Args:
        labels: ``(N,)`` class indices ``0..C-1``.
        probabilities: ``(N, C)`` class probabilities, each row summing to 1 (softmax output).
        weights: ``(N,)`` or None. epsilon: the clipping bound.
    """
    function = "cross_entropy"
    p = _probability_matrix(probabilities, function=function)
    true = _class_labels(labels, p.shape[1], function=function)
    _same_length(function, labels=true, probabilities=p)
    _check_probabilities("probabilities", p, function=function)
    if not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise MetricInputError(
            f"{function}: rows of probabilities must sum to 1 (found sums "
            f"{p.sum(axis=1).min():.4g}..{p.sum(axis=1).max():.4g}); apply a softmax first"
        )
    w = _weights(weights, len(true), function=function)
    true_class = np.clip(p[np.arange(len(true)), true], epsilon, 1.0)
    return float(-np.sum(w * np.log(true_class)) / np.sum(w))


# --------------------------------------------------------------------------------------------
# HiggsML approximate median significance


def _ams_formula(signal: FloatArray, background: FloatArray, b_reg: float) -> FloatArray:
    total = background + b_reg
    radicand = 2.0 * ((signal + total) * np.log1p(signal / total) - signal)
    return np.sqrt(np.maximum(radicand, 0.0))  # rounding can make 0 a tiny negative


def ams(signal: float, background: float, b_reg: float = 10.0) -> float:
    """Approximate median significance of the HiggsML challenge.

    ``AMS = sqrt(2 ((s + b + b_reg) ln(1 + s / (b + b_reg)) - s))`` with ``s`` and ``b`` the
    sums of weights of selected true-signal and true-background events and ``b_reg = 10``.
    """
    if signal < 0 or background < 0:
        raise MetricInputError("ams: s and b are sums of weights and cannot be negative")
    return float(_ams_formula(np.array(signal), np.array(background), b_reg))


def ams_of_selection(
    labels: ArrayLike,
    selected: ArrayLike,
    weights: ArrayLike,
    b_reg: float = 10.0,
    *,
    scale: float = 1.0,
) -> float:
    """AMS of a selection: ``labels`` (1 signal, 0 background), ``selected`` bool, ``weights``
    (for the official score: ``KaggleWeight`` of the public or private test set), all ``(N,)``;
    ``scale`` multiplies the weights (see :func:`best_ams`)."""
    function = "ams_of_selection"
    binary = _binary_labels(labels, function=function)
    chosen = np.asarray(selected, dtype=bool)
    w = _weights(weights, len(binary), function=function)
    _same_length(function, labels=binary, selected=chosen, weights=w)
    signal = scale * float(w[chosen & (binary == 1)].sum())
    background = scale * float(w[chosen & (binary == 0)].sum())
    return ams(signal, background, b_reg)


def best_ams(
    labels: ArrayLike,
    scores: ArrayLike,
    weights: ArrayLike,
    b_reg: float = 10.0,
    *,
    scale: float = 1.0,
) -> tuple[float, float]:
    """The best AMS over all cuts ``score ≥ threshold`` (the HiggsML threshold scan).

    Every distinct score is tried at once (cumulative sums of weights over the scores sorted in
    decreasing order, tied scores entering together), plus the empty selection (AMS 0,
    threshold ``+inf``).

    Args:
        labels: ``(N,)`` 1 = signal, 0 = background.
        scores: ``(N,)`` discriminant, higher = more signal-like.
        weights: ``(N,)`` the ``KaggleWeight`` of the set being scored. KaggleWeight is
            normalised per Kaggle subset, so that its sums over the public (``KaggleSet == "b"``)
            or private (``"v"``) test set estimate the expected signal and background counts of
            the full 2012 luminosity, which the AMS needs (its ``b_reg = 10`` is in events).
        b_reg: the regularisation term of the challenge (10 events).
        scale: multiplies every weight before the sums. When the events scored are a random
            subset of a set whose KaggleWeights sum to the full yield (a validation fold of the
            training set, a subsample), use ``scale = N_total / N_subset`` so ``s`` and ``b``
            are again full-luminosity counts and the AMS is comparable with the leaderboard's
            (LUMIN's ``n_total / len(fold)``); a subset's own weights would give a lower AMS.

    Returns:
        ``(ams, threshold)``: the largest AMS and the lowest selected score of that cut (select
        ``score >= threshold``). Among equal AMS values the tightest cut is returned.
    """
    function = "best_ams"
    binary, values, w = _binary_inputs(labels, scores, weights, function=function)
    if not scale > 0:
        raise MetricInputError(f"{function}: scale must be positive, not {scale}")
    thresholds, signal, background = _cumulative_by_threshold(binary, values, scale * w)
    significance = _ams_formula(np.r_[0.0, signal], np.r_[0.0, background], b_reg)
    best = int(np.argmax(significance))
    return float(significance[best]), float(np.r_[np.inf, thresholds][best])


# --------------------------------------------------------------------------------------------
# Regression


def _regression_inputs(
    truth: ArrayLike,
    predictions: ArrayLike,
    weights: ArrayLike | None,
    *,
    function: str,
    relative: bool = False,
) -> tuple[FloatArray, FloatArray]:
    """``(residual, weights)``: ``prediction - truth``, or ``(prediction - truth) / truth``."""
    true = _vector("truth", truth, function=function)
    predicted = _vector("predictions", predictions, function=function)
    _same_length(function, truth=true, predictions=predicted)
    w = _weights(weights, len(true), function=function)
    residual = predicted - true
    if relative:
        if np.any(true == 0):
            raise MetricInputError(
                f"{function}: relative=True divides by the truth, which is 0 for "
                f"{int(np.count_nonzero(true == 0))} event(s)"
            )
        residual = residual / true
    return residual, w


def _weighted_mean(values: FloatArray, weights: FloatArray) -> float:
    return float(np.sum(weights * values) / np.sum(weights))


def mse(truth: ArrayLike, predictions: ArrayLike, weights: ArrayLike | None = None) -> float:
    """Weighted mean squared error ``Σ w (ŷ - y)² / Σ w``, in the target's units squared.

    Args: truth, predictions, weights: ``(N,)`` each (weights may be None).
    """
    residual, w = _regression_inputs(truth, predictions, weights, function="mse")
    return _weighted_mean(residual**2, w)


def mae(truth: ArrayLike, predictions: ArrayLike, weights: ArrayLike | None = None) -> float:
    """Weighted mean absolute error ``Σ w |ŷ - y| / Σ w``, in the target's units.

    Args: truth, predictions, weights: ``(N,)`` each (weights may be None).
    """
    residual, w = _regression_inputs(truth, predictions, weights, function="mae")
    return _weighted_mean(np.abs(residual), w)


def bias(
    truth: ArrayLike,
    predictions: ArrayLike,
    weights: ArrayLike | None = None,
    *,
    relative: bool = False,
) -> float:
    """Weighted mean residual ``Σ w (ŷ - y) / Σ w`` (positive = overestimate), in the
    target's units; ``relative=True`` uses ``(ŷ - y) / y`` (dimensionless).

    Args: truth, predictions, weights: ``(N,)`` each (weights may be None).
    """
    residual, w = _regression_inputs(
        truth, predictions, weights, function="bias", relative=relative
    )
    return _weighted_mean(residual, w)


def resolution(
    truth: ArrayLike,
    predictions: ArrayLike,
    weights: ArrayLike | None = None,
    *,
    relative: bool = False,
) -> float:
    """Weighted standard deviation of the residual ``ŷ - y`` about its weighted mean,
    ``sqrt(Σ w (r - r̄)² / Σ w)`` (no Bessel correction), in the target's units;
    ``relative=True`` uses ``(ŷ - y) / y``. Sensitive to tails: see :func:`resolution_68`.

    Args: truth, predictions, weights: ``(N,)`` each (weights may be None).
    """
    residual, w = _regression_inputs(
        truth, predictions, weights, function="resolution", relative=relative
    )
    return _weighted_std(residual, w)


def _weighted_std(values: FloatArray, weights: FloatArray) -> float:
    mean = _weighted_mean(values, weights)
    return math.sqrt(_weighted_mean((values - mean) ** 2, weights))


def weighted_quantile(
    values: ArrayLike, quantiles: ArrayLike, weights: ArrayLike | None = None
) -> FloatArray:
    """Weighted quantiles by the inverse of the weighted empirical distribution function: the
    smallest value ``x`` with ``Σ_{v ≤ x} w ≥ q Σ w``.

    For integer weights this equals the unweighted quantile of each value repeated ``w``
    times (``np.quantile(np.repeat(values, w), q, method="inverted_cdf")``), and it is the
    definition NumPy uses for weighted quantiles.

    Args:
        values: ``(N,)``. quantiles: scalar or ``(Q,)`` in [0, 1]. weights: ``(N,)`` or None.

    Returns:
        ``(Q,)`` float64 (``()`` for a scalar ``quantiles``), in the units of ``values``.
    """
    function = "weighted_quantile"
    data = _vector("values", values, function=function)
    w = _weights(weights, len(data), function=function)
    q = np.asarray(quantiles, dtype=np.float64)
    if np.any(~np.isfinite(q)) or np.any(q < 0) or np.any(q > 1):
        raise MetricInputError(f"{function}: quantiles must be in [0, 1], not {q}")
    return _inverted_cdf(data, w, q)


def _inverted_cdf(values: FloatArray, weights: FloatArray, quantiles: FloatArray) -> FloatArray:
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    # Events with zero weight are never chosen: searchsorted lands on the first event whose
    # cumulative weight reaches the target, and a zero-weight event does not raise the sum.
    index = np.searchsorted(cumulative, quantiles * cumulative[-1], side="left")
    result: FloatArray = values[order][np.minimum(index, len(values) - 1)]
    return result


def _half_width(values: FloatArray, weights: FloatArray, coverage: float) -> float:
    low, high = _inverted_cdf(values, weights, np.array([0.5 - coverage / 2, 0.5 + coverage / 2]))
    return 0.5 * float(high - low)


def resolution_68(
    truth: ArrayLike,
    predictions: ArrayLike,
    weights: ArrayLike | None = None,
    *,
    relative: bool = False,
    coverage: float = ONE_SIGMA_COVERAGE,
) -> float:
    """Half-width of the central interval of the residual ``ŷ - y`` holding ``coverage`` of the
    weight: ``(Q(1/2 + c/2) - Q(1/2 - c/2)) / 2`` with :func:`weighted_quantile` ``Q``.

    The default coverage is 68.27 % (±1σ of a normal distribution), so for a Gaussian residual
    this equals :func:`resolution`, while tails (mis-reconstructed events) barely move it.
    In the target's units; ``relative=True`` uses ``(ŷ - y) / y``.

    Args: truth, predictions, weights: ``(N,)`` each (weights may be None); coverage in (0, 1).
    """
    function = "resolution_68"
    if not 0.0 < coverage < 1.0:
        raise MetricInputError(f"{function}: coverage must be in (0, 1), not {coverage}")
    residual, w = _regression_inputs(
        truth, predictions, weights, function=function, relative=relative
    )
    return _half_width(residual, w, coverage)


@dataclass(frozen=True)
class EnergyResolution:
    """Relative energy resolution in bins of the true energy (one entry per bin, ``(B,)``
    arrays unless stated).

    Attributes:
        edges: ``(B + 1,)`` bin edges of the true energy, in the energy's units (GeV).
        centres: bin centres, ``(edges[:-1] + edges[1:]) / 2``.
        counts: number of events in each bin (int64); 0 gives NaN below.
        sum_weights: sum of event weights in each bin.
        resolution: ``σ(E)/E``, the weighted standard deviation of ``(E_pred - E_true) /
            E_true`` in the bin (dimensionless).
        resolution_68: half-width of the central 68.27 % interval of the same relative
            residual (robust against tails).
        bias: weighted mean of ``(E_pred - E_true) / E_true`` (the relative energy scale).
    """

    edges: FloatArray
    centres: FloatArray
    counts: npt.NDArray[np.int64]
    sum_weights: FloatArray
    resolution: FloatArray
    resolution_68: FloatArray
    bias: FloatArray


def energy_resolution(
    true_energy: ArrayLike,
    predicted_energy: ArrayLike,
    bins: int | Sequence[float] | npt.NDArray[np.floating[Any]],
    weights: ArrayLike | None = None,
) -> EnergyResolution:
    """``σ(E)/E``, its 68 % variant and the relative bias in bins of the true energy, for
    calorimeter regressions (CALICE AHCAL, ILD photon showers).

    Args:
        true_energy: ``(N,)`` true energy (GeV), positive.
        predicted_energy: ``(N,)`` reconstructed energy (GeV).
        bins: a number of equal-width bins spanning the true energies, or ``(B + 1,)``
            increasing edges. As in ``np.histogram``, bins are half-open ``[a, b)`` except the
            last ``[a, b]``; events outside the edges are left out.
        weights: ``(N,)`` or None.

    Returns:
        An :class:`EnergyResolution` table.
    """
    function = "energy_resolution"
    residual, w = _regression_inputs(
        true_energy, predicted_energy, weights, function=function, relative=True
    )
    true = np.asarray(true_energy, dtype=np.float64).reshape(-1)
    if np.any(true < 0):
        raise MetricInputError(f"{function}: true energies must be positive")
    if isinstance(bins, int | np.integer):
        if bins < 1:
            raise MetricInputError(f"{function}: bins must be at least 1, not {bins}")
        edges = np.histogram_bin_edges(true, bins=int(bins))
    else:
        edges = np.asarray(bins, dtype=np.float64)
        if edges.ndim != 1 or len(edges) < 2 or np.any(np.diff(edges) <= 0):
            raise MetricInputError(
                f"{function}: bins must be an int or at least two strictly increasing edges"
            )
    n_bins = len(edges) - 1
    which = np.searchsorted(edges, true, side="right") - 1
    which[true == edges[-1]] = n_bins - 1
    inside = (which >= 0) & (which < n_bins)
    counts = np.bincount(which[inside], minlength=n_bins).astype(np.int64)
    sum_weights = np.bincount(which[inside], weights=w[inside], minlength=n_bins).astype(np.float64)
    table = np.full((3, n_bins), np.nan)
    for b in np.flatnonzero(sum_weights > 0):  # one pass per bin, vectorised within it
        members = inside & (which == b)
        values, bin_weights = residual[members], w[members]
        table[:, b] = (
            _weighted_std(values, bin_weights),
            _half_width(values, bin_weights, ONE_SIGMA_COVERAGE),
            _weighted_mean(values, bin_weights),
        )
    return EnergyResolution(
        edges=edges,
        centres=0.5 * (edges[:-1] + edges[1:]),
        counts=counts,
        sum_weights=sum_weights,
        resolution=table[0],
        resolution_68=table[1],
        bias=table[2],
    )


# --------------------------------------------------------------------------------------------
# Bootstrap


class BootstrapResult(NamedTuple):
    """A metric with its bootstrap uncertainty (all in the metric's units)."""

    value: float
    """The metric on the full sample."""
    std: float
    """Standard deviation of the metric over the resamples."""
    low: float
    """Lower end of the central percentile interval."""
    high: float
    """Upper end of the central percentile interval."""


def bootstrap(
    metric: Callable[..., float],
    *arrays: ArrayLike,
    weights: ArrayLike | None = None,
    n: int = 200,
    seed: int = 0,
    confidence: float = 0.68,
) -> BootstrapResult:
    """Bootstrap uncertainty of ``metric(*arrays, weights=weights)``.

    Each of ``n`` resamples draws ``N`` events with replacement (the same events from every
    array and from the weights) and recomputes the metric; the spread of those values estimates
    the metric's statistical uncertainty.

    Args:
        metric: e.g. :func:`roc_auc`; called as ``metric(*arrays)`` when ``weights`` is None,
            else ``metric(*arrays, weights=...)``, and must return a float.
        arrays: per-event arrays with the same first dimension ``N`` (labels, predictions...).
        weights: ``(N,)`` event weights resampled with the events, or None.
        n: number of resamples (≥ 2). seed: for ``np.random.default_rng``.
        confidence: probability content of the percentile interval ``(low, high)``.

    Returns:
        ``(value, std, low, high)``. Resamples where the metric is infinite (a rejection with no
        background left) make ``std`` infinite or NaN: report a bound instead.
    """
    function = "bootstrap"
    if not arrays:
        raise MetricInputError(f"{function}: pass the metric's arrays (labels, predictions...)")
    if n < 2:
        raise MetricInputError(f"{function}: n must be at least 2 resamples, not {n}")
    if not 0.0 < confidence < 1.0:
        raise MetricInputError(f"{function}: confidence must be in (0, 1), not {confidence}")
    data = [np.asarray(array) for array in arrays]
    if weights is not None:
        data.append(np.asarray(weights))
    n_events = _same_length(function, **{f"array {i}": array for i, array in enumerate(data)})
    if n_events == 0:
        raise MetricInputError(f"{function}: the arrays are empty")

    def evaluate_on(index: npt.NDArray[np.intp] | slice) -> float:
        picked = [array[index] for array in data]
        if weights is None:
            return float(metric(*picked))
        return float(metric(*picked[:-1], weights=picked[-1]))

    value = evaluate_on(slice(None))
    generator = np.random.default_rng(seed)
    replicas = np.array(
        [evaluate_on(generator.integers(0, n_events, size=n_events)) for _ in range(n)]
    )
    low, high = np.quantile(replicas, [0.5 - confidence / 2, 0.5 + confidence / 2])
    return BootstrapResult(value, float(np.std(replicas, ddof=1)), float(low), float(high))


# --------------------------------------------------------------------------------------------
# One call per task

_HIGHER_IS_BETTER = {
    "accuracy": True,
    "auc": True,
    "rejection_30": True,
    "rejection_50": True,
    "ams": True,
    "bce": False,
    "cross_entropy": False,
    "loss": False,
    "mse": False,
    "mae": False,
    "resolution": False,
    "resolution_68": False,
}
_BEST_AT_ZERO = ("bias",)
TASKS = ("classification", "regression")


def evaluate(
    task: str,
    labels: ArrayLike,
    predictions: ArrayLike,
    weights: ArrayLike | None = None,
) -> dict[str, float]:
    """The standard metrics of a task, by name.

    Args:
        task: ``"classification"`` or ``"regression"`` (as in ``DataDescription.task``).
        labels: ``(N,)`` classes (int) or regression targets.
        predictions: binary: ``(N,)`` (or ``(N, 1)``) signal probability; multi-class:
            ``(N, C)`` class probabilities; regression: ``(N,)`` predicted values.
        weights: ``(N,)`` event weights, or None.

    Returns:
        binary classification: ``accuracy``, ``auc``, ``rejection_30`` and ``rejection_50``
        (``1/ε_B`` at ``ε_S`` = 0.3 and 0.5; may be ``inf``), ``bce``; multi-class:
        ``accuracy``, ``cross_entropy``; regression: ``mse``, ``mae``, ``bias``,
        ``resolution``, ``resolution_68``.
    """
    if task == "classification":
        array = np.asarray(predictions, dtype=np.float64)
        if array.ndim == 2 and array.shape[1] > 1:
            return {
                "accuracy": accuracy(labels, array, weights),
                "cross_entropy": cross_entropy(labels, array, weights),
            }
        function = "evaluate"
        false_positive_rate, true_positive_rate, _ = _roc(
            *_binary_inputs(labels, array, weights, function=function), function=function
        )  # one sort for the AUC and both rejections
        return {
            "accuracy": accuracy(labels, array, weights),
            "auc": _area(false_positive_rate, true_positive_rate),
            "rejection_30": _rejection(false_positive_rate, true_positive_rate, 0.3),
            "rejection_50": _rejection(false_positive_rate, true_positive_rate, 0.5),
            "bce": binary_cross_entropy(labels, array, weights),
        }
    if task == "regression":
        return {
            "mse": mse(labels, predictions, weights),
            "mae": mae(labels, predictions, weights),
            "bias": bias(labels, predictions, weights),
            "resolution": resolution(labels, predictions, weights),
            "resolution_68": resolution_68(labels, predictions, weights),
        }
    raise UnknownNameError(
        f"evaluate: unknown task {task!r}{closest_hint(str(task), list(TASKS))}; "
        f"known tasks: {', '.join(TASKS)}"
    )


#: The keys of :func:`evaluate` per kind of task (multi-class: ``"multiclass"``).
EVALUATED: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy", "auc", "rejection_30", "rejection_50", "bce"),
    "multiclass": ("accuracy", "cross_entropy"),
    "regression": ("mse", "mae", "bias", "resolution", "resolution_68"),
}


def higher_is_better(name: str) -> bool:
    """Whether a larger value of the metric ``name`` (a key of :func:`evaluate`, ``"ams"`` or
    ``"loss"``) is better: True for accuracy, AUC, rejections and AMS; False for losses and
    errors.

    Raises:
        MetricInputError: for ``"bias"``, which is best at zero, not at either end (monitor
            ``"mae"`` or ``"resolution"`` instead).
        UnknownNameError: for any other name; the message lists the known ones.
    """
    if name in _HIGHER_IS_BETTER:
        return _HIGHER_IS_BETTER[name]
    if name in _BEST_AT_ZERO:
        raise MetricInputError(
            f"higher_is_better: {name!r} is best at zero, neither high nor low; monitor 'mae' "
            "or 'resolution' instead"
        )
    known = sorted([*_HIGHER_IS_BETTER, *_BEST_AT_ZERO])
    raise UnknownNameError(
        f"unknown metric {name!r}{closest_hint(str(name), known)}; known metrics: "
        f"{', '.join(known)}"
    )
