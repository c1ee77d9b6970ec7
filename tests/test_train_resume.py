"""A training killed with SIGKILL mid-epoch resumes from its last checkpoint and ends with the
weights of an uninterrupted run, bit for bit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from pd4ml.train import CheckpointError, Recipe, fit
from pd4ml.train.checkpoint import FILENAME, load_checkpoint
from tests.test_train_loop import Tiny, TinyConfig, assert_same_weights, tiny, toy

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
RECIPE = Recipe(epochs=4, batch_size=32, learning_rate=0.01, seed=5, threads=1, patience=10)
BATCHES_PER_EPOCH = 19  # 600 events in batches of 32


class Stalling(Tiny):
    """Tiny that, at its ``stall_at``-th training forward pass, writes a marker and hangs."""

    def __init__(self, *args: Any, stall_at: int, marker: Path, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stall_at = stall_at
        self.marker = marker
        self.calls = 0

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.calls += 1
            if self.calls == self.stall_at:
                self.marker.write_text("stalled")
                time.sleep(120)
        return super().forward(features)


def child(directory: str, marker: str) -> None:
    """The run that gets killed: stalls in the middle of its third epoch."""
    train, val = toy(600, 0), toy(200, 1)
    torch.manual_seed(0)
    model = Stalling(
        train.description,
        TinyConfig(dropout=0.2),
        stall_at=2 * BATCHES_PER_EPOCH + 7,
        marker=Path(marker),
    )
    fit(model, train, val, RECIPE, directory=directory, progress="off")


def test_sigkill_mid_epoch_then_resume_gives_identical_weights(tmp_path: Path) -> None:
    directory, marker = tmp_path / "run", tmp_path / "marker"
    code = f"from tests.test_train_resume import child; child({str(directory)!r}, {str(marker)!r})"
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=environment)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert process.poll() is None, "the training process ended before it was killed"
            assert time.monotonic() < deadline, "the training process never reached epoch 3"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
    loaded = load_checkpoint(directory)
    assert loaded is not None
    assert loaded[1]["epoch"] == 2 and loaded[1]["finished"] is None  # killed during epoch 3

    train, val = toy(600, 0), toy(200, 1)
    torch.manual_seed(0)
    counting = Stalling(
        train.description, TinyConfig(dropout=0.2), stall_at=-1, marker=tmp_path / "unused"
    )
    resumed = fit(counting, train, val, RECIPE, directory=directory)
    assert counting.calls == 2 * BATCHES_PER_EPOCH  # only epochs 3 and 4 were trained again
    uninterrupted = fit(tiny(train, dropout=0.2), train, val, RECIPE, directory=tmp_path / "once")
    assert_same_weights(resumed.model, uninterrupted.model)
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in resumed.history]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in uninterrupted.history]
    assert resumed.validation == uninterrupted.validation
    assert len(resumed.history) == 4


def test_resuming_with_another_recipe_is_refused(tmp_path: Path) -> None:
    train = toy(100, 0)
    fit(tiny(train), train, recipe=RECIPE.replace(epochs=1), directory=tmp_path)
    with pytest.raises(CheckpointError, match="learning_rate"):
        fit(
            tiny(train),
            train,
            recipe=RECIPE.replace(epochs=1, learning_rate=0.5),
            directory=tmp_path,
        )


def test_a_checkpoint_without_newer_recipe_fields_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint written before ``Recipe.find_range`` existed is the same recipe (the new
    field takes its default), not "another recipe"."""
    train = toy(100, 0)
    real = Recipe.to_json

    def older(self: Recipe) -> dict[str, Any]:
        return {key: value for key, value in real(self).items() if key != "find_range"}

    monkeypatch.setattr(Recipe, "to_json", older)
    first = fit(tiny(train), train, recipe=RECIPE.replace(epochs=1), directory=tmp_path)
    monkeypatch.setattr(Recipe, "to_json", real)
    again = fit(tiny(train), train, recipe=RECIPE.replace(epochs=1), directory=tmp_path)
    assert_same_weights(first.model, again.model)


def test_a_corrupt_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / FILENAME).write_bytes(b"not a checkpoint")
    train = toy(64, 0)
    with pytest.raises(CheckpointError, match="delete it"):
        fit(tiny(train), train, recipe=RECIPE.replace(epochs=1), directory=tmp_path)
