"""The graph that :class:`pd4ml.models.graphnet.GraphNet` sees, per kind of data.

Every builder turns a batch of per-event input arrays into a :class:`Graph`: node features
``(B, P, F)``, the node mask ``(B, P)`` (True for real nodes), optional per-event global
features ``(B, G)`` (appended to the pooled vector), and a **sparse** neighbourhood — either
neighbour slots ``(B or 1, P, k)`` (gather) or an edge list (scatter). Nothing dense of size
``P × P`` is ever built.

Kinds (:func:`graph_input` picks one from the :class:`DataDescription`):

* ``"neighbours"`` (top tagging: kNN in (Δη, Δφ); CALICE AHCAL: the 26 surrounding cells):
  per-event ``neighbours`` ``(P, k)`` (-1 = none) and ``neighbour_mask``, node ``mask``. Node
  ``i`` aggregates from the ``j`` in its row (the data layer's convention ``j → i``).
* ``"edges"`` (SmartBKG decay trees): per-event ``edges`` ``(E, 2)`` ``[mother, daughter]``
  and ``edge_mask``, used in both directions; ``pdg`` tokens become a learned embedding
  (:func:`pdg_index` maps any integer to the bounded vocabulary).
* ``"grid"`` (Spinodal, EOS, Airshower): one shared ``grid_neighbours`` / ``grid_mask``
  ``(P, 8)`` table (a buffer of the model); images ``(C, H, W)`` become ``H·W`` nodes of ``C``
  features in row-major order (the order of :func:`pd4ml.graphs.grid_neighbours`). Airshower
  stations are all real nodes (an untriggered station measured nothing, which is information);
  its ``station_mask`` is an extra 0/1 node feature and the shared ``station_positions`` (x, y,
  z, standardised over the stations) three more.
* ``"objects"`` (HiggsML, no graph in the data): the reconstructed objects of the event — tau,
  lepton, leading jet, subleading jet, missing transverse momentum — are nodes with their
  momentum components (``PRI_<object>_px/py/pz`` of ``info["feature_names"]``; missing
  momentum has no pz: 0) and a one-hot object type; an object is present unless its ``missing``
  flag is set (the jets of events with fewer jets); present objects are fully connected. All
  other columns (the 13 ``DER_*``, ``PRI_met``, ``PRI_met_sumet``, ``PRI_jet_num``,
  ``PRI_jet_all_pt``; 0 where undefined) and their ``missing`` flags are global features of
  the event, appended to the pooled node vector.
* ``"hits"`` (ILD photon showers ``(C, D, H, W)``, no graph in the data): a point cloud of the
  ``max_hits`` cells of highest energy (cells with energy > 0 are real nodes), each with its
  channel values ``x``, ``ln(1 + 1000·|x|)`` (ln(1 + E/MeV) for energies in GeV) and its
  (layer, row, column) scaled to [-1, 1]; neighbours are the selected cells among the 26
  surrounding ones (±1 in each index), found through a per-event cell → slot table. The
  ``visible_energy`` of the event (its total, including cells beyond ``max_hits``) enters as
  the global feature ``ln(1 + visible_energy)``. Cost per event: a ``D·H·W`` int64 slot table
  (216 kB for 30³) and ``max_hits × width`` floats per node activation (0.5 MB for 512 × 256),
  instead of ``27,000 × width`` (27.6 MB) for the full 3D grid.
* ``"image"`` (features ``(C, H, W)`` without a grid in the data, e.g. CALICE voxels ``(38,
  24, 24)``): the 8-connected ``H × W`` grid, built once with
  :func:`pd4ml.graphs.grid_neighbours`, the first axis as node features.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from pd4ml.errors import Pd4mlError
from pd4ml.graphs import grid_neighbours
from pd4ml.models.description import ArraySpec, DataDescription


class GraphNetInputError(Pd4mlError, ValueError):
    """The data cannot be given to GraphNet as a graph (the message says why and what to do)."""


#: HiggsML objects in node order, and the momentum components of a node.
HIGGSML_OBJECTS = ("tau", "lep", "jet_leading", "jet_subleading", "met")
MOMENTUM_COMPONENTS = ("px", "py", "pz")


@dataclass
class Graph:
    """One batch as a graph.

    Attributes:
        nodes: ``(B, P, F)`` float node features.
        mask: ``(B, P)`` bool, True for real nodes.
        neighbours: ``(B or 1, P, k)`` int64 neighbour slots of each node, ``P`` (a zero sink
            node) where there is none; or None for an edge list.
        source, target: ``(M,)`` int64 flat edge ends ``event · P + node`` (messages flow
            source → target), ``B · P`` (a sink) for invalid edges; or None.
        globals: ``(B, G)`` float event features appended to the pooled vector, or None.
    """

    nodes: torch.Tensor
    mask: torch.Tensor
    neighbours: torch.Tensor | None = None
    source: torch.Tensor | None = None
    target: torch.Tensor | None = None
    globals: torch.Tensor | None = None


class GraphInput(nn.Module):
    """Base of the builders: ``forward(arrays, shared) -> Graph``.

    Attributes:
        kind: the graph kind (see the module docstring).
        inputs: the per-event arrays read, in the order ``arrays`` come.
        shared: the shared arrays needed (buffers of the model, passed in ``shared``).
        n_node_features: ``F`` of :attr:`Graph.nodes`.
        n_global_features: ``G`` of :attr:`Graph.globals` (0 for none).
    """

    kind: str
    inputs: tuple[str, ...]
    shared: tuple[str, ...] = ()
    n_node_features: int
    n_global_features: int = 0

    def forward(self, arrays: Sequence[torch.Tensor], shared: Mapping[str, torch.Tensor]) -> Graph:
        raise NotImplementedError


def _valid_neighbours(
    neighbours: torch.Tensor, valid: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Neighbour slots ``(B, P, k)`` with every invalid entry (masked, -1, padded node or
    padded neighbour) replaced by the sink slot ``P``."""
    batch, n_nodes, k = valid.shape
    neighbours = neighbours.long()
    exists = valid & (neighbours >= 0) & (neighbours < n_nodes)
    slots = torch.where(exists, neighbours, torch.full_like(neighbours, n_nodes))
    padded_mask = torch.cat([mask, torch.zeros_like(mask[:, :1])], dim=1)
    neighbour_real = padded_mask.gather(1, slots.reshape(batch, n_nodes * k)).reshape(
        batch, n_nodes, k
    )
    keep = exists & neighbour_real & mask[:, :, None]
    return torch.where(keep, slots, torch.full_like(slots, n_nodes))


def _node_mask(arrays: Mapping[str, torch.Tensor], features: torch.Tensor) -> torch.Tensor:
    if "mask" in arrays:
        return arrays["mask"].bool()
    return torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)


class NeighbourInput(GraphInput):
    """Per-event neighbour lists (top tagging, CALICE AHCAL)."""

    kind = "neighbours"

    def __init__(self, description: DataDescription) -> None:
        super().__init__()
        features = description.features.shape
        if len(features) != 2:
            raise GraphNetInputError(
                f"GraphNet: 'neighbours' graphs need node features (P, F), not {features}"
            )
        if "neighbour_mask" not in description.arrays:
            raise GraphNetInputError("GraphNet: 'neighbours' needs its 'neighbour_mask' array")
        names = ["features", "neighbours", "neighbour_mask"]
        if "mask" in description.arrays:
            names.append("mask")
        self.inputs = tuple(names)
        self.n_node_features = features[1]

    def forward(self, arrays: Sequence[torch.Tensor], shared: Mapping[str, torch.Tensor]) -> Graph:
        named = dict(zip(self.inputs, arrays, strict=True))
        features = named["features"].float()
        mask = _node_mask(named, features)
        slots = _valid_neighbours(named["neighbours"], named["neighbour_mask"].bool(), mask)
        return Graph(features, mask, neighbours=slots)


def pdg_index(tokens: torch.Tensor, vocabulary: int) -> torch.Tensor:
    """Particle tokens → embedding rows ``0 … vocabulary - 1``, deterministically.

    A token already in ``[0, vocabulary)`` (the data layer's index: 0 padding, 1…num_pdg the
    most frequent tokens, num_pdg + 1 the others) is its own row; any other integer (a raw PDG
    code of a user's data, negative for antiparticles) goes to row ``1 + (token mod
    (vocabulary - 1))`` (Python's modulo, never row 0)."""
    tokens = tokens.long()
    inside = (tokens >= 0) & (tokens < vocabulary)
    folded = torch.remainder(tokens, vocabulary - 1) + 1
    return torch.where(inside, tokens, folded)


class EdgeInput(GraphInput):
    """Per-event edge lists used in both directions (SmartBKG decay trees)."""

    kind = "edges"

    def __init__(self, description: DataDescription, embedding_dim: int) -> None:
        super().__init__()
        features = description.features.shape
        if len(features) != 2:
            raise GraphNetInputError(
                f"GraphNet: 'edges' graphs need node features (P, F), not {features}"
            )
        if "edge_mask" not in description.arrays:
            raise GraphNetInputError("GraphNet: 'edges' needs its 'edge_mask' array")
        names = ["features", "edges", "edge_mask"]
        for name in ("mask", "pdg"):
            if name in description.arrays:
                names.append(name)
        self.inputs = tuple(names)
        self.embedding: nn.Embedding | None = None
        self.vocabulary = 0
        if "pdg" in description.arrays:
            known = description.info.get("pdg_vocabulary")
            self.vocabulary = len(known) + 2 if isinstance(known, (list, tuple)) else 256
            self.embedding = nn.Embedding(self.vocabulary, embedding_dim)
        self.n_node_features = features[1] + (embedding_dim if self.embedding else 0)

    def forward(self, arrays: Sequence[torch.Tensor], shared: Mapping[str, torch.Tensor]) -> Graph:
        named = dict(zip(self.inputs, arrays, strict=True))
        features = named["features"].float()
        batch, n_nodes, _ = features.shape
        mask = _node_mask(named, features)
        if self.embedding is not None:
            features = torch.cat(
                [features, self.embedding(pdg_index(named["pdg"], self.vocabulary))], dim=-1
            )
        edges = named["edges"].long()
        mother, daughter = edges[..., 0], edges[..., 1]
        inside = (mother >= 0) & (mother < n_nodes) & (daughter >= 0) & (daughter < n_nodes)
        mother = mother.clamp(0, n_nodes - 1)
        daughter = daughter.clamp(0, n_nodes - 1)
        valid = (
            named["edge_mask"].bool() & inside & mask.gather(1, mother) & mask.gather(1, daughter)
        )
        offset = torch.arange(batch, device=edges.device)[:, None] * n_nodes
        sink = torch.full_like(mother, batch * n_nodes)
        flat_mother = torch.where(valid, mother + offset, sink).reshape(-1)
        flat_daughter = torch.where(valid, daughter + offset, sink).reshape(-1)
        return Graph(
            features,
            mask,
            source=torch.cat([flat_mother, flat_daughter]),
            target=torch.cat([flat_daughter, flat_mother]),
        )


def register_shared(
    module: nn.Module, name: str, spec: ArraySpec, shared: Mapping[str, np.ndarray] | None
) -> None:
    """Register the shared array ``name`` as a buffer of ``module``: filled from ``shared``
    when given (its shape must be ``spec.shape``), else zeros of the described shape and dtype
    (filled later from a weights file)."""
    if shared is not None and name in shared:
        array = np.asarray(shared[name])
        if tuple(array.shape) != tuple(spec.shape):
            raise GraphNetInputError(
                f"GraphNet: shared array {name!r} has shape {array.shape}, the description "
                f"says {spec.shape}; describe and build from the same data"
            )
        tensor = torch.from_numpy(np.ascontiguousarray(array).astype(spec.dtype, copy=True))
    else:
        tensor = torch.zeros(spec.shape, dtype=torch.from_numpy(np.zeros(0, spec.dtype)).dtype)
    module.register_buffer(name, tensor)


class GridInput(GraphInput):
    """One shared grid (Spinodal, EOS, Airshower); images become nodes."""

    kind = "grid"

    def __init__(self, description: DataDescription) -> None:
        super().__init__()
        arrays = description.arrays
        if "grid_mask" not in arrays:
            raise GraphNetInputError("GraphNet: a 'grid' graph needs its 'grid_mask' array")
        n_nodes = arrays["grid_neighbours"].shape[0]
        features = description.features.shape
        if len(features) == 3:
            self.image = True
            channels, nodes = features[0], features[1] * features[2]
        elif len(features) == 2:
            self.image = False
            nodes, channels = features
        else:
            raise GraphNetInputError(
                f"GraphNet: grid features must be images (C, H, W) or nodes (P, F), not {features}"
            )
        if nodes != n_nodes:
            raise GraphNetInputError(
                f"GraphNet: the grid has {n_nodes} nodes but the features {features} have {nodes}"
            )
        names = ["features"]
        self.station_mask = "station_mask" in arrays and arrays["station_mask"].shape == (nodes,)
        if self.station_mask:
            names.append("station_mask")
        self.inputs = tuple(names)
        positions = arrays.get("station_positions")
        self.positions = positions is not None and positions.shared and positions.shape[0] == nodes
        self.shared = ("grid_neighbours", "grid_mask") + (
            ("station_positions",) if self.positions else ()
        )
        self.n_node_features = (
            channels
            + int(self.station_mask)
            + (arrays["station_positions"].shape[1] if self.positions else 0)
        )

    def forward(self, arrays: Sequence[torch.Tensor], shared: Mapping[str, torch.Tensor]) -> Graph:
        named = dict(zip(self.inputs, arrays, strict=True))
        features = named["features"].float()
        if self.image:
            batch, channels = features.shape[:2]
            features = features.reshape(batch, channels, -1).transpose(1, 2)
        batch, n_nodes = features.shape[:2]
        parts = [features]
        if self.station_mask:
            parts.append(named["station_mask"].to(features.dtype)[..., None])
        if self.positions:
            positions = shared["station_positions"].to(features.dtype)
            scale = positions.std(dim=0, unbiased=False)
            positions = (positions - positions.mean(dim=0)) / torch.where(
                scale > 0, scale, torch.ones_like(scale)
            )
            parts.append(positions[None].expand(batch, -1, -1))
        nodes = torch.cat(parts, dim=-1) if len(parts) > 1 else features
        mask = torch.ones((batch, n_nodes), dtype=torch.bool, device=features.device)
        grid = shared["grid_neighbours"].long()
        valid = shared["grid_mask"].bool() & (grid >= 0) & (grid < n_nodes)
        slots = torch.where(valid, grid, torch.full_like(grid, n_nodes))
        return Graph(nodes, mask, neighbours=slots[None])


class ImageInput(GraphInput):
    """Images ``(C, H, W)`` without a grid in the data: the 8-connected grid built here."""

    kind = "image"
    slots: torch.Tensor

    def __init__(self, description: DataDescription) -> None:
        super().__init__()
        channels, height, width = description.features.shape
        neighbours, valid = grid_neighbours(height, width)
        slots = np.where(valid, neighbours, height * width).astype(np.int64)
        self.register_buffer("slots", torch.from_numpy(slots)[None], persistent=False)
        self.inputs = ("features",)
        self.n_node_features = channels

    def forward(self, arrays: Sequence[torch.Tensor], shared: Mapping[str, torch.Tensor]) -> Graph:
        features = arrays[0].float()
        batch, channels = features.shape[:2]
        nodes = features.reshape(batch, channels, -1).transpose(1, 2)
        mask = torch.ones(nodes.shape[:2], dtype=torch.bool, device=nodes.device)
        slots = self.slots
        return Graph(nodes, mask, neighbours=slots)


def higgsml_columns(names: Sequence[str]) -> tuple[list[str], list[list[int]], list[int]]:
    """The objects found among ``names``, the column of each of their momentum components
    (-1 where an object has none, e.g. the missing momentum's pz) and the global columns."""
    objects, components = [], []
    for name in HIGGSML_OBJECTS:
        columns = [
            names.index(f"PRI_{name}_{part}") if f"PRI_{name}_{part}" in names else -1
            for part in MOMENTUM_COMPONENTS
        ]
        if any(column >= 0 for column in columns):
            objects.append(name)
            components.append(columns)
    used = {column for columns in components for column in columns}
    return objects, components, [i for i in range(len(names)) if i not in used]


class ObjectInput(GraphInput):
    """HiggsML: the reconstructed objects of an event, fully connected (module docstring)."""

    kind = "objects"
    components: torch.Tensor
    present_column: torch.Tensor
    global_columns: torch.Tensor
    types: torch.Tensor
    others: torch.Tensor

    def __init__(self, description: DataDescription) -> None:
        super().__init__()
        names = list(description.info.get("feature_names") or [])
        objects, components, global_columns = higgsml_columns(names)
        self.objects = tuple(objects)
        n_objects = len(objects)
        self.missing = "missing" in description.arrays
        self.inputs = ("features", "missing") if self.missing else ("features",)
        # column of each (object, component); -1 → a zero
        table = np.array(components, dtype=np.int64)
        self.register_buffer("components", torch.from_numpy(table), persistent=False)
        self.register_buffer(
            "present_column", torch.from_numpy(table.max(axis=1)), persistent=False
        )
        self.register_buffer(
            "global_columns", torch.tensor(global_columns, dtype=torch.int64), persistent=False
        )
        self.register_buffer("types", torch.eye(n_objects)[None], persistent=False)
        others = [[j for j in range(n_objects) if j != i] for i in range(n_objects)]
        self.register_buffer(
            "others", torch.tensor(others, dtype=torch.int64)[None], persistent=False
        )
        self.n_node_features = len(MOMENTUM_COMPONENTS) + n_objects
        self.n_global_features = len(global_columns) * (2 if self.missing else 1)

    def forward(self, arrays: Sequence[torch.Tensor], shared: Mapping[str, torch.Tensor]) -> Graph:
        features = arrays[0].float()
        batch = features.shape[0]
        components = self.components
        padded = torch.cat([features, torch.zeros_like(features[:, :1])], dim=1)
        columns = torch.where(components >= 0, components, features.shape[1])
        momenta = padded[:, columns.reshape(-1)].reshape(batch, *columns.shape)
        types = self.types
        nodes = torch.cat([momenta, types.expand(batch, -1, -1)], dim=-1)
        global_columns = self.global_columns
        global_features = features[:, global_columns]
        if self.missing:
            missing = arrays[1].bool()
            present_column = self.present_column
            mask = ~missing[:, present_column]
            global_missing = missing[:, global_columns]
            global_features = torch.cat(  # undefined values are 0 whatever the array holds
                [
                    torch.where(global_missing, torch.zeros_like(global_features), global_features),
                    global_missing.to(features.dtype),
                ],
                dim=-1,
            )
        else:
            mask = torch.ones(nodes.shape[:2], dtype=torch.bool, device=nodes.device)
        others = self.others
        others = others.expand(batch, -1, -1)
        slots = _valid_neighbours(others, torch.ones_like(others, dtype=torch.bool), mask)
        return Graph(nodes, mask, neighbours=slots, globals=global_features)


class HitInput(GraphInput):
    """3D cell grids ``(C, D, H, W)`` (ILD photon showers): the ``max_hits`` most energetic
    cells as a point cloud with their 26-cell neighbourhood (module docstring)."""

    kind = "hits"
    offsets: torch.Tensor
    extent: torch.Tensor

    def __init__(self, description: DataDescription, max_hits: int) -> None:
        super().__init__()
        channels, depth, height, width = description.features.shape
        self.grid = (depth, height, width)
        self.max_hits = min(max_hits, depth * height * width)
        self.visible_energy = "visible_energy" in description.arrays and (
            description.arrays["visible_energy"].shape == ()
        )
        self.inputs = ("features", "visible_energy") if self.visible_energy else ("features",)
        offsets = [
            (a, b, c)
            for a in (-1, 0, 1)
            for b in (-1, 0, 1)
            for c in (-1, 0, 1)
            if (a, b, c) != (0, 0, 0)
        ]
        self.register_buffer("offsets", torch.tensor(offsets, dtype=torch.int64), persistent=False)
        self.register_buffer("extent", torch.tensor(self.grid, dtype=torch.int64), persistent=False)
        self.n_node_features = 2 * channels + 3
        self.n_global_features = int(self.visible_energy)

    def forward(self, arrays: Sequence[torch.Tensor], shared: Mapping[str, torch.Tensor]) -> Graph:
        features = arrays[0].float()
        batch, channels = features.shape[:2]
        cells = features.reshape(batch, channels, -1)
        n_cells = cells.shape[2]
        energy, chosen = torch.topk(cells.sum(dim=1), self.max_hits, dim=1)  # (B, K)
        mask = energy > 0
        values = cells.gather(2, chosen[:, None, :].expand(-1, channels, -1)).transpose(1, 2)
        _, height, width = self.grid
        position = torch.stack(
            [chosen // (height * width), (chosen // width) % height, chosen % width], dim=-1
        )  # (B, K, 3)
        extent = self.extent
        scaled = position.to(features.dtype) / (extent - 1).clamp(min=1) * 2 - 1
        nodes = torch.cat([values, torch.log1p(1000 * values.abs()), scaled], dim=-1)
        # cell → slot table of the chosen real cells (-1 elsewhere), one row per event
        slot_of_cell = torch.full((batch, n_cells + 1), -1, dtype=torch.int64, device=cells.device)
        slot = torch.arange(self.max_hits, device=cells.device).expand(batch, -1)
        target_cell = torch.where(mask, chosen, torch.full_like(chosen, n_cells))
        slot_of_cell = slot_of_cell.scatter(1, target_cell, torch.where(mask, slot, -1))
        offsets = self.offsets
        around = position[:, :, None, :] + offsets[None, None]  # (B, K, 26, 3)
        inside = ((around >= 0) & (around < extent)).all(dim=-1)
        cell = (around[..., 0] * height + around[..., 1]) * width + around[..., 2]
        cell = torch.where(inside, cell, torch.full_like(cell, n_cells))
        neighbours = slot_of_cell.gather(1, cell.reshape(batch, -1)).reshape(cell.shape)
        slots = _valid_neighbours(neighbours, neighbours >= 0, mask)
        global_features = (
            torch.log1p(arrays[1].float().clamp(min=0))[:, None] if self.visible_energy else None
        )
        return Graph(nodes, mask, neighbours=slots, globals=global_features)


def graph_input(description: DataDescription, *, embedding_dim: int, max_hits: int) -> GraphInput:
    """The graph builder for data described by ``description`` (see the module docstring)."""
    features = description.features.shape
    if description.graph == "neighbours":
        return NeighbourInput(description)
    if description.graph == "edges":
        return EdgeInput(description, embedding_dim)
    if description.graph == "grid":
        return GridInput(description)
    names = list(description.info.get("feature_names") or [])
    if len(features) == 1 and len(higgsml_columns(names)[0]) >= 2:
        return ObjectInput(description)
    if len(features) == 4:
        return HitInput(description, max_hits)
    if len(features) == 3:
        return ImageInput(description)
    raise GraphNetInputError(
        f"GraphNet: the data ({description.dataset or 'user arrays'}, features {features}) "
        "have no graph and no natural one is defined for this shape; give per-event "
        "'neighbours' + 'neighbour_mask', 'edges' + 'edge_mask' or a shared 'grid_neighbours' "
        "+ 'grid_mask' (describe_arrays(..., neighbours=..., neighbour_mask=...)), or use FCN"
    )
