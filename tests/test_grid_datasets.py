"""Spinodal, EOS and Airshower: original npz layouts, train-fitted scaling, shared grid graphs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pd4ml import EOS, Airshower, Spinodal
from pd4ml.config import Settings
from pd4ml.datasets.base import Dataset
from pd4ml.errors import ConversionError, DownloadError
from pd4ml.graphs import grid_neighbours
from pd4ml.testing import ArchiveServer
from pd4ml.testing.synthetic import (
    airshower_events,
    synthetic_variant,
    write_airshower_npz,
    write_pd4ml_image_npz,
)

SPINODAL = "2_spinodal_29k.npz"
EOS_FILE = "3_EOSL_or_EOSQ_180k.npz"
AIR = "4_airshower_100k_regression.npz"


def serve(
    server: ArchiveServer, dataset: type[Dataset], record: int, key: str, path: Path
) -> type[Dataset]:
    server.add_zenodo_record(record, {key: path})
    return synthetic_variant(
        dataset, server.url, record, {key: path}, template_version="pd4ml-2021"
    )


@pytest.mark.parametrize(("rows", "columns"), [(3, 3), (9, 9), (20, 20), (24, 24), (4, 7)])
def test_grid_neighbour_counts(rows: int, columns: int) -> None:
    neighbours, valid = grid_neighbours(rows, columns)
    counts = valid.sum(axis=1).reshape(rows, columns)
    assert counts[0, 0] == counts[0, -1] == counts[-1, 0] == counts[-1, -1] == 3  # corners
    assert (counts[0, 1:-1] == 5).all() and (counts[1:-1, 0] == 5).all()  # edges
    assert (counts[1:-1, 1:-1] == 8).all()  # interior
    edges = 2 * (rows * (columns - 1) + columns * (rows - 1)) + 4 * (rows - 1) * (columns - 1)
    assert (
        int(valid.sum()) == edges
    )  # 4n(n-1) + 4(n-1)² for n × n: 544 for 9 × 9, 4,324 for 24 × 24
    for cell in range(rows * columns):  # brute force: king moves, no self
        r, c = divmod(cell, columns)
        expected = {rr * columns + cc for rr in range(r - 1, r + 2) for cc in range(c - 1, c + 2)
                    if (rr, cc) != (r, c) and 0 <= rr < rows and 0 <= cc < columns}  # fmt: skip
        assert set(neighbours[cell][valid[cell]].tolist()) == expected
    assert (neighbours[~valid] == -1).all()
    four, four_valid = grid_neighbours(rows, columns, 4)
    assert four.shape == (rows * columns, 4) and int(four_valid[columns + 1].sum()) == 4
    assert int(four_valid[0].sum()) == 2


@pytest.mark.parametrize(
    ("dataset", "key", "kind", "side"),
    [(Spinodal, SPINODAL, "spinodal", 20), (EOS, EOS_FILE, "eos", 24)],
)
def test_histogram_datasets(
    server: ArchiveServer,
    settings: Settings,
    tmp_path: Path,
    dataset: type[Dataset],
    key: str,
    kind: str,
    side: int,
) -> None:
    path = write_pd4ml_image_npz(tmp_path / key, kind, n_train=300, n_test=100, seed=2)
    variant = serve(server, dataset, 700, key, path)
    sizes = {
        split: variant.load(split, settings=settings).n_events for split in ("train", "val", "test")
    }
    assert sizes == {"train": 270, "val": 30, "test": 100}
    X, y = variant.load("test", settings=settings)
    np.testing.assert_array_equal(X[0], np.load(path)["X_test_0"])
    assert X[0].shape == (100, side, side) and y.dtype == np.int64
    image = variant.load_data("test", standardise=True, settings=settings)
    assert image.features.shape == (100, 1, side, side)
    nodes = variant.load_data("test", standardise=True, form="nodes", graph=True, settings=settings)
    assert nodes.features.shape == (100, side * side, 1)
    assert nodes["grid_neighbours"].shape == (side * side, 8), (
        "the grid must be shared, not per event"
    )
    np.testing.assert_array_equal(
        nodes.features.reshape(100, side, side), image.features.reshape(100, side, side)
    )
    train = np.asarray(variant.load("train", settings=settings).X[0], dtype=np.float64)
    mean, std = train.mean(axis=0), train.std(axis=0)
    expected = (np.asarray(X[0], dtype=np.float64) - mean) / np.where(std > 0, std, 1)
    np.testing.assert_allclose(image.features[:, 0], expected, rtol=1e-4, atol=1e-4)


def test_histogram_with_nan_is_refused(
    server: ArchiveServer, settings: Settings, tmp_path: Path
) -> None:
    bad = tmp_path / SPINODAL
    images = np.zeros((10, 20, 20), dtype=np.float32)
    images[3, 4, 5] = np.nan
    np.savez(bad, X_train_0=images, y_train=np.zeros(10), X_test_0=images[:2], y_test=np.zeros(2))
    variant = serve(server, Spinodal, 701, SPINODAL, bad)
    with pytest.raises(ConversionError, match=r"2_spinodal_29k\.npz: X_train_0 contains NaN"):
        variant.load("train", settings=settings)


def test_wrong_histogram_shape_is_named(
    server: ArchiveServer, settings: Settings, tmp_path: Path
) -> None:
    bad = tmp_path / EOS_FILE
    np.savez(
        bad,
        X_train_0=np.zeros((10, 20, 20)),
        y_train=np.zeros(10),
        X_test_0=np.zeros((2, 24, 24)),
        y_test=np.zeros(2),
    )
    variant = serve(server, EOS, 702, EOS_FILE, bad)
    with pytest.raises(ConversionError, match=r"X_train_0 has shape \(10, 20, 20\)"):
        variant.load("train", settings=settings)


def test_airshower(server: ArchiveServer, settings: Settings, tmp_path: Path) -> None:
    path = write_airshower_npz(tmp_path / AIR, n_train=200, n_test=60, seed=4)
    variant = serve(server, Airshower, 703, AIR, path)
    (signal, time, positions), xmax = variant.load("test", settings=settings)
    assert (
        signal.shape == (60, 9, 9, 80)
        and time.shape == (60, 9, 9, 1)
        and positions.shape == (81, 3)
    )
    assert (
        xmax.dtype == np.float32
        and variant.load("val", settings=settings).n_events
        + variant.load("train", settings=settings).n_events
        == 200
    )
    prepared = variant.load_data("test", graph=True, settings=settings)
    assert prepared.features.shape == (60, 81, 81) and prepared["station_mask"].shape == (60, 81)
    assert prepared["grid_neighbours"].shape == (81, 8)
    # train-fitted constants, reused for test (brute force)
    train_time = np.asarray(
        variant.load("train", settings=settings)["time"], dtype=np.float64
    ).reshape(-1, 81)
    centred = []
    for row in train_time:
        valid = row != -1
        centred.extend(row[valid] - row[valid].mean())
    scale = np.sqrt(np.mean(np.square(centred)))
    info = prepared.metadata["info"]
    assert info["time_scale"] == pytest.approx(scale, rel=1e-6)
    test_time = np.asarray(time, dtype=np.float64).reshape(60, 81)
    event = int(np.argmax((test_time != -1).sum(axis=1)))
    valid = test_time[event] != -1
    expected = (test_time[event][valid] - test_time[event][valid].mean()) / scale
    np.testing.assert_allclose(prepared.features[event, valid, 80], expected, rtol=1e-5, atol=1e-5)
    assert (prepared.features[event, ~valid, 80] == 0).all()
    traces = np.asarray(signal[event], dtype=np.float64).reshape(81, 80)
    np.testing.assert_allclose(
        prepared.features[event, :, :80],
        np.log10(np.where(traces == -1, 0, traces) + 1),
        rtol=1e-5,
        atol=1e-6,
    )
    # the target: standardised with train statistics, exactly invertible to g/cm²
    train_xmax = np.asarray(variant.load("train", settings=settings).y, dtype=np.float64)
    assert info["xmax_mean"] == pytest.approx(train_xmax.mean()) and info[
        "xmax_scale"
    ] == pytest.approx(train_xmax.std())
    np.testing.assert_allclose(
        Airshower.xmax_from_labels(prepared.labels, prepared), xmax, rtol=1e-5
    )
    raw = variant.load_data("test", standardise_target=False, settings=settings)
    np.testing.assert_allclose(raw.labels, xmax)


def test_airshower_wrong_trace_shape(
    server: ArchiveServer, settings: Settings, tmp_path: Path
) -> None:
    signal, time, positions, xmax = airshower_events(5, seed=1)
    bad = tmp_path / AIR
    np.savez(bad, X_train_0=signal[..., :40], X_train_1=time, X_train_2=positions, y_train=xmax,
             X_test_0=signal, X_test_1=time, X_test_2=positions, y_test=xmax)  # fmt: skip
    variant = serve(server, Airshower, 704, AIR, bad)
    with pytest.raises(
        ConversionError, match=r"X_train_0 is \(5, 9, 9, 40\); expected \(N, 9, 9, 80\)"
    ):
        variant.load("train", settings=settings)


def zenodo_spinodal(server: ArchiveServer, record: int) -> type[Dataset]:
    """The real manifest's Zenodo 5710736 version, served by the loopback server (synthetic)."""
    from dataclasses import replace

    manifest = Spinodal.manifest()
    version = manifest.version("zenodo-5710736")
    served = replace(
        version,
        synthetic=True,
        source=replace(version.source, base_url=server.url, record=str(record)),
    )
    return type(
        "ZenodoSpinodal",
        (Spinodal,),
        {"manifest_override": replace(manifest, versions=(served,), default_version=served.name)},
        register=False,
    )


def test_record_api_file_pattern(server: ArchiveServer, settings: Settings, tmp_path: Path) -> None:
    path = write_pd4ml_image_npz(
        tmp_path / "spinodal_classification.npz", "spinodal", 100, 40, seed=8
    )
    server.add_zenodo_record(5710736, {"spinodal_classification.npz": path})
    dataset = zenodo_spinodal(server, 5710736)
    result = dataset.load("test", settings=settings)
    assert result.n_events == 40 and result.metadata.synthetic
    assert "spinodal_classification.npz" in result.metadata.files
    assert server.count("/api/records/5710736") == 1
    server.reset_log()
    offline = dataset.load(
        "train", settings=settings.with_changes(offline=True)
    )  # resolved from record.json
    assert offline.n_events == 90 and server.count(method=None) == 0


def test_ambiguous_file_pattern_is_reported(
    server: ArchiveServer, settings: Settings, tmp_path: Path
) -> None:
    first = write_pd4ml_image_npz(tmp_path / "a.npz", "spinodal", 10, 5)
    second = write_pd4ml_image_npz(tmp_path / "b.npz", "spinodal", 10, 5, seed=1)
    server.add_zenodo_record(5710737, {"a.npz": first, "b.npz": second})
    with pytest.raises(DownloadError, match=r"'\*\.npz' matches 2 file\(s\).*a\.npz, b\.npz"):
        zenodo_spinodal(server, 5710737).load("train", settings=settings)
