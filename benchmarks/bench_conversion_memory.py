"""Peak anonymous memory of converting and preparing each dataset, at two input sizes.

For every dataset the benchmark writes synthetic raw files in the official layout
(:mod:`pd4ml.testing.synthetic`) at a small and a large size (the large one 4× the events),
serves them from the loopback archive server (in this process), and runs each stage in a fresh
child process:

* ``convert``: ``load(split)`` of every split (fetch + conversion to ``.npy``);
* ``prepare``: ``load_data(split)`` of every split (statistics fitted on train + preprocessing);
* ``prepare graph``: ``load_data(split, graph=True)`` where the dataset has a graph;
* ``prepare voxels`` (CALICE AHCAL): ``load_data(split, representation="voxels")``.

The child samples ``RssAnon`` from ``/proc/self/status`` every 10 ms in a thread and reports
the highest value: anonymous memory (heap, NumPy buffers), not the file-backed pages of memory
maps, which the kernel can drop at any time. The figure of merit is that this peak stays under
the target (500 MB) whatever the size, i.e. the ratio large/small stays near 1 while the
written output grows 4×. The large size is also run under a competing CPU load (one busy
process per core, started by the benchmark).

Synthetic events are generated for a few hundred distinct events and repeated to the requested
count (the generators loop in Python; memory use does not depend on the values), the HiggsML
CSV formats those rows once and repeats them (gzip level 1), and npz files are written
uncompressed unless ``--compressed`` (the converters stream both). The default sizes make each
large case write about 200 MB or more, except HiggsML, whose large case is the size of the
real dataset (800,000 of its 818,238 events).

    python benchmarks/bench_conversion_memory.py                 # all datasets, default sizes
    python benchmarks/bench_conversion_memory.py --scale 0.25    # quicker, smaller
    python benchmarks/bench_conversion_memory.py --datasets airshower,calice_ahcal
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

TARGET_MB = 500.0
SIZE_RATIO = 4
DISTINCT = 256  # distinct synthetic events, repeated to the requested count


@dataclass(frozen=True)
class Case:
    """How to write and serve one dataset's synthetic raw files."""

    dataset: str  # pd4ml class name
    small: int  # events of the small size (the large is SIZE_RATIO × this)
    stages: tuple[tuple[str, dict[str, Any]], ...]
    kind: str = "zenodo"
    template_version: str | None = None


PREPARE: tuple[str, dict[str, Any]] = ("prepare", {})
GRAPH: tuple[str, dict[str, Any]] = ("prepare graph", {"graph": True})
CASES: dict[str, Case] = {
    "top_tagging": Case("TopTagging", 16_000, (PREPARE, GRAPH)),
    "higgsml": Case("HiggsML", 200_000, (PREPARE,), kind="cernopendata"),
    "smartbkg": Case("SmartBKG", 20_000, (PREPARE, GRAPH), template_version="pd4ml-2021"),
    "spinodal": Case("Spinodal", 40_000, (PREPARE, GRAPH), template_version="pd4ml-2021"),
    "eos": Case("EOS", 40_000, (PREPARE, GRAPH), template_version="pd4ml-2021"),
    "airshower": Case("Airshower", 4_000, (PREPARE, GRAPH), template_version="pd4ml-2021"),
    "calice_ahcal": Case(
        "CaliceAHCAL",
        6_500,
        (PREPARE, GRAPH, ("prepare voxels", {"representation": "voxels"})),
        template_version="sps-2018-numpy",
    ),
    "ild_photon_showers": Case("ILDPhotonShowers", 800, (PREPARE,)),
}


# -- synthetic inputs ---------------------------------------------------------------------------
def _cycled(generate: Callable[..., Any], per_event: tuple[int, ...]) -> Callable[..., Any]:
    """``generate(n, seed)`` computing only ``DISTINCT`` events and repeating them to ``n``."""

    def wrapper(n: int, seed: int = 0) -> Any:
        made = generate(min(n, DISTINCT), seed)
        single = not isinstance(made, tuple)
        parts = list((made,) if single else made)
        for index in per_event:
            part = parts[index]
            rows = np.arange(n) % len(part)
            parts[index] = [part[i] for i in rows] if isinstance(part, list) else part[rows]
        return parts[0] if single else tuple(parts)

    return wrapper


def _cycled_columns(generate: Callable[..., dict[str, np.ndarray]]) -> Callable[..., Any]:
    def wrapper(n: int, seed: int = 0) -> dict[str, np.ndarray]:
        columns = generate(min(n, 4 * DISTINCT), seed)
        rows = np.arange(n) % len(next(iter(columns.values())))
        return {name: values[rows] for name, values in columns.items()}

    return wrapper


def _write_higgsml_csv(path: Path, n_events: int, seed: int = 0) -> Path:
    """The official-layout gzip CSV of ``n_events`` events: ``4 × DISTINCT`` distinct events
    formatted once (as :func:`pd4ml.testing.synthetic.write_higgsml_csv` formats them) and
    repeated, each row with its own ``EventId``; gzip level 1 (formatting and compressing
    every row at level 9 took a minute per 400,000 events and measures nothing)."""
    import gzip

    columns = _ORIGINAL_HIGGSML_EVENTS[0](min(n_events, 4 * DISTINCT), seed)
    formatted = []
    for name, values in columns.items():
        if name == "EventId":
            continue
        if values.dtype.kind in "iU":
            formatted.append(values.astype(str))
        else:
            rounded = np.round(values, 3) if name not in ("Weight", "KaggleWeight") else values
            formatted.append(np.char.mod("%.6g", rounded))
    tails = ["," + ",".join(row) + "\n" for row in zip(*formatted, strict=True)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="ascii", newline="", compresslevel=1) as stream:
        stream.write(",".join(columns) + "\n")
        step = 65_536
        for start in range(0, n_events, step):
            stream.write(
                "".join(
                    f"{100_000 + row}{tails[row % len(tails)]}"
                    for row in range(start, min(start + step, n_events))
                )
            )
    return path


_ORIGINAL_HIGGSML_EVENTS: list[Callable[..., dict[str, np.ndarray]]] = []


_PATCHED: list[bool] = []


def _patch_generators(compressed: bool) -> None:
    """Make the synthetic generators of this (parent) process repeat ``DISTINCT`` events."""
    from pd4ml.testing import synthetic

    if _PATCHED:
        return
    _ORIGINAL_HIGGSML_EVENTS.append(synthetic.higgsml_events)
    patches: dict[str, Callable[..., Any]] = {
        "top_tagging_jets": _cycled(synthetic.top_tagging_jets, (0, 1, 2)),
        "smartbkg_events": _cycled(synthetic.smartbkg_events, (0, 1, 2)),
        "spinodal_histograms": _cycled(synthetic.spinodal_histograms, (0, 1)),
        "eos_spectra": _cycled(synthetic.eos_spectra, (0, 1)),
        "airshower_events": _cycled(synthetic.airshower_events, (0, 1, 3)),
        "photon_showers": _cycled(synthetic.photon_showers, (0, 1)),
        "ahcal_showers": _cycled(synthetic.ahcal_showers, (0, 1)),
        "higgsml_events": _cycled_columns(synthetic.higgsml_events),
    }
    for name, function in patches.items():
        setattr(synthetic, name, function)
    if not compressed:
        np.savez_compressed = np.savez  # this process only
    _PATCHED.append(True)


def write_raw_files(name: str, n_events: int, folder: Path, compressed: bool) -> dict[str, Path]:
    """Synthetic raw files of ``name`` with about ``n_events`` events in total."""
    from pd4ml.testing import synthetic

    _patch_generators(compressed)
    folder.mkdir(parents=True, exist_ok=True)
    train, test = (n_events * 7) // 10, n_events - (n_events * 7) // 10
    if name == "top_tagging":
        counts = {"train.h5": (n_events * 6) // 10, "val.h5": n_events // 5}
        counts["test.h5"] = n_events - sum(counts.values())
        return {
            key: synthetic.write_top_tagging_h5(
                folder / key, count, seed=index, layout="fixed", ttv=(0, 2, 1)[index]
            )
            for index, (key, count) in enumerate(counts.items())
        }
    if name == "higgsml":
        key = "atlas-higgs-challenge-2014-v2.csv.gz"
        return {key: _write_higgsml_csv(folder / key, n_events, seed=5)}
    if name == "smartbkg":
        key = "6_belle_selective_400k.npz"
        return {key: synthetic.write_smartbkg_npz(folder / key, train, test, seed=3)}
    if name in ("spinodal", "eos"):
        key = {"spinodal": "2_spinodal_29k.npz", "eos": "3_EOSL_or_EOSQ_180k.npz"}[name]
        return {key: synthetic.write_pd4ml_image_npz(folder / key, name, train, test, seed=2)}
    if name == "airshower":
        key = "4_airshower_100k_regression.npz"
        return {key: synthetic.write_airshower_npz(folder / key, train, test, seed=4)}
    if name == "calice_ahcal":
        key = "ahcal_pions_sps2018.npz"
        return {key: synthetic.write_ahcal_npz(folder / key, n_events, seed=2)}
    if name == "ild_photon_showers":
        key = "photons.hdf5"
        return {key: synthetic.write_photon_showers_hdf5(folder / key, n_events, seed=1)}
    raise ValueError(name)


# -- the measured child -------------------------------------------------------------------------
def rss_anon_mb() -> float:
    """``RssAnon`` of this process in MB (anonymous resident memory)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no RssAnon in /proc/self/status (Linux only)")


class PeakSampler:
    """Highest ``RssAnon`` seen by a thread sampling every ``interval`` seconds."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.peak = rss_anon_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_anon_mb())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_anon_mb())


def child(arguments: argparse.Namespace) -> None:
    import logging

    import pd4ml
    from pd4ml.config import Settings
    from pd4ml.testing.synthetic import synthetic_variant

    logging.getLogger("pd4ml").setLevel(logging.ERROR)
    case = CASES[arguments.dataset]
    files = {key: Path(value) for key, value in json.loads(arguments.files).items()}
    variant = synthetic_variant(
        getattr(pd4ml, case.dataset),
        arguments.server,
        arguments.record,
        files,
        template_version=case.template_version,
        kind=case.kind,
    )
    settings = Settings(data_dir=Path(arguments.cache), progress="off")
    params = json.loads(arguments.params)
    baseline = rss_anon_mb()
    started = time.monotonic()
    with PeakSampler() as sampler:
        for split in variant.splits:
            if arguments.stage == "convert":
                variant.load(split, settings=settings)
            else:
                variant.load_data(split, settings=settings, **params)
    result = {
        "peak_mb": sampler.peak,
        "baseline_mb": baseline,
        "seconds": time.monotonic() - started,
    }
    print("RESULT " + json.dumps(result))


# -- the parent ---------------------------------------------------------------------------------
@contextlib.contextmanager
def cpu_load(active: bool) -> Iterator[None]:
    """One busy process per core while active."""
    busy = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(len(os.sched_getaffinity(0)))
        if active
    ]
    try:
        yield
    finally:
        for process in busy:
            process.kill()
            process.wait()


def bytes_under(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*.npy") if path.is_file())


def run_stage(
    name: str,
    stage: str,
    params: dict[str, Any],
    files: dict[str, Path],
    server_url: str,
    record: int,
    cache: Path,
    loaded: bool,
) -> dict[str, Any]:
    before = bytes_under(cache) if cache.exists() else 0
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "--dataset", name,
        "--stage", stage,
        "--params", json.dumps(params),
        "--files", json.dumps({key: str(path) for key, path in files.items()}),
        "--server", server_url,
        "--record", str(record),
        "--cache", str(cache),
    ]  # fmt: skip
    environment = {**os.environ, "PD4ML_PROGRESS": "off"}
    with cpu_load(loaded):
        finished = subprocess.run(command, capture_output=True, text=True, env=environment)
    lines = [line for line in finished.stdout.splitlines() if line.startswith("RESULT ")]
    if finished.returncode != 0 or not lines:
        raise RuntimeError(f"{name} {stage} failed:\n{finished.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    result["output_mb"] = (bytes_under(cache) - before) / 1e6
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every size")
    parser.add_argument("--datasets", default=",".join(CASES), help="comma-separated names")
    parser.add_argument("--compressed", action="store_true", help="write compressed npz")
    parser.add_argument("--no-load", action="store_true", help="skip the runs under CPU load")
    parser.add_argument("--workdir", default=None, help="scratch folder (default: a temp dir)")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for hidden in ("dataset", "stage", "params", "files", "server", "record", "cache"):
        parser.add_argument(f"--{hidden}", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        child(arguments)
        return

    from pd4ml.testing import ArchiveServer

    names = [name.strip() for name in arguments.datasets.split(",") if name.strip()]
    unknown = sorted(set(names) - set(CASES))
    if unknown:
        parser.error(f"unknown dataset(s) {unknown}; known: {', '.join(CASES)}")
    workdir = Path(arguments.workdir or tempfile.mkdtemp(prefix="pd4ml-bench-memory-"))
    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    record = 7000
    with ArchiveServer() as server:
        for name in names:
            case = CASES[name]
            stages = (("convert", {}), *case.stages)
            sizes = {
                "small": max(int(case.small * arguments.scale), 200),
            }
            sizes["large"] = SIZE_RATIO * sizes["small"]
            measured: dict[tuple[str, str], dict[str, Any]] = {}
            for size, n_events in sizes.items():
                folder = workdir / name / size
                files = write_raw_files(name, n_events, folder / "raw", arguments.compressed)
                record += 1
                if case.kind == "cernopendata":
                    server.add_cernopendata_record(record, files)
                else:
                    server.add_zenodo_record(record, files)
                runs = [("idle", False)]
                if size == "large" and not arguments.no_load:
                    runs.append(("loaded", True))
                for label, loaded in runs:
                    cache = folder / f"cache-{label}"
                    for stage, params in stages:
                        measured[(size + "-" + label, stage)] = run_stage(
                            name, stage, params, files, server.url, record, cache, loaded
                        )
                    shutil.rmtree(cache, ignore_errors=True)
                shutil.rmtree(folder, ignore_errors=True)
            for stage, _ in stages:
                small = measured[("small-idle", stage)]
                large = measured[("large-idle", stage)]
                loaded_run = measured.get(("large-loaded", stage))
                rows.append(
                    {
                        "dataset": name,
                        "stage": stage,
                        "events_small": sizes["small"],
                        "events_large": sizes["large"],
                        "output_mb_large": large["output_mb"],
                        "peak_mb_small": small["peak_mb"],
                        "peak_mb_large": large["peak_mb"],
                        "ratio": large["peak_mb"] / small["peak_mb"],
                        "peak_mb_large_loaded": loaded_run["peak_mb"] if loaded_run else None,
                        "baseline_mb": large["baseline_mb"],
                        "seconds_large": large["seconds"],
                    }
                )
                print_row(rows[-1], header=len(rows) == 1)
    print(f"\ntotal {time.monotonic() - started:.0f} s; target: peak RssAnon <= {TARGET_MB:.0f} MB")
    if arguments.json:
        Path(arguments.json).write_text(json.dumps(rows, indent=1))
    if arguments.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


def print_row(row: dict[str, Any], header: bool) -> None:
    if header:
        print(
            "| dataset | stage | events small → large | output large (MB) | peak RssAnon small "
            "(MB) | peak large (MB) | large/small | large under CPU load (MB) | import "
            "baseline (MB) | target (MB) |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
    loaded = row["peak_mb_large_loaded"]
    verdict = "ok" if max(row["peak_mb_large"], loaded or 0) <= TARGET_MB else "OVER"
    print(
        f"| {row['dataset']} | {row['stage']} | {row['events_small']:,} → {row['events_large']:,} "
        f"| {row['output_mb_large']:.0f} | {row['peak_mb_small']:.0f} | "
        f"{row['peak_mb_large']:.0f} | {row['ratio']:.2f} | "
        f"{'-' if loaded is None else f'{loaded:.0f}'} | {row['baseline_mb']:.0f} | "
        f"≤ {TARGET_MB:.0f} ({verdict}) |",
        flush=True,
    )


if __name__ == "__main__":
    main()
