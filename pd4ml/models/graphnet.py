"""GraphNet — the graph network proposed with the original pd4ml, on sparse graphs.

The architecture of the original (``pd4ml_models/graph_net.py``, units = ``width``):

1. ``pre_layers`` × [Dense(width) → PReLU] on every node;
2. ``graph_layers`` × [graph convolution (aggregate over the node and its neighbours, then
   Dense(width) → ReLU) → BatchNorm → PReLU → Dropout(``dropout``)];
3. global average pooling over the nodes (then the event's global features, if any, are
   appended: HiggsML's high-level columns, ILD's visible energy);
4. ``post_layers`` × [Dense(width) → ReLU → BatchNorm → PReLU → Dropout(``dropout``)], then one
   more with Dropout(``final_dropout``);
5. Dense(n_outputs): a logit (binary classification), logits, or the value (regression).

Defects of the original, fixed here:

* **Pooling over padding.** The original averaged over all ``P`` slots, padded ones included
  (they become non-zero after the first bias). Pooling here is the mean over real nodes only.
* **Padded nodes in BatchNorm.** The node BatchNorm computes its batch statistics over real
  nodes only (:class:`MaskedBatchNorm`); padded nodes are set to zero after every block, are
  never a neighbour, and cannot change the output.
* **PReLU per node.** The original's graph blocks had a PReLU slope per node *and* channel
  (``(P, 256)``, 147,456 parameters for EOS, tied to the slot order); here one slope per channel.
* **PReLU after ReLU.** ``PReLU(ReLU(x)) = ReLU(x)``: the original's pre-processing PReLU had no
  effect. Here the pre-processing is Dense → PReLU (the PReLU is the activation).
* **Unnormalised adjacency without self-loops.** The original computed ``A · (hW + b)`` with the
  binary adjacency as given: image grids had no self-loops (a pixel never saw its own value in
  a graph layer) and the scale of the sum grew with the degree. Here every node aggregates
  over itself and its real neighbours, normalised by their number (``aggregation="mean"``; or
  ``"sum"``, the unnormalised sum with the self-loop).

Graphs are sparse (neighbour slots gathered, or edge lists scattered; see
:mod:`pd4ml.models.graph_inputs` for the graph of each dataset, including the ones defined
for HiggsML and ILD photon showers); no ``(P, P)`` matrix is built.
"""

from __future__ import annotations

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
from pd4ml.models.graph_inputs import Graph, GraphNetInputError, graph_input, register_shared

__all__ = ["GraphNet", "GraphNetConfig", "GraphNetInputError", "MaskedBatchNorm", "aggregate"]

AGGREGATIONS = ("mean", "sum")


@dataclass(frozen=True)
class GraphNetConfig(ModelConfig):
    """GraphNet's hyper-parameters (defaults: the original's).

    Attributes:
        width: units of every dense and graph layer.
        pre_layers: node-wise dense layers before the graph layers.
        graph_layers: graph-convolution blocks.
        post_layers: fully connected blocks after pooling (plus one with ``final_dropout``).
        dropout: dropout of the graph and fully connected blocks.
        final_dropout: dropout of the last fully connected block.
        aggregation: ``"mean"`` (over the node and its real neighbours) or ``"sum"``.
        embedding_dim: size of the particle-token embedding (SmartBKG ``pdg``).
        max_hits: cells kept per event as nodes of 3D cell grids (ILD photon showers).
        batch_norm_momentum: momentum of the running BatchNorm statistics (PyTorch's
            convention: weight of the new batch).
    """

    width: int = 256
    pre_layers: int = 3
    graph_layers: int = 3
    post_layers: int = 6
    dropout: float = 0.2
    final_dropout: float = 0.1
    aggregation: str = "mean"
    embedding_dim: int = 16
    max_hits: int = 512
    batch_norm_momentum: float = 0.1

    def check(self) -> None:
        positive(self, "width", "embedding_dim", "max_hits", "batch_norm_momentum")
        for name in ("pre_layers", "graph_layers", "post_layers"):
            if getattr(self, name) < 0:
                raise ModelConfigError(
                    f"GraphNetConfig.{name} must be >= 0, not {getattr(self, name)!r}"
                )
        fraction(self, "dropout", "final_dropout")
        if self.batch_norm_momentum > 1:
            raise ModelConfigError(
                f"GraphNetConfig.batch_norm_momentum must be in (0, 1], "
                f"not {self.batch_norm_momentum!r}"
            )
        if self.aggregation not in AGGREGATIONS:
            raise ModelConfigError(
                f"GraphNetConfig.aggregation must be one of {', '.join(AGGREGATIONS)}, "
                f"not {self.aggregation!r}"
            )


class MaskedBatchNorm(nn.Module):
    """BatchNorm over the channels of node features ``(B, P, F)``, with the batch statistics
    taken over the real nodes only (``mask`` ``(B, P)``); running statistics as
    :class:`torch.nn.BatchNorm1d` (biased variance to normalise, unbiased in the running
    estimate). Padded nodes come out as zero."""

    running_mean: torch.Tensor
    running_var: torch.Tensor

    def __init__(self, channels: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.momentum = momentum
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, nodes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weight = mask[..., None].to(nodes.dtype)
        if self.training:
            count = weight.sum().clamp(min=1)
            mean = (nodes * weight).sum(dim=(0, 1)) / count
            variance = (((nodes - mean) ** 2) * weight).sum(dim=(0, 1)) / count
            with torch.no_grad():
                unbiased = variance * count / (count - 1).clamp(min=1)
                running_mean = self.running_mean
                running_var = self.running_var
                running_mean.lerp_(mean.detach().to(running_mean.dtype), self.momentum)
                running_var.lerp_(unbiased.detach().to(running_var.dtype), self.momentum)
        else:
            mean, variance = self.running_mean, self.running_var
        scale = self.weight * torch.rsqrt(variance + self.eps)
        return ((nodes - mean) * scale + self.bias) * weight


def aggregate(graph: Graph, nodes: torch.Tensor, aggregation: str = "mean") -> torch.Tensor:
    """Sum (or mean) of each real node's features and its real neighbours' ``(B, P, F)``.

    Neighbour slots: one gather through a zero sink node; edge lists: one ``scatter_add``.
    With ``"mean"`` the sum is divided by ``1 + number of real neighbours``."""
    batch, n_nodes, channels = nodes.shape
    if graph.neighbours is not None:
        slots = graph.neighbours
        k = slots.shape[-1]
        padded = torch.cat([nodes, nodes.new_zeros(batch, 1, channels)], dim=1)
        index = slots.expand(batch, -1, -1).reshape(batch, n_nodes * k, 1)
        gathered = padded.gather(1, index.expand(-1, -1, channels))
        total = nodes + gathered.reshape(batch, n_nodes, k, channels).sum(dim=2)
        count = 1 + (slots < n_nodes).sum(dim=-1, keepdim=True).expand(batch, -1, -1)
    elif graph.source is not None and graph.target is not None:
        flat = torch.cat([nodes.reshape(batch * n_nodes, channels), nodes.new_zeros(1, channels)])
        messages = flat.index_select(0, graph.source)
        target = graph.target[:, None]
        summed = flat.new_zeros(batch * n_nodes + 1, channels).scatter_add(
            0, target.expand(-1, channels), messages
        )
        total = nodes + summed[:-1].reshape(batch, n_nodes, channels)
        degree = flat.new_zeros(batch * n_nodes + 1, 1).scatter_add(
            0, target, torch.ones_like(messages[:, :1])
        )
        count = 1 + degree[:-1].reshape(batch, n_nodes, 1)
    else:
        raise GraphNetInputError("GraphNet: a graph needs neighbour slots or an edge list")
    if aggregation == "mean":
        return total / count.to(nodes.dtype)
    return total


class ChannelPReLU(nn.Module):
    """PReLU with one slope per channel of the last axis (``nn.PReLU`` uses axis 1), as Keras'
    ``PReLU(shared_axes=...)`` over every axis but the channels. Slopes start at 0.25."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), 0.25))

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        output: torch.Tensor = torch.where(values >= 0, values, values * self.weight)
        return output


class GraphBlock(nn.Module):
    """Aggregate → Dense → ReLU → masked BatchNorm → PReLU (per channel) → Dropout."""

    def __init__(self, n_in: int, config: GraphNetConfig) -> None:
        super().__init__()
        self.aggregation = config.aggregation
        self.dense = nn.Linear(n_in, config.width)
        self.norm = MaskedBatchNorm(config.width, config.batch_norm_momentum)
        self.activation = ChannelPReLU(config.width)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, graph: Graph, nodes: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.dense(aggregate(graph, nodes, self.aggregation)))
        hidden = self.dropout(self.activation(self.norm(hidden, graph.mask)))
        output: torch.Tensor = hidden * graph.mask[..., None].to(hidden.dtype)
        return output


def _dense_block(n_in: int, width: int, dropout: float, momentum: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(n_in, width),
        nn.ReLU(),
        nn.BatchNorm1d(width, momentum=momentum),
        ChannelPReLU(width),
        nn.Dropout(dropout),
    )


@register_architecture
class GraphNet(Model):
    """The original pd4ml's graph network with its defects fixed (see the module docstring).

    ``forward(*arrays)`` takes the arrays named by :attr:`inputs` (batch first; e.g. top
    tagging ``features`` ``(B, P, 7)``, ``neighbours`` ``(B, P, k)`` int (-1 = none),
    ``neighbour_mask`` ``(B, P, k)``, ``mask`` ``(B, P)``) and returns ``(B,)`` (one output)
    or ``(B, n_classes)``. Shared grid tables are buffers named as the shared arrays
    (``grid_neighbours``, ``grid_mask``, ``station_positions``).
    """

    architecture = "graphnet"
    Config = GraphNetConfig
    config: GraphNetConfig

    def __init__(
        self,
        description: DataDescription,
        config: ModelConfig,
        shared: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        super().__init__(description, config, shared)
        assert isinstance(config, GraphNetConfig)
        self.input_graph = graph_input(
            description, embedding_dim=config.embedding_dim, max_hits=config.max_hits
        )
        self.inputs = self.input_graph.inputs
        for name in self.input_graph.shared:
            register_shared(self, name, description.arrays[name], shared)
        width = config.width
        layers: list[nn.Module] = []
        n_in = self.input_graph.n_node_features
        for _ in range(config.pre_layers):
            layers += [nn.Linear(n_in, width), ChannelPReLU(width)]
            n_in = width
        self.pre = nn.Sequential(*layers)
        self.graph_blocks = nn.ModuleList()
        for _ in range(config.graph_layers):
            self.graph_blocks.append(GraphBlock(n_in, config))
            n_in = width
        n_in += self.input_graph.n_global_features
        momentum = config.batch_norm_momentum
        self.post = nn.Sequential(
            *[
                _dense_block(n_in if i == 0 else width, width, config.dropout, momentum)
                for i in range(config.post_layers)
            ],
            _dense_block(
                width if config.post_layers else n_in, width, config.final_dropout, momentum
            ),
        )
        self.head = nn.Linear(width, description.n_outputs)

    def forward(self, *arrays: torch.Tensor) -> torch.Tensor:
        if len(arrays) != len(self.inputs):
            raise GraphNetInputError(
                f"GraphNet takes {len(self.inputs)} arrays ({', '.join(self.inputs)}), "
                f"got {len(arrays)}"
            )
        shared = {name: getattr(self, name) for name in self.input_graph.shared}
        graph = self.input_graph(arrays, shared)
        real = graph.mask[..., None].to(graph.nodes.dtype)
        nodes = self.pre(graph.nodes) * real
        for block in self.graph_blocks:
            nodes = block(graph, nodes)
        pooled = (nodes * real).sum(dim=1) / real.sum(dim=1).clamp(min=1)
        if graph.globals is not None:
            pooled = torch.cat([pooled, graph.globals.to(pooled.dtype)], dim=-1)
        output: torch.Tensor = self.head(self.post(pooled))
        return output.squeeze(-1) if output.shape[-1] == 1 else output
