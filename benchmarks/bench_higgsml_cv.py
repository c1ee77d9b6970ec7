"""HiggsML on the genuine 9,998-event subset: the LUMIN-style recipe against a plain FCN.

    python benchmarks/bench_higgsml_cv.py                 # 5 folds, idle and under load
    python benchmarks/bench_higgsml_cv.py --load idle --folds 2 --members 3   # quicker

The events are the real subset of the official file in ``../shared/data/higgsml`` (4,999 signal
and 4,999 background events of the training set ``t``; see its PROVENANCE.md). Five stratified
folds (fixed seed): each fold is scored once by models trained on the other four. The features
are those of ``HiggsML.load_data()`` (Cartesian momenta aligned to the tau, standardised with the
training folds' statistics — momenta with the rotation-invariant scaling of
``rotation_invariant_scaling`` — undefined values 0), engineered here per fold so no
statistic sees the scored fold.

- **LUMIN-style**: an ensemble of small dense-connected Swish networks with an embedding of the
  jet multiplicity (:data:`pd4ml.models.LUMIN_HIGGSML`), 1cycle, train-time φ-rotation/flip
  augmentation and 8× test-time augmentation, class-balanced physics weights.
- **Plain FCN**: the original pd4ml FCN (12 × 256 ReLU), Adam at a constant learning rate 1e-3,
  early stopping on 20 % of the training folds (patience 10, best weights restored).

The figure is the ROC AUC weighted with the physics weights (``Weight``) of the scored fold; time
is the wall time of training (``fit``) and of inference, per fold. Results on this 10k-event
subset are not results on the official dataset (800k events).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import competing_load, conditions, print_table, stratified_folds

from pd4ml.datasets.augment import CartesianMomenta
from pd4ml.datasets.higgsml import (
    FEATURE_NAMES,
    MomentumAugmentation,
    read_higgsml_csv,
    rotation_invariant_scaling,
    to_cartesian,
)
from pd4ml.metrics import roc_auc
from pd4ml.models import DNN, FCN, LUMIN_HIGGSML, FCNConfig
from pd4ml.train import Constant, OneCycle, Recipe, TrainingData, fit, predict

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "higgsml"
TARGET_AUC = 0.925
TARGET_SECONDS = 20.0


def read_sample(directory: Path) -> dict[str, np.ndarray]:
    """The real events: raw features (NaN = undefined), labels, physics weights."""
    files = [directory / "train_sml_sig.csv", directory / "train_sml_bg.csv"]
    missing = [str(path) for path in files if not path.exists()]
    if missing:
        raise SystemExit(f"the real HiggsML subset is not there: {', '.join(missing)}")
    table = read_higgsml_csv(files)
    return {
        "raw": table["features"].astype(np.float64),
        "labels": table["label"].astype(np.int64),
        "weights": table["weight"].astype(np.float64),
    }


def fold_arrays(
    sample: dict[str, np.ndarray], train: np.ndarray
) -> tuple[dict[str, np.ndarray], CartesianMomenta]:
    """All events engineered as ``HiggsML.load_data()`` does, with statistics of ``train`` rows
    only, and the matching φ-rotation/flip augmentation."""
    engineered, names = to_cartesian(sample["raw"], True)
    mean, scale = rotation_invariant_scaling(
        names, np.nanmean(engineered[train], axis=0), np.nanstd(engineered[train], axis=0)
    )
    scale = np.where(scale > 0, scale, 1.0)
    undefined = np.isnan(engineered)
    features = (engineered - mean) / scale
    features[undefined] = 0.0
    jets = sample["raw"][:, FEATURE_NAMES.index("PRI_jet_num")].astype(np.int64)
    legacy = MomentumAugmentation(names, mean, scale)
    vectors: list[tuple[int, int, int | None]] = [tuple(v) for v in legacy.vectors]
    vectors.append((*legacy.met, None))
    arrays = {
        "features": features.astype(np.float32),
        "missing": undefined,
        "jet_multiplicity": jets,
    }
    return arrays, CartesianMomenta(vectors, mean, scale, legacy=legacy)


def subset(arrays: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    return {name: value[rows] for name, value in arrays.items()}


def lumin_style(
    arrays: dict[str, np.ndarray],
    sample: dict[str, np.ndarray],
    train: np.ndarray,
    test: np.ndarray,
    augmentation: CartesianMomenta,
    args: argparse.Namespace,
) -> dict[str, float]:
    inputs = subset(arrays, train)
    data = TrainingData.from_arrays(
        inputs.pop("features"),
        sample["labels"][train],
        sample["weights"][train],
        augmentation=augmentation,
        **inputs,
    )
    recipe = Recipe(
        learning_rate=args.peak_lr,
        schedule=OneCycle(),
        epochs=args.epochs,
        batch_size=args.batch_size,
        augment=True,
        ensemble=args.members,
        balance_classes=True,
        threads=args.threads,
        seed=args.seed,
    )
    started = time.perf_counter()
    result = fit(DNN.build(data.description, LUMIN_HIGGSML), data, recipe=recipe, progress="off")
    trained = time.perf_counter() - started
    started = time.perf_counter()
    scores = predict(result.model, subset(arrays, test), tta=args.tta, augmentation=augmentation)
    inferred = time.perf_counter() - started
    auc = roc_auc(sample["labels"][test], np.asarray(scores), sample["weights"][test])
    return {"auc": auc, "train_s": trained, "infer_s": inferred}


def plain_fcn(
    arrays: dict[str, np.ndarray],
    sample: dict[str, np.ndarray],
    train: np.ndarray,
    test: np.ndarray,
    args: argparse.Namespace,
) -> dict[str, float]:
    generator = np.random.default_rng(args.seed + 1)
    shuffled = generator.permutation(train)
    n_val = len(shuffled) // 5
    fit_rows, val_rows = np.sort(shuffled[n_val:]), np.sort(shuffled[:n_val])

    def training_data(rows: np.ndarray) -> TrainingData:
        return TrainingData.from_arrays(
            arrays["features"][rows], sample["labels"][rows], sample["weights"][rows]
        )

    data, val = training_data(fit_rows), training_data(val_rows)
    recipe = Recipe(
        learning_rate=1e-3,
        schedule=Constant(),
        epochs=args.fcn_epochs,
        batch_size=args.batch_size,
        patience=10,
        balance_classes=True,
        threads=args.threads,
        seed=args.seed,
    )
    started = time.perf_counter()
    result = fit(FCN.build(data.description, FCNConfig()), data, val, recipe, progress="off")
    trained = time.perf_counter() - started
    started = time.perf_counter()
    scores = predict(result.model, {"features": arrays["features"][test]})
    inferred = time.perf_counter() - started
    auc = roc_auc(sample["labels"][test], np.asarray(scores), sample["weights"][test])
    return {"auc": auc, "train_s": trained, "infer_s": inferred, "epochs": len(result.history)}


def mean_std(values: list[float]) -> str:
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1) if len(values) > 1 else 0.0:.4f}"


def run(args: argparse.Namespace) -> int:
    sample = read_sample(args.sample)
    folds = stratified_folds(sample["labels"], 5, seed=0)
    ok = True
    for label, busy in conditions(args.load):
        results: dict[str, list[dict[str, float]]] = {"lumin": [], "fcn": []}
        with competing_load(busy) as spinners:
            for fold in range(args.folds):
                train, test = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
                arrays, augmentation = fold_arrays(sample, train)
                results["lumin"].append(
                    lumin_style(arrays, sample, train, test, augmentation, args)
                )
                if not args.no_baseline:
                    results["fcn"].append(plain_fcn(arrays, sample, train, test, args))
                print(
                    f"[{label}] fold {fold}: LUMIN-style AUC {results['lumin'][-1]['auc']:.4f} "
                    f"({results['lumin'][-1]['train_s']:.1f} s)"
                    + (
                        f", plain FCN AUC {results['fcn'][-1]['auc']:.4f} "
                        f"({results['fcn'][-1]['train_s']:.1f} s)"
                        if results["fcn"]
                        else ""
                    ),
                    flush=True,
                )
        print(
            f"\n### {label} ({spinners} competing busy processes, torch threads "
            f"{args.threads}), {args.folds} of 5 folds\n"
        )
        rows: list[list[Any]] = []
        for name, title in (("lumin", "LUMIN-style"), ("fcn", "plain FCN (baseline)")):
            if not results[name]:
                continue
            aucs = [r["auc"] for r in results[name]]
            train_s = [r["train_s"] for r in results[name]]
            infer_s = [r["infer_s"] for r in results[name]]
            rows.append(
                [
                    title,
                    mean_std(aucs),
                    f"{np.mean(train_s):.1f} (max {np.max(train_s):.1f})",
                    f"{np.mean(infer_s):.2f}",
                ]
            )
        rows.append(["target (LUMIN-style)", f"≥ {TARGET_AUC}", f"≤ {TARGET_SECONDS:.0f}", ""])
        print_table(["model", "weighted AUC (mean ± sd)", "train s/fold", "infer s/fold"], rows)
        lumin_auc = float(np.mean([r["auc"] for r in results["lumin"]]))
        lumin_s = float(np.mean([r["train_s"] for r in results["lumin"]]))
        met = lumin_auc >= TARGET_AUC and lumin_s <= TARGET_SECONDS
        print(f"\ntarget {'met' if met else 'MISSED'} ({label})\n", flush=True)
        ok = ok and met
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sample", type=Path, default=SAMPLE)
    parser.add_argument("--folds", type=int, default=5, help="folds scored (of 5)")
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--fcn-epochs", type=int, default=100, help="at most (early stopping)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--peak-lr", type=float, default=1e-2)
    parser.add_argument("--tta", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--load", choices=("both", "idle", "loaded"), default="both")
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
