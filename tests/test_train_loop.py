"""The trainer's loop: plain arrays and prepared splits, early stopping with best-weights
restore, ensembles, SWA, class balancing, the LR range test hook, checkpoints and history."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import pd4ml.metrics
import pd4ml.models
from pd4ml.models import DataDescription, Model, ModelConfig
from pd4ml.models.graphnet import MaskedBatchNorm
from pd4ml.testing import ArchiveServer
from pd4ml.train import (
    Constant,
    LRFinderResult,
    Plateau,
    Recipe,
    RecipeError,
    TrainingData,
    TrainingDataError,
    TrainingError,
    find_learning_rate,
    fit,
    predict,
)
from pd4ml.train.checkpoint import FILENAME
from pd4ml.train.data import to_tensors
from tests.cases import World

torch.set_num_threads(1)


@dataclasses.dataclass(frozen=True)
class TinyConfig(ModelConfig):
    hidden: int = 8
    dropout: float = 0.0
    batch_norm: bool = False


class Tiny(Model):
    """Flatten → dense → (batch norm) → ReLU → dropout → dense: a model small enough for tests."""

    architecture = "tiny_test"
    Config = TinyConfig

    def __init__(
        self,
        description: DataDescription,
        config: ModelConfig,
        shared: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        super().__init__(description, config)
        assert isinstance(config, TinyConfig)
        n_inputs = math.prod(description.features.shape)
        layers: list[nn.Module] = [nn.Flatten(), nn.Linear(n_inputs, config.hidden)]
        if config.batch_norm:
            layers.append(nn.BatchNorm1d(config.hidden))
        layers += [nn.ReLU(), nn.Dropout(config.dropout)]
        layers.append(nn.Linear(config.hidden, description.n_outputs))
        self.net = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        output: torch.Tensor = self.net(features.float())
        return output.squeeze(-1) if output.shape[-1] == 1 else output


def toy(n: int, seed: int, flip: bool = False, weights: bool = False) -> TrainingData:
    """A separable binary classification: 4 features, label = x0 + 0.5 x1 > 0."""
    generator = np.random.default_rng(seed)
    features = generator.normal(size=(n, 4)).astype(np.float32)
    labels = (features[:, 0] + 0.5 * features[:, 1] > 0).astype(np.int64)
    if flip:
        labels = 1 - labels
    w = generator.uniform(0.5, 2.0, n).astype(np.float32) if weights else None
    return TrainingData.from_arrays(features, labels, w)


def tiny(data: TrainingData, seed: int = 0, **config: Any) -> Tiny:
    torch.manual_seed(seed)
    return Tiny(data.description, TinyConfig(**config))


def weights_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    left, right = weights_of(a), weights_of(b)
    assert left.keys() == right.keys()
    for name in left:
        assert torch.equal(left[name], right[name]), name


# a constant learning rate: a shorter run is then exactly the start of a longer one
FAST = Recipe(epochs=3, batch_size=32, learning_rate=0.02, seed=1, threads=1, schedule=Constant())


# -- plain arrays
def test_fit_on_arrays_learns_and_writes_history(tmp_path: Path) -> None:
    train, val = toy(512, 0), toy(256, 1)
    model = tiny(train)
    before = fit(model, train, val, FAST.replace(epochs=1, learning_rate=1e-9)).validation["loss"]
    result = fit(tiny(train), train, val, FAST.replace(epochs=5), directory=tmp_path)
    assert result.validation["loss"] < 0.5 * before
    assert len(result.history) == 5
    assert [r["epoch"] for r in result.history] == list(range(5))
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    stored = json.loads((tmp_path / "history.json").read_text())
    # strict JSON: an infinite background rejection (no background left) is null
    assert stored == json.loads(json.dumps(result.history).replace("Infinity", "null"))
    assert (tmp_path / FILENAME).exists()


def test_fit_is_deterministic_for_a_seed() -> None:
    train = toy(300, 0)
    first = fit(tiny(train, dropout=0.3), train, recipe=FAST)
    second = fit(tiny(train, dropout=0.3), train, recipe=FAST)
    assert_same_weights(first.model, second.model)
    third = fit(tiny(train, dropout=0.3), train, recipe=FAST.replace(seed=2))
    assert not torch.equal(
        weights_of(first.model)["net.1.weight"], weights_of(third.model)["net.1.weight"]
    )


def test_regression_and_multiclass_arrays_train() -> None:
    generator = np.random.default_rng(0)
    x = generator.normal(size=(400, 3)).astype(np.float32)
    regression = TrainingData.from_arrays(x, (2 * x[:, 0] - x[:, 2]).astype(np.float32))
    result = fit(tiny(regression, hidden=16), regression, regression, FAST.replace(epochs=8))
    assert regression.description.task == "regression"
    assert result.validation["loss"] < 0.5 * float(np.var(2 * x[:, 0] - x[:, 2]))
    huber = fit(tiny(regression), regression, regression, FAST.replace(loss="huber"))
    assert math.isfinite(huber.validation["loss"])
    classes = np.digitize(x[:, 0], [-0.5, 0.5]).astype(np.int64)
    multiclass = TrainingData.from_arrays(x, classes)
    result = fit(tiny(multiclass, hidden=16), multiclass, multiclass, FAST.replace(epochs=8))
    assert multiclass.description.n_outputs == 3
    assert result.validation["loss"] < 0.7 * math.log(3)


def test_missing_inputs_and_wrong_loss_are_clear_errors() -> None:
    train = toy(64, 0)

    class NeedsMask(Tiny):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.inputs = ("features", "mask")

    with pytest.raises(TrainingError, match="mask"):
        fit(NeedsMask(train.description, TinyConfig()), train, recipe=FAST)
    with pytest.raises(ValueError, match="regression"):
        fit(tiny(train), train, recipe=FAST.replace(loss="mse"))


# -- early stopping
def test_early_stopping_stops_and_restores_the_best_weights() -> None:
    # validation labels are the opposite of the training labels: the validation loss is
    # lowest after the first epoch and rises from then on
    train, val = toy(512, 0), toy(256, 1, flip=True)
    recipe = FAST.replace(epochs=10, patience=2)
    result = fit(tiny(train), train, val, recipe)
    losses = [record["val_loss"] for record in result.history]
    assert result.best_epoch == int(np.argmin(losses)) == 0
    assert len(result.history) == 3  # best epoch + patience epochs without improvement
    assert losses[1] > losses[0] and losses[2] > losses[0]
    assert result.validation["loss"] == pytest.approx(losses[0])
    one_epoch = fit(tiny(train), train, val, recipe.replace(epochs=1))
    assert_same_weights(result.model, one_epoch.model)


def test_without_patience_all_epochs_run_and_the_best_is_kept() -> None:
    train, val = toy(256, 0), toy(128, 1, flip=True)
    result = fit(tiny(train), train, val, FAST.replace(epochs=4))
    assert len(result.history) == 4 and result.best_epoch == 0


# -- class balancing, augmentation
def test_balance_classes_gives_equal_class_totals() -> None:
    x = np.zeros((10, 2), dtype=np.float32)
    labels = np.array([0] * 8 + [1] * 2)
    data = TrainingData.from_arrays(x, labels, np.ones(10, dtype=np.float32)).balanced()
    batch = next(data.batches(10))
    totals = np.bincount(batch["labels"], batch["weights"])
    np.testing.assert_allclose(totals, [5.0, 5.0])


class Mirror:
    """Negates the features of each event with probability 1/2 (test augmentation)."""

    def __init__(self) -> None:
        self.calls = 0

    def random(
        self, batch: Mapping[str, np.ndarray], generator: np.random.Generator
    ) -> dict[str, np.ndarray]:
        self.calls += 1
        sign = np.where(generator.random(len(batch["labels"])) < 0.5, -1.0, 1.0).astype(np.float32)
        return {**batch, "features": batch["features"] * sign[:, None]}


def test_augmentation_is_applied_when_asked_and_required() -> None:
    train = toy(128, 0)
    with pytest.raises(ValueError, match="augmentation"):
        fit(tiny(train), train, recipe=FAST.replace(augment=True))
    mirror = Mirror()
    fit(tiny(train), train.with_augmentation(mirror), recipe=FAST.replace(augment=True, epochs=1))
    assert mirror.calls == 4


# -- SWA
def test_swa_averages_weights_and_updates_batch_norm() -> None:
    train, val = toy(256, 0), toy(128, 1)
    recipe = FAST.replace(epochs=4, swa=True, swa_start=0.5)
    result = fit(tiny(train, batch_norm=True), train, val, recipe)
    plain = fit(tiny(train, batch_norm=True), train, val, recipe.replace(swa=False))
    assert not torch.equal(
        weights_of(result.model)["net.1.weight"], weights_of(plain.model)["net.1.weight"]
    )
    norm = result.model.net[2]
    assert isinstance(norm, nn.BatchNorm1d)
    # statistics recomputed for the averaged weights with one pass over the training data
    with torch.no_grad():
        hidden = result.model.net[1](torch.from_numpy(next(train.batches(256))["features"]))
    np.testing.assert_allclose(norm.running_mean.numpy(), hidden.mean(0).numpy(), atol=1e-5)
    assert math.isfinite(result.validation["loss"])


def test_swa_that_never_began_keeps_the_best_weights() -> None:
    # early stopping ends the run (3 epochs) before averaging starts (epoch 8 of 10)
    train, val = toy(512, 0), toy(256, 1, flip=True)
    recipe = FAST.replace(epochs=10, patience=2, swa=True, swa_start=0.75)
    result = fit(tiny(train), train, val, recipe)
    plain = fit(tiny(train), train, val, recipe.replace(swa=False))
    assert len(result.history) == 3
    assert_same_weights(result.model, plain.model)


def test_swa_batch_norm_pass_skips_a_batch_of_one_event() -> None:
    train = toy(65, 0)  # batches of 32: 32, 32, 1
    model = pd4ml.models.DNN.build(
        train.description, pd4ml.models.DNNConfig(depth=1, width=4, batch_norm=True)
    )
    result = fit(model, train, recipe=FAST.replace(epochs=2, swa=True, swa_start=0.5))
    assert all(torch.isfinite(p).all() for p in result.model.parameters())


def test_swa_recomputes_graphnet_masked_batch_norm(world: World) -> None:
    prepared = world.data("top_tagging")
    data = TrainingData.from_prepared(prepared)
    config = pd4ml.models.GraphNetConfig(width=8, pre_layers=1, graph_layers=1, post_layers=1)
    model = pd4ml.models.build("graphnet", prepared, config)
    recipe = FAST.replace(epochs=2, swa=True, swa_start=0.5, batch_size=64)
    result = fit(model, data, recipe=recipe)
    norm = next(m for m in result.model.modules() if isinstance(m, MaskedBatchNorm))
    # the running mean equals the mean over every real node of the training data of the
    # normalised layer's input, computed with the averaged weights in one more pass
    running_mean = norm.running_mean.clone()  # before the check's own pass updates it
    inputs: list[torch.Tensor] = []
    masks: list[torch.Tensor] = []

    def record(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        inputs.append(args[0])
        masks.append(args[1])

    handle = norm.register_forward_hook(record)
    result.model.train()
    with torch.no_grad():
        for batch in data.batches(64, names=result.model.inputs):
            tensors = to_tensors(batch, "cpu")
            result.model(*(tensors[name] for name in result.model.inputs))
    handle.remove()
    real = torch.cat([x[m] for x, m in zip(inputs, masks, strict=True)])
    # batch means averaged with equal weight per batch (BatchNorm's cumulative average)
    per_batch = torch.stack([x[m].mean(0) for x, m in zip(inputs, masks, strict=True)])
    assert running_mean.shape == real.shape[1:]
    np.testing.assert_allclose(
        running_mean.numpy(), per_batch.mean(0).numpy(), rtol=1e-4, atol=1e-5
    )


# -- ensembles
def test_ensemble_of_three_trains_members_from_seeds(tmp_path: Path) -> None:
    train, val = toy(256, 0), toy(128, 1)
    recipe = FAST.replace(ensemble=3, ensemble_weighting="validation")
    result = fit(tiny(train), train, val, recipe, directory=tmp_path)
    assert len(result.model.members) == 3
    assert len(result.members) == 3
    first = [weights_of(m)["net.1.weight"] for m in result.model.members]
    assert not torch.equal(first[0], first[1]) and not torch.equal(first[1], first[2])
    inverse = np.array([1 / m["loss"] for m in result.members])
    np.testing.assert_allclose(result.model.weights.numpy(), inverse / inverse.sum(), rtol=1e-6)
    mean, std = result.member_summary["loss"]
    assert mean == pytest.approx(np.mean([m["loss"] for m in result.members]))
    assert std > 0
    assert {r["member"] for r in result.history} == {0, 1, 2}
    for index in range(3):
        assert (tmp_path / f"member{index}" / FILENAME).exists()
    assert result.validation["loss"] < mean + 2 * std
    # member i is the model built with seed seed + i
    single = fit(
        tiny(train, seed=recipe.seed + 2),
        train,
        val,
        recipe.replace(ensemble=1, seed=recipe.seed + 2),
    )
    assert_same_weights(single.model, result.model.members[2])
    assert single.validation["loss"] == result.members[2]["loss"]
    # a finished directory returns its members without training again
    again = fit(tiny(train), train, val, recipe, directory=tmp_path)
    for old, new in zip(result.model.members, again.model.members, strict=True):
        assert_same_weights(old, new)


def test_validation_weighting_needs_validation_data() -> None:
    train = toy(64, 0)
    with pytest.raises(ValueError, match="validation"):
        fit(tiny(train), train, recipe=FAST.replace(ensemble=2, ensemble_weighting="validation"))


# -- LR range test
def test_learning_rate_find_runs_the_range_test_and_restores_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pd4ml.train.loop as loop

    found_results: list[LRFinderResult] = []

    def recording(train_step: Any, **options: Any) -> LRFinderResult:
        result = find_learning_rate(train_step, **options)
        found_results.append(result)
        return result

    monkeypatch.setattr(loop, "find_learning_rate", recording)
    train = toy(256, 0)
    found = fit(tiny(train), train, recipe=FAST.replace(learning_rate="find"), directory=tmp_path)
    (sweep,) = found_results
    assert len(sweep.learning_rates) > 10 and all(math.isfinite(x) for x in sweep.losses)
    assert 1e-7 <= sweep.suggestion <= 10.0
    assert (tmp_path / "lr_finder.svg").read_text().startswith("<")
    fixed = fit(tiny(train), train, recipe=FAST.replace(learning_rate=sweep.suggestion))
    assert_same_weights(found.model, fixed.model)  # the range test's steps left no trace
    assert found.lr_finder is sweep  # the result carries the range test (the bench plots it)
    assert fixed.lr_finder is None

    narrow = fit(
        tiny(train), train, recipe=FAST.replace(learning_rate="find", find_range=(1e-5, 1e-2))
    )
    assert narrow.lr_finder is not None
    assert narrow.lr_finder.learning_rates[0] == pytest.approx(1e-5)
    assert max(narrow.lr_finder.learning_rates) <= 1e-2 * (1 + 1e-9)
    assert narrow.lr_finder.suggestion <= 1e-3 * (1 + 1e-9)


# -- prepared splits
@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with ArchiveServer() as server:
        yield World(tmp_path_factory.mktemp("train"), server)


def test_fit_on_a_prepared_split_reads_batches_from_the_memory_maps(world: World) -> None:
    prepared = world.data("higgsml")
    data = TrainingData.from_prepared(prepared)
    assert data.n_events == prepared.n_events
    assert data.description.dataset == "higgsml"
    batch = next(data.batches(64, shuffle=True, seed=0, names=("features",)))
    assert set(batch) == {"features", "labels", "weights"}
    assert batch["labels"].dtype == np.int64 and batch["weights"].dtype == np.float32
    rows = [len(b["labels"]) for b in data.batches(300)]
    assert sum(rows) == data.n_events and max(rows) == 300
    result = fit(tiny(data, hidden=16), prepared, prepared, FAST.replace(epochs=2, batch_size=256))
    assert len(result.history) == 2
    assert math.isfinite(result.validation["loss"])
    kaggle = fit(tiny(data), prepared, recipe=FAST.replace(epochs=1, weights="kaggle_weights"))
    assert len(kaggle.history) == 1


def test_fit_on_a_prepared_regression_split_with_a_graph(world: World) -> None:
    prepared = world.data("calice_ahcal")
    data = TrainingData.from_prepared(prepared)
    assert data.description.task == "regression" and data.description.graph == "neighbours"
    result = fit(tiny(data), prepared, prepared, FAST.replace(epochs=2))
    assert math.isfinite(result.validation["loss"]) and len(result.history) == 2


def test_to_tensors_shares_memory_on_the_cpu() -> None:
    batch = {"features": np.arange(6, dtype=np.float32).reshape(3, 2)}
    tensors = to_tensors(batch)
    tensors["features"][0, 0] = 42
    assert batch["features"][0, 0] == 42


def test_train_result_save_writes_a_model_that_reloads_with_its_recipe(tmp_path: Path) -> None:
    train = toy(64, 0)
    model = pd4ml.models.DNN.build(train.description, pd4ml.models.DNNConfig(depth=1, width=4))
    result = fit(model, train, train, FAST.replace(epochs=1))
    path = result.save(tmp_path / "saved")
    loaded = pd4ml.models.load(path)
    info = json.loads((path / "model.json").read_text())
    assert Recipe.from_json(info["recipe"]) == result.recipe
    assert info["extra"]["validation"]["loss"] == pytest.approx(result.validation["loss"])
    batch = to_tensors(next(train.batches(64)), "cpu")
    inputs = [batch[name] for name in result.model.inputs]  # type: ignore[union-attr]
    result.model.eval()
    assert torch.equal(loaded(*inputs), result.model(*inputs))


def test_history_json_is_strict_json_when_a_metric_is_infinite(tmp_path: Path) -> None:
    import pd4ml.train.loop as loop

    def refuse(constant: str) -> None:
        raise AssertionError(f"non-standard JSON constant {constant}")

    record = {"val_rejection_30": math.inf, "val_auc": 0.9, "spread": (math.nan, 1.0)}
    loop._write_json(tmp_path / "history.json", [record])
    text = (tmp_path / "history.json").read_text()
    stored = json.loads(text, parse_constant=refuse)
    assert stored == [{"val_rejection_30": None, "val_auc": 0.9, "spread": [None, 1.0]}]


def test_a_last_batch_of_one_event_is_left_out_so_batch_norm_can_train() -> None:
    # 65 events in batches of 32: the third batch would hold one event, which batch norm
    # cannot normalise in training mode
    train = toy(65, 0)
    model = pd4ml.models.DNN.build(
        train.description, pd4ml.models.DNNConfig(depth=1, width=4, batch_norm=True)
    )
    result = fit(model, train, recipe=FAST.replace(epochs=1))
    assert len(result.history) == 1
    sizes = [len(batch["labels"]) for batch in train.batches(32, shuffle=True, smallest=2)]
    assert sizes == [32, 32]
    assert [len(b["labels"]) for b in train.batches(32)] == [32, 32, 1]


def test_regression_targets_in_physical_units_train_through_the_target_scale() -> None:
    generator = np.random.default_rng(0)
    x = generator.normal(size=(1200, 4)).astype(np.float32)
    y = (50.0 + 10.0 * x[:, 0]).astype(np.float32)  # "GeV": mean 50, spread 10
    weights = np.where(np.arange(1200) % 2 == 0, 1.0, 3.0).astype(np.float32)
    train = TrainingData.from_arrays(x[:1000], y[:1000], weights[:1000])
    recipe = FAST.replace(epochs=3)
    errors = {}
    for scaled in (True, False):
        model = pd4ml.models.DNN.build(train.description, pd4ml.models.DNNConfig(depth=1, width=8))
        result = fit(model, train, recipe=recipe.replace(scale_targets=scaled))
        prediction = predict(result.model, {"features": x[1000:]})
        errors[scaled] = float(np.mean((prediction - y[1000:]) ** 2))
        if scaled:
            w, t = weights[:1000].astype(np.float64), y[:1000].astype(np.float64)
            mean = np.average(t, weights=w)
            std = np.sqrt(np.average((t - mean) ** 2, weights=w))
            assert float(result.model.target_location) == pytest.approx(mean, rel=1e-6)
            assert float(result.model.target_scale) == pytest.approx(std, rel=1e-6)
    constant = float(np.mean((y[:1000].mean() - y[1000:]) ** 2))
    assert errors[True] < 0.2 * constant < errors[False]


def test_recipe_settings_that_cannot_apply_are_errors_before_training() -> None:
    train = toy(64, 0)
    with pytest.raises(RecipeError, match=r"Plateau.*val="):
        fit(tiny(train), train, recipe=FAST.replace(schedule=Plateau()))
    with pytest.raises(RecipeError, match="not a metric of a classification"):
        fit(tiny(train), train, train, FAST.replace(monitor="mse"))
    with pytest.raises(TrainingDataError, match="kaggle_weights"):
        fit(tiny(train), train, recipe=FAST.replace(weights="kaggle_weights"))


class _Copies:
    """Test-time copies: the batch itself, then copies with features scaled by ``factor``."""

    def __init__(self, factor: float) -> None:
        self.factor = factor
        self.calls: list[int] = []

    def random(self, batch: Mapping[str, np.ndarray], generator: np.random.Generator) -> Any:
        return dict(batch)

    def variants(self, batch: Mapping[str, np.ndarray], n: int) -> list[dict[str, np.ndarray]]:
        self.calls.append(n)
        scaled = {**batch, "features": batch["features"] * np.float32(self.factor)}
        return [dict(batch)] + [scaled] * (n - 1)


def test_validation_averages_the_recipe_tta_copies() -> None:
    train, val = toy(256, 0), toy(128, 1)
    plain = fit(tiny(train), train, val, FAST.replace(epochs=1))
    identical = _Copies(1.0)
    same = fit(tiny(train), train, val.with_augmentation(identical), FAST.replace(epochs=1, tta=4))
    assert identical.calls and set(identical.calls) == {4}
    assert same.validation["auc"] == plain.validation["auc"]
    assert same.validation["loss"] == pytest.approx(plain.validation["loss"], rel=1e-5)
    # copies with the features zeroed: the mean of 1 real and 3 uninformative predictions
    zeroed = fit(
        tiny(train), train, val.with_augmentation(_Copies(0.0)), FAST.replace(tta=4, epochs=1)
    )
    model = zeroed.model
    batch = to_tensors(next(val.batches(128)), "cpu")
    with torch.no_grad():
        real = model.predict(batch["features"])
        blank = model.predict(torch.zeros_like(batch["features"]))
    expected = pd4ml.metrics.roc_auc(batch["labels"].numpy(), ((real + 3 * blank) / 4).numpy())
    assert zeroed.validation["auc"] == pytest.approx(expected, rel=1e-6)
    with pytest.raises(RecipeError, match="tta 2 needs an augmentation"):
        fit(tiny(train), train, val, FAST.replace(tta=2))


def test_batches_of_a_prepared_split_read_only_the_arrays_asked_for(world: World) -> None:
    data = TrainingData.from_prepared(world.data("top_tagging"))
    read: list[tuple[str, ...]] = []
    original = type(data._events).read  # type: ignore[union-attr]

    def spy(self: Any, rows: Any, copy: bool = True) -> dict[str, np.ndarray]:
        read.append(self.names)
        return original(self, rows, copy)

    import pd4ml.adapters.common as common

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(common.EventArrays, "read", spy)
        batch = next(data.batches(32, names=("features", "mask")))
    assert set(batch) == {"features", "mask", "labels", "weights"}
    assert read == [("features", "mask", "labels")]  # not the neighbour arrays
