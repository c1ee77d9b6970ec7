"""Benchmark: pd4ml's verified download against two baselines, idle and under CPU load.

    python benchmarks/bench_fetch.py                  # 200 MB file, best of 3 (about a minute)
    python benchmarks/bench_fetch.py --size-mb 1000   # bigger file
    python benchmarks/bench_fetch.py --algorithm md5 --repeat 5

Three figures per condition, measured in the same run on the same disk, from the same source
file (written once, so every reader finds it in the page cache):

* **copyfile** — ``shutil.copyfile`` + ``fsync``: what the disk allows without a network.
* **requests loop** — the straightforward download: ``requests`` GET streamed in 1 MiB chunks,
  each hashed with ``hashlib`` and written, then ``fsync`` and ``os.replace``.
* **pd4ml fetch** — ``Fetcher.fetch`` of a manifest pinning the checksum: HTTP GET → streaming
  checksum → fsync → atomic rename → stamp. Target: at least 80 % of the requests loop.

The loopback archive server runs in a process of its own (``pd4ml.testing.server.main``),
so it does not share the measuring process's GIL. The *loaded* condition starts one busy process
per CPU core (``len(os.sched_getaffinity(0))``) before measuring and stops them afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import requests

from pd4ml.config import Settings
from pd4ml.fetch import Fetcher
from pd4ml.manifest import DatasetManifest, parse_manifest

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.80
CHUNK = 1 << 20
_SERVE = "import sys; from pd4ml.testing.server import main; sys.exit(main(sys.argv[1:]))"


class _Adler32:
    """``hashlib``-like adler32 (``zlib.adler32``), for ``--algorithm adler32``."""

    def __init__(self) -> None:
        self.value = 1

    def update(self, data: bytes) -> None:
        self.value = zlib.adler32(data, self.value)

    def hexdigest(self) -> str:
        return f"{self.value & 0xFFFFFFFF:08x}"


def new_hasher(algorithm: str) -> _Adler32 | hashlib._Hash:
    return _Adler32() if algorithm == "adler32" else hashlib.new(algorithm)


def write_source(path: Path, size: int, algorithm: str) -> str:
    """Write ``size`` random bytes (incompressible) and return their ``algorithm`` digest."""
    generator = np.random.default_rng(0)
    digest = new_hasher(algorithm)
    with open(path, "wb") as handle:
        remaining = size
        while remaining:
            block = generator.integers(0, 256, min(remaining, 16 << 20), dtype=np.uint8).tobytes()
            handle.write(block)
            digest.update(block)
            remaining -= len(block)
    return digest.hexdigest()


@contextlib.contextmanager
def server_process(source: Path) -> Iterator[str]:
    """The loopback archive server in its own process, serving ``source`` as Zenodo record 1."""
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [environment.get("PYTHONPATH")])]
    )
    process = subprocess.Popen(
        [sys.executable, "-c", _SERVE, "--zenodo-record", "1", str(source)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=environment,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError(f"the archive server did not start (said {url!r})")
        yield url
    finally:
        if process.stdin is not None:
            process.stdin.close()  # the server exits when its stdin closes
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def cpu_load(n_processes: int) -> Iterator[None]:
    """``n_processes`` busy-looping processes for the duration of the block."""
    busy = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n_processes)
    ]
    try:
        time.sleep(0.5)  # let them get scheduled
        yield
    finally:
        for process in busy:
            process.kill()
        for process in busy:
            process.wait()


def timed_copy(source: Path, scratch: Path) -> float:
    target = scratch / "copy.bin"
    started = time.perf_counter()
    shutil.copyfile(source, target)
    with open(target, "rb+") as handle:
        os.fsync(handle.fileno())
    elapsed = time.perf_counter() - started
    target.unlink()
    return elapsed


def timed_requests_loop(url: str, algorithm: str, digest: str, scratch: Path) -> float:
    """The straightforward download: stream, hash, write, fsync, rename."""
    part, target = scratch / "loop.bin.part", scratch / "loop.bin"
    started = time.perf_counter()
    hasher = new_hasher(algorithm)
    with requests.get(url, stream=True, timeout=(15, 60)) as response:
        response.raise_for_status()
        with open(part, "wb") as handle:
            for chunk in response.iter_content(CHUNK):
                hasher.update(chunk)
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
    if hasher.hexdigest() != digest:
        raise RuntimeError("the requests loop received wrong bytes")
    os.replace(part, target)
    elapsed = time.perf_counter() - started
    target.unlink()
    return elapsed


def benchmark_manifest(base_url: str, source: Path, algorithm: str, digest: str) -> DatasetManifest:
    return parse_manifest(
        {
            "name": "benchmark",
            "task": "classification",
            "licence": "CC0",
            "description": "random bytes",
            "version": [
                {
                    "name": "v1",
                    "title": "benchmark",
                    "synthetic": True,
                    "source": {"kind": "zenodo", "record": "1", "base_url": base_url},
                    "file": [
                        {
                            "key": source.name,
                            "size": source.stat().st_size,
                            "checksums": [f"{algorithm}:{digest}"],
                        }
                    ],
                }
            ],
        }
    )


def timed_fetch(manifest: DatasetManifest, scratch: Path) -> float:
    cache = scratch / "cache"
    started = time.perf_counter()
    with Fetcher(Settings(data_dir=cache, progress="off")) as fetcher:
        fetcher.fetch(manifest)
    elapsed = time.perf_counter() - started
    shutil.rmtree(cache)
    return elapsed


def measure(runs: dict[str, Callable[[], float]], repeat: int) -> dict[str, float]:
    """Best time of ``repeat`` interleaved rounds for each run, in seconds."""
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeat):
        for name, run in runs.items():
            best[name] = min(best[name], run())
    return best


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=int, default=200, help="file size in MB (default 200)")
    parser.add_argument("--algorithm", choices=["sha256", "md5", "adler32"], default="sha256")
    parser.add_argument("--repeat", type=int, default=3, help="best of N rounds (default 3)")
    parser.add_argument("--workdir", default=None, help="directory on the disk to measure")
    parser.add_argument(
        "--load-processes",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="busy processes for the loaded condition (default: one per core)",
    )
    args = parser.parse_args()
    size = args.size_mb * 1_000_000
    with tempfile.TemporaryDirectory(prefix="pd4ml-bench-", dir=args.workdir) as directory:
        scratch = Path(directory)
        source = scratch / "payload.bin"
        digest = write_source(source, size, args.algorithm)
        with server_process(source) as base_url:
            url = f"{base_url}/records/1/files/{source.name}?download=1"
            manifest = benchmark_manifest(base_url, source, args.algorithm, digest)
            runs = {
                "copyfile + fsync": lambda: timed_copy(source, scratch),
                f"requests + hashlib {args.algorithm} + fsync": lambda: timed_requests_loop(
                    url, args.algorithm, digest, scratch
                ),
                "pd4ml fetch": lambda: timed_fetch(manifest, scratch),
            }
            results = {"idle": measure(runs, args.repeat)}
            with cpu_load(args.load_processes):
                results[f"{args.load_processes} busy processes"] = measure(runs, args.repeat)
    print(
        f"file: {args.size_mb} MB, checksum {args.algorithm}, best of {args.repeat}, "
        f"{len(os.sched_getaffinity(0))} CPUs, Python {sys.version.split()[0]}, server in its own process"
    )
    names = list(runs)
    width = max(len(name) for name in names) + 2
    for condition, seconds in results.items():
        print(f"\n{condition}:")
        for name in names:
            print(f"  {name:<{width}} {size / seconds[name] / 1e6:8.1f} MB/s")
        loop, fetch = seconds[names[1]], seconds[names[2]]
        ratio = loop / fetch
        verdict = "met" if ratio >= TARGET else "NOT met"
        print(
            f"  {'pd4ml / requests loop':<{width}} {ratio:8.2f}    "
            f"(target >= {TARGET:.2f}: {verdict}; pd4ml / copyfile {seconds[names[0]] / fetch:.2f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
