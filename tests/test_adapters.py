"""The PyTorch, PyTorch Geometric and TensorFlow adapters on every dataset (synthetic files
served by the loopback archive server, through the real download → convert → prepare path)."""

from __future__ import annotations

import pickle
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pytest

from pd4ml.adapters.common import ADJACENCY_VERSION, batch_rows, count_batches, dense_adjacency
from pd4ml.adapters.original import adjacency, original_inputs
from pd4ml.datasets.base import Dataset, PreparedData
from pd4ml.graphs import decay_tree_dense, grid_neighbours, neighbours_to_dense
from pd4ml.testing import ArchiveServer
from tests.cases import CASES, GRAPH_CASES, World

torch = pytest.importorskip("torch", reason="the torch extra is not installed")


BATCH = 32


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with ArchiveServer() as server:
        yield World(tmp_path_factory.mktemp("adapters"), server)


def expected_batch(data: PreparedData, rows: slice | np.ndarray) -> dict[str, np.ndarray]:
    """What a batch must hold: the same rows of every per-event array of ``load_data``."""
    names = [name for name in data.per_event() if name != "weights"]
    batch = {name: np.asarray(data[name][rows]) for name in names}
    for name in ("neighbours", "edges"):  # node indices are served as int64
        if name in batch:
            batch[name] = batch[name].astype(np.int64)
    weights = data.weights
    batch["weights"] = (
        np.ones(len(batch["labels"]), dtype=np.float32)
        if weights is None
        else np.asarray(weights[rows], dtype=np.float32)
    )
    return batch


def check_batch(got: dict[str, Any], expected: dict[str, np.ndarray], regression: bool) -> None:
    assert set(got) == set(expected)
    for name, value in expected.items():
        array = np.asarray(got[name])
        assert array.shape == value.shape, name
        if name == "labels":
            assert array.dtype == (np.float32 if regression else np.int64)
            np.testing.assert_array_equal(array, value.astype(array.dtype))
        elif name == "weights":
            assert array.dtype == np.float32
            np.testing.assert_array_equal(array, value)
        else:
            assert array.dtype == value.dtype, name
            np.testing.assert_array_equal(array, value, err_msg=name)


def is_regression(dataset: type[Dataset]) -> bool:
    return dataset.manifest().task == "regression"


# -- shuffling -------------------------------------------------------------------------------------


def test_batch_rows_unshuffled_are_consecutive_slices() -> None:
    assert list(batch_rows(10, 4)) == [slice(0, 4), slice(4, 8), slice(8, 10)]
    assert list(batch_rows(10, 4, drop_last=True)) == [slice(0, 4), slice(4, 8)]
    assert count_batches(10, 4, False) == 3 and count_batches(10, 4, True) == 2


def test_block_shuffling_covers_each_event_once_in_few_blocks() -> None:
    n, size, window = 1000, 32, 4
    epoch0 = list(batch_rows(n, size, shuffle="blocks", seed=1, epoch=0, window=window))
    rows = np.concatenate(epoch0)
    assert sorted(rows.tolist()) == list(range(n))
    assert len(epoch0) == count_batches(n, size, False)
    assert sum(len(batch) < size for batch in epoch0) == 1
    for batch in epoch0:
        assert np.all(np.diff(batch) > 0)  # sorted: one ascending pass over the memory map
        assert len(np.unique(batch // size)) <= window  # drawn from at most `window` blocks
    assert not np.array_equal(rows, np.arange(n))
    again = list(batch_rows(n, size, shuffle="blocks", seed=1, epoch=0, window=window))
    assert all(np.array_equal(a, b) for a, b in zip(epoch0, again, strict=True))
    epoch1 = np.concatenate(list(batch_rows(n, size, shuffle="blocks", seed=1, epoch=1)))
    assert not np.array_equal(rows, epoch1)
    dropped = list(batch_rows(n, size, shuffle="blocks", seed=1, drop_last=True))
    assert all(len(batch) == size for batch in dropped) and len(dropped) == n // size
    with pytest.raises(ValueError, match="batch_size"):
        list(batch_rows(n, 0))


def test_uniform_shuffling_is_a_seeded_permutation_of_every_event() -> None:
    n, size = 1000, 32
    epoch0 = list(batch_rows(n, size, shuffle=True, seed=1, epoch=0))
    rows = np.concatenate(epoch0)
    assert np.array_equal(np.sort(rows), np.arange(n))  # every event exactly once
    assert len(epoch0) == count_batches(n, size, False)
    assert [len(batch) for batch in epoch0] == [size] * (n // size) + [n % size]
    for batch in epoch0:
        assert batch.dtype == np.int64 and np.all(np.diff(batch) > 0)  # sorted for locality
    # far more scattered than a block shuffle: a batch spans most of the split
    assert np.median([len(np.unique(batch // size)) for batch in epoch0]) > 20
    again = np.concatenate(list(batch_rows(n, size, shuffle=True, seed=1, epoch=0)))
    assert np.array_equal(rows, again)  # the order depends on (seed, epoch) only
    assert not np.array_equal(
        rows, np.concatenate(list(batch_rows(n, size, shuffle=True, seed=1, epoch=1)))
    )
    assert not np.array_equal(rows, np.concatenate(list(batch_rows(n, size, shuffle=True, seed=2))))
    dropped = list(batch_rows(n, size, shuffle=True, seed=1, drop_last=True))
    assert [len(batch) for batch in dropped] == [size] * (n // size)
    assert len(np.unique(np.concatenate(dropped))) == size * (n // size)
    with pytest.raises(ValueError, match="'blocks'"):
        list(batch_rows(n, size, shuffle="window"))  # type: ignore[arg-type]


def first_batch_z_squared(first_batches: list[np.ndarray], n: int) -> float:
    """Mean squared z-score of the class-1 count of batches drawn from a split of ``n`` events
    whose labels are sorted (the first half 0, the second half 1): about 1 for uniform samples
    (hypergeometric counts), far above for batches drawn from a few regions of the file."""
    scores = []
    for labels in first_batches:
        size = len(labels)
        variance = size * 0.25 * (n - size) / (n - 1)
        scores.append((int(np.sum(labels)) - size / 2) ** 2 / variance)
    return float(np.mean(scores))


def test_uniform_shuffling_samples_a_class_sorted_split_uniformly() -> None:
    n, size = 20_000, 128
    labels = (np.arange(n) >= n // 2).astype(np.int64)
    uniform = [labels[next(batch_rows(n, size, shuffle=True, epoch=e))] for e in range(20)]
    assert first_batch_z_squared(uniform, n) < 3
    blocks = [labels[next(batch_rows(n, size, shuffle="blocks", epoch=e))] for e in range(20)]
    assert first_batch_z_squared(blocks, n) > 5  # the explicit opt-in is not uniform


def sorted_split(n: int) -> PreparedData:
    """An in-memory kNN split of ``n`` events whose labels are sorted (first half 0); feature
    column 0 of every node is the event number."""
    features = np.zeros((n, 4, 2), dtype=np.float32)
    features[:, :, 0] = np.arange(n, dtype=np.float32)[:, None]
    ring = np.array([[1, 3], [0, 2], [1, 3], [0, 2]], dtype=np.int8)
    arrays = {
        "features": features,
        "mask": np.ones((n, 4), dtype=bool),
        "neighbours": np.broadcast_to(ring, (n, 4, 2)).copy(),
        "neighbour_mask": np.ones((n, 4, 2), dtype=bool),
        "labels": (np.arange(n) >= n // 2).astype(np.int64),
    }
    metadata = {"dataset": "sorted", "split": "train", "params": {"graph": True}}
    return PreparedData(arrays, metadata)


def test_shuffled_loaders_sample_a_class_sorted_split_uniformly() -> None:
    from pd4ml.adapters.torch import TorchEvents

    n, size = 20_000, 128
    data = sorted_split(n)
    loader = TorchEvents(data).loader(batch_size=size, shuffle=True, seed=4)
    firsts = [next(iter(loader))["labels"].numpy() for _ in range(20)]  # one epoch each
    assert first_batch_z_squared(firsts, n) < 3
    blocks = TorchEvents(data).loader(batch_size=size, shuffle="blocks", seed=4)
    assert first_batch_z_squared([next(iter(blocks))["labels"].numpy() for _ in range(20)], n) > 5
    pytest.importorskip("torch_geometric", reason="the geometric extra is not installed")
    from pd4ml.adapters.pyg import GraphEvents

    graphs = GraphEvents(data).loader(batch_size=size, shuffle=True, seed=4)
    firsts = [next(iter(graphs)).y.numpy() for _ in range(20)]
    assert first_batch_z_squared(firsts, n) < 3


def test_tf_shuffling_samples_a_class_sorted_split_uniformly(tf: Any) -> None:
    from pd4ml.adapters.tf import TfEvents

    n, size = 20_000, 128
    dataset = TfEvents(sorted_split(n)).dataset(batch_size=size, shuffle=True, seed=4)
    firsts = [next(iter(dataset))[1].numpy() for _ in range(20)]  # a new key each pass
    assert first_batch_z_squared(firsts, n) < 3


def test_shuffled_epochs_hold_every_event_exactly_once(tf: Any) -> None:
    pytest.importorskip("torch_geometric", reason="the geometric extra is not installed")
    from pd4ml.adapters.pyg import GraphEvents
    from pd4ml.adapters.tf import TfEvents
    from pd4ml.adapters.torch import TorchEvents

    n, size = 1000, 64
    data = sorted_split(n)
    for shuffle in (True, "blocks"):
        for epoch in range(2):
            loader = TorchEvents(data).loader(batch_size=size, shuffle=shuffle, seed=epoch)
            seen = torch.cat([batch["features"][:, 0, 0] for batch in loader]).numpy()
            assert np.array_equal(np.sort(seen), np.arange(n)), shuffle
            dataset = TfEvents(data).dataset(batch_size=size, shuffle=shuffle, seed=epoch)
            seen = np.concatenate([inputs["features"].numpy()[:, 0, 0] for inputs, _, _ in dataset])
            assert np.array_equal(np.sort(seen), np.arange(n)), shuffle
        graphs = GraphEvents(data).loader(batch_size=size, shuffle=shuffle)
        seen = torch.cat([batch.x[::4, 0] for batch in graphs]).numpy()
        assert np.array_equal(np.sort(seen), np.arange(n)), shuffle


# -- PyTorch ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_torch_batches_equal_load_data_slices(world: World, name: str) -> None:
    data = world.data(name)
    events = data.torch()
    regression = is_regression(CASES[name].dataset)
    assert len(events) == data.n_events
    loader = events.loader(batch_size=BATCH)
    batches = list(loader)
    assert len(batches) == len(loader) == -(-data.n_events // BATCH)
    for index, batch in enumerate(batches[:2]):
        assert all(isinstance(value, torch.Tensor) for value in batch.values())
        rows = slice(index * BATCH, (index + 1) * BATCH)
        check_batch(
            {key: value.numpy() for key, value in batch.items()},
            expected_batch(data, rows),
            regression,
        )
    one = events[3]
    check_batch(
        {key: value.numpy() for key, value in one.items()},
        {key: value[0] for key, value in expected_batch(data, slice(3, 4)).items()},
        regression,
    )
    # the class-level shortcut gives the same view
    shortcut = world.variant(name).torch(
        "train", CASES[name].graph, settings=world.settings, **CASES[name].params
    )
    assert torch.equal(shortcut[0:5]["features"], events[0:5]["features"])


def test_torch_shuffled_loader_reads_the_rows_it_claims(world: World) -> None:
    data = world.data("top_tagging")
    loader = data.torch().loader(batch_size=BATCH, shuffle=True, seed=3)
    first = list(loader)
    second = list(loader)  # a new epoch, a new order
    expected_rows = list(batch_rows(data.n_events, BATCH, shuffle=True, seed=3, epoch=0))
    for batch, rows in zip(first, expected_rows, strict=True):
        check_batch(
            {key: value.numpy() for key, value in batch.items()},
            expected_batch(data, rows),
            False,
        )
    assert not torch.equal(first[0]["features"], second[0]["features"])
    assert sum(len(batch["labels"]) for batch in second) == data.n_events


def test_torch_workers_reopen_the_memory_maps(world: World) -> None:
    data = world.data("top_tagging")
    events = data.torch()
    state = pickle.dumps(events.events)
    assert len(state) < 20_000  # file paths, not the arrays
    revived = pickle.loads(state)
    np.testing.assert_array_equal(revived.read(slice(0, 7))["features"], data.features[:7])
    serial = [batch["features"] for batch in events.loader(batch_size=BATCH)]
    parallel = [batch["features"] for batch in events.loader(batch_size=BATCH, num_workers=2)]
    assert all(torch.equal(a, b) for a, b in zip(serial, parallel, strict=True))


def test_torch_selects_arrays_and_weights(world: World) -> None:
    data = world.data("higgsml")
    events = data.torch(names=["features"], weights="kaggle_weights")
    batch = events[0:10]
    assert set(batch) == {"features", "labels", "weights"}
    np.testing.assert_allclose(batch["weights"].numpy(), data["kaggle_weights"][:10])
    with pytest.raises(KeyError, match="no per-event array"):
        data.torch(names=["nonsense"])
    with pytest.raises(IndexError):
        events[data.n_events]


def test_plain_dataloader_collates_single_events(world: World) -> None:
    data = world.data("spinodal")
    loader = torch.utils.data.DataLoader(data.torch(), batch_size=8)
    batch = next(iter(loader))
    np.testing.assert_array_equal(batch["features"].numpy(), data.features[:8])


def test_max_events_keeps_shared_arrays_whole(world: World) -> None:
    variant = world.variant("airshower")
    data = variant.load_data("train", graph=True, max_events=10, settings=world.settings)
    assert data.n_events == 10
    assert data["grid_neighbours"].shape == (81, 8)
    assert data["station_positions"].shape == (81, 3)


# -- PyTorch Geometric -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", GRAPH_CASES)
def test_pyg_edge_index_matches_the_sparse_graph_and_gcn_runs(world: World, name: str) -> None:
    pytest.importorskip("torch_geometric", reason="the geometric extra is not installed")
    from torch_geometric.nn import GCNConv

    data = world.data(name)
    graphs = data.pyg()
    assert len(graphs) == data.n_events
    regression = is_regression(CASES[name].dataset)
    for event in (0, 5):
        graph = graphs[event]
        edges = set(map(tuple, graph.edge_index.numpy().T.tolist()))
        assert edges == expected_edges(data, event), name
        assert graph.x.dtype == torch.float32 and graph.x.shape[0] == graph.num_nodes
        assert graph.edge_index.dtype == torch.int64
        assert int(graph.edge_index.max()) < graph.num_nodes
        assert graph.y.dtype == (torch.float32 if regression else torch.int64)
        np.testing.assert_array_equal(graph.y.numpy(), [data.labels[event]])
        assert graph.weight.shape == (1,)
        assert graph.pos is not None and graph.pos.shape[0] == graph.num_nodes
    if "grid_neighbours" in data:
        assert graphs[0].edge_index is graphs[1].edge_index  # one shared grid edge_index
        if name != "airshower":  # image grids: (row, column) of each pixel
            side = round(np.sqrt(graphs[0].num_nodes))
            np.testing.assert_array_equal(graphs[0].pos[side + 2].numpy(), [1, 2])
    batch = next(iter(graphs.loader(batch_size=16, shuffle=True)))
    assert batch.num_graphs == 16 and batch.y.shape == (16,) and batch.weight.shape == (16,)
    out = GCNConv(batch.x.shape[1], 8)(batch.x, batch.edge_index)
    assert out.shape == (batch.num_nodes, 8) and torch.isfinite(out).all()

    from torch_geometric.loader import DataLoader as PygLoader

    pyg_batch = next(iter(PygLoader(graphs, batch_size=4)))
    assert pyg_batch.num_graphs == 4
    assert torch.equal(pyg_batch.y, graphs.loader(batch_size=4).__iter__().__next__().y)


def expected_edges(data: PreparedData, event: int) -> set[tuple[int, int]]:
    """Edges (source, target) computed straight from the prepared sparse arrays."""
    if "neighbours" in data:
        neighbours, valid = data["neighbours"][event], data["neighbour_mask"][event]
        return {
            (int(neighbours[i, s]), i)
            for i in range(neighbours.shape[0])
            for s in range(neighbours.shape[1])
            if valid[i, s]
        }
    if "edges" in data:
        pairs = data["edges"][event][data["edge_mask"][event]]
        return {(int(m), int(d)) for m, d in pairs} | {(int(d), int(m)) for m, d in pairs}
    neighbours, valid = data["grid_neighbours"], data["grid_mask"]
    return {
        (int(neighbours[i, s]), i)
        for i in range(neighbours.shape[0])
        for s in range(neighbours.shape[1])
        if valid[i, s]
    }


@pytest.mark.parametrize("name", ["higgsml", "ild_photon_showers"])
def test_pyg_refuses_datasets_without_a_graph(world: World, name: str) -> None:
    pytest.importorskip("torch_geometric", reason="the geometric extra is not installed")
    with pytest.raises(ValueError, match="no graph"):
        world.data(name).pyg()


# -- original pd4ml convention ---------------------------------------------------------------


@pytest.mark.parametrize("name", GRAPH_CASES)
def test_original_load_data_convention(world: World, name: str) -> None:
    data = world.data(name)
    X, y = original_inputs(data)
    assert set(X) == {"features", "adj_matrix"}
    np.testing.assert_array_equal(y, data.labels)
    features, adjacency = X["features"], X["adj_matrix"]
    assert features.ndim == 3 and adjacency.dtype == np.int8
    assert adjacency.shape == (data.n_events, features.shape[1], features.shape[1])
    event = 4
    if "neighbours" in data:  # the original's transpose: i aggregates from nodes that chose it
        neighbours, valid = data["neighbours"][event], data["neighbour_mask"][event]
        reference = np.zeros(adjacency.shape[1:], dtype=np.int8)
        for i in range(neighbours.shape[0]):
            for slot in range(neighbours.shape[1]):
                if valid[i, slot]:
                    reference[neighbours[i, slot], i] = 1
        real = np.flatnonzero(data["mask"][event])
        reference[real, real] = 1  # self-loops on every real node, isolated ones included
    elif "edges" in data:
        mothers = np.full(adjacency.shape[1], -1)
        for mother, daughter in data["edges"][event][data["edge_mask"][event]]:
            mothers[daughter] = mother
        reference = decay_tree_dense(mothers[None])[0]
    else:
        side = round(np.sqrt(adjacency.shape[1]))
        neighbours, valid = grid_neighbours(side, side)
        reference = neighbours_to_dense(neighbours[None], valid[None])[0]
    np.testing.assert_array_equal(adjacency[event], reference)
    np.testing.assert_array_equal(dense_adjacency(data, slice(event, event + 1))[0], reference)
    plain, labels = original_inputs(world.data(name, graph=False))
    assert isinstance(plain["features"], list) and len(plain["features"]) == 1
    np.testing.assert_array_equal(labels, data.labels)


def test_original_dense_adjacency_is_stored_once_and_memory_mapped(world: World) -> None:
    data = world.data("top_tagging")
    first = adjacency(data)
    assert isinstance(first, np.memmap)
    stored = data.directory / f"adj_matrix-v{ADJACENCY_VERSION}.npy"
    assert data.directory is not None and stored.is_file()
    assert not list(data.directory.glob(".adj_matrix-*"))  # no temporary left behind
    again = world.variant("top_tagging").load_data(
        "train", graph=True, max_events=7, settings=world.settings, **CASES["top_tagging"].params
    )
    X, _ = original_inputs(again)
    assert X["adj_matrix"].shape[0] == 7
    np.testing.assert_array_equal(X["adj_matrix"], first[:7])


# -- TensorFlow -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tf() -> Any:
    return pytest.importorskip("tensorflow", reason="the tf extra is not installed")


@pytest.mark.parametrize("name", list(CASES))
def test_tf_batches_equal_load_data_slices(world: World, tf: Any, name: str) -> None:
    data = world.data(name)
    dataset = data.tf().dataset(batch_size=BATCH)
    assert int(dataset.cardinality()) == -(-data.n_events // BATCH)
    regression = is_regression(CASES[name].dataset)
    for index, (inputs, labels, weights) in enumerate(dataset.take(2)):
        got = {key: value.numpy() for key, value in inputs.items()}
        got["labels"], got["weights"] = labels.numpy(), weights.numpy()
        rows = slice(index * BATCH, (index + 1) * BATCH)
        check_batch(got, expected_batch(data, rows), regression)


@pytest.mark.parametrize("name", ["top_tagging", "smartbkg", "spinodal"])
def test_tf_original_inputs(world: World, tf: Any, name: str) -> None:
    data = world.data(name)
    inputs, labels, _ = next(iter(data.tf().dataset(batch_size=8, original=True)))
    X, y = original_inputs(data)
    assert set(inputs) == {"features", "adj_matrix"}
    np.testing.assert_array_equal(inputs["features"].numpy(), X["features"][:8])
    np.testing.assert_array_equal(inputs["adj_matrix"].numpy(), X["adj_matrix"][:8])
    np.testing.assert_array_equal(labels.numpy(), y[:8])


def test_tf_shuffled_epochs_cover_the_split(world: World, tf: Any) -> None:
    data = world.data("top_tagging")
    dataset = data.tf(names=["labels"]).dataset(batch_size=BATCH, shuffle=True, seed=5)
    first = np.concatenate([labels.numpy() for _, labels, _ in dataset])
    second = np.concatenate([labels.numpy() for _, labels, _ in dataset])
    assert sorted(first.tolist()) == sorted(np.asarray(data.labels).tolist())
    assert len(second) == data.n_events


def test_keras_two_layer_model_fits_one_epoch(world: World, tf: Any) -> None:
    import keras

    from pd4ml.adapters.tf import keras_inputs

    data = world.data("top_tagging")
    view = data.tf(names=["features", "mask"])
    inputs = keras_inputs(view)
    flat = keras.layers.Flatten()(inputs["features"])
    hidden = keras.layers.Dense(16, activation="relu")(flat)
    output = keras.layers.Dense(1, activation="sigmoid")(hidden)
    model = keras.Model(inputs=inputs, outputs=output)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    train = view.dataset(batch_size=BATCH, shuffle=True)
    history = model.fit(train, epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"][0])
    keras.backend.clear_session()


def test_keras_model_written_for_the_original_inputs(world: World, tf: Any) -> None:
    import keras

    data = world.data("spinodal")
    n_nodes = 400
    features = keras.Input(shape=(n_nodes, 1), name="features")
    adjacency = keras.Input(shape=(n_nodes, n_nodes), name="adj_matrix", dtype="int8")
    mixed = keras.layers.Lambda(
        lambda pair: tf.matmul(tf.cast(pair[1], tf.float32), pair[0]),
        output_shape=(n_nodes, 1),
    )([features, adjacency])
    pooled = keras.layers.GlobalAveragePooling1D()(mixed)
    output = keras.layers.Dense(1, activation="sigmoid")(pooled)
    model = keras.Model(inputs={"features": features, "adj_matrix": adjacency}, outputs=output)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    train = data.tf().dataset(batch_size=BATCH, original=True)
    history = model.fit(train, epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"][0])
    keras.backend.clear_session()


def test_isolated_real_nodes_get_self_loops_in_the_original_form(world: World) -> None:
    data = world.data("top_tagging")
    counts = np.asarray(data["mask"]).sum(axis=1)
    adjacency = dense_adjacency(data, slice(0, data.n_events))
    for event in range(data.n_events):
        real = np.arange(counts[event])
        assert np.all(adjacency[event, real, real] == 1)
        assert not adjacency[event, counts[event] :].any()
    # TopTagging's stored dense form (dense_adjacency=True) is the transpose, self-loops too
    stored = world.variant("top_tagging").load_data(
        "train",
        graph=True,
        dense_adjacency=True,
        settings=world.settings,
        **CASES["top_tagging"].params,
    )
    np.testing.assert_array_equal(np.swapaxes(stored["adjacency"], 1, 2), adjacency)
    X, _ = original_inputs(stored)
    np.testing.assert_array_equal(X["adj_matrix"], adjacency)


def test_load_data_takes_only_the_split_positionally(world: World) -> None:
    """The second positional argument never means "graph or path" by its type (keywords only)."""
    variant = world.variant("spinodal")
    with pytest.raises(TypeError, match="positional"):
        variant.load_data("train", str(world.settings.data_dir))  # type: ignore[misc]
    with pytest.raises(TypeError, match="positional"):
        variant.load_data("train", True)  # type: ignore[misc]
    with pytest.raises(TypeError, match="graph must be True or False"):
        variant.load_data("train", graph=3, settings=world.settings)  # type: ignore[arg-type]


def test_prepared_data_is_a_mapping(world: World) -> None:
    data = world.data("spinodal", graph=False)
    assert isinstance(data, Mapping)
    assert list(data) == list(data.keys()) == list(data.arrays)
    assert dict(data).keys() == data.arrays.keys()
    assert "features" in data and len(data) == len(data.arrays)
    assert set(data) == {"features", "labels", "weights"}  # weights: 1 for every event
    with pytest.raises(ValueError, match="unpack"):
        _x, _y = data  # iterating gives names: it never unpacks as the original's (X, y)


def test_distributed_ranks_share_the_batches(world: World) -> None:
    from pd4ml.adapters.torch import BatchRowSampler

    events = world.data("top_tagging").torch()
    n_batches = len(events) // BATCH  # full batches only
    seen = []
    for rank in range(3):
        loader = events.loader(batch_size=BATCH, shuffle=True, seed=9, num_replicas=3, rank=rank)
        labels = [batch["labels"] for batch in loader]
        assert len(labels) == len(loader) == n_batches // 3
        seen.append(torch.cat(labels))
    assert sum(len(part) for part in seen) <= len(events)
    for shuffle in (True, "blocks"):
        shares = []
        for rank in range(3):
            sampler = BatchRowSampler(
                1000, BATCH, shuffle=shuffle, seed=9, num_replicas=3, rank=rank
            )
            sampler.set_epoch(2)
            shares.append(np.concatenate(list(sampler)))
        assert {len(share) for share in shares} == {(1000 // BATCH // 3) * BATCH}  # equal
        union = np.concatenate(shares)
        assert len(np.unique(union)) == len(union)  # disjoint
    with pytest.raises(ValueError, match="rank"):
        events.loader(batch_size=BATCH, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="shuffle must be"):
        events.loader(batch_size=BATCH, shuffle="yes")  # type: ignore[arg-type]


def test_bad_rows_and_graphs_are_refused(world: World) -> None:
    events = world.data("top_tagging").torch()
    with pytest.raises(TypeError, match="integer row numbers"):
        events[np.ones(len(events), dtype=bool)]
    with pytest.raises(ValueError, match="batch_size"):
        events.loader(batch_size=0)
    voxels = world.variant("calice_ahcal").load_data(
        "train", graph=True, representation="voxels", settings=world.settings
    )
    with pytest.raises(ValueError, match="representation='cloud'"):
        original_inputs(voxels)
    higgs = world.data("higgsml")
    with pytest.raises(ValueError, match="load it with load_data"):
        adjacency(higgs)


def test_tf_several_live_iterators(world: World, tf: Any) -> None:
    data = world.data("top_tagging")
    dataset = data.tf(names=["labels"]).dataset(batch_size=BATCH, shuffle=True)
    iterators = [iter(dataset) for _ in range(5)]
    for iterator in iterators:
        next(iterator)
    for iterator in iterators:
        rest = [labels for _, labels, _ in iterator]
        assert len(rest) == -(-data.n_events // BATCH) - 1


def test_row_gather_equals_take() -> None:
    from pd4ml.adapters.common import _rows_of

    generator = np.random.default_rng(4)
    array = generator.normal(size=(500, 30, 7)).astype(np.float32)
    rows = np.sort(generator.choice(500, 64, replace=False))
    np.testing.assert_array_equal(_rows_of(array, rows, True), np.take(array, rows, axis=0))
    small = np.arange(500, dtype=np.int64)
    np.testing.assert_array_equal(_rows_of(small, rows, True), small[rows])
    with pytest.raises(IndexError):
        _rows_of(array, np.array([0, 500]), True)  # out of range: never read unchecked
