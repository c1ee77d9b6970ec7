"""Progress: a rich bar only when asked or on a terminal; epoch lines in the log always."""

from __future__ import annotations

import logging

import pytest
import torch

from pd4ml.train import Recipe, TrainingError, fit
from pd4ml.train.progress import bar_enabled
from tests.test_train_loop import tiny, toy

torch.set_num_threads(1)


def test_bar_only_on_a_terminal_or_when_on(monkeypatch: pytest.MonkeyPatch) -> None:
    assert bar_enabled("on") and not bar_enabled("off")
    monkeypatch.setattr("sys.stderr.isatty", lambda: False)
    assert not bar_enabled("auto")
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    assert bar_enabled("auto")
    monkeypatch.setenv("PD4ML_PROGRESS", "off")
    assert not bar_enabled(None)
    with pytest.raises(TrainingError, match="progress must be"):
        bar_enabled("loud")


@pytest.mark.parametrize("progress", ["on", "off"])
def test_epochs_are_logged_with_loss(progress: str, caplog: pytest.LogCaptureFixture) -> None:
    train = toy(128, 0)
    with caplog.at_level(logging.INFO, logger="pd4ml.train"):
        fit(tiny(train), train, train, Recipe(epochs=2, batch_size=32), progress=progress)
    lines = [r.getMessage() for r in caplog.records if "epoch" in r.getMessage()]
    assert len(lines) == 2 and "train loss" in lines[0] and "val loss" in lines[0]
