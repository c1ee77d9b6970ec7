"""Several processes, one download; killed processes do not block or corrupt anything."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from pd4ml.cache import Cache
from pd4ml.config import Settings
from pd4ml.fetch import Fetcher
from pd4ml.fetch.locking import exclusive
from pd4ml.testing import ArchiveServer, Fault
from tests.conftest import file_digest, write_random_file

ROOT = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from pd4ml.config import Settings
    from pd4ml.fetch import Fetcher
    from pd4ml.manifest import parse_manifest

    manifest = parse_manifest(json.loads(Path(sys.argv[1]).read_text()))
    local = Fetcher(Settings(data_dir=Path(sys.argv[2]), progress="off")).fetch(manifest)
    entry = next(iter(local.values()))
    print(json.dumps({"path": str(entry.path), "checksum": entry.checksum, "origin": entry.origin}))
    """
)


def manifest_json(server: ArchiveServer, record: int, file: Path, tmp_path: Path) -> Path:
    server.add_zenodo_record(record, {file.name: file})
    payload = {
        "name": "testdata",
        "task": "classification",
        "licence": "CC0",
        "description": "test",
        "version": [
            {
                "name": "v1",
                "title": "t",
                "source": {"kind": "zenodo", "record": str(record), "base_url": server.url},
                "file": [
                    {
                        "key": file.name,
                        "size": file.stat().st_size,
                        "checksums": [file_digest(file)],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(payload))
    return path


def start_child(manifest: Path, cache: Path) -> subprocess.Popen[str]:
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(manifest), str(cache)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
        cwd=ROOT,
    )


def test_eight_processes_download_once(server: ArchiveServer, tmp_path: Path) -> None:
    served = write_random_file(tmp_path / "served" / "train.h5", 4_000_000, seed=5)
    manifest = manifest_json(server, 300, served, tmp_path)
    server.inject(Fault.slow(bytes_per_second=1_000_000, times=None))  # ~4 s: all 8 overlap
    cache = tmp_path / "cache"
    children = [start_child(manifest, cache) for _ in range(8)]
    results = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert server.count("*/train.h5") == 1, server.requests
    assert {result["checksum"] for result in results} == {file_digest(served)}
    assert len({result["path"] for result in results}) == 1
    assert Path(results[0]["path"]).read_bytes() == served.read_bytes()


def test_lock_of_a_killed_process_does_not_block(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom pathlib import Path\n"
            "from pd4ml.fetch.locking import exclusive\n"
            "with exclusive(Path(sys.argv[1]), 'test'):\n"
            "    print('held', flush=True)\n"
            "    time.sleep(60)",
            str(lock),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    started = time.monotonic()
    with exclusive(lock, "test"):
        pass
    assert time.monotonic() - started < 2


def test_soft_lock_takes_over_from_a_dead_process(tmp_path: Path) -> None:
    from pd4ml.fetch.locking import _soft_lock

    lock = tmp_path / "y.lock.soft"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket

    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid}))
    started = time.monotonic()
    with _soft_lock(lock, "test"):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists() and time.monotonic() - started < 2
    assert list(tmp_path.iterdir()) == []


def test_soft_lock_takes_over_an_empty_leftover(tmp_path: Path) -> None:
    from pd4ml.fetch import locking

    lock = tmp_path / "z.lock.soft"
    lock.write_text("")
    os.utime(lock, (time.time() - 60, time.time() - 60))
    with locking._soft_lock(lock, "test"):
        assert json.loads(lock.read_text())["pid"] == os.getpid()


def test_download_killed_midway_leaves_no_final_file_and_resumes(
    server: ArchiveServer, tmp_path: Path
) -> None:
    served = write_random_file(tmp_path / "served" / "train.h5", 6_000_000, seed=6)
    manifest = manifest_json(server, 301, served, tmp_path)
    server.inject(Fault.slow(bytes_per_second=1_000_000))
    cache = tmp_path / "cache"
    child = start_child(manifest, cache)
    part = cache / "testdata" / "v1" / "raw" / ".pd4ml" / "train.h5.part"
    deadline = time.monotonic() + 30
    while (not part.exists() or part.stat().st_size < 1_000_000) and time.monotonic() < deadline:
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    final = cache / "testdata" / "v1" / "raw" / "train.h5"
    assert not final.exists()
    received = part.stat().st_size
    assert received >= 1_000_000
    settings = Settings(data_dir=cache, progress="off")
    from pd4ml.manifest import parse_manifest

    local = Fetcher(settings).fetch(parse_manifest(json.loads(manifest.read_text())))["train.h5"]
    assert local.checksum == file_digest(served)
    assert server.requests[-1].range == f"bytes={received}-"
    assert Cache(settings).read_stamp(final) is not None
