"""The executors: in this process, Dask futures on worker processes, SLURM and HTCondor."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pd4ml.bench.errors import BenchError
from pd4ml.bench.executors import (
    THREAD_VARIABLES,
    CellEvent,
    jobqueue_cluster,
    local_cluster,
    run_dask,
    run_local,
)
from tests.bench_fake_cells import (
    FakeCell,
    FakeOutcome,
    attempts,
    fake_cells,
    lost_fake,
    run_fake,
    scheduler_tasks,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "cluster_slurm_htcondor.py"

Events = list[CellEvent[FakeCell, FakeOutcome]]


def kinds_by_cell(events: Events) -> dict[int, list[str]]:
    by_cell: dict[int, list[str]] = {}
    for event in events:
        by_cell.setdefault(event.cell.seed, []).append(event.kind)
    return by_cell


@pytest.fixture(scope="module")
def worker_path() -> Iterator[None]:
    """Worker processes import ``tests.bench_fake_cells`` from this checkout."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
        yield


@pytest.fixture(scope="module")
def scheduler(worker_path: None) -> Iterator[str]:
    """One local cluster (2 single-threaded worker processes, 2 retries) shared by the tests."""
    with local_cluster(2, threads_per_worker=1, retries=2) as cluster:
        yield cluster.scheduler_address


# ------------------------------------------------------------------------------------ run_local


def test_run_local_runs_in_order_and_reports_each_step(tmp_path: Path) -> None:
    cells = fake_cells(tmp_path, ["finish", "fail", "finish"])
    events: Events = []
    outcomes = run_local(cells, run_fake, events.append)
    assert [outcome.status for outcome in outcomes] == ["finished", "failed", "finished"]
    assert [(event.kind, event.cell.seed) for event in events] == [
        ("started", 0),
        ("finished", 0),
        ("started", 1),
        ("failed", 1),
        ("started", 2),
        ("finished", 2),
    ]
    assert events[1].outcome == outcomes[0] and events[0].outcome is None


def test_run_local_turns_a_raising_run_into_a_failed_event_and_goes_on(tmp_path: Path) -> None:
    cells = fake_cells(tmp_path, ["raise", "finish"])
    events: Events = []
    outcomes = run_local(cells, run_fake, events.append, lost=lost_fake)
    assert outcomes == [FakeOutcome(cells[0], "failed", "lost: RuntimeError"), run_fake(cells[1])]
    assert [event.kind for event in events] == ["started", "failed", "started", "finished"]

    events.clear()
    without_lost = run_local(cells, run_fake, events.append)
    assert [outcome.cell for outcome in without_lost] == [cells[1]]
    assert events[1] == CellEvent("failed", cells[0], None)


def test_run_local_keyboard_interrupt_stops_the_run(tmp_path: Path) -> None:
    cells = fake_cells(tmp_path, ["finish", "interrupt", "finish"])
    events: Events = []
    with pytest.raises(KeyboardInterrupt):
        run_local(cells, run_fake, events.append, lost=lost_fake)
    assert [event.kind for event in events] == ["started", "finished", "started"]
    assert [attempts(cell) for cell in cells] == [1, 1, 0]


# ------------------------------------------------------------------------------------- run_dask


def test_run_dask_on_a_local_cluster_matches_run_local(tmp_path: Path, worker_path: None) -> None:
    cells = fake_cells(tmp_path, ["finish", "fail", "finish", "finish"])
    expected = run_local(cells, run_fake, lambda event: None)
    threads_cell = FakeCell("threads", "fcn", 9, "0" * 16, str(tmp_path), "threads")
    before = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    events: Events = []

    outcomes = run_dask(
        [*cells, threads_cell],
        run_fake,
        events.append,
        lost=lost_fake,
        workers=2,
        threads_per_worker=2,
    )

    assert outcomes[:-1] == expected
    assert outcomes[-1] == FakeOutcome(threads_cell, "finished", "2,2")  # workers' thread limits
    assert {name: os.environ.get(name) for name in THREAD_VARIABLES} == before
    assert [attempts(cell) for cell in cells] == [2, 2, 2, 2]  # once here, once on a worker
    by_cell = kinds_by_cell(events)
    assert by_cell == {
        0: ["started", "finished"],
        1: ["started", "failed"],
        2: ["started", "finished"],
        3: ["started", "finished"],
        9: ["started", "finished"],
    }


def test_a_dying_worker_loses_only_its_cell_which_is_retried(
    tmp_path: Path, scheduler: str
) -> None:
    cells = fake_cells(tmp_path, ["finish", "die_once", "finish", "finish", "finish"])
    events: Events = []
    outcomes = run_dask(cells, run_fake, events.append, lost=lost_fake, scheduler=scheduler)
    assert [outcome.status for outcome in outcomes] == ["finished"] * 5
    assert [attempts(cell) for cell in cells] == [1, 2, 1, 1, 1]
    by_cell = kinds_by_cell(events)
    assert by_cell[1] == ["started", "retrying", "finished"]
    assert all(by_cell[seed] == ["started", "finished"] for seed in (0, 2, 3, 4))


def test_a_cell_that_always_kills_its_worker_is_lost_after_the_retries(
    tmp_path: Path, scheduler: str
) -> None:
    cells = fake_cells(tmp_path, ["die_always", "finish", "finish"])
    events: Events = []
    outcomes = run_dask(cells, run_fake, events.append, lost=lost_fake, scheduler=scheduler)
    assert outcomes[0] == FakeOutcome(cells[0], "failed", "lost: KilledWorker")
    assert [outcome.status for outcome in outcomes[1:]] == ["finished", "finished"]
    assert [attempts(cell) for cell in cells] == [3, 1, 1]  # 1 + retries=2 on the local cluster
    assert kinds_by_cell(events)[0][0] == "started" and kinds_by_cell(events)[0][-1] == "failed"
    assert [event.outcome for event in events if event.kind == "failed"] == [outcomes[0]]


def test_a_raising_run_is_retried_then_lost(tmp_path: Path, scheduler: str) -> None:
    cells = fake_cells(tmp_path, ["raise_once", "raise"])
    events: Events = []
    outcomes = run_dask(
        cells, run_fake, events.append, lost=lost_fake, scheduler=scheduler, retries=1
    )
    assert outcomes == [
        FakeOutcome(cells[0], "finished", "ok"),
        FakeOutcome(cells[1], "failed", "lost: RuntimeError"),
    ]
    assert [attempts(cell) for cell in cells] == [2, 2]
    assert kinds_by_cell(events) == {
        0: ["started", "retrying", "finished"],
        1: ["started", "retrying", "failed"],
    }


def test_keyboard_interrupt_cancels_the_queued_and_running_cells(
    tmp_path: Path, scheduler: str
) -> None:
    import distributed

    cells = fake_cells(tmp_path, ["sleep"] * 5)

    def interrupt(event: CellEvent[FakeCell, FakeOutcome]) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_dask(cells, run_fake, interrupt, lost=lost_fake, scheduler=scheduler)
    with distributed.Client(scheduler, set_as_default=False) as client:
        deadline = time.monotonic() + 10
        while client.run_on_scheduler(scheduler_tasks) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.run_on_scheduler(scheduler_tasks) == 0  # nothing left queued or running
    assert sum(attempts(cell) for cell in cells) <= 2  # only as many handed out as workers


def test_only_as_many_cells_as_worker_threads_are_handed_out(
    tmp_path: Path, scheduler: str
) -> None:
    # distinct datasets: distinct task groups, which the scheduler would not hold back itself
    cells = [
        FakeCell(f"set{number}", "fcn", 0, "0" * 16, str(tmp_path), "count_tasks")
        for number in range(8)
    ]
    outcomes = run_dask(cells, run_fake, lambda event: None, lost=lost_fake, scheduler=scheduler)
    seen = [int(outcome.message) for outcome in outcomes]
    assert max(seen) <= 3, seen  # 2 worker threads (+1 finishing task not yet forgotten)


def test_workers_with_a_scheduler_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="leave workers out"):
        run_dask([], run_fake, print, lost=lost_fake, scheduler="tcp://127.0.0.1:1", workers=4)


def test_run_dask_without_distributed_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(BenchError, match=r"pip install 'pd4ml-hep\[dask\]'"):
        run_dask(fake_cells(tmp_path, ["finish"]), run_fake, print, lost=lost_fake)


def test_an_unreachable_scheduler_says_how_to_start_one(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a loopback port on which nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    with pytest.raises(BenchError) as raised:
        run_dask(
            fake_cells(tmp_path, ["finish"]),
            run_fake,
            print,
            lost=lost_fake,
            scheduler=address,
            connect_timeout=1.0,
        )
    message = str(raised.value)
    assert address in message and "dask scheduler" in message
    assert "dask worker tcp://HOST:8786" in message
    assert attempts(fake_cells(tmp_path, ["finish"])[0]) == 0


# ------------------------------------------------------------------------------ jobqueue_cluster


def test_unknown_cluster_kind_names_the_closest() -> None:
    with pytest.raises(BenchError, match=r"unknown cluster kind 'condor'; did you mean 'htcondor'"):
        jobqueue_cluster("condor")


def test_jobqueue_cluster_without_dask_jobqueue_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)  # import dask_jobqueue -> ImportError
    with pytest.raises(BenchError, match=r"pip install 'pd4ml-hep\[cluster\]'"):
        jobqueue_cluster("slurm")


def test_malformed_job_directives_are_refused() -> None:
    with pytest.raises(BenchError, match="SLURM directives as a list"):
        jobqueue_cluster("slurm", job_extra={"gres": "gpu:1"})
    with pytest.raises(BenchError, match="'key = value'"):
        jobqueue_cluster("htcondor", job_extra=["+MaxRuntime"])


def test_jobqueue_cluster_options_reach_the_job_script(tmp_path: Path) -> None:
    loopback = {"host": "127.0.0.1", "dashboard_address": ":0"}
    with jobqueue_cluster(
        "slurm",
        cores=2,
        job_extra=["--gres=gpu:1"],
        setup=["source /shared/venv/bin/activate"],
        worker_extra=["--resources", "cell=1"],
        log_directory=str(tmp_path / "logs"),
        scheduler_options=loopback,
    ) as slurm:
        script = slurm.job_script()
    lines = script.splitlines()
    assert "#SBATCH --gres=gpu:1" in lines and "source /shared/venv/bin/activate" in lines
    assert f"#SBATCH -e {tmp_path / 'logs'}/dask-worker-%J.err" in lines
    assert "--resources cell=1" in script
    assert "--nworkers 2" in script and "--nthreads 1" in script
    with jobqueue_cluster(
        "HTCondor", job_extra=["+MaxRuntime = 14400"], scheduler_options=loopback
    ) as condor:
        assert "+MaxRuntime = 14400" in condor.job_script().splitlines()


def run_example(*arguments: str) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), *arguments, "--scheduler-host", "127.0.0.1"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_slurm_example_prints_the_job_script() -> None:
    script = run_example(
        "slurm", "--cores", "8", "--memory", "32GB", "--walltime", "02:00:00",
        "--queue", "short", "--account", "phys123", "--data-dir", "/shared/pd4ml data",
    )  # fmt: skip
    for line in (
        "#SBATCH -p short",
        "#SBATCH -A phys123",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --mem=30G",  # 32 GB in SLURM's binary units, rounded up
        "#SBATCH -t 02:00:00",
        "export OMP_NUM_THREADS=1",
        "export MKL_NUM_THREADS=1",
        "export PD4ML_DATA_DIR='/shared/pd4ml data'",
    ):
        assert line in script.splitlines(), (line, script)
    worker = next(line for line in script.splitlines() if "distributed.cli.dask_worker" in line)
    assert "tcp://127.0.0.1:" in worker
    assert "--nworkers 8" in worker and "--nthreads 1" in worker
    assert script.index("export OMP_NUM_THREADS=1") < script.index("distributed.cli.dask_worker")


def test_htcondor_example_prints_the_job_script() -> None:
    script = run_example("htcondor", "--cores", "4", "--memory", "16GB", "--disk", "8GB")
    lines = script.splitlines()
    assert "RequestCpus = MY.DaskWorkerCores" in lines and "MY.DaskWorkerCores = 4" in lines
    assert "RequestMemory = floor(MY.DaskWorkerMemory / 1048576)" in lines
    assert "MY.DaskWorkerMemory = 16000000000" in lines
    assert "MY.DaskWorkerDisk = 8000000000" in lines
    arguments = next(line for line in lines if line.startswith("Arguments = "))
    assert "export OMP_NUM_THREADS=1;" in arguments
    assert "distributed.cli.dask_worker" in arguments
    assert "--nworkers 4" in arguments and "--nthreads 1" in arguments
