"""Benchmarks for TopTagging: preprocessing throughput and warm-load cost.

    python benchmarks/bench_top_tagging.py        # 200k jets (numba), 20k (NumPy), 1M-jet warm load
    python benchmarks/bench_top_tagging.py --prepare-jets 100000 --reference-jets 10000 --load-jets 0

1. **Features + kNN** (k = 7, first 100 constituents) over N jets read from a memory-mapped
   ``(N, 200, 4)`` array and written to memory-mapped ``.npy`` outputs, chunk by chunk — the code
   path of ``TopTagging.load_data(graph=True)`` — in jets/s and peak RSS, for both
   implementations: the compiled numba kernel (the default install; numba is a dependency) and
   the NumPy reference implementation (``PD4ML_NO_NUMBA=1``), next to a straightforward per-jet
   NumPy implementation (a Python loop over jets, full distance matrix, argsort) as the baseline
   and the target (default install >= 50,000 jets/s end to end). Also: the compiled computation
   alone (the same chunks into reused buffers, no files), and the time to write the same number
   of output bytes to a new file (the page-cache write floor of the machine). Every figure is
   measured twice in the same run: on an idle machine and under a competing CPU load (one busy
   process per core, started by the benchmark). Each measurement runs in its own process so that
   its peak RSS is its own.
2. **Warm load** (skipped with ``--load-jets 0``): a synthetic file in the official layout
   (pandas HDF5, ``table``) with N jets is downloaded from the loopback server and converted once
   (cold, timed), then ``load("train")`` is timed in a fresh process (warm), with its peak RSS.

The jets are synthetic (``pd4ml.testing.synthetic``), tiled from a smaller generated sample;
the timing does not depend on which jets they are.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import competing_load

ROOT = Path(__file__).resolve().parents[1]


def run_child(code: str, *args: str, reference: bool = False) -> dict[str, float]:
    """Run ``code`` in a fresh interpreter; it prints one JSON line with its own peak RSS (MB).
    With ``reference``, the child runs the NumPy reference implementations
    (``PD4ML_NO_NUMBA=1``)."""
    wrapper = code + textwrap.dedent(
        """
        import json as _json
        # VmHWM: this process's own peak (ru_maxrss would include the parent's peak across exec)
        with open("/proc/self/status") as _status:
            _peak = next(int(line.split()[1]) for line in _status if line.startswith("VmHWM"))
        _result["peak_rss_mb"] = _peak / 1024
        print(_json.dumps(_result))
        """
    )
    environment = {key: value for key, value in os.environ.items() if key != "PD4ML_NO_NUMBA"}
    if reference:
        environment["PD4ML_NO_NUMBA"] = "1"
    output = subprocess.run(
        [sys.executable, "-c", wrapper, *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env=environment,
    )
    result: dict[str, float] = json.loads(output.stdout.strip().splitlines()[-1])
    return result


PREPARE = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import numpy as np
    from pd4ml.datasets.base import ArrayWriter
    from pd4ml.datasets.top_tagging import prepare_arrays
    constituents = np.load(sys.argv[1], mmap_mode="r")[: int(sys.argv[3])]
    labels = np.zeros(len(constituents), dtype=np.int64)
    prepare_arrays(constituents[:1000], labels[:1000], ArrayWriter(Path(sys.argv[2]) / "warm"), "x", 100, 7, True)
    started = time.perf_counter()
    prepare_arrays(constituents, labels, ArrayWriter(Path(sys.argv[2])), "train", 100, 7, True)
    _result = {"seconds": time.perf_counter() - started, "jets": len(constituents)}
    """
)

COMPUTE = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from pd4ml._kernels import top_features_knn_kernel
    from pd4ml.graphs import index_dtype
    from pd4ml.npyio import release_rows
    constituents = np.load(sys.argv[1], mmap_mode="r")[: int(sys.argv[2])]
    chunk = 5000
    kernel = top_features_knn_kernel(7)
    buffers = [np.empty((chunk, 100, 7), np.float32), np.empty((chunk, 100), np.bool_),
               np.empty((chunk, 100, 7), index_dtype(100)), np.empty((chunk, 100, 7), np.bool_)]
    kernel(np.ascontiguousarray(constituents[:chunk]), 100, *buffers)  # compile / load the cache
    started = time.perf_counter()
    for start in range(0, len(constituents), chunk):
        block = np.ascontiguousarray(constituents[start : start + chunk])
        kernel(block, 100, *[buffer[: len(block)] for buffer in buffers])
        release_rows(constituents, start, start + len(block))
    _result = {"seconds": time.perf_counter() - started, "jets": len(constituents)}
    """
)

WRITE = textwrap.dedent(
    """
    import os, sys, time
    import numpy as np
    n_bytes, path = int(sys.argv[1]), sys.argv[2]
    block = np.ones(8 << 20, dtype=np.uint8)
    started = time.perf_counter()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    written = 0
    while written < n_bytes:
        written += os.write(descriptor, block[: min(len(block), n_bytes - written)])
    os.close(descriptor)
    _result = {"seconds": time.perf_counter() - started, "bytes": written}
    """
)

BASELINE = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    constituents = np.load(sys.argv[1], mmap_mode="r")
    n = int(sys.argv[2])

    def one_jet(jet, keep=100, k=7):
        real = jet[:, 0] > 0
        total = jet[real].sum(axis=0)
        jet_pt = np.hypot(total[1], total[2]); jet_eta = np.arcsinh(total[3] / jet_pt)
        jet_phi = np.arctan2(total[2], total[1])
        parts = jet[:keep][real[:keep]]
        pt = np.hypot(parts[:, 1], parts[:, 2]); eta = np.arcsinh(parts[:, 3] / pt)
        deta = (eta - jet_eta) * (1 if jet_eta >= 0 else -1)
        dphi = (np.arctan2(parts[:, 2], parts[:, 1]) - jet_phi + np.pi) % (2 * np.pi) - np.pi
        features = np.zeros((keep, 7), dtype=np.float32)
        features[: len(parts)] = np.stack([np.log(pt), np.log(parts[:, 0]), deta, dphi,
            np.log(pt / jet_pt), np.log(parts[:, 0] / total[0]), np.hypot(deta, dphi)], axis=1)
        points = np.stack([deta, dphi], axis=1)
        distance = ((points[:, None] - points[None]) ** 2).sum(-1)
        np.fill_diagonal(distance, np.inf)
        neighbours = np.argsort(distance, axis=1)[:, :k]
        return features, neighbours

    started = time.perf_counter()
    for jet in range(n):
        one_jet(np.asarray(constituents[jet], dtype=np.float64))
    _result = {"seconds": time.perf_counter() - started, "jets": n}
    """
)

WARM = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from pd4ml import TopTagging
    from pd4ml.config import Settings
    from pd4ml.testing.synthetic import synthetic_variant
    files = {"train.h5": sys.argv[2]}
    dataset = synthetic_variant(TopTagging, "http://127.0.0.1:9", 2603256, files)
    started = time.perf_counter()
    X, y = dataset.load("train", settings=Settings(data_dir=Path(sys.argv[1]), offline=True))
    seconds = time.perf_counter() - started
    _result = {"seconds": seconds, "jets": int(X[0].shape[0]), "first_label": int(y[0])}
    """
)


def tiled_constituents(n_jets: int, path: Path, seed: int = 0) -> np.ndarray:
    from pd4ml.testing.synthetic import top_tagging_jets

    sample, _, _ = top_tagging_jets(min(n_jets, 20_000), seed)
    output = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n_jets, 200, 4))
    for start in range(0, n_jets, len(sample)):
        stop = min(start + len(sample), n_jets)
        output[start:stop] = sample[: stop - start]
    output.flush()
    return sample


def write_official_file(n_jets: int, path: Path) -> None:
    import pandas as pd

    from pd4ml.datasets.top_tagging import CONSTITUENT_COLUMNS, TRUTH_COLUMNS
    from pd4ml.testing.synthetic import top_tagging_jets

    block = 50_000
    sample, labels, truth = top_tagging_jets(min(block, n_jets), 1)
    frame = pd.DataFrame(sample.reshape(len(sample), -1), columns=CONSTITUENT_COLUMNS)
    for index, name in enumerate(TRUTH_COLUMNS):
        frame[name] = truth[:, index]
    frame["ttv"] = np.zeros(len(sample), dtype=np.int64)
    frame["is_signal_new"] = labels
    with pd.HDFStore(path, mode="w", complevel=1, complib="zlib") as store:
        for start in range(0, n_jets, block):
            chunk = frame.iloc[: min(block, n_jets - start)].copy()
            chunk.index = np.arange(start, start + len(chunk))
            store.append("table", chunk, format="table", index=False)


def measure(source: Path, root: Path, args: argparse.Namespace, busy: bool) -> dict[str, float]:
    """Every features + kNN figure (jets/s) and peak RSS, idle or under a competing load."""
    label = "busy" if busy else "idle"
    figures: dict[str, float] = {}
    figures["load_average"] = os.getloadavg()[0]  # other users of the machine, before
    with competing_load(busy) as spinners:
        figures["spinners"] = spinners
        for name, jets, reference in (
            ("compiled", args.prepare_jets, False),
            ("reference", args.reference_jets, True),
        ):
            output = root / f"prepared-{name}-{label}"
            result = run_child(PREPARE, str(source), str(output), str(jets), reference=reference)
            figures[name] = result["jets"] / result["seconds"]
            figures[f"{name}_rss"] = result["peak_rss_mb"]
            if name == "compiled":
                figures["output_bytes"] = sum(
                    path.stat().st_size
                    for path in output.rglob("*.npy")
                    if path.parent.parent.name != "warm"
                )
            for path in sorted(output.rglob("*.npy")):
                path.unlink()
        compute = run_child(COMPUTE, str(source), str(args.prepare_jets))
        figures["compute"] = compute["jets"] / compute["seconds"]
        figures["compute_rss"] = compute["peak_rss_mb"]
        write = run_child(WRITE, str(int(figures["output_bytes"])), str(root / "write-test.bin"))
        (root / "write-test.bin").unlink()
        figures["write"] = args.prepare_jets / write["seconds"]
        figures["write_gbs"] = figures["output_bytes"] / write["seconds"] / 1e9
        baseline = run_child(BASELINE, str(source), str(args.baseline_jets))
        figures["baseline"] = baseline["jets"] / baseline["seconds"]
        figures["baseline_rss"] = baseline["peak_rss_mb"]
    return figures


TARGET = 50_000  # jets/s, default install, features + kNN end to end


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prepare-jets", type=int, default=200_000, help="compiled path")
    parser.add_argument("--reference-jets", type=int, default=20_000, help="NumPy path")
    parser.add_argument("--baseline-jets", type=int, default=2_000, help="per-jet loop")
    parser.add_argument("--load-jets", type=int, default=1_000_000, help="0: no warm load")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pd4ml-bench-top-", dir=args.workdir) as scratch:
        root = Path(scratch)
        source = root / "constituents.npy"
        tiled_constituents(max(args.prepare_jets, args.reference_jets, args.baseline_jets), source)
        idle = measure(source, root, args, busy=False)
        busy = measure(source, root, args, busy=True)
        input_mb = source.stat().st_size / 1e6
        print(
            f"features + kNN (k=7, 100 constituents), input {input_mb:.0f} MB memory-mapped, "
            f"output {idle['output_bytes'] / 1e6:.0f} MB of .npy files for "
            f"{args.prepare_jets} jets; {os.cpu_count()} cores; busy = "
            f"{int(busy['spinners'])} competing spinning processes"
        )
        print(f"  {'jets/s':<58}{'idle':>10}{'busy':>10}   peak RSS (idle)")
        rows = [
            (
                f"default install (numba), memory map -> .npy files, {args.prepare_jets} jets",
                "compiled",
            ),
            (
                f"NumPy reference (PD4ML_NO_NUMBA=1), same, {args.reference_jets} jets",
                "reference",
            ),
            ("default install, compute only (no file output)", "compute"),
            ("writing the output bytes alone (page-cache floor)", "write"),
            (f"baseline: per-jet NumPy loop, {args.baseline_jets} jets", "baseline"),
        ]
        for text, key in rows:
            rss = (
                f"{idle[key + '_rss']:.0f} MB"
                if key + "_rss" in idle
                else (f"{idle['write_gbs']:.2f} GB/s idle")
            )
            print(f"  {text:<58}{idle[key]:>10.0f}{busy[key]:>10.0f}   {rss}")
        print(f"  {'target: default install end to end':<58}{TARGET:>10}{TARGET:>10}")
        print(
            f"  {'1-minute load average before the phase':<58}"
            f"{idle['load_average']:>10.1f}{busy['load_average']:>10.1f}"
        )
        for label, figures in (("idle", idle), ("busy", busy)):
            verdict = "meets" if figures["compiled"] >= TARGET else "MISSES"
            print(
                f"  {label}: default install {figures['compiled'] / figures['baseline']:.1f}x the "
                f"per-jet loop, {figures['compiled'] / figures['reference']:.1f}x the NumPy "
                f"reference; {verdict} the target"
            )
        source.unlink()
        if args.load_jets <= 0:
            return 0

        from pd4ml import TopTagging
        from pd4ml.config import Settings
        from pd4ml.testing import ArchiveServer
        from pd4ml.testing.synthetic import synthetic_variant

        official = root / "train.h5"
        started = time.perf_counter()
        write_official_file(args.load_jets, official)
        print(
            f"\nwrote a {args.load_jets}-jet official-layout file ({official.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - started:.0f} s"
        )
        cache = root / "cache"
        with ArchiveServer() as server:
            server.add_zenodo_record(2603256, {"train.h5": official})
            dataset = synthetic_variant(TopTagging, server.url, 2603256, {"train.h5": official})
            started = time.perf_counter()
            dataset.load("train", settings=Settings(data_dir=cache, progress="off"))
            cold = time.perf_counter() - started
        warm = run_child(WARM, str(cache), str(official))
        print(f"cold load (download + sha256 + convert): {cold:.1f} s")
        print(
            f"warm load('train') of {warm['jets']} jets: {warm['seconds'] * 1000:.1f} ms, peak RSS {warm['peak_rss_mb']:.0f} MB (whole process)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
