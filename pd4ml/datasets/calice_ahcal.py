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
the beam axis at the layer centre). Its layer comes from the layer positions of the proposed
schema, not from the hits present in the file: layer ``l`` lies at ``z = 100 mm + l × 26.1 mm``
(values that this schema defines, used by pd4ml's synthetic files; no public record or survey
exists yet to check them against, so files in detector coordinates need ``with_geometry``)
(:data:`FIRST_LAYER_Z_MM`, :data:`LAYER_PITCH_MM`), and a hit belongs to layer
``round((z - 100 mm) / 26.1 mm)`` when its z is within ±1.5 mm of that layer
(:data:`LAYER_TOLERANCE_MM`, half the 3 mm scintillator), so an empty layer does not shift the
deeper ones. Hits between layers, in front of the first or behind the last layer, or outside the
72 cm square are refused with a :class:`~pd4ml.errors.ConversionError` naming the file and the
value. Files in other coordinates: ``CaliceAHCAL.with_geometry(first_layer_z_mm=…,
layer_pitch_mm=…, tolerance_mm=…)``.

Conversion streams the events in chunks (:data:`_CHUNK` events; the hit arrays of the NumPy
form are first copied from the npz to a scratch ``.npy`` on disk, the ROOT form is read with
``uproot.iterate``), so its memory does not grow with the number of events.

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

import contextlib
import dataclasses
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pd4ml.datasets.base import ArrayWriter, Dataset, LoadResult
from pd4ml.datasets.splits import stratified_holdout
from pd4ml.errors import ConversionError
from pd4ml.fetch.diskspace import disk_full_error, free_bytes, is_disk_full
from pd4ml.manifest import DatasetVersion
from pd4ml.npyio import copy_npz_member, npz_headers

N_LAYERS = 38
N_TILES = 24
TILE_MM = 30.0
HALF_WIDTH_MM = N_TILES * TILE_MM / 2
FIRST_LAYER_Z_MM = 100.0
LAYER_PITCH_MM = 26.1
LAYER_TOLERANCE_MM = 1.5
HIT_FIELDS = ("hit_x", "hit_y", "hit_z", "hit_energy", "hit_time")
DEFAULT_BRANCHES: Mapping[str, str] = {
    **{field: field for field in HIT_FIELDS},
    "beam_energy": "beam_energy",
    "tree": "events",
}
SPLIT_SEED = 2018
SPLITS = ("train", "val", "test")
_CHUNK = 512  # events per chunk when converting and preparing
_OFFSETS = np.array(
    [
        (dl, di, dj)
        for dl in (-1, 0, 1)
        for di in (-1, 0, 1)
        for dj in (-1, 0, 1)
        if (dl, di, dj) != (0, 0, 0)
    ]
)


@dataclass(frozen=True)
class LayerGeometry:
    """Longitudinal layer positions: layer ``l`` at ``first_layer_z_mm + l × layer_pitch_mm``.

    A hit belongs to the nearest layer when its z is within ``tolerance_mm`` of it.
    """

    first_layer_z_mm: float = FIRST_LAYER_Z_MM
    layer_pitch_mm: float = LAYER_PITCH_MM
    tolerance_mm: float = LAYER_TOLERANCE_MM

    def layer_z(self, layer: np.ndarray) -> np.ndarray:
        """z (mm) of layers ``layer``."""
        z: np.ndarray = self.first_layer_z_mm + np.asarray(layer, np.float64) * self.layer_pitch_mm
        return z

    def layers(self, z: np.ndarray, path: Path) -> np.ndarray:
        """The layer index ``(n,)`` int64 of hits at ``z`` (mm); refuses hits between layers."""
        z = np.asarray(z, dtype=np.float64)
        nearest = np.rint((z - self.first_layer_z_mm) / self.layer_pitch_mm)
        between = np.flatnonzero(np.abs(z - self.layer_z(nearest)) > self.tolerance_mm)
        if len(between):
            value, layer = z[between[0]], int(nearest[between[0]])
            raise ConversionError(
                f"{path}: a hit at z = {value:.2f} mm lies between layers: the nearest layer "
                f"position, {self.layer_z(np.array(layer)):.2f} mm, is farther than the tolerance "
                f"of ±{self.tolerance_mm} mm ({len(between)} such hit(s) in this chunk; layer l "
                f"is at z = {self.first_layer_z_mm} mm + l × {self.layer_pitch_mm} mm — for "
                "other coordinates use CaliceAHCAL.with_geometry)"
            )
        outside = np.flatnonzero((nearest < 0) | (nearest >= N_LAYERS))
        if len(outside):
            raise ConversionError(
                f"{path}: a hit at z = {z[outside[0]]:.2f} mm lies outside the {N_LAYERS} layers "
                f"(z = {self.layer_z(np.array(0)):.2f} to "
                f"{self.layer_z(np.array(N_LAYERS - 1)):.2f} mm, tolerance ±{self.tolerance_mm} "
                "mm; for other coordinates use CaliceAHCAL.with_geometry)"
            )
        return nearest.astype(np.int64)


DEFAULT_GEOMETRY = LayerGeometry()


@dataclass(frozen=True)
class HitTable:
    """All hits of a file: ``flat`` field → ``(n_hits_total,)`` arrays (memory maps on disk),
    ``n_hits`` ``(n_events,)`` int64 and ``beam`` ``(n_events,)`` float32 GeV."""

    flat: Mapping[str, np.ndarray]
    n_hits: np.ndarray
    beam: np.ndarray


def read_root(path: Path, branches: Mapping[str, str], scratch: Path) -> HitTable:
    """The ROOT form (via uproot), read in chunks of events; hits spooled to ``scratch``."""
    try:
        import awkward as ak
        import uproot
    except ImportError:
        raise ConversionError(
            f"{path}: reading ROOT files needs uproot (pip install uproot)"
        ) from None
    spools = {field: scratch / f"{field}.f32" for field in HIT_FIELDS}
    counts: list[np.ndarray] = []
    beams: list[np.ndarray] = []
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
            with contextlib.ExitStack() as stack:
                outputs = {
                    field: stack.enter_context(open(spool, "wb")) for field, spool in spools.items()
                }
                for chunk in tree.iterate(wanted, step_size=_CHUNK, library="ak"):
                    n_hits = ak.to_numpy(ak.num(chunk[branches["hit_x"]], axis=1)).astype(np.int64)
                    for field in HIT_FIELDS:
                        values = chunk[branches[field]]
                        if not np.array_equal(ak.to_numpy(ak.num(values, axis=1)), n_hits):
                            raise ConversionError(
                                f"{path}: branch {branches[field]} has a different number of "
                                f"hits than {branches['hit_x']}"
                            )
                        flat = np.asarray(ak.to_numpy(ak.flatten(values)), dtype=np.float32)
                        outputs[field].write(flat.tobytes())
                    counts.append(n_hits)
                    beams.append(np.asarray(ak.to_numpy(chunk[branches["beam_energy"]])))
    except ConversionError:
        raise
    except Exception as error:  # uproot raises many types for damaged files
        if is_disk_full(error):
            raise disk_full_error(
                next(iter(spools.values())), needed=None, free=free_bytes(path.parent)
            ) from error
        raise ConversionError(
            f"{path}: cannot read the ROOT file ({type(error).__name__}: {error})"
        ) from None
    n_hits = np.concatenate(counts) if counts else np.zeros(0, np.int64)
    total = int(n_hits.sum())
    flat_arrays = {
        field: np.memmap(spool, dtype=np.float32, mode="r", shape=(total,))
        if total
        else np.zeros(0, np.float32)
        for field, spool in spools.items()
    }
    beam = np.concatenate(beams).astype(np.float32) if beams else np.zeros(0, np.float32)
    return HitTable(flat_arrays, n_hits, beam)


def read_numpy(path: Path, scratch: Path) -> HitTable:
    """The NumPy form; the hit arrays are streamed from the npz into ``.npy`` files in
    ``scratch`` and returned as memory maps."""
    headers = npz_headers(path)
    missing = [name for name in (*HIT_FIELDS, "n_hits", "beam_energy") if name not in headers]
    if missing:
        raise ConversionError(f"{path}: missing array(s) {', '.join(missing)}")
    n_hits = np.asarray(
        copy_npz_member(path, "n_hits", scratch / "n_hits.npy"), dtype=np.int64
    ).reshape(-1)
    beam = np.asarray(
        copy_npz_member(path, "beam_energy", scratch / "beam_energy.npy"), dtype=np.float32
    )
    total = int(n_hits.sum())
    if (
        any(headers[field].shape != (total,) for field in HIT_FIELDS)
        or beam.shape != n_hits.shape
        or (n_hits < 0).any()
    ):
        raise ConversionError(f"{path}: hit arrays, n_hits and beam_energy do not agree in length")
    flat = {field: copy_npz_member(path, field, scratch / f"{field}.npy") for field in HIT_FIELDS}
    return HitTable(flat, n_hits, beam)


def hit_cells(
    flat: Mapping[str, np.ndarray], path: Path, geometry: LayerGeometry = DEFAULT_GEOMETRY
) -> np.ndarray:
    """``(n_hits, 3)`` int16 ``[layer, i, j]`` of hits (see the module docstring)."""
    layer = geometry.layers(flat["hit_z"], path)
    tile_i = np.floor((flat["hit_x"] + HALF_WIDTH_MM) / TILE_MM).astype(np.int64)
    tile_j = np.floor((flat["hit_y"] + HALF_WIDTH_MM) / TILE_MM).astype(np.int64)
    if ((tile_i < 0) | (tile_i >= N_TILES) | (tile_j < 0) | (tile_j >= N_TILES)).any():
        raise ConversionError(f"{path}: hits outside the {N_TILES} x {N_TILES} tiles of 3 x 3 cm^2")
    return np.stack([layer, tile_i, tile_j], axis=1).astype(np.int16)


class CaliceAHCAL(Dataset):
    """CALICE AHCAL pion showers, energy regression (see the module docstring)."""

    name = "calice_ahcal"
    symmetries: ClassVar[str] = (
        "None: the hits are test-beam data in detector coordinates, and the detector's response "
        "is not symmetric under reflections or 90° rotations of x and y (dead and noisy "
        "channels, tile-by-tile calibration, a beam profile of its own), so transformed hit "
        "patterns are not ones this detector records at that energy."
    )
    converter_version = 2
    convert_fingerprints: ClassVar[Mapping[int, str]] = {2: "0d3fc4946573fba6"}
    prepare_fingerprints: ClassVar[Mapping[int, str]] = {
        1: "68ed289079edf6f5+3f045d01e89894b4+3697483e91b24b77"
    }
    node_positions = ("features", 0, 3)
    branches: ClassVar[Mapping[str, str]] = DEFAULT_BRANCHES
    geometry: ClassVar[LayerGeometry] = DEFAULT_GEOMETRY
    prepare_defaults: ClassVar[Mapping[str, Any]] = {"representation": "cloud"}
    prepare_choices: ClassVar[Mapping[str, tuple[Any, ...]]] = {
        "representation": ("cloud", "voxels")
    }

    @classmethod
    def conversion_parameters(cls) -> Mapping[str, Any]:
        """The branch names and the layer geometry (they change the converted arrays)."""
        return {"branches": dict(cls.branches), "geometry": dataclasses.asdict(cls.geometry)}

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
    def with_geometry(
        cls,
        *,
        first_layer_z_mm: float | None = None,
        layer_pitch_mm: float | None = None,
        tolerance_mm: float | None = None,
    ) -> type[CaliceAHCAL]:
        """A class for files whose layers lie elsewhere in z (all lengths in mm)."""
        geometry = LayerGeometry(
            cls.geometry.first_layer_z_mm if first_layer_z_mm is None else first_layer_z_mm,
            cls.geometry.layer_pitch_mm if layer_pitch_mm is None else layer_pitch_mm,
            cls.geometry.tolerance_mm if tolerance_mm is None else tolerance_mm,
        )
        if not (
            geometry.layer_pitch_mm > 0 and 0 <= geometry.tolerance_mm < geometry.layer_pitch_mm / 2
        ):
            raise ValueError(
                "need layer_pitch_mm > 0 and 0 <= tolerance_mm < layer_pitch_mm / 2, got "
                f"{geometry.layer_pitch_mm} and {geometry.tolerance_mm}"
            )
        return type(
            cls.__name__,
            (cls,),
            {"geometry": geometry, "__module__": cls.__module__},
            register=False,
        )

    @classmethod
    def convert(
        cls, raw_files: Mapping[str, Path], version: DatasetVersion, writer: ArrayWriter, split: str
    ) -> None:
        (path,) = raw_files.values()
        scratch = writer.directory / ".scratch"
        scratch.mkdir(parents=True, exist_ok=True)
        try:
            if path.name.endswith(".npz"):
                table = read_numpy(path, scratch)
            else:
                table = read_root(path, cls.branches, scratch)
            write_event_splits(table, path, writer, cls.geometry)
            del table
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

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
        cells = raw["cells"]
        n_hits = np.asarray(n_hits)
        n_events, max_hits, _ = hits.shape
        representation = params["representation"]
        if representation not in ("cloud", "voxels"):
            raise ValueError(
                f"representation must be 'cloud' or 'voxels', not {params['representation']!r}"
            )
        names = ["labels"]
        outputs: dict[str, np.ndarray] = {}
        if representation == "cloud":
            outputs["features"] = writer.empty(
                split, "features", (n_events, max_hits, 5), np.float32
            )
            outputs["mask"] = writer.empty(split, "mask", (n_events, max_hits), np.bool_)
        else:
            outputs["features"] = writer.empty(
                split, "features", (n_events, N_LAYERS, N_TILES, N_TILES), np.float32
            )
        if params["graph"]:
            outputs["neighbours"] = writer.empty(
                split, "neighbours", (n_events, max_hits, len(_OFFSETS)), np.int32
            )
            outputs["neighbour_mask"] = writer.empty(
                split, "neighbour_mask", (n_events, max_hits, len(_OFFSETS)), np.bool_
            )
        names += list(outputs)
        for start in range(0, n_events, _CHUNK):
            stop = min(start + _CHUNK, n_events)
            mask = np.arange(max_hits)[None, :] < n_hits[start:stop, None]
            block_hits = np.asarray(hits[start:stop])
            block_cells = np.asarray(cells[start:stop])
            if representation == "cloud":
                outputs["features"][start:stop] = cloud_features(block_hits, mask)
                outputs["mask"][start:stop] = mask
            else:
                outputs["features"][start:stop] = voxel_grid(block_hits, block_cells, mask)
            if params["graph"]:
                neighbours, valid = cell_neighbours(block_cells, mask)
                outputs["neighbours"][start:stop] = neighbours
                outputs["neighbour_mask"][start:stop] = valid
        for array in outputs.values():
            array.flush()  # type: ignore[attr-defined]
        writer.save(split, "labels", np.asarray(raw.y))
        writer.describe_arrays(split, names, {"representation": representation})


def cloud_features(hits: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``(n, max_hits, 5)`` float32: x, y, z in cm, ln(1 + energy/MIP), time; padding 0."""
    features = np.asarray(hits, dtype=np.float64).copy()
    features[..., :3] /= 10.0
    features[..., 3] = np.log1p(np.clip(features[..., 3], 0, None))
    features[~mask] = 0.0
    as_float32: np.ndarray = features.astype(np.float32)
    return as_float32


def voxel_grid(hits: np.ndarray, cells: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``(n, 38, 24, 24)`` float32 energy (MIP) per tile of the hits under ``mask``."""
    event, hit = np.nonzero(mask)
    grid = np.zeros((len(hits), N_LAYERS, N_TILES, N_TILES), dtype=np.float32)
    np.add.at(grid, (event, *cells[event, hit].T.astype(np.int64)), hits[event, hit, 3])
    return grid


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


def split_assignment(beam: np.ndarray) -> np.ndarray:
    """Split index per event (0 train, 1 val, 2 test): 80/10/10, seeded, per beam energy."""
    n_events = len(beam)
    holdout = stratified_holdout(beam, 0.2, SPLIT_SEED)
    second = np.zeros(n_events, dtype=bool)
    held = np.flatnonzero(holdout)
    second[held[stratified_holdout(beam[held], 0.5, SPLIT_SEED + 1)]] = True
    assignment: np.ndarray = np.where(~holdout, 0, np.where(second, 2, 1))
    return assignment


def write_event_splits(
    table: HitTable, path: Path, writer: ArrayWriter, geometry: LayerGeometry = DEFAULT_GEOMETRY
) -> None:
    """Pad the hits per event and write train/val/test (80/10/10, stratified by beam energy).

    Events are processed :data:`_CHUNK` at a time: the hits of a chunk are read from the flat
    arrays, checked, given their cells and written into each split's memory-mapped output.
    """
    n_hits, beam = table.n_hits, table.beam
    n_events = len(n_hits)
    max_hits = int(n_hits.max(initial=0))
    offsets = np.zeros(n_events + 1, dtype=np.int64)
    np.cumsum(n_hits, out=offsets[1:])
    assignment = split_assignment(beam)
    row_in_split = np.zeros(n_events, dtype=np.int64)
    outputs = {}
    for index, split in enumerate(SPLITS):
        rows = np.flatnonzero(assignment == index)
        row_in_split[rows] = np.arange(len(rows))
        outputs[split] = (
            writer.empty(split, "hits", (len(rows), max_hits, 5), np.float32),
            writer.empty(split, "cells", (len(rows), max_hits, 3), np.int16),
        )
        writer.save(split, "n_hits", n_hits[rows])
        writer.save(split, "labels", beam[rows])
    for start in range(0, n_events, _CHUNK):
        stop = min(start + _CHUNK, n_events)
        first, last = offsets[start], offsets[stop]
        block = {
            field: np.asarray(table.flat[field][first:last], dtype=np.float32)
            for field in HIT_FIELDS
        }
        for field, values in block.items():
            if not np.isfinite(values).all():
                raise ConversionError(f"{path}: {field} contains NaN or infinite values")
        cells = hit_cells(block, path, geometry)
        counts = n_hits[start:stop]
        event = np.repeat(np.arange(stop - start), counts)
        position = np.arange(last - first) - np.repeat(offsets[start:stop] - first, counts)
        padded_hits = np.zeros((stop - start, max_hits, 5), dtype=np.float32)
        padded_hits[event, position] = np.stack([block[field] for field in HIT_FIELDS], axis=1)
        padded_cells = np.full((stop - start, max_hits, 3), -1, dtype=np.int16)
        padded_cells[event, position] = cells
        for index, split in enumerate(SPLITS):
            chosen = np.flatnonzero(assignment[start:stop] == index)
            if len(chosen):
                row = int(row_in_split[start + chosen[0]])  # a split's rows are in event order
                outputs[split][0][row : row + len(chosen)] = padded_hits[chosen]
                outputs[split][1][row : row + len(chosen)] = padded_cells[chosen]
    info = {
        "geometry": {
            "layers": N_LAYERS,
            "tiles": N_TILES,
            "tile_mm": TILE_MM,
            "first_layer_z_mm": geometry.first_layer_z_mm,
            "layer_pitch_mm": geometry.layer_pitch_mm,
            "layer_tolerance_mm": geometry.tolerance_mm,
        },
        "split_seed": SPLIT_SEED,
        "units": {"hits": "[mm, mm, mm, MIP, ns]", "y": "GeV"},
    }
    for split, (hits, cells_out) in outputs.items():
        hits.flush()
        cells_out.flush()
        writer.describe(
            split, features=["hits", "n_hits"], labels="labels", extra=["cells"], info=info
        )
