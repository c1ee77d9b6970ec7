"""One benchmark cell: a (dataset, model, seed) trained and scored into one JSON record.

:func:`run_cell` prepares the dataset (its pinned version), trains the model with
:func:`pd4ml.train.fit`, predicts the test split(s) (with the recipe's test-time augmentation
and ensemble), computes every metric of the task and writes
``results/<dataset>/<model>/seed-<n>.json`` atomically, validated against the record schema.
A failing cell writes a record with ``status: "failed"`` and its traceback instead, and
returns; it never stops the cells after it.

A :class:`Cell` is a small picklable value, so Dask workers run :func:`run_cell` exactly as the
local executor does.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pd4ml.bench.errors import BenchError
from pd4ml.bench.models import BenchModel, Setup, bench_model, config_json
from pd4ml.bench.provenance import MemorySampler, code_version, hardware, utc_now
from pd4ml.bench.records import (
    SCHEMA_ID,
    RecordError,
    metric_value,
    read_record,
    record_path,
    write_record,
)
from pd4ml.config import RetryPolicy, Settings
from pd4ml.datasets.base import Dataset, PreparedData
from pd4ml.datasets.registry import get as get_dataset
from pd4ml.manifest import DatasetVersion
from pd4ml.testing.served import SYNTHETIC, ServedFiles

log = logging.getLogger("pd4ml")

#: What every synthetic record, table and page says at the top.
SYNTHETIC_NOTICE = "SYNTHETIC data: these numbers are not physics results"
#: The units of each regression dataset's target (and of its predictions and metrics).
TARGET_UNITS = {"airshower": "g/cm²", "calice_ahcal": "GeV", "ild_photon_showers": "GeV"}
#: Datasets whose regression target is an energy: their records carry σ(E)/E in energy bins.
CALORIMETERS = ("calice_ahcal", "ild_photon_showers")
#: The generator seed of the demo's synthetic files (the cells' seeds vary the training only).
DEMO_FILE_SEED = 0
_CURVE_POINTS = 201


@dataclass(frozen=True)
class Cell:
    """One (dataset, model, seed) of a run.

    Attributes:
        dataset: dataset name (``top_tagging``).
        model: bench model name (``fcn``).
        seed: the training seed (``Recipe.seed``).
        profile: ``quick`` or ``paper``.
        source: ``archive`` (the real files, fetched as configured) or ``demo`` (synthetic
            files served by the loopback archive server).
        out: the run's output directory (records go to ``out/results/…``).
        key: 16 hex characters identifying the configuration (everything but the seed and
            the thread count): dataset version and preparation, model and its configuration,
            recipe, profile, source and code version (the pd4ml version and the digest of its
            source files). A record with another key is stale.
        threads: torch threads of the cell.
        data_dir: the dataset cache directory (None: ``PD4ML_DATA_DIR`` or the default).
        served: the demo's served files (demo cells only; set when the run starts).
        demo_events: the demo's (train, test) events written per dataset.
        setup: the model's configuration, recipe and data parameters, fixed when the run is
            planned (so a worker runs exactly the configuration the key describes).
        architecture: the :mod:`pd4ml.models` architecture the cell builds.
        kind: ``shared`` or ``reference``.
        source_digest: the pd4ml source digest the run was planned with (in the key); a worker
            running other pd4ml code fails the cell instead of writing under that key.
    """

    dataset: str
    model: str
    seed: int
    profile: str
    source: Literal["archive", "demo"]
    out: str
    key: str
    threads: int = 1
    data_dir: str | None = None
    served: ServedFiles | None = None
    demo_events: tuple[int, int] | None = None
    setup: Setup | None = None
    architecture: str = ""
    kind: Literal["shared", "reference"] = "shared"
    source_digest: str = ""

    @property
    def path(self) -> Path:
        """Where the cell's record is written."""
        return record_path(Path(self.out), self.dataset, self.model, self.seed)

    @property
    def label(self) -> str:
        """``dataset/model/seed-n``."""
        return f"{self.dataset}/{self.model}/seed-{self.seed}"


@dataclass(frozen=True)
class CellOutcome:
    """What running (or skipping) a cell gave.

    Attributes:
        cell: the cell.
        status: ``finished``, ``failed`` or ``skipped`` (a valid record with the same key
            exists already).
        path: the record's path.
        seconds: wall time of the cell (0 when skipped).
        message: the first line of the error (failed cells), else empty.
    """

    cell: Cell
    status: Literal["finished", "failed", "skipped"]
    path: str
    seconds: float = 0.0
    message: str = ""


# -- the configuration key --------------------------------------------------------------------
def dataset_class(cell: Cell) -> type[Dataset]:
    """The dataset class a cell loads: the registered one, or the demo's served copy."""
    if cell.source == "demo":
        if cell.served is None:
            raise BenchError(f"{cell.label}: a demo cell needs its served files")
        return cell.served.dataset()
    return get_dataset(cell.dataset)


def dataset_version(cell: Cell) -> str:
    """The name of the dataset version the cell uses (demo: the synthetic layout it copies)."""
    if cell.source == "demo":
        template = (
            get_dataset(cell.dataset).manifest().version(SYNTHETIC[cell.dataset].template_version)
        )
        return f"synthetic-{template.name}"
    return get_dataset(cell.dataset).manifest().version().name


def configuration_key(
    dataset: str,
    model: BenchModel,
    profile: str,
    source: str,
    demo_events: tuple[int, int] | None,
    version: str,
) -> str:
    """The 16-hex-character key of a configuration (seed and threads excluded)."""
    setup = model.setup(dataset, profile)
    cls = get_dataset(dataset)
    code = code_version()
    recipe = setup.recipe.to_json()
    for ignored in ("seed", "threads", "device"):
        recipe.pop(ignored, None)
    identity = {
        "schema": SCHEMA_ID,
        "dataset": dataset,
        "version": version,
        "converter_version": cls.converter_version,
        "prepare_version": cls.prepare_version,
        "load_params": dict(setup.load_params),
        "max_train_events": setup.max_train_events,
        "max_test_events": setup.max_test_events,
        "model": model.name,
        "architecture": model.architecture,
        "config": config_json(setup.config),
        "recipe": recipe,
        "profile": profile,
        "source": source,
        "demo_events": list(demo_events) if demo_events else None,
        "demo_file_seed": DEMO_FILE_SEED if source == "demo" else None,
        "pd4ml_version": code["pd4ml_version"],
        "source_digest": code["source_digest"],
    }
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def finished_record(cell: Cell) -> bool:
    """Whether ``cell`` has a valid finished record with its key (then it is not rerun)."""
    if not cell.path.is_file():
        return False
    try:
        record = read_record(cell.path)
    except Exception as error:  # a damaged record is recomputed, never trusted
        log.warning("%s: unreadable record %s (%s); recomputing it", cell.label, cell.path, error)
        return False
    if record["status"] != "finished" or record["cell"]["key"] != cell.key:
        return False
    saved = record.get("predictions")
    if not saved or not cell.path.with_name(saved["file"]).is_file():
        log.warning("%s: the record's predictions file is missing; recomputing it", cell.label)
        return False
    predictions = cell.path.with_name(saved["file"])
    if hashlib.sha256(predictions.read_bytes()).hexdigest() != saved["sha256"]:
        log.warning("%s: %s does not match its record; recomputing", cell.label, predictions)
        return False
    return True


def _supersede(cell: Cell) -> None:
    """Move a record of another configuration aside (kept, never read again)."""
    path = cell.path
    if not path.is_file():
        return
    try:
        old_key = json.loads(path.read_text())["cell"]["key"]
    except Exception:
        old_key = "unreadable"
    if old_key == cell.key:
        return
    target = path.parent / "superseded" / f"{path.stem}-{old_key}-{int(time.time())}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    path.replace(target)
    predictions = predictions_path(cell)
    if predictions.is_file():
        predictions.replace(target.with_name(f"{target.stem}.predictions.npy"))
    log.info("%s: the configuration changed; the old record moved to %s", cell.label, target)


# -- running ----------------------------------------------------------------------------------
def settings_for(cell: Cell) -> Settings:
    """The cache settings of a cell (the demo's: its own cache, no mirrors or shared layers)."""
    settings = Settings.from_env(cell.data_dir).with_changes(progress="off")
    if cell.source == "demo":
        settings = settings.with_changes(
            mirrors=(),
            shared_dirs=(),
            offline=False,
            retry=RetryPolicy(max_attempts=4, backoff_initial=0.05, backoff_max=0.5),
        )
    return settings


def test_splits(cls: type[Dataset]) -> tuple[str, ...]:
    """The splits a cell scores: ``test``, or HiggsML's two official test sets."""
    if "test" in cls.splits:
        return ("test",)
    return tuple(split for split in cls.splits if split.endswith("test"))


@dataclass
class _Prepared:
    cls: type[Dataset]
    train: PreparedData
    val: PreparedData
    tests: dict[str, PreparedData]
    seconds: float


def _prepare(cell: Cell, setup: Setup) -> _Prepared:
    started = time.perf_counter()
    cls = dataset_class(cell)
    settings = settings_for(cell)
    params = dict(setup.load_params)
    graph = bool(params.pop("graph", False))

    def load(split: str, limit: int | None) -> PreparedData:
        return cls.load_data(split, graph=graph, settings=settings, max_events=limit, **params)

    train = load("train", setup.max_train_events)
    val = load("val", setup.max_train_events)
    tests = {split: load(split, setup.max_test_events) for split in test_splits(cls)}
    return _Prepared(cls, train, val, tests, time.perf_counter() - started)


class _DemoNotices(logging.Filter):
    """Drops the data layer's per-load "is SYNTHETIC test data" warnings in a demo cell: the
    run says it once at the top, and every record, table and page carries the notice."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "is SYNTHETIC test data" not in record.getMessage()


def run_cell(cell: Cell) -> CellOutcome:
    """Run one cell and write its record (finished or failed); never raises for a failure
    inside the cell (``KeyboardInterrupt`` and ``SystemExit`` propagate, writing nothing)."""
    data_log = logging.getLogger("pd4ml.datasets")
    notices = _DemoNotices()
    if cell.source == "demo":
        data_log.addFilter(notices)
    try:
        return _run_cell(cell)
    finally:
        data_log.removeFilter(notices)


def _run_cell(cell: Cell) -> CellOutcome:
    started_at = utc_now()
    started = time.perf_counter()
    sampler = MemorySampler()
    record: dict[str, Any]
    status: Literal["finished", "failed"]
    with sampler:
        try:
            record = _train_and_score(cell)
            status = "finished"
            message = ""
        except Exception as error:
            status = "failed"
            message = f"{type(error).__name__}: {error}".splitlines()[0]
            log.error("%s failed: %s", cell.label, message)
            record = _failed_parts(cell, error)
    seconds = time.perf_counter() - started
    record["status"] = status
    record.setdefault("timing", {})
    record["timing"].update(
        {"total_seconds": seconds, "started_at": started_at, "finished_at": utc_now()}
    )
    for name in ("prepare_seconds", "train_seconds", "inference_seconds"):
        record["timing"].setdefault(name, 0.0)
    record["memory"] = sampler.to_json()
    staged = record.pop("_staged_predictions", None)
    if status == "failed" and staged is not None:
        Path(staged).unlink(missing_ok=True)
        staged = None
    # the older record (and its predictions) moves aside only now, when the new one is ready:
    # a cell killed before this point leaves the old record where it was
    _supersede(cell)
    if staged is not None:
        os.replace(staged, predictions_path(cell))
    try:
        write_record(cell.path, _complete(cell, record))
    except RecordError as error:
        if status == "failed":
            raise
        # a finished record that does not validate is a defect of this cell: say so in a
        # failed record rather than lose the cell
        message = f"{type(error).__name__}: {error}".splitlines()[0]
        log.error("%s failed: %s", cell.label, message)
        failed = _failed_parts(cell, error)
        failed.update(status="failed", timing=record["timing"], memory=record["memory"])
        write_record(cell.path, _complete(cell, failed))
        predictions_path(cell).unlink(missing_ok=True)
        status = "failed"
    return CellOutcome(cell, status, str(cell.path), seconds, message)


def cell_model(cell: Cell) -> tuple[str, str, Setup]:
    """The cell's model kind, architecture and setup: as planned, or from the registry."""
    if cell.setup is not None and cell.architecture:
        return cell.kind, cell.architecture, cell.setup
    entry = bench_model(cell.model)
    return entry.kind, entry.architecture, entry.setup(cell.dataset, cell.profile)


def _train_and_score(cell: Cell) -> dict[str, Any]:
    import torch

    from pd4ml.models import build
    from pd4ml.train import fit
    from pd4ml.train.predict import predict

    here = code_version()["source_digest"]
    if cell.source_digest and here != cell.source_digest:
        raise BenchError(
            f"this process runs pd4ml source {here}, but the run was planned with "
            f"{cell.source_digest}: install the same pd4ml on every worker"
        )
    kind, architecture, setup = cell_model(cell)
    recipe = setup.recipe.replace(seed=cell.seed, threads=cell.threads)
    torch.set_num_threads(cell.threads)
    prepared = _prepare(cell, setup)
    record = _base_parts(cell, (kind, architecture), setup, prepared.cls)
    record["dataset"].update(_dataset_provenance(prepared))

    started = time.perf_counter()
    result = fit(
        lambda seed: build(architecture, prepared.train, setup.config),
        prepared.train,
        prepared.val,
        recipe,
        progress="off",
    )
    train_seconds = time.perf_counter() - started

    started = time.perf_counter()
    augmentation = prepared.cls.augmentation(prepared.train) if recipe.tta else None
    predictions = {
        split: np.asarray(
            predict(result.model, data, tta=recipe.tta, augmentation=augmentation),
            dtype=np.float64,
        )
        for split, data in prepared.tests.items()
    }
    task = record["task"]
    predictions = {
        split: _in_target_units(prepared.cls, data, predictions[split])
        for split, data in prepared.tests.items()
    }
    if task == "regression" and cell.dataset in TARGET_UNITS:
        record["dataset"]["target_units"] = TARGET_UNITS[cell.dataset]
    saved = _save_predictions(cell, predictions)
    record["_staged_predictions"] = saved.pop("_staged")
    record["predictions"] = saved
    metrics, curves = _score(cell, prepared, predictions, task)
    if cell.dataset == "higgsml" and {"public_test", "private_test"} <= set(predictions):
        validation = np.asarray(
            predict(result.model, prepared.val, tta=recipe.tta, augmentation=augmentation),
            dtype=np.float64,
        )
        metrics.update(_higgsml_ams(cell, prepared, validation, predictions))
    inference_seconds = time.perf_counter() - started

    record["model"]["parameters"] = int(sum(p.numel() for p in result.model.parameters()))
    record["recipe"] = recipe.to_json()
    record["metrics"] = {name: metric_value(value) for name, value in metrics.items()}
    record["curves"] = curves
    record["history"] = [_history_entry(entry) for entry in result.history]
    record["lr_finder"] = _lr_finder(result.lr_finder)
    record["timing"] = {
        "prepare_seconds": prepared.seconds,
        "train_seconds": train_seconds,
        "inference_seconds": inference_seconds,
    }
    return record


def predictions_path(cell: Cell) -> Path:
    """Where a cell's test predictions are saved (beside its record)."""
    return cell.path.with_name(f"{cell.path.stem}.predictions.npy")


def _save_predictions(cell: Cell, predictions: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Write the test predictions (float32, splits concatenated), fsynced, to a temporary file
    beside the record; :func:`run_cell` renames it into place just before the record is
    written, so every metric can be recomputed from them and the test labels."""
    array = np.concatenate([predictions[split] for split in predictions]).astype(np.float32)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    target = predictions_path(cell)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            np.save(handle, array, allow_pickle=False)
            handle.flush()
            os.fsync(handle.fileno())
        digest = hashlib.sha256(temporary.read_bytes()).hexdigest()
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return {
        "file": target.name,
        "sha256": digest,
        "splits": list(predictions),
        "n_events": int(array.shape[0]),
        "_staged": str(temporary),
    }


def _column(parts: Sequence[PreparedData], name: str) -> np.ndarray:
    return np.concatenate([np.asarray(part[name], dtype=np.float64) for part in parts])


def _score(
    cell: Cell,
    prepared: _Prepared,
    predictions: Mapping[str, np.ndarray],
    task: str,
) -> tuple[dict[str, float], dict[str, Any]]:
    from pd4ml import metrics as m

    parts = list(prepared.tests.values())
    labels = np.concatenate(
        [
            _in_target_units(prepared.cls, part, np.asarray(part["labels"], dtype=np.float64))
            for part in parts
        ]
    )
    weights = _column(parts, "weights")
    scores = np.concatenate([predictions[split] for split in prepared.tests])
    if scores.ndim == 2 and scores.shape[1] == 1:
        scores = scores[:, 0]
    values = m.evaluate(task, labels, scores, weights)
    curves: dict[str, Any] = {}
    if task == "classification" and scores.ndim == 1:
        false_positive, true_positive, _ = m.roc_curve(labels, scores, weights)
        curves["roc"] = _roc_points(false_positive, true_positive)
    elif task == "regression":
        curves.update(_regression_curves(labels, scores, weights))
        if cell.dataset in CALORIMETERS:
            table = m.energy_resolution(labels, scores, 10, weights)
            keep = table.counts > 0
            curves["energy_resolution"] = {
                "centres": table.centres[keep].tolist(),
                "sigma_over_e": table.resolution[keep].tolist(),
                "counts": table.counts[keep].tolist(),
            }
    return values, curves


def _in_target_units(cls: type[Dataset], part: PreparedData, values: np.ndarray) -> np.ndarray:
    """Regression targets (or predictions of them) in the target's physical units: Airshower
    standardises Xmax for training, and its metrics are reported in g/cm² (the inverse of the
    scaling stored with the split); other datasets' targets are stored in their units."""
    inverse = getattr(cls, "xmax_from_labels", None)
    if inverse is None:
        return values
    return np.asarray(inverse(values, part), dtype=np.float64)


def _kaggle_scale(
    cell: Cell, prepared: _Prepared, whole: Sequence[str], scored: Sequence[str]
) -> float:
    """The factor that turns the KaggleWeights of the ``scored`` events into full-set yields:
    the sum over the whole Kaggle set (the full splits ``whole``) over the sum over the events
    scored (the parts of ``scored`` the cell used). The validation split is a part of the
    training set t, whose KaggleWeights sum to the full yield over train and val together."""
    settings = settings_for(cell)
    params = dict(cell_model(cell)[2].load_params)
    graph = bool(params.pop("graph", False))
    used = {"train": prepared.train, "val": prepared.val, **prepared.tests}
    total = sum(
        float(
            np.sum(
                np.asarray(
                    prepared.cls.load_data(split, graph=graph, settings=settings, **params)[
                        "kaggle_weights"
                    ],
                    dtype=np.float64,
                )
            )
        )
        for split in whole
    )
    part = sum(
        float(np.sum(np.asarray(used[split]["kaggle_weights"], dtype=np.float64)))
        for split in scored
    )
    return total / part if part > 0 else 1.0


def _higgsml_ams(
    cell: Cell,
    prepared: _Prepared,
    validation: np.ndarray,
    predictions: Mapping[str, np.ndarray],
) -> dict[str, float]:
    """HiggsML's approximate median significance, as the challenge scored it: the cut on the
    score is chosen on the validation events (the best AMS there, its KaggleWeights scaled to
    the whole training set t, of which train and val are parts), then applied to the public
    (``ams_public``) and private (``ams``, the leaderboard's) test sets, each with its own
    KaggleWeights (rescaled to the full set when the quick profile scores a part of it).
    ``ams_threshold`` is the cut, so ``ams`` can be recomputed from the saved predictions."""
    from pd4ml import metrics as m

    labels = np.asarray(prepared.val["labels"])
    weights = np.asarray(prepared.val["kaggle_weights"], dtype=np.float64)
    scale = _kaggle_scale(cell, prepared, ("train", "val"), ("val",))
    _, threshold = m.best_ams(labels, validation.reshape(-1), weights, scale=scale)
    values = {"ams_threshold": float(threshold)}
    for split, name in (("private_test", "ams"), ("public_test", "ams_public")):
        part = prepared.tests[split]
        selected = predictions[split].reshape(-1) >= threshold
        values[name] = m.ams_of_selection(
            np.asarray(part["labels"]),
            selected,
            np.asarray(part["kaggle_weights"], dtype=np.float64),
            scale=_kaggle_scale(cell, prepared, (split,), (split,)),
        )
    return values


def _roc_points(false_positive: np.ndarray, true_positive: np.ndarray) -> dict[str, list[float]]:
    """The ROC curve at ≤ 201 background efficiencies (log-spaced down to 1e-4, for the
    rejection plot, and linear)."""
    grid = np.unique(
        np.concatenate([np.logspace(-4, 0, 150), np.linspace(0.0, 1.0, _CURVE_POINTS - 150)])
    )
    order = np.argsort(false_positive, kind="stable")
    fpr = np.asarray(false_positive, dtype=np.float64)[order]
    tpr = np.maximum.accumulate(np.asarray(true_positive, dtype=np.float64)[order])
    return {
        "false_positive_rate": grid.tolist(),
        "true_positive_rate": np.interp(grid, fpr, tpr).tolist(),
    }


def _regression_curves(
    truth: np.ndarray, predictions: np.ndarray, weights: np.ndarray
) -> dict[str, Any]:
    residual = predictions.reshape(-1) - truth
    low, high = np.quantile(residual, [0.005, 0.995])
    if not high > low:
        low, high = low - 0.5, high + 0.5
    counts, edges = np.histogram(residual, bins=50, range=(low, high), weights=weights)
    truth_edges = np.unique(np.quantile(truth, np.linspace(0, 1, 11)))
    which = np.clip(np.searchsorted(truth_edges, truth, side="right") - 1, 0, len(truth_edges) - 2)
    centres, bias, spread, numbers = [], [], [], []
    for index in range(len(truth_edges) - 1):
        chosen = which == index
        if not np.any(chosen) or np.sum(weights[chosen]) <= 0:
            continue
        w = weights[chosen]
        mean = float(np.average(residual[chosen], weights=w))
        centres.append(float(np.average(truth[chosen], weights=w)))
        bias.append(mean)
        spread.append(float(np.sqrt(np.average((residual[chosen] - mean) ** 2, weights=w))))
        numbers.append(int(np.sum(chosen)))
    return {
        "residuals": {"edges": edges.tolist(), "counts": counts.tolist()},
        "resolution_vs_truth": {
            "centres": centres,
            "bias": bias,
            "resolution": spread,
            "counts": numbers,
        },
    }


def _history_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in entry.items():
        if isinstance(value, float) and not math.isfinite(value):
            out[name] = None
        else:
            out[name] = value
    return out


def _lr_finder(result: Any) -> dict[str, Any] | None:
    if result is None:
        return None
    pairs = [
        (float(rate), float(loss))
        for rate, loss in zip(result.learning_rates, result.smoothed, strict=True)
        if math.isfinite(loss)
    ]
    return {
        "learning_rates": [rate for rate, _ in pairs],
        "smoothed": [loss for _, loss in pairs],
        "suggestion": float(result.suggestion),
    }


# -- the record's provenance ------------------------------------------------------------------
def _version_of(cls: type[Dataset]) -> DatasetVersion:
    return cls.manifest().version()


def _base_parts(
    cell: Cell,
    model: tuple[str, str] | None,
    setup: Setup | None,
    cls: type[Dataset] | None,
) -> dict[str, Any]:
    """The parts of the record known before anything runs."""
    manifest_cls = cls if cls is not None else get_dataset(cell.dataset)
    manifest = manifest_cls.manifest()
    version = _version_of(manifest_cls)
    files = {
        entry.key: str(entry.checksums[0])
        if entry.checksums
        else "unknown (not fetched; the version pins no checksum)"
        for entry in version.files
    }
    # a demo cell is synthetic even when its served files could not be rebuilt (fail closed)
    synthetic = bool(version.synthetic) or cell.source == "demo"
    record: dict[str, Any] = {
        "schema": SCHEMA_ID,
        "cell": {
            "dataset": cell.dataset,
            "model": cell.model,
            "seed": cell.seed,
            "profile": cell.profile,
            "source": cell.source,
            "key": cell.key,
        },
        "dataset": {
            "name": cell.dataset,
            "display_name": manifest.display_name,
            "version": version.name,
            "doi": version.source.doi,
            "archive": archive_description(version, synthetic),
            "source": "synthetic" if synthetic else "archive",
            "synthetic": synthetic,
            "files": files,
            "prepare_version": int(manifest_cls.prepare_version),
            "params": dict(setup.load_params) if setup is not None else {},
            "n_train": 0,
            "n_val": 0,
            "n_test": 0,
            "test_splits": list(test_splits(manifest_cls)),
        },
        "code": code_version(),
        "model": {
            "name": cell.model,
            "kind": model[0] if model is not None else cell.kind,
            "architecture": model[1] if model is not None else (cell.architecture or cell.model),
            "parameters": 0,
            "config": config_json(setup.config) if setup is not None else {},
        },
        "recipe": setup.recipe.replace(seed=cell.seed, threads=cell.threads).to_json()
        if setup is not None
        else {},
        "seed": cell.seed,
        "hardware": hardware(cell.threads),
        "task": manifest.task,
        "metrics": {},
        "curves": {},
        "history": [],
        "lr_finder": None,
        "failure": None,
    }
    if synthetic:
        record["synthetic_notice"] = SYNTHETIC_NOTICE
    return record


def archive_description(version: DatasetVersion, synthetic: bool) -> str:
    """Where a dataset version is published, in a few words (never empty)."""
    source = version.source
    if synthetic:
        return "loopback archive server (synthetic demo files, 127.0.0.1)"
    if source.kind in ("zenodo", "cernopendata") and source.record:
        return f"{source.kind} record {source.record}"
    hosts = sorted(
        {url.split("/")[2] for entry in version.files for url in entry.urls if "//" in url}
    )
    described = f"url: {', '.join(hosts)}" if hosts else f"{source.kind} (no public location)"
    return described + (f" [{source.status}]" if source.status != "available" else "")


def _dataset_provenance(prepared: _Prepared) -> dict[str, Any]:
    """Provenance read from the prepared splits: where the raw files came from, the checksums
    of every file a used split was converted from, the event counts."""
    meta = prepared.train.metadata
    files: dict[str, str] = {}
    for part in (prepared.train, prepared.val, *prepared.tests.values()):
        files.update(part.metadata.get("files") or {})
    return {
        "source": str(meta.get("source") or "unknown"),
        "synthetic": bool(meta.get("synthetic", False)) or _version_of(prepared.cls).synthetic,
        **({"files": files} if files else {}),
        "n_train": int(prepared.train.n_events),
        "n_val": int(prepared.val.n_events),
        "n_test": int(sum(part.n_events for part in prepared.tests.values())),
    }


def _failed_parts(cell: Cell, error: BaseException) -> dict[str, Any]:
    model: tuple[str, str] | None
    setup: Setup | None
    try:
        kind, architecture, setup = cell_model(cell)
        model = (kind, architecture)
    except Exception:
        model = setup = None
    try:
        cls = dataset_class(cell)
    except Exception:
        cls = None
    record = _base_parts(cell, model, setup, cls)
    record["failure"] = {
        "type": type(error).__name__,
        "message": str(error) or type(error).__name__,
        "traceback": "".join(traceback.format_exception(type(error), error, error.__traceback__)),
    }
    return record


def _complete(cell: Cell, record: dict[str, Any]) -> dict[str, Any]:
    if record["dataset"].get("synthetic"):
        record["synthetic_notice"] = SYNTHETIC_NOTICE
    return record


def with_served(cell: Cell, served: ServedFiles | None) -> Cell:
    """``cell`` with the demo's served files attached."""
    return replace(cell, served=served)
