"""Complete, valid benchmark records for tests.

Use as ``from tests.bench_examples import example_record``.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from pd4ml.bench.records import SYNTHETIC_NOTICE

_DISPLAY_NAMES = {
    "top_tagging": "Top Tagging",
    "higgsml": "HiggsML",
    "calice_ahcal": "CALICE AHCAL",
    "ild_photon_showers": "ILD Photon Showers",
    "smartbkg": "SmartBKG",
    "airshower": "Air Shower",
    "spinodal": "Spinodal",
    "eos": "EOS",
}
_ENERGY_DATASETS = ("calice_ahcal", "ild_photon_showers")


def cell_key(dataset: str, model: str, profile: str = "quick", source: str = "demo") -> str:
    """16 hex characters of the configuration without the seed (as the runner's key)."""
    text = json.dumps([dataset, model, profile, source], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _grid(start: float, stop: float, n: int) -> list[float]:
    return [start + (stop - start) * index / (n - 1) for index in range(n)]


def _classification(seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    shift = 0.001 * seed
    metrics: dict[str, Any] = {
        "accuracy": 0.93 + shift,
        "auc": 0.98 + shift,
        "rejection_30": "inf",
        "rejection_50": 250.0 + seed,
        "bce": 0.17 - shift,
    }
    false_positive = _grid(0.0, 1.0, 101)
    curves = {
        "roc": {
            "false_positive_rate": false_positive,
            "true_positive_rate": [math.sqrt(value) for value in false_positive],
        }
    }
    return metrics, curves


def _regression(dataset: str, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    shift = 0.01 * seed
    metrics: dict[str, Any] = {
        "mse": 1.2 + shift,
        "mae": 0.8 + shift,
        "bias": -0.01,
        "resolution": 1.1 + shift,
        "resolution_68": 1.05 + shift,
    }
    centres = _grid(5.0, 95.0, 10)
    curves: dict[str, Any] = {
        "residuals": {"edges": _grid(-5.0, 5.0, 51), "counts": [float(i % 7) for i in range(50)]},
        "resolution_vs_truth": {
            "centres": centres,
            "bias": [0.01 * i for i in range(10)],
            "resolution": [1.0 + 0.1 * i for i in range(10)],
            "counts": [100.0] * 10,
        },
    }
    if dataset in _ENERGY_DATASETS:
        curves["energy_resolution"] = {
            "centres": centres,
            "sigma_over_e": [0.5 / math.sqrt(energy) for energy in centres],
            "counts": [100.0] * 10,
        }
    return metrics, curves


def example_record(
    dataset: str = "top_tagging",
    model: str = "fcn",
    seed: int = 0,
    task: str = "classification",
    synthetic: bool = True,
    status: str = "finished",
    **overrides: Any,
) -> dict[str, Any]:
    """A complete record that passes ``validate_record``.

    Classification records carry a ROC curve, a training history and an LR-finder sweep;
    regression records residuals, resolution against truth and (for the calorimeter datasets)
    the energy resolution. ``status="failed"`` gives empty metrics, curves and history and a
    failure block; ``dataset="higgsml"`` adds the ``ams`` metric. ``overrides`` replace
    top-level keys wholesale.
    """
    if task == "classification":
        metrics, curves = _classification(seed)
        if dataset == "higgsml":
            metrics.update(ams=3.6, ams_public=3.5, ams_threshold=0.8)
    else:
        metrics, curves = _regression(dataset, seed)
    history = [
        {
            "epoch": epoch,
            "train_loss": 0.5 / (epoch + 1),
            "learning_rate": 1e-3 * 0.5**epoch,
            "val_loss": 0.55 / (epoch + 1),
            "val_auc": 0.9 + 0.01 * epoch,
            "seconds": 1.5,
        }
        for epoch in range(3)
    ]
    rates = [1e-6 * 10 ** (index / 10) for index in range(51)]
    lr_finder: dict[str, Any] | None = {
        "learning_rates": rates,
        "losses": [0.7] * 50 + [None],
        "smoothed": [0.7 - 0.001 * index for index in range(50)] + [None],
        "suggestion": 1e-3,
        "minimum": 1e-2,
        "stopped_early": True,
    }
    failure = None
    if status == "failed":
        metrics, curves, history, lr_finder = {}, {}, [], None
        failure = {
            "type": "pd4ml.train.recipe.TrainingError",
            "message": "the loss became NaN in epoch 2",
            "traceback": 'Traceback (most recent call last):\n  File "x.py", line 1\n',
        }
    source = "demo" if synthetic else "archive"
    record: dict[str, Any] = {
        "schema": "pd4ml-bench-record/1",
        "status": status,
        "cell": {
            "dataset": dataset,
            "model": model,
            "seed": seed,
            "profile": "quick",
            "source": source,
            "key": cell_key(dataset, model, "quick", source),
        },
        "dataset": {
            "name": dataset,
            "display_name": _DISPLAY_NAMES.get(dataset, dataset),
            "version": "1.0.0",
            "doi": None if synthetic else "10.5281/zenodo.2603256",
            "archive": "loopback archive server (synthetic demo files)"
            if synthetic
            else "zenodo record 2603256",
            "source": "synthetic" if synthetic else "shared+archive",
            "synthetic": synthetic,
            "files": {"train.h5": "sha256:" + hashlib.sha256(dataset.encode()).hexdigest()},
            "prepare_version": 1,
            "params": {"max_events": 2000},
            "n_train": 1200,
            "n_val": 400,
            "n_test": 400,
            "test_splits": ["test"],
        },
        "code": {
            "pd4ml_version": "0.1.0",
            "git_revision": "0123456789abcdef0123456789abcdef01234567",
            "source_digest": "0123456789abcdef",
            "python": "3.11.7",
            "torch": "2.3.0",
            "numpy": "1.26.4",
        },
        "model": {
            "name": model,
            "kind": "shared",
            "architecture": "FCN 3x64, ReLU",
            "parameters": 12_345,
            "config": {"hidden": [64, 64, 64], "dropout": 0.1},
        },
        "recipe": {"epochs": 3, "batch_size": 128, "learning_rate": "find", "seed": seed},
        "seed": seed,
        "hardware": {
            "cpu": "AMD EPYC 7763 64-Core Processor",
            "cores": 2,
            "threads": 1,
            "gpu": None,
            "hostname": "node-1",
            "platform": "Linux-6.1-x86_64-with-glibc2.36",
        },
        "timing": {
            "prepare_seconds": 1.25,
            "train_seconds": 12.5,
            "inference_seconds": 0.5,
            "total_seconds": 14.5,
            "started_at": "2024-05-01T12:00:00.000+00:00",
            "finished_at": "2024-05-01T12:00:14.500+00:00",
        },
        "memory": {"peak_rss_bytes": 400_000_000, "peak_anonymous_rss_bytes": 250_000_000},
        "task": task,
        "metrics": metrics,
        "curves": curves,
        "history": history,
        "lr_finder": lr_finder,
        "failure": failure,
    }
    if status == "finished":
        record["predictions"] = {
            "file": f"seed-{seed}.predictions.npy",
            "sha256": hashlib.sha256(f"{dataset}{model}{seed}".encode()).hexdigest(),
            "splits": ["test"],
            "n_events": 1000,
        }
    if synthetic:
        record["synthetic_notice"] = SYNTHETIC_NOTICE
    record.update(overrides)
    return record
