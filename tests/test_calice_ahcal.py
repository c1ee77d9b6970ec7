"""CALICE AHCAL: ROOT and NumPy forms, prototype geometry, cell-neighbourhood graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pd4ml import CaliceAHCAL
from pd4ml.config import Settings
from pd4ml.datasets.base import ArrayWriter, Dataset
from pd4ml.errors import ConversionError, UnavailableError
from pd4ml.testing import ArchiveServer
from pd4ml.testing.synthetic import (
    synthetic_variant,
    write_ahcal_npz,
    write_ahcal_root,
)

ROOT_KEY = "ahcal_pions_sps2018.root"
NPZ_KEY = "ahcal_pions_sps2018.npz"


def convert(dataset: type[CaliceAHCAL], path: Path, out: Path) -> dict[str, dict[str, np.ndarray]]:
    writer = ArrayWriter(out)
    dataset.convert({path.name: path}, None, writer, "train")  # type: ignore[arg-type]
    return {
        split: {
            name: np.load(out / split / f"{name}.npy")
            for name in ("hits", "n_hits", "cells", "labels")
        }
        for split in ("train", "val", "test")
    }


def test_root_and_numpy_forms_give_identical_arrays(tmp_path: Path) -> None:
    from_root = convert(
        CaliceAHCAL, write_ahcal_root(tmp_path / ROOT_KEY, 120, seed=2), tmp_path / "a"
    )
    from_numpy = convert(
        CaliceAHCAL, write_ahcal_npz(tmp_path / NPZ_KEY, 120, seed=2), tmp_path / "b"
    )
    for split in ("train", "val", "test"):
        for name in ("hits", "n_hits", "cells", "labels"):
            np.testing.assert_array_equal(from_root[split][name], from_numpy[split][name])
    assert sum(len(from_root[s]["labels"]) for s in from_root) == 120
    held = len(from_root["val"]["labels"]) + len(from_root["test"]["labels"])
    assert (
        20 <= held <= 28 and 6 <= len(from_root["val"]["labels"]) <= 18
    )  # 10 % + 10 %, per energy


def test_geometry_and_padding(tmp_path: Path) -> None:
    arrays = convert(CaliceAHCAL, write_ahcal_npz(tmp_path / NPZ_KEY, 40, seed=3), tmp_path / "a")
    everything = np.concatenate(
        [arrays[s]["cells"][arrays[s]["cells"][..., 0] >= 0] for s in arrays]
    )
    assert everything[:, 0].max() < 38 and everything[:, 1:].max() < 24 and everything.min() >= 0
    train = arrays["train"]
    first = int(train["n_hits"][0])
    assert (train["hits"][0, first:] == 0).all() and (train["cells"][0, first:] == -1).all()
    # a hit at x = -345 mm (centre of the first tile) is in tile 0; x = +345 mm in tile 23
    hits = train["hits"][0, :first]
    np.testing.assert_array_equal(train["cells"][0, :first, 1], np.floor((hits[:, 0] + 360) / 30))


def test_branch_names_are_configurable(tmp_path: Path) -> None:
    path = write_ahcal_root(tmp_path / ROOT_KEY, 30, seed=4, tree="hits")
    with pytest.raises(ConversionError, match=r"no tree 'events'.*with_branches"):
        convert(CaliceAHCAL, path, tmp_path / "a")
    arrays = convert(CaliceAHCAL.with_branches(tree="hits"), path, tmp_path / "b")
    assert sum(len(arrays[s]["labels"]) for s in arrays) == 30
    with pytest.raises(ConversionError, match=r"missing branch\(es\) energy"):
        convert(CaliceAHCAL.with_branches(tree="hits", hit_energy="energy"), path, tmp_path / "c")
    with pytest.raises(TypeError, match="unknown branch role"):
        CaliceAHCAL.with_branches(colour="red")


def test_no_files_names_the_record_and_the_remedy(settings: Settings) -> None:
    with pytest.raises(UnavailableError) as caught:
        CaliceAHCAL.load("train", settings=settings)
    message = str(caught.value)
    assert "No public archive record" in message and "ahcal_pions_sps2018.root" in message
    assert "pd4ml import calice_ahcal DIR" in message and "PD4ML_MIRROR" in message


def test_import_then_load_offline(settings: Settings, tmp_path: Path) -> None:
    from pd4ml.fetch import Fetcher

    incoming = tmp_path / "from-the-collaboration"
    write_ahcal_root(incoming / ROOT_KEY, 50, seed=5)
    offline = settings.with_changes(offline=True)
    Fetcher(offline).import_directory(CaliceAHCAL.manifest(), incoming)
    result = CaliceAHCAL.load("train", settings=offline)
    assert result.metadata.source == "import" and not result.metadata.synthetic
    assert result.X[0].shape[2] == 5


@pytest.fixture
def served(server: ArchiveServer, tmp_path: Path) -> type[Dataset]:
    path = write_ahcal_npz(tmp_path / NPZ_KEY, 80, seed=6)
    server.add_zenodo_record(900, {NPZ_KEY: path})
    return synthetic_variant(
        CaliceAHCAL, server.url, 900, {NPZ_KEY: path}, template_version="sps-2018-numpy"
    )


def test_voxels_and_neighbour_graph(served: type[Dataset], settings: Settings) -> None:
    (hits, n_hits), beam = served.load("val", settings=settings)
    cells = np.asarray(served.load("val", settings=settings)["cells"])
    voxels = served.load_data("val", representation="voxels", settings=settings).features
    assert voxels.shape == (len(beam), 38, 24, 24)
    np.testing.assert_allclose(
        voxels.sum(axis=(1, 2, 3)), np.asarray(hits)[..., 3].sum(axis=1), rtol=1e-5
    )
    cloud = served.load_data("val", graph=True, settings=settings)
    assert cloud.features.shape == hits.shape and cloud["neighbours"].shape[2] == 26
    neighbours, valid = np.asarray(cloud["neighbours"]), np.asarray(cloud["neighbour_mask"])
    for event in range(len(beam)):
        count = int(n_hits[event])
        for hit in range(count):
            expected = {
                other
                for other in range(count)
                if other != hit
                and (np.abs(cells[event, other].astype(int) - cells[event, hit]) <= 1).all()
            }
            assert set(neighbours[event, hit][valid[event, hit]].tolist()) == expected
        assert not valid[event, count:].any()


def test_nan_hits_are_refused(tmp_path: Path) -> None:
    path = write_ahcal_npz(tmp_path / NPZ_KEY, 10, seed=7)
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["hit_time"][3] = np.nan
    np.savez(path, **arrays)
    with pytest.raises(ConversionError, match=r"hit_time contains NaN"):
        convert(CaliceAHCAL, path, tmp_path / "a")


def test_truncated_root_file_is_named(tmp_path: Path) -> None:
    good = write_ahcal_root(tmp_path / "full.root", 200, seed=8)
    truncated = tmp_path / ROOT_KEY
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ConversionError, match=r"ahcal_pions_sps2018\.root"):
        convert(CaliceAHCAL, truncated, tmp_path / "a")
