"""How to train: a typed, validated, frozen recipe (never a dict of strings).

    from pd4ml.train import Recipe
    recipe = Recipe(epochs=20, batch_size=512, learning_rate="find", ensemble=5, augment=True)
    recipe.replace(seed=3)                          # a changed copy
    Recipe.from_json(recipe.to_json()) == recipe    # JSON round trip (stored with saved models)

Every field is checked on construction; an invalid value raises :class:`RecipeError` naming the
field (and, for an unknown choice, the closest valid one).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pd4ml.errors import Pd4mlError
from pd4ml.metrics import higher_is_better
from pd4ml.train.schedules import OneCycle, Plateau, Schedule, ScheduleError, schedule_from_json


class RecipeError(Pd4mlError, ValueError):
    """An invalid training recipe (the message names the field)."""


class TrainingError(Pd4mlError, RuntimeError):
    """Training cannot start or continue (missing inputs, a bad argument of ``fit``)."""


#: Names :attr:`Recipe.monitor` accepts: the validation loss and the metrics of
#: ``pd4ml.metrics.evaluate``.
MONITORS = (
    "loss",
    "accuracy",
    "auc",
    "rejection_30",
    "rejection_50",
    "bce",
    "cross_entropy",
    "mse",
    "mae",
    "resolution",
    "resolution_68",
)

_CHOICES: dict[str, tuple[str, ...]] = {
    "optimizer": ("adam", "adamw", "sgd"),
    "loss": ("auto", "bce", "cross_entropy", "mse", "huber"),
    "ensemble_weighting": ("uniform", "validation"),
    "device": ("auto", "cpu", "cuda"),
    "monitor": MONITORS,
}


@dataclass(frozen=True)
class Recipe:
    """A training recipe.

    Attributes:
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"`` (momentum 0.9, Nesterov off).
        learning_rate: the base (peak) learning rate, or ``"find"``: an LR range test on the
            training data chooses it before training (plot saved in the run directory).
        find_range: the (first, last) learning rate the range test sweeps; its suggestion is
            at most a tenth of the last. Narrow it on small data, where the loss of the last
            steps is noise and the widest sweep can suggest rates that kill the network.
        schedule: a schedule dataclass of :mod:`pd4ml.train.schedules` (``Constant()``,
            ``OneCycle(...)``, ``CosineRestarts(...)``, ``Plateau(...)``), stepped every
            optimizer step.
        epochs: passes over the training data (at most; early stopping may end sooner).
        batch_size: events per optimizer step (the *global* batch with ``torchrun``).
        patience: epochs without improvement of ``monitor`` before stopping (None: never).
        monitor: the validation quantity that picks the best epoch (``"loss"`` or a metric
            of ``pd4ml.metrics.evaluate``; higher-is-better metrics are maximised).
        weight_decay: L2 penalty (decoupled for ``adamw``).
        loss: ``"auto"`` (BCE for binary, cross-entropy for multi-class, MSE for regression),
            ``"bce"``, ``"cross_entropy"``, ``"mse"`` or ``"huber"`` (δ = 1).
        augment: train-time augmentation by the data's declared physical symmetries.
        tta: test-time augmentation copies averaged in every validation (0 = none; the
            data's augmentation gives them; ``predict(..., tta=...)`` does the same at inference).
        ensemble: number of members, trained from seeds ``seed``, ``seed + 1``, ...
        ensemble_weighting: ``"uniform"`` or ``"validation"`` (weights ∝ 1 / validation loss).
        swa: stochastic weight averaging from the fraction ``swa_start`` of the epochs on.
        swa_start: fraction of ``epochs`` after which weights are averaged, in [0, 1).
        seed: seeds torch, NumPy and Python's ``random``; shuffling uses ``(seed, epoch)``.
        threads: ``torch.set_num_threads`` for the run (None: unchanged).
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        amp: automatic mixed precision (CUDA only; ignored on CPU).
        weights: the per-event array used as sample weight (None: ``weights``, 1 where absent).
        balance_classes: rescale weights so that every class has the same total weight.
        scale_targets: regression: before training, set the model's output scale and offset to
            the standard deviation and mean of the training targets (weighted), so the network
            learns numbers of order one whatever the units (with Adam, which is invariant to
            the loss scale, as fast as on standardised targets; Huber's δ = 1 stays in the
            targets' units).
        grad_clip: clip the gradient norm to this value (None: no clipping).
    """

    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    learning_rate: float | Literal["find"] = 1e-3
    find_range: tuple[float, float] = (1e-7, 10.0)
    schedule: Schedule = field(default_factory=OneCycle)
    epochs: int = 10
    batch_size: int = 256
    patience: int | None = None
    monitor: str = "loss"
    weight_decay: float = 0.0
    loss: Literal["auto", "bce", "cross_entropy", "mse", "huber"] = "auto"
    augment: bool = False
    tta: int = 0
    ensemble: int = 1
    ensemble_weighting: Literal["uniform", "validation"] = "uniform"
    swa: bool = False
    swa_start: float = 0.75
    seed: int = 0
    threads: int | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = False
    weights: str | None = None
    balance_classes: bool = False
    scale_targets: bool = True
    grad_clip: float | None = None

    def __post_init__(self) -> None:
        for name, choices in _CHOICES.items():
            _choice(name, getattr(self, name), choices)
        for name in ("augment", "swa", "amp", "balance_classes", "scale_targets"):
            if not isinstance(getattr(self, name), bool):
                raise _wrong_type(name, getattr(self, name), "True or False")
        _integer("epochs", self.epochs, 1)
        _integer("batch_size", self.batch_size, 1)
        _integer("ensemble", self.ensemble, 1)
        _integer("tta", self.tta, 0)
        _integer("seed", self.seed, 0)
        if self.patience is not None:
            _integer("patience", self.patience, 0)
        if self.threads is not None:
            _integer("threads", self.threads, 1)
        if self.learning_rate != "find":
            if isinstance(self.learning_rate, str):
                raise RecipeError(
                    f"Recipe.learning_rate must be a positive number or 'find', not "
                    f"{self.learning_rate!r}"
                )
            self._set_float("learning_rate", minimum=0.0, strict=True)
        self._check_find_range()
        self._set_float("weight_decay", minimum=0.0)
        self._set_float("swa_start", minimum=0.0)
        if not self.swa_start < 1.0:
            raise RecipeError(f"Recipe.swa_start must be in [0, 1), not {self.swa_start!r}")
        if self.grad_clip is not None:
            self._set_float("grad_clip", minimum=0.0, strict=True)
        if self.weights is not None and not isinstance(self.weights, str):
            raise _wrong_type("weights", self.weights, "an array name or None")
        if not isinstance(self.schedule, Schedule):
            raise _wrong_type(
                "schedule", self.schedule, "a schedule of pd4ml.train.schedules (e.g. OneCycle())"
            )

        if isinstance(self.schedule, Plateau):
            wanted = "max" if self.monitor != "loss" and higher_is_better(self.monitor) else "min"
            if self.schedule.mode != wanted:
                raise RecipeError(
                    f"Recipe.schedule Plateau(mode={self.schedule.mode!r}) would reduce the "
                    f"learning rate while Recipe.monitor {self.monitor!r} improves; use "
                    f"Plateau(mode={wanted!r})"
                )

    def _check_find_range(self) -> None:
        value = self.find_range
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise _wrong_type("find_range", value, "a (first, last) pair of learning rates")
        pair = []
        for rate in value:
            if isinstance(rate, bool) or not isinstance(rate, (int, float)):
                raise _wrong_type("find_range", value, "a (first, last) pair of learning rates")
            pair.append(float(rate))
        if not (all(math.isfinite(rate) for rate in pair) and 0 < pair[0] < pair[1]):
            raise RecipeError(
                f"Recipe.find_range must be finite rates with 0 < first < last, not {value!r}"
            )
        object.__setattr__(self, "find_range", (pair[0], pair[1]))

    def _set_float(self, name: str, *, minimum: float, strict: bool = False) -> None:
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _wrong_type(name, value, "a number")
        value = float(value)
        if not math.isfinite(value) or value < minimum or (strict and value == minimum):
            bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
            raise RecipeError(f"Recipe.{name} must be finite and {bound}, not {value!r}")
        object.__setattr__(self, name, value)

    def replace(self, **changes: Any) -> Recipe:
        """A copy with ``changes`` applied (validated like a new recipe)."""
        unknown = sorted(set(changes) - {item.name for item in dataclasses.fields(self)})
        if unknown:
            raise RecipeError(_unknown_fields(unknown))
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict; the schedule as ``{"kind": "onecycle", <its fields>}``."""
        value = {
            item.name: list(getattr(self, item.name))
            if isinstance(getattr(self, item.name), tuple)
            else getattr(self, item.name)
            for item in dataclasses.fields(self)
            if item.name != "schedule"
        }
        value["schedule"] = _jsonable(self.schedule.to_json())
        return value

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Recipe:
        """The recipe of :meth:`to_json`'s output."""
        fields = dict(value)
        unknown = sorted(set(fields) - {item.name for item in dataclasses.fields(cls)})
        if unknown:
            raise RecipeError(_unknown_fields(unknown))
        if "schedule" in fields:
            fields["schedule"] = _schedule_from_json(fields["schedule"])
        return cls(**fields)


def _schedule_from_json(value: Mapping[str, Any]) -> Schedule:
    """The schedule of a recipe's JSON (errors name ``Recipe.schedule``)."""
    if isinstance(value, Mapping):
        value = {
            key: tuple(item) if isinstance(item, list) else item for key, item in value.items()
        }
    try:
        return schedule_from_json(value)
    except ScheduleError as error:
        raise RecipeError(f"Recipe.schedule: {error}") from None


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    return value


def _closest(value: str, choices: tuple[str, ...]) -> str:
    match = difflib.get_close_matches(value, choices, n=1, cutoff=0.0)
    listed = ", ".join(repr(choice) for choice in choices)
    hint = f"; did you mean {match[0]!r}?" if match else ""
    return f" (choose one of {listed}){hint}"


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if not isinstance(value, str):
        raise _wrong_type(name, value, "one of " + ", ".join(repr(c) for c in choices))
    if value not in choices:
        raise RecipeError(f"Recipe.{name} {value!r} is not valid{_closest(value, choices)}")


def _integer(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong_type(name, value, "a whole number")
    if value < minimum:
        raise RecipeError(f"Recipe.{name} must be at least {minimum}, not {value}")


def _wrong_type(name: str, value: Any, expected: str) -> RecipeError:
    return RecipeError(f"Recipe.{name} must be {expected}, not {type(value).__name__} {value!r}")


def _unknown_fields(unknown: list[str]) -> str:
    names = tuple(item.name for item in dataclasses.fields(Recipe))
    hints = [f"{name!r}{_closest(name, names).split(';')[-1]}" for name in unknown]
    return "Recipe has no field(s) " + ", ".join(hints)
