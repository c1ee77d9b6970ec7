"""The interface of learning-rate schedules, and the constant schedule used when
:mod:`pd4ml.train.schedules` is not available.

A schedule is a frozen dataclass whose :meth:`ScheduleSpec.start` returns the mutable state of
one training run; the trainer asks that state for the learning rate (and β₁ / momentum) of
every optimizer step, counted from 0.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class ScheduleState(Protocol):
    """The schedule of one run (steps are optimizer steps counted from 0)."""

    def learning_rate(self, step: int) -> float: ...

    def momentum(self, step: int) -> float | None: ...

    def end_epoch(self, metric: float) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


@runtime_checkable
class ScheduleSpec(Protocol):
    """A schedule: a frozen dataclass that starts a :class:`ScheduleState`."""

    def start(self, base_lr: float, total_steps: int, steps_per_epoch: int) -> ScheduleState: ...


class _ConstantState:
    def __init__(self, base_lr: float) -> None:
        self.base_lr = base_lr

    def learning_rate(self, step: int) -> float:
        return self.base_lr

    def momentum(self, step: int) -> float | None:
        return None

    def end_epoch(self, metric: float) -> None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"base_lr": self.base_lr}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.base_lr = float(state["base_lr"])


@dataclass(frozen=True)
class _ConstantSchedule:
    """The base learning rate at every step (stand-in for ``schedules.Constant``)."""

    def start(self, base_lr: float, total_steps: int, steps_per_epoch: int) -> ScheduleState:
        return _ConstantState(base_lr)


def default_schedule() -> ScheduleSpec:
    """``schedules.Constant()`` where :mod:`pd4ml.train.schedules` exists, else the stand-in."""
    try:
        schedules = importlib.import_module("pd4ml.train.schedules")
    except ImportError:
        return _ConstantSchedule()
    constant = getattr(schedules, "Constant", None)
    return constant() if constant is not None else _ConstantSchedule()


def schedule_kinds() -> dict[str, type]:
    """The schedule dataclasses by name (``Constant``, ``OneCycle``, ...)."""
    import dataclasses

    kinds: dict[str, type] = {"Constant": _ConstantSchedule}
    try:
        schedules = importlib.import_module("pd4ml.train.schedules")
    except ImportError:
        return kinds
    for name in dir(schedules):
        value = getattr(schedules, name)
        if (
            isinstance(value, type)
            and dataclasses.is_dataclass(value)
            and callable(getattr(value, "start", None))
        ):
            kinds[name] = value
    return kinds
