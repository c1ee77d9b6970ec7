"""The benchmark runner end to end on the demo source: synthetic files in the official layouts,
served by the loopback archive server, downloaded, verified, converted, prepared, trained,
scored and written as validated records; resumable, robust to failing and killed cells.

The cells here use smaller demo files and fewer epochs than the main job (the main job's
figures are measured by running it; see the README), but every step is the real one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch", reason="the train extra is not installed")

from pd4ml.bench import cells as cells_module
from pd4ml.bench import models as bench_models_module
from pd4ml.bench import runner as runner_module
from pd4ml.bench.cells import SYNTHETIC_NOTICE, Cell, CellOutcome, run_cell
from pd4ml.bench.errors import BenchError
from pd4ml.bench.models import BenchModel, Setup
from pd4ml.bench.records import iter_records, read_record
from pd4ml.bench.runner import BenchConfig, plan, run_bench
from pd4ml.errors import UnknownNameError
from pd4ml.metrics import evaluate
from pd4ml.models import FCNConfig
from pd4ml.train import Recipe

ROOT = Path(__file__).resolve().parents[1]
#: Read at import: the suite's autouse fixture removes every PD4ML_* variable before a test runs.
SCREENSHOT_DIR = os.environ.get("PD4ML_SCREENSHOT_DIR")
ALL = tuple(runner_module.DEMO_EVENTS)
#: Small demo files: (train, test) events per dataset.
SMALL_EVENTS = {
    "top_tagging": (240, 120),
    "smartbkg": (240, 120),
    "spinodal": (200, 80),
    "eos": (200, 80),
    "airshower": (200, 80),
    "calice_ahcal": (300, 0),
    "higgsml": (900, 0),
    "ild_photon_showers": (300, 0),
}


def _small_setup(original: Any, epochs: int = 2) -> Any:
    def setup(dataset: str, profile: str) -> Setup:
        full = original(dataset, profile)
        recipe = full.recipe.replace(epochs=epochs, batch_size=32)
        return replace(full, recipe=recipe)

    return setup


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Small demo files and 2-epoch recipes for the shared models."""
    monkeypatch.setattr(runner_module, "DEMO_EVENTS", dict(SMALL_EVENTS))
    for name in ("fcn", "graphnet"):
        entry = bench_models_module._REGISTRY[name]
        monkeypatch.setitem(
            bench_models_module._REGISTRY, name, replace(entry, setup=_small_setup(entry.setup))
        )
    yield


def _config(out: Path, datasets: tuple[str, ...] = (), **changes: Any) -> BenchConfig:
    values: dict[str, Any] = {
        "datasets": datasets,
        "seeds": 1,
        "source": "demo",
        "profile": "quick",
        "out": out,
        "threads": 1,
        "progress": "off",
    }
    values.update(changes)
    return BenchConfig(**values)


def _served_test(out: Path, record: dict[str, Any]) -> dict[str, np.ndarray]:
    """The test split a demo record was scored on, read from the run's demo cache."""
    (meta,) = [
        path
        for path in (out / "demo" / "cache" / record["cell"]["dataset"]).glob(
            "*/prepared/*/test/meta.json"
        )
    ]
    arrays = {
        name: np.load(meta.parent / f"{name}.npy", allow_pickle=False)
        for name in ("labels", "weights")
    }
    info = json.loads(meta.read_text()).get("info", {})
    if info.get("target_standardised"):  # Airshower: metrics are in g/cm²
        arrays["labels"] = arrays["labels"] * info["xmax_scale"] + info["xmax_mean"]
    return arrays


def finished_record_of(out: Path, label: str) -> bool:
    """Whether the record of ``label`` is finished and its predictions file matches it."""
    path = out / "results" / f"{label}.json"
    record = read_record(path)
    saved = path.with_name(record["predictions"]["file"])
    return bool(
        record["status"] == "finished"
        and hashlib.sha256(saved.read_bytes()).hexdigest() == record["predictions"]["sha256"]
    )


def _records(out: Path) -> dict[str, dict[str, Any]]:
    return {
        f"{r['cell']['dataset']}/{r['cell']['model']}/seed-{r['cell']['seed']}": r
        for _, r in iter_records([out])
    }


def test_every_dataset_and_shared_model_gives_a_valid_synthetic_record(
    small: None, tmp_path: Path
) -> None:
    summary = run_bench(_config(tmp_path / "run", ALL))
    assert [o.status for o in summary.outcomes] == ["finished"] * 16, [
        (o.cell.label, o.message) for o in summary.outcomes if o.status != "finished"
    ]
    records = _records(tmp_path / "run")
    assert len(records) == 16
    for label, record in records.items():
        assert record["status"] == "finished"
        assert record["dataset"]["synthetic"] is True and record["dataset"]["source"] == "synthetic"
        assert record["synthetic_notice"] == SYNTHETIC_NOTICE
        assert record["dataset"]["files"] and all(
            str(value).startswith("sha256:") for value in record["dataset"]["files"].values()
        )
        assert record["model"]["parameters"] > 0
        assert record["dataset"]["n_train"] > 0 and record["dataset"]["n_test"] > 0
        assert record["history"] and len(record["history"]) == 2
        metrics = record["metrics"]
        if record["task"] == "classification":
            assert {"accuracy", "auc", "rejection_30", "rejection_50"} <= set(metrics), label
            assert len(record["curves"]["roc"]["false_positive_rate"]) <= 201
        else:
            assert {"mse", "resolution", "bias"} <= set(metrics), label
            assert "residuals" in record["curves"] and "resolution_vs_truth" in record["curves"]
    assert {"ams", "ams_public", "ams_threshold"} <= set(records["higgsml/fcn/seed-0"]["metrics"])
    assert records["airshower/fcn/seed-0"]["dataset"]["target_units"] == "g/cm²"
    # the saved test predictions reproduce the recorded metrics
    for label in ("eos/graphnet/seed-0", "airshower/fcn/seed-0"):
        record = records[label]
        saved = record["predictions"]
        path = tmp_path / "run" / "results" / label.rsplit("/", 1)[0] / saved["file"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == saved["sha256"]
        scores = np.load(path, allow_pickle=False)
        assert scores.shape == (saved["n_events"],) == (record["dataset"]["n_test"],)
        test = _served_test(tmp_path / "run", record)
        computed = evaluate(record["task"], test["labels"], scores, test["weights"])
        for name, value in computed.items():
            assert value == pytest.approx(record["metrics"][name], rel=1e-5), (label, name)
    for name in ("calice_ahcal", "ild_photon_showers"):
        assert records[f"{name}/fcn/seed-0"]["curves"]["energy_resolution"]["centres"]
    # the quick FCN recipe runs the learning-rate range test: its curve is in the record
    assert records["eos/fcn/seed-0"]["lr_finder"]["learning_rates"]
    for name in ("LEADERBOARD.md", "leaderboard.tex", "report/index.html"):
        assert (tmp_path / "run" / name).is_file(), name
    # the report of this real run renders in Chromium: every plot, every table, no error
    from tests.test_bench_report_browser import check_page

    screenshot = tmp_path / "demo-report.png"
    page = check_page(tmp_path / "run" / "report" / "index.html", screenshot)
    assert page.problems == []
    assert len(page.images) >= 8 * 3 and page.tables >= 8  # every dataset: its results table
    if SCREENSHOT_DIR:
        Path(SCREENSHOT_DIR).mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, Path(SCREENSHOT_DIR) / "pd4ml-demo-report.png")
    assert SYNTHETIC_NOTICE.split(":")[0] in (tmp_path / "run" / "LEADERBOARD.md").read_text()


def test_rerun_recomputes_nothing_and_a_deleted_record_exactly_its_cell(
    small: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    config = _config(out, ("higgsml", "top_tagging"), seeds=2)
    first = run_bench(config)
    assert len(first.outcomes) == 8 and not first.failed
    before = {path: path.stat().st_mtime_ns for path in (out / "results").rglob("seed-*.json")}

    ran: list[str] = []

    def counting(cell: Cell) -> CellOutcome:
        ran.append(cell.label)
        return run_cell(cell)

    again = run_bench(config, run=counting)
    assert ran == [] and again.outcomes == ()
    assert {p: p.stat().st_mtime_ns for p in (out / "results").rglob("seed-*.json")} == before

    (out / "results" / "top_tagging" / "graphnet" / "seed-1.json").unlink()
    run_bench(config, run=counting)
    assert ran == ["top_tagging/graphnet/seed-1"]
    assert len(_records(out)) == 8


def test_same_seed_gives_the_same_metrics(small: None, tmp_path: Path) -> None:
    one = run_bench(_config(tmp_path / "a", ("higgsml",)))
    two = run_bench(_config(tmp_path / "b", ("higgsml",)))
    assert not one.failed and not two.failed
    first, second = _records(tmp_path / "a"), _records(tmp_path / "b")
    for label in first:
        assert first[label]["metrics"] == second[label]["metrics"], label


def test_a_changed_recipe_or_code_version_is_another_cell(
    small: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    config = _config(out, ("higgsml",), models=("fcn",))
    run_bench(config)
    assert plan(config).pending == ()
    old_key = read_record(out / "results" / "higgsml" / "fcn" / "seed-0.json")["cell"]["key"]

    entry = bench_models_module._REGISTRY["fcn"]
    monkeypatch.setitem(
        bench_models_module._REGISTRY, "fcn", replace(entry, setup=_small_setup(entry.setup, 3))
    )
    changed = plan(config)
    assert [cell.label for cell in changed.pending] == ["higgsml/fcn/seed-0"]
    run_bench(config)
    record = read_record(out / "results" / "higgsml" / "fcn" / "seed-0.json")
    assert record["cell"]["key"] != old_key and len(record["history"]) == 3
    kept = list((out / "results" / "higgsml" / "fcn" / "superseded").glob("*.json"))
    assert len(kept) == 1 and old_key in kept[0].name
    assert len(list(iter_records([out]))) == 1  # superseded records are not read

    # each record keeps its own predictions: the live one beside it, the old one in superseded/
    assert finished_record_of(out, "higgsml/fcn/seed-0")
    old = json.loads(kept[0].read_text())
    old_predictions = kept[0].with_name(f"{kept[0].stem}.predictions.npy")
    assert hashlib.sha256(old_predictions.read_bytes()).hexdigest() == old["predictions"]["sha256"]

    real = cells_module.code_version

    def other_source() -> dict[str, str]:
        return {**real(), "source_digest": "0" * 16}

    def other_commit() -> dict[str, str]:
        return {**real(), "git_revision": "0" * 40}

    # the git revision is provenance; the source files' digest is what identifies the code
    monkeypatch.setattr(cells_module, "code_version", other_commit)
    assert plan(config).pending == ()
    monkeypatch.setattr(cells_module, "code_version", other_source)
    assert [cell.label for cell in plan(config).pending] == ["higgsml/fcn/seed-0"]


def test_a_failing_cell_is_recorded_and_the_others_finish(
    small: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_setup(dataset: str, profile: str) -> Setup:
        return Setup(FCNConfig(depth=1, width=4), Recipe(epochs=1), {"graph": False})

    broken = BenchModel(
        name="broken",
        kind="shared",
        architecture="no-such-architecture",
        datasets=("higgsml",),
        setup=broken_setup,
        description="fails when built",
    )
    monkeypatch.setitem(bench_models_module._REGISTRY, "broken", broken)
    out = tmp_path / "run"
    summary = run_bench(_config(out, ("higgsml",), models=("fcn", "broken")))
    statuses = {o.cell.label: o.status for o in summary.outcomes}
    assert statuses == {"higgsml/fcn/seed-0": "finished", "higgsml/broken/seed-0": "failed"}
    failed = read_record(out / "results" / "higgsml" / "broken" / "seed-0.json")
    assert failed["status"] == "failed"
    assert "no-such-architecture" in failed["failure"]["message"]
    assert "Traceback" in failed["failure"]["traceback"]
    assert failed["code"]["git_revision"] and failed["hardware"]["cpu"]
    board = (out / "LEADERBOARD.md").read_text()
    assert "broken" in board and "failed" in board.lower()
    # a failed cell is not finished: the next run tries it again
    assert [cell.label for cell in plan(_config(out, ("higgsml",), models=("broken",))).pending]


def test_reference_models_say_when_a_dataset_has_none(tmp_path: Path) -> None:
    config = _config(tmp_path / "run", ("top_tagging", "eos"), models=("reference",))
    the_plan = plan(config)
    assert the_plan.cells == ()
    assert the_plan.notices == (
        "top_tagging: no reference model yet",
        "eos: no reference model yet",
    )
    result = subprocess.run(
        [
            *(sys.executable, "-m", "pd4ml.bench", "--datasets", "eos", "--models", "reference"),
            *("--source", "demo", "--out", str(tmp_path / "cli"), "--progress", "plain"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "eos: no reference model yet" in result.stdout


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"datasets": ("top_taging",)}, UnknownNameError),
        ({"models": ("fnc",)}, UnknownNameError),
        ({"profile": "fast"}, UnknownNameError),
        ({"seeds": 0}, BenchError),
        ({"executor": "local", "workers": 2}, BenchError),
        ({"executor": "dask", "scheduler": "tcp://127.0.0.1:1"}, BenchError),  # demo + remote
        ({"datasets": ()}, BenchError),
        ({"executor": "dask", "workers": 0}, BenchError),
    ],
)
def test_bad_options_are_clear_errors(
    tmp_path: Path, changes: dict[str, Any], error: type[Exception]
) -> None:
    values = {"datasets": ("higgsml",), **changes}
    with pytest.raises(error) as raised:
        plan(_config(tmp_path, **values))
    if changes.get("datasets"):
        assert "top_tagging" in str(raised.value)


def test_repeated_names_are_one_cell(tmp_path: Path) -> None:
    config = _config(tmp_path, ("higgsml", "HiggsML"), models=("fcn", "fcn", "shared"))
    assert [cell.label for cell in plan(config).cells] == [
        "higgsml/fcn/seed-0",
        "higgsml/graphnet/seed-0",
    ]


def test_cli_usage_errors_exit_2(tmp_path: Path) -> None:
    for arguments in (
        ["--datasets", "nope"],
        ["--all", "--models", "fnc"],
        ["--all", "--seeds", "0"],
    ):
        result = subprocess.run(
            [sys.executable, "-m", "pd4ml.bench", *arguments, "--out", str(tmp_path)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
        assert result.returncode == 2, (arguments, result.stderr)
        assert "error" in result.stderr


def _bench_process(out: Path, *extra: str) -> subprocess.Popen[str]:
    environment = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    code = (
        "import sys; import tests.test_bench_runner as t; t.shrink_for_subprocess(); "
        "from pd4ml.bench.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    return subprocess.Popen(
        [
            *(sys.executable, "-c", code, "--datasets", "higgsml", "top_tagging", "--seeds", "2"),
            *("--source", "demo", "--threads", "1", "--out", str(out), "--progress", "plain"),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env=environment,
    )


def shrink_for_subprocess() -> None:
    """The ``small`` fixture's changes, for a benchmark run in a child process."""
    runner_module.DEMO_EVENTS.update(SMALL_EVENTS)
    for name in ("fcn", "graphnet"):
        entry = bench_models_module._REGISTRY[name]
        bench_models_module._REGISTRY[name] = replace(entry, setup=_small_setup(entry.setup))


def _wait_for_finished_cells(process: subprocess.Popen[str], count: int) -> list[str]:
    lines: list[str] = []
    assert process.stdout is not None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if sum("finished " in entry for entry in lines) >= count:
            return lines
    raise AssertionError("the run ended before enough cells finished:\n" + "".join(lines))


@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT"])
def test_a_killed_run_restarts_and_completes_with_valid_records(tmp_path: Path, how: str) -> None:
    out = tmp_path / "run"
    process = _bench_process(out)
    _wait_for_finished_cells(process, 2)
    time.sleep(0.5)  # inside the next cell
    process.send_signal(signal.SIGKILL if how == "SIGKILL" else signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    if how == "SIGINT":
        assert process.returncode == 130, output
        assert "interrupted" in output
    else:
        assert process.returncode == -signal.SIGKILL
    survivors = list(iter_records([out]))  # every record on disk is valid
    assert 2 <= len(survivors) < 8
    restarted = _bench_process(out)
    output, _ = restarted.communicate(timeout=600)
    assert restarted.returncode == 0, output
    records = _records(out)
    assert len(records) == 8 and all(r["status"] == "finished" for r in records.values())
    assert f"{8 - len(survivors)} cell(s) run" in output
    for path in (out / "results").rglob("*.json"):
        json.loads(path.read_text())


def test_a_dask_run_gives_the_local_run_s_cells_and_metrics(
    small: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two worker processes of a local Dask cluster run the same cells as the local executor
    and, with the same seeds and one thread per cell, get bit-identical metrics."""
    pytest.importorskip("distributed", reason="the dask extra is not installed")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    datasets = ("higgsml", "top_tagging")
    local = run_bench(_config(tmp_path / "local", datasets, seeds=2))
    dask = run_bench(_config(tmp_path / "dask", datasets, seeds=2, executor="dask", workers=2))
    assert not local.failed and not dask.failed
    first, second = _records(tmp_path / "local"), _records(tmp_path / "dask")
    assert sorted(first) == sorted(second) and len(first) == 8
    for label, record in first.items():
        other = second[label]
        assert other["cell"]["key"] == record["cell"]["key"], label
        assert other["metrics"] == record["metrics"], label
        assert other["history"][-1]["train_loss"] == record["history"][-1]["train_loss"], label
    # the workers wrote into the shared output directory; a rerun there recomputes nothing
    assert plan(_config(tmp_path / "dask", datasets, seeds=2)).pending == ()


def test_the_archive_source_runs_real_jets_fetched_from_an_archive_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--source archive`` on real data: the 4,000 Pythia 8 top/QCD jets of ../shared (split
    into the official train/val/test files) published as a Zenodo record by the loopback
    server, under a registered dataset of their own (not the official dataset, whose checksums
    they cannot match). The record is real data: no synthetic notice, source ``archive``."""
    import pandas as pd

    from pd4ml import TopTagging
    from pd4ml.datasets.registry import register, unregister
    from pd4ml.testing import ArchiveServer
    from pd4ml.testing.synthetic import synthetic_variant
    from tests.conftest import shared_file

    frame = pd.read_hdf(shared_file("toptagging", "pythia8_particle_level_4k.h5"), "table")
    frame = frame.sample(frac=1.0, random_state=0)
    parts = {"train.h5": frame[:2800], "val.h5": frame[2800:3200], "test.h5": frame[3200:]}
    files = {}
    for key, part in parts.items():
        files[key] = tmp_path / "files" / key
        files[key].parent.mkdir(exist_ok=True)
        part.to_hdf(files[key], key="table", format="table")
    monkeypatch.setattr(cells_module, "settings_for", _plain_settings(cells_module.settings_for))
    with ArchiveServer() as server:
        server.add_zenodo_record(9500, files)
        layout = synthetic_variant(TopTagging, server.url, 9500, files).manifest()
        version = replace(
            layout.versions[0], name="pythia8-4k", title="4,000 Pythia 8 jets", synthetic=False
        )
        manifest = replace(
            layout, name="pythia_jets", versions=(version,), default_version=version.name
        )
        jets = type(
            "PythiaJets",
            (TopTagging,),
            {"name": "pythia_jets", "manifest_override": manifest, "__module__": __name__},
            register=False,
        )
        register(jets)
        try:
            config = _config(
                tmp_path / "run",
                ("pythia_jets",),
                source="archive",
                models=("fcn",),
                data_dir=tmp_path / "cache",
            )
            summary = run_bench(config)
        finally:
            unregister(jets)
    assert [o.status for o in summary.outcomes] == ["finished"], summary.outcomes
    record = read_record(tmp_path / "run" / "results" / "pythia_jets" / "fcn" / "seed-0.json")
    dataset = record["dataset"]
    assert dataset["synthetic"] is False and dataset["source"] == "archive"
    assert "synthetic_notice" not in record and dataset["archive"] == "zenodo record 9500"
    assert dataset["version"] == "pythia8-4k" and dataset["n_test"] == 800
    assert set(dataset["files"]) == {"train.h5", "val.h5", "test.h5"}
    assert record["metrics"]["auc"] > 0.8
    board = (tmp_path / "run" / "LEADERBOARD.md").read_text()
    assert "SYNTHETIC" not in board


def _plain_settings(original: Any) -> Any:
    """Cell settings with fast retries (the loopback server answers at once)."""
    from pd4ml.config import RetryPolicy

    def settings(cell: Cell) -> Any:
        return original(cell).with_changes(
            retry=RetryPolicy(max_attempts=3, backoff_initial=0.01, backoff_max=0.05)
        )

    return settings


def test_an_invalid_finished_record_becomes_a_failed_record_and_lost_predictions_a_rerun(
    small: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    config = _config(out, ("higgsml",), models=("fcn",))
    real_score = cells_module._score

    def incomplete(*args: Any, **kwargs: Any) -> Any:
        values, curves = real_score(*args, **kwargs)
        values.pop("auc")
        return values, curves

    monkeypatch.setattr(cells_module, "_score", incomplete)
    summary = run_bench(config)
    assert [o.status for o in summary.outcomes] == ["failed"]
    record = read_record(out / "results" / "higgsml" / "fcn" / "seed-0.json")
    assert record["status"] == "failed" and "auc" in record["failure"]["message"]
    monkeypatch.setattr(cells_module, "_score", real_score)
    assert [o.status for o in run_bench(config).outcomes] == ["finished"]
    assert plan(config).pending == ()
    (out / "results" / "higgsml" / "fcn" / "seed-0.predictions.npy").unlink()
    assert [cell.label for cell in plan(config).pending] == ["higgsml/fcn/seed-0"]


#: Import names of the distributions in the ``dev`` extra (and the optional frameworks).
IMPORT_NAMES = {
    "pytest": ["pytest", "_pytest"],
    "ruff": ["ruff"],
    "mypy": ["mypy"],
    "types-requests": [],
    "scikit-learn": ["sklearn"],
    "uproot": ["uproot", "awkward"],
    "build": ["build"],
    "setuptools": [],  # imported by the standard library's own machinery
    "onnx": ["onnx"],
    "onnxruntime": ["onnxruntime"],
    "onnxscript": ["onnxscript"],
    "dask": ["dask", "distributed"],
    "dask-jobqueue": ["dask_jobqueue"],
    "playwright": ["playwright"],
}


def _requirement_names(requirements: list[str]) -> set[str]:
    import re

    return {re.split(r"[\[<>=;! ]", item.strip(), maxsplit=1)[0] for item in requirements}


def _extra_closure(extras: dict[str, list[str]], names: list[str]) -> set[str]:
    """The distributions an install of the extras ``names`` brings (extras nest)."""
    seen: set[str] = set()
    requirements: set[str] = set()
    stack = list(names)
    while stack:
        extra = stack.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for item in extras[extra]:
            if item.startswith("pd4ml-hep["):
                stack += item[len("pd4ml-hep[") : item.index("]")].split(",")
            else:
                requirements |= _requirement_names([item])
    return requirements


def test_the_main_job_needs_nothing_beyond_the_bench_extra(tmp_path: Path) -> None:
    """`pip install '.[bench]'` is all the main job needs: every dataset's demo cell runs with
    the packages of the development extra (and TensorFlow, PyG) made unimportable."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    installed = _requirement_names(project["dependencies"]) | _extra_closure(extras, ["bench"])
    dev_only = _requirement_names(extras["dev"]) - installed
    unknown = dev_only - set(IMPORT_NAMES)
    assert not unknown, f"add the import names of {unknown} to IMPORT_NAMES"
    blocked = sorted(
        {module for name in dev_only for module in IMPORT_NAMES[name]}
        | {"tensorflow", "torch_geometric"}
    )
    code = f"""
import sys
from dataclasses import replace
BLOCKED = {blocked!r}
for name in BLOCKED:  # as if not installed: import fails, importlib.util.find_spec gives None
    sys.modules[name] = None
from pd4ml.bench import models, runner
runner.DEMO_EVENTS.update({SMALL_EVENTS!r})
for name in ("fcn", "graphnet"):
    entry = models._REGISTRY[name]
    def setup(dataset, profile, original=entry.setup):
        full = original(dataset, profile)
        return replace(full, recipe=full.recipe.replace(epochs=1, batch_size=32))
    models._REGISTRY[name] = replace(entry, setup=setup)
from pd4ml.bench.cli import main
code = main(sys.argv[1:])
leaked = sorted(m for m, v in sys.modules.items() if m.split(".")[0] in BLOCKED and v)
print("leaked", leaked)
sys.exit(code)
"""
    result = subprocess.run(
        [
            *(sys.executable, "-c", code, "--all", "--source", "demo", "--seeds", "1"),
            *("--threads", "1", "--out", str(tmp_path / "run"), "--progress", "plain"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "16 cell(s) run" in result.stdout and "leaked []" in result.stdout


def test_an_interrupted_rerun_of_a_changed_cell_leaves_the_old_record(
    small: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    config = _config(out, ("higgsml",), models=("fcn",))
    run_bench(config)
    path = out / "results" / "higgsml" / "fcn" / "seed-0.json"
    before = path.read_bytes()
    entry = bench_models_module._REGISTRY["fcn"]
    monkeypatch.setitem(
        bench_models_module._REGISTRY, "fcn", replace(entry, setup=_small_setup(entry.setup, 3))
    )

    def interrupted(cell: Cell) -> dict[str, Any]:
        raise KeyboardInterrupt

    monkeypatch.setattr(cells_module, "_train_and_score", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_bench(config)
    assert path.read_bytes() == before and finished_record_of(out, "higgsml/fcn/seed-0")
    assert not (path.parent / "superseded").exists()


def test_a_demo_cell_that_cannot_rebuild_its_files_is_a_synthetic_failed_record(
    tmp_path: Path,
) -> None:
    (cell,) = plan(_config(tmp_path / "run", ("higgsml",), models=("fcn",))).pending
    outcome = run_cell(cell)  # served files were never attached
    assert outcome.status == "failed"
    record = read_record(cell.path)
    assert record["dataset"]["synthetic"] is True and record["synthetic_notice"]


def test_a_worker_with_other_pd4ml_source_fails_its_cell(small: None, tmp_path: Path) -> None:
    (cell,) = plan(_config(tmp_path / "run", ("higgsml",), models=("fcn",))).pending
    outcome = run_cell(replace(cell, source_digest="0" * 16))
    assert outcome.status == "failed" and "same pd4ml on every worker" in outcome.message


def test_the_validation_cut_scale_is_the_training_set_yield_over_the_validation_part(
    tmp_path: Path,
) -> None:
    """KaggleWeights of the set t sum to the full yield over train and val together, so the
    validation events (a part of t) are scaled by Σ(train + val, full) / Σ(val used)."""
    full = {"train": np.full(900, 2.0), "val": np.full(100, 2.0), "private_test": np.ones(50)}

    class Fake:
        @staticmethod
        def load_data(split: str, **_: Any) -> dict[str, np.ndarray]:
            return {"kaggle_weights": full[split]}

    used = {split: {"kaggle_weights": values[:40]} for split, values in full.items()}
    prepared = cells_module._Prepared(
        Fake,  # type: ignore[arg-type]
        used["train"],  # type: ignore[arg-type]
        used["val"],  # type: ignore[arg-type]
        {"private_test": used["private_test"]},  # type: ignore[dict-item]
        0.0,
    )
    (cell,) = plan(_config(tmp_path, ("higgsml",), models=("fcn",))).cells
    scale = cells_module._kaggle_scale(cell, prepared, ("train", "val"), ("val",))
    assert scale == pytest.approx(2000.0 / 80.0)
    private = cells_module._kaggle_scale(cell, prepared, ("private_test",), ("private_test",))
    assert private == pytest.approx(50.0 / 40.0)
