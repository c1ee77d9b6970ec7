"""The dataset base class end to end: download → verify → convert → memory-mapped load."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

import pd4ml
from pd4ml.config import Settings
from pd4ml.datasets.base import ArrayWriter, Dataset, unregister
from pd4ml.datasets.pd4ml_npz import convert_pd4ml_npz
from pd4ml.errors import ConversionError, OfflineError, UnknownNameError
from pd4ml.manifest import DatasetManifest, DatasetVersion
from pd4ml.testing import ArchiveServer
from pd4ml.testing.demo import write_demo_npz
from tests.conftest import zenodo_manifest


def make_dataset(manifest: DatasetManifest, register: bool = False) -> type[Dataset]:
    class TinyJets(Dataset, register=register):
        name = "testdata"
        manifest_override = manifest
        splits = ("train", "test")
        split_aliases: ClassVar[Mapping[str, str]] = {"training": "train"}

        @classmethod
        def convert(
            cls,
            raw_files: Mapping[str, Path],
            version: DatasetVersion,
            writer: ArrayWriter,
            split: str,
        ) -> None:
            convert_pd4ml_npz(raw_files["jets.npz"], writer, ["points"])

    return TinyJets


@pytest.fixture
def jets_file(tmp_path: Path) -> Path:
    return write_demo_npz(tmp_path / "served" / "jets.npz", n_train=700, n_test=300, seed=4)


@pytest.fixture
def dataset(server: ArchiveServer, jets_file: Path) -> type[Dataset]:
    return make_dataset(zenodo_manifest(server, 500, {"jets.npz": jets_file}, algorithm="sha256"))


def test_load_end_to_end(
    dataset: type[Dataset], settings: Settings, jets_file: Path, server: ArchiveServer
) -> None:
    X, y = dataset.load("train", settings=settings)
    with np.load(jets_file) as original:
        np.testing.assert_array_equal(X[0], original["X_train_0"])
        np.testing.assert_array_equal(y, original["y_train"])
    assert isinstance(X, list) and isinstance(X[0], np.memmap)
    assert not X[0].flags.writeable
    result = dataset.load("test", settings=settings)
    assert result.X[0].shape == (300, 16, 3) and result.n_events == 300
    assert result.metadata.synthetic and result.metadata.source == "synthetic"
    assert result.metadata.version == "v1" and result.metadata.split == "test"
    assert result["points"] is result.X[0]
    assert server.count("*/jets.npz") == 1, "one file feeds both splits: downloaded once"


def test_real_source_is_recorded(
    server: ArchiveServer, settings: Settings, jets_file: Path
) -> None:
    manifest = zenodo_manifest(server, 501, {"jets.npz": jets_file}, synthetic=False)
    result = make_dataset(manifest).load("train", settings=settings)
    assert result.metadata.source == "archive" and not result.metadata.synthetic


def test_warm_load_is_instant_and_offline(
    dataset: type[Dataset], settings: Settings, server: ArchiveServer
) -> None:
    dataset.load("train", settings=settings)
    server.reset_log()
    X, y = dataset.load("train", settings=settings.with_changes(offline=True))
    assert server.count(method=None) == 0
    assert X[0].shape == (700, 16, 3) and y.shape == (700,)


def test_max_events_slices_without_reading(dataset: type[Dataset], settings: Settings) -> None:
    X, y = dataset.load("train", settings=settings, max_events=10)
    assert X[0].shape == (10, 16, 3) and y.shape == (10,)
    assert isinstance(X[0], np.memmap)


def test_split_validation(dataset: type[Dataset], settings: Settings) -> None:
    assert dataset.resolve_split("Training") == "train"
    assert dataset.resolve_split("TEST") == "test"
    with pytest.raises(UnknownNameError, match="did you mean 'test'"):
        dataset.load("tset", settings=settings)
    with pytest.raises(KeyError):  # the original pd4ml raised KeyError: keep that contract
        dataset.load("validation", settings=settings)


def test_offline_load_without_cache(dataset: type[Dataset], settings: Settings) -> None:
    with pytest.raises(OfflineError, match=r"jets\.npz"):
        dataset.load("train", settings=settings.with_changes(offline=True))


def test_bad_raw_file_gives_a_clear_error_and_a_clean_cache(
    server: ArchiveServer, settings: Settings, tmp_path: Path
) -> None:
    bad = tmp_path / "served" / "jets.npz"
    bad.parent.mkdir(parents=True)
    np.savez(
        bad,
        X_train_0=np.zeros((3, 2)),
        y_train=np.zeros((3, 1)),
        X_test_0=np.zeros(1),
        y_test=np.zeros(1),
    )
    dataset = make_dataset(zenodo_manifest(server, 502, {"jets.npz": bad}))
    with pytest.raises(ConversionError, match=r"jets.npz.*y_train has shape"):
        dataset.load("train", settings=settings)
    arrays = settings.data_dir / "testdata" / "v1" / "arrays"
    assert not arrays.exists() or list(arrays.iterdir()) == [], "half-written arrays left behind"


def test_truncated_npz_is_reported(
    server: ArchiveServer, settings: Settings, jets_file: Path, tmp_path: Path
) -> None:
    truncated = tmp_path / "served2" / "jets.npz"
    truncated.parent.mkdir()
    truncated.write_bytes(jets_file.read_bytes()[: jets_file.stat().st_size // 2])
    dataset = make_dataset(zenodo_manifest(server, 503, {"jets.npz": truncated}))
    with pytest.raises(ConversionError, match=r"jets\.npz"):
        dataset.load("train", settings=settings)


def test_converter_version_bump_rebuilds(dataset: type[Dataset], settings: Settings) -> None:
    dataset.load("train", settings=settings)
    meta = settings.data_dir / "testdata" / "v1" / "arrays" / "train" / "meta.json"
    first = meta.stat().st_mtime_ns
    dataset.converter_version = 2  # type: ignore[misc]
    dataset.load("train", settings=settings)
    assert meta.stat().st_mtime_ns != first


@pytest.fixture
def registered(server: ArchiveServer, jets_file: Path) -> Iterator[type[Dataset]]:
    cls = make_dataset(zenodo_manifest(server, 504, {"jets.npz": jets_file}), register=True)
    yield cls
    unregister(cls)


def test_registry_lookup_and_top_level_load(registered: type[Dataset], settings: Settings) -> None:
    assert pd4ml.get("testdata") is registered
    assert pd4ml.get("Test-Data") is registered
    assert pd4ml.get("TinyJets") is registered
    assert pd4ml.datasets()[-1] is registered
    X, y = pd4ml.load("testdata", "test", settings=settings)
    assert X[0].shape == (300, 16, 3) and y.shape == (300,)
    with pytest.raises(UnknownNameError, match="did you mean 'testdata'"):
        pd4ml.get("testdat")


def test_description_info_cite(dataset: type[Dataset]) -> None:
    assert dataset.description == "test data"
    assert "version v1" in dataset.info()
    assert "Shared Data and Algorithms" in dataset.cite()


def test_object_arrays_are_refused(
    server: ArchiveServer, settings: Settings, tmp_path: Path
) -> None:
    evil = tmp_path / "served" / "jets.npz"
    evil.parent.mkdir(parents=True)
    objects = np.empty(2, dtype=object)
    objects[:] = [{"a": 1}, None]
    np.savez(evil, X_train_0=objects, y_train=np.zeros(2), X_test_0=objects, y_test=np.zeros(2))
    dataset = make_dataset(zenodo_manifest(server, 505, {"jets.npz": evil}))
    with pytest.raises(ConversionError, match="refusing to unpickle"):
        dataset.load("train", settings=settings)
