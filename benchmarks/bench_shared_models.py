"""The shared models on every dataset's synthetic data, against a constant predictor.

    python benchmarks/bench_shared_models.py            # a few thousand events per dataset
    python benchmarks/bench_shared_models.py --quick    # ~4x fewer events and epochs
    python benchmarks/bench_shared_models.py --datasets higgsml,eos --load both

For each of the 8 datasets, synthetic files in the official raw layout
(:mod:`pd4ml.testing.synthetic`) are served by the loopback archive server (a thread of this
process, idle while timing: every split is downloaded and prepared before the timed training),
downloaded, converted and prepared like real data;
FCN and GraphNet (small widths, see :data:`FCN_CONFIG` and :data:`GRAPHNET_CONFIG`) are trained
with :func:`pd4ml.train.fit` on the train split and scored with :func:`pd4ml.train.predict.predict`
on a held-out split (``test``; HiggsML: ``public_test`` + ``private_test``, the official file's
test sets). The baseline is the constant predictor fitted on the train split:

* classification: ROC AUC 0.5 (a constant score ranks no event above another), the accuracy of
  always answering the majority class, and the binary cross-entropy of the base rate;
* regression: the MSE and resolution (standard deviation of the residual) of always answering
  the mean training target, in the target's units.

The targets are the issue's acceptance line: both models beat the constant clearly (AUC ≥ 0.6
for classification, MSE ≤ 0.8 × the constant's for regression); the ``target`` column says
whether each row meets it. Every figure is measured idle and, with ``--load loaded`` or
``both``, under a competing CPU load (one busy process per core, started here).

The events are synthetic; their classes and targets are learnable by construction (see each
generator's docstring) but the numbers say nothing about real data.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pd4ml.config import RetryPolicy, Settings  # noqa: E402
from pd4ml.datasets.base import PreparedData  # noqa: E402
from pd4ml.metrics import accuracy, binary_cross_entropy, mse, resolution, roc_auc  # noqa: E402
from pd4ml.models import FCNConfig, build, describe  # noqa: E402
from pd4ml.models.graphnet import GraphNetConfig  # noqa: E402
from pd4ml.testing import ArchiveServer  # noqa: E402
from pd4ml.testing.served import SYNTHETIC  # noqa: E402
from pd4ml.testing.synthetic import synthetic_variant  # noqa: E402
from pd4ml.train import Recipe, fit  # noqa: E402
from pd4ml.train.predict import predict  # noqa: E402

#: The FCN of the benchmark: 3 hidden layers of 64 units (the paper's is 12 × 256).
FCN_CONFIG = FCNConfig(depth=3, width=64)
#: The GraphNet of the benchmark: width 16, 1 + 2 + 1 blocks, 128 cells per shower.
GRAPHNET_CONFIG = GraphNetConfig(
    width=16, pre_layers=1, graph_layers=2, post_layers=1, max_hits=128
)
#: The acceptance margins: a classifier's AUC at least this, a regression's MSE at most this
#: fraction of the constant predictor's.
AUC_TARGET = 0.6
MSE_FRACTION_TARGET = 0.8


class Served:
    """Synthetic files of every dataset behind one archive server and one cache."""

    def __init__(self, root: Path, server: ArchiveServer) -> None:
        self.root = root
        self.server = server
        self.settings = Settings(
            data_dir=root / "cache",
            retry=RetryPolicy(max_attempts=4, backoff_initial=0.01, backoff_max=0.05),
            progress="off",
        )
        self.records = 0

    def splits(
        self, name: str, n_train: int, n_test: int, seed: int = 0
    ) -> tuple[PreparedData, list[PreparedData]]:
        """The prepared train split and the held-out splits of ``name``'s synthetic files."""
        spec = SYNTHETIC[name]
        files = spec.write(self.root / f"{name}-{n_train}-{seed}", n_train, n_test, seed)
        self.records += 1
        record = 9000 + self.records
        if spec.kind == "cernopendata":
            self.server.add_cernopendata_record(record, files, eos_directory="/eos/opendata/test")
        else:
            self.server.add_zenodo_record(record, files)
        variant = synthetic_variant(
            spec.dataset,
            self.server.url,
            record,
            files,
            template_version=spec.template_version,
            kind=spec.kind,
        )

        def load(split: str) -> PreparedData:
            return variant.load_data(split, graph=spec.graph, settings=self.settings, **spec.params)

        return load("train"), [load(split) for split in spec.heldout]


def _column(parts: list[PreparedData], name: str) -> np.ndarray:
    return np.concatenate([np.asarray(part[name]) for part in parts])


@dataclass(frozen=True)
class Score:
    """One model's (or the constant's) figure on the held-out events."""

    metric: str
    value: float
    constant: float
    passed: bool
    extra: dict[str, float]


def constant_scores(train: PreparedData, task: str) -> dict[str, float]:
    """The constant predictor fitted on ``train`` (weighted by its ``weights``)."""
    labels = np.asarray(train.labels, dtype=np.float64)
    weights = np.asarray(train["weights"], dtype=np.float64)
    if task == "classification":
        return {"rate": float(np.average(labels, weights=weights))}
    return {"mean": float(np.average(labels, weights=weights))}


def score(
    predictions: np.ndarray, heldout: list[PreparedData], task: str, constant: dict[str, float]
) -> Score:
    """AUC (classification) or MSE (regression) on the held-out events, with the constant's."""
    labels = _column(heldout, "labels").astype(np.float64)
    weights = _column(heldout, "weights").astype(np.float64)
    predictions = np.asarray(predictions, dtype=np.float64)
    if task == "classification":
        rate = np.clip(constant["rate"], 1e-7, 1 - 1e-7)
        flat = np.full_like(labels, rate)
        majority = np.full_like(labels, 1.0 if rate >= 0.5 else 0.0)
        auc = roc_auc(labels, predictions, weights)
        return Score(
            "AUC",
            auc,
            0.5,
            auc >= AUC_TARGET,
            {
                "accuracy": accuracy(labels, predictions, weights),
                "accuracy_constant": accuracy(labels, majority, weights),
                "bce": binary_cross_entropy(labels, np.clip(predictions, 1e-7, 1 - 1e-7), weights),
                "bce_constant": binary_cross_entropy(labels, flat, weights),
            },
        )
    flat = np.full_like(labels, constant["mean"])
    value, baseline = mse(labels, predictions, weights), mse(labels, flat, weights)
    return Score(
        "MSE",
        value,
        baseline,
        value <= MSE_FRACTION_TARGET * baseline,
        {
            "resolution": resolution(labels, predictions, weights),
            "resolution_constant": resolution(labels, flat, weights),
        },
    )


def train_and_score(
    architecture: str,
    train: PreparedData,
    heldout: list[PreparedData],
    recipe: Recipe,
    config: FCNConfig | GraphNetConfig,
) -> tuple[Score, float]:
    """Train ``architecture`` on ``train`` with ``recipe``; its score and the wall seconds."""
    started = time.perf_counter()
    task = describe(train).task
    if task == "classification":
        recipe = recipe.replace(balance_classes=True)
    # built after fit seeds torch (the seed -> model form), so the weights' initialisation is
    # deterministic too
    result = fit(
        lambda seed: build(architecture, train, config), train, None, recipe, progress="off"
    )
    predictions = np.concatenate([predict(result.model, part) for part in heldout])
    seconds = time.perf_counter() - started
    return score(predictions, heldout, task, constant_scores(train, task)), seconds


#: Events per dataset (train, test files) and epochs: full run and --quick.
SIZES: dict[str, tuple[int, int]] = {
    "top_tagging": (1200, 500),
    "smartbkg": (1200, 500),
    "spinodal": (1200, 500),
    "eos": (1200, 500),
    "airshower": (1200, 500),
    "calice_ahcal": (1700, 0),  # the converter holds out about 11 % as test
    "higgsml": (5000, 0),  # about 30 % train, 70 % public + private test
    "ild_photon_showers": (1700, 0),
}


def recipe_for(
    epochs: int, seed: int = 0, learning_rate: float = 1e-2, batch_size: int = 32
) -> Recipe:
    """Adam peaking at ``learning_rate`` on the default 1cycle schedule, batches of
    ``batch_size`` (the trainer leaves
    out a last training batch of one event); classification adds ``balance_classes`` (in
    :func:`train_and_score`), so HiggsML's tiny signal weights do not drown the signal;
    regression keeps the default ``scale_targets``, so the models output in the target's
    units from the start."""
    return Recipe(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, seed=seed)


def main() -> None:
    from common import competing_load, conditions, print_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="~4x fewer events and epochs")
    parser.add_argument("--datasets", default=",".join(SYNTHETIC), help="comma-separated names")
    parser.add_argument("--epochs", type=int, default=None, help="default 6 (quick: 3)")
    parser.add_argument("--load", choices=("idle", "loaded", "both"), default="idle")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    epochs = args.epochs or (3 if args.quick else 6)
    names = [name.strip() for name in args.datasets.split(",") if name.strip()]
    unknown = sorted(set(names) - set(SYNTHETIC))
    if unknown:
        parser.error(f"unknown datasets {unknown}; choose from {', '.join(SYNTHETIC)}")
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory() as directory, ArchiveServer() as server:
        served = Served(Path(directory), server)
        for name in names:
            n_train, n_test = SIZES[name]
            if args.quick:
                n_train, n_test = n_train // 4, n_test // 4
            train, heldout = served.splits(name, n_train, n_test)
            n_heldout = sum(part.n_events for part in heldout)
            for label, busy in conditions(args.load):
                with competing_load(busy):
                    results = {
                        arch: train_and_score(arch, train, heldout, recipe_for(epochs), config)
                        for arch, config in (("fcn", FCN_CONFIG), ("graphnet", GRAPHNET_CONFIG))
                    }
                fcn, graphnet = results["fcn"][0], results["graphnet"][0]
                target = (
                    f"AUC ≥ {AUC_TARGET}"
                    if fcn.metric == "AUC"
                    else f"MSE ≤ {MSE_FRACTION_TARGET} × constant"
                )
                rows.append(
                    [
                        name,
                        label,
                        fcn.metric,
                        f"{fcn.value:.4g}",
                        f"{graphnet.value:.4g}",
                        f"{fcn.constant:.4g}",
                        target,
                        "yes" if fcn.passed and graphnet.passed else "NO",
                        _secondary(fcn, graphnet),
                        f"{train.n_events}/{n_heldout}",
                        f"{results['fcn'][1]:.1f} / {results['graphnet'][1]:.1f}",
                    ]
                )
                print(" | ".join(rows[-1]), flush=True)
    print()
    print(f"FCN {FCN_CONFIG}; GraphNet {GRAPHNET_CONFIG}; {recipe_for(epochs)}")
    print()
    print_table(
        [
            "dataset",
            "load",
            "metric",
            "FCN",
            "GraphNet",
            "constant",
            "target",
            "met",
            "secondary (FCN / GraphNet / constant)",
            "events train/held-out",
            "seconds FCN / GraphNet",
        ],
        rows,
    )


def _secondary(fcn: Score, graphnet: Score) -> str:
    if fcn.metric == "AUC":
        return (
            f"acc {fcn.extra['accuracy']:.3f} / {graphnet.extra['accuracy']:.3f} / "
            f"{fcn.extra['accuracy_constant']:.3f}; BCE {fcn.extra['bce']:.3f} / "
            f"{graphnet.extra['bce']:.3f} / {fcn.extra['bce_constant']:.3f}"
        )
    return (
        f"σ {fcn.extra['resolution']:.4g} / {graphnet.extra['resolution']:.4g} / "
        f"{fcn.extra['resolution_constant']:.4g}"
    )


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
