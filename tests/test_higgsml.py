"""HiggsML: the real 9,998-event subset, the official splits, weights, -999 handling, AMS."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from pd4ml import HiggsML
from pd4ml.config import Settings
from pd4ml.datasets import higgsml, splits
from pd4ml.datasets.base import ArrayWriter, Dataset
from pd4ml.datasets.higgsml import FEATURE_NAMES, read_higgsml_csv, write_higgsml_splits
from pd4ml.errors import ConversionError
from pd4ml.metrics import ams, ams_of_selection
from pd4ml.testing import ArchiveServer
from pd4ml.testing.synthetic import (
    array_digest,
    higgsml_events,
    output_digests,
    synthetic_variant,
    write_higgsml_csv,
)
from tests.conftest import shared_file

KEY = "atlas-higgs-challenge-2014-v2.csv.gz"


def real_files() -> list[Path]:
    """The genuine 9,998-event subset of the official file (../shared/data/higgsml)."""
    return [shared_file("higgsml", "train_sml_sig.csv"), shared_file("higgsml", "train_sml_bg.csv")]


column = FEATURE_NAMES.index


@pytest.fixture(scope="module")
def real() -> dict[str, np.ndarray]:
    return read_higgsml_csv(real_files())


def test_real_subset_counts_labels_and_weights(real: dict[str, np.ndarray]) -> None:
    assert real["features"].shape == (9998, 30) and real["features"].dtype == np.float32
    assert int(real["label"].sum()) == 4999 and set(real["kaggle_set"]) == {"t"}
    assert real["event_id"][0] == 100000 and real["label"][0] == 1
    assert math.isclose(real["weight"][0], 0.00081448039868) and math.isclose(
        real["kaggle_weight"][0], 0.00265331133733
    )
    ratio = real["kaggle_weight"] / real["weight"]
    np.testing.assert_allclose(ratio[real["label"] == 1], 3.257674, rtol=1e-6)
    np.testing.assert_allclose(ratio[real["label"] == 0], 3.279658, rtol=1e-6)
    assert len(np.unique(real["weight"][real["label"] == 1])) == 4


def test_real_subset_undefined_values_are_nan(real: dict[str, np.ndarray]) -> None:
    features, labels = real["features"], real["label"]
    mass_missing = np.isnan(features[:, column("DER_mass_MMC")])
    assert (
        int(mass_missing[labels == 1].sum()) == 158 and int(mass_missing[labels == 0].sum()) == 1055
    )
    assert not (features == -999.0).any()
    jets = features[:, column("PRI_jet_num")]
    np.testing.assert_array_equal(np.isnan(features[:, column("PRI_jet_leading_pt")]), jets < 1)
    np.testing.assert_array_equal(np.isnan(features[:, column("DER_mass_jet_jet")]), jets < 2)
    assert not np.isnan(features[:, column("PRI_jet_all_pt")]).any()


def test_real_subset_through_the_converter(real: dict[str, np.ndarray], tmp_path: Path) -> None:
    writer = ArrayWriter(tmp_path)
    write_higgsml_splits(real, writer)
    train_labels = np.load(tmp_path / "train" / "labels.npy")
    val_labels = np.load(tmp_path / "val" / "labels.npy")
    assert len(train_labels) + len(val_labels) == 9998
    assert len(val_labels) == 1000 and int(val_labels.sum()) == 500  # stratified, 10 %
    ids = np.concatenate([np.load(tmp_path / s / "event_id.npy") for s in ("train", "val")])
    assert len(np.unique(ids)) == 9998
    assert len(np.load(tmp_path / "private_test" / "labels.npy")) == 0
    assert (
        writer.splits["train"]["info"]["validation_seed"]
        == writer.splits["val"]["info"]["validation_seed"]
    )


def test_ams_against_a_hand_computation() -> None:
    s, b = 10.0, 100.0
    by_hand = math.sqrt(2 * ((s + b + 10) * math.log(1 + s / (b + 10)) - s))
    assert math.isclose(ams(s, b), by_hand, rel_tol=1e-12)
    labels = np.array([1, 1, 0, 0, 1])
    selected = np.array([True, True, True, False, False])
    weights = np.array([4.0, 6.0, 100.0, 50.0, 7.0])
    assert math.isclose(ams_of_selection(labels, selected, weights), by_hand, rel_tol=1e-12)
    assert ams(0.0, 5.0) == 0.0
    with pytest.raises(ValueError):
        ams(-1.0, 1.0)


@pytest.fixture
def synthetic_higgs(server: ArchiveServer, tmp_path: Path) -> type[Dataset]:
    path = write_higgsml_csv(tmp_path / KEY, 6000, seed=5)
    server.add_cernopendata_record(328, {KEY: path}, eos_directory="/eos/opendata/test")
    return synthetic_variant(HiggsML, server.url, 328, {KEY: path}, kind="cernopendata")


def test_load_official_splits_from_synthetic_files(
    synthetic_higgs: type[Dataset], settings: Settings, server: ArchiveServer
) -> None:
    events = higgsml_events(6000, seed=5)
    sizes = {}
    for split in ("train", "val", "public_test", "private_test"):
        result = synthetic_higgs.load(split, settings=settings)
        X, y = result
        assert X[0].shape[1] == 30 and X[0].dtype == np.float32 and y.dtype == np.int64
        assert result.weights is not None and result.weights.dtype == np.float64
        assert result.metadata.synthetic
        sizes[split] = result.n_events
    counts = {code: int((events["KaggleSet"] == code).sum()) for code in "tbv"}
    assert sizes["train"] + sizes["val"] == counts["t"]
    assert sizes["public_test"] == counts["b"] and sizes["private_test"] == counts["v"]
    assert synthetic_higgs.load("test", settings=settings).metadata.split == "private_test"
    assert server.count(f"*/{KEY}") == 1
    assert server.requests[0].path == f"/eos/opendata/test/{KEY}"


def test_load_data_cartesian_aligned_and_train_statistics(
    synthetic_higgs: type[Dataset], settings: Settings
) -> None:
    train = synthetic_higgs.load_data("train", settings=settings)
    test = synthetic_higgs.load_data("private_test", settings=settings)
    names = train.metadata["info"]["feature_names"]
    assert train.features.shape[1] == len(names) == 31
    assert test.metadata["info"]["mean"] == train.metadata["info"]["mean"], (
        "statistics not fitted on train once"
    )
    features = np.where(train["missing"], np.nan, train.features)
    momenta = [i for i, name in enumerate(names) if name[-3:] in ("_px", "_py", "_pz")]
    others = [i for i in range(len(names)) if i not in momenta]
    np.testing.assert_allclose(np.nanmean(features[:, others], axis=0), 0, atol=1e-4)
    mean, scale = (
        np.array(train.metadata["info"]["mean"]),
        np.array(train.metadata["info"]["scale"]),
    )
    # momenta: offset 0, x and y of an object share one scale (the scaling commutes with the
    # φ rotations of the augmentation), the root mean square of the components
    assert (mean[momenta] == 0).all()
    for obj in ("tau", "lep", "jet_leading", "jet_subleading", "met"):
        x, y = names.index(f"PRI_{obj}_px"), names.index(f"PRI_{obj}_py")
        assert scale[x] == scale[y] > 0
        raw = np.where(train["missing"], np.nan, train.features * scale + mean)[:, [x, y]]
        np.testing.assert_allclose(scale[x], np.sqrt(np.nanmean(raw**2)), rtol=1e-3)
    rotated = HiggsML.augmentation(train).random(
        {"features": train.features, "missing": train["missing"]}, np.random.default_rng(0)
    )["features"]
    spread = np.nanstd(np.where(train["missing"], np.nan, rotated), axis=0)
    assert (spread[momenta] < 3).all(), "augmented momenta stay of order one"
    physical = train.features * scale + mean
    np.testing.assert_allclose(physical[:, names.index("PRI_tau_py")], 0, atol=1e-3)  # tau at φ = 0
    assert (physical[:, names.index("PRI_tau_px")] > 0).all()
    assert (physical[:, names.index("PRI_lep_pz")] >= -1e-3).all() and (
        physical[:, names.index("PRI_lep_py")] >= -1e-3
    ).all()
    assert train.weights is not None and train["kaggle_weights"].shape == train.labels.shape
    polar = synthetic_higgs.load_data("train", cartesian=False, settings=settings)
    assert polar.features.shape[1] == 30


def test_augmentation_preserves_momenta(synthetic_higgs: type[Dataset], settings: Settings) -> None:
    prepared = synthetic_higgs.load_data("val", settings=settings)
    augmentation = HiggsML.augmentation(prepared)
    names = prepared.metadata["info"]["feature_names"]
    mean, scale = (
        np.array(prepared.metadata["info"]["mean"]),
        np.array(prepared.metadata["info"]["scale"]),
    )
    features, missing = np.asarray(prepared.features), np.asarray(prepared["missing"])

    def momentum(array: np.ndarray, obj: str) -> np.ndarray:
        physical = array * scale + mean
        return np.sqrt(
            sum(physical[:, names.index(f"PRI_{obj}_{axis}")] ** 2 for axis in ("px", "py", "pz"))
        )

    shuffled = augmentation.random(features, missing, np.random.default_rng(1))
    for obj in ("tau", "lep"):
        np.testing.assert_allclose(
            momentum(shuffled, obj), momentum(features, obj), rtol=1e-4, atol=1e-3
        )
    assert not np.allclose(shuffled, features)
    variants = augmentation.variants(features, missing, n_rotations=2)
    assert len(variants) == 8
    np.testing.assert_allclose(variants[0], features, atol=1e-5)
    assert (variants[3][missing] == 0).all()


def test_csv_with_a_missing_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "broken.csv"
    lines = real_files()[0].read_text().splitlines()[:5]
    header = lines[0].split(",")
    drop = header.index("KaggleWeight")
    path.write_text(
        "\n".join(",".join(v for i, v in enumerate(line.split(",")) if i != drop) for line in lines)
    )
    with pytest.raises(ConversionError, match=r"broken\.csv: missing column\(s\) KaggleWeight"):
        read_higgsml_csv([path])


def test_truncated_gzip_is_reported(tmp_path: Path) -> None:
    good = write_higgsml_csv(tmp_path / "full.csv.gz", 3000, seed=2)
    truncated = tmp_path / "cut.csv.gz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ConversionError, match=r"cut\.csv\.gz"):
        read_higgsml_csv([truncated])


# -- reading the CSV in chunks: outputs unchanged ------------------------------------------------
# digests of the arrays conversion gave when it read the whole CSV at once (6000 events, seed 5)
RECORDED_HIGGSML = {
    "load/private_test/X0": "d5668690b6ea4b6e",
    "load/private_test/event_id": "73d96cbba1e4ce68",
    "load/private_test/kaggle_weights": "88172fb51c13f44b",
    "load/private_test/y": "49e7aa6dd73d04f0",
    "load/public_test/X0": "2f5841e61aa92b90",
    "load/public_test/event_id": "fbac53586458d77c",
    "load/public_test/kaggle_weights": "24ab925f54741bf7",
    "load/public_test/y": "645779de84ec9140",
    "load/train/X0": "3c64bf264f7e2cfa",
    "load/train/event_id": "6eaf225bb9fdf9d9",
    "load/train/kaggle_weights": "21c7c4875c40fba6",
    "load/train/y": "e7cbeb19e67b5f58",
    "load/val/X0": "b31fd0a052c990e0",
    "load/val/event_id": "07ca1bdae4bd9c64",
    "load/val/kaggle_weights": "1f0dbb9b72dd1e82",
    "load/val/y": "02004b9a7f86f541",
}


@pytest.mark.parametrize("chunk", [None, 7])
def test_outputs_are_unchanged_by_chunked_reading(
    server: ArchiveServer,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    chunk: int | None,
) -> None:
    if chunk is not None:
        monkeypatch.setattr(higgsml, "_CSV_CHUNK_ROWS", chunk)
        monkeypatch.setattr(splits, "_CHUNK", chunk)
    path = write_higgsml_csv(tmp_path / KEY, 6000, seed=5)
    server.add_cernopendata_record(328, {KEY: path}, eos_directory="/eos/opendata/test")
    variant = synthetic_variant(HiggsML, server.url, 328, {KEY: path}, kind="cernopendata")
    splits_ = ("train", "val", "public_test", "private_test")
    assert output_digests(variant, splits_, {}, settings=settings) == RECORDED_HIGGSML


# -- preparing in chunks: outputs unchanged, memory bounded by the chunk -------------------------
# digests of the arrays and statistics preparation gave when it engineered and standardised a
# whole split at once (6000 events, seed 5; statistics by np.nanmean / np.nanstd of all of train)
RECORDED_HIGGSML_PREPARED = {
    "cartesian/train/features": "179179608f6ce7c9",
    "cartesian/train/jet_multiplicity": "b29591c4005ae491",
    "cartesian/train/kaggle_weights": "21c7c4875c40fba6",
    "cartesian/train/labels": "e7cbeb19e67b5f58",
    "cartesian/train/missing": "d3cc9871b401119a",
    "cartesian/train/weights": "66c796e8458ee6d8",
    "unaligned/train/features": "35c96090a83c5b6b",
    "unaligned/train/jet_multiplicity": "b29591c4005ae491",
    "unaligned/train/kaggle_weights": "21c7c4875c40fba6",
    "unaligned/train/labels": "e7cbeb19e67b5f58",
    "unaligned/train/missing": "d3cc9871b401119a",
    "unaligned/train/weights": "66c796e8458ee6d8",
    "polar/train/features": "f30615a835533070",
    "polar/train/jet_multiplicity": "b29591c4005ae491",
    "polar/train/kaggle_weights": "21c7c4875c40fba6",
    "polar/train/labels": "e7cbeb19e67b5f58",
    "polar/train/missing": "a3c6cd7bad463598",
    "polar/train/weights": "66c796e8458ee6d8",
    "cartesian/val/features": "db10a1c7d84cb37d",
    "cartesian/val/jet_multiplicity": "ccb9af1e8fc5cba7",
    "cartesian/val/kaggle_weights": "1f0dbb9b72dd1e82",
    "cartesian/val/labels": "02004b9a7f86f541",
    "cartesian/val/missing": "fc942c700fe9e0e4",
    "cartesian/val/weights": "fd437034ed0551e8",
    "unaligned/val/features": "e0734e786374c089",
    "unaligned/val/jet_multiplicity": "ccb9af1e8fc5cba7",
    "unaligned/val/kaggle_weights": "1f0dbb9b72dd1e82",
    "unaligned/val/labels": "02004b9a7f86f541",
    "unaligned/val/missing": "fc942c700fe9e0e4",
    "unaligned/val/weights": "fd437034ed0551e8",
    "polar/val/features": "360841ad10347650",
    "polar/val/jet_multiplicity": "ccb9af1e8fc5cba7",
    "polar/val/kaggle_weights": "1f0dbb9b72dd1e82",
    "polar/val/labels": "02004b9a7f86f541",
    "polar/val/missing": "c921ea7809288ee0",
    "polar/val/weights": "fd437034ed0551e8",
    "cartesian/public_test/features": "af52aa08245d39e6",
    "cartesian/public_test/jet_multiplicity": "ebb33611af0ad6c6",
    "cartesian/public_test/kaggle_weights": "24ab925f54741bf7",
    "cartesian/public_test/labels": "645779de84ec9140",
    "cartesian/public_test/missing": "ade3b1c66d59e7ad",
    "cartesian/public_test/weights": "fcf7e3ef61eeb163",
    "unaligned/public_test/features": "2da688d8f9b13f94",
    "unaligned/public_test/jet_multiplicity": "ebb33611af0ad6c6",
    "unaligned/public_test/kaggle_weights": "24ab925f54741bf7",
    "unaligned/public_test/labels": "645779de84ec9140",
    "unaligned/public_test/missing": "ade3b1c66d59e7ad",
    "unaligned/public_test/weights": "fcf7e3ef61eeb163",
    "polar/public_test/features": "b7fc1f866c12ca95",
    "polar/public_test/jet_multiplicity": "ebb33611af0ad6c6",
    "polar/public_test/kaggle_weights": "24ab925f54741bf7",
    "polar/public_test/labels": "645779de84ec9140",
    "polar/public_test/missing": "d41e96088dc5d4c6",
    "polar/public_test/weights": "fcf7e3ef61eeb163",
    "cartesian/private_test/features": "1137818a045dcf03",
    "cartesian/private_test/jet_multiplicity": "a7a1ad55b8b77cd5",
    "cartesian/private_test/kaggle_weights": "88172fb51c13f44b",
    "cartesian/private_test/labels": "49e7aa6dd73d04f0",
    "cartesian/private_test/missing": "3ed6b66de808b14b",
    "cartesian/private_test/weights": "5467331d29cbfbc5",
    "unaligned/private_test/features": "325fdc1ef73b26b0",
    "unaligned/private_test/jet_multiplicity": "a7a1ad55b8b77cd5",
    "unaligned/private_test/kaggle_weights": "88172fb51c13f44b",
    "unaligned/private_test/labels": "49e7aa6dd73d04f0",
    "unaligned/private_test/missing": "3ed6b66de808b14b",
    "unaligned/private_test/weights": "5467331d29cbfbc5",
    "polar/private_test/features": "337ed9b7e4eeea1d",
    "polar/private_test/jet_multiplicity": "a7a1ad55b8b77cd5",
    "polar/private_test/kaggle_weights": "88172fb51c13f44b",
    "polar/private_test/labels": "49e7aa6dd73d04f0",
    "polar/private_test/missing": "af4ad9adb2365f23",
    "polar/private_test/weights": "5467331d29cbfbc5",
    "cartesian/mean": "f1e3521b97a3f62a",
    "cartesian/scale": "08199300efe6bb0f",
    "unaligned/mean": "f1e3521b97a3f62a",
    "unaligned/scale": "e6807ecb8c40ff46",
    "polar/mean": "05d5541f93af35df",
    "polar/scale": "c96f99ab56ad85ff",
}

PREPARED_PARAMS = {"cartesian": {}, "unaligned": {"align": False}, "polar": {"cartesian": False}}


@pytest.mark.parametrize("chunk", [None, 7])
def test_prepared_outputs_are_unchanged_by_chunked_preparation(
    server: ArchiveServer,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    chunk: int | None,
) -> None:
    if chunk is not None:
        monkeypatch.setattr(higgsml, "_PREPARE_CHUNK", chunk)
    path = write_higgsml_csv(tmp_path / KEY, 6000, seed=5)
    server.add_cernopendata_record(328, {KEY: path}, eos_directory="/eos/opendata/test")
    variant = synthetic_variant(HiggsML, server.url, 328, {KEY: path}, kind="cernopendata")
    splits_ = ("train", "val", "public_test", "private_test")
    digests = output_digests(variant, splits_, PREPARED_PARAMS, settings=settings)
    for tag, params in PREPARED_PARAMS.items():
        info = variant.load_data("val", settings=settings, **params).metadata["info"]
        digests[f"{tag}/mean"] = array_digest(np.array(info["mean"]))
        digests[f"{tag}/scale"] = array_digest(np.array(info["scale"]))
    prepared = {key: value for key, value in digests.items() if not key.startswith("load/")}
    assert prepared == RECORDED_HIGGSML_PREPARED


def test_preparation_engineers_at_most_one_chunk_at_a_time(
    synthetic_higgs: type[Dataset], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(higgsml, "_PREPARE_CHUNK", 300)
    sizes: list[int] = []
    original = higgsml.to_cartesian

    def recording(features: np.ndarray, align: bool) -> tuple[np.ndarray, list[str]]:
        sizes.append(len(features))
        return original(features, align)

    monkeypatch.setattr(higgsml, "to_cartesian", recording)
    prepared = synthetic_higgs.load_data("train", settings=settings)  # fits the statistics too
    assert prepared.features.shape[0] > 1000
    assert max(sizes) == 300, "a whole split was engineered at once"
    assert sum(sizes) >= 2 * prepared.features.shape[0]  # two statistics passes + the split


MOMENT_CASES = [
    (n_rows, chunk)
    for n_rows in (0, 1, 5, 1000, 70_001)
    for chunk in (1, 7, 65_536)
    if not (chunk == 1 and n_rows > 1000)  # row by row over 70k rows: slow, adds nothing
]


@pytest.mark.parametrize(("n_rows", "chunk"), MOMENT_CASES)
def test_chunked_nan_moments_equal_numpy_bit_for_bit(n_rows: int, chunk: int) -> None:
    generator = np.random.default_rng(n_rows)
    values = generator.normal(size=(n_rows, 6)) * [1, 10, 1e3, 1e-3, 5, 1] + [0, -3, 1e4, 1, 2, 0]
    values[generator.random(values.shape) < 0.3] = np.nan
    values[:, 5] = np.nan  # a feature that is never defined

    def blocks() -> list[np.ndarray]:
        return [values[start : start + chunk] for start in range(0, max(n_rows, 1), chunk)]

    mean, scale = higgsml.nan_mean_and_std(blocks)
    with np.errstate(invalid="ignore", divide="ignore"), pytest.warns(RuntimeWarning):
        expected_mean, expected_scale = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
    assert mean.tobytes() == expected_mean.tobytes()
    assert scale.tobytes() == expected_scale.tobytes()
