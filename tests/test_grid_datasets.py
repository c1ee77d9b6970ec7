"""Spinodal, EOS and Airshower: original npz layouts, train-fitted scaling, shared grid graphs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pd4ml import EOS, Airshower, Spinodal
from pd4ml.config import Settings
from pd4ml.datasets import airshower, images, splits
from pd4ml.datasets.base import Dataset
from pd4ml.errors import ConversionError, DownloadError
from pd4ml.graphs import grid_neighbours
from pd4ml.testing import ArchiveServer
from pd4ml.testing.synthetic import (
    airshower_events,
    output_digests,
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


# -- streaming in chunks: outputs unchanged ------------------------------------------------------
# digests of the arrays conversion and preparation gave before they streamed in chunks
RECORDED_AIRSHOWER = {
    "graph/test/features": "29e1640476fa99bc",
    "graph/test/grid_mask": "9cf94d0084059fd5",
    "graph/test/grid_neighbours": "30e0f816a031934a",
    "graph/test/labels": "7b6d085aa17613c0",
    "graph/test/station_mask": "3ade45f46f482b8c",
    "graph/test/station_positions": "6bfde64f862ff936",
    "graph/train/features": "83ed0cb43ac06f04",
    "graph/train/grid_mask": "9cf94d0084059fd5",
    "graph/train/grid_neighbours": "30e0f816a031934a",
    "graph/train/labels": "84eb65fdab85c243",
    "graph/train/station_mask": "7d033bfda28c9f05",
    "graph/train/station_positions": "6bfde64f862ff936",
    "graph/val/features": "bd5280b85c6e674d",
    "graph/val/grid_mask": "9cf94d0084059fd5",
    "graph/val/grid_neighbours": "30e0f816a031934a",
    "graph/val/labels": "ef8bfe356f4cf424",
    "graph/val/station_mask": "2e181bb7e0b4464f",
    "graph/val/station_positions": "6bfde64f862ff936",
    "load/test/X0": "9eb514ea6c3cd69a",
    "load/test/X1": "16ee38a113d8f1f4",
    "load/test/X2": "6bfde64f862ff936",
    "load/test/y": "5dc462fd64f645e0",
    "load/train/X0": "b624182499c0420d",
    "load/train/X1": "103b583251d99cba",
    "load/train/X2": "6bfde64f862ff936",
    "load/train/y": "cb086a8c59edaa39",
    "load/val/X0": "72f50ecf5d8b5196",
    "load/val/X1": "d7135c800344872f",
    "load/val/X2": "6bfde64f862ff936",
    "load/val/y": "6b3fef3bcb9c9f50",
}
RECORDED_SPINODAL = {
    "graph/test/features": "41c91f794288c1f5",
    "graph/test/grid_mask": "351ad9f1292acd8e",
    "graph/test/grid_neighbours": "7ea6fa0ac38f4faa",
    "graph/test/labels": "5eb0a97408dc84bd",
    "graph/train/features": "867cbbc3f37fffea",
    "graph/train/grid_mask": "351ad9f1292acd8e",
    "graph/train/grid_neighbours": "7ea6fa0ac38f4faa",
    "graph/train/labels": "117cd749c20c239c",
    "graph/val/features": "525b7c97c8781ef4",
    "graph/val/grid_mask": "351ad9f1292acd8e",
    "graph/val/grid_neighbours": "7ea6fa0ac38f4faa",
    "graph/val/labels": "a49af7fd84d8e532",
    "load/test/X0": "82c03b1b0f1cf8b3",
    "load/test/y": "5eb0a97408dc84bd",
    "load/train/X0": "0868d90c84dd9e33",
    "load/train/y": "117cd749c20c239c",
    "load/val/X0": "81eab85fade12353",
    "load/val/y": "a49af7fd84d8e532",
    "nodes/test/features": "eefacd717ef102e1",
    "nodes/test/labels": "5eb0a97408dc84bd",
    "nodes/train/features": "9ec4f12754e0e8f8",
    "nodes/train/labels": "117cd749c20c239c",
    "nodes/val/features": "853d6fd7082fc637",
    "nodes/val/labels": "a49af7fd84d8e532",
}
RECORDED_EOS = {
    "graph/test/features": "a73f2ebe4edf24bd",
    "graph/test/grid_mask": "93f5294f37d3c9c4",
    "graph/test/grid_neighbours": "99b42b2fcf3b206a",
    "graph/test/labels": "5eb0a97408dc84bd",
    "graph/train/features": "a73cd666fcafba19",
    "graph/train/grid_mask": "93f5294f37d3c9c4",
    "graph/train/grid_neighbours": "99b42b2fcf3b206a",
    "graph/train/labels": "117cd749c20c239c",
    "graph/val/features": "953321efbc8a8b6a",
    "graph/val/grid_mask": "93f5294f37d3c9c4",
    "graph/val/grid_neighbours": "99b42b2fcf3b206a",
    "graph/val/labels": "a49af7fd84d8e532",
    "load/test/X0": "4cc39c004585755d",
    "load/test/y": "5eb0a97408dc84bd",
    "load/train/X0": "168b607770758ed7",
    "load/train/y": "117cd749c20c239c",
    "load/val/X0": "c6ff870d98217015",
    "load/val/y": "a49af7fd84d8e532",
    "nodes/test/features": "fcfed025e994df21",
    "nodes/test/labels": "5eb0a97408dc84bd",
    "nodes/train/features": "2394d67f9715f88c",
    "nodes/train/labels": "117cd749c20c239c",
    "nodes/val/features": "7c8a14a0bfa6b0f4",
    "nodes/val/labels": "a49af7fd84d8e532",
}


@pytest.mark.parametrize("chunk", [None, 7])
@pytest.mark.parametrize("kind", ["airshower", "spinodal", "eos"])
def test_outputs_are_unchanged_by_chunking(
    server: ArchiveServer,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    chunk: int | None,
) -> None:
    if chunk is not None:
        for module in (splits, images, airshower):
            monkeypatch.setattr(module, "_CHUNK", chunk)
    if kind == "airshower":
        path = write_airshower_npz(tmp_path / AIR, n_train=200, n_test=60, seed=4)
        variant = serve(server, Airshower, 901, AIR, path)
        prepared: dict[str, dict[str, Any]] = {"graph": {"graph": True}}
        expected = RECORDED_AIRSHOWER
    else:
        key = SPINODAL if kind == "spinodal" else EOS_FILE
        path = write_pd4ml_image_npz(tmp_path / key, kind, n_train=300, n_test=100, seed=2)
        variant = serve(server, Spinodal if kind == "spinodal" else EOS, 902, key, path)
        prepared = {"graph": {"graph": True}, "nodes": {"form": "nodes"}}
        expected = RECORDED_SPINODAL if kind == "spinodal" else RECORDED_EOS
    digests = output_digests(variant, ("train", "val", "test"), prepared, settings=settings)
    assert digests == expected
