"""CALICE AHCAL: ROOT and NumPy forms, prototype geometry, cell-neighbourhood graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pd4ml import CaliceAHCAL
from pd4ml.config import Settings
from pd4ml.datasets import calice_ahcal
from pd4ml.datasets.base import ArrayWriter, Dataset
from pd4ml.datasets.calice_ahcal import FIRST_LAYER_Z_MM, LAYER_PITCH_MM
from pd4ml.errors import ConversionError, UnavailableError
from pd4ml.testing import ArchiveServer
from pd4ml.testing.synthetic import (
    output_digests,
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


# -- layer index from the layer positions (not the rank of the z planes present) -------------
def _without_layer(path: Path, layer: int) -> Path:
    """Rewrite the NumPy-form file at ``path`` without any hit in ``layer``."""
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    layer_z = FIRST_LAYER_Z_MM + layer * LAYER_PITCH_MM
    keep = np.abs(arrays["hit_z"] - layer_z) > 1.0
    event = np.repeat(np.arange(len(arrays["n_hits"])), arrays["n_hits"])
    arrays["n_hits"] = np.bincount(event[keep], minlength=len(arrays["n_hits"]))
    for name in ("hit_x", "hit_y", "hit_z", "hit_energy", "hit_time"):
        arrays[name] = arrays[name][keep]
    np.savez(path, **arrays)
    return path


def test_an_empty_layer_does_not_shift_the_deeper_layers(tmp_path: Path) -> None:
    path = _without_layer(write_ahcal_npz(tmp_path / NPZ_KEY, 60, seed=11), layer=3)
    arrays = convert(CaliceAHCAL, path, tmp_path / "a")
    for split in arrays:
        real = arrays[split]["cells"][..., 0] >= 0
        z = arrays[split]["hits"][..., 2][real]
        expected = np.rint((z - FIRST_LAYER_Z_MM) / LAYER_PITCH_MM)
        np.testing.assert_array_equal(arrays[split]["cells"][..., 0][real], expected)
        assert not (arrays[split]["cells"][..., 0][real] == 3).any()
    deepest = max(int(arrays[s]["cells"][..., 0].max()) for s in arrays)
    assert deepest == 37  # the last layer keeps its number


def test_a_hit_between_layers_is_refused(tmp_path: Path) -> None:
    path = write_ahcal_npz(tmp_path / NPZ_KEY, 20, seed=12)
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["hit_z"][5] += 8.0
    np.savez(path, **arrays)
    with pytest.raises(ConversionError) as caught:
        convert(CaliceAHCAL, path, tmp_path / "a")
    message = str(caught.value)
    assert NPZ_KEY in message and "between layers" in message
    assert f"z = {arrays['hit_z'][5]:.2f} mm" in message and "±1.5 mm" in message
    assert "with_geometry" in message


def test_hits_behind_the_last_layer_are_refused(tmp_path: Path) -> None:
    path = write_ahcal_npz(tmp_path / NPZ_KEY, 20, seed=13)
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["hit_z"][0] = FIRST_LAYER_Z_MM + 38 * LAYER_PITCH_MM
    np.savez(path, **arrays)
    with pytest.raises(ConversionError, match=r"outside the 38 layers"):
        convert(CaliceAHCAL, path, tmp_path / "a")


def test_other_layer_positions_via_with_geometry(tmp_path: Path) -> None:
    path = write_ahcal_npz(tmp_path / NPZ_KEY, 40, seed=14)
    reference = convert(CaliceAHCAL, path, tmp_path / "a")
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["hit_z"] = arrays["hit_z"] + 50.0
    np.savez(path, **arrays)
    with pytest.raises(ConversionError, match=r"between layers|outside the 38 layers"):
        convert(CaliceAHCAL, path, tmp_path / "b")
    moved = convert(CaliceAHCAL.with_geometry(first_layer_z_mm=150.0), path, tmp_path / "c")
    for split in reference:
        np.testing.assert_array_equal(moved[split]["cells"], reference[split]["cells"])
    with pytest.raises(ValueError, match="tolerance_mm"):
        CaliceAHCAL.with_geometry(tolerance_mm=20.0)


# -- streaming in chunks: outputs unchanged ------------------------------------------------------
# digests of the arrays the converter and preparation gave before they streamed in chunks
# (synthetic NumPy form, 120 events, seed 2)
RECORDED = {
    "cloud_graph/test/features": "1d83836b2e42418c",
    "cloud_graph/test/labels": "2e13e37c53d82412",
    "cloud_graph/test/mask": "eb034d96f5290821",
    "cloud_graph/test/neighbour_mask": "03d40407b7eebbfd",
    "cloud_graph/test/neighbours": "25ea1f36b684fb23",
    "cloud_graph/train/features": "6453d9e62fd11d60",
    "cloud_graph/train/labels": "1e8244b12537df09",
    "cloud_graph/train/mask": "2328cf1b3e007287",
    "cloud_graph/train/neighbour_mask": "cdf8466cc3742834",
    "cloud_graph/train/neighbours": "6f822a803f755618",
    "cloud_graph/val/features": "3a990bfd78baf06e",
    "cloud_graph/val/labels": "bcf6fb28586f0a47",
    "cloud_graph/val/mask": "880e2acc8460286c",
    "cloud_graph/val/neighbour_mask": "6bb6dfc5235f40d5",
    "cloud_graph/val/neighbours": "4a267b266ca225ac",
    "load/test/X0": "25ebefa61aad1833",
    "load/test/X1": "0d807c9fb17cf1ce",
    "load/test/cells": "0815650686a55a3c",
    "load/test/y": "2e13e37c53d82412",
    "load/train/X0": "6eff409f1a01bd61",
    "load/train/X1": "5d5e41f03852d7b7",
    "load/train/cells": "24c4bb9c0b98b467",
    "load/train/y": "1e8244b12537df09",
    "load/val/X0": "998fcf2c2eefad89",
    "load/val/X1": "8e6ff858e221475c",
    "load/val/cells": "3793f05bf4f4eea8",
    "load/val/y": "bcf6fb28586f0a47",
    "voxels/test/features": "7ef99fc9757408d6",
    "voxels/test/labels": "2e13e37c53d82412",
    "voxels/train/features": "7519b08758d1a36a",
    "voxels/train/labels": "1e8244b12537df09",
    "voxels/val/features": "894cf685f59254ed",
    "voxels/val/labels": "bcf6fb28586f0a47",
}


@pytest.mark.parametrize("chunk", [None, 7])
def test_outputs_are_unchanged_by_chunking(
    server: ArchiveServer,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    chunk: int | None,
) -> None:
    if chunk is not None:
        monkeypatch.setattr(calice_ahcal, "_CHUNK", chunk)
    path = write_ahcal_npz(tmp_path / NPZ_KEY, 120, seed=2)
    server.add_zenodo_record(900, {NPZ_KEY: path})
    variant = synthetic_variant(
        CaliceAHCAL, server.url, 900, {NPZ_KEY: path}, template_version="sps-2018-numpy"
    )
    prepared = {"cloud_graph": {"graph": True}, "voxels": {"representation": "voxels"}}
    digests = output_digests(variant, ("train", "val", "test"), prepared, settings=settings)
    assert digests == RECORDED


def test_root_form_in_small_chunks_is_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_ahcal_root(tmp_path / ROOT_KEY, 90, seed=15)
    whole = convert(CaliceAHCAL, path, tmp_path / "a")
    monkeypatch.setattr(calice_ahcal, "_CHUNK", 8)
    chunked = convert(CaliceAHCAL, path, tmp_path / "b")
    for split in whole:
        for name in whole[split]:
            np.testing.assert_array_equal(chunked[split][name], whole[split][name])
