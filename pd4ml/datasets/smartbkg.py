"""SmartBKG — Belle II selective Monte Carlo (generator-level decay trees, pass/fail labels).

Upstream: github.com/kahn-jms/belle-selective-mc-dataset (J. Kahn, with N. Hartmann and T.
Kuhr), whose README shares the original ``erum_data_classifier_comparison.npz`` on CERNBox; the
original pd4ml repackaged it as ``6_belle_selective_400k.npz`` with the PDG token as a ninth
feature — the file this module reads.

``load(split)`` gives ``X = [particles, mothers]``: ``particles`` ``(n_events, 100, 9)``
float32 ``[prodTime, E, x, y, z, px, py, pz, PID token]`` (zero-padded; energies and momenta
in GeV, positions in cm, time in ns as stored upstream) and ``mothers`` ``(n_events, 100)``
int32, the index of each particle's mother (-1 for roots and padding); ``y`` ``(n_events,)``
int64, 1 = the event passes the post-reconstruction selection. Splits: ``train`` and ``val``
(the file's 280,000 training events with a seeded stratified 10 % held out as ``val``) and
``test`` (120,000).

``load_data(split, graph=False, num_pdg=182, one_hot=False, dense_adjacency=False)``:

* ``features`` ``(n_events, 100, 8)`` float32 — the kinematics standardised with mean and
  standard deviation over the real particles of the train split (fitted once, stored);
* ``pdg`` ``(n_events, 100)`` int32 — an embedding index: 0 for padding, ``1..num_pdg`` for
  the ``num_pdg`` most frequent tokens of the train split (most frequent first), ``num_pdg + 1``
  for any other token; with ``one_hot=True`` also ``pdg_one_hot`` ``(n_events, 100, num_pdg)``
  float32 as the original (other tokens all zero);
* ``mask`` ``(n_events, 100)`` bool — real particles;
* with ``graph=True``: ``edges`` ``(n_events, n_edges_max, 2)`` int32 ``[mother, daughter]`` and
  ``edge_mask``; with ``dense_adjacency=True`` the original's ``adjacency``
  ``(n_events, 100, 100)`` int8 (mother ↔ daughter plus self-loops on particles with a mother);
* ``labels``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pd4ml.datasets.base import ArrayWriter, Dataset, LoadResult
from pd4ml.datasets.scaling import RunningMoments
from pd4ml.datasets.splits import stratified_holdout
from pd4ml.errors import ConversionError
from pd4ml.graphs import decay_tree_dense, decay_tree_edges
from pd4ml.manifest import DatasetVersion
from pd4ml.npyio import copy_npz_member, npz_headers

KINEMATICS = ("prodTime", "energy", "x", "y", "z", "px", "py", "pz")
N_PARTICLES = 100
VALIDATION_FRACTION = 0.1
VALIDATION_SEED = 20201221
_CHUNK = 4_096  # events per chunk


def particle_mask(particles: np.ndarray) -> np.ndarray:
    """Real particles ``(n_events, 100)``: any non-zero feature (padding is all zeros)."""
    mask: np.ndarray = np.any(particles != 0, axis=-1)
    return mask


def pdg_vocabulary(tokens: np.ndarray, mask: np.ndarray, num_pdg: int) -> np.ndarray:
    """The ``num_pdg`` most frequent tokens of real particles, most frequent first (ties: lower)."""
    values, counts = np.unique(tokens[mask].astype(np.int64), return_counts=True)
    return ranked_tokens(values, counts, num_pdg)


def ranked_tokens(values: np.ndarray, counts: np.ndarray, num_pdg: int) -> np.ndarray:
    """The ``num_pdg`` distinct ``values`` with the highest ``counts`` (ties: lower value)."""
    order = np.lexsort((values, -counts))
    vocabulary: np.ndarray = values[order][:num_pdg]
    return vocabulary


def merge_counts(
    values: np.ndarray, counts: np.ndarray, more_values: np.ndarray, more_counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values and summed counts of two ``(values, counts)`` tallies."""
    merged, inverse = np.unique(np.concatenate([values, more_values]), return_inverse=True)
    summed = np.bincount(
        inverse.reshape(-1), weights=np.concatenate([counts, more_counts]), minlength=len(merged)
    )
    return merged, np.rint(summed).astype(np.int64)


def pdg_index(tokens: np.ndarray, mask: np.ndarray, vocabulary: np.ndarray) -> np.ndarray:
    """Map tokens to 1..len(vocabulary) (others: len + 1; padding: 0) — vectorised."""
    tokens = np.rint(tokens).astype(np.int64)
    lookup_size = int(max(tokens.max(initial=0), vocabulary.max(initial=0))) + 1
    lookup = np.full(lookup_size, len(vocabulary) + 1, dtype=np.int32)
    lookup[vocabulary] = np.arange(1, len(vocabulary) + 1, dtype=np.int32)
    index: np.ndarray = lookup[np.clip(tokens, 0, None)]
    index[tokens < 0] = len(vocabulary) + 1
    index[~mask] = 0
    return index


class SmartBKG(Dataset):
    """The Belle II selective-MC dataset (see the module docstring for shapes)."""

    name = "smartbkg"
    symmetries: ClassVar[str] = (
        "None: the label is the outcome of Belle II's detector simulation and reconstruction, "
        "and the detector is not symmetric about the boost (the boost axis is tilted from the "
        "solenoid axis by the crossing angle, the beam spot is flat, the acceptance has "
        "azimuthal structure), so no rotation or reflection of the generator-level momenta and "
        "vertices leaves the pass/fail probability unchanged."
    )
    convert_fingerprints: ClassVar[Mapping[int, str]] = {1: "091dc6196970a3d2"}
    prepare_fingerprints: ClassVar[Mapping[int, str]] = {
        1: "372b3ab16eb3380f+545587a0e40f81f1+d5076fbdc4a51159+604cb1c928973923"
    }
    node_positions = ("features", 2, 5)
    prepare_defaults: ClassVar[Mapping[str, Any]] = {
        "num_pdg": 182,
        "one_hot": False,
        "dense_adjacency": False,
    }

    @classmethod
    def convert(
        cls, raw_files: Mapping[str, Path], version: DatasetVersion, writer: ArrayWriter, split: str
    ) -> None:
        (path,) = raw_files.values()
        headers = npz_headers(path)
        for part in ("train", "test"):
            particles_key, mothers_key, labels_key = f"X_{part}_0", f"X_{part}_1", f"y_{part}"
            for key in (particles_key, mothers_key, labels_key):
                if key not in headers:
                    raise ConversionError(f"{path}: no array {key!r}; arrays: {sorted(headers)}")
            shape = headers[particles_key].shape
            if len(shape) != 3 or shape[1:] != (N_PARTICLES, 9):
                raise ConversionError(
                    f"{path}: {particles_key} has shape {shape}, expected (N, 100, 9)"
                )
            if headers[mothers_key].shape != shape[:2] or headers[labels_key].shape != shape[:1]:
                raise ConversionError(
                    f"{path}: {mothers_key} {headers[mothers_key].shape} and {labels_key} "
                    f"{headers[labels_key].shape} do not match {particles_key} {shape}"
                )
        scratch = writer.directory / ".scratch"
        scratch.mkdir(exist_ok=True)
        for part in ("train", "test"):
            particles = copy_npz_member(path, f"X_{part}_0", scratch / "particles.npy")
            mothers = copy_npz_member(path, f"X_{part}_1", scratch / "mothers.npy")
            labels = np.asarray(copy_npz_member(path, f"y_{part}", scratch / "labels.npy"))
            if part == "train":
                held = stratified_holdout(labels, VALIDATION_FRACTION, VALIDATION_SEED)
                groups = {"train": np.flatnonzero(~held), "val": np.flatnonzero(held)}
            else:
                groups = {"test": np.arange(len(labels))}
            for split_name, rows in groups.items():
                out_particles = writer.empty(
                    split_name, "particles", (len(rows), N_PARTICLES, 9), np.float32
                )
                out_mothers = writer.empty(
                    split_name, "mothers", (len(rows), N_PARTICLES), np.int32
                )
                for start in range(0, len(rows), _CHUNK):
                    selection = rows[start : start + _CHUNK]
                    out_particles[start : start + len(selection)] = particles[selection]
                    block = np.rint(np.asarray(mothers[selection])).astype(np.int32)
                    if (block < -1).any() or (block >= N_PARTICLES).any():
                        raise ConversionError(
                            f"{path}: mother indices outside -1..99 in X_{part}_1"
                        )
                    out_mothers[start : start + len(selection)] = block
                out_particles.flush()
                out_mothers.flush()
                writer.save(split_name, "labels", labels[rows].astype(np.int64))
                info: dict[str, Any] = {"kinematics": list(KINEMATICS), "token": "PID"}
                if part == "train":
                    info.update(
                        {
                            "validation_fraction": VALIDATION_FRACTION,
                            "validation_seed": VALIDATION_SEED,
                        }
                    )
                writer.describe(
                    split_name, features=["particles", "mothers"], labels="labels", info=info
                )
                del out_particles, out_mothers
            del particles, mothers
        for item in scratch.iterdir():
            item.unlink()
        scratch.rmdir()

    @classmethod
    def fit_statistics(cls, train: LoadResult, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
        particles = train["particles"]
        moments = RunningMoments((8,))
        values = np.zeros(0, dtype=np.int64)
        counts = np.zeros(0, dtype=np.int64)
        for start in range(0, len(particles), _CHUNK):
            block = np.asarray(particles[start : start + _CHUNK], dtype=np.float64)
            mask = particle_mask(block)
            moments.update(block[mask][:, :8])
            tokens = np.rint(block[..., 8][mask]).astype(np.int64)
            values, counts = merge_counts(values, counts, *np.unique(tokens, return_counts=True))
        vocabulary = ranked_tokens(values, counts, int(params["num_pdg"]))
        return {
            "mean": moments.mean,
            "scale": moments.scale,
            "pdg_vocabulary": vocabulary,
        }

    @classmethod
    def prepare(
        cls,
        raw: LoadResult,
        statistics: Mapping[str, np.ndarray],
        params: Mapping[str, Any],
        writer: ArrayWriter,
        split: str,
    ) -> None:
        particles, mothers = raw["particles"], raw["mothers"]
        n_events = len(particles)
        vocabulary = np.asarray(statistics["pdg_vocabulary"])
        num_pdg = int(params["num_pdg"])
        features = writer.empty(split, "features", (n_events, N_PARTICLES, 8), np.float32)
        pdg = writer.empty(split, "pdg", (n_events, N_PARTICLES), np.int32)
        mask_out = writer.empty(split, "mask", (n_events, N_PARTICLES), np.bool_)
        names = ["features", "pdg", "mask", "labels"]
        if params["one_hot"]:
            one_hot = writer.empty(
                split, "pdg_one_hot", (n_events, N_PARTICLES, num_pdg), np.float32
            )
            names.append("pdg_one_hot")
        if params["dense_adjacency"]:
            adjacency = writer.empty(
                split, "adjacency", (n_events, N_PARTICLES, N_PARTICLES), np.int8
            )
            names.append("adjacency")
        for start in range(0, n_events, _CHUNK):
            stop = min(start + _CHUNK, n_events)
            block = np.asarray(particles[start:stop])
            mask = particle_mask(block)
            scaled = (block[..., :8] - statistics["mean"]) / statistics["scale"]
            scaled[~mask] = 0.0
            features[start:stop] = scaled
            index = pdg_index(block[..., 8], mask, vocabulary)
            pdg[start:stop] = index
            mask_out[start:stop] = mask
            if params["one_hot"]:
                encoded = np.zeros((stop - start, N_PARTICLES, num_pdg + 2), dtype=np.float32)
                np.put_along_axis(encoded, index[..., None].astype(np.int64), 1.0, axis=-1)
                one_hot[start:stop] = encoded[..., 1 : num_pdg + 1]
            if params["dense_adjacency"]:
                adjacency[start:stop] = decay_tree_dense(np.asarray(mothers[start:stop]))
        if params["graph"]:
            write_decay_edges(mothers, writer, split)
            names += ["edges", "edge_mask"]
        writer.save(split, "labels", np.asarray(raw.y))
        writer.describe_arrays(
            split, names, {"kinematics": list(KINEMATICS), "pdg_vocabulary": vocabulary.tolist()}
        )


def write_decay_edges(mothers: np.ndarray, writer: ArrayWriter, split: str) -> None:
    """``edges`` / ``edge_mask`` of :func:`~pd4ml.graphs.decay_tree_edges` for all events,
    computed :data:`_CHUNK` events at a time (a first pass finds the widest event)."""
    n_events = len(mothers)
    width = 0
    for start in range(0, n_events, _CHUNK):
        block = np.asarray(mothers[start : start + _CHUNK])
        width = max(width, int((block >= 0).sum(axis=1).max(initial=0)))
    edges = writer.empty(split, "edges", (n_events, width, 2), np.int32)
    edge_mask = writer.empty(split, "edge_mask", (n_events, width), np.bool_)
    for start in range(0, n_events, _CHUNK):
        stop = min(start + _CHUNK, n_events)
        block_edges, block_valid = decay_tree_edges(np.asarray(mothers[start:stop]))
        chunk_width = block_edges.shape[1]
        edges[start:stop, :chunk_width] = block_edges
        edges[start:stop, chunk_width:] = -1
        edge_mask[start:stop, :chunk_width] = block_valid
        edge_mask[start:stop, chunk_width:] = False
    edges.flush()
    edge_mask.flush()
