"""Benchmark: one epoch of prepared TopTagging jets through the adapters, idle and under load.

    python benchmarks/bench_adapters.py                    # 200,000 jets (0.58 GB), < 4 min
    python benchmarks/bench_adapters.py --jets 1000000     # the full-size training split

A prepared split in the layout of ``TopTagging.load_data("train")`` — ``features``
``(N, 100, 7)`` float32, ``mask`` ``(N, 100)`` bool, ``labels`` ``(N,)`` int64 — is written once
(synthetic jets through the real feature code, tiled to N) and opened as memory maps. Then, in
the same process and with the files in the page cache (one warm-up pass first), twice: on the
machine as it is (**idle**), and with one busy process per core started by this benchmark
(**contended**, the normal case on shared cluster nodes):

1. **raw**: the baseline — a loop over the memory maps copying ``batch_size`` consecutive rows
   of each array per step (``np.array(features[a:b])`` …), the least any reader has to do;
2. **torch**: ``TorchEvents.loader(batch_size)`` — unshuffled, ``shuffle=True`` (a uniform
   permutation of all jets, each batch gathered as sorted rows) and ``shuffle="blocks"``;
3. **plain DataLoader**: what a user would write without pd4ml — a map-style ``Dataset`` over
   the same memory maps returning one jet per index, ``DataLoader(shuffle=True,
   batch_size=...)`` with the default collation (timed over ``--plain-batches`` batches);
4. **tf.data**: ``TfEvents.dataset(batch_size)`` — unshuffled, then shuffled — iterated by an
   eager Python loop and inside a ``tf.function`` (as ``keras.Model.fit`` consumes it);
5. **row gather** (features only, the uniform batches of 2.): ``np.take`` (what the adapters
   use) next to the parallel numba gather of :mod:`pd4ml._kernels`.

Each path is timed ``--repeats`` times, each epoch right after one raw-read epoch: the figures
are its best jets/s and the median of its per-pair fractions of the raw speed (the load of
other users of the machine drifts; pairing compares like with like). Targets: the shuffled torch epoch at least 50 % of the raw
read speed idle and 35 % contended; the same for the other adapter paths.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

N_CONSTITUENTS = 100
TARGET_IDLE = 0.50
TARGET_CONTENDED = 0.35


def write_prepared(directory: Path, n_jets: int) -> None:
    """A prepared TopTagging split of ``n_jets`` jets (features of real code on synthetic jets)."""
    from numpy.lib import format as npy_format

    from pd4ml.datasets.storage import STORAGE_VERSION, record_array
    from pd4ml.datasets.top_tagging import FEATURE_NAMES, constituent_features
    from pd4ml.testing.synthetic import top_tagging_jets

    sample, labels, _ = top_tagging_jets(min(n_jets, 20_000), seed=0)
    features, mask = constituent_features(sample, N_CONSTITUENTS)
    directory.mkdir(parents=True)
    outputs = {
        "features": npy_format.open_memmap(
            directory / "features.npy", "w+", np.float32, (n_jets, N_CONSTITUENTS, 7)
        ),
        "mask": npy_format.open_memmap(
            directory / "mask.npy", "w+", np.bool_, (n_jets, N_CONSTITUENTS)
        ),
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
    del outputs
    records = {
        name: record_array(directory / f"{name}.npy", per_event=True).to_json()
        for name in ("features", "mask", "labels")
    }
    meta = {
        "arrays": list(records),
        "array_files": records,
        "storage_version": STORAGE_VERSION,
        "dataset": "top_tagging",
        "version": "benchmark",
        "split": "train",
        "params": {"n_constituents": N_CONSTITUENTS, "k": 7, "graph": False},
        "synthetic": True,
        "info": {"feature_names": list(FEATURE_NAMES)},
    }
    (directory / "meta.json").write_text(json.dumps(meta))


@contextmanager
def competing_load(busy: int) -> Iterator[None]:
    """``busy`` processes spinning on a core each for the duration of the block."""
    processes = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    try:
        time.sleep(1.0)  # let the scheduler spread them
        yield
    finally:
        for process in processes:
            process.kill()
        for process in processes:
            process.wait()


def timed(epoch: Callable[[], int]) -> float:
    """Jets/s of one call of ``epoch`` (which returns the jets it read)."""
    started = time.perf_counter()
    jets = epoch()
    return jets / (time.perf_counter() - started)


def paired_rates(
    epoch: Callable[[], int], raw: Callable[[], int], repeats: int
) -> tuple[float, float, float]:
    """``epoch`` alternated ``repeats`` times with the raw reads: the best jets/s of each and the
    median of the per-pair ratios (each ratio compares moments of the same machine load; the
    load of other users of the machine drifts)."""
    rates, raw_rates = [], []
    for _ in range(repeats):
        raw_rates.append(timed(raw))
        rates.append(timed(epoch))
    ratios = [rate / raw_rate for rate, raw_rate in zip(rates, raw_rates, strict=True)]
    return max(rates), max(raw_rates), float(np.median(ratios))


def raw_epoch(arrays: dict[str, np.ndarray], batch_size: int) -> int:
    n = len(arrays["labels"])
    jets = 0
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        batch = {name: np.array(array[start:stop]) for name, array in arrays.items()}
        jets += len(batch["labels"])
    return jets


def count_jets(batches: Iterable[Any], labels: Callable[[Any], Any], limit: int = -1) -> int:
    jets = 0
    for index, batch in enumerate(batches):
        if index == limit:
            break
        jets += int(labels(batch).shape[0])
    return jets


def torch_labels(batch: Any) -> Any:
    return batch["labels"]


def tf_labels(batch: Any) -> Any:
    return batch[1]


def gather_epoch(gather: Callable[[np.ndarray], np.ndarray], plan: list[np.ndarray]) -> int:
    return sum(len(gather(rows)) for rows in plan)


def plain_loader(arrays: dict[str, np.ndarray], batch_size: int) -> Any:
    """``DataLoader(map-style dataset of single jets, shuffle=True)``, as a user would write."""
    import torch
    from torch.utils.data import DataLoader, Dataset

    class MemmapJets(Dataset[dict[str, torch.Tensor]]):
        """One jet per index from the memory maps."""

        def __len__(self) -> int:
            return len(arrays["labels"])

        def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
            return {
                name: torch.from_numpy(np.array(array[index])) for name, array in arrays.items()
            }

    return DataLoader(MemmapJets(), batch_size=batch_size, shuffle=True)


def measure(data: Any, args: argparse.Namespace) -> list[tuple[str, float, float]]:
    """Every path of the module docstring under the current load: ``(name, jets/s, fraction of
    the raw read speed measured alternately with it)``."""
    from pd4ml._kernels import gather_rows_kernel
    from pd4ml.adapters.common import batch_rows

    size_b, repeats = args.batch_size, args.repeats
    arrays = {name: data[name] for name in ("features", "mask", "labels")}
    raw = partial(raw_epoch, arrays, size_b)
    paths: list[tuple[str, Callable[[], int], int]] = []
    events = data.torch()
    for name, shuffle in (
        ("torch loader, unshuffled", False),
        ("torch loader, shuffle=True", True),
        ("torch loader, shuffle='blocks'", "blocks"),
    ):
        loader = events.loader(batch_size=size_b, shuffle=shuffle)
        paths.append((name, partial(count_jets, loader, torch_labels), repeats))
    plain = plain_loader(arrays, size_b)
    paths.append(
        (
            "plain DataLoader, shuffle=True",
            partial(count_jets, plain, torch_labels, args.plain_batches),
            repeats,
        )
    )
    if not args.skip_tf:
        import tensorflow as tf

        @tf.function  # type: ignore[untyped-decorator]
        def consume_in_graph(dataset: Any) -> Any:
            """Iterate in a graph, as keras.Model.fit does (no eager per-batch overhead)."""
            jets = tf.constant(0, tf.int64)
            for _, labels, _ in dataset:
                jets += tf.shape(labels, out_type=tf.int64)[0]
            return jets

        def graph_count(dataset: Any) -> int:
            return int(consume_in_graph(dataset))

        view = data.tf()
        for name, shuffle in (("tf.data", False), ("tf.data, shuffle=True", True)):
            dataset = view.dataset(batch_size=size_b, shuffle=shuffle)
            paths.append((f"{name} (eager loop)", partial(count_jets, dataset, tf_labels), repeats))
            paths.append((f"{name} (tf.function)", partial(graph_count, dataset), repeats))
    features = arrays["features"]
    plan = [np.asarray(rows) for rows in batch_rows(len(features), size_b, shuffle=True, seed=1)]

    def take_gather(rows: np.ndarray) -> np.ndarray:
        return np.take(features, rows, axis=0)

    paths.append(
        ("row gather np.take (features)", partial(gather_epoch, take_gather, plan), repeats)
    )
    kernel = gather_rows_kernel()
    if kernel is not None:
        source = np.asarray(features).reshape(len(features), -1).view(np.uint8)

        def numba_gather(rows: np.ndarray) -> np.ndarray:
            out = np.empty((len(rows), *features.shape[1:]), dtype=features.dtype)
            kernel(source, rows, out.reshape(len(rows), -1).view(np.uint8))
            return out

        numba_gather(plan[0])  # compile outside the timing
        paths.append(
            (
                "row gather numba parallel (feat.)",
                partial(gather_epoch, numba_gather, plan),
                repeats,
            )
        )
    results: list[tuple[str, float, float]] = []
    raw_best = 0.0
    for name, epoch, times in paths:
        rate, raw_rate, share = paired_rates(epoch, raw, times)
        raw_best = max(raw_best, raw_rate)
        results.append((name, rate, share))
    return [("raw memory-map read (baseline)", raw_best, 1.0), *results]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jets", type=int, default=200_000, help="size of the split")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--plain-batches", type=int, default=60, help="batches timed for the plain DataLoader"
    )
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--skip-tf", action="store_true")
    args = parser.parse_args()

    from pd4ml.datasets.pipeline import open_prepared

    cores = len(os.sched_getaffinity(0))
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pd4ml-bench-adapters-", dir=args.workdir) as scratch:
        directory = Path(scratch) / "train"
        write_prepared(directory, args.jets)
        size = sum(path.stat().st_size for path in directory.glob("*.npy"))
        print(
            f"prepared split: {args.jets} jets, {size / 1e9:.2f} GB "
            f"(written in {time.perf_counter() - began:.0f} s); batch size {args.batch_size}; "
            f"{cores} CPUs; load average before: {os.getloadavg()[0]:.1f}"
        )
        data = open_prepared(directory, None, quiet=True)
        raw_epoch({name: data[name] for name in data.per_event()}, args.batch_size)  # warm up
        idle = measure(data, args)
        with competing_load(cores):
            contended = measure(data, args)
    print(
        f"\n{'path':36s} {'idle jets/s':>12s} {'of raw':>7s} {'contended':>12s} {'of raw':>7s}"
        f"  target (idle / contended)"
    )
    for (name, rate_idle, share_idle), (_, rate_contended, share_contended) in zip(
        idle, contended, strict=True
    ):
        if name.startswith("raw"):
            target = "baseline"
        elif name.startswith(("plain", "row gather")):
            target = "reference"
        else:
            met = share_idle >= TARGET_IDLE and share_contended >= TARGET_CONTENDED
            target = f">= {TARGET_IDLE:.0%} / {TARGET_CONTENDED:.0%}: {'met' if met else 'MISSED'}"
        print(
            f"{name:36s} {rate_idle:12.0f} {share_idle:7.0%} {rate_contended:12.0f} "
            f"{share_contended:7.0%}  {target}"
        )
    print(
        f"contended: {cores} busy processes (one per core) started by this benchmark; "
        f"total time {time.perf_counter() - began:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
