"""Format-faithful synthetic generators: each writes a dataset's *official raw format*.

The events are random, with a physics-motivated signal a classifier can learn (but not with
one trivial cut). They are **synthetic**: manifests that serve them set ``synthetic = true``,
and every piece of metadata downstream says so. They are never real data.

Writing pandas-HDF5 needs pandas and PyTables (the ``dev`` extra).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np

from pd4ml.checksums import Checksum
from pd4ml.datasets.base import Dataset
from pd4ml.datasets.top_tagging import CONSTITUENT_COLUMNS, N_CONSTITUENTS, TRUTH_COLUMNS
from pd4ml.manifest import ArchiveSource, DatasetVersion, FileEntry

TOP_MASS = 173.0
W_MASS = 80.4


def _massless(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """``(..., 4)`` [E, px, py, pz] of massless particles."""
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    return np.stack([np.sqrt(px**2 + py**2 + pz**2), px, py, pz], axis=-1)


def _shower(
    generator: np.random.Generator, pt: float, eta: float, phi: float, n: int, spread: float
) -> np.ndarray:
    """``n`` collinear-ish massless particles sharing ``pt`` around (eta, phi)."""
    fractions = generator.dirichlet(np.full(n, 0.6))
    return _massless(
        pt * fractions,
        eta + generator.normal(0, spread, n) * (1 - fractions) ** 2,
        phi + generator.normal(0, spread, n) * (1 - fractions) ** 2,
    )


def top_tagging_jets(n_jets: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic jets: ``(constituents (n, 200, 4) float32, labels (n,), truth (n, 4))``.

    Tops (label 1) decay to three prongs (b and the two W quarks) at angles set by the top and W
    masses; QCD jets (label 0) are one hard prong with a soft, sometimes wide-angle splitting, so
    some reach top-like masses. Jet pT in [550, 650] GeV, |η| < 2; constituents are pT-ordered
    and zero-padded to 200.
    """
    generator = np.random.default_rng(seed)
    constituents = np.zeros((n_jets, N_CONSTITUENTS, 4), dtype=np.float32)
    labels = generator.integers(0, 2, n_jets)
    truth = np.zeros((n_jets, 4), dtype=np.float32)
    for jet in range(n_jets):
        pt = generator.uniform(550, 650)
        eta, phi = generator.uniform(-1.8, 1.8), generator.uniform(-np.pi, np.pi)
        if labels[jet]:
            mass = generator.normal(TOP_MASS, 25.0)
            shares = generator.dirichlet([4.0, 3.0, 3.0])
            opening = 2.0 * mass / pt
            angles = (
                generator.uniform(0, 2 * np.pi)
                + np.array([0.0, 2.1, 4.2])
                + generator.normal(0, 0.3, 3)
            )
            radii = opening * (1 - shares) * generator.uniform(0.5, 0.9)
            prongs = [
                (pt * s, eta + r * np.cos(a), phi + r * np.sin(a))
                for s, r, a in zip(shares, radii, angles, strict=True)
            ]
            counts = generator.poisson([22, 16, 16]) + 3
            if generator.random() < 0.3:  # the b prong falls outside the jet: a W-like jet
                prongs, counts = prongs[1:], counts[1:]
            truth[jet] = _massless(np.array(pt), np.array(eta), np.array(phi)) * [
                1.0,
                1.0,
                1.0,
                1.0,
            ]
            truth[jet, 0] = np.sqrt(truth[jet, 0] ** 2 + mass**2)
        else:
            z = generator.beta(0.9, 2.5) * 0.5
            radius = generator.exponential(0.3) + 0.02
            angle = generator.uniform(0, 2 * np.pi)
            prongs = [
                (pt * (1 - z), eta, phi),
                (pt * z, eta + radius * np.cos(angle), phi + radius * np.sin(angle)),
            ]
            counts = generator.poisson([30, 10]) + 2
        particles = np.concatenate(
            [
                _shower(generator, p, e, f, c, 0.05)
                for (p, e, f), c in zip(prongs, counts, strict=True)
            ]
        )
        noise = generator.poisson(6)
        soft = _massless(
            generator.exponential(1.5, noise) + 0.3,
            eta + generator.normal(0, 0.4, noise),
            phi + generator.normal(0, 0.4, noise),
        )
        particles = np.concatenate([particles, soft])
        particles = particles[np.argsort(-np.hypot(particles[:, 1], particles[:, 2]))][
            :N_CONSTITUENTS
        ]
        constituents[jet, : len(particles)] = particles
    return constituents, labels.astype(np.int64), truth


def write_top_tagging_h5(
    path: str | Path, n_jets: int, seed: int = 0, layout: str = "table", ttv: int = 0
) -> Path:
    """Write synthetic jets in the official Top Tagging file layout (pandas HDF5, key ``table``).

    806 columns: ``E_0, PX_0, PY_0, PZ_0, …, PZ_199`` (float32), ``truthE, truthPX, truthPY,
    truthPZ`` (float32), ``ttv`` and ``is_signal_new`` (int64). ``layout`` is ``"table"`` or
    ``"fixed"`` (both pandas storage formats).
    """
    import pandas as pd

    constituents, labels, truth = top_tagging_jets(n_jets, seed)
    frame = pd.DataFrame(constituents.reshape(n_jets, -1), columns=CONSTITUENT_COLUMNS)
    for index, name in enumerate(TRUTH_COLUMNS):
        frame[name] = truth[:, index]
    frame["ttv"] = np.full(n_jets, ttv, dtype=np.int64)
    frame["is_signal_new"] = labels
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_hdf(path, key="table", format=layout, complevel=1 if layout == "table" else 0)
    return path


def write_top_tagging_pd4ml_npz(
    path: str | Path, n_train: int, n_val: int, n_test: int, seed: int = 0
) -> Path:
    """Synthetic jets in the original pd4ml layout ``1_top_tagging_2M.npz`` (train+val merged)."""
    train, train_labels, _ = top_tagging_jets(n_train + n_val, seed)
    test, test_labels, _ = top_tagging_jets(n_test, seed + 1)
    flag = np.concatenate([np.zeros(n_train), np.full(n_val, 2)]).astype(np.float32)
    order = np.random.default_rng(seed).permutation(n_train + n_val)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        X_train_0=train[order],
        X_train_1=flag[order],
        y_train=train_labels[order].astype(np.float32),
        X_test_0=test,
        X_test_1=np.ones(n_test, dtype=np.float32),
        y_test=test_labels.astype(np.float32),
    )
    return path


def synthetic_variant(
    dataset: type[Dataset],
    base_url: str,
    record: int | str,
    files: Mapping[str, str | Path],
    *,
    template_version: str | None = None,
) -> type[Dataset]:
    """A copy of ``dataset`` whose only version is synthetic files served as a Zenodo record.

    The file keys and the splits they feed are taken from ``template_version`` of the real
    manifest (default: its default version); sizes and sha256 are taken from the files. The
    returned class is not registered and marks everything it loads as synthetic.
    """
    manifest = dataset.manifest()
    template = manifest.version(template_version)
    entries = []
    for key, path in files.items():
        feeds = list(template.file(key).feeds) if any(f.key == key for f in template.files) else []
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        entries.append(
            FileEntry(
                key=key,
                size=Path(path).stat().st_size,
                checksums=(Checksum("sha256", digest),),
                feeds=tuple(feeds),
            )
        )
    version = DatasetVersion(
        name=f"synthetic-{template.name}",
        title=f"synthetic files in the layout of {template.title}",
        source=ArchiveSource(kind="zenodo", record=str(record), base_url=base_url),
        files=tuple(entries),
        synthetic=True,
    )
    variant_manifest = replace(manifest, versions=(version,), default_version=version.name)
    return type(
        f"Synthetic{dataset.__name__}",
        (dataset,),
        {"manifest_override": variant_manifest, "__module__": dataset.__module__},
        register=False,
    )
