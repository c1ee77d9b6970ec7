"""A small generic point-cloud dataset in the original pd4ml npz layout, served by the loopback
archive server: the test fixture of the cache and storage machinery (not one of the physics
datasets; ``pd4ml demo`` runs the real datasets' synthetic files through the bench instead).
The data are random numbers with a learnable signal, labelled synthetic everywhere.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

import numpy as np

from pd4ml.datasets.base import ArrayWriter, Dataset
from pd4ml.datasets.pd4ml_npz import convert_pd4ml_npz
from pd4ml.manifest import DatasetManifest, DatasetVersion, parse_manifest

DEMO_RECORD = 4242


def write_demo_npz(path: Path, n_train: int = 7_000, n_test: int = 3_000, seed: int = 1) -> Path:
    """A synthetic two-class sample in the pd4ml npz layout: ``X_*_0`` (N, 16, 3), ``y_*`` (N,).

    Class 1 has a slightly wider, correlated spread in the second feature: learnable, but not
    by one cut.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    generator = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    for split, count in (("train", n_train), ("test", n_test)):
        labels = generator.integers(0, 2, count).astype(np.float32)
        points = generator.normal(size=(count, 16, 3)).astype(np.float32)
        points[:, :, 1] *= (1.0 + 0.35 * labels)[:, None]
        points[:, :, 2] += 0.25 * labels[:, None] * points[:, :, 0]
        arrays[f"X_{split}_0"] = points
        arrays[f"y_{split}"] = labels
    np.savez_compressed(path, **arrays)  # type: ignore[arg-type]
    return path


def demo_manifest(base_url: str, file_path: Path) -> DatasetManifest:
    """The manifest of the demo dataset, pinned to the file's size and sha256."""
    digest = hashlib.sha256(file_path.read_bytes()).hexdigest()
    return parse_manifest(
        {
            "name": "demo",
            "display_name": "Demo (synthetic)",
            "task": "classification",
            "licence": "CC0-1.0",
            "description": "Synthetic two-class point clouds served by the loopback server.",
            "version": [
                {
                    "name": "synthetic-1",
                    "title": "synthetic demo file",
                    "synthetic": True,
                    "source": {"kind": "zenodo", "record": str(DEMO_RECORD), "base_url": base_url},
                    "file": [
                        {
                            "key": "demo_points.npz",
                            "size": file_path.stat().st_size,
                            "checksums": [f"sha256:{digest}"],
                        }
                    ],
                }
            ],
        },
        where="demo manifest",
    )


def demo_dataset(manifest: DatasetManifest) -> type[Dataset]:
    """A dataset class for the demo manifest (not registered)."""

    class DemoPoints(Dataset, register=False):
        name = "demo"
        manifest_override = manifest
        splits = ("train", "test")
        split_aliases: ClassVar[Mapping[str, str]] = {}

        @classmethod
        def convert(
            cls,
            raw_files: Mapping[str, Path],
            version: DatasetVersion,
            writer: ArrayWriter,
            split: str,
        ) -> None:
            convert_pd4ml_npz(raw_files["demo_points.npz"], writer, ["points"])

    return DemoPoints
