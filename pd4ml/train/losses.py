"""Sample-weighted losses, normalised by the weight of the batch.

Every loss is the weighted mean of per-event losses ``ℓ_i``::

    L = Σ_i w_i ℓ_i / Σ_i w_i

so an event of weight 0 has no influence on the loss nor on its gradient, and the scale of the
weights does not change the learning rate. (LUMIN's weighted losses reduced to
mean(w) × mean(ℓ) inside its training loop, i.e. were not weighted at all.) A batch whose
weights sum to 0 gives a loss of 0 and no gradient. With data-parallel training the
normaliser is the weight of the *global* batch (see :func:`weighted_loss`'s ``normaliser``).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch.nn import functional

from pd4ml.models.description import DataDescription
from pd4ml.train.recipe import RecipeError

LossName = Literal["bce", "cross_entropy", "mse", "huber"]
LOSSES: tuple[LossName, ...] = ("bce", "cross_entropy", "mse", "huber")


def resolve_loss(name: str, description: DataDescription) -> LossName:
    """The loss for ``name`` (``"auto"``: BCE for binary classification, cross-entropy for more
    classes, MSE for regression), checked against the task."""
    classification = description.task == "classification"
    if name == "auto":
        if not classification:
            return "mse"
        return "bce" if description.n_outputs == 1 else "cross_entropy"
    if name in ("bce", "cross_entropy") and not classification:
        raise RecipeError(f"Recipe.loss {name!r} needs a classification; this is a regression")
    if name in ("mse", "huber") and classification:
        raise RecipeError(f"Recipe.loss {name!r} needs a regression; this is a classification")
    if name == "bce" and description.n_outputs != 1:
        raise RecipeError("Recipe.loss 'bce' is for two classes; use 'cross_entropy'")
    if name not in LOSSES:
        raise RecipeError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    return name


def per_event_loss(name: LossName, raw: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-event losses ``(B,)`` of the raw model output: ``raw`` ``(B,)`` (logit or value) or
    ``(B, C)`` logits; ``labels`` ``(B,)`` int64 classes or float targets."""
    if name == "cross_entropy":
        return functional.cross_entropy(raw.float(), labels, reduction="none")
    values = raw.reshape(labels.shape[0]).float()
    target = labels.to(values.dtype)
    if name == "bce":
        return functional.binary_cross_entropy_with_logits(values, target, reduction="none")
    if name == "mse":
        return (values - target).square()
    return functional.huber_loss(values, target, reduction="none", delta=1.0)


def weighted_loss(
    name: LossName,
    raw: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor,
    normaliser: torch.Tensor | None = None,
) -> torch.Tensor:
    """``Σ w_i ℓ_i / normaliser`` with ``normaliser`` = ``Σ w_i`` of the batch by default
    (pass the global batch's weight for data-parallel training). A scalar tensor."""
    losses = per_event_loss(name, raw, labels)
    weights = weights.to(losses.dtype)
    total = weights.sum() if normaliser is None else normaliser
    return (losses * weights).sum() / total.clamp_min(torch.finfo(losses.dtype).tiny)


def prediction_loss(
    name: LossName, predictions: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """The weighted loss of *predictions* (probabilities or values, what an ensemble returns):
    BCE / cross-entropy on probabilities clipped to [1e-7, 1 - 1e-7], MSE / Huber on values."""
    eps = 1e-7
    if name == "cross_entropy":
        probability = predictions.float().clamp(eps, 1 - eps)
        losses = -torch.log(probability.gather(1, labels[:, None]).squeeze(1))
    elif name == "bce":
        p = predictions.reshape(labels.shape[0]).float().clamp(eps, 1 - eps)
        y = labels.float()
        losses = -(y * torch.log(p) + (1 - y) * torch.log1p(-p))
    else:
        losses = per_event_loss(name, predictions, labels)
    weights = weights.to(losses.dtype)
    return (losses * weights).sum() / weights.sum().clamp_min(torch.finfo(losses.dtype).tiny)
