"""Benchmark: loopback download with checksum vs. a plain copy of the same file on the same disk.

    python benchmarks/bench_fetch.py                 # 1 GB file (the target: ≥ 50 % of copy speed)
    python benchmarks/bench_fetch.py --size-mb 200   # scaled down
    python benchmarks/bench_fetch.py --algorithm md5

Both figures are measured in the same run, on the same disk, after the source file was written
once (so both read it from the page cache). The download goes through the real path: record
→ HTTP GET from the loopback archive server → streaming checksum → fsync → atomic rename →
stamp. The copy is ``shutil.copyfile`` followed by ``fsync``, for a like-for-like comparison.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from pd4ml.config import Settings
from pd4ml.fetch import Fetcher
from pd4ml.manifest import parse_manifest
from pd4ml.testing import ArchiveServer


def write_source(path: Path, size: int) -> str:
    """Write ``size`` random bytes and return their sha256/md5 digests (one pass)."""
    generator = np.random.default_rng(0)
    digests = {"sha256": hashlib.sha256(), "md5": hashlib.md5(usedforsecurity=False)}
    with open(path, "wb") as handle:
        remaining = size
        while remaining:
            block = generator.integers(0, 256, min(remaining, 16 << 20), dtype=np.uint8).tobytes()
            handle.write(block)
            for digest in digests.values():
                digest.update(block)
            remaining -= len(block)
    return json.dumps({name: digest.hexdigest() for name, digest in digests.items()})


def timed_copy(source: Path, target: Path) -> float:
    started = time.perf_counter()
    shutil.copyfile(source, target)
    with open(target, "rb+") as handle:
        os.fsync(handle.fileno())
    return time.perf_counter() - started


def timed_download(
    server: ArchiveServer, source: Path, digest: str, algorithm: str, cache: Path
) -> float:
    manifest = parse_manifest(
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
                    "source": {"kind": "zenodo", "record": "1", "base_url": server.url},
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
    started = time.perf_counter()
    Fetcher(Settings(data_dir=cache, progress="off")).fetch(manifest)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=int, default=1000, help="file size in MB (default 1000)")
    parser.add_argument("--algorithm", choices=["sha256", "md5", "adler32"], default="sha256")
    parser.add_argument("--repeat", type=int, default=3, help="best of N for both (default 3)")
    parser.add_argument("--workdir", default=None, help="directory on the disk to measure")
    args = parser.parse_args()
    size = args.size_mb * 1_000_000
    with tempfile.TemporaryDirectory(prefix="pd4ml-bench-", dir=args.workdir) as scratch:
        root = Path(scratch)
        source = root / "payload.bin"
        digests = json.loads(write_source(source, size))
        if args.algorithm == "adler32":
            import zlib

            value = 1
            with open(source, "rb") as handle:
                while block := handle.read(16 << 20):
                    value = zlib.adler32(block, value)
            digests["adler32"] = f"{value & 0xFFFFFFFF:08x}"
        copies, downloads = [], []
        with ArchiveServer() as server:
            server.add_zenodo_record(1, {source.name: source})
            for attempt in range(args.repeat):
                copy_target = root / f"copy-{attempt}.bin"
                copies.append(timed_copy(source, copy_target))
                copy_target.unlink()
                cache = root / f"cache-{attempt}"
                downloads.append(
                    timed_download(server, source, digests[args.algorithm], args.algorithm, cache)
                )
                shutil.rmtree(cache)
        copy_speed = size / min(copies) / 1e6
        download_speed = size / min(downloads) / 1e6
        print(
            f"file: {args.size_mb} MB, checksum {args.algorithm}, best of {args.repeat}, "
            f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
        )
        print(f"plain copy (copyfile + fsync):        {copy_speed:8.1f} MB/s")
        print(f"loopback download + {args.algorithm:<7} + fsync:  {download_speed:8.1f} MB/s")
        print(
            f"ratio download / copy:                {download_speed / copy_speed:8.2f}"
            "  (target >= 0.50)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
