"""Benchmark records: one validated JSON file per (dataset, model, seed) cell.

A run directory holds ``results/<dataset>/<model>/seed-<n>.json``; each file follows the packaged
JSON Schema ``record.schema.json`` (``$id`` :data:`SCHEMA_ID`) plus the cross-field rules of
:func:`validate_record`. Files are written atomically (a dot-named ``.tmp`` file in the same
directory, fsynced, then renamed over the target), so a reader never sees half a record and a
killed writer leaves the previous record in place::

    path = write_record(record_path(out, "top_tagging", "fcn", 0), record)
    for path, record in iter_records([out]):
        ...

The files are strict JSON: an infinite metric is stored as ``"inf"`` / ``"-inf"`` and NaN as
``null`` (:func:`metric_value`, read back with :func:`metric_float`).
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import logging
import math
import os
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pd4ml.bench.errors import BenchError
from pd4ml.errors import Pd4mlError

logger = logging.getLogger("pd4ml")

SCHEMA_ID = "pd4ml-bench-record/1"

#: The text of ``synthetic_notice`` in every record computed on synthetic data.
SYNTHETIC_NOTICE = "SYNTHETIC data: these numbers are not physics results"

#: Metrics a finished record of each task must carry.
REQUIRED_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy", "auc", "rejection_30", "rejection_50", "bce"),
    "regression": ("mse", "mae", "bias", "resolution", "resolution_68"),
}
#: Extra metrics a finished record of a dataset must carry.
DATASET_METRICS: dict[str, tuple[str, ...]] = {"higgsml": ("ams", "ams_public", "ams_threshold")}

#: Curve entries whose arrays must all have the same length.
_EQUAL_LENGTH_CURVES: dict[str, tuple[str, ...]] = {
    "roc": ("false_positive_rate", "true_positive_rate"),
    "resolution_vs_truth": ("centres", "bias", "resolution", "counts"),
    "energy_resolution": ("centres", "sigma_over_e", "counts"),
}
#: Problems listed in a RecordError message before "... and N more".
_SHOWN_PROBLEMS = 5
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_REMEDY = "rerun the cell to rewrite the record, or move the file out of the results directory"


class RecordError(Pd4mlError, ValueError):
    """An invalid benchmark record: the message names the file (or ``where``) and the JSON path
    of each problem."""


def _load_schema() -> dict[str, Any]:
    text = (
        importlib.resources.files("pd4ml.bench").joinpath("record.schema.json").read_text("utf-8")
    )
    schema: dict[str, Any] = json.loads(text)
    return schema


#: The JSON Schema (draft 2020-12) of a record, loaded from the packaged ``record.schema.json``.
RECORD_SCHEMA: dict[str, Any] = _load_schema()


@functools.cache
def _validator() -> Any:
    try:
        from jsonschema import Draft202012Validator
    except ImportError as error:  # an optional dependency (the "bench" extra)
        raise BenchError(
            "validating benchmark records needs jsonschema: pip install 'pd4ml-hep[bench]'"
        ) from error
    return Draft202012Validator(RECORD_SCHEMA)


def metric_value(x: float) -> float | str | None:
    """The strict-JSON form of a metric: ``"inf"`` / ``"-inf"`` for infinities, ``None`` for
    NaN, otherwise the float."""
    value = float(x)
    if math.isnan(value):
        return None
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def metric_float(v: float | str | None) -> float:
    """The float of a stored metric (the inverse of :func:`metric_value`): ``"inf"`` → ``inf``,
    ``"-inf"`` → ``-inf``, ``None`` → ``nan``."""
    if v is None:
        return math.nan
    if isinstance(v, str):
        if v in ("inf", "-inf"):
            return float(v)
        raise RecordError(f"metric value {v!r} is not a number, 'inf', '-inf' or null")
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise RecordError(f"metric value {v!r} is not a number, 'inf', '-inf' or null")
    return float(v)


def _plain(value: Any) -> Any:
    """``value`` as plain JSON types: mappings → dicts, tuples → lists, NumPy scalars → Python
    scalars, non-finite floats → their :func:`metric_value` encoding."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, np.ndarray):
        return [_plain(item) for item in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return metric_value(value)
    return value


def _json_path(parts: Sequence[Any]) -> str:
    path = "$"
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _cross_field_problems(record: Mapping[str, Any]) -> list[str]:
    """The rules the schema cannot express, on a record that passed the schema."""
    problems = []
    synthetic = record["dataset"]["synthetic"]
    if synthetic and "synthetic_notice" not in record:
        problems.append(
            f"$.synthetic_notice: required when dataset.synthetic is true ({SYNTHETIC_NOTICE!r})"
        )
    if not synthetic and "synthetic_notice" in record:
        problems.append("$.synthetic_notice: must be absent when dataset.synthetic is false")
    failed = record["status"] == "failed"
    if failed and record["failure"] is None:
        problems.append("$.failure: a failed record must say why (type, message, traceback)")
    if not failed and record["failure"] is not None:
        problems.append("$.failure: must be null when status is 'finished'")
    if record["seed"] != record["cell"]["seed"]:
        problems.append(f"$.seed: {record['seed']} differs from cell.seed {record['cell']['seed']}")
    if (record["cell"]["source"] == "demo" or record["dataset"]["source"] == "synthetic") and (
        not synthetic
    ):
        problems.append("$.dataset.synthetic: must be true for demo or synthetic-source data")
    if not failed and "predictions" not in record:
        problems.append("$.predictions: a finished record names its saved test predictions")
    if not failed and record["model"]["parameters"] < 1:
        problems.append("$.model.parameters: a finished record's model has parameters (≥ 1)")
    if not failed:
        required = REQUIRED_METRICS[record["task"]] + DATASET_METRICS.get(
            record["cell"]["dataset"], ()
        )
        missing = [name for name in required if name not in record["metrics"]]
        if missing:
            problems.append(
                f"$.metrics: a finished {record['task']} record lacks {', '.join(missing)}"
            )
    curves = record["curves"]
    for name, keys in _EQUAL_LENGTH_CURVES.items():
        if name in curves:
            lengths = {key: len(curves[name][key]) for key in keys}
            if len(set(lengths.values())) > 1:
                problems.append(f"$.curves.{name}: arrays of different lengths {lengths}")
    if "residuals" in curves:
        edges, counts = len(curves["residuals"]["edges"]), len(curves["residuals"]["counts"])
        if edges != counts + 1:
            problems.append(
                f"$.curves.residuals: {edges} edges for {counts} counts (need counts + 1)"
            )
    return problems


def validate_record(record: Mapping[str, Any], where: str = "record") -> None:
    """Check ``record`` against :data:`RECORD_SCHEMA` and the cross-field rules: synthetic data
    carries ``synthetic_notice`` (and only then), ``failure`` is non-null exactly when
    ``status == "failed"``, ``seed == cell.seed``, a finished record's model has parameters and
    its task's metrics, and curve arrays have matching lengths.

    NumPy scalars and arrays, tuples and non-finite floats are checked in the form
    :func:`write_record` stores them (plain JSON, :func:`metric_value`). Raises
    :class:`RecordError` naming ``where`` (a file name) and the JSON path of the first few
    problems.
    """
    if not isinstance(record, Mapping):
        raise RecordError(
            f"{where}: a benchmark record is a JSON object, not {type(record).__name__}"
        )
    document = _plain(record)
    errors = sorted(_validator().iter_errors(document), key=lambda error: list(error.absolute_path))
    problems = [f"{_json_path(list(error.absolute_path))}: {error.message}" for error in errors]
    if not problems:
        problems = _cross_field_problems(document)
    if problems:
        shown = "\n  ".join(problems[:_SHOWN_PROBLEMS])
        more = len(problems) - _SHOWN_PROBLEMS
        tail = f"\n  ... and {more} more" if more > 0 else ""
        raise RecordError(
            f"{where} is not a valid benchmark record ({SCHEMA_ID}); {len(problems)} "
            f"problem(s):\n  {shown}{tail}\n({_REMEDY})"
        )


def record_path(out: Path, dataset: str, model: str, seed: int) -> Path:
    """``out/results/<dataset>/<model>/seed-<seed>.json``; ``dataset`` and ``model`` must be
    plain names (no path separators, not starting with ".")."""
    for label, name in (("dataset", dataset), ("model", model)):
        if not _SAFE_NAME.match(name):
            raise RecordError(
                f"{label} name {name!r} cannot be a directory name: use letters, digits, "
                "'_', '-' and '.', starting with a letter or digit"
            )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise RecordError(f"seed {seed!r} must be an integer >= 0")
    return Path(out) / "results" / dataset / model / f"seed-{seed}.json"


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be synced)."""
    if os.name != "posix":  # directories cannot be opened for fsync on Windows
        return
    try:
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    except OSError as error:  # some network file systems refuse it; the file is in place
        logger.debug("cannot fsync directory %s: %s", directory, error)


def write_record(path: Path, record: Mapping[str, Any]) -> Path:
    """Validate ``record`` and write it to ``path`` atomically; returns ``path``.

    NumPy scalars and arrays become plain JSON, and non-finite floats their
    :func:`metric_value` encoding, before validation. Nothing is written when the record is
    invalid (:class:`RecordError`). The text goes to a temporary file in the same directory
    (``.<name>.<random>.tmp``, ignored by readers), is flushed and fsynced, renamed over
    ``path`` with ``os.replace`` and the directory is fsynced: a crash leaves either the old
    file or the new one. Parent directories are created.
    """
    path = Path(path)
    document = _plain(record)
    validate_record(document, where=str(path))
    text = json.dumps(document, indent=2, allow_nan=False, ensure_ascii=False) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)
    return path


def _reject_constant(name: str) -> Any:
    raise ValueError(f"bare {name} is not strict JSON (write 'inf', '-inf' or null)")


def read_record(path: Path) -> dict[str, Any]:
    """The record in ``path``, parsed and validated.

    Raises :class:`RecordError` naming the file when it is missing or unreadable, truncated,
    not strict JSON (bare ``NaN`` / ``Infinity``) or not a valid record.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecordError(f"{path}: no such benchmark record") from None
    except (OSError, UnicodeDecodeError) as error:
        raise RecordError(f"{path}: cannot read the benchmark record ({error})") from error
    try:
        record = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        # a string running to the end of the text, or an error at its very end: cut short
        truncated = error.msg.startswith("Unterminated string") or error.pos >= len(text.rstrip())
        what = "is truncated" if truncated else "is not valid JSON"
        raise RecordError(
            f"{path} {what} (line {error.lineno}, column {error.colno}: {error.msg}; "
            f"{len(text.encode())} bytes); {_REMEDY}"
        ) from None
    except ValueError as error:
        raise RecordError(f"{path}: {error}; {_REMEDY}") from None
    validate_record(record, where=str(path))
    result: dict[str, Any] = record
    return result


def _record_files(directory: Path) -> list[Path]:
    """The record files under one directory given to :func:`iter_records`, sorted."""
    if directory.is_file():
        return [directory]
    root = directory / "results" if (directory / "results").is_dir() else directory
    found = []
    for path in root.rglob("seed-*.json"):
        parts = path.relative_to(root).parts
        if "superseded" in parts or any(part.startswith(".") for part in parts):
            continue
        if path.is_file():
            found.append(path)
    return sorted(found)


def iter_records(directories: Sequence[Path]) -> Iterator[tuple[Path, dict[str, Any]]]:
    """``(path, record)`` for every ``seed-*.json`` record under each directory, in the order
    given and sorted within each; a file reached twice is yielded once.

    A directory may be a run directory (the one holding ``results/``), ``results/`` itself or
    any directory below it (a dataset's or a model's); a record file may also be given
    directly. ``superseded/`` directories and dot-named (temporary) files are skipped; an empty
    directory yields nothing. Raises :class:`~pd4ml.bench.errors.BenchError` for a path that
    does not exist and :class:`RecordError` for an invalid record.
    """
    if isinstance(directories, (str, os.PathLike)):
        directories = [Path(directories)]
    seen: set[Path] = set()
    for directory in map(Path, directories):
        if not directory.exists():
            raise BenchError(
                f"results directory {directory} does not exist: give the --out directory of a "
                "benchmark run (the one holding results/)"
            )
        for path in _record_files(directory):
            resolved = path.resolve()
            if resolved in seen:
                continue
            seen.add(resolved)
            yield path, read_record(path)
