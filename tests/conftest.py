"""Shared fixtures: the loopback archive server, isolated settings, test manifests."""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pd4ml.config import RetryPolicy, Settings
from pd4ml.manifest import DatasetManifest, parse_manifest
from pd4ml.testing import ArchiveServer

FAST_RETRY = RetryPolicy(
    max_attempts=4, backoff_initial=0.01, backoff_max=0.05, connect_timeout=5, read_timeout=10
)


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's PD4ML_* variables or writes to the real user cache."""
    for name in list(os.environ):
        if name.startswith("PD4ML_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PD4ML_DATA_DIR", str(tmp_path / "user-cache"))
    monkeypatch.setenv("PD4ML_PROGRESS", "off")


@pytest.fixture
def server() -> Iterator[ArchiveServer]:
    """A started loopback archive server."""
    with ArchiveServer() as archive:
        yield archive


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings with an empty cache under tmp_path and fast retries."""
    return Settings(data_dir=tmp_path / "cache", retry=FAST_RETRY, progress="off")


def write_random_file(path: Path, size: int, seed: int = 0) -> Path:
    """``size`` pseudo-random bytes (incompressible, reproducible)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    generator = np.random.default_rng(seed)
    with open(path, "wb") as handle:
        remaining = size
        while remaining:
            block = min(remaining, 8 << 20)
            handle.write(generator.integers(0, 256, block, dtype=np.uint8).tobytes())
            remaining -= block
    return path


def file_digest(path: Path, algorithm: str = "md5") -> str:
    """``algorithm:hex`` of a file (computed independently of pd4ml's hashing code)."""
    data = path.read_bytes()
    if algorithm == "adler32":
        return f"adler32:{zlib.adler32(data, 1) & 0xFFFFFFFF:08x}"
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def make_manifest(
    source: Mapping[str, Any],
    files: Mapping[str, Path | None],
    *,
    name: str = "testdata",
    checksum_origin: str = "published",
    algorithm: str = "md5",
    extra_file_fields: Mapping[str, Any] | None = None,
    synthetic: bool = True,
) -> DatasetManifest:
    """A one-version manifest for files served by a test; sizes/checksums pinned from disk."""
    entries = []
    for key, path in files.items():
        entry: dict[str, Any] = {"key": key, "checksum_origin": checksum_origin}
        if path is not None:
            entry["size"] = path.stat().st_size
            if checksum_origin in ("published", "third-party"):
                entry["checksums"] = [file_digest(path, algorithm)]
        entry.update(extra_file_fields or {})
        entries.append(entry)
    return parse_manifest(
        {
            "name": name,
            "display_name": name.title(),
            "task": "classification",
            "licence": "CC0-1.0",
            "description": "test data",
            "version": [
                {
                    "name": "v1",
                    "title": "test version",
                    "synthetic": synthetic,
                    "source": dict(source),
                    "file": entries,
                }
            ],
        }
    )


def zenodo_manifest(
    server: ArchiveServer, record: int, files: Mapping[str, Path], **kwargs: Any
) -> DatasetManifest:
    """Serve ``files`` as a Zenodo record and return a manifest pointing at it."""
    server.add_zenodo_record(record, files)
    source = {"kind": "zenodo", "record": str(record), "base_url": server.url}
    return make_manifest(source, dict(files), **kwargs)


SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared_file(*parts: str) -> Path:
    """A file of the project's shared real-data samples (``../shared/data``, beside the clone)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        message = (
            f"the shared real-data sample {path} is missing: it lives in ../shared/data beside "
            "the clone (see Development in the README)"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + "; under CI=true a missing sample fails the run")
        pytest.skip(message)
    return path
