"""Schedules: closed-form LR and momentum curves, restarts, plateau reductions, state round
trips, applying to real optimisers, validation and JSON."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from pd4ml.errors import Pd4mlError
from pd4ml.train.schedules import (
    Constant,
    CosineRestarts,
    OneCycle,
    Plateau,
    ScheduleError,
    apply,
    schedule_from_json,
)

torch.set_num_threads(1)


def curve(state, total):
    return np.array([state.learning_rate(step) for step in range(total)])


def momenta(state, total):
    return np.array([state.momentum(step) for step in range(total)])


# -- Constant ------------------------------------------------------------------------------------


def test_constant_is_the_base_rate_and_leaves_momentum():
    state = Constant().start(3e-3, 50, 10)
    assert np.all(curve(state, 50) == 3e-3)
    assert all(state.momentum(step) is None for step in range(50))
    state.end_epoch(1.0)  # ignored
    assert state.learning_rate(49) == 3e-3


# -- OneCycle ------------------------------------------------------------------------------------


def test_onecycle_key_points_match_the_closed_form():
    # LUMIN's HiggsML recipe: 45 steps up, 90 down, 1e-4 -> 1e-2, β₁ 0.95 -> 0.85 -> 0.95
    state = OneCycle().start(1e-2, 136, 8)
    assert state.peak_step == 45
    assert state.learning_rate(0) == pytest.approx(1e-4, rel=1e-12)
    assert state.learning_rate(45) == pytest.approx(1e-2, rel=1e-12)
    assert state.learning_rate(135) == pytest.approx(1e-6, rel=1e-12)
    # mid-warm-up: halfway along the cosine between 1e-4 and 1e-2
    mid_up = (1e-4 + 1e-2) / 2
    assert state.learning_rate(0) < mid_up < state.learning_rate(45)
    half = OneCycle().start(1e-2, 91, 8)  # peak at 30, mid-warm-up at exactly 15
    assert half.peak_step == 30
    assert half.learning_rate(15) == pytest.approx(mid_up, rel=1e-12)
    assert half.learning_rate(60) == pytest.approx((1e-2 + 1e-6) / 2, rel=1e-12)
    # an arbitrary point of the annealing phase against the formula
    fraction = (100 - 45) / 90
    expected = 1e-6 + (1e-2 - 1e-6) * (1 + math.cos(math.pi * fraction)) / 2
    assert state.learning_rate(100) == pytest.approx(expected, rel=1e-12)
    # momentum is inverse: 0.95 at both ends, 0.85 at the peak, 0.90 halfway
    assert state.momentum(0) == pytest.approx(0.95)
    assert state.momentum(45) == pytest.approx(0.85)
    assert state.momentum(135) == pytest.approx(0.95)
    assert half.momentum(15) == pytest.approx(0.90)
    assert half.momentum(60) == pytest.approx(0.90)


def test_onecycle_phases_are_monotonic_and_momentum_mirrors_the_rate():
    total = 200
    state = OneCycle(warmup_fraction=0.3).start(0.1, total, 20)
    lr = curve(state, total)
    mom = momenta(state, total)
    peak = state.peak_step
    assert np.all(np.diff(lr[: peak + 1]) > 0) and np.all(np.diff(lr[peak:]) < 0)
    assert np.all(np.diff(mom[: peak + 1]) < 0) and np.all(np.diff(mom[peak:]) > 0)
    assert lr.argmax() == peak and mom.argmin() == peak
    # steps past the end stay at the end point
    assert state.learning_rate(total + 10) == lr[-1]


def test_onecycle_max_lr_overrides_the_recipe_rate_and_momentum_can_be_off():
    state = OneCycle(max_lr=0.5, initial_div=10, final_div=100, cycle_momentum=False).start(
        1e-3, 11, 1
    )
    assert state.learning_rate(0) == pytest.approx(0.05)
    assert state.learning_rate(10) == pytest.approx(0.005)
    assert max(curve(state, 11)) == pytest.approx(0.5)
    assert state.momentum(3) is None


def test_onecycle_edge_lengths():
    one = OneCycle().start(1e-2, 1, 1)
    assert one.learning_rate(0) == pytest.approx(1e-2)  # a single step at the peak
    no_warmup = OneCycle(warmup_fraction=0.0).start(1e-2, 5, 1)
    assert no_warmup.learning_rate(0) == pytest.approx(1e-2)
    assert no_warmup.learning_rate(4) == pytest.approx(1e-6)
    all_warmup = OneCycle(warmup_fraction=1.0).start(1e-2, 5, 1)
    assert all_warmup.learning_rate(0) == pytest.approx(1e-4)
    assert all_warmup.learning_rate(4) == pytest.approx(1e-2)


# -- CosineRestarts ------------------------------------------------------------------------------


def test_cosine_restarts_at_the_right_steps_with_the_multiplier():
    # cycles of 10, 20, 40 steps (1 epoch of 10 steps, doubled)
    state = CosineRestarts(cycle_epochs=1, cycle_multiplier=2, min_lr_fraction=0.1).start(
        1.0, 70, 10
    )
    assert state.restart_steps() == [0, 10, 30]
    lr = curve(state, 70)
    for start, length in ((0, 10), (10, 20), (30, 40)):
        assert lr[start] == pytest.approx(1.0)
        inside = lr[start : start + length]
        assert np.all(np.diff(inside) < 0)
        expected = [0.1 + 0.9 * (1 + math.cos(math.pi * t / length)) / 2 for t in range(length)]
        np.testing.assert_allclose(inside, expected, rtol=1e-12)
    assert lr[10 + 10] == pytest.approx(0.55)  # halfway through the second cycle
    jumps = np.flatnonzero(np.diff(lr) > 0) + 1
    assert jumps.tolist() == [10, 30]
    assert all(state.momentum(step) is None for step in range(70))


def test_cosine_restarts_fractional_epochs_and_constant_length():
    state = CosineRestarts(cycle_epochs=0.5, cycle_multiplier=1).start(0.2, 40, 8)
    assert state.restart_steps() == [0, 4, 8, 12, 16, 20, 24, 28, 32, 36]
    assert state.learning_rate(2) == pytest.approx(0.1)  # halfway, min 0


# -- Plateau -------------------------------------------------------------------------------------


def test_plateau_reduces_after_patience_epochs_without_improvement():
    state = Plateau().start(1e-3, 1000, 10)  # factor 0.75, patience 8, min_lr 1e-5
    state.end_epoch(1.0)
    state.end_epoch(0.9)  # improvement
    for _ in range(7):
        state.end_epoch(0.95)
        assert state.learning_rate(0) == 1e-3
    state.end_epoch(0.95)  # the 8th epoch without improvement
    assert state.learning_rate(123) == pytest.approx(7.5e-4)
    # an improvement smaller than the threshold (1e-4) does not count
    for _ in range(7):
        state.end_epoch(0.9 - 5e-5)
    assert state.learning_rate(0) == pytest.approx(7.5e-4)
    state.end_epoch(0.9 - 5e-5)
    assert state.learning_rate(0) == pytest.approx(7.5e-4 * 0.75)
    # a real improvement resets the counter
    for _ in range(7):
        state.end_epoch(0.95)
    state.end_epoch(0.5)
    for _ in range(7):
        state.end_epoch(0.95)
    assert state.learning_rate(0) == pytest.approx(7.5e-4 * 0.75)


def test_plateau_never_goes_below_min_lr_and_nan_never_improves():
    state = Plateau(factor=0.5, patience=1, min_lr=1e-4).start(1e-3, 10, 1)
    rates = []
    for _ in range(10):
        state.end_epoch(float("nan"))
        rates.append(state.learning_rate(0))
    assert rates[:4] == pytest.approx([5e-4, 2.5e-4, 1.25e-4, 1e-4])
    assert min(rates) == pytest.approx(1e-4) and rates[-1] == pytest.approx(1e-4)
    lower = Plateau(min_lr=1e-2, patience=1).start(1e-3, 10, 1)  # already below the floor
    lower.end_epoch(1.0)
    lower.end_epoch(2.0)
    assert lower.learning_rate(0) == 1e-3


def test_plateau_max_mode_and_cooldown():
    state = Plateau(mode="max", patience=2, factor=0.5, cooldown=2, threshold=0).start(1.0, 10, 1)
    for metric in (0.6, 0.7):  # rising AUC: improvements
        state.end_epoch(metric)
    assert state.learning_rate(0) == 1.0
    state.end_epoch(0.65)
    state.end_epoch(0.65)
    assert state.learning_rate(0) == 0.5
    for _ in range(3):  # 2 cooldown epochs, then one counted: no reduction yet
        state.end_epoch(0.65)
    assert state.learning_rate(0) == 0.5
    state.end_epoch(0.65)
    assert state.learning_rate(0) == 0.25


# -- state round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "schedule",
    [Constant(), OneCycle(), CosineRestarts(cycle_epochs=0.7, cycle_multiplier=1.5), Plateau()],
)
def test_state_round_trip_continues_the_same_curve(schedule):
    total, per_epoch = 120, 12
    metrics = [1.0, 0.8, 0.81, 0.82, 0.9, 0.85, 0.83, 0.84, 0.86, 0.87]
    reference = schedule.start(2e-3, total, per_epoch)
    resumed_run = schedule.start(2e-3, total, per_epoch)
    expected, got = [], []
    for step in range(total):
        expected.append((reference.learning_rate(step), reference.momentum(step)))
        if step == 60:  # "crash": a fresh state from a JSON checkpoint
            saved = json.loads(json.dumps(resumed_run.state_dict(), allow_nan=False))
            resumed_run = schedule.start(2e-3, total, per_epoch)
            resumed_run.load_state_dict(saved)
        got.append((resumed_run.learning_rate(step), resumed_run.momentum(step)))
        if (step + 1) % per_epoch == 0:
            reference.end_epoch(metrics[step // per_epoch])
            resumed_run.end_epoch(metrics[step // per_epoch])
    assert got == expected


def test_plateau_state_holds_its_counters():
    schedule = Plateau(patience=3, factor=0.5)
    state = schedule.start(1e-2, 100, 10)
    for metric in (1.0, 1.1, 1.2):
        state.end_epoch(metric)
    saved = state.state_dict()
    assert saved["wait"] == 2 and saved["best"] == 1.0
    fresh = schedule.start(1e-2, 100, 10)
    fresh.load_state_dict(saved)
    fresh.end_epoch(1.3)  # the 3rd epoch without improvement, counted across the resume
    assert fresh.learning_rate(0) == pytest.approx(5e-3)


def test_loading_a_state_of_another_kind_or_damaged_fails():
    state = OneCycle().start(1e-2, 10, 1)
    with pytest.raises(ScheduleError, match="plateau"):
        state.load_state_dict(Plateau().start(1e-2, 10, 1).state_dict())
    with pytest.raises(ScheduleError, match="damaged"):
        state.load_state_dict({"kind": "onecycle", "base_lr": 1e-2})
    plateau = Plateau().start(1e-2, 10, 1)
    broken = plateau.state_dict()
    del broken["wait"]
    with pytest.raises(ScheduleError, match="damaged plateau"):
        plateau.load_state_dict(broken)


# -- apply to real optimisers ---------------------------------------------------------------------


def _two_groups(cls, **options):
    first, second = torch.nn.Linear(3, 2), torch.nn.Linear(2, 1)
    return cls([{"params": first.parameters()}, {"params": second.parameters()}], lr=0.1, **options)


@pytest.mark.parametrize("cls", [torch.optim.Adam, torch.optim.AdamW])
def test_apply_sets_lr_and_beta1_in_every_group(cls):
    optimizer = _two_groups(cls, betas=(0.9, 0.98))
    state = OneCycle().start(1e-2, 136, 8)
    assert apply(optimizer, state, 45) == pytest.approx(1e-2)
    for group in optimizer.param_groups:
        assert group["lr"] == pytest.approx(1e-2)
        assert group["betas"][0] == pytest.approx(0.85)
        assert group["betas"][1] == 0.98  # β₂ untouched
    apply(optimizer, state, 0)
    assert all(group["betas"][0] == pytest.approx(0.95) for group in optimizer.param_groups)


def test_apply_sets_sgd_momentum_and_steps_work():
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    state = OneCycle().start(1e-2, 10, 2)
    for step in range(10):
        apply(optimizer, state, step)
        assert optimizer.param_groups[0]["lr"] == pytest.approx(state.learning_rate(step))
        assert optimizer.param_groups[0]["momentum"] == pytest.approx(state.momentum(step))
        optimizer.zero_grad()
        model(torch.ones(4, 3)).sum().backward()
        optimizer.step()


def test_apply_leaves_momentum_when_the_schedule_does_not_cycle_it():
    optimizer = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1, momentum=0.7)
    apply(optimizer, CosineRestarts().start(0.5, 10, 5), 0)
    assert optimizer.param_groups[0]["lr"] == 0.5
    assert optimizer.param_groups[0]["momentum"] == 0.7
    adagrad = torch.optim.Adagrad(torch.nn.Linear(2, 1).parameters(), lr=0.1)
    apply(adagrad, Plateau().start(0.3, 10, 5), 0)
    assert adagrad.param_groups[0]["lr"] == 0.3
    with pytest.raises(ScheduleError, match="cycle_momentum=False"):
        apply(adagrad, OneCycle().start(0.3, 10, 5), 0)


# -- validation and JSON -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: OneCycle(warmup_fraction=1.5), "OneCycle.warmup_fraction"),
        (lambda: OneCycle(max_lr=-1.0), "OneCycle.max_lr"),
        (lambda: OneCycle(initial_div=0.5), "OneCycle.initial_div"),
        (lambda: OneCycle(min_momentum=0.99), "OneCycle.min_momentum"),
        (lambda: OneCycle(max_momentum=1.0), "OneCycle.max_momentum"),
        (lambda: OneCycle(final_div="big"), "OneCycle.final_div"),
        (lambda: OneCycle(cycle_momentum=1), "OneCycle.cycle_momentum"),
        (lambda: OneCycle(max_lr=float("nan")), "OneCycle.max_lr"),
        (lambda: CosineRestarts(cycle_epochs=0), "CosineRestarts.cycle_epochs"),
        (lambda: CosineRestarts(cycle_multiplier=0.5), "CosineRestarts.cycle_multiplier"),
        (lambda: CosineRestarts(min_lr_fraction=1.0), "CosineRestarts.min_lr_fraction"),
        (lambda: Plateau(factor=1.0), "Plateau.factor"),
        (lambda: Plateau(patience=0), "Plateau.patience"),
        (lambda: Plateau(patience=2.5), "Plateau.patience"),
        (lambda: Plateau(min_lr=-1e-5), "Plateau.min_lr"),
        (lambda: Plateau(threshold=-1.0), "Plateau.threshold"),
        (lambda: Plateau(mode="up"), "Plateau.mode"),
        (lambda: Plateau(cooldown=-1), "Plateau.cooldown"),
    ],
)
def test_invalid_fields_are_named(make, field):
    with pytest.raises(ScheduleError, match=field.replace(".", r"\.")) as error:
        make()
    assert isinstance(error.value, Pd4mlError) and isinstance(error.value, ValueError)


def test_invalid_start_and_steps():
    with pytest.raises(ScheduleError, match="base_lr"):
        OneCycle().start(0.0, 10, 1)
    with pytest.raises(ScheduleError, match="total_steps"):
        Constant().start(1e-3, 0, 1)
    with pytest.raises(ScheduleError, match="steps_per_epoch"):
        CosineRestarts().start(1e-3, 10, 0)
    with pytest.raises(ScheduleError, match="step"):
        OneCycle().start(1e-3, 10, 1).learning_rate(-1)


@pytest.mark.parametrize(
    "schedule",
    [
        Constant(),
        OneCycle(),
        OneCycle(max_lr=0.3, warmup_fraction=0.25, cycle_momentum=False),
        CosineRestarts(cycle_epochs=3, cycle_multiplier=1.0, min_lr_fraction=0.01),
        Plateau(mode="max", patience=3),
    ],
)
def test_json_round_trip(schedule):
    value = json.loads(json.dumps(schedule.to_json()))
    assert value["kind"] == schedule.kind
    assert schedule_from_json(value) == schedule


def test_json_errors():
    assert schedule_from_json({"kind": "onecycle", "warmup_fraction": 0.5}) == OneCycle(
        warmup_fraction=0.5
    )
    assert schedule_from_json({"kind": "plateau", "patience": 3}).patience == 3
    with pytest.raises(ScheduleError, match="unknown schedule kind 'step'"):
        schedule_from_json({"kind": "step"})
    with pytest.raises(ScheduleError, match="no field"):
        schedule_from_json({"kind": "constant", "lr": 1})
    with pytest.raises(ScheduleError, match="kind"):
        schedule_from_json({"patience": 1})
    with pytest.raises(ScheduleError, match=r"Plateau\.factor"):
        schedule_from_json({"kind": "plateau", "factor": 2})
