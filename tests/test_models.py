"""The shared dense models (FCN, DNN), ensembles and the build registry, on the prepared
synthetic splits of all 8 datasets (served by the loopback archive server) and on plain arrays."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping

import numpy as np
import pytest

from pd4ml.models.description import describe_arrays
from pd4ml.testing import ArchiveServer
from tests.cases import CASES, World

torch = pytest.importorskip("torch", reason="the torch extra is not installed")

from torch import nn  # noqa: E402

from pd4ml.models import (  # noqa: E402
    DNN,
    FCN,
    LUMIN_HIGGSML,
    DNNConfig,
    Ensemble,
    FCNConfig,
    Model,
    ModelConfig,
    ModelConfigError,
    UnknownArchitectureError,
    architectures,
    build,
    describe,
    register_architecture,
    registry,
)

BATCH = 16
#: the padding mask each dataset's models read besides ``features``
MASKS = {
    "top_tagging": "mask",
    "smartbkg": "mask",
    "airshower": "station_mask",
    "calice_ahcal": "mask",
}


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with ArchiveServer() as server:
        yield World(tmp_path_factory.mktemp("models"), server)


def first_batch(data: Mapping[str, np.ndarray] | object) -> dict[str, torch.Tensor]:
    batch: dict[str, torch.Tensor] = next(iter(data.torch().loader(batch_size=BATCH)))  # type: ignore[attr-defined]
    return batch


def tabular(
    n: int = 40, features: int = 30, classes: int = 2, seed: int = 0
) -> dict[str, np.ndarray]:
    generator = np.random.default_rng(seed)
    return {
        "features": generator.normal(size=(n, features)).astype(np.float32),
        "labels": np.arange(n) % classes,
        "jet_multiplicity": generator.integers(0, 4, n),
    }


# -- every dataset ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_fcn_and_dnn_run_on_every_dataset(world: World, name: str) -> None:
    data = world.data(name)
    description = describe(data)
    batch = first_batch(data)
    embeddings = (("jet_multiplicity", 4, 3),) if name == "higgsml" else ()
    configs = [
        ("fcn", FCNConfig(depth=2, width=8)),
        ("dnn", DNNConfig(depth=3, width=5, embeddings=embeddings, batch_norm=True)),
    ]
    for architecture, config in configs:
        model = build(architecture, data, config)
        assert isinstance(model, FCN if architecture == "fcn" else DNN)
        mask = (MASKS[name],) if name in MASKS else ()
        embedded = tuple(e[0] for e in embeddings) if architecture == "dnn" else ()
        assert model.inputs == ("features", *mask, *embedded)
        raw = model(*(batch[key] for key in model.inputs))
        assert raw.shape == (BATCH,)
        assert torch.isfinite(raw).all()
        raw.sum().backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        prediction = model.eval().predict(*(batch[key] for key in model.inputs))
        if description.task == "classification":
            assert ((prediction > 0) & (prediction < 1)).all()
        else:
            torch.testing.assert_close(prediction, model(*(batch[key] for key in model.inputs)))
    # the first layer reads the whole flattened features array (the paper's input sizes)
    fcn = build("fcn", data, FCNConfig(depth=1, width=4))
    assert fcn.body[0].in_features == math.prod(description.features.shape)


def test_padding_never_reaches_the_network(world: World) -> None:
    data = world.data("smartbkg")  # decays padded to 100 particles
    batch = first_batch(data)
    model = build("fcn", data, FCNConfig(depth=2, width=8)).eval()
    padded = ~batch["mask"]
    assert padded.any()
    changed = batch["features"].clone()
    changed[padded] = torch.nan  # whatever the padding holds
    with torch.no_grad():
        assert torch.equal(model(batch["features"], batch["mask"]), model(changed, batch["mask"]))
        real = changed.clone()
        real[~padded] += 1.0
        assert not torch.equal(model(changed, batch["mask"]), model(real, batch["mask"]))


def test_airshower_station_mask_zeroes_whole_stations(world: World) -> None:
    data = world.data("airshower")
    batch = first_batch(data)
    model = build("dnn", data, DNNConfig(depth=2, width=6)).eval()
    off = ~batch["station_mask"]
    assert off.any()
    changed = batch["features"].clone()
    changed[off] = 1e6  # (B, 81 stations, 81 time bins): every bin of a switched-off station
    with torch.no_grad():
        assert torch.equal(
            model(batch["features"], batch["station_mask"]), model(changed, batch["station_mask"])
        )


def test_lumin_dnn_on_higgsml_reads_the_jet_multiplicity(world: World) -> None:
    data = world.data("higgsml")
    assert build("dnn", data, LUMIN_HIGGSML).n_parameters() == 23_311  # 31 features + 3
    model = build("dnn", data, dataclasses.replace(LUMIN_HIGGSML, width=6, depth=2)).eval()
    assert model.inputs == ("features", "jet_multiplicity")
    batch = first_batch(data)
    shifted = (batch["jet_multiplicity"] + 1) % 4
    with torch.no_grad():
        assert not torch.equal(
            model(batch["features"], batch["jet_multiplicity"]), model(batch["features"], shifted)
        )


# -- architectures -------------------------------------------------------------------------------


def test_fcn_default_is_the_papers_twelve_relu_layers_of_256() -> None:
    arrays = tabular(features=31)
    model = FCN.build(describe_arrays(**arrays))
    linears = [layer for layer in model.modules() if isinstance(layer, nn.Linear)]
    assert [layer.out_features for layer in linears] == [256] * 12 + [1]
    assert sum(isinstance(layer, nn.ReLU) for layer in model.modules()) == 12
    assert not any(isinstance(layer, (nn.Dropout, nn.BatchNorm1d)) for layer in model.modules())
    assert model.n_parameters() == 31 * 256 + 256 + 11 * (256 * 256 + 256) + 257


def test_dnn_default_matches_lumins_23113_parameters() -> None:
    # LUMIN's HiggsML model: 30 continuous inputs + PRI_jet_num embedded in 3 dimensions,
    # 6 dense-connected Swish layers of 33 (lumin.md §2.1: 23,113 trainable parameters)
    model = build("dnn", describe_arrays(**tabular(features=30)), LUMIN_HIGGSML)
    assert model.n_parameters() == 23_113
    assert sum(isinstance(layer, nn.SiLU) for layer in model.modules()) == 6


def test_dense_connections_feed_every_layer_all_previous_outputs() -> None:
    description = describe_arrays(**tabular(features=10))
    dense = DNN(description, DNNConfig(depth=4, width=7))
    plain = DNN(description, DNNConfig(depth=4, width=7, dense_connections=False))
    assert [block[0].in_features for block in dense.layers] == [10, 17, 24, 31]
    assert [block[0].in_features for block in plain.layers] == [10, 7, 7, 7]
    assert dense.head.in_features == plain.head.in_features == 7


def test_dense_block_outputs_are_concatenated_in_order() -> None:
    description = describe_arrays(**tabular(features=3))
    model = DNN(description, DNNConfig(depth=3, width=2, activation="relu")).eval()
    x = torch.randn(5, 3)
    h1 = model.layers[0](x)
    h2 = model.layers[1](torch.cat([x, h1], 1))
    h3 = model.layers[2](torch.cat([x, h1, h2], 1))
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.head(h3).squeeze(-1))


def test_multiclass_models_give_one_logit_per_class() -> None:
    arrays = tabular(classes=3)
    description = describe_arrays(**arrays)
    for model in (FCN(description, FCNConfig(depth=1, width=4)), DNN(description, DNNConfig())):
        probabilities = model.predict(torch.from_numpy(arrays["features"][:5]))
        assert probabilities.shape == (5, 3)
        torch.testing.assert_close(probabilities.sum(1), torch.ones(5))


def test_initialisation_follows_the_activation() -> None:
    description = describe_arrays(**tabular(features=400))
    for activation, std in [("relu", math.sqrt(2 / 400)), ("selu", 1 / math.sqrt(400))]:
        model = FCN(description, FCNConfig(depth=1, width=2000, activation=activation))
        first = model.body[0]
        assert float(first.weight.detach().std()) == pytest.approx(std, rel=0.03)
        assert float(first.bias.detach().abs().max()) == 0.0
    selu = DNN(description, DNNConfig(activation="selu", dropout=0.1, dense_connections=False))
    assert any(isinstance(layer, nn.AlphaDropout) for layer in selu.modules())
    swish = DNN(description, DNNConfig(dropout=0.1))
    assert any(type(layer) is nn.Dropout for layer in swish.modules())


def test_embeddings_of_per_particle_arrays_are_flattened() -> None:
    generator = np.random.default_rng(1)
    description = describe_arrays(
        generator.normal(size=(8, 5, 2)).astype(np.float32),
        np.arange(8) % 2,
        mask=np.ones((8, 5), bool),
        pdg=generator.integers(0, 10, (8, 5)).astype(np.int32),
    )
    model = DNN(description, DNNConfig(depth=1, width=3, embeddings=(("pdg", 10, 2),)))
    assert model.inputs == ("features", "mask", "pdg")
    assert model.layers[0][0].in_features == 5 * 2 + 5 * 2
    out = model(
        torch.randn(8, 5, 2),
        torch.ones(8, 5, dtype=torch.bool),
        torch.zeros(8, 5, dtype=torch.int32),
    )
    assert out.shape == (8,)


# -- configuration errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: FCNConfig(depth=0), "FCNConfig.depth"),
        (lambda: FCNConfig(width=-3), "FCNConfig.width"),
        (lambda: FCNConfig(width=2.5), "FCNConfig.width"),
        (lambda: FCNConfig(dropout=1.0), "FCNConfig.dropout"),
        (lambda: FCNConfig(activation="sigmoidish"), "FCNConfig.activation"),
        (lambda: DNNConfig(depth=0), "DNNConfig.depth"),
        (lambda: DNNConfig(dense_connections="yes"), "DNNConfig.dense_connections"),
        (lambda: DNNConfig(activation="swoosh"), "DNNConfig.activation"),
        (lambda: DNNConfig(embeddings=(("jets", 4),)), "DNNConfig.embeddings"),
        (lambda: DNNConfig(embeddings={"jets": (4, 3)}), "DNNConfig.embeddings"),
        (lambda: DNNConfig(embeddings=(("a", 4, 3), ("a", 2, 2))), "DNNConfig.embeddings"),
        (lambda: DNNConfig(embeddings=(("a", 0, 3),)), "DNNConfig.embeddings"),
        (lambda: DNNConfig(batch_norm=1), "DNNConfig.batch_norm"),
    ],
)
def test_invalid_configurations_name_the_field(make: object, field: str) -> None:
    with pytest.raises(ModelConfigError, match=field):
        make()  # type: ignore[operator]


def test_embedding_of_an_array_the_data_lacks_fails_at_build() -> None:
    description = describe_arrays(**tabular())
    with pytest.raises(
        ModelConfigError, match=r"DNNConfig\.embeddings.*'pri_jet_num'.*jet_multiplicity"
    ):
        build("dnn", description, DNNConfig(embeddings=(("pri_jet_num", 4, 3),)))
    with pytest.raises(ModelConfigError, match="integer per-event array"):
        build("dnn", description, DNNConfig(embeddings=(("features", 4, 3),)))


def test_config_json_round_trip_gives_tuples_back() -> None:
    config = DNNConfig(width=9, embeddings=(("jet_multiplicity", 4, 3),), dropout=0.1)
    import json

    again = DNNConfig.from_json(json.loads(json.dumps(config.to_json())))
    assert again == config
    assert again.embeddings == (("jet_multiplicity", 4, 3),)
    assert FCNConfig.from_json(FCNConfig(depth=3).to_json()) == FCNConfig(depth=3)


def test_a_model_refuses_the_configuration_of_another() -> None:
    with pytest.raises(ModelConfigError, match="FCN takes a FCNConfig"):
        build("fcn", describe_arrays(**tabular()), DNNConfig())


# -- registry ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RecorderConfig(ModelConfig):
    scale: float = 1.0


@register_architecture
class SharedRecorder(Model):
    """A test architecture that keeps the grid table it was given as a buffer."""

    architecture = "test-shared-recorder"
    Config = RecorderConfig

    def __init__(self, description, config, shared=None):  # type: ignore[no-untyped-def]
        super().__init__(description, config, shared)
        spec = description.arrays["grid_neighbours"]
        table = (shared or {}).get("grid_neighbours")
        self.register_buffer(
            "grid",
            torch.as_tensor(np.array(table))
            if table is not None
            else torch.zeros(spec.shape, dtype=torch.int32),
        )
        self.linear = nn.Linear(1, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features.flatten(1)[:, :1]).squeeze(-1) + self.grid.sum() * 0


def test_build_from_a_prepared_split_passes_its_shared_arrays(world: World) -> None:
    data = world.data("spinodal")
    model = build("test-shared-recorder", data)
    np.testing.assert_array_equal(model.grid.numpy(), data["grid_neighbours"])
    from_description = build("test-shared-recorder", describe(data))
    assert not from_description.grid.any()  # nothing given: zeros of the described shape
    given = build(
        "test-shared-recorder", describe(data), shared={"grid_neighbours": data["grid_neighbours"]}
    )
    assert torch.equal(given.grid, model.grid)


def test_unknown_architecture_lists_the_known_ones() -> None:
    assert {"fcn", "dnn"} <= set(architectures())
    with pytest.raises(UnknownArchitectureError, match=r"no model architecture 'fnc'.*dnn, fcn"):
        build("fnc", describe_arrays(**tabular()))


def test_registry_imports_architecture_modules_that_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        registry, "ARCHITECTURE_MODULES", ("pd4ml.models.fcn", "pd4ml.models.not_written_yet")
    )
    registry.load_architectures()  # a module that does not exist is skipped
    assert isinstance(build("fcn", describe_arrays(**tabular())), FCN)


# -- ensembles -----------------------------------------------------------------------------------


def test_ensemble_is_the_weighted_mean_of_member_predictions() -> None:
    arrays = tabular()
    description = describe_arrays(**arrays)
    members = [
        DNN(description, DNNConfig(depth=2, width=4, embeddings=(("jet_multiplicity", 4, 2),))),
        FCN(description, FCNConfig(depth=1, width=3)),
        DNN(description, DNNConfig(depth=1, width=3)),
    ]
    ensemble = Ensemble(members, weights=[2.0, 1.0, 1.0]).eval()
    assert ensemble.inputs == ("features", "jet_multiplicity")
    torch.testing.assert_close(ensemble.weights, torch.tensor([0.5, 0.25, 0.25]))
    x = torch.from_numpy(arrays["features"])
    jets = torch.from_numpy(arrays["jet_multiplicity"])
    with torch.no_grad():
        each = [members[0].predict(x, jets), members[1].predict(x), members[2].predict(x)]
        expected = 0.5 * each[0] + 0.25 * each[1] + 0.25 * each[2]
        torch.testing.assert_close(ensemble(x, jets), expected)
        torch.testing.assert_close(ensemble.predict(x, jets), expected)
        assert ensemble.member_predictions(x, jets).shape == (3, len(x))
    uniform = Ensemble(members[1:])
    torch.testing.assert_close(uniform.weights, torch.tensor([0.5, 0.5]))
    assert uniform.description is members[1].description


def test_ensemble_inputs_keep_the_first_members_order() -> None:
    arrays = tabular()
    description = describe_arrays(mask=np.ones((40, 30), bool), **arrays)
    first = DNN(description, DNNConfig(embeddings=(("jet_multiplicity", 4, 2),)))
    second = FCN(description, FCNConfig(depth=1, width=2))
    assert first.inputs == ("features", "mask", "jet_multiplicity")
    assert Ensemble([second, first]).inputs == ("features", "mask", "jet_multiplicity")
    assert Ensemble([first, second]).inputs == first.inputs


def test_multiclass_ensemble_averages_probabilities() -> None:
    arrays = tabular(classes=3)
    description = describe_arrays(**arrays)
    ensemble = Ensemble([FCN(description, FCNConfig(depth=1, width=4)) for _ in range(2)])
    out = ensemble(torch.from_numpy(arrays["features"]))
    assert out.shape == (40, 3)
    torch.testing.assert_close(out.sum(1), torch.ones(40))


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ([1.0, -1.0], "finite and positive"),
        ([1.0, 0.0], "finite and positive"),
        ([1.0, float("nan")], "finite and positive"),
        ([1.0], "1 weight"),
    ],
)
def test_invalid_ensemble_weights_are_refused(weights: list[float], message: str) -> None:
    description = describe_arrays(**tabular())
    members = [FCN(description, FCNConfig(depth=1, width=2)) for _ in range(2)]
    with pytest.raises(ModelConfigError, match=message):
        Ensemble(members, weights)


def test_ensemble_members_must_share_the_task() -> None:
    classification = describe_arrays(**tabular())
    arrays = tabular()
    regression = describe_arrays(arrays["features"], arrays["features"][:, 0])
    with pytest.raises(ModelConfigError, match="share the task"):
        Ensemble([FCN(classification, FCNConfig(depth=1)), FCN(regression, FCNConfig(depth=1))])
    with pytest.raises(ModelConfigError, match="at least one member"):
        Ensemble([])
    with pytest.raises(ModelConfigError, match="not a pd4ml Model"):
        Ensemble([nn.Linear(1, 1)])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="takes 1 arrays"):
        Ensemble([FCN(classification, FCNConfig(depth=1))])(torch.zeros(2, 30), torch.zeros(2))
