"""Every metric against an independent computation: scikit-learn where it has the metric, a
hand computation (brute-force loops, repeated events for integer weights) elsewhere."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as sk

from pd4ml import metrics
from pd4ml.errors import Pd4mlError, UnknownNameError
from pd4ml.metrics import (
    MetricInputError,
    accuracy,
    ams,
    ams_of_selection,
    background_rejection,
    best_ams,
    bias,
    binary_cross_entropy,
    bootstrap,
    cross_entropy,
    energy_resolution,
    evaluate,
    higher_is_better,
    mae,
    mse,
    resolution,
    resolution_68,
    roc_auc,
    roc_curve,
    weighted_quantile,
)


def binary_sample(
    n: int = 400, *, ties: bool = False, seed: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, overlapping signal/background scores in (0, 1), positive float weights."""
    generator = np.random.default_rng(seed)
    labels = generator.integers(0, 2, size=n)
    scores = 1 / (1 + np.exp(-(generator.normal(size=n) + 1.2 * labels)))
    if ties:
        scores = np.round(scores, 1)  # about ten distinct values: many ties across classes
    weights = generator.uniform(0.1, 3.0, size=n)
    return labels, scores, weights


# --------------------------------------------------------------------------------------------
# Classification


@pytest.mark.parametrize("weighted", [False, True])
def test_accuracy_matches_sklearn(weighted: bool) -> None:
    labels, scores, weights = binary_sample()
    w = weights if weighted else None
    assert accuracy(labels, scores, w) == pytest.approx(
        sk.accuracy_score(labels, scores >= 0.5, sample_weight=w), abs=1e-12
    )
    assert accuracy(labels, scores, w, threshold=0.7) == pytest.approx(
        sk.accuracy_score(labels, scores >= 0.7, sample_weight=w), abs=1e-12
    )
    generator = np.random.default_rng(2)
    classes = generator.integers(0, 4, size=300)
    probabilities = generator.dirichlet(np.ones(4), size=300)
    probabilities[np.arange(300), classes] += 0.3
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    w3 = weights[:300] if weighted else None
    assert accuracy(classes, probabilities, w3) == pytest.approx(
        sk.accuracy_score(classes, probabilities.argmax(axis=1), sample_weight=w3), abs=1e-12
    )


def test_accuracy_counts_the_threshold_as_signal() -> None:
    assert accuracy([1, 0], [0.5, 0.49]) == 1.0
    assert accuracy([1, 0], [0.5, 0.5]) == 0.5
    assert accuracy([1, 0, 1], [0.9, 0.2, 0.1], [1.0, 1.0, 2.0]) == 0.5


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_roc_curve_matches_sklearn(ties: bool, weighted: bool) -> None:
    labels, scores, weights = binary_sample(ties=ties)
    w = weights if weighted else None
    fpr, tpr, thresholds = roc_curve(labels, scores, w)
    expected = sk.roc_curve(labels, scores, sample_weight=w, drop_intermediate=False)
    np.testing.assert_allclose(fpr, expected[0], atol=1e-12)
    np.testing.assert_allclose(tpr, expected[1], atol=1e-12)
    assert thresholds[0] == np.inf
    np.testing.assert_array_equal(thresholds[1:], expected[2][1:])
    if ties:
        assert len(thresholds) == len(np.unique(scores)) + 1  # one point per tied group


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_roc_auc_matches_sklearn(ties: bool, weighted: bool) -> None:
    labels, scores, weights = binary_sample(ties=ties)
    w = weights if weighted else None
    assert roc_auc(labels, scores, w) == pytest.approx(
        sk.roc_auc_score(labels, scores, sample_weight=w), abs=1e-12
    )


def test_roc_auc_is_the_weighted_pair_probability_with_ties_one_half() -> None:
    labels, scores, weights = binary_sample(n=150, ties=True, seed=5)
    signal, background = labels == 1, labels == 0
    difference = scores[signal][:, None] - scores[background][None, :]
    pair_weights = weights[signal][:, None] * weights[background][None, :]
    wins = (difference > 0) + 0.5 * (difference == 0)
    by_pairs = float(np.sum(pair_weights * wins) / np.sum(pair_weights))
    assert roc_auc(labels, scores, weights) == pytest.approx(by_pairs, abs=1e-12)
    assert roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5  # all tied: no separation


def test_background_rejection_by_hand() -> None:
    # Signal scores 0.9, 0.8, 0.7, 0.6; background 0.85, 0.65, 0.3, 0.2, 0.1 (5 events).
    labels = [1, 1, 1, 1, 0, 0, 0, 0, 0]
    scores = [0.9, 0.8, 0.7, 0.6, 0.85, 0.65, 0.3, 0.2, 0.1]
    # eps_S = 0.5 is reached exactly at the cut 0.8, with one background event (0.85) passing.
    assert background_rejection(labels, scores, 0.5) == pytest.approx(5.0)
    # ROC points (eps_B, eps_S) in decreasing cut: (0, 0), (0, 0.25) at 0.9, (0.2, 0.25) at
    # 0.85, (0.2, 0.5) at 0.8, (0.2, 0.75) at 0.7, (0.4, 0.75) at 0.65, (0.4, 1) at 0.6, ...
    # eps_S = 0.3 lies on the segment from (0.2, 0.25) to (0.2, 0.5): eps_B = 0.2.
    assert background_rejection(labels, scores, 0.3) == pytest.approx(5.0)
    # eps_S = 0.75 is reached by the cuts 0.7 and 0.65: the better one, eps_B = 0.2, counts
    # (np.interp would take the last point with that eps_S, 0.4).
    assert background_rejection(labels, scores, 0.75) == pytest.approx(5.0)
    # eps_S = 0.875 between (0.2, 0.75) at 0.7 and (0.4, 1.0) at 0.6, through (0.4, 0.75) at
    # 0.65: the segment from (0.4, 0.75) to (0.4, 1.0) gives eps_B = 0.4.
    assert background_rejection(labels, scores, 0.875) == pytest.approx(2.5)
    # Weights: the background event at 0.85 weighs 3 of 7, so eps_B(0.5) = 3/7.
    weights = [1, 1, 1, 1, 3, 1, 1, 1, 1]
    assert background_rejection(labels, scores, 0.5, weights) == pytest.approx(7 / 3)
    # No background above the best signal: eps_B = 0 at eps_S = 0.25 -> infinite rejection.
    assert background_rejection(labels, scores, 0.25) == math.inf


@pytest.mark.parametrize("weighted", [False, True])
def test_background_rejection_matches_interpolated_sklearn_roc(weighted: bool) -> None:
    labels, scores, weights = binary_sample(n=2000, seed=3)
    w = weights if weighted else None
    fpr, tpr, _ = sk.roc_curve(labels, scores, sample_weight=w)
    for efficiency in (0.3, 0.5, 0.8):
        assert background_rejection(labels, scores, efficiency, w) == pytest.approx(
            1 / np.interp(efficiency, tpr, fpr), rel=1e-10
        )


def test_binary_cross_entropy_matches_sklearn_log_loss() -> None:
    labels, scores, weights = binary_sample()
    assert binary_cross_entropy(labels, scores) == pytest.approx(
        sk.log_loss(labels, scores), rel=1e-10
    )
    assert binary_cross_entropy(labels, scores, weights) == pytest.approx(
        sk.log_loss(labels, scores, sample_weight=weights), rel=1e-10
    )
    # Clipped: a certain wrong answer costs -ln(epsilon), not infinity.
    assert binary_cross_entropy([1, 0], [0.0, 1.0]) == pytest.approx(-math.log(1e-7))


def test_cross_entropy_matches_sklearn_log_loss() -> None:
    generator = np.random.default_rng(4)
    classes = generator.integers(0, 3, size=200)
    probabilities = generator.dirichlet(np.ones(3), size=200)
    weights = generator.uniform(0, 2, size=200)
    assert cross_entropy(classes, probabilities) == pytest.approx(
        sk.log_loss(classes, probabilities, labels=[0, 1, 2]), rel=1e-10
    )
    assert cross_entropy(classes, probabilities, weights) == pytest.approx(
        sk.log_loss(classes, probabilities, sample_weight=weights, labels=[0, 1, 2]), rel=1e-10
    )


# --------------------------------------------------------------------------------------------
# AMS


def test_ams_of_a_selection_by_hand_and_scaled() -> None:
    labels = np.array([1, 1, 0, 0, 1])
    selected = np.array([True, True, True, False, False])
    weights = np.array([4.0, 6.0, 100.0, 50.0, 7.0])
    assert ams_of_selection(labels, selected, weights) == pytest.approx(ams(10.0, 100.0))
    assert ams_of_selection(labels, selected, weights, scale=2.5) == pytest.approx(ams(25.0, 250.0))
    with pytest.raises(MetricInputError):
        ams(-1.0, 1.0)


def brute_force_best_ams(
    labels: np.ndarray, scores: np.ndarray, weights: np.ndarray, scale: float = 1.0
) -> tuple[float, float]:
    best, best_threshold = 0.0, math.inf
    for threshold in sorted(set(scores.tolist()), reverse=True):
        selected = scores >= threshold
        s = scale * float(weights[selected & (labels == 1)].sum())
        b = scale * float(weights[selected & (labels == 0)].sum())
        value = math.sqrt(2 * ((s + b + 10) * math.log(1 + s / (b + 10)) - s))
        if value > best:
            best, best_threshold = value, threshold
    return best, best_threshold


@pytest.mark.parametrize("ties", [False, True])
def test_best_ams_matches_a_loop_over_all_thresholds(ties: bool) -> None:
    generator = np.random.default_rng(6)
    labels, scores, _ = binary_sample(n=600, ties=ties, seed=7)
    # HiggsML-like KaggleWeights: small for signal, large for background.
    weights = np.where(
        labels == 1, generator.uniform(0.001, 0.01, 600), generator.uniform(1, 5, 600)
    )
    value, threshold = best_ams(labels, scores, weights)
    expected_value, expected_threshold = brute_force_best_ams(labels, scores, weights)
    assert value == pytest.approx(expected_value, rel=1e-12)
    assert threshold == expected_threshold
    scaled = best_ams(labels, scores, weights, scale=50.0)
    expected_scaled = brute_force_best_ams(labels, scores, weights, scale=50.0)
    assert scaled[0] == pytest.approx(expected_scaled[0], rel=1e-12)
    assert scaled[1] == expected_scaled[1]
    assert scaled[0] > value  # a subset's own weights understate the full-luminosity AMS
    assert ams_of_selection(labels, scores >= threshold, weights) == pytest.approx(value)


def test_best_ams_without_signal_is_the_empty_selection() -> None:
    assert best_ams([0, 0, 0], [0.1, 0.5, 0.9], [1.0, 1.0, 1.0]) == (0.0, math.inf)


# --------------------------------------------------------------------------------------------
# Regression


def regression_sample(n: int = 500, seed: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    generator = np.random.default_rng(seed)
    truth = generator.uniform(10, 100, size=n)
    predictions = truth * (1 + 0.1 * generator.standard_t(3, size=n)) + 2.0
    integer_weights = generator.integers(0, 5, size=n).astype(np.float64)
    return truth, predictions, integer_weights


@pytest.mark.parametrize("weighted", [False, True])
def test_mse_and_mae_match_sklearn(weighted: bool) -> None:
    truth, predictions, weights = regression_sample()
    w = weights if weighted else None
    assert mse(truth, predictions, w) == pytest.approx(
        sk.mean_squared_error(truth, predictions, sample_weight=w), rel=1e-12
    )
    assert mae(truth, predictions, w) == pytest.approx(
        sk.mean_absolute_error(truth, predictions, sample_weight=w), rel=1e-12
    )


def test_bias_and_resolution_equal_repeated_events() -> None:
    truth, predictions, weights = regression_sample()
    counts = weights.astype(int)
    residual = np.repeat(predictions - truth, counts)
    relative = np.repeat((predictions - truth) / truth, counts)
    assert bias(truth, predictions, weights) == pytest.approx(residual.mean(), rel=1e-12)
    assert resolution(truth, predictions, weights) == pytest.approx(residual.std(), rel=1e-12)
    assert bias(truth, predictions, weights, relative=True) == pytest.approx(relative.mean())
    assert resolution(truth, predictions, weights, relative=True) == pytest.approx(relative.std())
    assert bias([1.0, 2.0], [2.0, 2.0]) == pytest.approx(0.5)


def test_weighted_quantile_equals_the_quantile_of_repeated_events() -> None:
    generator = np.random.default_rng(9)
    values = generator.normal(size=300)
    weights = generator.integers(0, 6, size=300)
    quantiles = np.array([0.013, 0.158, 0.5, 0.77, 0.841, 0.999])
    expected = np.quantile(np.repeat(values, weights), quantiles, method="inverted_cdf")
    np.testing.assert_array_equal(weighted_quantile(values, quantiles, weights), expected)
    # A hand case: values 1, 2, 3 with weights 1, 2, 1 -> cumulative fractions 1/4, 3/4, 1.
    np.testing.assert_array_equal(
        weighted_quantile([3.0, 1.0, 2.0], [0.2, 0.25, 0.3, 0.75, 0.8], [1, 1, 2]),
        [1.0, 1.0, 2.0, 2.0, 3.0],
    )
    # Zero-weight events never become a quantile.
    assert weighted_quantile([0.0, 5.0, 10.0], 0.5, [1, 0, 1]) == 0.0


def test_resolution_68_by_hand_and_on_a_gaussian() -> None:
    truth, predictions, weights = regression_sample()
    residual = np.repeat(predictions - truth, weights.astype(int))
    coverage = math.erf(1 / math.sqrt(2))
    low, high = np.quantile(
        residual, [0.5 - coverage / 2, 0.5 + coverage / 2], method="inverted_cdf"
    )
    assert resolution_68(truth, predictions, weights) == pytest.approx((high - low) / 2, rel=1e-12)
    low, high = np.quantile(residual, [0.05, 0.95], method="inverted_cdf")
    assert resolution_68(truth, predictions, weights, coverage=0.9) == pytest.approx(
        (high - low) / 2, rel=1e-12
    )
    generator = np.random.default_rng(10)
    gaussian = generator.normal(0, 3.0, size=50_000)
    zeros = np.zeros_like(gaussian)
    assert resolution_68(zeros, gaussian) == pytest.approx(3.0, rel=0.02)
    # Tails inflate the standard deviation but barely the central interval.
    tails = np.r_[gaussian, np.full(500, 1000.0)]
    assert resolution(np.zeros_like(tails), tails) > 20
    assert resolution_68(np.zeros_like(tails), tails) == pytest.approx(3.0, rel=0.05)


def test_energy_resolution_per_bin_by_hand() -> None:
    truth, predictions, weights = regression_sample(n=2000)
    edges = np.array([10.0, 20.0, 50.0, 100.0, 120.0])  # the last bin is empty
    table = energy_resolution(truth, predictions, edges, weights)
    np.testing.assert_array_equal(table.edges, edges)
    np.testing.assert_allclose(table.centres, [15.0, 35.0, 75.0, 110.0])
    for b in range(3):
        inside = (truth >= edges[b]) & (truth < edges[b + 1])
        counts = weights[inside].astype(int)
        relative = np.repeat((predictions[inside] - truth[inside]) / truth[inside], counts)
        assert table.counts[b] == np.count_nonzero(inside)
        assert table.sum_weights[b] == pytest.approx(weights[inside].sum())
        assert table.resolution[b] == pytest.approx(relative.std(), rel=1e-12)
        assert table.bias[b] == pytest.approx(relative.mean(), rel=1e-12)
        low, high = np.quantile(relative, [0.158655, 0.841345], method="inverted_cdf")
        assert table.resolution_68[b] == pytest.approx((high - low) / 2, rel=1e-12)
    assert table.counts[3] == 0
    assert np.isnan(table.resolution[3]) and np.isnan(table.bias[3])
    # An integer gives equal-width bins over the true energies, the maximum in the last bin.
    table = energy_resolution([1.0, 2.0, 3.0, 4.0], [1.1, 2.0, 3.0, 4.4], 2)
    np.testing.assert_allclose(table.edges, [1.0, 2.5, 4.0])
    np.testing.assert_array_equal(table.counts, [2, 2])
    np.testing.assert_allclose(table.bias, [0.05, 0.05])


# --------------------------------------------------------------------------------------------
# Bootstrap


def test_bootstrap_std_of_a_mean_is_sigma_over_root_n() -> None:
    generator = np.random.default_rng(11)
    sigma, n_events = 2.0, 400
    values = generator.normal(5.0, sigma, size=n_events)

    def mean(array: np.ndarray) -> float:
        return float(np.mean(array))

    result = bootstrap(mean, values, n=400, seed=3)
    assert result.value == pytest.approx(values.mean())
    # sigma/sqrt(n) = 0.1; 400 resamples estimate a std to about 4 %, the sample's sigma to 4 %.
    assert result.std == pytest.approx(sigma / math.sqrt(n_events), rel=0.15)
    assert result.low < result.value < result.high
    assert (result.high - result.low) / 2 == pytest.approx(result.std, rel=0.15)
    assert bootstrap(mean, values, n=400, seed=3) == result  # reproducible by seed
    assert bootstrap(mean, values, n=400, seed=4) != result


def test_bootstrap_resamples_weights_with_their_events() -> None:
    labels, scores, weights = binary_sample(n=300)
    result = bootstrap(roc_auc, labels, scores, weights=weights, n=50)
    assert result.value == pytest.approx(roc_auc(labels, scores, weights))
    assert 0 < result.std < 0.1
    # The weights travel with their events: odd events have x = 1 and weight 0, so every
    # resample's weighted mean is 0; weights drawn apart from their events would not give 0.
    x = (np.arange(300) % 2).astype(np.float64)
    parity_weights = 1.0 - x

    def weighted_mean(values: np.ndarray, weights: np.ndarray) -> float:
        return float(np.average(values, weights=weights))

    assert bootstrap(weighted_mean, x, weights=parity_weights, n=50) == (0.0, 0.0, 0.0, 0.0)


# --------------------------------------------------------------------------------------------
# evaluate and higher_is_better


def test_evaluate_keys_and_values() -> None:
    labels, scores, weights = binary_sample()
    binary = evaluate("classification", labels, scores, weights)
    assert list(binary) == ["accuracy", "auc", "rejection_30", "rejection_50", "bce"]
    assert binary["auc"] == roc_auc(labels, scores, weights)
    assert binary["rejection_30"] == background_rejection(labels, scores, 0.3, weights)
    assert binary["rejection_50"] == background_rejection(labels, scores, 0.5, weights)
    assert evaluate("classification", labels, scores[:, None]) == evaluate(
        "classification", labels, scores
    )
    probabilities = np.c_[1 - scores, scores]
    multi = evaluate("classification", labels, probabilities, weights)
    assert multi == {
        "accuracy": accuracy(labels, scores, weights),
        "cross_entropy": pytest.approx(binary["bce"], rel=1e-12),
    }
    truth, predictions, w = regression_sample()
    regression = evaluate("regression", truth, predictions, w)
    assert list(regression) == ["mse", "mae", "bias", "resolution", "resolution_68"]
    assert regression["resolution_68"] == resolution_68(truth, predictions, w)
    with pytest.raises(UnknownNameError, match=r"did you mean 'regression'.*classification"):
        evaluate("regresion", truth, predictions)


def test_higher_is_better() -> None:
    for name in ("accuracy", "auc", "rejection_30", "rejection_50", "ams"):
        assert higher_is_better(name) is True
    for name in ("bce", "cross_entropy", "mse", "mae", "resolution", "resolution_68", "loss"):
        assert higher_is_better(name) is False
    with pytest.raises(MetricInputError, match="best at zero"):
        higher_is_better("bias")
    with pytest.raises(UnknownNameError, match=r"did you mean 'auc'.*known metrics: accuracy"):
        higher_is_better("acu")


# --------------------------------------------------------------------------------------------
# Input validation


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: roc_auc([0, 1, 1], [0.1, 0.2]), "different lengths"),
        (lambda: roc_auc([0, 1], [0.1, np.nan]), "NaN"),
        (lambda: roc_auc([0, 1], [0.1, 0.2], [1.0, -1.0]), "non-negative"),
        (lambda: roc_auc([0, 1], [0.1, 0.2], [1.0]), "weights has 1 entries for 2"),
        (lambda: roc_auc([], []), "empty"),
        (lambda: roc_auc([1, 1], [0.1, 0.2]), "no background"),
        (lambda: roc_auc([0, 1], [0.1, 0.2], [1.0, 0.0]), "no signal"),
        (lambda: roc_auc([0, 2], [0.1, 0.2]), "0 \\(background\\) or 1"),
        (lambda: binary_cross_entropy([0, 1], [-2.0, 3.0]), "logits"),
        (lambda: cross_entropy([0, 1], [[0.2, 0.3], [0.5, 0.1]]), "sum to 1"),
        (lambda: accuracy([0, 3], [[0.2, 0.8], [0.5, 0.5]]), "0..1"),
        (lambda: mse([1.0], [[1.0, 2.0]]), "shape \\(N,\\)"),
        (lambda: background_rejection([0, 1], [0.1, 0.2], 0.0), "in \\(0, 1\\]"),
        (lambda: bias([0.0, 1.0], [1.0, 1.0], relative=True), "divides by the truth"),
        (lambda: mae([1.0, 2.0], [1.0, 2.0], [0.0, 0.0]), "sum to zero"),
    ],
)
def test_invalid_inputs_raise_clear_errors(call: object, message: str) -> None:
    with pytest.raises(MetricInputError, match=message) as caught:
        call()  # type: ignore[operator]
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, Pd4mlError)


def test_evaluated_names_are_the_keys_of_evaluate() -> None:
    labels = np.array([0, 1, 0, 1, 1, 0])
    scores = np.array([0.1, 0.8, 0.3, 0.6, 0.9, 0.4])
    assert (
        tuple(metrics.evaluate("classification", labels, scores))
        == (metrics.EVALUATED["classification"])
    )
    three = np.full((6, 3), 1 / 3)
    assert (
        tuple(metrics.evaluate("classification", labels, three))
        == (metrics.EVALUATED["multiclass"])
    )
    values = labels.astype(float)
    assert tuple(metrics.evaluate("regression", values, scores)) == metrics.EVALUATED["regression"]
