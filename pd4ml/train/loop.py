"""``fit``: train any pd4ml model on any data with one recipe.

    from pd4ml.train import Recipe, TrainingData, fit
    result = fit(model, train, val, Recipe(epochs=20), directory="runs/fcn")
    result.model, result.history, result.validation, result.best_epoch

One epoch is a pass over the training data in batches of ``Recipe.batch_size`` (a uniform
permutation per ``(seed, epoch)``); the schedule sets the learning rate (and β₁ / momentum) of
every optimizer step; after each epoch the validation loss and the metrics of
``pd4ml.metrics.evaluate`` are computed, the best epoch (by ``Recipe.monitor``) is kept, and
with ``directory`` a checkpoint and ``history.json`` are written. Calling ``fit`` again with
the same directory resumes from the last checkpoint and ends with the weights an uninterrupted
run would have had (the state of the model, optimizer, schedule, gradient scaler, SWA average
and every random generator is in the checkpoint; shuffling and augmentation depend only on
``(seed, epoch)``). A finished run's directory returns its result without training.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from pd4ml import metrics as metric_functions
from pd4ml._logging import get_logger
from pd4ml.models.base import Model, set_target_scale, to_prediction
from pd4ml.models.ensemble import Ensemble
from pd4ml.models.graphnet import MaskedBatchNorm
from pd4ml.models.saved import save as save_model
from pd4ml.train.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_optimizer,
    load_rng,
    optimizer_parts,
    prefixed,
    rng_parts,
    save_checkpoint,
    unprefixed,
)
from pd4ml.train.data import TrainingData, as_training_data, to_tensors
from pd4ml.train.distributed import Distributed, device_for, from_environment
from pd4ml.train.losses import LossName, prediction_loss, resolve_loss, weighted_loss
from pd4ml.train.lr_finder import LRFinderResult, find_learning_rate
from pd4ml.train.progress import TrainingProgress, bar_enabled
from pd4ml.train.recipe import Recipe, RecipeError, TrainingError
from pd4ml.train.schedules import Plateau

if TYPE_CHECKING:
    from pd4ml.datasets.results import PreparedData
    from pd4ml.train.schedules import ScheduleState

log = get_logger("train")

#: Events per process below which a last training batch is left out of the epoch.
_SMALLEST_BATCH = 2
#: Recipe fields that may change between a run and its resumption.
_RESUMABLE_CHANGES = frozenset({"threads", "device"})
#: Batches between two updates of the progress bar (each reads the loss: a sync point).
_PROGRESS_EVERY = 50


@dataclasses.dataclass
class TrainResult:
    """What :func:`fit` returns.

    Attributes:
        model: the trained model (best epoch, or the SWA average), or the ensemble.
        history: one dict per epoch (``epoch``, ``train_loss``, ``learning_rate``,
            ``val_loss``, ``val_<metric>``, ``seconds``; ``member`` for ensembles).
        best_epoch: the epoch (from 0) whose weights were kept (last epoch without
            validation; for ensembles, the first member's).
        validation: the validation metrics of the returned model (empty without validation).
        members: per-member validation metrics (one dict per member).
        member_summary: per metric, the members' (mean, sample standard deviation).
        seconds: wall time of the call.
        recipe: the recipe used.
        lr_finder: the learning-rate range test of the first member when the recipe's
            ``learning_rate`` is ``"find"`` (None otherwise, and after resuming a finished run).
    """

    model: nn.Module
    history: list[dict[str, Any]]
    best_epoch: int | None
    validation: dict[str, float]
    members: list[dict[str, float]]
    member_summary: dict[str, tuple[float, float]]
    seconds: float
    recipe: Recipe
    lr_finder: LRFinderResult | None = None

    def save(self, path: str | Path) -> Path:
        """Save the model (or ensemble) with its recipe: ``pd4ml.models.save``."""
        if not isinstance(self.model, (Model, Ensemble)):
            raise TrainingError(
                f"only pd4ml models and ensembles can be saved, not {type(self.model).__name__}"
            )
        save_model(
            self.model,
            path,
            recipe=self.recipe.to_json(),
            extra={
                "validation": self.validation,
                "members": self.members,
                "best_epoch": self.best_epoch,
            },
        )
        return Path(path)


@dataclasses.dataclass
class _Member:
    model: Model
    history: list[dict[str, Any]]
    best_epoch: int
    validation: dict[str, float]
    lr_finder: LRFinderResult | None = None


ModelOrBuilder = Model | Callable[[int], Model]


def fit(
    model: ModelOrBuilder,
    train: TrainingData | PreparedData,
    val: TrainingData | PreparedData | None = None,
    recipe: Recipe | None = None,
    *,
    directory: str | Path | None = None,
    progress: str | None = None,
) -> TrainResult:
    """Train ``model`` on ``train`` (validating on ``val``) as ``recipe`` says.

    Args:
        model: a :class:`pd4ml.models.Model`, or a callable ``seed -> Model`` (called after
            seeding). With ``recipe.ensemble`` > 1 a model instance's architecture and
            configuration are rebuilt per member with seeds ``seed + i``.
        train, val: prepared splits or :class:`TrainingData`.
        recipe: the recipe (default ``Recipe()``).
        directory: where checkpoints (every epoch), ``history.json`` and the LR-finder plot
            go; an existing checkpoint there is resumed. Ensemble members use
            ``directory/member{i}``.
        progress: ``"auto"`` (a bar on a terminal), ``"on"`` or ``"off"``.
    """
    recipe = recipe if recipe is not None else Recipe()
    started = time.perf_counter()
    previous_threads = torch.get_num_threads()
    if recipe.threads is not None:
        torch.set_num_threads(recipe.threads)
    try:
        return _fit(model, train, val, recipe, directory, progress, started)
    finally:
        if recipe.threads is not None:
            torch.set_num_threads(previous_threads)


def _fit(
    model: ModelOrBuilder,
    train: TrainingData | PreparedData,
    val: TrainingData | PreparedData | None,
    recipe: Recipe,
    directory: str | Path | None,
    progress: str | None,
    started: float,
) -> TrainResult:
    train_data = as_training_data(train, recipe.weights)
    val_data = as_training_data(val, recipe.weights) if val is not None else None
    if recipe.balance_classes:
        train_data = train_data.balanced()
        val_data = val_data.balanced() if val_data is not None else None
    if recipe.ensemble > 1 and recipe.ensemble_weighting == "validation" and val_data is None:
        raise RecipeError("Recipe.ensemble_weighting 'validation' needs validation data (val=)")
    if recipe.monitor != "loss" and val_data is None:
        raise RecipeError(f"Recipe.monitor {recipe.monitor!r} needs validation data (val=)")
    if isinstance(recipe.schedule, Plateau) and val_data is None:
        raise RecipeError("Recipe.schedule Plateau reduces on a validation metric: pass val=")
    description = train_data.description
    kind = "multiclass" if description.n_classes > 2 else description.task
    known = [name for name in metric_functions.EVALUATED[kind] if name != "bias"]
    if recipe.monitor != "loss" and recipe.monitor not in known:
        raise RecipeError(
            f"Recipe.monitor {recipe.monitor!r} is not a metric of a "
            f"{train_data.description.task} (choose 'loss' or one of {', '.join(known)})"
        )
    device = device_for(recipe.device)
    context = from_environment(device)
    if context.enabled and device.type == "cuda":
        device = torch.device("cuda", context.local_rank)
    root = Path(directory) if directory is not None else None
    show = bar_enabled(progress) and context.is_main
    regression = train_data.description.task == "regression"
    target_moments = train_data.target_moments() if recipe.scale_targets and regression else None
    members: list[_Member] = []
    for index in range(recipe.ensemble):
        seed = recipe.seed + index
        _seed_everything(seed)
        member = _member_model(model, index, seed, recipe, train_data)
        # training draws from the seed alone, whether the model was built here or passed in;
        # with several processes each rank draws its own dropout masks (the weights are
        # rank 0's, broadcast when the model is wrapped for data parallelism)
        _seed_everything(seed + 1_000_003 * context.rank)
        if target_moments is not None:
            set_target_scale(member, target_moments[0], target_moments[1] or 1.0)
        folder = root / f"member{index}" if root is not None and recipe.ensemble > 1 else root
        label = f"member {index + 1}/{recipe.ensemble}" if recipe.ensemble > 1 else "training"
        run = _Run(member, train_data, val_data, recipe, seed, folder, device, context)
        members.append(run.train(TrainingProgress(label, show)))
    history = [
        {**record, "member": index} if recipe.ensemble > 1 else record
        for index, member in enumerate(members)
        for record in member.history
    ]
    if recipe.ensemble == 1:
        final: nn.Module = members[0].model
        validation = members[0].validation
    else:
        final = _ensemble(members, recipe)
        validation = (
            _validate(final, val_data, recipe, device, ensemble=True)
            if val_data is not None
            else {}
        )
    if root is not None and context.is_main:
        _write_json(root / "history.json", history)
    return TrainResult(
        model=final,
        history=history,
        best_epoch=members[0].best_epoch,
        validation=validation,
        members=[member.validation for member in members],
        member_summary=_summary([member.validation for member in members]),
        seconds=time.perf_counter() - started,
        recipe=recipe,
        lr_finder=members[0].lr_finder,
    )


class _Run:
    """The training of one model (one ensemble member)."""

    def __init__(
        self,
        model: Model,
        train: TrainingData,
        val: TrainingData | None,
        recipe: Recipe,
        seed: int,
        directory: Path | None,
        device: torch.device,
        context: Distributed,
    ) -> None:
        missing = train.inputs_missing(model.inputs)
        if missing:
            raise TrainingError(
                f"{type(model).__name__} reads {missing}, which the training data do not have "
                f"(available: {sorted(train.description.arrays)})"
            )
        self.model = model.to(device)
        self.train_data = train
        self.val = val
        self.recipe = recipe
        self.seed = seed
        self.directory = directory
        self.device = device
        self.context = context
        self.names = tuple(model.inputs)
        self.loss_name: LossName = resolve_loss(recipe.loss, train.description)
        self.amp = recipe.amp and device.type == "cuda"
        self.net: nn.Module = model
        if context.enabled:
            from torch.nn.parallel import DistributedDataParallel

            self.net = DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None
            )
        self.optimizer = _optimizer(model, recipe)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.steps_per_epoch = _batches_per_epoch(
            train.n_events, recipe.batch_size, context.world_size
        )
        if self.steps_per_epoch == 0:
            raise TrainingError(
                f"{train.n_events} training events give no batch of {recipe.batch_size} "
                f"for {context.world_size} process(es)"
            )
        self.swa: torch.optim.swa_utils.AveragedModel | None = None
        if recipe.swa:
            self.swa = torch.optim.swa_utils.AveragedModel(model)
        self.swa_first_epoch = min(int(recipe.swa_start * recipe.epochs), recipe.epochs - 1)
        self.history: list[dict[str, Any]] = []
        self.best: tuple[float, int, dict[str, torch.Tensor], dict[str, float]] | None = None
        self.epoch = 0
        self.step = 0
        self.bad_epochs = 0
        self.stopped = False
        self.base_lr = 0.0
        self.schedule: ScheduleState | None = None
        self.lr_finder: LRFinderResult | None = None

    # -- the run --------------------------------------------------------------------------------
    def train(self, progress: TrainingProgress) -> _Member:
        try:
            restored = self._restore()
            if restored is not None:
                return restored
            if self.schedule is None:
                self.base_lr = (
                    self._find_learning_rate()
                    if self.recipe.learning_rate == "find"
                    else float(self.recipe.learning_rate)
                )
                self.schedule = self._start_schedule()
            while self.epoch < self.recipe.epochs and not self.stopped:
                self._epoch(progress)
            return self._finish()
        finally:
            progress.close()

    def _start_schedule(self) -> ScheduleState:
        total = self.steps_per_epoch * self.recipe.epochs
        return self.recipe.schedule.start(self.base_lr, total, self.steps_per_epoch)

    def _epoch(self, progress: TrainingProgress) -> None:
        assert self.schedule is not None
        started = time.perf_counter()
        epoch = self.epoch
        progress.start_epoch(epoch, self.recipe.epochs, self.steps_per_epoch)
        self.net.train()
        loss_sum = torch.zeros((), device=self.device)
        weight_sum = torch.zeros((), device=self.device)
        for count, batch in enumerate(self._training_batches(epoch), 1):
            loss, weight = self._step(batch, self.schedule)
            loss_sum += loss
            weight_sum += weight
            if count % _PROGRESS_EVERY == 0:
                progress.update(count, float(loss_sum / weight_sum.clamp_min(1e-30)))
        self.context.all_reduce_sum(loss_sum)
        self.context.all_reduce_sum(weight_sum)
        record: dict[str, Any] = {
            "epoch": epoch,
            "train_loss": float(loss_sum / weight_sum.clamp_min(1e-30)),
            "learning_rate": self.optimizer.param_groups[0]["lr"],
        }
        if self.swa is not None and epoch >= self.swa_first_epoch:
            self.swa.update_parameters(self.model)
        if self.val is not None:
            metrics = _validate(self.model, self.val, self.recipe, self.device)
            record.update({f"val_{name}": value for name, value in metrics.items()})
            self._track(metrics, epoch)
        record["seconds"] = time.perf_counter() - started
        self.history.append(record)
        self.epoch = epoch + 1
        progress.update(self.steps_per_epoch)
        progress.end_epoch(record, self.recipe.monitor)
        patience = self.recipe.patience
        if patience is not None and self.val is not None and self.bad_epochs >= patience:
            self.stopped = True
            log.info(
                "early stopping after epoch %d (best: epoch %d)", epoch + 1, self._best_epoch() + 1
            )
        self._save(finished=None)

    def _step(
        self, batch: Mapping[str, np.ndarray], schedule: ScheduleState
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step; returns the batch's weighted loss sum and weight (detached)."""
        tensors = to_tensors(batch, self.device)
        learning_rate = schedule.learning_rate(self.step)
        momentum = schedule.momentum(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate
            if momentum is not None:
                if "betas" in group:
                    group["betas"] = (momentum, group["betas"][1])
                else:
                    group["momentum"] = momentum
        weights = tensors["weights"]
        weight = weights.sum()
        world = self.context.world_size
        normaliser = self.context.all_reduce_sum(weight.detach().clone()) if world > 1 else weight
        autocast = (
            torch.autocast(self.device.type, dtype=torch.float16)
            if self.amp
            else contextlib.nullcontext()
        )
        with autocast:
            raw = self.net(*(tensors[name] for name in self.names))
        loss = weighted_loss(self.loss_name, raw, tensors["labels"], weights, normaliser)
        if world > 1:
            loss = loss * world  # DDP averages the ranks' gradients
        self.optimizer.zero_grad(set_to_none=True)
        if self.amp:
            self.scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
            if self.recipe.grad_clip is not None:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), self.recipe.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()  # type: ignore[no-untyped-call]
            if self.recipe.grad_clip is not None:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.recipe.grad_clip)
            self.optimizer.step()
        self.step += 1
        detached = loss.detach()
        return detached * normaliser.detach() / world, weight.detach()

    def _track(self, metrics: Mapping[str, float], epoch: int) -> None:
        assert self.schedule is not None
        monitor = self.recipe.monitor
        if monitor not in metrics:
            raise RecipeError(
                f"Recipe.monitor {monitor!r} is not computed for this task; "
                f"available: {sorted(metrics)}"
            )
        value = float(metrics[monitor])
        self.schedule.end_epoch(value)
        higher = _higher_is_better(monitor)
        improved = math.isfinite(value) and (
            self.best is None or (value > self.best[0] if higher else value < self.best[0])
        )
        if improved:
            weights = {name: t.detach().clone() for name, t in self.model.state_dict().items()}
            self.best = (value, epoch, weights, dict(metrics))
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1

    def _best_epoch(self) -> int:
        return self.best[1] if self.best is not None else self.epoch - 1

    def _finish(self) -> _Member:
        validation: dict[str, float] = {}
        averaged = self.swa is not None and int(self.swa.n_averaged) > 0
        if self.swa is not None and not averaged:
            log.warning(
                "training stopped before stochastic weight averaging began (epoch %d of %d); "
                "keeping the best epoch's weights",
                self.swa_first_epoch + 1,
                self.recipe.epochs,
            )
        if self.swa is not None and averaged:
            swa_model = self.swa.module
            self.model.load_state_dict(swa_model.state_dict())
            _update_batch_norm(self.model, self.train_data, self.names, self.recipe, self.device)
            best_epoch = self.epoch - 1
            if self.val is not None:
                validation = _validate(self.model, self.val, self.recipe, self.device)
        elif self.best is not None:
            _, best_epoch, weights, validation = self.best
            self.model.load_state_dict(weights)
        else:
            best_epoch = self.epoch - 1
            if self.val is not None and self.history:
                validation = {
                    key[4:]: value
                    for key, value in self.history[-1].items()
                    if key.startswith("val_")
                }
        self.model.eval()
        member = _Member(
            self.model, list(self.history), best_epoch, dict(validation), self.lr_finder
        )
        self._save(finished=member)
        return member

    # -- checkpoints ----------------------------------------------------------------------------
    def _save(self, finished: _Member | None) -> None:
        if self.directory is None or not self.context.is_main:
            return
        tensors = prefixed("model", self.model.state_dict())
        optimizer_tensors, optimizer_state = optimizer_parts(self.optimizer)
        tensors.update(optimizer_tensors)
        rng_tensors, rng_state = rng_parts()
        tensors.update(rng_tensors)
        if self.best is not None:
            tensors.update(prefixed("best", self.best[2]))
        if self.swa is not None:
            tensors.update(prefixed("swa", self.swa.state_dict()))
        assert self.schedule is not None
        state = {
            "recipe": self.recipe.to_json(),
            "seed": self.seed,
            "epoch": self.epoch,
            "step": self.step,
            "bad_epochs": self.bad_epochs,
            "stopped": self.stopped,
            "base_lr": self.base_lr,
            "history": self.history,
            "best": None if self.best is None else [self.best[0], self.best[1], self.best[3]],
            "schedule": self.schedule.state_dict(),
            "optimizer": optimizer_state,
            "scaler": self.scaler.state_dict() if self.amp else None,
            "rng": rng_state,
            "finished": None
            if finished is None
            else {"best_epoch": finished.best_epoch, "validation": finished.validation},
        }
        tensors = {name: tensor.clone() for name, tensor in tensors.items()}
        save_checkpoint(self.directory, tensors, state)
        _write_json(self.directory / "history.json", self.history)

    def _restore(self) -> _Member | None:
        if self.directory is None:
            return None
        loaded = load_checkpoint(self.directory)
        if loaded is None:
            return None
        tensors, state = loaded
        self._check_compatible(state)
        self.model.load_state_dict(unprefixed("model", tensors))
        self.history = list(state["history"])
        self.epoch = int(state["epoch"])
        if state["finished"] is not None:
            log.info("%s holds a finished run; returning it", self.directory)
            self.model.eval()
            return _Member(
                self.model,
                self.history,
                int(state["finished"]["best_epoch"]),
                dict(state["finished"]["validation"]),
            )
        log.info("resuming %s after epoch %d", self.directory, self.epoch)
        load_optimizer(self.optimizer, tensors, state["optimizer"])
        self.step = int(state["step"])
        self.bad_epochs = int(state["bad_epochs"])
        self.stopped = bool(state["stopped"])
        self.base_lr = float(state["base_lr"])
        self.schedule = self._start_schedule()
        self.schedule.load_state_dict(state["schedule"])
        if self.amp and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        if self.swa is not None:
            self.swa.load_state_dict(unprefixed("swa", tensors))
        if state["best"] is not None:
            value, epoch, metrics = state["best"]
            self.best = (float(value), int(epoch), unprefixed("best", tensors), dict(metrics))
        load_rng(tensors, state["rng"])
        return None

    def _check_compatible(self, state: Mapping[str, Any]) -> None:
        recorded = dict(state["recipe"])
        # a checkpoint of an older pd4ml lacks newer fields: compare with their defaults
        with contextlib.suppress(RecipeError):
            recorded = Recipe.from_json(recorded).to_json()
        if self.recipe.learning_rate != "find":
            recorded.pop("find_range", None)  # the sweep range matters only to "find"
        stored = {k: v for k, v in recorded.items() if k not in _RESUMABLE_CHANGES}
        current = {k: v for k, v in self.recipe.to_json().items() if k not in _RESUMABLE_CHANGES}
        if self.recipe.learning_rate != "find":
            current.pop("find_range", None)
        different = sorted(key for key in current if stored.get(key) != current[key])
        if different or int(state["seed"]) != self.seed:
            raise CheckpointError(
                f"{self.directory} holds a run of another recipe (differs in "
                f"{', '.join(different) or 'seed'}); use another directory or delete it"
            )

    # -- learning-rate range test ---------------------------------------------------------------
    def _find_learning_rate(self) -> float:
        saved_model = copy.deepcopy(self.model.state_dict())
        saved_optimizer = copy.deepcopy(self.optimizer.state_dict())
        rng_tensors, rng_state = rng_parts()
        batches = self._endless_batches()

        class _Fixed:
            def __init__(self) -> None:
                self.rate = 0.0

            def learning_rate(self, step: int) -> float:
                return self.rate

            def momentum(self, step: int) -> float | None:
                return None

        fixed = _Fixed()
        world = torch.tensor(1.0)

        def train_step(learning_rate: float) -> float:
            fixed.rate = learning_rate
            loss, weight = self._step(next(batches), fixed)  # type: ignore[arg-type]
            loss = self.context.all_reduce_sum(loss.clone())
            weight = self.context.all_reduce_sum(weight.clone())
            return float(loss / torch.maximum(weight, world.new_tensor(1e-30)))

        self.net.train()
        start, stop = self.recipe.find_range
        result = find_learning_rate(train_step, start=start, stop=stop)
        self.lr_finder = result
        self.model.load_state_dict(saved_model)
        self.optimizer.load_state_dict(saved_optimizer)
        load_rng(rng_tensors, rng_state)
        self.step = 0
        if self.directory is not None and self.context.is_main:
            self.directory.mkdir(parents=True, exist_ok=True)
            result.plot(self.directory / "lr_finder.svg")
        suggestion = float(result.suggestion)
        log.info("LR range test suggests a learning rate of %.3g", suggestion)
        return suggestion

    def _training_batches(self, epoch: int) -> Iterator[dict[str, np.ndarray]]:
        """This process's shuffled, augmented training batches of ``epoch``."""
        return self.train_data.batches(
            self.recipe.batch_size,
            shuffle=True,
            seed=self.seed,
            epoch=epoch,
            num_replicas=self.context.world_size,
            rank=self.context.rank,
            names=self.names,
            augment=self.recipe.augment,
            smallest=_SMALLEST_BATCH,
        )

    def _endless_batches(self) -> Iterator[dict[str, np.ndarray]]:
        epoch = 1_000_000  # orders of their own, unlike any training epoch
        while True:
            yield from self._training_batches(epoch)
            epoch += 1


# -- helpers ------------------------------------------------------------------------------------
def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _member_model(
    model: ModelOrBuilder, index: int, seed: int, recipe: Recipe, train: TrainingData
) -> Model:
    if isinstance(model, Model):
        if recipe.ensemble == 1:
            return model
        rebuilt = type(model)(model.description, model.config, shared=train.shared or None)
        return rebuilt
    if callable(model):
        built = model(seed)
        if not isinstance(built, Model):
            raise TrainingError(
                f"the model builder returned a {type(built).__name__}, not a pd4ml Model"
            )
        return built
    raise TrainingError(
        f"model must be a pd4ml Model or a callable seed -> Model, not {type(model).__name__}"
    )


def _optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    parameters = [p for p in model.parameters() if p.requires_grad]
    learning_rate = 1e-3 if recipe.learning_rate == "find" else float(recipe.learning_rate)
    if recipe.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=learning_rate, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=recipe.weight_decay)
    return torch.optim.SGD(
        parameters, lr=learning_rate, momentum=0.9, weight_decay=recipe.weight_decay
    )


def _batches_per_epoch(n_events: int, batch_size: int, world_size: int) -> int:
    """Optimizer steps per epoch: a last batch of fewer than :data:`_SMALLEST_BATCH` events per
    process is left out (batch norm cannot train on one event; with shuffling, other events
    are left out each epoch)."""
    full, remainder = divmod(n_events, batch_size)
    return full + (1 if remainder and remainder >= _SMALLEST_BATCH * world_size else 0)


def _higher_is_better(name: str) -> bool:
    return name != "loss" and metric_functions.higher_is_better(name)


def _validate(
    model: nn.Module,
    data: TrainingData,
    recipe: Recipe,
    device: torch.device,
    *,
    ensemble: bool = False,
) -> dict[str, float]:
    """The weighted loss and ``pd4ml.metrics.evaluate`` metrics of ``model`` on ``data``
    (one pass, no gradients; raw outputs for a model, predictions for an ensemble). With
    ``recipe.tta`` > 0 the predictions are the mean over that many copies of each batch from
    the data's augmentation (its ``variants``), and the loss is that of the mean prediction."""
    description = getattr(model, "description", data.description)
    loss_name = resolve_loss(recipe.loss, data.description)
    names = tuple(model.inputs)  # type: ignore[arg-type]
    augmentation = data.default_augmentation() if recipe.tta > 0 else None
    if recipe.tta > 0 and augmentation is None:
        raise RecipeError(
            f"Recipe.tta {recipe.tta} needs an augmentation, and "
            f"{data.description.dataset or 'these arrays'} declare none "
            "(TrainingData.with_augmentation(...), or tta=0)"
        )
    read = names + tuple(n for n in getattr(augmentation, "needs", ()) if n not in names)
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    weight_sum = torch.zeros((), dtype=torch.float64, device=device)
    predictions, labels, weights = [], [], []
    with torch.no_grad():
        for batch in data.batches(max(recipe.batch_size, 1024), names=read):
            tensors = to_tensors(batch, device)
            weight = tensors["weights"].sum()
            if augmentation is not None:
                copies = [
                    to_tensors(copy, device) for copy in augmentation.variants(batch, recipe.tta)
                ]
                outputs = [model(*(copy[name] for name in names)) for copy in copies]
                prediction = torch.stack(
                    [o if ensemble else to_prediction(description, o) for o in outputs]
                ).mean(0)
                loss = prediction_loss(loss_name, prediction, tensors["labels"], tensors["weights"])
                loss_sum += loss.double() * weight
                weight_sum += weight
                predictions.append(
                    prediction.float().reshape(len(batch["labels"]), -1).cpu().numpy()
                )
                labels.append(batch["labels"])
                weights.append(batch["weights"])
                continue
            output = model(*(tensors[name] for name in names))
            if ensemble:
                prediction = output
                loss = prediction_loss(loss_name, output, tensors["labels"], tensors["weights"])
            else:
                prediction = to_prediction(description, output)
                loss = weighted_loss(loss_name, output, tensors["labels"], tensors["weights"])
            loss_sum += loss.double() * weight
            weight_sum += weight
            predictions.append(prediction.float().reshape(len(batch["labels"]), -1).cpu().numpy())
            labels.append(batch["labels"])
            weights.append(batch["weights"])
    model.train(was_training)
    values = {"loss": float(loss_sum / weight_sum.clamp_min(1e-300))}
    if predictions:
        stacked = np.concatenate(predictions)
        if stacked.shape[1] == 1:
            stacked = stacked[:, 0]
        scores = metric_functions.evaluate(
            data.description.task, np.concatenate(labels), stacked, np.concatenate(weights)
        )
        values.update({name: float(value) for name, value in scores.items()})
    return values


def _update_batch_norm(
    model: nn.Module,
    data: TrainingData,
    names: Sequence[str],
    recipe: Recipe,
    device: torch.device,
) -> None:
    """Recompute batch-norm statistics of averaged weights with one pass over the training
    data (``torch.optim.swa_utils.update_bn`` for models with several inputs)."""
    norms = [
        m
        for m in model.modules()
        if isinstance(m, (nn.modules.batchnorm._BatchNorm, MaskedBatchNorm))
    ]
    if not norms:
        return
    momenta = {}
    for norm in norms:
        norm.reset_running_stats()
        momenta[norm] = norm.momentum
        norm.momentum = None  # cumulative average over the pass
    model.train()
    with torch.no_grad():
        for batch in data.batches(recipe.batch_size, names=names, smallest=_SMALLEST_BATCH):
            tensors = to_tensors(batch, device)
            model(*(tensors[name] for name in names))
    for norm, momentum in momenta.items():
        norm.momentum = momentum
    model.eval()


def _ensemble(members: list[_Member], recipe: Recipe) -> nn.Module:
    if recipe.ensemble_weighting == "validation":
        inverse = np.array([1.0 / max(m.validation["loss"], 1e-12) for m in members])
        weights = inverse / inverse.sum()
    else:
        weights = np.full(len(members), 1.0 / len(members))
    ensemble: nn.Module = Ensemble([m.model for m in members], weights=weights.tolist())
    ensemble.eval()
    return ensemble


def _summary(members: list[dict[str, float]]) -> dict[str, tuple[float, float]]:
    if not members:
        return {}
    names = [name for name in members[0] if all(name in m for m in members)]
    summary = {}
    for name in names:
        values = np.array([m[name] for m in members], dtype=np.float64)
        spread = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        summary[name] = (float(values.mean()), spread)
    return summary


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(_finite_or_null(value), indent=1, allow_nan=False))
    os.replace(temporary, path)


def _finite_or_null(value: Any) -> Any:
    """``value`` with every non-finite float (an infinite background rejection, a NaN spread)
    as ``None``: strict JSON has no Infinity or NaN."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {key: _finite_or_null(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(item) for item in value]
    return value
