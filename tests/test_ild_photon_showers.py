"""ILDPhotonShowers: the official HDF5 layout, read lazily in chunks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from pd4ml import ILDPhotonShowers
from pd4ml.config import Settings
from pd4ml.datasets.ild_photon_showers import assign_splits
from pd4ml.errors import ConversionError
from pd4ml.testing import ArchiveServer
from pd4ml.testing.synthetic import synthetic_variant, write_photon_showers_hdf5

ROOT = Path(__file__).resolve().parents[1]
KEY = "photons.hdf5"


@pytest.fixture(scope="module")
def photons(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_photon_showers_hdf5(tmp_path_factory.mktemp("ild") / KEY, 2000, seed=1)


def test_load_splits_and_values(server: ArchiveServer, settings: Settings, photons: Path) -> None:
    server.add_zenodo_record(3826103, {KEY: photons})
    variant = synthetic_variant(ILDPhotonShowers, server.url, 3826103, {KEY: photons})
    assignment = assign_splits(2000)
    with h5py.File(photons, "r") as handle:
        layers = handle["30x30/layers"][()]
        energy = handle["30x30/energy"][:, 0]
    for index, split in enumerate(("train", "val", "test")):
        X, y = variant.load(split, settings=settings)
        chosen = assignment == index
        assert X[0].shape == (int(chosen.sum()), 30, 30, 30) and X[0].dtype == np.float32
        np.testing.assert_allclose(X[0], layers[chosen].astype(np.float32))
        np.testing.assert_allclose(y, energy[chosen].astype(np.float32))
    prepared = variant.load_data("val", settings=settings)
    assert prepared.features.shape[1:] == (1, 30, 30, 30)
    np.testing.assert_allclose(
        prepared["visible_energy"], layers[assignment == 1].sum(axis=(1, 2, 3)) / 1000, rtol=1e-4
    )


def test_conversion_is_lazy(photons: Path, tmp_path: Path) -> None:
    """Peak RSS of converting the 2,000-shower file stays well under its size."""
    code = textwrap.dedent(
        """
        import json, sys
        from pathlib import Path
        from pd4ml.datasets.base import ArrayWriter
        from pd4ml.datasets.ild_photon_showers import ILDPhotonShowers
        path = Path(sys.argv[1])
        writer = ArrayWriter(Path(sys.argv[2]))
        ILDPhotonShowers.convert({"photons.hdf5": path}, None, writer, "train")
        with open("/proc/self/status") as status:
            peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))
        print(json.dumps({"peak_kb": peak}))
        """
    )
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-c", code, str(photons), str(tmp_path / "out")]
    result = subprocess.run(
        command, capture_output=True, text=True, check=True, cwd=ROOT, env=environment
    )
    peak_mb = json.loads(result.stdout.strip().splitlines()[-1])["peak_kb"] / 1024
    file_mb = photons.stat().st_size / 2**20
    assert peak_mb < 0.6 * file_mb, f"peak RSS {peak_mb:.0f} MB for a {file_mb:.0f} MB file"


def test_wrong_layout_is_named(server: ArchiveServer, settings: Settings, tmp_path: Path) -> None:
    bad = tmp_path / KEY
    with h5py.File(bad, "w") as handle:
        handle.create_dataset("30x30/layers", data=np.zeros((4, 25, 25, 30)))
        handle.create_dataset("30x30/energy", data=np.zeros((4, 1)))
    server.add_zenodo_record(3826104, {KEY: bad})
    variant = synthetic_variant(ILDPhotonShowers, server.url, 3826104, {KEY: bad})
    with pytest.raises(ConversionError, match=r"photons\.hdf5: layers \(4, 25, 25, 30\)"):
        variant.load("train", settings=settings)


def test_truncated_file_is_named(
    server: ArchiveServer, settings: Settings, photons: Path, tmp_path: Path
) -> None:
    truncated = tmp_path / KEY
    truncated.write_bytes(photons.read_bytes()[: photons.stat().st_size // 3])
    server.add_zenodo_record(3826105, {KEY: truncated})
    variant = synthetic_variant(ILDPhotonShowers, server.url, 3826105, {KEY: truncated})
    with pytest.raises(ConversionError, match=r"photons\.hdf5"):
        variant.load("train", settings=settings)
    arrays = settings.data_dir / "ild_photon_showers" / "synthetic-v1" / "arrays"
    assert not arrays.exists() or list(arrays.iterdir()) == []
