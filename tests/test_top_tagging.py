"""TopTagging: official pandas-HDF5 files and the original pd4ml npz, features and kNN graph."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

import pd4ml._kernels
import pd4ml.graphs
from pd4ml import TopTagging
from pd4ml.adapters.original import original_inputs
from pd4ml.config import Settings
from pd4ml.datasets.base import ArrayWriter, Dataset
from pd4ml.datasets.top_tagging import _constituent_features_numpy, constituent_features
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
    """Run a test with the numba kernels (the default) and with the NumPy reference
    implementations (``PD4ML_NO_NUMBA=1``)."""
    if request.param == "numpy":
        monkeypatch.setenv("PD4ML_NO_NUMBA", "1")
        assert pd4ml._kernels.top_features_kernel() is None
    else:
        assert pd4ml._kernels.use_compiled_kernels()
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


def ordered_knn(points: np.ndarray, counts: np.ndarray, k: int) -> np.ndarray:
    """Per-node lists of the k nearest, by (float32 squared distance, index): ``(E, N, k)``."""
    expected = np.full((*points.shape[:2], k), -1, dtype=np.int32)
    for event in range(points.shape[0]):
        for i in range(int(counts[event])):
            ranked = []
            for j in range(int(counts[event])):
                if j != i:
                    dx, dy = (points[event, i] - points[event, j]).astype(np.float32)
                    ranked.append((float(np.float32(dx * dx) + np.float32(dy * dy)), j))
            nearest = [j for _, j in sorted(ranked)[:k]]
            expected[event, i, : len(nearest)] = nearest
    return expected


@pytest.mark.parametrize("k", [1, 7, 16, 20])
def test_knn_order_and_exact_ties_go_to_the_lower_index(k: int, implementation: str) -> None:
    generator = np.random.default_rng(k)
    n_nodes = 40
    points = generator.integers(-2, 3, size=(25, n_nodes, 2)).astype(np.float32)  # many ties
    points[:5] = generator.normal(size=(5, n_nodes, 2))  # and some without
    points[5, :] = 0.0  # all on one spot: every distance ties
    counts = generator.integers(0, n_nodes + 1, 25)
    counts[:6] = [0, 1, 2, k, k + 1, n_nodes]
    mask = np.arange(n_nodes)[None, :] < counts[:, None]
    points[~mask] = 0.0
    neighbours, valid = knn_neighbours(points, mask, k, chunk=7)
    expected = ordered_knn(points, counts, k)
    np.testing.assert_array_equal(neighbours, expected)
    np.testing.assert_array_equal(valid, expected >= 0)


def tricky_jets(n_jets: int = 60) -> np.ndarray:
    """Synthetic jets with 0, 1, 2, 7, 8, 150 and 200 constituents, and exact duplicates."""
    jets, _, _ = top_tagging_jets(n_jets, seed=11)
    for index, count in enumerate([0, 1, 2, 7, 8, 150, 200, 200]):
        source = jets[index + 10, 0] if count else 0.0
        jets[index] = 0.0
        scale = np.linspace(1.0, 0.2, max(count, 1))[:, None]
        jets[index, :count] = (source * scale[:count]).astype(np.float32)  # all collinear
    jets[8, :200] = jets[20, 0] * np.linspace(1.0, 0.2, 200)[:, None]
    jets[8, 1::3] = jets[8, 0::3][: len(jets[8, 1::3])]  # duplicates: ties at distance 0
    jets[9, 10:20] = jets[9, 0]  # duplicates in an ordinary jet
    jets[12, 30] = 0.0  # a zero in the middle: not trailing padding, still counted out
    return jets


@pytest.mark.parametrize("k", [3, 7, 16])
def test_fused_kernel_equals_the_numpy_definitions(k: int) -> None:
    kernel = pd4ml._kernels.top_features_knn_kernel(k)
    assert kernel is not None, "numba is a dependency: the kernels are the default"
    jets = tricky_jets()
    n_jets, n_keep = len(jets), 100
    features = np.full((n_jets, n_keep, 7), np.nan, dtype=np.float32)  # all must be written
    mask = np.ones((n_jets, n_keep), dtype=bool)
    neighbours = np.full((n_jets, n_keep, k), 12345, dtype=np.int32)
    valid = np.ones((n_jets, n_keep, k), dtype=bool)
    kernel(jets, n_keep, features, mask, neighbours, valid)
    expected_features, expected_mask = _constituent_features_numpy(jets, n_keep)
    np.testing.assert_array_equal(mask, expected_mask)
    np.testing.assert_array_equal(features.view(np.uint32), expected_features.view(np.uint32))
    expected_neighbours, expected_valid = pd4ml.graphs._knn_block(features[..., 2:4], mask, k)
    np.testing.assert_array_equal(neighbours, expected_neighbours)
    np.testing.assert_array_equal(valid, expected_valid)
    # the same, bit for bit, as the two compiled steps one after the other
    separate_features, separate_mask = constituent_features(jets, n_keep)
    np.testing.assert_array_equal(features, separate_features)
    separate = knn_neighbours(separate_features[..., 2:4], separate_mask, k)
    np.testing.assert_array_equal(neighbours, separate[0])
    np.testing.assert_array_equal(valid, separate[1])
    assert (neighbours[~valid] == -1).all() and not features[~mask].any()
    assert valid[6].sum() == 100 * k  # 200 constituents: 100 kept, all with k neighbours


@pytest.mark.parametrize("dense", [False, True])
def test_prepare_arrays_in_chunks_matches_the_definitions(
    dense: bool, implementation: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pd4ml.datasets import top_tagging

    monkeypatch.setattr(top_tagging, "_PREPARE_CHUNK", 16)  # several chunks, a short last one
    jets = tricky_jets(70)
    source = np.lib.format.open_memmap(
        tmp_path / "constituents.npy", mode="w+", dtype=np.float32, shape=jets.shape
    )
    source[:] = jets
    labels = np.arange(70) % 2
    top_tagging.prepare_arrays(
        source, labels, ArrayWriter(tmp_path), "train", 100, 7, True, dense_adjacency=dense
    )
    stored = {
        name: np.load(tmp_path / "train" / f"{name}.npy")
        for name in ("features", "mask", "neighbours", "neighbour_mask", "labels")
    }
    features, mask = constituent_features(jets, 100)
    np.testing.assert_array_equal(stored["features"], features)
    np.testing.assert_array_equal(stored["mask"], mask)
    neighbours, valid = knn_neighbours(features[..., 2:4], mask, 7)
    np.testing.assert_array_equal(stored["neighbours"], neighbours)
    np.testing.assert_array_equal(stored["neighbour_mask"], valid)
    np.testing.assert_array_equal(stored["labels"], labels)
    if dense:
        adjacency = np.load(tmp_path / "train" / "adjacency.npy")
        np.testing.assert_array_equal(
            adjacency, neighbours_to_dense(neighbours, valid, True, real=mask)
        )


def test_write_rows_through_the_file_and_by_assignment(tmp_path: Path) -> None:
    from pd4ml.datasets.top_tagging import _write_rows

    rows = np.arange(24, dtype=np.int32).reshape(4, 3, 2)
    mapped = np.lib.format.open_memmap(
        tmp_path / "a.npy", mode="w+", dtype=np.int32, shape=(10, 3, 2)
    )
    _write_rows(mapped, 5, rows)  # written to the file, seen through the map
    np.testing.assert_array_equal(mapped[5:9], rows)
    plain = np.zeros((10, 3, 2), dtype=np.int32)
    _write_rows(plain, 5, rows)
    _write_rows(mapped[2:], 0, rows[:1])  # a view: assigned
    del mapped
    stored = np.load(tmp_path / "a.npy")
    np.testing.assert_array_equal(stored[5:9], rows)
    np.testing.assert_array_equal(stored[2], rows[0])
    np.testing.assert_array_equal(plain[5:9], rows)
    assert not plain[:5].any() and not stored[9].any()


def test_stored_dense_adjacency_is_the_transpose_of_the_original_adj_matrix(
    synthetic_top: type[Dataset], settings: Settings
) -> None:
    """``dense_adjacency=True`` stores ``A[i, j] = 1`` for j among the kNN of i (the docstring
    says so, and that models written against the original take ``X["adj_matrix"]``)."""
    prepared = synthetic_top.load_data(
        "test", graph=True, dense_adjacency=True, k=5, n_constituents=30, settings=settings
    )
    stored = np.asarray(prepared["adjacency"])
    neighbours = np.asarray(prepared["neighbours"]).astype(np.int64)
    valid = np.asarray(prepared["neighbour_mask"])
    real = np.asarray(prepared["mask"])
    expected = np.zeros_like(stored)
    event, node, slot = np.nonzero(valid)
    expected[event, node, neighbours[event, node, slot]] = 1  # row i: the neighbours of i
    event, node = np.nonzero(real)
    expected[event, node, node] = 1
    np.testing.assert_array_equal(stored, expected)
    X, _ = original_inputs(prepared)
    original = np.asarray(X["adj_matrix"])  # the original pd4ml's convention
    np.testing.assert_array_equal(original, np.swapaxes(stored, 1, 2))
    assert (original != stored).any(), "kNN is not symmetric: the two conventions differ"
    docs = " ".join((sys.modules[constituent_features.__module__].__doc__ or "").split())
    assert "for models written against the original (" not in docs
    assert "the **transpose** of the original pd4ml's ``adj_matrix``" in docs
    assert 'take ``X["adj_matrix"]``' in docs and "np.swapaxes(adjacency, 1, 2)" in docs


# -- converting in chunks: outputs unchanged, memory bounded by the chunk ------------------------
# digests of the arrays conversion gave before it read straight into the outputs (50,000-jet
# chunks, whole pandas blocks read per column group, the pd4ml npz's rows gathered at once)
RECORDED_TOP_FIXED = {
    "load/test/X0": "2ac5ddb200ad4283",
    "load/test/truth_top": "b5f8824e510efd71",
    "load/test/ttv": "f0a57629e6ecaea8",
    "load/test/y": "3a8446b6ee64f083",
    "load/train/X0": "1cc8114263e26cf5",
    "load/train/truth_top": "dd560377c356a72a",
    "load/train/ttv": "577ac8a75c502353",
    "load/train/y": "08724e75a02cf20c",
    "load/val/X0": "a16a53a3bf872257",
    "load/val/truth_top": "d9b81d7d9dc9bf08",
    "load/val/ttv": "405af47ab5b19d58",
    "load/val/y": "27646038e11f0eeb",
}
RECORDED_TOP_TABLE = {
    "load/test/X0": "2ac5ddb200ad4283",
    "load/test/truth_top": "b5f8824e510efd71",
    "load/test/ttv": "f0a57629e6ecaea8",
    "load/test/y": "3a8446b6ee64f083",
    "load/train/X0": "1cc8114263e26cf5",
    "load/train/truth_top": "dd560377c356a72a",
    "load/train/ttv": "577ac8a75c502353",
    "load/train/y": "08724e75a02cf20c",
    "load/val/X0": "a16a53a3bf872257",
    "load/val/truth_top": "d9b81d7d9dc9bf08",
    "load/val/ttv": "405af47ab5b19d58",
    "load/val/y": "27646038e11f0eeb",
}
RECORDED_TOP_NPZ = {
    "load/test/X0": "90b1748bee4607d1",
    "load/test/truth_top": "9b8b5c9c4454b77f",
    "load/test/ttv": "696e799751c3f2c0",
    "load/test/y": "fe5ca5ef55b1995d",
    "load/train/X0": "ba6bf96a8b67a30b",
    "load/train/truth_top": "5432153272b0d24f",
    "load/train/ttv": "dc4dd9a0a8bf1064",
    "load/train/y": "4894b81f2149dc5c",
    "load/val/X0": "f7444a75cceafacb",
    "load/val/truth_top": "0a821d6994b36467",
    "load/val/ttv": "6a107e7d61f2d033",
    "load/val/y": "f4651b16f237a52c",
}


@pytest.mark.parametrize("chunk", [None, 7])
@pytest.mark.parametrize("source", ["fixed", "table", "npz"])
def test_outputs_are_unchanged_by_chunked_conversion(
    server: ArchiveServer,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    source: str,
    chunk: int | None,
) -> None:
    from pd4ml.datasets import top_tagging
    from pd4ml.testing.synthetic import output_digests

    if chunk is not None:
        monkeypatch.setattr(top_tagging, "_READ_CHUNK", chunk)
    if source == "npz":
        path = write_top_tagging_pd4ml_npz(tmp_path / "1_top_tagging_2M.npz", 200, 70, 90, seed=3)
        files = {path.name: path}
        server.add_zenodo_record(2603258, files)
        variant = synthetic_variant(
            TopTagging, server.url, 2603258, files, template_version="pd4ml-2021"
        )
        expected = RECORDED_TOP_NPZ
    else:
        files = {
            f"{split}.h5": write_top_tagging_h5(
                tmp_path / f"{split}.h5", count, seed=i, layout=source, ttv=(0, 2, 1)[i]
            )
            for i, (split, count) in enumerate(COUNTS.items())
        }
        server.add_zenodo_record(2603256, files)
        variant = synthetic_variant(TopTagging, server.url, 2603256, files)
        expected = RECORDED_TOP_FIXED if source == "fixed" else RECORDED_TOP_TABLE
    assert output_digests(variant, ("train", "val", "test"), {}, settings=settings) == expected


@pytest.mark.parametrize("layout", ["fixed", "table"])
def test_conversion_memory_is_bounded_by_the_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    """Traced (NumPy and Python) allocations of converting 1,200 jets in chunks of 100 stay
    under 1.5 chunks of constituents beyond what opening the file takes: the fixed layout
    reads straight into the memory-mapped output, the table layout holds one block of its
    compound field."""
    import tracemalloc

    from pd4ml.datasets import top_tagging
    from pd4ml.pandas_hdf import PandasHdf

    monkeypatch.setattr(top_tagging, "_READ_CHUNK", 100)
    path = write_top_tagging_h5(tmp_path / "train.h5", 1200, seed=4, layout=layout)
    chunk_bytes = 100 * top_tagging.N_CONSTITUENTS * 4 * 4
    tracemalloc.start()
    try:
        with PandasHdf(path):
            _, opening = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        TopTagging._convert_h5(path, ArrayWriter(tmp_path / "out"), "train")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - opening < 1.5 * chunk_bytes, (
        f"{(peak - opening) / 1e6:.2f} MB beyond opening for a {chunk_bytes / 1e6:.2f} MB chunk"
    )
    expected, labels, _ = top_tagging_jets(1200, seed=4)
    stored = tmp_path / "out" / "train"
    np.testing.assert_array_equal(np.load(stored / "constituents.npy"), expected)
    np.testing.assert_array_equal(np.load(stored / "labels.npy"), labels)


def test_wrong_labels_are_refused_in_any_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pandas as pd

    from pd4ml.datasets import top_tagging

    monkeypatch.setattr(top_tagging, "_READ_CHUNK", 50)
    path = write_top_tagging_h5(tmp_path / "train.h5", 200, seed=1, layout="fixed")
    frame = pd.read_hdf(path, "table")
    frame.loc[170, "is_signal_new"] = 3  # in the last chunk
    frame.to_hdf(path, key="table", format="fixed")
    with pytest.raises(ConversionError, match=r"train\.h5: is_signal_new holds values other"):
        TopTagging._convert_h5(path, ArrayWriter(tmp_path / "out"), "train")
