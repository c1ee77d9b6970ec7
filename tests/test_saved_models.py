"""Saved models: safetensors + JSON, atomic writes, exact reloads, never unpickling."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pd4ml.models.description import describe_arrays

torch = pytest.importorskip("torch", reason="the torch extra is not installed")
pytest.importorskip("safetensors", reason="the train extra is not installed")

from torch import nn  # noqa: E402

import pd4ml  # noqa: E402
from pd4ml.errors import Pd4mlError  # noqa: E402
from pd4ml.models import (  # noqa: E402
    DNN,
    FCN,
    CorruptSavedModelError,
    DataDescription,
    DNNConfig,
    Ensemble,
    FCNConfig,
    Model,
    ModelConfig,
    SavedModelError,
    SavedModelFormatError,
    SavedModelNotFoundError,
    UnknownArchitectureError,
    WeightsMismatchError,
    load,
    register_architecture,
    save,
    saved_model_info,
)
from pd4ml.models import saved as saved_module  # noqa: E402

EMBEDDING = (("jet_multiplicity", 4, 3),)


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture
def no_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any use of torch.load or pickle while loading fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a saved model must never be unpickled")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)


def arrays(n: int = 64, seed: int = 0) -> dict[str, np.ndarray]:
    generator = np.random.default_rng(seed)
    return {
        "features": generator.normal(size=(n, 12)).astype(np.float32),
        "labels": np.arange(n) % 2,
        "jet_multiplicity": generator.integers(0, 4, n),
        "mask": generator.random((n, 12)) > 0.2,
    }


def description() -> DataDescription:
    return describe_arrays(**arrays())


def inputs(model: Model | Ensemble, seed: int = 5) -> tuple[torch.Tensor, ...]:
    batch = {key: torch.from_numpy(value) for key, value in arrays(seed=seed).items()}
    return tuple(batch[name] for name in model.inputs)


def ensemble_of_three() -> Ensemble:
    torch.manual_seed(0)
    data = description()
    members: list[Model] = [
        DNN(data, DNNConfig(depth=2, width=5, embeddings=EMBEDDING, batch_norm=True)),
        DNN(data, DNNConfig(depth=3, width=4, embeddings=EMBEDDING)),
        FCN(data, FCNConfig(depth=2, width=6)),
    ]
    ensemble = Ensemble(members, weights=[3.0, 1.0, 2.0])
    ensemble.train()
    with torch.no_grad():  # batch-norm statistics that differ from the initial ones
        ensemble(*inputs(ensemble, seed=1))
    return ensemble.eval()


# -- round trips ---------------------------------------------------------------------------------


def test_ensemble_of_three_reloads_bit_identically_without_pickle(
    tmp_path: Path, no_unpickling: None
) -> None:
    ensemble = ensemble_of_three()
    batch = inputs(ensemble)
    with torch.no_grad():
        before = ensemble(*batch)
        members_before = ensemble.member_predictions(*batch)
    save(ensemble, tmp_path / "model")
    loaded = load(tmp_path / "model")
    assert isinstance(loaded, Ensemble)
    assert not loaded.training
    assert loaded.inputs == ensemble.inputs
    assert torch.equal(loaded.weights, ensemble.weights)
    with torch.no_grad():
        assert torch.equal(loaded(*batch), before)
        assert torch.equal(loaded.member_predictions(*batch), members_before)
    assert [type(m) for m in loaded.members] == [DNN, DNN, FCN]
    for original, again in zip(ensemble.members, loaded.members, strict=True):
        assert original.config == again.config
        state = again.state_dict()
        for key, tensor in original.state_dict().items():
            assert torch.equal(tensor, state[key]), key


def test_saved_files_and_json(tmp_path: Path) -> None:
    ensemble = ensemble_of_three()
    directory = save(
        ensemble,
        tmp_path / "saved",
        recipe={"epochs": 3, "optimizer": "adam"},
        extra={"note": "test"},
    )
    assert sorted(p.name for p in directory.iterdir()) == ["model.json", "weights.safetensors"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left
    payload = json.loads((directory / "model.json").read_text())
    assert payload["format"] == "pd4ml-model"
    assert payload["format_version"] == 1
    assert payload["kind"] == "ensemble"
    assert payload["architecture"] is None  # mixed members
    assert [m["architecture"] for m in payload["members"]] == ["dnn", "dnn", "fcn"]
    assert payload["members"][0]["config"]["embeddings"] == [["jet_multiplicity", 4, 3]]
    assert payload["ensemble_weights"] == pytest.approx([0.5, 1 / 6, 1 / 3])
    assert payload["description"] == ensemble.description.to_json()
    assert payload["recipe"] == {"epochs": 3, "optimizer": "adam"}
    assert payload["extra"] == {"note": "test"}
    assert payload["pd4ml_version"] == pd4ml.__version__
    from safetensors import safe_open

    with safe_open(str(directory / "weights.safetensors"), "pt") as handle:
        keys = set(handle.keys())
    assert "member0.layers.0.1.running_mean" not in keys  # order: linear, act, bn
    assert "member0.layers.0.2.running_mean" in keys
    assert {key.split(".")[0] for key in keys} == {"member0", "member1", "member2"}
    info = saved_model_info(directory)
    assert info.kind == "ensemble"
    assert info.recipe == {"epochs": 3, "optimizer": "adam"}
    assert [m.architecture for m in info.members] == ["dnn", "dnn", "fcn"]


def test_single_model_round_trip_and_recipe_object(tmp_path: Path) -> None:
    @dataclasses.dataclass(frozen=True)
    class Recipe:
        epochs: int = 4

        def to_json(self) -> dict[str, Any]:
            return dataclasses.asdict(self)

    model = FCN(description(), FCNConfig(depth=3, width=7)).eval()
    save(model, tmp_path / "fcn", recipe=Recipe())
    payload = json.loads((tmp_path / "fcn" / "model.json").read_text())
    assert (payload["kind"], payload["architecture"]) == ("model", "fcn")
    assert payload["config"] == {"depth": 3, "width": 7, "activation": "relu", "dropout": 0.0}
    assert payload["members"] is None and payload["ensemble_weights"] is None
    assert payload["recipe"] == {"epochs": 4}
    loaded = load(tmp_path / "fcn")
    assert isinstance(loaded, FCN)
    batch = inputs(model)
    with torch.no_grad():
        assert torch.equal(loaded(*batch), model(*batch))


@dataclasses.dataclass(frozen=True)
class GridConfig(ModelConfig):
    width: int = 3


@register_architecture
class GridModel(Model):
    """Test architecture with a shared grid table as a buffer (as GraphNet keeps one)."""

    architecture = "test-saved-grid"
    Config = GridConfig

    def __init__(self, description, config, shared=None):  # type: ignore[no-untyped-def]
        super().__init__(description, config, shared)
        spec = description.arrays["grid_neighbours"]
        table = (shared or {}).get("grid_neighbours")
        grid = torch.zeros(spec.shape, dtype=torch.int32)
        if table is not None:
            grid = torch.as_tensor(np.array(table))
        self.register_buffer("grid", grid)
        self.linear = nn.Linear(1, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        gathered = features.flatten(1)[:, self.grid[:, 0].long()].sum(1, keepdim=True)
        return self.linear(gathered).squeeze(-1)


def test_shared_buffers_are_restored(tmp_path: Path) -> None:
    n = 10
    grid = np.random.default_rng(2).integers(0, 16, (16, 4)).astype(np.int32)
    data = describe_arrays(
        np.random.default_rng(3).normal(size=(n, 16)).astype(np.float32),
        np.arange(n) % 2,
        shared={"grid_neighbours": grid},
    )
    model = GridModel(data, GridConfig(), shared={"grid_neighbours": grid}).eval()
    save(Ensemble([model]), tmp_path / "grid")
    loaded = load(tmp_path / "grid")
    assert isinstance(loaded, Ensemble)
    np.testing.assert_array_equal(loaded.models()[0].grid.numpy(), grid)
    x = torch.randn(4, 16)
    assert torch.equal(loaded(x), Ensemble([model])(x))


def test_saving_replaces_a_saved_model_atomically(tmp_path: Path) -> None:
    first = FCN(description(), FCNConfig(depth=1, width=3))
    second = DNN(description(), DNNConfig(depth=1, width=2))
    save(first, tmp_path / "m")
    save(second, tmp_path / "m")
    assert isinstance(load(tmp_path / "m"), DNN)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_a_failed_save_leaves_the_previous_model_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = FCN(description(), FCNConfig(depth=1, width=3))
    save(model, tmp_path / "m")
    before = {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()}
    other = FCN(description(), FCNConfig(depth=1, width=3))  # other weights
    with pytest.raises(SavedModelError, match="not JSON"):  # fails after writing the weights
        save(other, tmp_path / "m", extra={"bad": object()})
    import safetensors.torch

    def crash(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(safetensors.torch, "save_file", crash)
    with pytest.raises(OSError, match="disk on fire"):
        save(other, tmp_path / "m")
    assert {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no staging directories


def test_saving_into_a_directory_with_other_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "history.json").write_text("[]")
    with pytest.raises(SavedModelError, match=r"history\.json.*new or empty directory"):
        save(FCN(description(), FCNConfig(depth=1)), tmp_path / "run")
    (tmp_path / "file").write_text("x")
    with pytest.raises(SavedModelError, match="not a directory"):
        save(FCN(description(), FCNConfig(depth=1)), tmp_path / "file")
    with pytest.raises(TypeError, match="Model or Ensemble"):
        save(nn.Linear(1, 1), tmp_path / "linear")  # type: ignore[arg-type]


# -- errors --------------------------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    return save(ensemble_of_three(), tmp_path / "saved")


def edit_json(directory: Path, change: Any) -> None:
    path = directory / "model.json"
    payload = json.loads(path.read_text())
    change(payload)
    path.write_text(json.dumps(payload))


def test_missing_directory_and_files(tmp_path: Path, saved: Path) -> None:
    with pytest.raises(SavedModelNotFoundError, match="does not exist"):
        load(tmp_path / "nowhere")
    (saved / "weights.safetensors").unlink()
    with pytest.raises(SavedModelNotFoundError, match=r"weights\.safetensors is missing"):
        load(saved)
    (saved / "model.json").unlink()
    with pytest.raises(SavedModelNotFoundError, match=r"model\.json is missing"):
        load(saved)
    assert issubclass(SavedModelNotFoundError, (Pd4mlError, FileNotFoundError))


def test_truncated_weights_fail_the_checksum(saved: Path) -> None:
    weights = saved / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(CorruptSavedModelError, match="checksum"):
        load(saved)


@pytest.mark.parametrize("cut", [5, 200, -100])
def test_truncated_safetensors_without_checksum(saved: Path, cut: int) -> None:
    edit_json(saved, lambda payload: payload.pop("weights_sha256"))
    weights = saved / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:cut])
    with pytest.raises(CorruptSavedModelError, match="not a readable safetensors file"):
        load(saved)


def test_garbage_json(saved: Path) -> None:
    (saved / "model.json").write_text("{not json")
    with pytest.raises(CorruptSavedModelError, match="not valid JSON"):
        load(saved)


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (lambda p: p.update(format="keras"), SavedModelFormatError, "not a pd4ml saved model"),
        (lambda p: p.update(format_version=2), SavedModelFormatError, "newer pd4ml.*upgrade"),
        (lambda p: p.update(format_version="1"), SavedModelFormatError, "format_version"),
        (lambda p: p.update(kind="zoo"), SavedModelFormatError, "kind"),
        (lambda p: p.pop("description"), SavedModelFormatError, "incomplete"),
        (lambda p: p.update(ensemble_weights=[1.0]), SavedModelFormatError, "one weight per"),
        (
            lambda p: p["members"][1].update(architecture="transformer"),
            UnknownArchitectureError,
            "no model architecture 'transformer'",
        ),
        (
            lambda p: p["members"][2]["config"].update(width=99),
            WeightsMismatchError,
            r"member2.*'body\.0\.weight' has shape \(6, 12\).*needs \(99, 12\)",
        ),
        (
            lambda p: p["members"][0]["config"].update(batch_norm=False),
            WeightsMismatchError,
            "unexpected .*running_mean",
        ),
        (
            lambda p: p["members"][0]["config"].update(colour="red"),
            SavedModelFormatError,
            "no field",
        ),
        (
            lambda p: p.update(members=p["members"][:2], ensemble_weights=[0.5, 0.5]),
            WeightsMismatchError,
            "tensors of no model.*member2",
        ),
    ],
)
def test_inconsistent_json_is_refused_clearly(
    saved: Path, change: Any, error: type[Exception], message: str
) -> None:
    edit_json(saved, change)
    with pytest.raises(error, match=message):
        load(saved)


def test_a_json_array_is_not_a_saved_model(saved: Path) -> None:
    (saved / "model.json").write_text("[1, 2]")
    with pytest.raises(SavedModelFormatError, match="not a pd4ml saved model"):
        load(saved)


def test_errors_are_pd4ml_errors() -> None:
    for error in (
        SavedModelError,
        SavedModelNotFoundError,
        CorruptSavedModelError,
        SavedModelFormatError,
        WeightsMismatchError,
    ):
        assert issubclass(error, Pd4mlError)
    assert saved_module.FORMAT_VERSION == 1


def test_map_location_moves_the_model(saved: Path) -> None:
    loaded = load(saved, map_location=torch.device("cpu"))
    assert all(p.device.type == "cpu" for p in loaded.parameters())
