"""PyTorch Geometric view of a prepared split: one ``torch_geometric.data.Data`` per event.

    from pd4ml import TopTagging
    from torch_geometric.nn import GCNConv
    graphs = TopTagging.pyg("train", k=16)                 # a torch Dataset of Data
    for batch in graphs.loader(batch_size=256, shuffle=True):   # torch_geometric Batch
        out = GCNConv(7, 32)(batch.x, batch.edge_index)

Each ``Data`` is built on the fly from the sparse graph arrays of ``load_data(graph=True)``:

* ``x`` ``(n_nodes, F)`` float32 — the real nodes only where padding is trailing (TopTagging,
  smartBKG, CALICE hit clouds), every cell of a fixed grid (Spinodal, EOS, Airshower; image
  features become nodes, row-major);
* ``edge_index`` ``(2, n_edges)`` int64, ``[source, target]``: kNN edges ``j → i`` for each
  neighbour j of i; decay trees in both directions (mother ↔ daughter); fixed grids share one
  ``edge_index`` tensor (the same object in every event);
* ``y`` ``(1,)`` (int64 classification, float32 regression) and ``weight`` ``(1,)`` float32, so
  that a ``Batch`` has ``y`` and ``weight`` of shape ``(n_graphs,)``;
* ``pos`` where positions are meaningful: (Δη, Δφ) for TopTagging, (x, y, z) for smartBKG
  production vertices, CALICE hits and Airshower stations, (row, column) for image grids;
* the other per-node arrays under their own names, cut like ``x`` (``mask``, ``pdg`` for
  smartBKG, ``station_mask`` for Airshower), and other per-event arrays with a leading ``1``
  axis. Every event has the same fields.

PyG's ``knn_graph`` needs packages that are not on the package index; these graphs come from
:mod:`pd4ml.graphs` instead, computed once when the split is prepared.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torch_geometric.data import Batch, Data

from pd4ml.adapters.common import (
    EventArrays,
    Rows,
    Shuffle,
    check_graph,
    feature_nodes,
    per_event_arrays,
)
from pd4ml.adapters.torch import batch_loader
from pd4ml.graphs import neighbours_to_edge_index

if TYPE_CHECKING:
    from pd4ml.datasets.base import PreparedData

_GRAPH_ARRAYS = {"neighbours", "neighbour_mask", "edges", "edge_mask", "adjacency"}


class GraphEvents(Dataset[Data]):
    """Events of a prepared split with a graph, as PyTorch Geometric ``Data`` objects.

    Args:
        data: a split prepared with ``graph=True``.
        weights: the array used as ``weight`` (default ``weights`` where present, else 1).
    """

    def __init__(self, data: PreparedData, weights: str | None = None) -> None:
        kind = check_graph(data)  # a clear error for splits without a (matching) graph
        self.kind = kind
        # every per-event array but the stored dense adjacency (P² bytes per event, unused)
        names = [name for name in per_event_arrays(data) if name not in ("adjacency", "weights")]
        self.events = EventArrays(data, names, weights)
        self.dataset = str(data.metadata.get("dataset", ""))
        self.image_shape = data.metadata.get("info", {}).get("image_shape")
        self.positions: dict[str, Any] | None = data.metadata.get("node_positions")
        self.node_arrays = self._node_arrays(data)
        self.grid_edge_index: torch.Tensor | None = None
        self.grid_positions: torch.Tensor | None = None
        if kind == "grid":
            self.grid_edge_index = torch.from_numpy(
                neighbours_to_edge_index(
                    np.asarray(data["grid_neighbours"]), np.asarray(data["grid_mask"])
                )
            )
            self.grid_positions = self._grid_positions(data)

    def _node_arrays(self, data: PreparedData) -> list[str]:
        """Per-event arrays with a node axis (same length as the features' node axis)."""
        features = data["features"]
        n_nodes = feature_nodes(features, self.kind)
        return [
            name
            for name in self.events.names
            if name not in _GRAPH_ARRAYS
            and name != "features"
            and data[name].ndim >= 2
            and data[name].shape[1] == n_nodes
        ]

    def _grid_positions(self, data: PreparedData) -> torch.Tensor:
        positions = data.metadata.get("node_positions")
        if positions is not None and positions["array"] in self.events.shared:
            start, stop = positions["columns"]
            shared = self.events.shared[positions["array"]]
            return torch.from_numpy(np.array(shared[:, start:stop]))
        features = data["features"]
        if features.ndim == 4:
            height, width = features.shape[2:]
        elif self.image_shape is not None:
            height, width = self.image_shape
        else:
            n_nodes = int(np.asarray(data["grid_neighbours"]).shape[0])
            return torch.arange(n_nodes, dtype=torch.float32)[:, None]
        row, column = np.divmod(np.arange(height * width), width)
        return torch.from_numpy(np.stack([row, column], axis=1).astype(np.float32))

    def __len__(self) -> int:
        return self.events.n_events

    def __getitem__(self, index: int | slice | np.ndarray) -> Any:
        """One event as ``Data`` (``int``) or a ``Batch`` of the events in a slice / rows."""
        if isinstance(index, (int, np.integer)):
            position = int(index)
            if not -len(self) <= position < len(self):
                raise IndexError(f"event {position} out of range for {len(self)}")
            rows: Rows = slice(position % len(self), position % len(self) + 1)
            return self.graphs(rows)[0]
        return Batch.from_data_list(self.graphs(index))

    def graphs(self, rows: Rows) -> list[Data]:
        """The events ``rows`` (a slice or sorted row indices), read in one go, as ``Data``."""
        batch = self.events.read(rows)
        features = batch["features"]
        if self.kind == "grid" and features.ndim == 4:
            n, channels = features.shape[:2]
            features = np.moveaxis(features.reshape(n, channels, -1), 1, 2)
        n_events = len(batch["labels"])
        node_mask = batch.get("mask")
        output = []
        for event in range(n_events):
            n_nodes = (
                features.shape[1]
                if self.kind == "grid" or node_mask is None
                else _last_real(node_mask[event])
            )
            fields: dict[str, Any] = {
                "x": torch.from_numpy(np.ascontiguousarray(features[event, :n_nodes])),
                "edge_index": self._edge_index(batch, event),
                "y": torch.from_numpy(batch["labels"][event : event + 1]),
                "weight": torch.from_numpy(batch["weights"][event : event + 1]),
            }
            position = self._positions(features, event, n_nodes)
            if position is not None:
                fields["pos"] = position
            for name in self.node_arrays:  # the same fields in every event (for batching)
                values = batch[name][event, :n_nodes]
                fields[name] = torch.from_numpy(np.ascontiguousarray(values))
            for name, values in batch.items():
                if name in fields or name in self.node_arrays or name in _GRAPH_ARRAYS:
                    continue
                if name in ("features", "labels", "weights"):
                    continue
                fields[name] = torch.from_numpy(np.ascontiguousarray(values[event : event + 1]))
            output.append(Data(**fields))
        return output

    def _edge_index(self, batch: dict[str, np.ndarray], event: int) -> torch.Tensor:
        if self.kind == "grid":
            assert self.grid_edge_index is not None
            return self.grid_edge_index
        if self.kind == "knn":
            return torch.from_numpy(
                neighbours_to_edge_index(batch["neighbours"][event], batch["neighbour_mask"][event])
            )
        pairs = batch["edges"][event][batch["edge_mask"][event]].astype(np.int64)
        mother, daughter = pairs[:, 0], pairs[:, 1]
        return torch.from_numpy(
            np.stack([np.concatenate([mother, daughter]), np.concatenate([daughter, mother])])
        )

    def _positions(self, features: np.ndarray, event: int, n_nodes: int) -> torch.Tensor | None:
        if self.kind == "grid":
            return self.grid_positions
        if self.positions is not None and self.positions["array"] == "features":
            start, stop = self.positions["columns"]
            return torch.from_numpy(np.ascontiguousarray(features[event, :n_nodes, start:stop]))
        return None

    def loader(
        self,
        batch_size: int = 256,
        shuffle: Shuffle = False,
        *,
        seed: int = 0,
        drop_last: bool = False,
        window: int = 8,
        num_workers: int = 0,
        pin_memory: bool = False,
        prefetch_factor: int | None = None,
        persistent_workers: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> DataLoader[Any]:
        """A ``DataLoader`` of ``torch_geometric.data.Batch`` objects, each read in one call.

        Arguments as :meth:`pd4ml.adapters.torch.TorchEvents.loader`: ``shuffle=True`` is a
        uniform random permutation of all events per epoch, ``shuffle="blocks"`` block
        shuffling (``window`` blocks at a time). PyG's own
        ``torch_geometric.loader.DataLoader(graphs, batch_size=...)`` works too (one event per
        call).
        """
        return batch_loader(
            self,
            batch_size,
            shuffle,
            collate_fn=_keep,
            seed=seed,
            drop_last=drop_last,
            window=window,
            num_workers=num_workers,
            pin_memory=pin_memory,
            prefetch_factor=prefetch_factor,
            persistent_workers=persistent_workers,
            num_replicas=num_replicas,
            rank=rank,
        )


def _keep(batch: Any) -> Any:
    return batch


def _last_real(mask: np.ndarray) -> int:
    """Nodes up to and including the last real one (padding is trailing)."""
    real = np.flatnonzero(mask)
    return int(real[-1]) + 1 if len(real) else 0
