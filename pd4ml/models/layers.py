"""Building blocks shared by the dense models: activations with their initialisation, and the
flattened, padding-masked view of a dataset's ``features``.

Initialisation follows the activation (as LUMIN's ``lookup_normal_init``): He/Kaiming normal
(fan-in) for the rectifier family (``relu``, ``leaky_relu``, ``elu``, ``swish``, ``gelu``), LeCun
normal (std ``1/sqrt(fan_in)``, what self-normalising networks need) for ``selu``, and Glorot
normal for ``tanh``. Biases start at zero.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pd4ml.models.base import ModelConfig, ModelConfigError
from pd4ml.models.description import DataDescription

#: Activations by name. ``swish`` is x·σ(x) (:class:`torch.nn.SiLU`).
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "swish": nn.SiLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
}

#: Boolean arrays that mask graph links, not the padding of ``features``.
GRAPH_MASKS = frozenset({"neighbour_mask", "edge_mask", "grid_mask"})


def check_activation(config: ModelConfig, field: str = "activation") -> None:
    """Raise :class:`ModelConfigError` naming ``field`` unless it is a known activation."""
    value = getattr(config, field)
    if value not in ACTIVATIONS:
        raise ModelConfigError(
            f"{type(config).__name__}.{field} must be one of {', '.join(sorted(ACTIVATIONS))}, "
            f"not {value!r}"
        )


def activation(name: str) -> nn.Module:
    """A new activation module for ``name`` (one of :data:`ACTIVATIONS`)."""
    return ACTIVATIONS[name]()


def dropout(name: str, rate: float) -> nn.Module:
    """Dropout matching the activation: alpha dropout for ``selu`` (it keeps the
    self-normalising mean and variance), plain dropout otherwise; identity at rate 0."""
    if rate == 0.0:
        return nn.Identity()
    return nn.AlphaDropout(rate) if name == "selu" else nn.Dropout(rate)


def initialise(layer: nn.Linear, name: str) -> None:
    """Initialise a linear layer that feeds activation ``name`` (see the module docstring);
    ``name="linear"`` is the output head (Glorot)."""
    fan_in = layer.weight.shape[1]
    if name == "selu":
        nn.init.normal_(layer.weight, 0.0, 1.0 / math.sqrt(fan_in))
    elif name in ("tanh", "linear"):
        nn.init.xavier_normal_(layer.weight)
    else:
        nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
    nn.init.zeros_(layer.bias)


def padding_mask(description: DataDescription) -> str | None:
    """The name of the boolean per-event array that marks the real entries of ``features``
    (``mask`` for particle lists, ``station_mask`` for air-shower stations), or None.

    A padding mask is a boolean per-event array named ``mask`` or ``*_mask`` (graph masks
    excluded) whose shape is the leading part of the shape of ``features``, e.g. ``(P,)`` for
    features ``(P, F)``. ``mask`` wins when several qualify."""
    shape = description.features.shape
    candidates = sorted(
        (name != "mask", name)
        for name, spec in description.arrays.items()
        if (name == "mask" or name.endswith("_mask"))
        and name not in GRAPH_MASKS
        and not spec.shared
        and spec.dtype == "bool"
        and 0 < len(spec.shape) <= len(shape)
        and tuple(spec.shape) == tuple(shape[: len(spec.shape)])
    )
    return candidates[0][1] if candidates else None


def flatten_features(features: torch.Tensor, mask: torch.Tensor | None, rank: int) -> torch.Tensor:
    """``features`` ``(B, *shape)`` → ``(B, prod(shape))`` float32, with the entries where the
    padding mask ``(B, *shape[:k])`` is False set to zero (a ``where``, so that padding never
    reaches the network, whatever value, even NaN, the data stores there). ``rank`` is
    ``len(shape)``."""
    values = features.to(torch.float32)
    if mask is not None:
        keep = mask.to(torch.bool)
        keep = keep.reshape(*keep.shape, *([1] * (rank + 1 - keep.dim())))
        values = torch.where(keep, values, torch.zeros((), dtype=values.dtype))
    return values.flatten(1)
