"""Recipe validation (errors name the field) and its JSON round trip."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from pd4ml.train import Recipe, RecipeError
from pd4ml.train.schedules import CosineRestarts, OneCycle, Plateau


def test_defaults_are_valid_and_frozen() -> None:
    recipe = Recipe()
    assert recipe.optimizer == "adam" and recipe.monitor == "loss" and recipe.ensemble == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.epochs = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"optimizer": "adma"}, r"Recipe\.optimizer 'adma'.*did you mean 'adam'"),
        ({"loss": "crossentropy"}, r"Recipe\.loss.*did you mean 'cross_entropy'"),
        ({"monitor": "auroc"}, r"Recipe\.monitor.*did you mean 'auc'"),
        ({"device": "gpu"}, r"Recipe\.device"),
        ({"ensemble_weighting": "best"}, r"Recipe\.ensemble_weighting"),
        ({"epochs": 0}, r"Recipe\.epochs must be at least 1"),
        ({"epochs": 2.5}, r"Recipe\.epochs must be a whole number"),
        ({"batch_size": True}, r"Recipe\.batch_size must be a whole number"),
        ({"learning_rate": -1.0}, r"Recipe\.learning_rate must be finite and > 0"),
        ({"learning_rate": "fnd"}, r"Recipe\.learning_rate must be a positive number or 'find'"),
        ({"learning_rate": float("nan")}, r"Recipe\.learning_rate"),
        ({"weight_decay": -0.1}, r"Recipe\.weight_decay"),
        ({"swa_start": 1.0}, r"Recipe\.swa_start must be in \[0, 1\)"),
        ({"patience": -1}, r"Recipe\.patience must be at least 0"),
        ({"threads": 0}, r"Recipe\.threads"),
        ({"tta": -2}, r"Recipe\.tta"),
        ({"ensemble": 0}, r"Recipe\.ensemble must be at least 1"),
        ({"grad_clip": 0.0}, r"Recipe\.grad_clip"),
        ({"augment": "yes"}, r"Recipe\.augment must be True or False"),
        ({"weights": 3}, r"Recipe\.weights must be an array name"),
        ({"schedule": "onecycle"}, r"Recipe\.schedule must be a schedule"),
        ({"seed": -1}, r"Recipe\.seed"),
    ],
)
def test_invalid_fields_fail_at_construction_naming_the_field(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(RecipeError, match=message):
        Recipe(**changes)


def test_numbers_are_normalised_to_float() -> None:
    recipe = Recipe(learning_rate=1, weight_decay=0)
    assert isinstance(recipe.learning_rate, float) and isinstance(recipe.weight_decay, float)
    assert Recipe(learning_rate="find").learning_rate == "find"


def test_replace_validates_and_rejects_unknown_fields() -> None:
    recipe = Recipe().replace(epochs=5, seed=3)
    assert (recipe.epochs, recipe.seed) == (5, 3)
    with pytest.raises(RecipeError, match="epochs"):
        Recipe().replace(epochs=-1)
    with pytest.raises(RecipeError, match=r"no field.*'epoch'.*did you mean 'epochs'"):
        Recipe().replace(epoch=5)


def test_json_round_trip() -> None:
    recipe = Recipe(
        optimizer="sgd",
        learning_rate="find",
        epochs=7,
        patience=2,
        monitor="auc",
        ensemble=4,
        ensemble_weighting="validation",
        swa=True,
        threads=2,
        weights="kaggle_weights",
        grad_clip=1.5,
    )
    text = json.dumps(recipe.to_json())
    value = json.loads(text)
    assert value["schedule"]["kind"] == "onecycle"
    assert Recipe.from_json(value) == recipe
    assert Recipe.from_json(Recipe().to_json()) == Recipe()
    for schedule in (OneCycle(max_lr=0.02, warmup_fraction=0.25), CosineRestarts(), Plateau()):
        with_schedule = Recipe(schedule=schedule)
        assert Recipe.from_json(json.loads(json.dumps(with_schedule.to_json()))) == with_schedule


def test_from_json_errors_name_the_problem() -> None:
    with pytest.raises(RecipeError, match=r"no field.*'optimiser'.*'optimizer'"):
        Recipe.from_json({"optimiser": "adam"})
    with pytest.raises(RecipeError, match=r"Recipe\.schedule: unknown schedule kind 'OneCylce'"):
        Recipe.from_json({"schedule": {"kind": "OneCylce"}})
    with pytest.raises(RecipeError, match=r"Recipe\.epochs"):
        Recipe.from_json({"epochs": "ten"})


def test_default_schedule_is_one_cycle() -> None:
    schedule = Recipe().schedule
    assert isinstance(schedule, OneCycle)
    state = schedule.start(0.01, 100, 10)
    assert state.learning_rate(0) > 0
    state.load_state_dict(state.state_dict())


def test_plateau_mode_must_follow_the_monitor() -> None:
    with pytest.raises(RecipeError, match=r"Plateau\(mode='max'\)"):
        Recipe(schedule=Plateau(), monitor="auc")
    assert Recipe(schedule=Plateau(mode="max"), monitor="auc").schedule.mode == "max"
    with pytest.raises(RecipeError, match=r"Plateau\(mode='min'\)"):
        Recipe(schedule=Plateau(mode="max"))


def test_the_range_test_sweep_is_part_of_the_recipe() -> None:
    recipe = Recipe(learning_rate="find", find_range=[1e-6, 0.1])  # type: ignore[arg-type]
    assert recipe.find_range == (1e-6, 0.1)
    assert Recipe.from_json(recipe.to_json()) == recipe
    assert recipe.to_json()["find_range"] == [1e-6, 0.1]  # JSON, as a checkpoint stores it
    for bad in [(0.1, 1e-6), (0.0, 1.0), (1e-6,), (1e-6, float("inf")), ("a", 1.0)]:
        with pytest.raises(RecipeError, match="find_range"):
            Recipe(find_range=bad)  # type: ignore[arg-type]
