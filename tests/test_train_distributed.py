"""Data-parallel training with ``torchrun`` (2 processes, gloo): disjoint shards per rank, and
the metrics of one process on the same global batches.

Tolerance: each rank normalises its loss by the weight of the global batch, so the averaged
gradient equals one process's gradient on the same global batch up to the order of the
floating-point sums (each rank sums its half, then the all-reduce adds the halves). Measured
here after 3 epochs of Adam (24 steps): weights differ by at most 1.2e-7 (absolute; 5e-7
relative) and the validation loss agrees to all printed digits; the test allows 1e-4 relative.
Normalising each rank by its own weight sum (plain DDP averaging) misses by 2e-3 and fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pd4ml.train import Recipe, TrainingData, fit
from tests.test_train_loop import Tiny, TinyConfig

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
N_EVENTS, BATCH, EPOCHS = 512, 64, 3
RECIPE = Recipe(
    epochs=EPOCHS, batch_size=BATCH, learning_rate=0.01, seed=3, threads=1, device="cpu"
)


class Recording(Tiny):
    """Tiny that records the ``event_id`` input of every training batch."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.inputs = ("features", "event_id")
        self.seen: list[np.ndarray] = []

    def forward(self, features: torch.Tensor, event_id: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if self.training:
            self.seen.append(event_id.numpy().copy())
        return super().forward(features)


def data() -> tuple[TrainingData, TrainingData]:
    generator = np.random.default_rng(0)
    x = generator.normal(size=(N_EVENTS + 200, 4)).astype(np.float32)
    y = (x[:, 0] - x[:, 3] > 0).astype(np.int64)
    w = generator.uniform(0.2, 3.0, len(y)).astype(np.float32)
    ids = np.arange(len(y))
    train = TrainingData.from_arrays(
        x[:N_EVENTS], y[:N_EVENTS], w[:N_EVENTS], event_id=ids[:N_EVENTS]
    )
    val = TrainingData.from_arrays(
        x[N_EVENTS:], y[N_EVENTS:], w[N_EVENTS:], event_id=ids[N_EVENTS:]
    )
    return train, val


def run(output: str) -> None:
    """Train (one process, or one rank of torchrun) and write what the rank saw."""
    train, val = data()
    torch.manual_seed(0)
    model = Recording(train.description, TinyConfig(hidden=16))
    result = fit(model, train, val, RECIPE, directory=Path(output) / "run", progress="off")
    rank = int(os.environ.get("RANK", "0"))
    np.save(Path(output) / f"seen{rank}.npy", np.stack(model.seen))
    weights = {k: v.tolist() for k, v in result.model.state_dict().items()}
    (Path(output) / f"result{rank}.json").write_text(
        json.dumps({"validation": result.validation, "weights": weights})
    )


@pytest.mark.skipif(
    shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None, reason="no torchrun"
)
def test_two_process_torchrun_matches_one_process(tmp_path: Path) -> None:
    torchrun = str(Path(sys.executable).parent / "torchrun")
    code = "import sys; from tests.test_train_distributed import run; run(sys.argv[1])"
    script = tmp_path / "train.py"
    script.write_text(code)
    parallel = tmp_path / "parallel"
    parallel.mkdir()
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node", "2", str(script), str(parallel)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    single = tmp_path / "single"
    single.mkdir()
    run(str(single))

    seen = [np.load(parallel / f"seen{rank}.npy") for rank in (0, 1)]
    steps = EPOCHS * N_EVENTS // BATCH
    assert seen[0].shape == seen[1].shape == (steps, BATCH // 2)
    for epoch in range(EPOCHS):
        part = slice(epoch * N_EVENTS // BATCH, (epoch + 1) * N_EVENTS // BATCH)
        rows = [set(seen[rank][part].ravel().tolist()) for rank in (0, 1)]
        assert not rows[0] & rows[1]  # disjoint shards
        assert rows[0] | rows[1] == set(range(N_EVENTS))  # together: the whole split, once
    # the ranks' halves make up the global batches of one process
    one = np.load(single / "seen0.npy")
    np.testing.assert_array_equal(np.concatenate(seen, axis=1), one)

    results = [json.loads((parallel / f"result{rank}.json").read_text()) for rank in (0, 1)]
    reference = json.loads((single / "result0.json").read_text())
    assert results[0]["validation"] == results[1]["validation"]
    for name, value in reference["validation"].items():
        assert results[0]["validation"][name] == pytest.approx(value, rel=1e-4), name
    for name, value in reference["weights"].items():
        np.testing.assert_allclose(results[0]["weights"][name], value, rtol=1e-4, atol=1e-6)
    # only rank 0 wrote the checkpoint and history, into the one directory
    assert (parallel / "run" / "history.json").exists()
