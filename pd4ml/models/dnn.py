"""A small dense network in the style of LUMIN's HiggsML model (Strong 2020, arXiv:2002.01427).

LUMIN's winning-level HiggsML model was an ensemble of networks of **6 dense-connected layers of
33 Swish units** with an entity embedding of ``PRI_jet_num`` (4 categories → 3 dimensions), no
batch norm and no dropout (``../shared/reference/lumin.md`` §2.1). :class:`DNN` builds that
family for any description:

* the input is the flattened, padding-masked ``features`` (as in :class:`pd4ml.models.FCN`)
  concatenated with the entity embeddings of integer per-event arrays named in
  :attr:`DNNConfig.embeddings` (e.g. HiggsML's ``jet_multiplicity``), each flattened;
* ``depth`` layers Linear → activation → [BatchNorm] → [dropout]; with ``dense_connections``
  every layer reads the concatenation of the input and the outputs of all previous layers
  (DenseNet style, LUMIN's ``FullyConnected(dense=True)``), otherwise only the previous output;
* a linear head on the last layer's output (sigmoid / softmax / identity applied by
  :func:`pd4ml.models.to_prediction`).

Initialisation follows the activation (:mod:`pd4ml.models.layers`): He normal for Swish/ReLU,
LeCun normal for SELU (with alpha dropout), zero biases. :data:`LUMIN_HIGGSML` on LUMIN's 30
continuous inputs has LUMIN's 23,113 trainable parameters; on pd4ml's HiggsML features (31:
they keep the zero column ``PRI_tau_py`` and ``PRI_jet_num`` as a number) it has 23,311.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from pd4ml.models.base import (
    Model,
    ModelConfig,
    ModelConfigError,
    fraction,
    positive,
    register_architecture,
)
from pd4ml.models.description import DataDescription
from pd4ml.models.layers import (
    activation,
    check_activation,
    dropout,
    flatten_features,
    initialise,
    padding_mask,
)

#: An entity embedding: (per-event integer array name, number of categories, dimension).
Embedding = tuple[str, int, int]


@dataclass(frozen=True)
class DNNConfig(ModelConfig):
    """Configuration of :class:`DNN` (defaults: LUMIN's HiggsML body, without embeddings).

    Attributes:
        depth: number of hidden layers.
        width: units per hidden layer.
        activation: hidden activation (see :data:`pd4ml.models.layers.ACTIVATIONS`).
        dense_connections: each layer sees the input and all previous layers' outputs.
        embeddings: entity embeddings ``(array name, categories, dimension)``; the array must
            be an integer per-event input of the data with values in ``0 .. categories-1``.
        dropout: dropout rate after each hidden layer, in [0, 1).
        batch_norm: batch normalisation after each hidden activation.
    """

    depth: int = 6
    width: int = 33
    activation: str = "swish"
    dense_connections: bool = True
    embeddings: tuple[Embedding, ...] = ()
    dropout: float = 0.0
    batch_norm: bool = False

    def __post_init__(self) -> None:
        entries = self.embeddings
        if not isinstance(entries, (tuple, list)):
            raise ModelConfigError(
                f"DNNConfig.embeddings must be a tuple of (array, categories, dimension), "
                f"not {type(entries).__name__} {entries!r}"
            )
        normalised = []
        for entry in entries:
            if (
                not isinstance(entry, (tuple, list))
                or len(entry) != 3
                or not isinstance(entry[0], str)
                or not all(isinstance(n, int) and not isinstance(n, bool) for n in entry[1:])
            ):
                raise ModelConfigError(
                    f"DNNConfig.embeddings entries must be (array name, categories, dimension) "
                    f"as (str, int, int), not {entry!r}"
                )
            normalised.append((entry[0], int(entry[1]), int(entry[2])))
        object.__setattr__(self, "embeddings", tuple(normalised))
        super().__post_init__()

    def check(self) -> None:
        positive(self, "depth", "width")
        fraction(self, "dropout")
        check_activation(self)
        names = [name for name, _, _ in self.embeddings]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ModelConfigError(
                f"DNNConfig.embeddings names {', '.join(duplicates)} more than once"
            )
        for name, categories, dimension in self.embeddings:
            if categories < 1 or dimension < 1:
                raise ModelConfigError(
                    f"DNNConfig.embeddings entry {name!r} needs categories >= 1 and "
                    f"dimension >= 1, not {categories} and {dimension}"
                )


#: LUMIN's final HiggsML network: 6 dense-connected Swish layers of 33, jet multiplicity
#: embedded in 3 dimensions.
LUMIN_HIGGSML = DNNConfig(embeddings=(("jet_multiplicity", 4, 3),))


def _check_embedded_array(description: DataDescription, name: str) -> tuple[int, ...]:
    """The per-event shape of the array embedded as ``name`` (errors name the config field)."""
    spec = description.arrays.get(name)
    if spec is None:
        known = ", ".join(sorted(description.arrays))
        raise ModelConfigError(
            f"DNNConfig.embeddings names the array {name!r}, which the data does not have "
            f"(arrays: {known}); remove the entry or pass data that has it"
        )
    if spec.shared or not np.issubdtype(np.dtype(spec.dtype), np.integer):
        raise ModelConfigError(
            f"DNNConfig.embeddings: {name!r} must be an integer per-event array of category "
            f"indices, not a {'shared ' if spec.shared else ''}{spec.dtype} array"
        )
    return tuple(spec.shape)


@register_architecture
class DNN(Model):
    """Small dense network with optional dense connections and entity embeddings.

    ``forward(features[, mask], *embedded)``: ``features`` ``(B, *shape)``, the padding mask when
    the description has one, then each array of :attr:`DNNConfig.embeddings` ``(B, *s)`` of
    integer categories, in :attr:`inputs` order; returns ``(B,)`` or ``(B, C)`` logits.
    """

    architecture = "dnn"
    Config = DNNConfig
    config: DNNConfig

    def __init__(
        self,
        description: DataDescription,
        config: ModelConfig,
        shared: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        super().__init__(description, config, shared)
        config = self.config
        mask = padding_mask(description)
        self._has_mask = mask is not None
        self._rank = len(description.features.shape)
        embedded = tuple(name for name, _, _ in config.embeddings)
        self.inputs = ("features", *(() if mask is None else (mask,)), *embedded)
        width = math.prod(description.features.shape)
        self.embeddings = nn.ModuleList()
        for name, categories, dimension in config.embeddings:
            shape = _check_embedded_array(description, name)
            self.embeddings.append(nn.Embedding(categories, dimension))
            width += math.prod(shape) * dimension
        self.layers = nn.ModuleList()
        for _ in range(config.depth):
            linear = nn.Linear(width, config.width)
            initialise(linear, config.activation)
            block: list[nn.Module] = [linear, activation(config.activation)]
            if config.batch_norm:
                block.append(nn.BatchNorm1d(config.width))
            block.append(dropout(config.activation, config.dropout))
            self.layers.append(nn.Sequential(*block))
            width = width + config.width if config.dense_connections else config.width
        self.head = nn.Linear(config.width, description.n_outputs)
        initialise(self.head, "linear")

    def forward(self, features: torch.Tensor, *arrays: torch.Tensor) -> torch.Tensor:
        mask = arrays[0] if self._has_mask else None
        categories = arrays[1:] if self._has_mask else arrays
        parts = [flatten_features(features, mask, self._rank)]
        for embedding, values in zip(self.embeddings, categories, strict=True):
            parts.append(embedding(values.to(torch.int64)).flatten(1))
        seen = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        last = len(self.layers) - 1
        output = seen
        for index, layer in enumerate(self.layers):
            output = layer(seen)
            if self.config.dense_connections and index < last:
                seen = torch.cat([seen, output], dim=1)
            else:
                seen = output
        raw: torch.Tensor = self.head(output)
        return raw.squeeze(-1) if self.description.n_outputs == 1 else raw
