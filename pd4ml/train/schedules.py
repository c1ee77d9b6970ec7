"""Learning-rate (and momentum) schedules: 1cycle, cosine with warm restarts, constant, and
reduce-on-plateau.

A schedule is a frozen, validated dataclass (part of a :class:`~pd4ml.train.recipe.Recipe`, saved
as JSON with :meth:`Schedule.to_json` / :func:`schedule_from_json`). The trainer starts it once
per training::

    state = recipe.schedule.start(base_lr, total_steps, steps_per_epoch)
    for step in range(total_steps):            # optimiser steps, counted from 0
        apply(optimizer, state, step)          # sets lr (and β₁ / momentum) in every group
        ...optimizer.step()...
        if end of epoch: state.end_epoch(validation_metric)

A :class:`ScheduleState` is a pure function of the step except for :class:`Plateau`, whose
counters change at each :meth:`ScheduleState.end_epoch`. Its :meth:`~ScheduleState.state_dict`
is a JSON-able dict; loading it into a freshly started state continues exactly the same curve
(resuming after a crash).

Learning rates are in the optimiser's units (no unit: the step size); momenta are Adam's /
AdamW's β₁ or SGD's momentum.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pd4ml.errors import Pd4mlError


class ScheduleError(Pd4mlError, ValueError):
    """An invalid schedule (the message names the field) or schedule state."""


# -- the running state ---------------------------------------------------------------------------


class ScheduleState:
    """The curve of one training: learning rate and momentum at each optimiser step.

    Args:
        kind: the schedule's JSON kind (``"onecycle"``, ...).
        base_lr: the recipe's learning rate.
        total_steps: optimiser steps of the whole training (≥ 1).
        steps_per_epoch: optimiser steps per epoch (≥ 1).
    """

    def __init__(self, kind: str, base_lr: float, total_steps: int, steps_per_epoch: int) -> None:
        self.kind = kind
        self.base_lr = float(base_lr)
        self.total_steps = int(total_steps)
        self.steps_per_epoch = int(steps_per_epoch)

    def learning_rate(self, step: int) -> float:
        """The learning rate of optimiser step ``step`` (counted from 0)."""
        raise NotImplementedError

    def momentum(self, step: int) -> float | None:
        """β₁ (Adam/AdamW) or SGD momentum at ``step``; ``None`` leaves the optimiser's own."""
        return None

    def end_epoch(self, metric: float) -> None:
        """Called once at the end of each epoch with the monitored validation metric (only
        :class:`Plateau` uses it)."""

    def state_dict(self) -> dict[str, Any]:
        """A JSON-able dict from which :meth:`load_state_dict` continues the same curve."""
        return {
            "kind": self.kind,
            "base_lr": self.base_lr,
            "total_steps": self.total_steps,
            "steps_per_epoch": self.steps_per_epoch,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` (the saved base LR and step counts win over the ones this
        state was started with, so a resumed training follows the curve it started on)."""
        if state.get("kind") != self.kind:
            raise ScheduleError(
                f"cannot load a {state.get('kind')!r} schedule state into a {self.kind!r} "
                "schedule: resume with the recipe the checkpoint was written with"
            )
        try:
            base_lr = float(state["base_lr"])
            total_steps = int(state["total_steps"])
            steps_per_epoch = int(state["steps_per_epoch"])
        except (KeyError, TypeError, ValueError) as error:
            raise ScheduleError(f"damaged {self.kind} schedule state ({error!r})") from None
        _check_start(base_lr, total_steps, steps_per_epoch)
        self.base_lr, self.total_steps, self.steps_per_epoch = base_lr, total_steps, steps_per_epoch
        self._loaded(state)

    def _loaded(self, state: Mapping[str, Any]) -> None:
        """Hook: restore the fields a subclass adds to :meth:`state_dict`."""


def _check_step(step: int) -> None:
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ScheduleError(f"step must be a whole number ≥ 0, not {step!r}")


def _check_start(base_lr: float, total_steps: int, steps_per_epoch: int) -> None:
    if not (isinstance(base_lr, (int, float)) and math.isfinite(base_lr) and base_lr > 0):
        raise ScheduleError(f"base_lr must be a positive finite number, not {base_lr!r}")
    for name, value in (("total_steps", total_steps), ("steps_per_epoch", steps_per_epoch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ScheduleError(f"{name} must be a whole number ≥ 1, not {value!r}")


def cosine(start: float, end: float, fraction: float) -> float:
    """Cosine interpolation from ``start`` (fraction 0) to ``end`` (fraction 1)."""
    return end + (start - end) * (1.0 + math.cos(math.pi * fraction)) / 2.0


# -- the schedules -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Base of the schedules: frozen dataclasses checked on construction."""

    kind: ClassVar[str]

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            annotation = str(item.type)
            if annotation in ("float", "float | None") and value is not None:
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    self._fail(item.name, "a number", value)
                if not math.isfinite(value):
                    self._fail(item.name, "finite", value)
                object.__setattr__(self, item.name, float(value))
            elif annotation == "int" and (isinstance(value, bool) or not isinstance(value, int)):
                self._fail(item.name, "a whole number", value)
            elif annotation == "bool" and not isinstance(value, bool):
                self._fail(item.name, "True or False", value)
        self.check()

    def check(self) -> None:
        """Range checks (raise :class:`ScheduleError` naming the field)."""

    def _fail(self, name: str, requirement: str, value: Any) -> None:
        raise ScheduleError(f"{type(self).__name__}.{name} must be {requirement}, not {value!r}")

    def _positive(self, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            if value is not None and value <= 0:
                self._fail(name, "positive", value)

    def start(self, base_lr: float, total_steps: int, steps_per_epoch: int) -> ScheduleState:
        """The running state for a training of ``total_steps`` optimiser steps,
        ``steps_per_epoch`` per epoch, at the recipe's learning rate ``base_lr``."""
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        """``{"kind": ..., field: value, ...}`` (see :func:`schedule_from_json`)."""
        return {"kind": self.kind, **dataclasses.asdict(self)}


@dataclasses.dataclass(frozen=True)
class Constant(Schedule):
    """The recipe's learning rate at every step; the optimiser's momentum untouched."""

    kind: ClassVar[str] = "constant"

    def start(self, base_lr: float, total_steps: int, steps_per_epoch: int) -> ScheduleState:
        _check_start(base_lr, total_steps, steps_per_epoch)
        return _ConstantState(self.kind, base_lr, total_steps, steps_per_epoch)


class _ConstantState(ScheduleState):
    def learning_rate(self, step: int) -> float:
        _check_step(step)
        return self.base_lr


@dataclasses.dataclass(frozen=True)
class OneCycle(Schedule):
    """Smith's 1cycle (arXiv:1803.09820) in the cosine form of fastai and LUMIN.

    The learning rate rises from ``max_lr / initial_div`` at step 0 to ``max_lr`` at the end of
    the warm-up (step ``w = round(warmup_fraction · (total_steps − 1))``), then falls to
    ``max_lr / final_div`` at the last step (``total_steps − 1``); both phases are half cosines.
    The momentum (Adam's β₁, SGD's momentum) does the opposite: ``max_momentum`` → ``min_momentum``
    at the peak → ``max_momentum`` at the end (high momentum damps the large steps).

    Defaults are LUMIN's HiggsML recipe (lumin.md §2.1): LR ``max_lr/100 → max_lr`` (1e-4 → 1e-2),
    warm-up 1/3 of the training (45 of 135 sub-epochs), β₁ 0.95 → 0.85 → 0.95; the final LR
    ``max_lr / 1e4`` (four decades below the peak, the order of fastai's and PyTorch's
    ``OneCycleLR`` end points) lets the last steps settle rather than move.

    Args:
        max_lr: the peak learning rate; ``None`` = the recipe's learning rate.
        initial_div: ``max_lr / initial_div`` is the learning rate of step 0 (≥ 1).
        final_div: ``max_lr / final_div`` is the learning rate of the last step (≥ 1).
        warmup_fraction: the fraction of the steps spent rising, in [0, 1].
        max_momentum, min_momentum: the momentum range, 0 ≤ min ≤ max < 1.
        cycle_momentum: cycle the momentum (``False``: leave the optimiser's).
    """

    kind: ClassVar[str] = "onecycle"
    max_lr: float | None = None
    initial_div: float = 100.0
    final_div: float = 1e4
    warmup_fraction: float = 1.0 / 3.0
    max_momentum: float = 0.95
    min_momentum: float = 0.85
    cycle_momentum: bool = True

    def check(self) -> None:
        self._positive("max_lr")
        for name in ("initial_div", "final_div"):
            if getattr(self, name) < 1.0:
                self._fail(name, "≥ 1", getattr(self, name))
        if not 0.0 <= self.warmup_fraction <= 1.0:
            self._fail("warmup_fraction", "in [0, 1]", self.warmup_fraction)
        for name in ("max_momentum", "min_momentum"):
            if not 0.0 <= getattr(self, name) < 1.0:
                self._fail(name, "in [0, 1)", getattr(self, name))
        if self.min_momentum > self.max_momentum:
            self._fail("min_momentum", f"≤ max_momentum ({self.max_momentum})", self.min_momentum)

    def start(self, base_lr: float, total_steps: int, steps_per_epoch: int) -> ScheduleState:
        _check_start(base_lr, total_steps, steps_per_epoch)
        return _OneCycleState(self, base_lr, total_steps, steps_per_epoch)


class _OneCycleState(ScheduleState):
    def __init__(
        self, schedule: OneCycle, base_lr: float, total_steps: int, steps_per_epoch: int
    ) -> None:
        super().__init__(schedule.kind, base_lr, total_steps, steps_per_epoch)
        self.schedule = schedule

    @property
    def peak_step(self) -> int:
        """The step at which the learning rate is ``max_lr``."""
        return round(self.schedule.warmup_fraction * (self.total_steps - 1))

    def _phase(self, step: int) -> tuple[bool, float]:
        """(warming up?, fraction of the phase done) for ``step`` (steps past the end stay at
        the end)."""
        _check_step(step)
        last = self.total_steps - 1
        peak = self.peak_step
        step = min(step, last)
        if step < peak or peak == last:
            return True, (step / peak if peak else 1.0)
        return False, (step - peak) / (last - peak)

    def learning_rate(self, step: int) -> float:
        peak_lr = self.schedule.max_lr if self.schedule.max_lr is not None else self.base_lr
        warming, fraction = self._phase(step)
        if warming:
            return cosine(peak_lr / self.schedule.initial_div, peak_lr, fraction)
        return cosine(peak_lr, peak_lr / self.schedule.final_div, fraction)

    def momentum(self, step: int) -> float | None:
        if not self.schedule.cycle_momentum:
            _check_step(step)
            return None
        high, low = self.schedule.max_momentum, self.schedule.min_momentum
        warming, fraction = self._phase(step)
        return cosine(high, low, fraction) if warming else cosine(low, high, fraction)


@dataclasses.dataclass(frozen=True)
class CosineRestarts(Schedule):
    """Cosine annealing with warm restarts (SGDR, Loshchilov & Hutter, arXiv:1608.03983).

    Cycle ``i`` lasts ``round(cycle_epochs · steps_per_epoch · cycle_multiplier**i)`` steps (at
    least 1). Within a cycle, at position ``t`` steps of ``T``, the learning rate is
    ``min + (base − min)(1 + cos(π t / T)) / 2`` with ``min = min_lr_fraction · base``; the
    first step of each cycle is back at ``base`` (the restart). Momentum is left alone.

    Args:
        cycle_epochs: the length of the first cycle in epochs (> 0, fractions allowed).
        cycle_multiplier: each cycle is this many times longer than the one before (≥ 1).
        min_lr_fraction: the learning rate approached at the end of a cycle, as a fraction of
            the base rate, in [0, 1).
    """

    kind: ClassVar[str] = "cosine_restarts"
    cycle_epochs: float = 1.0
    cycle_multiplier: float = 2.0
    min_lr_fraction: float = 0.0

    def check(self) -> None:
        self._positive("cycle_epochs")
        if self.cycle_multiplier < 1.0:
            self._fail("cycle_multiplier", "≥ 1", self.cycle_multiplier)
        if not 0.0 <= self.min_lr_fraction < 1.0:
            self._fail("min_lr_fraction", "in [0, 1)", self.min_lr_fraction)

    def start(self, base_lr: float, total_steps: int, steps_per_epoch: int) -> ScheduleState:
        _check_start(base_lr, total_steps, steps_per_epoch)
        return _CosineRestartsState(self, base_lr, total_steps, steps_per_epoch)


class _CosineRestartsState(ScheduleState):
    def __init__(
        self, schedule: CosineRestarts, base_lr: float, total_steps: int, steps_per_epoch: int
    ) -> None:
        super().__init__(schedule.kind, base_lr, total_steps, steps_per_epoch)
        self.schedule = schedule

    def _cycle_length(self, index: int) -> int:
        first = self.schedule.cycle_epochs * self.steps_per_epoch
        return max(1, round(first * self.schedule.cycle_multiplier**index))

    def restart_steps(self) -> list[int]:
        """The steps at which a cycle starts (0 first), up to ``total_steps``."""
        starts, step, index = [], 0, 0
        while step < self.total_steps:
            starts.append(step)
            step += self._cycle_length(index)
            index += 1
        return starts

    def _position(self, step: int) -> tuple[int, int]:
        """(steps into the current cycle, the cycle's length)."""
        _check_step(step)
        index, cycle_start = 0, 0
        while True:
            length = self._cycle_length(index)
            if step < cycle_start + length:
                return step - cycle_start, length
            cycle_start += length
            index += 1

    def learning_rate(self, step: int) -> float:
        position, length = self._position(step)
        low = self.schedule.min_lr_fraction * self.base_lr
        return cosine(self.base_lr, low, position / length)


@dataclasses.dataclass(frozen=True)
class Plateau(Schedule):
    """Reduce the learning rate when a validation metric stops improving — the original pd4ml's
    Keras ``ReduceLROnPlateau(factor=0.75, patience=8, min_lr=1e-5)`` (pd4ml.md §3.1), with
    Keras's semantics.

    At each epoch end the metric improves when it is below ``best − threshold`` (``mode="min"``)
    or above ``best + threshold`` (``"max"``); then ``best`` is updated and the wait counter reset.
    Otherwise the counter grows, and when it reaches ``patience`` the learning rate becomes
    ``max(lr · factor, min_lr)`` (if above ``min_lr``), the counter restarts, and the next
    ``cooldown`` epochs are not counted (PyTorch's cooldown; 0 in the original). A NaN metric
    never improves. The rate never goes below ``min_lr`` (nor is raised to it when the recipe's
    rate is already lower).

    Args:
        factor: the multiplier of a reduction, in (0, 1).
        patience: epochs without improvement before a reduction (≥ 1).
        min_lr: the floor of the learning rate (≥ 0).
        threshold: the absolute change that counts as an improvement (≥ 0; Keras's min_delta).
        mode: ``"min"`` for losses and errors, ``"max"`` for AUC, accuracy...
        cooldown: epochs after a reduction before the wait counter runs again (≥ 0).
    """

    kind: ClassVar[str] = "plateau"
    factor: float = 0.75
    patience: int = 8
    min_lr: float = 1e-5
    threshold: float = 1e-4
    mode: Literal["min", "max"] = "min"
    cooldown: int = 0

    def check(self) -> None:
        if not 0.0 < self.factor < 1.0:
            self._fail("factor", "in (0, 1)", self.factor)
        if self.patience < 1:
            self._fail("patience", "≥ 1", self.patience)
        if self.min_lr < 0:
            self._fail("min_lr", "≥ 0", self.min_lr)
        if self.threshold < 0:
            self._fail("threshold", "≥ 0", self.threshold)
        if self.mode not in ("min", "max"):
            self._fail("mode", "'min' or 'max'", self.mode)
        if self.cooldown < 0:
            self._fail("cooldown", "≥ 0", self.cooldown)

    def start(self, base_lr: float, total_steps: int, steps_per_epoch: int) -> ScheduleState:
        _check_start(base_lr, total_steps, steps_per_epoch)
        return PlateauState(self, base_lr, total_steps, steps_per_epoch)


class PlateauState(ScheduleState):
    """The running state of :class:`Plateau`: the current learning rate, the best metric, the
    epochs waited and the cooldown left."""

    def __init__(
        self, schedule: Plateau, base_lr: float, total_steps: int, steps_per_epoch: int
    ) -> None:
        super().__init__(schedule.kind, base_lr, total_steps, steps_per_epoch)
        self.schedule = schedule
        self.current = self.base_lr
        self.best: float | None = None
        self.wait = 0
        self.cooldown_left = 0
        self.reductions = 0

    def learning_rate(self, step: int) -> float:
        _check_step(step)
        return self.current

    def _improved(self, metric: float) -> bool:
        if math.isnan(metric):
            return False
        if self.best is None:
            return True
        if self.schedule.mode == "min":
            return metric < self.best - self.schedule.threshold
        return metric > self.best + self.schedule.threshold

    def end_epoch(self, metric: float) -> None:
        metric = float(metric)
        if self._improved(metric):
            self.best = metric
            self.wait = 0
        else:
            self.wait += 1
        if self.cooldown_left > 0:  # the epochs right after a reduction are not counted
            self.cooldown_left -= 1
            self.wait = 0
        if self.wait >= self.schedule.patience and self.current > self.schedule.min_lr:
            self.current = max(self.current * self.schedule.factor, self.schedule.min_lr)
            self.reductions += 1
            self.cooldown_left = self.schedule.cooldown
            self.wait = 0

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "learning_rate": self.current,
            "best": self.best,
            "wait": self.wait,
            "cooldown_left": self.cooldown_left,
            "reductions": self.reductions,
        }

    def _loaded(self, state: Mapping[str, Any]) -> None:
        try:
            self.current = float(state["learning_rate"])
            self.best = None if state["best"] is None else float(state["best"])
            self.wait = int(state["wait"])
            self.cooldown_left = int(state["cooldown_left"])
            self.reductions = int(state["reductions"])
        except (KeyError, TypeError, ValueError) as error:
            raise ScheduleError(f"damaged plateau schedule state ({error!r})") from None


# -- applying and serialising --------------------------------------------------------------------


def apply(optimizer: Any, state: ScheduleState, step: int) -> float:
    """Set the learning rate of ``step`` in every parameter group of ``optimizer`` (a
    :class:`torch.optim.Optimizer`), and its momentum when the schedule cycles it: ``betas[0]``
    for Adam-like optimisers, ``momentum`` for SGD-like ones. Returns the learning rate set.

    Raises :class:`ScheduleError` when the schedule cycles momentum and a group has neither.
    """
    learning_rate = state.learning_rate(step)
    momentum = state.momentum(step)
    for index, group in enumerate(optimizer.param_groups):
        group["lr"] = learning_rate
        if momentum is None:
            continue
        if "betas" in group:
            group["betas"] = (momentum, *tuple(group["betas"])[1:])
        elif "momentum" in group:
            group["momentum"] = momentum
        else:
            raise ScheduleError(
                f"the schedule cycles the momentum but parameter group {index} of "
                f"{type(optimizer).__name__} has neither betas nor momentum; use "
                "OneCycle(cycle_momentum=False)"
            )
    return learning_rate


SCHEDULES: dict[str, type[Schedule]] = {
    cls.kind: cls for cls in (Constant, OneCycle, CosineRestarts, Plateau)
}


def schedule_from_json(value: Mapping[str, Any]) -> Schedule:
    """The schedule of :meth:`Schedule.to_json` (``{"kind": "onecycle", ...fields}``)."""
    if not isinstance(value, Mapping) or "kind" not in value:
        raise ScheduleError(f"a schedule must be a mapping with a 'kind', not {value!r}")
    kind = value["kind"]
    cls = SCHEDULES.get(kind)
    if cls is None:
        raise ScheduleError(f"unknown schedule kind {kind!r}; known: {', '.join(SCHEDULES)}")
    fields = {key: item for key, item in value.items() if key != "kind"}
    names = {item.name for item in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - names)
    if unknown:
        raise ScheduleError(f"{cls.__name__} has no field(s) {', '.join(unknown)}")
    return cls(**fields)
