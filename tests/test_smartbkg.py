"""SmartBKG: the original pd4ml npz layout, PDG embedding index, decay-tree graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pd4ml import SmartBKG
from pd4ml.config import Settings
from pd4ml.datasets import smartbkg
from pd4ml.datasets.base import Dataset
from pd4ml.datasets.smartbkg import pdg_index, pdg_vocabulary
from pd4ml.errors import ConversionError
from pd4ml.graphs import decay_tree_dense, decay_tree_edges
from pd4ml.testing import ArchiveServer
from pd4ml.testing.synthetic import (
    output_digests,
    smartbkg_events,
    synthetic_variant,
    write_smartbkg_npz,
)

KEY = "6_belle_selective_400k.npz"


@pytest.fixture(scope="module")
def npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_smartbkg_npz(
        tmp_path_factory.mktemp("belle") / KEY, n_train=400, n_test=150, seed=3
    )


@pytest.fixture
def synthetic_belle(server: ArchiveServer, npz: Path) -> type[Dataset]:
    server.add_zenodo_record(600, {KEY: npz})
    return synthetic_variant(SmartBKG, server.url, 600, {KEY: npz}, template_version="pd4ml-2021")


def test_load_shapes_and_splits(
    synthetic_belle: type[Dataset], settings: Settings, npz: Path
) -> None:
    sizes = {}
    for split in ("train", "val", "test"):
        result = synthetic_belle.load(split, settings=settings)
        (particles, mothers), labels = result
        assert particles.shape[1:] == (100, 9) and particles.dtype == np.float32
        assert mothers.shape == particles.shape[:2] and mothers.dtype == np.int32
        assert labels.dtype == np.int64 and result.metadata.synthetic
        sizes[split] = result.n_events
    assert sizes == {"train": 360, "val": 40, "test": 150}
    original = np.load(npz)
    test_particles, test_mothers = synthetic_belle.load("test", settings=settings).X
    np.testing.assert_array_equal(test_particles, original["X_test_0"])
    np.testing.assert_array_equal(test_mothers, original["X_test_1"].astype(np.int32))
    val_labels = synthetic_belle.load("val", settings=settings).y
    train_labels = original["y_train"]
    assert abs(val_labels.mean() - train_labels.mean()) < 0.05  # stratified


def test_pdg_index_against_a_dictionary() -> None:
    generator = np.random.default_rng(0)
    tokens = generator.integers(1, 40, (50, 100)).astype(np.float32)
    mask = generator.random((50, 100)) < 0.7
    vocabulary = pdg_vocabulary(tokens, mask, 10)
    counts: dict[int, int] = {}
    for token in tokens[mask].astype(int):
        counts[int(token)] = counts.get(int(token), 0) + 1
    expected_order = sorted(counts, key=lambda token: (-counts[token], token))[:10]
    assert vocabulary.tolist() == expected_order
    lookup = {token: position + 1 for position, token in enumerate(expected_order)}
    index = pdg_index(tokens, mask, vocabulary)
    for event in range(50):
        for slot in range(100):
            wanted = lookup.get(int(tokens[event, slot]), 11) if mask[event, slot] else 0
            assert index[event, slot] == wanted


def brute_force_edges(mothers: np.ndarray) -> list[set[tuple[int, int]]]:
    return [
        {(int(mother), daughter) for daughter, mother in enumerate(row) if mother >= 0}
        for row in mothers
    ]


def test_decay_graph_against_brute_force() -> None:
    _, mothers, _ = smartbkg_events(30, seed=9)
    mothers = mothers.astype(np.int32)
    edges, valid = decay_tree_edges(mothers)
    for event, expected in enumerate(brute_force_edges(mothers)):
        assert {tuple(pair) for pair in edges[event][valid[event]].tolist()} == expected
        assert (edges[event][~valid[event]] == -1).all()
    dense = decay_tree_dense(mothers)
    for event in range(30):
        wanted = np.zeros((100, 100), dtype=np.int8)
        for daughter, mother in enumerate(mothers[event]):
            if mother >= 0:
                wanted[daughter, mother] = wanted[mother, daughter] = 1
                wanted[daughter, daughter] = 1
        np.testing.assert_array_equal(dense[event], wanted)


def test_load_data(synthetic_belle: type[Dataset], settings: Settings) -> None:
    prepared = synthetic_belle.load_data(
        "val", graph=True, num_pdg=20, one_hot=True, dense_adjacency=True, settings=settings
    )
    n = prepared.labels.shape[0]
    assert prepared.features.shape == (n, 100, 8) and prepared["pdg"].dtype == np.int32
    assert prepared["pdg_one_hot"].shape == (n, 100, 20)
    mask = np.asarray(prepared["mask"])
    assert (np.asarray(prepared["pdg"])[~mask] == 0).all() and (
        np.asarray(prepared["pdg"])[mask] >= 1
    ).all()
    assert (np.asarray(prepared.features)[~mask] == 0).all()
    one_hot = np.asarray(prepared["pdg_one_hot"])
    known = (np.asarray(prepared["pdg"]) >= 1) & (np.asarray(prepared["pdg"]) <= 20)
    assert (one_hot.sum(axis=-1) == known).all()
    assert prepared["edges"].shape[0] == n and prepared["adjacency"].shape == (n, 100, 100)
    train = synthetic_belle.load_data("train", settings=settings)
    features = np.asarray(train.features)[np.asarray(train["mask"])]
    np.testing.assert_allclose(features.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(features.std(axis=0), 1, atol=1e-3)
    assert (
        train.metadata["info"]["pdg_vocabulary"][:3]
        == prepared.metadata["info"]["pdg_vocabulary"][:3]
    )


def test_wrong_shapes_are_named(server: ArchiveServer, settings: Settings, tmp_path: Path) -> None:
    bad = tmp_path / KEY
    arrays = {"X_train_0": np.zeros((5, 100, 8)), "X_train_1": np.zeros((5, 100))}
    arrays |= {"y_train": np.zeros(5), "X_test_0": np.zeros((2, 100, 9))}
    arrays |= {"X_test_1": np.zeros((2, 100)), "y_test": np.zeros(2)}
    np.savez(bad, **arrays)
    server.add_zenodo_record(601, {KEY: bad})
    dataset = synthetic_variant(
        SmartBKG, server.url, 601, {KEY: bad}, template_version="pd4ml-2021"
    )
    with pytest.raises(
        ConversionError, match=r"6_belle_selective_400k\.npz: X_train_0 has shape \(5, 100, 8\)"
    ):
        dataset.load("train", settings=settings)
    arrays = settings.data_dir / "smartbkg" / "synthetic-pd4ml-2021" / "arrays"
    assert not arrays.exists() or list(arrays.iterdir()) == []


# -- streaming in chunks: outputs unchanged ------------------------------------------------------
# digests of the arrays conversion and preparation gave before the graph and the PDG tally
# were computed in chunks (300 + 100 events, seed 3)
RECORDED_SMARTBKG = {
    "graph/test/adjacency": "7be202b966ed315d",
    "graph/test/edge_mask": "8c27f9efa5b62a1f",
    "graph/test/edges": "235ad5615953660b",
    "graph/test/features": "a89ced2f6dd65d55",
    "graph/test/labels": "baf69c4bb76f5d15",
    "graph/test/mask": "e2c3284596929c27",
    "graph/test/pdg": "11677cc71fbcd6ba",
    "graph/test/pdg_one_hot": "33d1d8c46e819f7b",
    "graph/train/adjacency": "4687b7c826a5d819",
    "graph/train/edge_mask": "a7b66817396f2610",
    "graph/train/edges": "f1c6b9403163657c",
    "graph/train/features": "ad93e7cc3503873e",
    "graph/train/labels": "41fdc298f5827fce",
    "graph/train/mask": "eb2578466f1a7675",
    "graph/train/pdg": "170fc74c3b52cdad",
    "graph/train/pdg_one_hot": "8b8f75ea59ec5f54",
    "graph/val/adjacency": "4019deb142e01cd5",
    "graph/val/edge_mask": "bd8a739f226fdc1c",
    "graph/val/edges": "004ff0fcaebbd723",
    "graph/val/features": "681814d9be90a090",
    "graph/val/labels": "13cf58990d61f626",
    "graph/val/mask": "6bb7ff13d9e4ffa7",
    "graph/val/pdg": "d756e0321b9ad834",
    "graph/val/pdg_one_hot": "77f96eb3d1ca83cd",
    "load/test/X0": "e9d5e3bd6b73b2cf",
    "load/test/X1": "aba1bc670b2c9f04",
    "load/test/y": "baf69c4bb76f5d15",
    "load/train/X0": "13529923342113fd",
    "load/train/X1": "dd2954a0be8c1775",
    "load/train/y": "41fdc298f5827fce",
    "load/val/X0": "d5f98c14e6abe838",
    "load/val/X1": "5449930baadc1de3",
    "load/val/y": "13cf58990d61f626",
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
        monkeypatch.setattr(smartbkg, "_CHUNK", chunk)
    path = write_smartbkg_npz(tmp_path / KEY, 300, 100, seed=3)
    server.add_zenodo_record(904, {KEY: path})
    variant = synthetic_variant(
        SmartBKG, server.url, 904, {KEY: path}, template_version="pd4ml-2021"
    )
    prepared = {"graph": {"graph": True, "dense_adjacency": True, "one_hot": True, "num_pdg": 20}}
    digests = output_digests(variant, ("train", "val", "test"), prepared, settings=settings)
    assert digests == RECORDED_SMARTBKG
