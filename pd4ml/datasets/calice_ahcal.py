"""CALICE AHCAL — pion showers in the analogue hadron calorimeter prototype (CERN SPS, 2018).

No public record exists yet (the collaboration has proposed one); this module implements the
proposed schema so that the dataset works the day a record appears, or now for collaboration
members through ``PD4ML_MIRROR``, ``PD4ML_SHARED_DATA`` or ``pd4ml import calice_ahcal DIR``.

Raw forms (either works; the manifest has one version per form):

* **ROOT** ``ahcal_pions_sps2018.root``: a tree (default ``events``) with one entry per event,
  jagged branches ``hit_x``, ``hit_y``, ``hit_z`` (mm), ``hit_energy`` (MIP) and ``hit_time``
  (ns), and the scalar ``beam_energy`` (GeV). Names are configurable:
  ``CaliceAHCAL.with_branches(hit_x="x", …, tree="hits")`` returns a class reading other names.
* **NumPy** ``ahcal_pions_sps2018.npz``: the same five hit arrays flattened (all events
  concatenated), ``n_hits`` ``(n_events,)`` and ``beam_energy`` ``(n_events,)``.

Geometry used (the technological prototype): 38 active layers of 24 × 24 scintillator tiles of
3 × 3 cm² (a 72 × 72 cm² layer). A hit's tile is ``floor((x + 360 mm) / 30 mm)`` (same for y,
the beam axis at the layer centre); its layer is the rank of its z among the distinct hit-z
planes of the file (so the layer pitch need not be known). Files with more than 38 planes or
hits outside the 72 cm square are refused.

``load(split)``: ``X = [hits, n_hits]`` with ``hits`` ``(n_events, max_hits, 5)`` float32
``[x mm, y mm, z mm, energy MIP, time ns]`` (zero-padded) and ``n_hits`` ``(n_events,)``;
extra ``cells`` ``(n_events, max_hits, 3)`` int16 ``[layer, i, j]`` (-1 padded); ``y`` the beam
energy in GeV. Splits: ``train``/``val``/``test`` (80/10/10, seeded, stratified by beam energy).

``load_data(split, graph=False, representation="cloud")``: ``"cloud"`` gives ``features``
``(n_events, max_hits, 5)`` — x, y, z in cm, ln(1 + energy/MIP), time in ns — and ``mask``;
``"voxels"`` gives ``features`` ``(n_events, 38, 24, 24)`` (energy in MIP per tile). With
``graph=True``: ``neighbours`` ``(n_events, max_hits, 26)`` — the hits in the 26 surrounding
cells (±1 layer, ±1 tile) — and ``neighbour_mask``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pd4ml.datasets.base import ArrayWriter, Dataset, LoadResult
from pd4ml.datasets.splits import stratified_holdout
from pd4ml.errors import ConversionError
from pd4ml.manifest import DatasetVersion

N_LAYERS = 38
N_TILES = 24
TILE_MM = 30.0
HALF_WIDTH_MM = N_TILES * TILE_MM / 2
HIT_FIELDS = ("hit_x", "hit_y", "hit_z", "hit_energy", "hit_time")
DEFAULT_BRANCHES: Mapping[str, str] = {
    **{field: field for field in HIT_FIELDS},
    "beam_energy": "beam_energy",
    "tree": "events",
}
SPLIT_SEED = 2018
_CHUNK = 2_000
_OFFSETS = np.array(
    [
        (dl, di, dj)
        for dl in (-1, 0, 1)
        for di in (-1, 0, 1)
        for dj in (-1, 0, 1)
        if (dl, di, dj) != (0, 0, 0)
    ]
)


def read_root(
    path: Path, branches: Mapping[str, str]
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """``(flat hit arrays, n_hits, beam_energy)`` from the ROOT form (via uproot)."""
    try:
        import uproot
    except ImportError:
        raise ConversionError(
            f"{path}: reading ROOT files needs uproot (pip install uproot)"
        ) from None
    try:
        with uproot.open(path) as handle:
            if branches["tree"] not in handle:
                raise ConversionError(
                    f"{path}: no tree {branches['tree']!r} "
                    "(names are configurable: CaliceAHCAL.with_branches)"
                )
            tree = handle[branches["tree"]]
            wanted = [branches[field] for field in (*HIT_FIELDS, "beam_energy")]
            present = set(tree.keys())
            missing = [name for name in wanted if name not in present]
            if missing:
                raise ConversionError(
                    f"{path}: missing branch(es) {', '.join(missing)}; found {sorted(present)} "
                    "(names are configurable: CaliceAHCAL.with_branches)"
                )
            arrays = tree.arrays(wanted, library="np")
    except ConversionError:
        raise
    except Exception as error:  # uproot raises many types for damaged files
        raise ConversionError(
            f"{path}: cannot read the ROOT file ({type(error).__name__}: {error})"
        ) from None
    jagged = arrays[branches["hit_x"]]
    n_hits = np.array([len(event) for event in jagged], dtype=np.int64)
    flat = {
        field: np.concatenate(list(arrays[branches[field]])).astype(np.float32)
        if len(n_hits)
        else np.zeros(0, np.float32)
        for field in HIT_FIELDS
    }
    for field in HIT_FIELDS:
        if len(flat[field]) != n_hits.sum():
            raise ConversionError(
                f"{path}: branch {branches[field]} has a different number of hits "
                f"than {branches['hit_x']}"
            )
    return flat, n_hits, np.asarray(arrays[branches["beam_energy"]], dtype=np.float32)


def read_numpy(path: Path) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """``(flat hit arrays, n_hits, beam_energy)`` from the NumPy form."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [
                name for name in (*HIT_FIELDS, "n_hits", "beam_energy") if name not in archive.files
            ]
            if missing:
                raise ConversionError(f"{path}: missing array(s) {', '.join(missing)}")
            flat = {field: np.asarray(archive[field], dtype=np.float32) for field in HIT_FIELDS}
            n_hits = np.asarray(archive["n_hits"], dtype=np.int64)
            beam = np.asarray(archive["beam_energy"], dtype=np.float32)
    except (OSError, ValueError, EOFError) as error:
        raise ConversionError(f"{path}: cannot read the npz ({error})") from None
    if any(len(values) != n_hits.sum() for values in flat.values()) or len(beam) != len(n_hits):
        raise ConversionError(f"{path}: hit arrays, n_hits and beam_energy do not agree in length")
    return flat, n_hits, beam


def hit_cells(flat: Mapping[str, np.ndarray], path: Path) -> np.ndarray:
    """``(n_hits_total, 3)`` int16 ``[layer, i, j]`` of every hit (see the module docstring)."""
    planes = np.unique(np.round(flat["hit_z"], 1))
    if len(planes) > N_LAYERS:
        raise ConversionError(
            f"{path}: hits lie in {len(planes)} z planes; the prototype has {N_LAYERS} layers"
        )
    layer = np.searchsorted(planes, np.round(flat["hit_z"], 1))
    tile_i = np.floor((flat["hit_x"] + HALF_WIDTH_MM) / TILE_MM).astype(np.int64)
    tile_j = np.floor((flat["hit_y"] + HALF_WIDTH_MM) / TILE_MM).astype(np.int64)
    if ((tile_i < 0) | (tile_i >= N_TILES) | (tile_j < 0) | (tile_j >= N_TILES)).any():
        raise ConversionError(f"{path}: hits outside the {N_TILES} x {N_TILES} tiles of 3 x 3 cm^2")
    return np.stack([layer, tile_i, tile_j], axis=1).astype(np.int16)


class CaliceAHCAL(Dataset):
    """CALICE AHCAL pion showers, energy regression (see the module docstring)."""

    name = "calice_ahcal"
    node_positions = ("features", 0, 3)
    branches: ClassVar[Mapping[str, str]] = DEFAULT_BRANCHES
    prepare_defaults: ClassVar[Mapping[str, Any]] = {"representation": "cloud"}

    @classmethod
    def with_branches(cls, **names: str) -> type[CaliceAHCAL]:
        """A class reading other branch (and ``tree``) names, e.g. ``with_branches(hit_x="x")``."""
        unknown = sorted(set(names) - set(DEFAULT_BRANCHES))
        if unknown:
            raise TypeError(f"unknown branch role(s) {unknown}; roles: {sorted(DEFAULT_BRANCHES)}")
        return type(
            cls.__name__,
            (cls,),
            {"branches": {**cls.branches, **names}, "__module__": cls.__module__},
            register=False,
        )

    @classmethod
    def convert(
        cls, raw_files: Mapping[str, Path], version: DatasetVersion, writer: ArrayWriter, split: str
    ) -> None:
        (path,) = raw_files.values()
        if path.name.endswith(".npz"):
            flat, n_hits, beam = read_numpy(path)
        else:
            flat, n_hits, beam = read_root(path, cls.branches)
        for field, values in flat.items():
            if not np.isfinite(values).all():
                raise ConversionError(f"{path}: {field} contains NaN or infinite values")
        cells = hit_cells(flat, path)
        write_event_splits(flat, cells, n_hits, beam, writer)

    @classmethod
    def prepare(
        cls,
        raw: LoadResult,
        statistics: Mapping[str, np.ndarray],
        params: Mapping[str, Any],
        writer: ArrayWriter,
        split: str,
    ) -> None:
        hits, n_hits = raw.X
        cells = np.asarray(raw["cells"])
        n_events, max_hits, _ = hits.shape
        mask = np.arange(max_hits)[None, :] < np.asarray(n_hits)[:, None]
        names = ["labels"]
        if params["representation"] == "cloud":
            features = np.asarray(hits, dtype=np.float64).copy()
            features[..., :3] /= 10.0
            features[..., 3] = np.log1p(np.clip(features[..., 3], 0, None))
            features[~mask] = 0.0
            writer.save(split, "features", features.astype(np.float32))
            writer.save(split, "mask", mask)
            names += ["features", "mask"]
        elif params["representation"] == "voxels":
            voxels = writer.empty(
                split, "features", (n_events, N_LAYERS, N_TILES, N_TILES), np.float32
            )
            event, hit = np.nonzero(mask)
            grid = np.zeros((n_events, N_LAYERS, N_TILES, N_TILES), dtype=np.float32)
            np.add.at(
                grid,
                (event, *cells[event, hit].T.astype(np.int64)),
                np.asarray(hits)[event, hit, 3],
            )
            voxels[:] = grid
            voxels.flush()
            names.append("features")
        else:
            raise ValueError(
                f"representation must be 'cloud' or 'voxels', not {params['representation']!r}"
            )
        if params["graph"]:
            neighbours, valid = cell_neighbours(cells, mask)
            writer.save(split, "neighbours", neighbours)
            writer.save(split, "neighbour_mask", valid)
            names += ["neighbours", "neighbour_mask"]
        writer.save(split, "labels", np.asarray(raw.y))
        writer.describe_arrays(split, names, {"representation": params["representation"]})


def cell_neighbours(cells: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hits in the 26 cells around each hit: ``(n_events, max_hits, 26)`` indices and mask."""
    n_events, max_hits, _ = cells.shape
    neighbours = np.full((n_events, max_hits, len(_OFFSETS)), -1, dtype=np.int32)
    for start in range(0, n_events, 256):
        stop = min(start + 256, n_events)
        block_cells = cells[start:stop].astype(np.int64)
        block_mask = mask[start:stop]
        grid = np.full((stop - start, N_LAYERS, N_TILES, N_TILES), -1, dtype=np.int32)
        event, hit = np.nonzero(block_mask)
        cell = block_cells[event, hit]
        grid[event, cell[:, 0], cell[:, 1], cell[:, 2]] = hit
        around = block_cells[event, hit][:, None, :] + _OFFSETS[None, :, :]
        inside = (around >= 0).all(axis=-1) & (around < np.array([N_LAYERS, N_TILES, N_TILES])).all(
            axis=-1
        )
        clipped = np.clip(around, 0, np.array([N_LAYERS, N_TILES, N_TILES]) - 1)
        found = grid[event[:, None], clipped[..., 0], clipped[..., 1], clipped[..., 2]]
        neighbours[start + event, hit] = np.where(inside, found, -1)
    return neighbours, neighbours >= 0


def write_event_splits(
    flat: Mapping[str, np.ndarray],
    cells: np.ndarray,
    n_hits: np.ndarray,
    beam: np.ndarray,
    writer: ArrayWriter,
) -> None:
    """Pad the hits per event and write train/val/test (80/10/10, stratified by beam energy)."""
    n_events = len(n_hits)
    max_hits = int(n_hits.max(initial=0))
    starts = np.concatenate([[0], np.cumsum(n_hits)[:-1]]).astype(np.int64)
    position = np.arange(int(n_hits.sum())) - np.repeat(starts, n_hits)
    event = np.repeat(np.arange(n_events), n_hits)
    holdout = stratified_holdout(beam, 0.2, SPLIT_SEED)
    second = np.zeros(n_events, dtype=bool)
    held = np.flatnonzero(holdout)
    second[held[stratified_holdout(beam[held], 0.5, SPLIT_SEED + 1)]] = True
    assignment = np.where(~holdout, 0, np.where(second, 2, 1))
    for index, split in enumerate(("train", "val", "test")):
        rows = np.flatnonzero(assignment == index)
        new_index = np.full(n_events, -1)
        new_index[rows] = np.arange(len(rows))
        hits = np.zeros((len(rows), max_hits, 5), dtype=np.float32)
        cell_array = np.full((len(rows), max_hits, 3), -1, dtype=np.int16)
        selected = new_index[event] >= 0
        target = (new_index[event][selected], position[selected])
        hits[target] = np.stack([flat[field][selected] for field in HIT_FIELDS], axis=1)
        cell_array[target] = cells[selected]
        writer.save(split, "hits", hits)
        writer.save(split, "n_hits", n_hits[rows])
        writer.save(split, "cells", cell_array)
        writer.save(split, "labels", beam[rows])
        info = {
            "geometry": {"layers": N_LAYERS, "tiles": N_TILES, "tile_mm": TILE_MM},
            "split_seed": SPLIT_SEED,
            "units": {"hits": "[mm, mm, mm, MIP, ns]", "y": "GeV"},
        }
        writer.describe(
            split, features=["hits", "n_hits"], labels="labels", extra=["cells"], info=info
        )
