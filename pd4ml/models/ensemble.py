"""Ensembles: the weighted mean of several models' predictions.

An :class:`Ensemble` averages the members' *predictions* (probabilities for classification,
values for regression), never their logits, with weights that are positive and sum to 1
(uniform by default; the trainer's validation weighting passes its own). It is called like a
model, with the arrays named by :attr:`Ensemble.inputs` (the union of the members' inputs, the
first member's first), and saves, loads and exports to ONNX like one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from pd4ml.models.base import Model, ModelConfigError
from pd4ml.models.description import DataDescription


def normalised_weights(weights: Sequence[float] | None, n_members: int) -> list[float]:
    """Ensemble weights summing to 1: uniform when None, else ``weights`` (finite, > 0, one per
    member) divided by their sum."""
    if weights is None:
        return [1.0 / n_members] * n_members
    values = [float(w) for w in weights]
    if len(values) != n_members:
        raise ModelConfigError(
            f"Ensemble weights: {len(values)} weight(s) for {n_members} member(s); give one per "
            "member"
        )
    if not all(math.isfinite(w) and w > 0 for w in values):
        raise ModelConfigError(f"Ensemble weights must be finite and positive, not {values}")
    total = math.fsum(values)
    return [w / total for w in values]


class Ensemble(nn.Module):
    """The weighted mean of the members' predictions.

    Attributes:
        members: the models (:class:`torch.nn.ModuleList` of :class:`pd4ml.models.Model`).
        weights: buffer ``(M,)`` float32 summing to 1.
        inputs: union of the members' input names (first member's order first).
        description: the members' data description (that of the first member).
    """

    weights: torch.Tensor

    def __init__(self, members: Sequence[Model], weights: Sequence[float] | None = None) -> None:
        super().__init__()
        if len(members) == 0:
            raise ModelConfigError("an Ensemble needs at least one member")
        for index, member in enumerate(members):
            if not isinstance(member, Model):
                raise ModelConfigError(
                    f"Ensemble member {index} is a {type(member).__name__}, not a pd4ml Model"
                )
        first = members[0].description
        for index, member in enumerate(members[1:], start=1):
            other = member.description
            if (other.task, other.n_classes) != (first.task, first.n_classes):
                raise ModelConfigError(
                    f"Ensemble member {index} predicts {other.task} with {other.n_classes} "
                    f"classes, member 0 {first.task} with {first.n_classes}; members must "
                    "share the task"
                )
        self.members = nn.ModuleList(members)
        self.register_buffer(
            "weights",
            torch.tensor(normalised_weights(weights, len(members)), dtype=torch.float32),
        )
        names: list[str] = []
        for member in members:
            names += [name for name in member.inputs if name not in names]
        self.inputs: tuple[str, ...] = tuple(names)
        self._positions = [
            tuple(self.inputs.index(name) for name in member.inputs) for member in members
        ]
        self.description: DataDescription = first

    def models(self) -> list[Model]:
        """The members, typed."""
        return [member for member in self.members if isinstance(member, Model)]

    def member_predictions(self, *arrays: torch.Tensor) -> torch.Tensor:
        """Each member's prediction: ``(M, B)`` or ``(M, B, C)``; ``arrays`` as :attr:`inputs`."""
        if len(arrays) != len(self.inputs):
            raise TypeError(
                f"the ensemble takes {len(self.inputs)} arrays ({', '.join(self.inputs)}), "
                f"not {len(arrays)}"
            )
        return torch.stack(
            [
                member.predict(*(arrays[i] for i in positions))
                for member, positions in zip(self.models(), self._positions, strict=True)
            ]
        )

    def forward(self, *arrays: torch.Tensor) -> torch.Tensor:
        """The weighted mean prediction ``(B,)`` or ``(B, C)``; ``arrays`` as :attr:`inputs`."""
        predictions = self.member_predictions(*arrays)
        weights = self.weights.to(predictions.dtype)
        mean: torch.Tensor = torch.tensordot(weights, predictions, dims=1)
        return mean

    def predict(self, *arrays: torch.Tensor) -> torch.Tensor:
        """Same as calling the ensemble (its output already is a prediction)."""
        result: torch.Tensor = self(*arrays)
        return result

    def n_parameters(self) -> int:
        """Number of trainable parameters of all members."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
