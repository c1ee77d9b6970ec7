"""ILDPhotonShowers — high-granularity photon shower images (Zenodo 3826103, ``photons.hdf5``).

The file holds the HDF5 group ``30x30`` with ``energy`` ``(N, 1)`` (incident photon energy,
GeV) and ``layers`` ``(N, 30, 30, 30)`` (cell energies, MeV). It is read **lazily**: chunks of
showers are read with h5py and written to memory-mapped ``.npy`` files, so the 5 GB are never
in memory at once; each shower goes to ``train``, ``val`` or ``test`` (80/10/10) by a seeded
random draw, recorded in the metadata.

``load(split)`` gives ``X = [layers]`` ``(n_showers, 30, 30, 30)`` float32 in MeV (layer,
x, y as stored) and ``y`` ``(n_showers,)`` float32, the incident energy in GeV.

``load_data(split, standardise_target=False)``: ``features`` ``(n_showers, 1, 30, 30, 30)``
float32 in GeV (the cell energies / 1000), ``visible_energy`` ``(n_showers,)`` GeV (their sum),
``labels`` (the incident energy, standardised with the train mean and std on request).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import h5py
import numpy as np

from pd4ml.datasets.base import ArrayWriter, Dataset, LoadResult
from pd4ml.datasets.scaling import target_moments
from pd4ml.errors import ConversionError
from pd4ml.manifest import DatasetVersion
from pd4ml.npyio import release_rows

GROUP = "30x30"
SHAPE = (30, 30, 30)
SPLIT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}
SPLIT_SEED = 3826103
_CHUNK = 128


def assign_splits(n_showers: int) -> np.ndarray:
    """The split index (0 train, 1 val, 2 test) of every shower, from a seeded draw."""
    generator = np.random.default_rng(SPLIT_SEED)
    return generator.choice(3, size=n_showers, p=list(SPLIT_FRACTIONS.values()))


class ILDPhotonShowers(Dataset):
    """ILD Si-W ECAL photon showers, energy regression (see the module docstring)."""

    name = "ild_photon_showers"
    symmetries: ClassVar[str] = (
        "None: reflections and 90° rotations of the 30 × 30 transverse cells are only "
        "approximate symmetries of these Geant4 showers: the ILD silicon-tungsten ECAL's "
        "wafers (with gaps between them) and the solenoid field parallel to the layers, which "
        "bends the showers' electrons and positrons, single out transverse directions."
    )
    convert_fingerprints: ClassVar[Mapping[int, str]] = {1: "aa7baaa4dc52207d"}
    prepare_fingerprints: ClassVar[Mapping[int, str]] = {1: "ca8748c0a2b41e48+1d6227028272d9b3"}
    prepare_defaults: ClassVar[Mapping[str, Any]] = {"standardise_target": False}

    @classmethod
    def convert(
        cls, raw_files: Mapping[str, Path], version: DatasetVersion, writer: ArrayWriter, split: str
    ) -> None:
        (path,) = raw_files.values()
        try:
            handle = h5py.File(path, "r")
        except OSError as error:
            raise ConversionError(f"{path}: not a readable HDF5 file ({error})") from None
        with handle:
            if (
                GROUP not in handle
                or "energy" not in handle[GROUP]
                or "layers" not in handle[GROUP]
            ):
                raise ConversionError(
                    f"{path}: expected the group '{GROUP}' with 'energy' and 'layers'"
                )
            energy, layers = handle[GROUP]["energy"], handle[GROUP]["layers"]
            n = layers.shape[0]
            if layers.shape[1:] != SHAPE or energy.shape not in ((n, 1), (n,)):
                raise ConversionError(
                    f"{path}: layers {layers.shape} and energy {energy.shape} do not match "
                    "(N, 30, 30, 30) and (N, 1)"
                )
            assignment = assign_splits(n)
            outputs = {}
            for index, name in enumerate(SPLIT_FRACTIONS):
                count = int((assignment == index).sum())
                outputs[name] = (
                    writer.empty(name, "layers", (count, *SHAPE), np.float32),
                    writer.empty(name, "labels", (count,), np.float32),
                )
            filled = dict.fromkeys(SPLIT_FRACTIONS, 0)
            try:
                for start in range(0, n, _CHUNK):
                    stop = min(start + _CHUNK, n)
                    block = np.asarray(layers[start:stop], dtype=np.float32)
                    energies = np.asarray(energy[start:stop], dtype=np.float32).reshape(-1)
                    if not (np.isfinite(block).all() and np.isfinite(energies).all()):
                        raise ConversionError(
                            f"{path}: NaN or infinite values in showers {start}..{stop}"
                        )
                    for index, name in enumerate(SPLIT_FRACTIONS):
                        chosen = assignment[start:stop] == index
                        count = int(chosen.sum())
                        position = filled[name]
                        outputs[name][0][position : position + count] = block[chosen]
                        outputs[name][1][position : position + count] = energies[chosen]
                        release_rows(outputs[name][0], position, position + count)
                        filled[name] += count
            except OSError as error:
                raise ConversionError(
                    f"{path}: cannot read showers ({error}); truncated?"
                ) from None
        for name, (images, labels) in outputs.items():
            images.flush()
            labels.flush()
            info = {
                "units": {"layers": "MeV", "y": "GeV"},
                "split_seed": SPLIT_SEED,
                "split_fractions": SPLIT_FRACTIONS,
            }
            writer.describe(name, features=["layers"], labels="labels", info=info)

    @classmethod
    def fit_statistics(cls, train: LoadResult, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
        energy_mean, energy_scale = target_moments(train.y)
        return {"energy_mean": energy_mean, "energy_scale": energy_scale}

    @classmethod
    def prepare(
        cls,
        raw: LoadResult,
        statistics: Mapping[str, np.ndarray],
        params: Mapping[str, Any],
        writer: ArrayWriter,
        split: str,
    ) -> None:
        layers = raw.X[0]
        n = len(layers)
        features = writer.empty(split, "features", (n, 1, *SHAPE), np.float32)
        visible = np.zeros(n, dtype=np.float32)
        for start in range(0, n, _CHUNK):
            block = np.asarray(layers[start : start + _CHUNK], dtype=np.float32) / 1000.0
            features[start : start + len(block), 0] = block
            visible[start : start + len(block)] = block.sum(axis=(1, 2, 3))
            release_rows(features, start, start + len(block))
            release_rows(layers, start, start + len(block))
        features.flush()
        energy = np.asarray(raw.y, dtype=np.float64)
        if params["standardise_target"]:
            energy = (energy - float(statistics["energy_mean"])) / float(statistics["energy_scale"])
        writer.save(split, "visible_energy", visible)
        writer.save(split, "labels", energy.astype(np.float32))
        writer.describe_arrays(
            split,
            ["features", "visible_energy", "labels"],
            {
                "energy_mean": float(statistics["energy_mean"]),
                "energy_scale": float(statistics["energy_scale"]),
                "target_standardised": bool(params["standardise_target"]),
            },
        )
