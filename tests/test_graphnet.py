"""GraphNet on every dataset's synthetic split (through the loopback archive server), its
sparse aggregation against hand computations, and the fixes of the original's defects."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pd4ml.datasets.base import PreparedData
from pd4ml.graphs import grid_neighbours
from pd4ml.models.base import ModelConfigError, architecture
from pd4ml.models.description import DataDescription, describe, describe_arrays
from pd4ml.testing import ArchiveServer
from tests.cases import CASES, World

torch = pytest.importorskip("torch", reason="the torch extra is not installed")

from pd4ml.models import check_onnx, export_onnx  # noqa: E402
from pd4ml.models.graph_inputs import (  # noqa: E402
    GraphNetInputError,
    NeighbourInput,
    pdg_index,
)
from pd4ml.models.graphnet import (  # noqa: E402
    GraphNet,
    GraphNetConfig,
    MaskedBatchNorm,
    aggregate,
)

TINY = GraphNetConfig(width=8, pre_layers=1, graph_layers=2, post_layers=1, max_hits=64)
BATCH = 16


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with ArchiveServer() as server:
        yield World(tmp_path_factory.mktemp("graphnet"), server)


def shared_of(data: PreparedData) -> dict[str, np.ndarray]:
    return {name: np.asarray(data[name]) for name in data.shared}


def model_for(
    data: PreparedData, config: GraphNetConfig = TINY, seed: int = 0
) -> tuple[GraphNet, DataDescription]:
    torch.manual_seed(seed)
    description = describe(data)
    return GraphNet.build(description, config, shared_of(data)), description


def batch_arrays(model: GraphNet, data: PreparedData, rows: slice) -> list[torch.Tensor]:
    batch = data.torch()[rows]
    return [batch[name] for name in model.inputs]


EXPECTED_KIND = {
    "top_tagging": "neighbours",
    "smartbkg": "edges",
    "spinodal": "grid",
    "eos": "grid",
    "airshower": "grid",
    "calice_ahcal": "neighbours",
    "higgsml": "objects",
    "ild_photon_showers": "hits",
}


@pytest.mark.parametrize("name", list(CASES))
def test_trains_on_every_dataset(world: World, name: str) -> None:
    data = world.data(name)
    model, description = model_for(data)
    assert model.input_graph.kind == EXPECTED_KIND[name]
    assert architecture("graphnet") is GraphNet
    arrays = batch_arrays(model, data, slice(0, BATCH))
    model.train()
    output = model(*arrays)
    assert output.shape == (BATCH,)
    labels = torch.from_numpy(np.array(data.labels[:BATCH]))
    if description.task == "classification":
        loss = torch.nn.functional.binary_cross_entropy_with_logits(output, labels.float())
    else:
        loss = torch.nn.functional.mse_loss(output, labels.float())
    loss.backward()
    first = next(module for module in model.pre.modules() if isinstance(module, torch.nn.Linear))
    for parameter in (first.weight, model.graph_blocks[0].dense.weight, model.head.weight):
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all()
        assert parameter.grad.abs().sum() > 0
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01)
    optimiser.step()
    model.eval()
    with torch.no_grad():
        first_call, second_call = model(*arrays), model(*arrays)
        probabilities = model.predict(*arrays)
    assert torch.equal(first_call, second_call)
    assert torch.isfinite(first_call).all()
    if description.task == "classification":
        assert ((probabilities >= 0) & (probabilities <= 1)).all()


def test_default_width_on_the_biggest_graph(world: World) -> None:
    """The default configuration (width 256) builds and runs on EOS's 576-node grid."""
    data = world.data("eos")
    model, _ = model_for(data, GraphNetConfig())
    model.eval()
    with torch.no_grad():
        output = model(*batch_arrays(model, data, slice(0, 2)))
    assert output.shape == (2,)
    assert model.config.width == 256


def perturbed_padding(
    name: str, model: GraphNet, arrays: list[torch.Tensor], generator: torch.Generator
) -> list[torch.Tensor]:
    """The same events with every padded node's features (and graph rows) replaced by noise."""
    named = dict(zip(model.inputs, [array.clone() for array in arrays], strict=True))
    features = named["features"]
    if name == "higgsml":
        missing = named["missing"]
        noise = 100 * torch.randn(features.shape, generator=generator)
        named["features"] = torch.where(missing, noise, features)
        return [named[key] for key in model.inputs]
    padded = ~named["mask"]
    noise = 100 * torch.randn(features.shape, generator=generator)
    named["features"] = torch.where(padded[..., None], noise, features)
    if "pdg" in named:
        tokens = torch.randint(0, 50, named["pdg"].shape, generator=generator, dtype=torch.int32)
        named["pdg"] = torch.where(padded, tokens, named["pdg"])
    if "neighbours" in named:  # rows of padded nodes point anywhere and claim to be valid
        n_nodes = features.shape[1]
        wild = torch.randint(0, n_nodes, named["neighbours"].shape, generator=generator)
        named["neighbours"] = torch.where(padded[..., None], wild, named["neighbours"])
        named["neighbour_mask"] = named["neighbour_mask"] | padded[..., None]
    return [named[key] for key in model.inputs]


@pytest.mark.parametrize("name", ["top_tagging", "smartbkg", "calice_ahcal", "higgsml"])
@pytest.mark.parametrize("training", [False, True])
def test_padded_nodes_do_not_change_the_output(world: World, name: str, training: bool) -> None:
    """Noise in padded nodes changes nothing, in evaluation and in training (where the batch
    statistics of the node BatchNorm must come from real nodes only)."""
    data = world.data(name)
    config = GraphNetConfig(
        width=8, pre_layers=1, graph_layers=2, post_layers=1, dropout=0.0, final_dropout=0.0
    )
    model, _ = model_for(data, config)
    arrays = batch_arrays(model, data, slice(0, BATCH))
    named = dict(zip(model.inputs, arrays, strict=True))
    if "mask" in named:  # more padding: the last 3 + event slots of every event
        n_nodes = named["mask"].shape[1]
        cut = n_nodes - 3 - torch.arange(BATCH)[:, None]
        named["mask"] = named["mask"] & (torch.arange(n_nodes)[None] < cut)
        arrays = [named[key] for key in model.inputs]
    padding = ~named["mask"] if "mask" in named else named["missing"]
    assert padding.any()
    model.train(training)
    with torch.no_grad():
        # warm the running statistics so that evaluation uses non-trivial ones
        model.train()
        model(*arrays)
        model.train(training)
        expected = model(*arrays)
        generator = torch.Generator().manual_seed(1)
        got = model(*perturbed_padding(name, model, arrays, generator))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("training", [False, True])
def test_extra_padding_slots_change_nothing(world: World, training: bool) -> None:
    """The same jets with 10 more padded slots give the same outputs (pooling and the node
    BatchNorm statistics are over real nodes only)."""
    data = world.data("top_tagging")
    config = GraphNetConfig(
        width=8, pre_layers=1, graph_layers=2, post_layers=1, dropout=0.0, final_dropout=0.0
    )
    model, _ = model_for(data, config)
    named = dict(zip(model.inputs, batch_arrays(model, data, slice(0, BATCH)), strict=True))
    wider = {
        "features": torch.nn.functional.pad(named["features"], (0, 0, 0, 10), value=3.0),
        "neighbours": torch.nn.functional.pad(named["neighbours"], (0, 0, 0, 10), value=-1),
        "neighbour_mask": torch.nn.functional.pad(named["neighbour_mask"], (0, 0, 0, 10)),
        "mask": torch.nn.functional.pad(named["mask"], (0, 10)),
    }
    with torch.no_grad():
        model.train()
        model(*[named[key] for key in model.inputs])
        model.train(training)
        expected = model(*[named[key] for key in model.inputs])
        got = model(*[wider[key] for key in model.inputs])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def four_node_neighbours() -> tuple[torch.Tensor, ...]:
    """Node 3 is padding; node 2 lists it as a neighbour (it must be ignored); node 1 has a
    slot marked invalid and one -1."""
    features = torch.tensor([[[1.0, 10.0], [2.0, 20.0], [4.0, 40.0], [8.0, 80.0]]])
    neighbours = torch.tensor([[[1, 2, 3], [0, 2, -1], [0, 3, -1], [0, 1, 2]]])
    valid = torch.tensor(
        [[[True, True, False], [True, False, False], [True, True, False], [True, True, True]]]
    )
    mask = torch.tensor([[True, True, True, False]])
    return features, neighbours, valid, mask


def test_neighbour_aggregation_by_hand() -> None:
    features, neighbours, valid, mask = four_node_neighbours()
    description = describe_arrays(
        np.zeros((2, 4, 2), np.float32),
        np.array([0, 1]),
        neighbours=np.zeros((2, 4, 3), np.int64),
        neighbour_mask=np.zeros((2, 4, 3), bool),
        mask=np.ones((2, 4), bool),
    )
    builder = NeighbourInput(description)
    assert builder.inputs == ("features", "neighbours", "neighbour_mask", "mask")
    graph = builder([features, neighbours, valid, mask], {})
    x = features[0]
    mean = aggregate(graph, features, "mean")[0]
    torch.testing.assert_close(mean[0], (x[0] + x[1] + x[2]) / 3)
    torch.testing.assert_close(mean[1], (x[1] + x[0]) / 2)
    torch.testing.assert_close(mean[2], (x[2] + x[0]) / 2)  # padded neighbour 3 ignored
    summed = aggregate(graph, features, "sum")[0]
    torch.testing.assert_close(summed[0], x[0] + x[1] + x[2])
    torch.testing.assert_close(summed[2], x[2] + x[0])


def test_edge_aggregation_by_hand_uses_both_directions(world: World) -> None:
    """A decay tree 0 → 1, 0 → 2, 1 → 3 (one edge masked out, one to a padded node)."""
    data = world.data("smartbkg")
    model, _ = model_for(data)
    builder = model.input_graph
    n_nodes = data["features"].shape[1]
    features = torch.zeros((1, n_nodes, 8))
    features[0, :4] = torch.tensor([1.0, 2.0, 4.0, 8.0])[:, None]
    edges = torch.full((1, 75, 2), -1, dtype=torch.int64)
    edges[0, :4] = torch.tensor([[0, 1], [0, 2], [1, 3], [2, 4]])
    edge_mask = torch.zeros((1, 75), dtype=torch.bool)
    edge_mask[0, :4] = True
    mask = torch.zeros((1, n_nodes), dtype=torch.bool)
    mask[0, :4] = True  # node 4 is padding: the edge 2 → 4 is ignored
    pdg = torch.zeros((1, n_nodes), dtype=torch.int32)
    named = {"features": features, "edges": edges, "edge_mask": edge_mask, "mask": mask}
    named["pdg"] = pdg
    graph = builder([named[key] for key in builder.inputs], {})
    nodes = features[..., :1]
    mean = aggregate(graph, nodes, "mean")[0, :4, 0]
    torch.testing.assert_close(mean, torch.tensor([7 / 3, 11 / 3, 5 / 2, 10 / 2]))
    edge_mask[0, 2] = False  # drop 1 → 3
    graph = builder([named[key] for key in builder.inputs], {})
    mean = aggregate(graph, nodes, "mean")[0, :4, 0]
    torch.testing.assert_close(mean, torch.tensor([7 / 3, 3 / 2, 5 / 2, 8.0]))


def test_grid_nodes_are_row_major_like_the_grid_table() -> None:
    """An image (1, 2, 3): node i is pixel (i // 3, i % 3); node 0 averages pixels 0, 1, 3, 4."""
    neighbours, valid = grid_neighbours(2, 3)
    image = np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3)
    description = describe_arrays(
        np.repeat(image, 2, axis=0),
        np.array([0, 1]),
        shared={"grid_neighbours": neighbours, "grid_mask": valid},
    )
    model = GraphNet.build(description, TINY, {"grid_neighbours": neighbours, "grid_mask": valid})
    assert model.inputs == ("features",)
    shared = {"grid_neighbours": model.grid_neighbours, "grid_mask": model.grid_mask}
    graph = model.input_graph([torch.from_numpy(image)], shared)
    torch.testing.assert_close(graph.nodes[0, :, 0], torch.arange(6.0))
    mean = aggregate(graph, graph.nodes, "mean")[0, :, 0]
    torch.testing.assert_close(mean[0], torch.tensor((0 + 1 + 3 + 4) / 4))
    torch.testing.assert_close(mean[1], torch.tensor(15 / 6))
    torch.testing.assert_close(mean[5], torch.tensor((5 + 1 + 2 + 4) / 4))


def test_higgsml_objects_graph(world: World) -> None:
    data = world.data("higgsml")
    model, description = model_for(data)
    builder = model.input_graph
    names = list(description.info["feature_names"])
    assert builder.objects == ("tau", "lep", "jet_leading", "jet_subleading", "met")
    arrays = batch_arrays(model, data, slice(0, 64))
    graph = builder(arrays, {})
    features, missing = arrays
    # the momenta of each object, pz of the missing momentum 0
    for slot, name in enumerate(builder.objects):
        for component, part in enumerate(("px", "py", "pz")):
            column = f"PRI_{name}_{part}"
            expected = features[:, names.index(column)] if column in names else 0 * features[:, 0]
            torch.testing.assert_close(graph.nodes[:, slot, component], expected)
    jets = (
        missing[:, names.index("PRI_jet_leading_px")],
        missing[:, names.index("PRI_jet_subleading_px")],
    )
    assert torch.equal(graph.mask[:, 2], ~jets[0]) and torch.equal(graph.mask[:, 3], ~jets[1])
    assert graph.mask[:, [0, 1, 4]].all()
    assert (~graph.mask[:, 3]).any() and graph.mask[:, 3].any()
    # fully connected among present objects: each node sees the present others
    assert graph.neighbours is not None
    n_neighbours = (graph.neighbours < 5).sum(dim=-1)
    present = graph.mask.sum(dim=1, keepdim=True)
    assert torch.equal(n_neighbours, torch.where(graph.mask, present - 1, 0))
    # globals: the 17 other columns and their missing flags
    assert graph.globals is not None and graph.globals.shape == (64, 2 * 17)
    assert builder.n_global_features == 34


def test_hit_cloud_by_hand() -> None:
    """Three hits in a 3 × 3 × 3 grid: two face-adjacent, one diagonal to the second, and an
    isolated cell far away; max_hits leaves one slot of padding."""
    grid = np.zeros((2, 1, 3, 3, 3), np.float32)
    grid[0, 0, 0, 0, 0] = 0.5
    grid[0, 0, 0, 0, 1] = 0.3
    grid[0, 0, 1, 1, 2] = 0.2
    grid[0, 0, 2, 2, 0] = 0.1
    description = describe_arrays(
        grid, np.array([1.0, 2.0], np.float32), visible_energy=grid.sum(axis=(1, 2, 3, 4))
    )
    config = GraphNetConfig(width=8, pre_layers=1, graph_layers=1, post_layers=1, max_hits=5)
    model = GraphNet.build(description, config)
    assert model.inputs == ("features", "visible_energy")
    graph = model.input_graph([torch.from_numpy(grid), torch.tensor([1.1, 0.0])], {})
    assert graph.mask[0].tolist() == [True, True, True, True, False]
    assert not graph.mask[1].any()
    torch.testing.assert_close(graph.nodes[0, :4, 0], torch.tensor([0.5, 0.3, 0.2, 0.1]))
    torch.testing.assert_close(graph.nodes[0, 0, 2:], torch.tensor([-1.0, -1.0, -1.0]))
    assert graph.neighbours is not None
    real = [sorted(int(j) for j in row if j < 5) for row in graph.neighbours[0]]
    assert real == [[1], [0, 2], [1], [], []]
    assert graph.globals is not None
    torch.testing.assert_close(graph.globals[:, 0], torch.log1p(torch.tensor([1.1, 0.0])))


def test_masked_batch_norm_uses_real_nodes_only() -> None:
    generator = torch.Generator().manual_seed(0)
    nodes = torch.randn((3, 5, 4), generator=generator)
    mask = torch.rand((3, 5), generator=generator) < 0.6
    mask[0, 0] = True
    norm = MaskedBatchNorm(4)
    reference = torch.nn.BatchNorm1d(4)
    got = norm(nodes, mask)
    expected = reference(nodes[mask])
    torch.testing.assert_close(got[mask], expected)
    assert torch.equal(got[~mask], torch.zeros_like(got[~mask]))
    torch.testing.assert_close(norm.running_mean, reference.running_mean)
    torch.testing.assert_close(norm.running_var, reference.running_var)
    norm.eval()
    reference.eval()
    torch.testing.assert_close(norm(nodes, mask)[mask], reference(nodes[mask]))


def test_prelu_slopes_are_per_channel_not_per_node() -> None:
    def count(n_nodes: int) -> int:
        neighbours, valid = grid_neighbours(1, n_nodes)
        description = describe_arrays(
            np.zeros((2, n_nodes, 3), np.float32),
            np.array([0, 1]),
            shared={"grid_neighbours": neighbours, "grid_mask": valid},
        )
        model = GraphNet.build(description, TINY)
        for module in model.modules():
            if hasattr(module, "weight") and type(module).__name__ == "ChannelPReLU":
                assert module.weight.shape == (TINY.width,)
        return model.n_parameters()

    assert count(10) == count(500)


def test_shared_grid_is_a_buffer_restored_from_the_weights(world: World) -> None:
    data = world.data("airshower")
    model, description = model_for(data)
    assert model.input_graph.shared == ("grid_neighbours", "grid_mask", "station_positions")
    np.testing.assert_array_equal(
        model.grid_neighbours.numpy(), np.asarray(data["grid_neighbours"])
    )
    assert model.input_graph.n_node_features == 81 + 1 + 3
    bare = GraphNet.build(description, TINY)  # no shared arrays: zeros, filled by the weights
    assert not bare.grid_mask.any()
    bare.load_state_dict(model.state_dict())
    model.eval()
    bare.eval()
    arrays = batch_arrays(model, data, slice(0, 8))
    with torch.no_grad():
        assert torch.equal(bare(*arrays), model(*arrays))
    wrong = {**shared_of(data), "grid_mask": np.zeros((80, 8), bool)}
    with pytest.raises(GraphNetInputError, match="grid_mask"):
        GraphNet.build(description, TINY, wrong)


def test_pdg_tokens_map_to_a_bounded_vocabulary() -> None:
    tokens = torch.tensor([0, 1, 5, 183, 184, -211, 211, 100_000])
    index = pdg_index(tokens, 184)
    assert index[:4].tolist() == [0, 1, 5, 183]
    assert ((index[4:] >= 1) & (index[4:] < 184)).all()
    assert torch.equal(index, pdg_index(tokens, 184))
    assert index[5] != index[6]  # a particle and its antiparticle stay apart here


def test_smartbkg_embedding_sized_from_the_vocabulary(world: World) -> None:
    data = world.data("smartbkg")
    model, description = model_for(data)
    vocabulary = len(description.info["pdg_vocabulary"]) + 2
    assert model.input_graph.embedding.num_embeddings == vocabulary
    assert int(np.asarray(data["pdg"]).max()) < vocabulary


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("width", 0, "width must be positive"),
        ("graph_layers", -1, "graph_layers must be >= 0"),
        ("dropout", 1.0, "dropout must be in"),
        ("aggregation", "max", "aggregation must be one of mean, sum"),
        ("width", 2.5, "width must be int"),
    ],
)
def test_config_is_validated(field: str, value: object, match: str) -> None:
    with pytest.raises(ModelConfigError, match=match):
        GraphNetConfig(**{field: value})  # type: ignore[arg-type]
    config = GraphNetConfig()
    assert GraphNetConfig.from_json(config.to_json()) == config


def test_data_without_a_natural_graph_is_refused() -> None:
    description = describe_arrays(np.zeros((4, 10, 3), np.float32), np.array([0, 1, 0, 1]))
    with pytest.raises(GraphNetInputError, match="no graph"):
        GraphNet.build(description, TINY)
    with pytest.raises(GraphNetInputError, match="takes 1 arrays"):
        image = describe_arrays(np.zeros((4, 2, 3, 3), np.float32), np.array([0, 1, 0, 1]))
        model = GraphNet.build(image, TINY)
        assert model.input_graph.kind == "image"
        model(torch.zeros((4, 2, 3, 3)), torch.zeros(4))


@pytest.mark.parametrize("name", list(CASES))
def test_onnx_export_matches_torch(world: World, tmp_path: Path, name: str) -> None:
    """``export_onnx`` on every dataset's graph kind; onnxruntime on another batch (a
    different batch size) equals PyTorch within 1e-5."""
    data = world.data(name)
    model, _ = model_for(data)
    model.eval()
    path = export_onnx(model, tmp_path / "graphnet.onnx")
    assert check_onnx(model, path, data.torch()[8:40]) < 1e-5


@pytest.mark.parametrize("name", ["top_tagging", "smartbkg", "calice_ahcal"])
def test_nan_in_padded_nodes_does_not_reach_the_output(world: World, name: str) -> None:
    data = world.data(name)
    model, _ = model_for(data)
    model.eval()
    padded = np.flatnonzero((~np.asarray(data["mask"])).any(axis=1))[:BATCH]
    assert len(padded) > 1, "the synthetic events have padding"
    batch = data.torch()[padded]
    arrays = [batch[name] for name in model.inputs]
    named = dict(zip(model.inputs, arrays, strict=True))
    with torch.no_grad():
        expected = model(*arrays)
        features = named["features"].clone()
        features[~named["mask"]] = float("nan")
        named["features"] = features
        got = model(*(named[key] for key in model.inputs))
    torch.testing.assert_close(got, expected)
