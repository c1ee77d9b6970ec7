"""Benchmark: one epoch of prepared TopTagging jets through the PyTorch and tf.data adapters.

    python benchmarks/bench_adapters.py                    # 1,000,000 jets (2.8 GB of features)
    python benchmarks/bench_adapters.py --jets 200000      # scaled down

A prepared split in the layout of ``TopTagging.load_data("train")`` — ``features``
``(N, 100, 7)`` float32, ``mask`` ``(N, 100)`` bool, ``labels`` ``(N,)`` int64 — is written once
(synthetic jets through the real feature code, tiled to N) and opened as memory maps. Then, in
the same process and with the files in the page cache (one warm-up pass first):

1. **raw**: the baseline — a loop over the memory maps copying ``batch_size`` rows of each array
   per step (``np.array(features[a:b])`` …), the least any reader has to do;
2. **torch**: ``TorchEvents.loader(batch_size)`` — unshuffled, then block-shuffled;
3. **tf.data**: ``TfEvents.dataset(batch_size)`` — unshuffled, then shuffled — iterated by an
   eager Python loop and inside a ``tf.function`` (as ``keras.Model.fit`` consumes it).

Each figure is the best of ``--repeats`` epochs, in jets/s and as a fraction of the raw speed.
The target is at least 50 % of the raw read speed for each adapter.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

N_CONSTITUENTS = 100


def write_prepared(directory: Path, n_jets: int) -> None:
    """A prepared TopTagging split of ``n_jets`` jets (features of real code on synthetic jets)."""
    from numpy.lib import format as npy_format

    from pd4ml.datasets.top_tagging import FEATURE_NAMES, constituent_features
    from pd4ml.testing.synthetic import top_tagging_jets

    sample, labels, _ = top_tagging_jets(min(n_jets, 20_000), seed=0)
    features, mask = constituent_features(sample, N_CONSTITUENTS)
    directory.mkdir(parents=True)
    outputs = {
        "features": npy_format.open_memmap(
            directory / "features.npy", "w+", np.float32, (n_jets, N_CONSTITUENTS, 7)
        ),
        "mask": npy_format.open_memmap(directory / "mask.npy", "w+", np.bool_, (n_jets, 100)),
        "labels": npy_format.open_memmap(directory / "labels.npy", "w+", np.int64, (n_jets,)),
    }
    block = len(sample)
    for start in range(0, n_jets, block):
        stop = min(start + block, n_jets)
        outputs["features"][start:stop] = features[: stop - start]
        outputs["mask"][start:stop] = mask[: stop - start]
        outputs["labels"][start:stop] = labels[: stop - start]
    for array in outputs.values():
        array.flush()
    meta = {
        "arrays": list(outputs),
        "dataset": "top_tagging",
        "version": "benchmark",
        "split": "train",
        "params": {"n_constituents": N_CONSTITUENTS, "k": 7, "graph": False},
        "synthetic": True,
        "info": {"feature_names": list(FEATURE_NAMES)},
    }
    (directory / "meta.json").write_text(json.dumps(meta))


def best_rate(epoch: Callable[[], int], repeats: int) -> float:
    """Best jets/s over ``repeats`` calls of ``epoch`` (which returns the jets it read)."""
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        jets = epoch()
        rates.append(jets / (time.perf_counter() - started))
    return max(rates)


def raw_epoch(arrays: dict[str, np.ndarray], batch_size: int) -> int:
    n = len(arrays["labels"])
    jets = 0
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        batch = {name: np.array(array[start:stop]) for name, array in arrays.items()}
        jets += len(batch["labels"])
    return jets


def count_jets(batches: Iterable[Any], labels: Callable[[Any], Any]) -> int:
    return sum(int(labels(batch).shape[0]) for batch in batches)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jets", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--skip-tf", action="store_true")
    args = parser.parse_args()

    from pd4ml.datasets.base import open_prepared

    with tempfile.TemporaryDirectory(prefix="pd4ml-bench-adapters-", dir=args.workdir) as scratch:
        directory = Path(scratch) / "train"
        started = time.perf_counter()
        write_prepared(directory, args.jets)
        size = sum(path.stat().st_size for path in directory.glob("*.npy"))
        print(
            f"prepared split: {args.jets} jets, {size / 1e9:.2f} GB "
            f"(written in {time.perf_counter() - started:.0f} s); batch size {args.batch_size}; "
            f"{os.cpu_count()} CPUs"
        )
        data = open_prepared(directory, None, quiet=True)
        arrays = {name: data[name] for name in ("features", "mask", "labels")}
        raw_epoch(arrays, args.batch_size)  # warm the page cache
        size_b = args.batch_size
        results: list[tuple[str, float]] = []
        raw = best_rate(lambda: raw_epoch(arrays, size_b), args.repeats)
        results.append(("raw memory-map read (baseline)", raw))

        import torch

        torch.set_num_threads(max(1, os.cpu_count() or 1))
        events = data.torch()
        plain = events.loader(batch_size=size_b)
        shuffled = events.loader(batch_size=size_b, shuffle=True)
        results.append(
            (
                "torch loader",
                best_rate(lambda: count_jets(plain, lambda b: b["labels"]), args.repeats),
            )
        )
        results.append(
            (
                "torch loader, shuffled",
                best_rate(lambda: count_jets(shuffled, lambda b: b["labels"]), args.repeats),
            )
        )
        if not args.skip_tf:
            import tensorflow as tf

            @tf.function
            def consume_in_graph(dataset: Any) -> Any:
                """Iterate in a graph, as keras.Model.fit does (no eager per-batch overhead)."""
                jets = tf.constant(0, tf.int64)
                for _, labels, _ in dataset:
                    jets += tf.shape(labels, out_type=tf.int64)[0]
                return jets

            view = data.tf()
            tf_plain = view.dataset(batch_size=size_b)
            tf_shuffled = view.dataset(batch_size=size_b, shuffle=True)
            for name, dataset in (("tf.data", tf_plain), ("tf.data, shuffled", tf_shuffled)):
                results.append(
                    (
                        f"{name} (eager loop)",
                        best_rate(lambda d=dataset: count_jets(d, lambda b: b[1]), args.repeats),
                    )
                )
                results.append(
                    (
                        f"{name} (in a tf.function)",
                        best_rate(lambda d=dataset: int(consume_in_graph(d)), args.repeats),
                    )
                )
        print(f"{'path':34s} {'jets/s':>12s} {'MB/s':>9s} {'of raw':>7s}")
        per_jet = size / args.jets
        for name, rate in results:
            print(f"{name:34s} {rate:12.0f} {rate * per_jet / 1e6:9.0f} {rate / raw:7.0%}")
        print("target: each adapter >= 50 % of the raw read speed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
