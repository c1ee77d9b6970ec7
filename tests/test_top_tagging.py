"""TopTagging: official pandas-HDF5 files and the original pd4ml npz, features and kNN graph."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import pd4ml._kernels
import pd4ml.graphs
from pd4ml import TopTagging
from pd4ml.config import Settings
from pd4ml.datasets.base import ArrayWriter, Dataset
from pd4ml.datasets.top_tagging import constituent_features
from pd4ml.errors import ConversionError, UnknownNameError
from pd4ml.graphs import knn_neighbours, neighbours_to_dense, neighbours_to_edge_index
from pd4ml.testing import ArchiveServer
from pd4ml.testing.synthetic import (
    synthetic_variant,
    top_tagging_jets,
    write_top_tagging_h5,
    write_top_tagging_pd4ml_npz,
)
from tests.conftest import shared_file

COUNTS = {"train": 300, "val": 120, "test": 150}


@pytest.fixture(scope="module")
def official_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("top")
    return {
        f"{split}.h5": write_top_tagging_h5(folder / f"{split}.h5", count, seed=i, ttv=(0, 2, 1)[i])
        for i, (split, count) in enumerate(COUNTS.items())
    }


@pytest.fixture
def synthetic_top(server: ArchiveServer, official_files: dict[str, Path]) -> type[Dataset]:
    server.add_zenodo_record(2603256, official_files)
    return synthetic_variant(TopTagging, server.url, 2603256, official_files)


def test_load_official_layout(
    synthetic_top: type[Dataset], settings: Settings, server: ArchiveServer
) -> None:
    for split, count in COUNTS.items():
        result = synthetic_top.load(split, settings=settings)
        X, y = result
        assert X[0].shape == (count, 200, 4) and X[0].dtype == np.float32
        assert y.shape == (count,) and y.dtype == np.int64
        assert result.metadata.synthetic and result.metadata.source == "synthetic"
        expected, labels, _ = top_tagging_jets(count, seed=list(COUNTS).index(split))
        np.testing.assert_array_equal(X[0], expected)
        np.testing.assert_array_equal(y, labels)
    assert server.count("*/train.h5") == 1 and server.count("*/test.h5") == 1
    assert synthetic_top.load("validation", settings=settings).metadata.split == "val"
    with pytest.raises(UnknownNameError, match="did you mean 'train'"):
        synthetic_top.load("trian", settings=settings)


def test_fixed_and_table_layouts_give_identical_arrays(tmp_path: Path) -> None:
    table = write_top_tagging_h5(tmp_path / "table.h5", 80, seed=7, layout="table")
    fixed = write_top_tagging_h5(tmp_path / "fixed.h5", 80, seed=7, layout="fixed")
    results = []
    for path in (table, fixed):
        writer = ArrayWriter(tmp_path / path.stem)
        TopTagging._convert_h5(path, writer, "train")
        results.append(
            [
                np.load(tmp_path / path.stem / "train" / f"{name}.npy")
                for name in ("constituents", "labels", "truth_top")
            ]
        )
    for first, second in zip(*results, strict=True):
        np.testing.assert_array_equal(first, second)


def test_original_pd4ml_npz_recovers_the_official_split(
    server: ArchiveServer, settings: Settings, tmp_path: Path
) -> None:
    path = write_top_tagging_pd4ml_npz(
        tmp_path / "1_top_tagging_2M.npz", n_train=90, n_val=30, n_test=40
    )
    server.add_zenodo_record(77, {"1_top_tagging_2M.npz": path})
    dataset = synthetic_variant(
        TopTagging, server.url, 77, {"1_top_tagging_2M.npz": path}, template_version="pd4ml-2021"
    )
    sizes = {
        split: dataset.load(split, settings=settings).n_events for split in ("train", "val", "test")
    }
    assert sizes == {"train": 90, "val": 30, "test": 40}
    assert set(np.unique(dataset.load("val", settings=settings)["ttv"])) == {2}
    assert server.count("*/1_top_tagging_2M.npz") == 1


def reference_features(jet: np.ndarray, n_keep: int) -> tuple[np.ndarray, np.ndarray]:
    """A straightforward per-jet, per-constituent implementation (math module, no numpy tricks)."""
    count = sum(1 for row in jet if row[0] > 0)
    energy = sum(float(jet[i, 0]) for i in range(count))
    px = sum(float(jet[i, 1]) for i in range(count))
    py = sum(float(jet[i, 2]) for i in range(count))
    pz = sum(float(jet[i, 3]) for i in range(count))
    jet_pt = math.hypot(px, py)
    jet_eta = math.asinh(pz / jet_pt)
    jet_phi = math.atan2(py, px)
    features = np.zeros((n_keep, 7))
    mask = np.zeros(n_keep, dtype=bool)
    for i in range(min(count, n_keep)):
        e, x, y, z = (float(v) for v in jet[i])
        pt = math.hypot(x, y)
        eta = math.asinh(z / pt)
        deta = (eta - jet_eta) * (1.0 if jet_eta >= 0 else -1.0)
        dphi = math.atan2(y, x) - jet_phi
        while dphi >= math.pi:
            dphi -= 2 * math.pi
        while dphi < -math.pi:
            dphi += 2 * math.pi
        features[i] = [
            math.log(pt),
            math.log(e),
            deta,
            dphi,
            math.log(pt / jet_pt),
            math.log(e / energy),
            math.hypot(deta, dphi),
        ]
        mask[i] = True
    return features, mask


@pytest.fixture(params=["compiled", "numpy"])
def implementation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with the numba kernels (the ``fast`` extra) and with the NumPy definitions."""
    if request.param == "numpy":
        monkeypatch.setenv("PD4ML_NO_NUMBA", "1")
        monkeypatch.setattr(pd4ml._kernels, "_CACHE", {})
        monkeypatch.setattr(pd4ml.graphs, "_KERNEL", None)
    else:
        assert pd4ml._kernels.numba_available(), "the dev extra installs numba"
    return str(request.param)


def test_features_match_a_reference_implementation(implementation: str) -> None:
    jets, _, _ = top_tagging_jets(40, seed=3)
    jets[0, :] = 0.0
    jets[0, 0] = [600.0, 600.0, 0.0, 0.0]  # a single constituent along x
    jets[1, 5, 1:3] = [1.0, 0.0]  # a real constituent with pT of exactly 1 GeV
    jets[1, 5, 0] = np.hypot(1.0, jets[1, 5, 3])
    features, mask = constituent_features(jets, n_constituents=100)
    assert features.shape == (40, 100, 7) and features.dtype == np.float32
    for index, jet in enumerate(jets):
        expected, expected_mask = reference_features(jet, 100)
        np.testing.assert_array_equal(mask[index], expected_mask)
        np.testing.assert_allclose(features[index], expected, atol=1e-5, rtol=1e-5)
    assert mask[1, 5] and features[1, 5, 0] == 0.0  # ln pT = 0 but real: kept by the mask
    assert not features[~mask].any()


def brute_force_knn(points: np.ndarray, mask: np.ndarray, k: int) -> list[list[set[int]]]:
    result = []
    for event in range(points.shape[0]):
        rows = []
        real = [j for j in range(points.shape[1]) if mask[event, j]]
        for i in range(points.shape[1]):
            if not mask[event, i]:
                rows.append(set())
                continue
            distances = sorted(
                (float(np.sum((points[event, i] - points[event, j]) ** 2)), j)
                for j in real
                if j != i
            )
            rows.append({j for _, j in distances[:k]})
        result.append(rows)
    return result


@pytest.mark.parametrize("k", [1, 3, 7])
def test_knn_matches_brute_force_and_never_links_padding(k: int, implementation: str) -> None:
    generator = np.random.default_rng(k)
    points = generator.normal(size=(30, 12, 2)).astype(np.float32)
    counts = generator.integers(0, 13, 30)
    mask = np.arange(12)[None, :] < counts[:, None]
    points[~mask] = 0.0  # padding sits at the origin, where it would steal neighbours
    neighbours, valid = knn_neighbours(points, mask, k, chunk=7)
    expected = brute_force_knn(points, mask, k)
    for event in range(30):
        for node in range(12):
            found = set(neighbours[event, node][valid[event, node]].tolist())
            assert found == expected[event][node]
            assert node not in found
            assert all(mask[event, j] for j in found)
    assert (neighbours[~valid] == -1).all()
    edges = neighbours_to_edge_index(neighbours[4], valid[4])
    dense = neighbours_to_dense(neighbours[4:5], valid[4:5])[0]
    assert edges.shape[1] == int(valid[4].sum()) == int(dense.sum())
    assert all(dense[target, source] == 1 for source, target in edges.T)


def test_load_data_features_graph_and_cache_keys(
    synthetic_top: type[Dataset], settings: Settings
) -> None:
    prepared = synthetic_top.load_data("test", settings=settings)
    assert prepared.features.shape == (150, 100, 7) and prepared["mask"].shape == (150, 100)
    assert "neighbours" not in prepared
    graph = synthetic_top.load_data("test", graph=True, settings=settings)
    assert graph["neighbours"].shape == (150, 100, 7)
    wide = synthetic_top.load_data("test", graph=True, k=16, n_constituents=50, settings=settings)
    assert wide["neighbours"].shape == (150, 50, 16) and wide.features.shape == (150, 50, 7)
    np.testing.assert_array_equal(wide.features, prepared.features[:, :50])
    again = synthetic_top.load_data("test", graph=True, settings=settings)
    assert again["neighbours"].shape == (150, 100, 7), "a changed parameter returned a stale cache"
    raw, _ = synthetic_top.load("test", settings=settings)
    features, mask = constituent_features(raw[0], 100)
    np.testing.assert_array_equal(prepared.features, features)
    np.testing.assert_array_equal(prepared["mask"], mask)
    neighbours = graph["neighbours"]
    assert graph["mask"][
        np.arange(150)[:, None, None], np.where(graph["neighbour_mask"], neighbours, 0)
    ][graph["neighbour_mask"]].all()
    dense = synthetic_top.load_data("test", graph=True, dense_adjacency=True, settings=settings)
    adjacency = np.asarray(dense["adjacency"])
    assert adjacency.shape == (150, 100, 100) and adjacency.dtype == np.int8
    assert adjacency.sum() == int(
        np.asarray(graph["neighbour_mask"]).sum() + np.asarray(graph["mask"]).sum()
    )
    with pytest.raises(TypeError, match="unknown parameter"):
        synthetic_top.load_data("test", n_particles=3, settings=settings)


def test_truncated_file_gives_a_clear_error_and_a_clean_cache(
    server: ArchiveServer, settings: Settings, tmp_path: Path
) -> None:
    good = write_top_tagging_h5(tmp_path / "full.h5", 400, seed=1)
    truncated = tmp_path / "test.h5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size * 2 // 3])
    server.add_zenodo_record(88, {"test.h5": truncated})
    dataset = synthetic_variant(TopTagging, server.url, 88, {"test.h5": truncated})
    with pytest.raises(ConversionError, match=r"test\.h5"):
        dataset.load("test", settings=settings)
    arrays = settings.data_dir / "top_tagging" / "synthetic-v0" / "arrays"
    assert not arrays.exists() or list(arrays.iterdir()) == []


def test_a_file_that_is_not_top_tagging_is_named(tmp_path: Path) -> None:
    import pandas as pd

    path = tmp_path / "other.h5"
    pd.DataFrame({"a": [1.0, 2.0]}).to_hdf(path, key="table", format="table")
    with pytest.raises(ConversionError, match=r"other\.h5: not a Top Tagging file"):
        TopTagging._convert_h5(path, ArrayWriter(tmp_path / "out"), "train")


PYTHIA_SAMPLE_NAME = ("toptagging", "pythia8_particle_level_4k.h5")


def test_real_particle_level_jets_through_the_converter(tmp_path: Path) -> None:
    sample = shared_file(*PYTHIA_SAMPLE_NAME)
    writer = ArrayWriter(tmp_path / "arrays")
    TopTagging._convert_h5(sample, writer, "train")
    constituents = np.load(tmp_path / "arrays" / "train" / "constituents.npy")
    labels = np.load(tmp_path / "arrays" / "train" / "labels.npy")
    assert constituents.shape == (4000, 200, 4) and labels.sum() == 2000
    features, mask = constituent_features(constituents, 100)
    jets = constituents.astype(np.float64).sum(axis=1)
    mass = np.sqrt(np.maximum(jets[:, 0] ** 2 - (jets[:, 1:] ** 2).sum(axis=1), 0))
    assert 160 < np.median(mass[labels == 1]) < 185  # real top jets peak at the top mass
    assert (np.abs(features[..., 3][mask]) <= np.pi).all()
    assert np.quantile(features[..., 6][mask], 0.99) < 0.8  # constituents of R = 0.8 jets
