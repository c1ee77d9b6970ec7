"""Benchmark records: the JSON Schema, the cross-field rules, atomic writes and the reader."""

from __future__ import annotations

import copy
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from jsonschema import Draft202012Validator

from pd4ml.bench import records
from pd4ml.bench.errors import BenchError
from pd4ml.bench.records import (
    RECORD_SCHEMA,
    SCHEMA_ID,
    SYNTHETIC_NOTICE,
    RecordError,
    iter_records,
    metric_float,
    metric_value,
    read_record,
    record_path,
    validate_record,
    write_record,
)
from pd4ml.errors import Pd4mlError
from tests.bench_examples import example_record

ROOT = Path(__file__).resolve().parents[1]
FIXED_BLOCKS = ("cell", "dataset", "code", "model", "hardware", "timing", "memory")


def without(record: dict[str, Any], dotted: str) -> dict[str, Any]:
    """A copy of ``record`` with the key at ``dotted`` ("a.b") removed."""
    changed = copy.deepcopy(record)
    *parents, last = dotted.split(".")
    target = changed
    for part in parents:
        target = target[part]
    del target[last]
    return changed


def changed(record: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """A copy of ``record`` with the value at ``dotted`` set to ``value``."""
    result = copy.deepcopy(record)
    *parents, last = dotted.split(".")
    target = result
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    target[last] = value
    return result


def problems(record: Any, where: str = "seed-0.json") -> str:
    with pytest.raises(RecordError) as caught:
        validate_record(record, where=where)
    return str(caught.value)


# -- the schema ---------------------------------------------------------------------------------


def test_schema_is_a_valid_draft_2020_12_schema_with_the_record_id() -> None:
    Draft202012Validator.check_schema(RECORD_SCHEMA)
    assert RECORD_SCHEMA["$id"] == SCHEMA_ID == "pd4ml-bench-record/1"
    assert RECORD_SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    packaged = Path(records.__file__).with_name("record.schema.json")
    assert json.loads(packaged.read_text()) == RECORD_SCHEMA


def test_every_property_of_the_schema_is_described() -> None:
    undocumented = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for name, child in node.get("properties", {}).items():
                if "description" not in child:
                    undocumented.append(f"{path}.{name}")
            for key, child in node.items():
                walk(child, f"{path}.{key}")
        elif isinstance(node, list):
            for index, child in enumerate(node):
                walk(child, f"{path}[{index}]")

    walk(RECORD_SCHEMA, "$")
    assert not undocumented


def test_the_fixed_blocks_and_the_top_level_admit_no_extra_keys() -> None:
    assert RECORD_SCHEMA["additionalProperties"] is False
    for block in FIXED_BLOCKS:
        assert RECORD_SCHEMA["properties"][block]["additionalProperties"] is False, block
    failure = RECORD_SCHEMA["properties"]["failure"]
    assert failure["additionalProperties"] is False


def test_record_error_is_a_pd4ml_error_and_a_value_error() -> None:
    assert issubclass(RecordError, Pd4mlError)
    assert issubclass(RecordError, ValueError)


# -- valid records ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arguments",
    [
        {},
        {"synthetic": False},
        {"dataset": "higgsml"},
        {"dataset": "calice_ahcal", "model": "dnn", "task": "regression"},
        {"dataset": "airshower", "task": "regression", "synthetic": False, "seed": 4},
        {"status": "failed"},
        {"status": "failed", "synthetic": False, "task": "regression"},
    ],
)
def test_the_examples_are_valid(arguments: dict[str, Any]) -> None:
    validate_record(example_record(**arguments))


def test_open_blocks_may_carry_extra_keys() -> None:
    record = example_record()
    record["recipe"]["anything"] = {"nested": [1, 2]}
    record["model"]["config"]["extra"] = "yes"
    record["dataset"]["params"]["scale"] = True
    record["metrics"]["f1"] = 0.5
    record["curves"]["roc"]["thresholds"] = [0.5]
    record["curves"]["calibration"] = {"x": [0.0], "y": [0.0]}
    record["history"][0]["member"] = 1
    record["lr_finder"]["extra"] = 1
    validate_record(record)


def test_non_finite_metrics_are_strings_or_null() -> None:
    record = example_record()
    record["metrics"].update(rejection_30="inf", rejection_50="-inf", bce=None)
    validate_record(record)
    assert "$.metrics.auc" in problems(changed(record, "metrics.auc", "Infinity"))
    assert "$.metrics.auc" in problems(changed(record, "metrics.auc", "0.9"))


# -- invalid records ----------------------------------------------------------------------------


@pytest.mark.parametrize("field", RECORD_SCHEMA["required"])
def test_each_required_top_level_field_is_required(field: str) -> None:
    message = problems(without(example_record(), field), where="results/x/seed-0.json")
    assert "results/x/seed-0.json" in message
    assert repr(field) in message


@pytest.mark.parametrize(
    "dotted",
    [
        f"{block}.{field}"
        for block in FIXED_BLOCKS
        for field in RECORD_SCHEMA["properties"][block]["required"]
    ]
    + ["failure.type", "failure.message", "failure.traceback"],
)
def test_each_required_field_of_a_block_is_required(dotted: str) -> None:
    record = example_record(status="failed") if dotted.startswith("failure") else example_record()
    message = problems(without(record, dotted))
    block, field = dotted.split(".")
    assert f"$.{block}" in message
    assert repr(field) in message


@pytest.mark.parametrize("block", [*FIXED_BLOCKS, "failure", None])
def test_extra_keys_in_fixed_blocks_are_rejected(block: str | None) -> None:
    record = example_record(status="failed" if block == "failure" else "finished")
    target = record if block is None else record[block]
    target["surprise"] = 1
    message = problems(record)
    assert "surprise" in message
    assert ("$:" if block is None else f"$.{block}:") in message


@pytest.mark.parametrize(
    "dotted",
    [
        "code.pd4ml_version",
        "code.git_revision",
        "code.python",
        "code.torch",
        "code.numpy",
        "hardware.cpu",
        "hardware.hostname",
        "hardware.platform",
        "hardware.gpu",
        "dataset.version",
        "dataset.display_name",
        "dataset.doi",
        "dataset.archive",
        "model.architecture",
        "cell.profile",
        "synthetic_notice",
    ],
)
def test_empty_provenance_strings_are_rejected(dotted: str) -> None:
    record = example_record(synthetic=False) if dotted == "dataset.doi" else example_record()
    assert f"$.{dotted}" in problems(changed(record, dotted, ""))


@pytest.mark.parametrize(
    ("dotted", "value"),
    [
        ("schema", "pd4ml-bench-record/2"),
        ("status", "skipped"),
        ("cell.key", "0123456789ABCDEF"),
        ("cell.key", "0123"),
        ("cell.seed", -1),
        ("cell.source", "mirror"),
        ("cell.dataset", "../etc"),
        ("dataset.source", "shared+"),
        ("dataset.source", "ftp"),
        ("dataset.files", {}),
        ("dataset.files", {"train.h5": "crc32:00ff"}),
        ("dataset.n_train", 1.5),
        ("model.kind", "custom"),
        ("model.parameters", 0),
        ("hardware.cores", 0),
        ("hardware.threads", True),
        ("timing.train_seconds", -0.1),
        ("timing.started_at", "2024-05-01 12:00:00"),
        ("timing.finished_at", "2024-05-01T14:00:00+02:00"),
        ("memory.peak_rss_bytes", -1),
        ("task", "generation"),
        ("history.0.epoch", -1),
        ("history.0.learning_rate", "fast"),
        ("lr_finder", {"learning_rates": [1e-3], "smoothed": [0.5]}),
    ],
)
def test_out_of_range_values_are_rejected(dotted: str, value: Any) -> None:
    path = "$." + dotted.replace(".0.", "[0].")
    assert path in problems(changed(example_record(), dotted, value))


def test_the_message_lists_the_first_problems_and_counts_the_rest() -> None:
    record = example_record()
    for field in ("pd4ml_version", "git_revision", "python", "torch", "numpy"):
        record["code"][field] = ""
    record["hardware"]["cpu"] = ""
    record["hardware"]["hostname"] = ""
    message = problems(record, where="run/results/top_tagging/fcn/seed-0.json")
    assert message.startswith("run/results/top_tagging/fcn/seed-0.json is not a valid")
    assert "7 problem(s)" in message
    assert "... and 2 more" in message
    assert "rerun the cell" in message


def test_a_record_must_be_an_object() -> None:
    assert "JSON object" in problems([1, 2])


def test_synthetic_data_requires_the_notice() -> None:
    message = problems(without(example_record(synthetic=True), "synthetic_notice"))
    assert "$.synthetic_notice" in message
    assert SYNTHETIC_NOTICE in message
    assert "$.synthetic_notice" in problems(
        example_record(synthetic=False, synthetic_notice=SYNTHETIC_NOTICE)
    )


def test_a_null_doi_is_allowed_and_the_archive_says_where_the_data_live() -> None:
    """Versions published without a DOI (the original pd4ml files on a plain URL) are real
    data too: their DOI is null, and ``archive`` names where they are."""
    validate_record(changed(example_record(synthetic=True), "dataset.doi", None))
    validate_record(changed(example_record(synthetic=False), "dataset.doi", None))
    record = example_record(synthetic=False)
    del record["dataset"]["archive"]
    assert "archive" in problems(record)


def test_an_unfetched_file_without_a_pinned_checksum_is_unknown_with_a_reason() -> None:
    failed = example_record(status="failed")
    validate_record(changed(failed, "dataset.files", {"a.root": "unknown (not fetched)"}))
    assert "$.dataset.files" in problems(changed(failed, "dataset.files", {"a.root": "unknown"}))


def test_failed_records_carry_a_failure_block_and_only_they_do() -> None:
    assert "$.failure" in problems(example_record(status="failed", failure=None))
    failure = example_record(status="failed")["failure"]
    assert "$.failure" in problems(example_record(status="finished", failure=failure))


def test_the_seed_equals_the_cell_seed() -> None:
    assert "$.seed" in problems(changed(example_record(seed=1), "seed", 2))


@pytest.mark.parametrize(
    ("arguments", "metric"),
    [
        ({}, "auc"),
        ({"task": "regression", "dataset": "calice_ahcal"}, "resolution_68"),
        ({"dataset": "higgsml"}, "ams"),
    ],
)
def test_finished_records_carry_their_task_metrics(arguments: dict[str, Any], metric: str) -> None:
    record = example_record(**arguments)
    del record["metrics"][metric]
    assert metric in problems(record)
    validate_record(example_record(status="failed", **arguments))  # failed: {} is fine


@pytest.mark.parametrize(
    ("task", "dotted", "value"),
    [
        ("classification", "curves.roc.true_positive_rate", [0.0, 1.0]),
        ("regression", "curves.residuals.counts", [1.0] * 51),
        ("regression", "curves.resolution_vs_truth.bias", [0.0]),
    ],
)
def test_curve_arrays_have_matching_lengths(task: str, dotted: str, value: Any) -> None:
    record = example_record(task=task, dataset="calice_ahcal")
    entry = dotted.rsplit(".", 1)[0]
    assert f"$.{entry}" in problems(changed(record, dotted, value))


def test_curves_have_at_most_201_points() -> None:
    record = example_record()
    record["curves"]["roc"] = {
        "false_positive_rate": [0.0] * 202,
        "true_positive_rate": [0.0] * 202,
    }
    assert "$.curves.roc.false_positive_rate" in problems(record)
    record["curves"]["roc"] = {
        "false_positive_rate": [0.0] * 201,
        "true_positive_rate": [0.0] * 201,
    }
    validate_record(record)


def test_a_missing_jsonschema_is_a_clear_bench_error(monkeypatch: pytest.MonkeyPatch) -> None:
    records._validator.cache_clear()
    monkeypatch.setitem(sys.modules, "jsonschema", None)
    try:
        with pytest.raises(BenchError, match=r"pip install 'pd4ml-hep\[bench\]'"):
            validate_record(example_record())
    finally:
        records._validator.cache_clear()


# -- metric encoding ----------------------------------------------------------------------------


def test_metric_value_and_metric_float_encode_non_finite_numbers() -> None:
    assert metric_value(math.inf) == "inf"
    assert metric_value(-math.inf) == "-inf"
    assert metric_value(math.nan) is None
    assert metric_value(np.float32(0.25)) == 0.25
    assert metric_float("inf") == math.inf
    assert metric_float("-inf") == -math.inf
    assert math.isnan(metric_float(None))
    assert metric_float(3) == 3.0
    for bad in ("Infinity", "0.5", True):
        with pytest.raises(RecordError, match="not a number"):
            metric_float(bad)


# -- writing and reading ------------------------------------------------------------------------


def test_write_creates_the_directories_and_reads_back(tmp_path: Path) -> None:
    path = record_path(tmp_path / "run", "top_tagging", "fcn", 3)
    assert path == tmp_path / "run" / "results" / "top_tagging" / "fcn" / "seed-3.json"
    record = example_record(seed=3)
    assert write_record(path, record) == path
    assert read_record(path) == record
    assert [entry.name for entry in path.parent.iterdir()] == ["seed-3.json"]  # no temp left


def test_infinities_and_nan_round_trip_as_strict_json(tmp_path: Path) -> None:
    record = example_record()
    record["metrics"].update(rejection_30=math.inf, rejection_50=-math.inf, bce=math.nan)
    record["history"][1]["val_loss"] = np.float64(math.inf)
    record["metrics"]["auc"] = np.float32(0.5)
    record["model"]["parameters"] = np.int64(12)
    path = write_record(tmp_path / "seed-0.json", record)
    text = path.read_text()
    assert "Infinity" not in text
    assert "NaN" not in text
    json.loads(text, parse_constant=lambda name: pytest.fail(f"bare {name} in the file"))
    back = read_record(path)
    assert back["metrics"]["rejection_30"] == "inf"
    assert back["metrics"]["rejection_50"] == "-inf"
    assert back["metrics"]["bce"] is None
    assert back["history"][1]["val_loss"] == "inf"
    assert back["model"]["parameters"] == 12
    assert metric_float(back["metrics"]["rejection_30"]) == math.inf
    assert metric_float(back["metrics"]["rejection_50"]) == -math.inf
    assert math.isnan(metric_float(back["metrics"]["bce"]))
    assert metric_float(back["metrics"]["auc"]) == 0.5


def test_validation_sees_numpy_tuples_and_infinities_as_they_will_be_written() -> None:
    record = example_record()
    record["metrics"]["rejection_30"] = math.inf
    record["metrics"]["auc"] = np.float32(0.9)
    record["model"]["parameters"] = np.int64(12)
    record["dataset"]["test_splits"] = ("test",)
    record["curves"]["roc"]["true_positive_rate"] = np.linspace(0, 1, 101)
    validate_record(record)


def test_write_syncs_the_file_and_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(descriptor: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        real_fsync(descriptor)

    if not Path("/proc/self/fd").is_dir():
        pytest.skip("no /proc/self/fd")
    monkeypatch.setattr(os, "fsync", fsync)
    path = write_record(tmp_path / "out" / "seed-0.json", example_record())
    assert len(synced) == 2
    assert Path(synced[0]).name.startswith(".seed-0.json.")  # the temporary, before the rename
    assert Path(synced[1]) == path.parent


def test_an_infinite_curve_point_is_rejected_before_writing(tmp_path: Path) -> None:
    record = example_record()
    record["curves"]["roc"]["true_positive_rate"][3] = math.inf
    with pytest.raises(RecordError, match=r"\$\.curves\.roc\.true_positive_rate\[3\]"):
        write_record(tmp_path / "seed-0.json", record)


def test_an_invalid_record_writes_nothing(tmp_path: Path) -> None:
    path = write_record(tmp_path / "results" / "seed-0.json", example_record())
    old = path.read_bytes()
    with pytest.raises(RecordError, match=r"seed-0\.json"):
        write_record(path, example_record(status="failed", failure=None))
    assert path.read_bytes() == old
    assert sorted(entry.name for entry in path.parent.iterdir()) == ["seed-0.json"]
    fresh = tmp_path / "elsewhere" / "seed-0.json"
    with pytest.raises(RecordError):
        write_record(fresh, without(example_record(), "code"))
    assert not fresh.parent.exists()


_KILLED_WRITER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from pd4ml.bench.records import write_record
    from tests.bench_examples import example_record

    def stalled_replace(source, destination):
        part = sys.argv[3] + ".part"
        Path(part).write_text(str(source))
        os.rename(part, sys.argv[3])  # the marker appears complete
        time.sleep(120)

    os.replace = stalled_replace
    write_record(Path(sys.argv[2]), example_record(model="fcn", seed=0, metrics={
        "accuracy": 0.1, "auc": 0.1, "rejection_30": 1.0, "rejection_50": 1.0, "bce": 9.0}))
    """
)


def test_a_writer_killed_before_the_rename_leaves_the_old_record(tmp_path: Path) -> None:
    path = write_record(record_path(tmp_path, "top_tagging", "fcn", 0), example_record())
    old = path.read_bytes()
    marker = tmp_path / "replace-called"
    writer = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(ROOT), str(path), str(marker)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert writer.poll() is None, "the writer exited before reaching os.replace"
            assert time.monotonic() < deadline, "the writer never reached os.replace"
            time.sleep(0.05)
        temporary = Path(marker.read_text())
        assert temporary.parent == path.parent
        assert temporary.name.startswith(".seed-0.json.")
        assert temporary.name.endswith(".tmp")
        assert json.loads(temporary.read_text())["metrics"]["bce"] == 9.0  # complete, fsynced
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    assert writer.returncode == -signal.SIGKILL
    assert temporary.exists()  # the killed writer could not clean up
    assert path.read_bytes() == old
    assert [(found, record["metrics"]["bce"]) for found, record in iter_records([tmp_path])] == [
        (path, example_record()["metrics"]["bce"])
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"schema": "pd4ml-bench-record/1", "status": "fin', "is truncated"),
        ("", "is truncated"),
        ("{not json}", "is not valid JSON"),
        ('{"metrics": {"auc": NaN}}', "bare NaN"),
    ],
)
def test_read_rejects_broken_files(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "seed-0.json"
    path.write_text(text)
    with pytest.raises(RecordError, match=expected) as caught:
        read_record(path)
    assert str(path) in str(caught.value)


def test_read_rejects_a_truncated_record(tmp_path: Path) -> None:
    path = write_record(tmp_path / "seed-0.json", example_record())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(RecordError, match="is truncated") as caught:
        read_record(path)
    assert str(path) in str(caught.value)


def test_read_rejects_a_missing_file_and_a_schema_violation(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match="no such benchmark record") as caught:
        read_record(tmp_path / "seed-9.json")
    assert "seed-9.json" in str(caught.value)
    path = tmp_path / "seed-0.json"
    path.write_text(json.dumps(without(example_record(), "hardware")))
    with pytest.raises(RecordError, match="'hardware' is a required property") as caught:
        read_record(path)
    assert str(path) in str(caught.value)


def test_record_path_rejects_names_that_are_not_directory_names(tmp_path: Path) -> None:
    for dataset, model, seed in [("../x", "fcn", 0), ("top", "a/b", 0), ("top", ".hidden", 0)]:
        with pytest.raises(RecordError, match="directory name"):
            record_path(tmp_path, dataset, model, seed)
    with pytest.raises(RecordError, match="seed"):
        record_path(tmp_path, "top_tagging", "fcn", -1)


# -- iterating over a run -----------------------------------------------------------------------


def run_directory(tmp_path: Path) -> tuple[Path, list[Path]]:
    """A run with two datasets, superseded records and a temp file."""
    out = tmp_path / "run"
    paths = []
    for dataset, model, seed in [
        ("top_tagging", "fcn", 1),
        ("top_tagging", "fcn", 0),
        ("top_tagging", "dnn", 0),
        ("higgsml", "fcn", 0),
    ]:
        record = example_record(dataset=dataset, model=model, seed=seed)
        paths.append(write_record(record_path(out, dataset, model, seed), record))
    superseded = out / "results" / "top_tagging" / "fcn" / "superseded" / "seed-0.json"
    superseded.parent.mkdir()
    superseded.write_text("{broken")  # never read
    (out / "results" / "higgsml" / "fcn" / ".seed-1.json.abc123.tmp").write_text("{")
    (out / "results" / "higgsml" / "fcn" / "notes.json").write_text("{")
    (out / "LEADERBOARD.md").write_text("# table\n")
    return out, sorted(paths)


def test_iter_records_finds_every_record_of_a_run_in_sorted_order(tmp_path: Path) -> None:
    out, paths = run_directory(tmp_path)
    found = list(iter_records([out]))
    assert [path for path, _ in found] == paths
    assert [(r["cell"]["dataset"], r["cell"]["model"], r["seed"]) for _, r in found] == [
        ("higgsml", "fcn", 0),
        ("top_tagging", "dnn", 0),
        ("top_tagging", "fcn", 0),
        ("top_tagging", "fcn", 1),
    ]
    assert [path for path, _ in iter_records([out / "results"])] == paths
    top = [path for path, _ in iter_records([out / "results" / "top_tagging"])]
    assert top == paths[1:]


def test_iter_records_reads_several_directories_once_each(tmp_path: Path) -> None:
    out, paths = run_directory(tmp_path)
    other = tmp_path / "other"
    extra = write_record(record_path(other, "smartbkg", "fcn", 0), example_record("smartbkg"))
    found = [path for path, _ in iter_records([other, out, out / "results"])]
    assert found == [extra, *paths]


def test_iter_records_of_an_empty_directory_yields_nothing(tmp_path: Path) -> None:
    assert list(iter_records([tmp_path])) == []


def test_iter_records_of_a_missing_directory_is_a_bench_error(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="does not exist") as caught:
        list(iter_records([tmp_path / "nowhere"]))
    assert "nowhere" in str(caught.value)


def test_iter_records_raises_for_an_invalid_record(tmp_path: Path) -> None:
    out, _ = run_directory(tmp_path)
    bad = out / "results" / "top_tagging" / "fcn" / "seed-7.json"
    bad.write_text(json.dumps(without(example_record(seed=7), "timing")))
    with pytest.raises(RecordError, match=r"seed-7\.json"):
        list(iter_records([out]))
