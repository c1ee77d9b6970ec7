"""Weighted losses: Σ w ℓ / Σ w; a zero weight removes an event from loss and gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional

from pd4ml.models import describe_arrays
from pd4ml.train.losses import per_event_loss, prediction_loss, resolve_loss, weighted_loss

torch.set_num_threads(1)


def gradients(
    name: str, x: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    torch.manual_seed(0)
    outputs = 3 if name == "cross_entropy" else 1
    layer = torch.nn.Linear(x.shape[1], outputs)
    raw = layer(x)
    raw = raw if outputs > 1 else raw.squeeze(-1)
    loss = weighted_loss(name, raw, labels, weights)  # type: ignore[arg-type]
    loss.backward()  # type: ignore[no-untyped-call]
    return loss.detach(), [p.grad.clone() for p in layer.parameters()]  # type: ignore[union-attr]


@pytest.mark.parametrize("name", ["bce", "cross_entropy", "mse", "huber"])
def test_zero_weight_removes_an_event_from_loss_and_gradients(name: str) -> None:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(9, 4, generator=generator)
    if name == "cross_entropy":
        labels = torch.randint(0, 3, (9,), generator=generator)
    elif name == "bce":
        labels = torch.randint(0, 2, (9,), generator=generator)
    else:
        labels = torch.randn(9, generator=generator) * 3
    weights = torch.rand(9, generator=generator) + 0.5
    weights[4] = 0.0
    x_changed, labels_changed = x.clone(), labels.clone()
    x_changed[4] = 100.0  # a wildly different event of weight 0
    labels_changed[4] = 1 if name in ("bce", "cross_entropy") else -50.0
    keep = torch.arange(9) != 4
    loss_full, grads_full = gradients(name, x_changed, labels_changed, weights)
    loss_kept, grads_kept = gradients(name, x[keep], labels[keep], weights[keep])
    torch.testing.assert_close(loss_full, loss_kept)
    for full, kept in zip(grads_full, grads_kept, strict=True):
        torch.testing.assert_close(full, kept)


def test_loss_is_weighted_mean_and_scale_free() -> None:
    raw = torch.tensor([0.3, -1.2, 2.0])
    labels = torch.tensor([1, 0, 0])
    weights = torch.tensor([1.0, 2.0, 3.0])
    per_event = functional.binary_cross_entropy_with_logits(raw, labels.float(), reduction="none")
    expected = (per_event * weights).sum() / weights.sum()
    torch.testing.assert_close(weighted_loss("bce", raw, labels, weights), expected)
    torch.testing.assert_close(weighted_loss("bce", raw, labels, 7 * weights), expected)
    # LUMIN's collapse, mean(w) · mean(ℓ), differs
    assert not torch.isclose(expected, weights.mean() * per_event.mean())


def test_all_zero_weights_give_zero_loss_not_nan() -> None:
    raw = torch.tensor([0.5, 1.0], requires_grad=True)
    loss = weighted_loss("mse", raw, torch.tensor([1.0, 2.0]), torch.zeros(2))
    loss.backward()  # type: ignore[no-untyped-call]
    assert loss.item() == 0.0 and torch.all(raw.grad == 0)  # type: ignore[arg-type]


def test_prediction_loss_matches_the_raw_loss() -> None:
    raw = torch.tensor([[0.2, 1.0, -0.5], [2.0, 0.0, 0.1]])
    labels = torch.tensor([1, 2])
    weights = torch.tensor([1.0, 3.0])
    torch.testing.assert_close(
        prediction_loss("cross_entropy", torch.softmax(raw, -1), labels, weights),
        weighted_loss("cross_entropy", raw, labels, weights),
    )
    logits = torch.tensor([0.4, -2.0])
    torch.testing.assert_close(
        prediction_loss("bce", torch.sigmoid(logits), torch.tensor([1, 0]), weights),
        weighted_loss("bce", logits, torch.tensor([1, 0]), weights),
    )
    assert per_event_loss("huber", torch.tensor([0.0, 3.0]), torch.tensor([0.5, 0.0])).tolist() == [
        0.125,
        2.5,
    ]


def test_auto_loss_follows_the_task() -> None:
    x = np.zeros((4, 2), dtype=np.float32)
    assert resolve_loss("auto", describe_arrays(x, np.array([0, 1, 0, 1]))) == "bce"
    assert resolve_loss("auto", describe_arrays(x, np.array([0, 1, 2, 1]))) == "cross_entropy"
    assert resolve_loss("auto", describe_arrays(x, np.zeros(4, dtype=np.float32))) == "mse"
    with pytest.raises(ValueError, match="regression"):
        resolve_loss("bce", describe_arrays(x, np.zeros(4, dtype=np.float32)))
