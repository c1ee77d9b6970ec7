"""The README's main job, timed: ``python -m pd4ml.bench --all --source demo --profile quick``.

    python benchmarks/bench_main_job.py                 # idle and under a competing load
    python benchmarks/bench_main_job.py --load idle

Each condition runs the main job from scratch (a fresh output directory: synthetic files
written, served by the loopback archive server, downloaded, converted, prepared; 8 datasets ×
{FCN, GraphNet} × 2 seeds trained, scored and rendered) in a child process, the way a user
starts it. The target is the issue's: under 15 minutes on 2 CPU cores. Next to the wall time it
prints the baseline a user would otherwise pay for the same training, the sum of the cells'
``fit`` times, so the runner's own overhead (serving, preparing, scoring, writing, rendering
the leaderboard, starting Python) is visible; and the time per cell by dataset and model,
read from the records. ``--load loaded`` starts one busy process per usable core first.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 15 * 60


def run_main_job(out: Path) -> float:
    """Run the main job into ``out``; its wall seconds."""
    started = time.perf_counter()
    subprocess.run(
        [
            *(sys.executable, "-m", "pd4ml.bench", "--all", "--source", "demo"),
            *("--profile", "quick", "--out", str(out), "--progress", "off"),
        ],
        check=True,
        cwd=ROOT,
    )
    return time.perf_counter() - started


def cell_times(out: Path) -> dict[tuple[str, str], list[dict[str, float]]]:
    """Per (dataset, model): each seed's timing block."""
    times: dict[tuple[str, str], list[dict[str, float]]] = defaultdict(list)
    for path in sorted((out / "results").glob("*/*/seed-*.json")):
        record = json.loads(path.read_text())
        assert record["status"] == "finished", (path, record["failure"])
        times[(record["cell"]["dataset"], record["cell"]["model"])].append(record["timing"])
    return times


def main() -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from common import competing_load, conditions, print_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load", choices=("idle", "loaded", "both"), default="both")
    args = parser.parse_args()
    summary: list[list[str]] = []
    for label, busy in conditions(args.load):
        with tempfile.TemporaryDirectory() as directory, competing_load(busy):
            out = Path(directory) / "run"
            wall = run_main_job(out)
            times = cell_times(out)
        cells = sum(len(seeds) for seeds in times.values())
        train = sum(t["train_seconds"] for seeds in times.values() for t in seeds)
        in_cells = sum(t["total_seconds"] for seeds in times.values() for t in seeds)
        summary.append(
            [
                label,
                str(cells),
                f"{wall:.0f} s",
                f"{in_cells:.0f} s",
                f"{train:.0f} s",
                f"{wall / train:.2f}",
                f"{TARGET_SECONDS} s",
                "yes" if wall < TARGET_SECONDS and cells == 32 else "NO",
            ]
        )
        rows = [
            [
                dataset,
                model,
                " / ".join(f"{t['total_seconds']:.1f}" for t in seeds),
                " / ".join(f"{t['train_seconds']:.1f}" for t in seeds),
            ]
            for (dataset, model), seeds in sorted(times.items())
        ]
        print(f"\n{label}: seconds per cell (seed 0 / seed 1)")
        print_table(["dataset", "model", "cell total", "of which fit"], rows)
    print()
    print_table(
        [
            "load",
            "cells",
            "main job wall",
            "sum of cells",
            "baseline: sum of fit",
            "wall / fit",
            "target",
            "met",
        ],
        summary,
    )


if __name__ == "__main__":
    main()
