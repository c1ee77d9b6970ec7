"""pd4ml.pd4ml: the original pd4ml's names return the original's data (shapes, dtypes, units,
label scales, preprocessing), on synthetic files served by the loopback archive server."""

from __future__ import annotations

import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import pd4ml
import pd4ml.pd4ml as original
from pd4ml.config import Settings
from pd4ml.datasets.base import Dataset as BaseDataset
from pd4ml.errors import UnknownNameError
from pd4ml.testing import ArchiveServer
from pd4ml.testing.synthetic import (
    synthetic_variant,
    write_airshower_npz,
    write_pd4ml_image_npz,
    write_smartbkg_npz,
    write_top_tagging_h5,
    write_top_tagging_pd4ml_npz,
)
from tests.conftest import FAST_RETRY, shared_file

N_TRAIN, N_TEST = 90, 30


class World:
    """One server, one cache; a synthetic source for each original name."""

    def __init__(self, root: Path, server: ArchiveServer) -> None:
        self.root = root
        self.cache = root / "datasets"
        self.server = server
        self.record = 8100
        self.files: dict[str, Path] = {}
        data = root / "files"
        top = {
            "train.h5": write_top_tagging_h5(data / "train.h5", 60, seed=1, ttv=0),
            "val.h5": write_top_tagging_h5(data / "val.h5", 20, seed=2, ttv=2),
            "test.h5": write_top_tagging_h5(data / "test.h5", 25, seed=3, ttv=1),
        }
        npz = {
            "1_top_tagging_2M.npz": write_top_tagging_pd4ml_npz(
                data / "1_top_tagging_2M.npz", 40, 15, 20, seed=4
            ),
            "2_spinodal_29k.npz": write_pd4ml_image_npz(
                data / "2_spinodal_29k.npz", "spinodal", N_TRAIN, N_TEST, seed=5
            ),
            "3_EOSL_or_EOSQ_180k.npz": write_pd4ml_image_npz(
                data / "3_EOSL_or_EOSQ_180k.npz", "eos", N_TRAIN, N_TEST, seed=6
            ),
            "4_airshower_100k_regression.npz": write_airshower_npz(
                data / "4_airshower_100k_regression.npz", N_TRAIN, N_TEST, seed=7
            ),
            "6_belle_selective_400k.npz": write_smartbkg_npz(
                data / "6_belle_selective_400k.npz", N_TRAIN, N_TEST, seed=8
            ),
        }
        self.files.update(top)
        self.files.update(npz)
        self.top_v0 = self.variant(pd4ml.TopTagging, top, "v0")
        self.top_npz = self.variant(pd4ml.TopTagging, {k: npz[k] for k in list(npz)[:1]})
        self.sources: dict[type[original.Dataset], type[BaseDataset]] = {
            original.TopTagging: self.top_v0,
            original.Spinodal: self.variant(pd4ml.Spinodal, {"2_spinodal_29k.npz": npz[
                "2_spinodal_29k.npz"]}),
            original.EOSL: self.variant(pd4ml.EOS, {"3_EOSL_or_EOSQ_180k.npz": npz[
                "3_EOSL_or_EOSQ_180k.npz"]}),
            original.Airshower: self.variant(pd4ml.Airshower, {
                "4_airshower_100k_regression.npz": npz["4_airshower_100k_regression.npz"]}),
            original.Belle: self.variant(pd4ml.SmartBKG, {"6_belle_selective_400k.npz": npz[
                "6_belle_selective_400k.npz"]}),
        }  # fmt: skip

    def variant(
        self, dataset: type[BaseDataset], files: dict[str, Path], template: str = "pd4ml-2021"
    ) -> type[BaseDataset]:
        self.record += 1
        self.server.add_zenodo_record(self.record, files)
        return synthetic_variant(
            dataset, self.server.url, self.record, files, template_version=template
        )

    def npz(self, name: str) -> dict[str, np.ndarray]:
        with np.load(self.files[name]) as archive:
            return {key: archive[key] for key in archive.files}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with ArchiveServer() as server:
        yield World(tmp_path_factory.mktemp("original"), server)


@pytest.fixture
def sources(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """The original names built on the world's synthetic datasets (fast retries)."""
    monkeypatch.setattr(
        original.Dataset,
        "_settings",
        classmethod(lambda cls, path: Settings.from_env(path).with_changes(retry=FAST_RETRY)),
    )
    with original.using_sources(world.sources):
        yield world


# -- names, registry, descriptions -----------------------------------------------------------
def test_the_original_names_and_attributes() -> None:
    assert pd4ml.EOSL is original.EOSL and pd4ml.Belle is original.Belle
    assert pd4ml.lpd is original.lpd is original.LoadPreprocessedData
    names = {cls.name: cls for cls in original.Dataset.datasets_register}
    assert set(names) == {"TopTagging", "Spinodal", "EOSL", "Airshower", "Belle"}
    assert isinstance(original.Dataset.datasets_register, set)
    tasks = {name: cls.task for name, cls in names.items()}
    assert tasks == {
        "TopTagging": "classification",
        "Spinodal": "classification",
        "EOSL": "classification",
        "Airshower": "regression",
        "Belle": "classification",
    }
    assert original.Belle.filename == "6_belle_selective_400k.npz"
    assert original.TopTagging.md5 == "708a8369d75ceff2229bd8c46b47afea"
    assert original.TopTagging.data_path("./datasets") == Path(
        "datasets/TopTagging/1_top_tagging_2M.npz"
    )
    assert original.lpd.eosl_data.__doc__ and original.Belle.load_graph_tf_data.__doc__


def test_print_description_prints_the_docstring(capsys: pytest.CaptureFixture[str]) -> None:
    original.Spinodal.print_description()
    out = capsys.readouterr().out
    assert "Spinodal dataset" in out and "(# of events, 20, 20)" in out


def test_unknown_split_is_a_clear_error() -> None:
    with pytest.raises(UnknownNameError, match=r"no split 'val'.*'train' and 'test'"):
        original.Spinodal.load("val")
    with pytest.raises(TypeError, match="graph must be True or False"):
        original.Spinodal.load_data("train", None, "yes")  # type: ignore[arg-type]


def test_using_sources_checks_and_restores() -> None:
    before = original.EOSL.source
    with (
        pytest.raises(TypeError, match=r"subclass of pd4ml\.datasets\.images\.EOS"),
        original.using_sources({original.EOSL: pd4ml.Spinodal}),
    ):
        pass
    assert original.EOSL.source is before


# -- TopTagging ------------------------------------------------------------------------------
def reference_top_features(constituents: np.ndarray, keep: int = 100) -> np.ndarray:
    """§2.1 step 3–5 in float64, independently of pd4ml's code."""
    p = np.asarray(constituents, dtype=np.float64)
    real = p[..., 0] > 0
    jet = np.where(real[..., None], p, 0).sum(axis=1)
    jet_pt = np.hypot(jet[:, 1], jet[:, 2])
    jet_eta = np.arcsinh(jet[:, 3] / jet_pt)
    jet_phi = np.arctan2(jet[:, 2], jet[:, 1])
    out = np.zeros((len(p), keep, 7))
    for event in range(len(p)):
        n = int(real[event].sum())
        e, px, py, pz = p[event, :n].T
        pt = np.hypot(px, py)
        sign = 1.0 if jet_eta[event] >= 0 else -1.0
        etarel = (np.arcsinh(pz / pt) - jet_eta[event]) * sign
        phirel = (np.arctan2(py, px) - jet_phi[event] + np.pi) % (2 * np.pi) - np.pi
        columns = [
            np.log(pt),
            np.log(e),
            etarel,
            phirel,
            np.log(pt / jet_pt[event]),
            np.log(e / jet[event, 0]),
            np.hypot(etarel, phirel),
        ]
        out[event, : min(n, keep)] = np.stack(columns, axis=-1)[:keep]
    return out


def test_top_tagging_load_is_train_plus_validation(sources: World) -> None:
    X, y = original.TopTagging.load("train", path=sources.cache)
    train = sources.top_v0.load("train", settings=Settings(data_dir=sources.cache))
    val = sources.top_v0.load("val", settings=Settings(data_dir=sources.cache))
    assert len(X) == 2 and X[0].shape == (80, 200, 4) and X[0].dtype == np.float32
    np.testing.assert_array_equal(X[0], np.concatenate([train.X[0], val.X[0]]))
    np.testing.assert_array_equal(X[1], np.r_[np.zeros(60), np.full(20, 2)])
    np.testing.assert_array_equal(y, np.concatenate([train.y, val.y]))
    X[0][0, 0, 0] = -5.0  # copy-on-write: writable, the cache is not touched
    again, _ = original.TopTagging.load("train", path=sources.cache)
    assert again[0][0, 0, 0] != -5.0
    X_test, y_test = original.TopTagging.load("test", path=sources.cache)
    assert X_test[0].shape == (25, 200, 4) and set(np.unique(X_test[1])) == {1}
    assert y_test.shape == (25,) and set(np.unique(y_test)) <= {0, 1}


def test_top_tagging_npz_version_is_read_in_the_file_order(sources: World) -> None:
    with original.using_sources({original.TopTagging: sources.top_npz}):
        X, y = original.TopTagging.load("train", path=sources.cache)
    expected = sources.npz("1_top_tagging_2M.npz")
    assert len(X) == 2
    for got, key in zip([*X, y], ["X_train_0", "X_train_1", "y_train"], strict=True):
        assert got.dtype == expected[key].dtype and got.shape == expected[key].shape
        np.testing.assert_array_equal(got, expected[key])


def test_top_tagging_load_data_features(sources: World) -> None:
    for split in ("train", "test"):
        X_data, y = original.TopTagging.load_data(split, path=sources.cache)
        X, y_load = original.TopTagging.load(split, path=sources.cache)
        assert list(X_data) == ["features"] and isinstance(X_data["features"], list)
        (features,) = X_data["features"]
        assert features.shape == (len(X[0]), 100, 7) and features.dtype == np.float32
        np.testing.assert_allclose(features, reference_top_features(X[0]), rtol=2e-5, atol=2e-5)
        np.testing.assert_array_equal(y, y_load)


def test_a_new_preprocessing_version_is_never_served_from_an_older_cache(
    sources: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = sources.sources[original.TopTagging]
    X_data, _ = original.TopTagging.load_data("test", path=sources.cache)
    before = np.array(X_data["features"][0])
    monkeypatch.setattr(source, "prepare_version", source.prepare_version + 1)
    again, _ = original.TopTagging.load_data("test", path=sources.cache)
    np.testing.assert_array_equal(again["features"][0], before)
    stores = sorted(p.name for p in sources.cache.rglob("original/*") if p.is_dir())
    assert any(f"-p{source.prepare_version}" in name for name in stores), stores
    assert any(f"-p{source.prepare_version - 1}" in name for name in stores), stores


def test_top_tagging_graph_is_the_transposed_knn_among_real_constituents(sources: World) -> None:
    X_data, _ = original.TopTagging.load_data("train", path=sources.cache, graph=True)
    features, adjacency = X_data["features"], X_data["adj_matrix"]
    assert set(X_data) == {"features", "adj_matrix"}
    assert features.shape == (80, 100, 7) and adjacency.shape == (80, 100, 100)
    assert adjacency.dtype == np.int8
    X, _ = original.TopTagging.load("train", path=sources.cache)
    counts = np.minimum((X[0][..., 0] > 0).sum(axis=1), 100)
    for event in range(0, 80, 7):
        n = int(counts[event])
        points = features[event, :n, 2:4].astype(np.float64)
        expected = np.zeros((100, 100), dtype=np.int8)
        for j in range(n):
            distance = ((points - points[j]) ** 2).sum(axis=1)
            distance[j] = np.inf
            for i in np.argsort(distance, kind="stable")[: min(7, n - 1)]:
                expected[i, j] = 1  # the original's transpose: i among j's neighbours
            expected[j, j] = 1
        np.testing.assert_array_equal(adjacency[event], expected)
        # the documented deviation: padding never takes a neighbour slot, so every real
        # constituent keeps min(7, n - 1) real neighbours plus itself
        assert (adjacency[event][:, :n].sum(axis=0) == min(7, n - 1) + 1).all()
        assert not adjacency[event][n:].any() and not adjacency[event][:, n:].any()


def test_real_particle_level_jets_through_the_original_top_tagging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sample = shared_file("toptagging", "pythia8_particle_level_4k.h5")
    files = {"train.h5": sample, "val.h5": sample, "test.h5": sample}
    monkeypatch.setattr(
        original.Dataset,
        "_settings",
        classmethod(lambda cls, path: Settings.from_env(path).with_changes(retry=FAST_RETRY)),
    )
    with ArchiveServer() as server:
        server.add_zenodo_record(8200, files)
        variant = synthetic_variant(
            pd4ml.TopTagging, server.url, 8200, files, template_version="v0"
        )
        with original.using_sources({original.TopTagging: variant}):
            X, y = original.TopTagging.load("train", path=tmp_path)
            X_data, _y_data = original.TopTagging.load_data("train", path=tmp_path, graph=True)
    assert X[0].shape == (8000, 200, 4) and y.sum() == 4000
    features, adjacency = X_data["features"], X_data["adj_matrix"]
    real = X[0][:, :100, 0] > 0
    assert features.shape == (8000, 100, 7) and adjacency.shape == (8000, 100, 100)
    np.testing.assert_allclose(
        features[:200], reference_top_features(X[0][:200]), rtol=2e-5, atol=2e-5
    )
    assert (np.abs(features[..., 3][real]) <= np.pi).all()
    assert np.quantile(features[..., 6][real], 0.99) < 0.8  # R = 0.8 jets
    diagonal = np.diagonal(adjacency, axis1=1, axis2=2)
    np.testing.assert_array_equal(diagonal.astype(bool), real)
    n = real.sum(axis=1)
    np.testing.assert_array_equal(adjacency.sum(axis=(1, 2)), n * (np.minimum(7, n - 1) + 1))


# -- Spinodal --------------------------------------------------------------------------------
def reference_grid(n: int) -> np.ndarray:
    """The ideal 8-neighbourhood of an n × n grid, row-major, no self-loops."""
    row, column = np.divmod(np.arange(n * n), n)
    near = (np.abs(row[:, None] - row[None]) <= 1) & (np.abs(column[:, None] - column[None]) <= 1)
    return (near & ~np.eye(n * n, dtype=bool)).astype(np.int8)


def test_spinodal_raw_list_and_grid_graph(sources: World) -> None:
    expected = sources.npz("2_spinodal_29k.npz")
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        X, y = original.Spinodal.load(split, path=sources.cache)
        assert len(X) == 1 and X[0].shape == (n, 20, 20)
        assert (
            X[0].dtype == expected[f"X_{split}_0"].dtype and y.dtype == expected[f"y_{split}"].dtype
        )
        np.testing.assert_array_equal(X[0], expected[f"X_{split}_0"])
        np.testing.assert_array_equal(y, expected[f"y_{split}"])
        X_data, _y_data = original.Spinodal.load_data(split, path=sources.cache)
        assert isinstance(X_data["features"], list) and len(X_data["features"]) == 1
        np.testing.assert_array_equal(X_data["features"][0], expected[f"X_{split}_0"])  # unscaled
        X_graph, _ = original.Spinodal.load_data(split, path=sources.cache, graph=True)
        nodes, adjacency = X_graph["features"], X_graph["adj_matrix"]
        assert nodes.shape == (n, 400, 1)
        np.testing.assert_array_equal(nodes[..., 0], expected[f"X_{split}_0"].reshape(n, 400))
        assert adjacency.shape == (n, 400, 400) and adjacency.dtype == np.int8
        np.testing.assert_array_equal(adjacency[3], reference_grid(20))
        assert int(adjacency[0].sum()) == 2964 and not adjacency.flags.writeable


# -- EOSL ------------------------------------------------------------------------------------
def test_eosl_standard_scaled_with_the_full_train_split(sources: World) -> None:
    sklearn = pytest.importorskip("sklearn.preprocessing")
    expected = sources.npz("3_EOSL_or_EOSQ_180k.npz")
    scaler = sklearn.StandardScaler().fit(expected["X_train_0"].reshape(N_TRAIN, 576))
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        X_data, y = original.EOSL.load_data(split, path=sources.cache)
        (features,) = X_data["features"]
        assert features.shape == (n, 576) and features.dtype == np.float32
        reference = scaler.transform(expected[f"X_{split}_0"].reshape(n, 576))
        np.testing.assert_allclose(features, reference, rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(y, expected[f"y_{split}"])
        X_graph, _ = original.EOSL.load_data(split, path=sources.cache, graph=True)
        assert X_graph["features"].shape == (n, 576, 1)
        np.testing.assert_array_equal(X_graph["features"][..., 0], features)
        assert X_graph["adj_matrix"].shape == (n, 576, 576)
        assert int(X_graph["adj_matrix"][1].sum()) == 4324
        np.testing.assert_array_equal(X_graph["adj_matrix"][0], reference_grid(24))
    X, _ = original.EOSL.load("train", path=sources.cache)
    assert X[0].shape == (N_TRAIN, 24, 24)


# -- Airshower -------------------------------------------------------------------------------
def reference_airshower(signal: np.ndarray, time: np.ndarray) -> np.ndarray:
    """§2.4 step 1–4 with NumPy's nan functions, on copies."""
    signal = np.array(signal, dtype=np.float64)
    time = np.array(time, dtype=np.float64)
    signal[signal == -1] = np.nan
    time[time == -1] = np.nan
    with warnings.catch_warnings():  # events without any station: mean of nothing
        warnings.simplefilter("ignore", RuntimeWarning)
        time -= np.nanmean(time, axis=(1, 2, 3), keepdims=True)
    time /= np.nanstd(time)  # the split being loaded
    time[np.isnan(time)] = 0
    signal[signal < 0] = 0
    signal = np.log10(signal + 1)
    signal[np.isnan(signal)] = 0
    return np.concatenate([signal, time], axis=3).reshape(len(signal), 81, 81)


def test_airshower_features_and_unscaled_xmax(sources: World) -> None:
    expected = sources.npz("4_airshower_100k_regression.npz")
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        X, _y = original.Airshower.load(split, path=sources.cache)
        assert [x.shape for x in X] == [(n, 9, 9, 80), (n, 9, 9, 1), (81, 3)]
        for got, key in zip(X, [f"X_{split}_{i}" for i in range(3)], strict=True):
            np.testing.assert_array_equal(got, expected[key])
        X_data, y_data = original.Airshower.load_data(split, path=sources.cache)
        (features,) = X_data["features"]
        assert features.shape == (n, 81, 81) and features.dtype == np.float32
        reference = reference_airshower(expected[f"X_{split}_0"], expected[f"X_{split}_1"])
        np.testing.assert_allclose(features, reference, rtol=1e-5, atol=1e-6)
        # Xmax in g/cm², unscaled
        np.testing.assert_array_equal(y_data, expected[f"y_{split}"])
        assert y_data.dtype == np.float32 and 600 < float(np.mean(y_data)) < 900
        X_graph, _ = original.Airshower.load_data(split, path=sources.cache, graph=True)
        np.testing.assert_array_equal(X_graph["features"], features)
        assert X_graph["adj_matrix"].shape == (n, 81, 81)
        np.testing.assert_array_equal(X_graph["adj_matrix"][0], reference_grid(9))
        assert int(X_graph["adj_matrix"][0].sum()) == 544
    # the documented reproduction: test times are divided by the *test* split's std
    test_time = expected["X_test_1"]
    test_std = original.Airshower.time_scale(test_time)
    train_std = original.Airshower.time_scale(expected["X_train_1"])
    assert abs(test_std - train_std) > 1e-6 * train_std
    X_test, _ = original.Airshower.load_data("test", path=sources.cache)
    centred = original.Airshower.centred_times(test_time)
    triggered = ~np.isnan(centred)
    np.testing.assert_allclose(
        X_test["features"][0][..., 80][triggered], (centred / test_std)[triggered], rtol=1e-5
    )


# -- Belle -----------------------------------------------------------------------------------
def test_belle_pdg_index_follows_the_original_table() -> None:
    tokens = np.array([506, 423, 212, 0, 507, 1, 506.5, -1, 346.0])
    np.testing.assert_array_equal(
        original.belle_pdg_index(tokens), [0, 1, 181, 183, 183, 183, 183, 183, 180]
    )
    assert len(original.BELLE_SORTED_PDG) == 182 == len(set(original.BELLE_SORTED_PDG))
    one_hot = original.belle_one_hot(np.array([0, 181, 183]), 182)
    assert one_hot.dtype == np.int8 and one_hot.shape == (3, 182)
    assert one_hot[0, 0] == 1 and one_hot[1, 181] == 1 and not one_hot[2].any()


def test_belle_features_191_and_190_with_the_decay_graph(sources: World) -> None:
    expected = sources.npz("6_belle_selective_400k.npz")
    table = {value: index for index, value in enumerate(original.BELLE_SORTED_PDG)}
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        X, _y = original.Belle.load(split, path=sources.cache)
        assert [x.shape for x in X] == [(n, 100, 9), (n, 100)]
        particles, mothers = expected[f"X_{split}_0"], expected[f"X_{split}_1"]
        X_data, y_data = original.Belle.load_data(split, path=sources.cache)
        (features,) = X_data["features"]
        assert features.shape == (n, 100, 191)
        assert features.dtype == np.result_type(particles.dtype, np.int8, mothers.dtype)
        np.testing.assert_array_equal(features[..., :8], particles[..., :8])  # raw kinematics
        np.testing.assert_array_equal(features[..., 190], mothers)
        for event in range(0, n, 11):
            for particle in range(100):
                row = features[event, particle, 8:190]
                index = table.get(float(particles[event, particle, 8]))
                if index is None:
                    assert not row.any()  # not in the table, or padding
                else:
                    assert row[index] == 1 and row.sum() == 1
        np.testing.assert_array_equal(y_data, expected[f"y_{split}"])
        X_graph, _ = original.Belle.load_data(split, path=sources.cache, graph=True)
        np.testing.assert_array_equal(X_graph["features"], features[..., :190])
        adjacency = X_graph["adj_matrix"]
        assert adjacency.shape == (n, 100, 100) and adjacency.dtype == np.int8
        for event in range(0, n, 13):
            indices = mothers[event].astype(np.int8)
            reference = np.eye(101, dtype=np.int8)[indices][:, :-1]
            reference = reference + reference.T
            reference += np.where((indices != -1)[:, None], np.eye(100, dtype=np.int8), 0)
            reference[reference > 1] = 1
            np.testing.assert_array_equal(adjacency[event], reference)


def test_belle_extra_arguments(sources: World) -> None:
    X_data, y = original.Belle.load_data("test", path=sources.cache, num_pdg=10, max_entries=7)
    (features,) = X_data["features"]
    full, _ = original.Belle.load_data("test", path=sources.cache)
    assert features.shape == (7, 100, 8 + 10 + 1) and y.shape == (7,)
    np.testing.assert_array_equal(features[..., 8:18], full["features"][0][:7, :, 8:18])
    pytest.importorskip("tensorflow")
    train, validation = original.Belle.load_graph_tf_data(
        "test", path=sources.cache, max_entries=20, batch_size=8
    )
    batches = list(train) + list(validation)
    graph, _ = original.Belle.load_data("test", path=sources.cache, graph=True)
    features_tf = np.concatenate([inputs["features"].numpy() for inputs, _ in batches])
    adjacency_tf = np.concatenate([inputs["adj_matrix"].numpy() for inputs, _ in batches])
    np.testing.assert_array_equal(features_tf, graph["features"][:20])
    np.testing.assert_array_equal(adjacency_tf, graph["adj_matrix"][:20])
    assert sum(len(labels) for _, labels in train) == 16


# -- the original's location -----------------------------------------------------------------
def test_a_file_at_the_original_location_is_imported_and_used(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "datasets" / "Spinodal"
    folder.mkdir(parents=True)
    (folder / "2_spinodal_29k.npz").write_bytes(world.files["2_spinodal_29k.npz"].read_bytes())
    monkeypatch.setenv("PD4ML_OFFLINE", "1")  # nothing may be downloaded
    monkeypatch.chdir(tmp_path)
    with original.using_sources({original.Spinodal: world.sources[original.Spinodal]}):
        X, _y = original.Spinodal.load("train")  # the default path, "./datasets"
    np.testing.assert_array_equal(X[0], world.npz("2_spinodal_29k.npz")["X_train_0"])
    assert list((tmp_path / "datasets" / "spinodal").iterdir())


# -- a script written for the original pd4ml ------------------------------------------------
SCRIPT = textwrap.dedent(
    """
    import numpy as np
    import tensorflow as tf
    import pd4ml
    from pd4ml.pd4ml import TopTagging, Spinodal, EOSL, Airshower, Belle

    Spinodal.print_description()
    for d in pd4ml.pd4ml.Dataset.datasets_register:
        print(d.name)
    for d in pd4ml.Dataset.datasets_register:  # pd4ml's own registry (all its datasets)
        print(d.name)

    def flatten(x):
        return [np.reshape(a, (len(a), -1)) for a in x["features"]]

    for ds in [TopTagging, Spinodal, EOSL, Airshower, Belle]:
        X, y = ds.load('train', path='./datasets')
        for build_graph in (False, True):
            x_train, y_train = ds.load_data('train', path='./datasets', graph=build_graph)
            x_test, y_test = ds.load_data('test', path='./datasets', graph=build_graph)
            out = 'sigmoid' if ds.task == 'classification' else 'linear'
            loss = 'binary_crossentropy' if ds.task == 'classification' else 'mse'
            if not build_graph:
                x_train, x_test = flatten(x_train), flatten(x_test)
                inputs = tf.keras.Input(shape=x_train[0].shape[1:])
                hidden = tf.keras.layers.Dense(8, activation='relu')(inputs)
                model = tf.keras.Model(inputs, tf.keras.layers.Dense(1, activation=out)(hidden))
            else:
                features = tf.keras.Input(shape=x_train['features'].shape[1:], name='features')
                adj = tf.keras.Input(shape=x_train['adj_matrix'].shape[1:], name='adj_matrix')
                hidden = tf.keras.layers.Dense(8, activation='relu')(features)
                hidden = tf.keras.layers.Lambda(lambda t: tf.matmul(t[1], t[0]))([hidden, adj])
                pooled = tf.keras.layers.GlobalAveragePooling1D()(hidden)
                output = tf.keras.layers.Dense(1, activation=out)(pooled)
                model = tf.keras.Model(inputs=[features, adj], outputs=output, name=ds.name)
            model.compile(optimizer='adam', loss=loss)
            history = model.fit(x=x_train, y=y_train, batch_size=32, epochs=1,
                                validation_split=0.2, shuffle=True, verbose=0)
            prediction = model.predict(x_test, verbose=0)
            RESULTS[ds.name, build_graph] = (
                len(y_train), prediction.shape, np.isfinite(history.history['loss'][0])
            )
    """
)


@pytest.mark.filterwarnings("ignore:The structure of `inputs`:UserWarning")
def test_an_original_script_runs_unchanged(
    sources: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("tensorflow")
    monkeypatch.chdir(sources.root)  # './datasets' is the world's cache
    results: dict[tuple[str, bool], tuple[int, tuple[int, ...], bool]] = {}
    exec(compile(SCRIPT, "original_script.py", "exec"), {"RESULTS": results})
    out = capsys.readouterr().out
    assert "Spinodal dataset" in out
    assert all(name in out for name in ("TopTagging", "EOSL", "Airshower", "Belle"))
    n_train = {"TopTagging": 80, "Spinodal": N_TRAIN, "EOSL": N_TRAIN}
    n_test = {"TopTagging": 25}
    for name in ("TopTagging", "Spinodal", "EOSL", "Airshower", "Belle"):
        for graph in (False, True):
            n, shape, finite = results[name, graph]
            assert n == n_train.get(name, N_TRAIN) and finite
            assert shape == (n_test.get(name, N_TEST), 1)
