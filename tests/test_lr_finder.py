"""The LR range test: the sweep, the smoothing, early stopping, the suggestion on toy problems,
plots and JSON."""

from __future__ import annotations

import json
import math
import sys
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest
import torch

from pd4ml.errors import Pd4mlError
from pd4ml.train.lr_finder import LRFinderError, LRFinderResult, find_learning_rate

torch.set_num_threads(1)


def regression(kind: str, optimizer: str, seed: int = 0):
    """A standardised toy problem and its ``train_step(lr)`` closure (batches of 64)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(4096, 10, generator=generator)
    w = torch.randn(10, generator=generator)
    if kind == "linear":
        y = x @ w + 0.1 * torch.randn(4096, generator=generator)
        loss_function = torch.nn.functional.mse_loss
    else:
        y = (torch.sigmoid(x @ w) > torch.rand(4096, generator=generator)).float()
        loss_function = torch.nn.functional.binary_cross_entropy_with_logits
    torch.manual_seed(seed)
    model = torch.nn.Linear(10, 1)
    cls = torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam
    optim = cls(model.parameters(), lr=1.0)
    rows = np.random.default_rng(seed)

    def train_step(lr: float) -> float:
        batch = torch.from_numpy(rows.integers(0, len(x), 64))
        for group in optim.param_groups:
            group["lr"] = lr
        optim.zero_grad()
        loss = loss_function(model(x[batch]).squeeze(-1), y[batch])
        loss.backward()
        optim.step()
        return float(loss.item())

    def full_loss() -> float:
        with torch.no_grad():
            return float(loss_function(model(x).squeeze(-1), y).item())

    return train_step, full_loss, x


def trained_loss(kind: str, optimizer: str, lr: float, steps: int = 60) -> tuple[float, float]:
    """(loss before, loss after) ``steps`` steps at a constant ``lr`` from a fresh model."""
    train_step, full_loss, _ = regression(kind, optimizer, seed=1)
    before = full_loss()
    for _ in range(steps):
        train_step(lr)
    return before, full_loss()


def test_suggestion_for_sgd_on_standardised_linear_regression():
    """MSE on standardised features: the Hessian is 2·Cov(x) ≈ 2·I, so SGD is stable below
    2 / λ_max ≈ 1 and fastest at 1 / λ_max ≈ 0.5. A sane suggestion lies in [1e-2, 2/λ_max):
    not uselessly small, never unstable."""
    train_step, _, x = regression("linear", "sgd")
    result = find_learning_rate(train_step)
    hessian_max = 2 * float(torch.linalg.eigvalsh(x.T @ x / len(x)).max())
    assert 1e-2 <= result.suggestion < 2 / hessian_max
    assert result.stopped_early  # the sweep up to 10 diverges
    before, at_suggestion = trained_loss("linear", "sgd", result.suggestion)
    _, at_tiny = trained_loss("linear", "sgd", 1e-6)
    assert at_suggestion < 0.1 * before  # trains and does not diverge
    assert at_suggestion < 0.5 * at_tiny


def test_suggestion_for_adam_on_logistic_regression():
    """Adam moves each weight by about lr per step: for weights of order 1 the useful rates are
    1e-3 (slow) to ~0.3; the suggestion lies in [1e-3, 1]."""
    train_step, _, _ = regression("logistic", "adam")
    result = find_learning_rate(train_step)
    assert 1e-3 <= result.suggestion <= 1.0
    before, at_suggestion = trained_loss("logistic", "adam", result.suggestion)
    _, at_tiny = trained_loss("logistic", "adam", 1e-6)
    assert at_suggestion < 0.8 * before
    assert at_suggestion < at_tiny - 0.1


def test_the_sweep_is_exponential_from_start_to_stop():
    seen: list[float] = []
    result = find_learning_rate(lambda lr: seen.append(lr) or 1.0, start=1e-5, stop=1.0, steps=11)
    assert seen == list(result.learning_rates)
    np.testing.assert_allclose(result.learning_rates, 10.0 ** np.linspace(-5, 0, 11), rtol=1e-12)
    ratios = np.diff(np.log(result.learning_rates))
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-9)
    assert not result.stopped_early


def test_smoothing_is_bias_corrected():
    constant = find_learning_rate(lambda lr: 2.5, steps=20)
    np.testing.assert_allclose(constant.smoothed, 2.5, rtol=1e-12)  # not pulled towards 0
    losses = iter([4.0, 2.0, 1.0, 3.0])
    result = find_learning_rate(lambda lr: next(losses), steps=4, smoothing=0.5, divergence=100)
    # averages 2, 2, 1.5, 2.25 divided by 1 − 0.5^k
    np.testing.assert_allclose(result.smoothed, [4.0, 8 / 3, 1.5 / 0.875, 2.25 / 0.9375])


def test_divergence_stops_early():
    calls: list[float] = []

    def exploding(lr: float) -> float:
        calls.append(lr)
        return 1.0 if lr < 1e-3 else 1.0 + 1e4 * (lr - 1e-3)

    result = find_learning_rate(exploding, smoothing=0.0)
    assert result.stopped_early
    assert len(calls) == len(result.losses) < 100
    assert result.smoothed[-1] > 4.0 * min(result.smoothed)
    assert max(result.smoothed[:-1]) <= 4.0 * min(result.smoothed)
    assert result.minimum < 1e-3 * 1.3  # the last rate before the blow-up
    assert result.suggestion == pytest.approx(result.minimum / 10)


def test_non_finite_loss_stops_and_a_first_non_finite_loss_is_an_error():
    result = find_learning_rate(lambda lr: 1.0 if lr < 1e-2 else math.nan)
    assert result.stopped_early and math.isnan(result.losses[-1])
    assert result.minimum < 1e-2
    json.dumps(result.to_json(), allow_nan=False)
    with pytest.raises(LRFinderError, match="first learning rate"):
        find_learning_rate(lambda lr: math.inf)


def test_the_suggestion_is_a_decade_below_the_smoothed_minimum_and_robust_to_noise():
    def valley(lr: float) -> float:  # minimum at lr = 0.1, blows up above 1
        return 1.0 + (math.log10(lr) + 1.0) ** 2 / 10 + (50.0 * (lr - 1.0) if lr > 1 else 0.0)

    exact = find_learning_rate(valley, smoothing=0.0, steps=81)  # rates at whole tenths of decades
    assert exact.minimum == pytest.approx(0.1)
    assert exact.suggestion == pytest.approx(0.01)
    suggestions = []
    for seed in range(10):
        noise = np.random.default_rng(seed)
        noisy = find_learning_rate(
            lambda lr, noise=noise: valley(lr) * (1 + 0.1 * noise.standard_normal())
        )
        suggestions.append(noisy.suggestion)
    spread = np.log10(suggestions)
    assert spread.max() - spread.min() < 1.0  # within a decade over 10 noise realisations
    assert all(1e-3 < value < 0.1 for value in suggestions)


def test_suggestion_is_never_below_start():
    result = find_learning_rate(lambda lr: 1.0 + lr, start=1e-4)  # only gets worse
    assert result.minimum == pytest.approx(1e-4)
    assert result.suggestion == pytest.approx(1e-4)


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"start": 0.0}, "start"),
        ({"stop": math.inf}, "stop"),
        ({"start": 1.0, "stop": 0.1}, "below stop"),
        ({"steps": 1}, "steps"),
        ({"smoothing": 1.0}, "smoothing"),
        ({"divergence": 1.0}, "divergence"),
    ],
)
def test_invalid_arguments(options, name):
    with pytest.raises(LRFinderError, match=name) as error:
        find_learning_rate(lambda lr: 1.0, **options)
    assert isinstance(error.value, Pd4mlError)


def _result() -> LRFinderResult:
    return find_learning_rate(lambda lr: 1.0 / (1 + lr) if lr < 1 else 10 * lr, steps=50)


def test_svg_plot_is_written_and_well_formed(tmp_path):
    path = _result().plot(tmp_path / "finder.svg")
    assert path == tmp_path / "finder.svg"
    root = ElementTree.parse(path).getroot()
    assert root.tag.endswith("svg")
    assert len(root.findall("{http://www.w3.org/2000/svg}polyline")) == 2
    assert "suggestion" in path.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["finder.svg"]  # no temporary left


def test_png_without_matplotlib_falls_back_to_svg(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with caplog.at_level("WARNING", logger="pd4ml"):
        path = _result().plot(tmp_path / "finder.png")
    assert path == tmp_path / "finder.svg" and path.exists()
    assert not (tmp_path / "finder.png").exists()
    assert "matplotlib is not installed" in caplog.text


def test_png_with_matplotlib(tmp_path):
    pytest.importorskip("matplotlib")
    path = _result().plot(tmp_path / "finder.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_to_json_round_trips_the_numbers():
    result = _result()
    value = json.loads(json.dumps(result.to_json(), allow_nan=False))
    assert value["learning_rates"] == list(result.learning_rates)
    assert value["suggestion"] == result.suggestion
    assert value["stopped_early"] == result.stopped_early
    assert len(value["losses"]) == len(value["smoothed"]) == len(result.losses)
