"""The offline demo: a synthetic dataset served by the loopback archive server.

``pd4ml demo`` writes a small synthetic file in the original pd4ml npz layout, serves it as a
Zenodo record on 127.0.0.1, and goes through the real path: record → download → checksum →
conversion → memory-mapped load, cold and then warm. The data are random numbers with a
learnable signal, labelled synthetic everywhere; they are not a physics measurement.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from pd4ml.config import Settings
from pd4ml.datasets.base import ArrayWriter, Dataset, LoadResult
from pd4ml.datasets.pd4ml_npz import convert_pd4ml_npz
from pd4ml.manifest import DatasetManifest, DatasetVersion, parse_manifest
from pd4ml.testing.server import ArchiveServer

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


@dataclass(frozen=True)
class DemoReport:
    """What the demo measured."""

    cold: LoadResult
    warm: LoadResult
    cold_seconds: float
    warm_seconds: float
    requests: int
    cache_dir: Path


def run_demo(cache_dir: Path | None = None) -> DemoReport:
    """Serve, download, verify, convert and load the demo dataset; return the figures."""
    with tempfile.TemporaryDirectory(prefix="pd4ml-demo-") as scratch:
        cache = Path(cache_dir) if cache_dir else Path(scratch) / "cache"
        source = write_demo_npz(Path(scratch) / "demo_points.npz")
        with ArchiveServer() as server:
            server.add_zenodo_record(DEMO_RECORD, {"demo_points.npz": source})
            dataset = demo_dataset(demo_manifest(server.url, source))
            settings = Settings.from_env(cache).with_changes(
                mirrors=(), shared_dirs=(), offline=False
            )
            started = time.perf_counter()
            cold = dataset.load("train", settings=settings)
            cold_seconds = time.perf_counter() - started
            started = time.perf_counter()
            warm = dataset.load("train", settings=settings)
            warm_seconds = time.perf_counter() - started
            return DemoReport(cold, warm, cold_seconds, warm_seconds, server.count(), cache)
