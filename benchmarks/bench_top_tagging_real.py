"""Top tagging on 4,000 real Pythia particle-level jets: GraphNet against the jet mass alone.

    python benchmarks/bench_top_tagging_real.py                       # 5 folds, idle and loaded
    python benchmarks/bench_top_tagging_real.py --load idle --folds 2 --epochs 3   # quicker

**The jets are particle-level Pythia 8, not the official Delphes-based Top Tagging Landscape
dataset** (Zenodo 2603256). ``../shared/data/toptagging/pythia8_particle_level_4k.h5`` holds
2,000 top and 2,000 QCD anti-kT R = 0.8 jets, 550 < pT < 650 GeV, |η| < 2, at 14 TeV, written in
the official pandas-HDF5 layout, with no detector simulation (see its PROVENANCE.md).
Constituent counts and tagger performance differ from the official dataset; no figure here is a
result on it.

Data path (not timed as training): the file is served by the loopback
:class:`~pd4ml.testing.ArchiveServer` as a Zenodo record, downloaded, converted and prepared
through ``TopTagging`` (:func:`~pd4ml.testing.synthetic.synthetic_variant` of its ``v0``
manifest) into a fresh cache: ``load("train")`` gives the raw ``(4000, 200, 4)`` constituents
``[E, px, py, pz]`` (GeV) and ``load_data("train", graph=True, n_constituents=100, k=7)`` the
seven constituent features ``(4000, 100, 7)``, the mask and the 7-nearest-neighbour graph in
(Δη, Δφ). The server is stopped, and the arrays are copied into memory, before any measurement.

Five stratified folds (seeded, fixed: each class dealt round-robin in a seeded random order);
each fold is scored once by models fitted on the other four (3,200 jets):

- **GraphNet** (:class:`pd4ml.models.graphnet.GraphNet`, the original pd4ml's blocks on the
  sparse kNN graph) of width ``--width`` (default 64; the other hyper-parameters are the
  original's: 3 pre-processing, 3 graph and 6 + 1 fully connected layers, dropout 0.2/0.1),
  AdamW (weight decay ``--weight-decay``), 1cycle to a peak learning rate ``--peak-lr``,
  ``--epochs`` epochs of batches of ``--batch-size`` jets, no early stopping, train-time
  augmentation by the dataset's physical symmetry (Δφ → −Δφ, ``TopTagging.augmentation``) and
  2× test-time augmentation (identity and reflection); ``--no-augment`` turns both off.
- **Jet mass** (baselines, no training): the invariant mass ``m = sqrt(E² − |p|²)`` of the sum of
  all (up to 200) constituent four-momenta of the raw arrays, scored three ways:
  ``m`` itself (higher = more top-like), the mass window ``−|m − 173 GeV|``, and the likelihood
  ratio ``p_top(m) / p_QCD(m)`` of mass histograms fitted on the training folds (5 GeV bins on
  0–400 GeV plus an overflow bin, 0.5 added to every bin count).

Figures per fold and mean ± sample standard deviation over the folds: ROC AUC (the sample has no
event weights: unit weights), background rejection 1/ε_B at ε_S = 0.3 and 0.5 (R30, R50; at most
about 400 QCD jets per fold, so R30 above ~100 is resolved by a few jets), training wall time
(``fit``) and inference wall time per fold; idle and under a competing CPU load (one busy process
per core, started by the benchmark).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import competing_load, conditions, print_table, stratified_folds

import pd4ml
from pd4ml.config import Settings
from pd4ml.datasets.augment import ColumnReflection
from pd4ml.datasets.top_tagging import FEATURE_NAMES
from pd4ml.metrics import background_rejection, roc_auc
from pd4ml.models.graphnet import GraphNet, GraphNetConfig
from pd4ml.testing import ArchiveServer
from pd4ml.testing.synthetic import synthetic_variant
from pd4ml.train import Recipe, TrainingData, fit
from pd4ml.train.predict import predict
from pd4ml.train.schedules import OneCycle

SAMPLE = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "toptagging"
    / "pythia8_particle_level_4k.h5"
)
TOP_MASS = 173.0  # GeV
GRAPH_INPUTS = ("features", "mask", "neighbours", "neighbour_mask")
MASS_BINS = np.append(np.arange(0.0, 400.0 + 5.0, 5.0), np.inf)  # GeV, last bin: overflow


def load_sample(sample: Path, cache: Path) -> tuple[dict[str, np.ndarray], float]:
    """The 4,000 jets through the real data path (loopback server → download → conversion →
    preparation); returns in-memory arrays (``constituents`` (N, 200, 4) GeV, the prepared
    graph inputs, ``labels`` (N,)) and the seconds the data path took."""
    if not sample.exists():
        raise SystemExit(
            f"the real top-tagging sample is not there: {sample} (it lives in ../shared/data "
            "beside the clone; pass --sample PATH)"
        )
    started = time.perf_counter()
    files = {"train.h5": sample}
    with ArchiveServer() as server:
        server.add_zenodo_record(8200, files)
        variant = synthetic_variant(
            pd4ml.TopTagging, server.url, 8200, files, template_version="v0"
        )
        settings = Settings(data_dir=cache, progress="off")
        raw = variant.load("train", settings=settings)
        prepared = variant.load_data(
            "train", graph=True, n_constituents=100, k=7, settings=settings
        )
        arrays = {name: np.array(prepared[name]) for name in GRAPH_INPUTS}
        arrays["labels"] = np.array(prepared["labels"])
        arrays["constituents"] = np.array(raw["constituents"])
        if not np.array_equal(np.asarray(raw.y), arrays["labels"]):
            raise SystemExit("raw and prepared labels differ: the data path is inconsistent")
    return arrays, time.perf_counter() - started


def jet_mass(constituents: np.ndarray) -> np.ndarray:
    """Invariant mass (GeV) ``(N,)`` of the sum of every jet's constituents ``(N, n, 4)``
    ``[E, px, py, pz]`` (padding is zeros and adds nothing), computed in float64."""
    jet = constituents.astype(np.float64).sum(axis=1)
    mass_squared = jet[:, 0] ** 2 - (jet[:, 1:] ** 2).sum(axis=1)
    mass: np.ndarray = np.sqrt(np.clip(mass_squared, 0.0, None))
    return mass


def scores(labels: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """AUC, R30 and R50 of a discriminant (higher = more top-like)."""
    return {
        "auc": roc_auc(labels, score),
        "r30": background_rejection(labels, score, 0.3),
        "r50": background_rejection(labels, score, 0.5),
    }


def mass_likelihood_ratio(
    mass: np.ndarray, labels: np.ndarray, train: np.ndarray, test: np.ndarray
) -> np.ndarray:
    """``p_top(m) / p_QCD(m)`` of the ``test`` jets from histograms of the ``train`` jets."""
    top, _ = np.histogram(mass[train][labels[train] == 1], MASS_BINS)
    qcd, _ = np.histogram(mass[train][labels[train] == 0], MASS_BINS)
    density_top = (top + 0.5) / (top + 0.5).sum()
    density_qcd = (qcd + 0.5) / (qcd + 0.5).sum()
    bins = np.clip(np.digitize(mass[test], MASS_BINS) - 1, 0, len(top) - 1)
    ratio: np.ndarray = density_top[bins] / density_qcd[bins]
    return ratio


def graphnet(
    arrays: dict[str, np.ndarray], train: np.ndarray, test: np.ndarray, args: argparse.Namespace
) -> dict[str, float]:
    """Train GraphNet on ``train`` and score ``test``; AUC, R30, R50 and wall times."""
    inputs = {name: arrays[name][train] for name in GRAPH_INPUTS if name != "features"}
    augmentation = (
        None if args.no_augment else ColumnReflection("features", [FEATURE_NAMES.index("phi_rel")])
    )
    data = TrainingData.from_arrays(
        arrays["features"][train], arrays["labels"][train], augmentation=augmentation, **inputs
    )
    recipe = Recipe(
        optimizer="adamw",
        learning_rate=args.peak_lr,
        schedule=OneCycle(),
        epochs=args.epochs,
        batch_size=args.batch_size,
        weight_decay=args.weight_decay,
        augment=not args.no_augment,
        threads=args.threads,
        seed=args.seed,
        device="cpu",
    )
    model = GraphNet.build(data.description, GraphNetConfig(width=args.width))
    started = time.perf_counter()
    result = fit(model, data, recipe=recipe, progress="off")
    trained = time.perf_counter() - started
    started = time.perf_counter()
    tta = 0 if args.no_augment else 2
    score = predict(
        result.model,
        {name: arrays[name][test] for name in GRAPH_INPUTS},
        tta=tta,
        augmentation=augmentation,
    )
    inferred = time.perf_counter() - started
    figures = scores(arrays["labels"][test], np.asarray(score))
    figures.update(train_s=trained, infer_s=inferred, parameters=float(model.n_parameters()))
    return figures


def mean_sd(values: list[float], digits: int) -> str:
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return f"{np.mean(values):.{digits}f} ± {sd:.{digits}f}"


def rejection(value: float) -> str:
    return "> n_QCD" if not np.isfinite(value) else f"{value:.1f}"


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="pd4ml-toptag-") as cache:
        arrays, data_seconds = load_sample(args.sample, Path(cache))
    labels = arrays["labels"]
    mass = jet_mass(arrays["constituents"])
    folds = stratified_folds(labels, 5, seed=0)
    print(
        f"{len(labels)} jets ({int(labels.sum())} top) through the data path in "
        f"{data_seconds:.1f} s (server, download, conversion, preparation; not training time); "
        f"median jet mass top {np.median(mass[labels == 1]):.1f} GeV, "
        f"QCD {np.median(mass[labels == 0]):.1f} GeV\n",
        flush=True,
    )
    methods = (
        ("graphnet", f"GraphNet (width {args.width}, {args.epochs} epochs)"),
        ("mass_lr", "jet mass: likelihood ratio (train-fold histograms)"),
        ("mass_window", "jet mass: −\\|m − 173 GeV\\|"),
        ("mass", "jet mass: m"),
    )
    for label, busy in conditions(args.load):
        results: dict[str, list[dict[str, float]]] = {name: [] for name, _ in methods}
        fold_rows: list[list[Any]] = []
        with competing_load(busy) as spinners:
            for fold in range(args.folds):
                train, test = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
                started = time.perf_counter()
                results["mass_lr"].append(
                    scores(labels[test], mass_likelihood_ratio(mass, labels, train, test))
                )
                results["mass_lr"][-1]["train_s"] = time.perf_counter() - started
                results["mass_window"].append(scores(labels[test], -np.abs(mass[test] - TOP_MASS)))
                results["mass"].append(scores(labels[test], mass[test]))
                results["graphnet"].append(graphnet(arrays, train, test, args))
                net, base = results["graphnet"][-1], results["mass_lr"][-1]
                fold_rows.append(
                    [
                        str(fold),
                        f"{net['auc']:.4f}",
                        rejection(net["r30"]),
                        rejection(net["r50"]),
                        f"{net['train_s']:.1f}",
                        f"{base['auc']:.4f}",
                        rejection(base["r30"]),
                        rejection(base["r50"]),
                        f"{results['mass_window'][-1]['auc']:.4f}",
                    ]
                )
                print(
                    f"[{label}] fold {fold}: GraphNet AUC {net['auc']:.4f} "
                    f"({net['train_s']:.1f} s), mass likelihood ratio AUC {base['auc']:.4f}",
                    flush=True,
                )
        print(
            f"\n### {label} ({spinners} competing busy processes, torch threads {args.threads}), "
            f"{args.folds} of 5 folds\n"
        )
        print_table(
            [
                "fold",
                "GraphNet AUC",
                "R30",
                "R50",
                "train s",
                "mass LR AUC",
                "R30",
                "R50",
                "mass window AUC",
            ],
            fold_rows,
        )
        print()
        rows: list[list[Any]] = []
        for name, title in methods:
            figures = results[name]
            r30 = [f["r30"] for f in figures]
            r50 = [f["r50"] for f in figures]
            rows.append(
                [
                    title,
                    mean_sd([f["auc"] for f in figures], 4),
                    mean_sd(r30, 1) if np.isfinite(r30).all() else "> n_QCD in a fold",
                    mean_sd(r50, 1) if np.isfinite(r50).all() else "> n_QCD in a fold",
                    mean_sd([f["train_s"] for f in figures], 1) if "train_s" in figures[0] else "—",
                    mean_sd([f["infer_s"] for f in figures], 2) if "infer_s" in figures[0] else "—",
                ]
            )
        print_table(
            ["method", "AUC (mean ± sd)", "R30", "R50", "train s/fold", "infer s/fold"], rows
        )
        gain = np.mean([f["auc"] for f in results["graphnet"]]) - np.mean(
            [f["auc"] for f in results["mass_lr"]]
        )
        print(
            f"\nGraphNet − mass likelihood ratio: ΔAUC = {gain:+.4f} ({label}; "
            f"{int(results['graphnet'][0]['parameters'])} parameters)\n",
            flush=True,
        )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sample", type=Path, default=SAMPLE)
    parser.add_argument("--folds", type=int, default=5, choices=range(1, 6), help="folds scored")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--peak-lr", type=float, default=3e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-augment", action="store_true", help="no Δφ reflection, no TTA")
    parser.add_argument("--load", choices=("both", "idle", "loaded"), default="both")
    return run(parser.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
