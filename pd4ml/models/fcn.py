"""The shared fully connected network of the original pd4ml (``pd4ml_models/fcn.py``).

The paper's model: the flattened ``features`` array, **12 × Dense(256, ReLU)**, then one output
unit (sigmoid for classification, linear for regression: :func:`pd4ml.models.to_prediction`
applies it; ``forward`` returns the logit or value). Like the original it reads only
``features`` (other float inputs, e.g. HiggsML's ``missing`` flags, are not used). One
difference, so that the same network is right on padded data: where the description has a
padding mask (``mask`` for particle lists, ``station_mask`` for air-shower stations, see
:func:`pd4ml.models.layers.padding_mask`), the masked entries are set to zero before flattening,
so the output does not depend on what the data stores in the padding.

Input sizes per dataset: top tagging ``P·7``, SmartBKG ``100·8``, spinodal ``1·20·20``, EOS
``576`` (nodes or image), airshower ``81·81``, CALICE ``372·5``, HiggsML ``31``, ILD photon
showers ``1·30·30·30``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from pd4ml.models.base import Model, ModelConfig, fraction, positive, register_architecture
from pd4ml.models.description import DataDescription
from pd4ml.models.layers import (
    activation,
    check_activation,
    dropout,
    flatten_features,
    initialise,
    padding_mask,
)


@dataclass(frozen=True)
class FCNConfig(ModelConfig):
    """Configuration of :class:`FCN`.

    Attributes:
        depth: number of hidden dense layers (the paper: 12).
        width: units per hidden layer (the paper: 256).
        activation: hidden activation (see :data:`pd4ml.models.layers.ACTIVATIONS`).
        dropout: dropout rate after each hidden layer, in [0, 1) (the paper: none).
    """

    depth: int = 12
    width: int = 256
    activation: str = "relu"
    dropout: float = 0.0

    def check(self) -> None:
        positive(self, "depth", "width")
        fraction(self, "dropout")
        check_activation(self)


@register_architecture
class FCN(Model):
    """Fully connected network on the flattened (padding-masked) ``features``.

    ``forward(features[, mask])``: ``features`` ``(B, *shape)`` float, the padding mask
    ``(B, *shape[:k])`` bool when the description has one (:attr:`inputs` says which); returns
    ``(B,)`` (binary classification, regression) or ``(B, C)`` logits.
    """

    architecture = "fcn"
    Config = FCNConfig
    config: FCNConfig

    def __init__(
        self,
        description: DataDescription,
        config: ModelConfig,
        shared: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        super().__init__(description, config, shared)
        mask = padding_mask(description)
        self.inputs = ("features",) if mask is None else ("features", mask)
        self._rank = len(description.features.shape)
        n_inputs = math.prod(description.features.shape)
        layers: list[nn.Module] = []
        for index in range(self.config.depth):
            linear = nn.Linear(n_inputs if index == 0 else self.config.width, self.config.width)
            initialise(linear, self.config.activation)
            layers += [
                linear,
                activation(self.config.activation),
                dropout(self.config.activation, self.config.dropout),
            ]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(self.config.width, description.n_outputs)
        initialise(self.head, "linear")

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        raw: torch.Tensor = self.head(self.body(flatten_features(features, mask, self._rank)))
        return raw.squeeze(-1) if self.description.n_outputs == 1 else raw
