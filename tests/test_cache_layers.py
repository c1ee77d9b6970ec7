"""Offline mode, stamps (no re-hash on warm loads), the shared read-only layer, import."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import pd4ml.checksums
import pd4ml.fetch.fetcher
from pd4ml.cache import Cache
from pd4ml.config import Settings
from pd4ml.errors import ChecksumMismatchError, OfflineError, UnavailableError
from pd4ml.fetch import Fetcher
from pd4ml.manifest import DatasetManifest, get_manifest
from pd4ml.testing import ArchiveServer
from tests.conftest import file_digest, write_random_file, zenodo_manifest


@pytest.fixture
def served(tmp_path: Path) -> Path:
    return write_random_file(tmp_path / "served" / "data.h5", 2_000_000, seed=21)


@pytest.fixture
def manifest(server: ArchiveServer, served: Path) -> DatasetManifest:
    return zenodo_manifest(server, 200, {"data.h5": served})


def test_offline_with_empty_cache_fails_fast_with_remedies(
    server: ArchiveServer, settings: Settings, manifest: DatasetManifest
) -> None:
    offline = settings.with_changes(offline=True)
    started = time.monotonic()
    with pytest.raises(OfflineError) as caught:
        Fetcher(offline).fetch(manifest)
    assert time.monotonic() - started < 1.0
    message = str(caught.value)
    assert (
        "data.h5" in message
        and "pd4ml urls testdata" in message
        and "pd4ml import testdata" in message
    )
    assert server.count(method=None) == 0


def test_offline_env_variable(
    monkeypatch: pytest.MonkeyPatch, server: ArchiveServer, manifest: DatasetManifest
) -> None:
    monkeypatch.setenv("PD4ML_OFFLINE", "1")
    assert Settings.from_env().offline
    with pytest.raises(OfflineError):
        Fetcher().fetch(manifest)
    assert server.count(method=None) == 0


def test_offline_with_warm_cache_sends_no_request(
    server: ArchiveServer, settings: Settings, manifest: DatasetManifest
) -> None:
    Fetcher(settings).fetch(manifest)
    server.reset_log()
    local = Fetcher(settings.with_changes(offline=True)).fetch(manifest)["data.h5"]
    assert local.checksum.startswith("md5:")
    assert server.count(method=None) == 0


def test_warm_fetch_does_not_rehash(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, manifest: DatasetManifest
) -> None:
    Fetcher(settings).fetch(manifest)
    calls: list[str] = []

    def spy_hash_file(path: Path, algorithm: str, **kwargs: object) -> object:
        calls.append(str(path))
        return original(path, algorithm, **kwargs)

    original = pd4ml.checksums.hash_file
    monkeypatch.setattr(pd4ml.fetch.fetcher, "hash_file", spy_hash_file)
    opened: list[str] = []
    real_open = open

    def spy_open(file: object, *args: object, **kwargs: object) -> object:
        opened.append(str(file))
        return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr("builtins.open", spy_open)
    local = Fetcher(settings).fetch(manifest)["data.h5"]
    assert calls == []
    assert str(local.path) not in opened, "the data file itself must not be opened on a warm load"
    # control: without a stamp the same call must hash the file (so the spy above can see it)
    for location in Cache(settings).stamp_locations(local.path):
        location.unlink(missing_ok=True)
    Fetcher(settings).fetch(manifest)
    assert calls == [str(local.path)]


def test_changed_file_is_rehashed_and_replaced(
    server: ArchiveServer, settings: Settings, manifest: DatasetManifest, served: Path
) -> None:
    local = Fetcher(settings).fetch(manifest)["data.h5"]
    local.path.write_bytes(
        b"\0" * served.stat().st_size
    )  # same size, new mtime: stamp no longer matches
    again = Fetcher(settings).fetch(manifest)["data.h5"]
    assert again.path.read_bytes() == served.read_bytes()
    assert server.count("*/data.h5") == 2


def test_verify_rehashes_and_finds_silent_corruption(
    settings: Settings, manifest: DatasetManifest, served: Path
) -> None:
    local = Fetcher(settings).fetch(manifest)["data.h5"]
    assert Fetcher(settings).verify(manifest) == [("data.h5", local.path, "ok")]
    status = local.path.stat()
    with open(local.path, "r+b") as handle:  # flip a byte, keep size and mtime
        handle.seek(1000)
        byte = handle.read(1)
        handle.seek(1000)
        handle.write(bytes([byte[0] ^ 1]))
    os.utime(local.path, ns=(status.st_atime_ns, status.st_mtime_ns))
    ((key, path, result),) = Fetcher(settings).verify(manifest)
    assert key == "data.h5" and path == local.path and result.startswith("checksum")
    assert Cache(settings).read_stamp(local.path) is None  # the next load replaces it


def test_shared_layer_is_used_in_place(
    server: ArchiveServer,
    settings: Settings,
    manifest: DatasetManifest,
    served: Path,
    tmp_path: Path,
) -> None:
    shared_root = tmp_path / "group-share"
    Fetcher(Settings(data_dir=shared_root, progress="off")).fetch(manifest)  # an admin fills it
    server.reset_log()
    before = sorted(str(p) for p in shared_root.rglob("*"))
    local = Fetcher(settings.with_changes(shared_dirs=(shared_root,))).fetch(manifest)["data.h5"]
    assert local.path.is_relative_to(shared_root) and local.origin == "shared"
    assert not Cache(settings).raw_path("testdata", "v1", "data.h5").exists(), (
        "copied into the user cache"
    )
    assert sorted(str(p) for p in shared_root.rglob("*")) == before, "wrote into the shared layer"
    assert server.count(method=None) == 0


def test_shared_file_without_stamp_is_verified_once(
    server: ArchiveServer,
    settings: Settings,
    manifest: DatasetManifest,
    served: Path,
    tmp_path: Path,
) -> None:
    shared_root = tmp_path / "share"
    target = shared_root / "testdata" / "v1" / "raw" / "data.h5"
    target.parent.mkdir(parents=True)
    target.write_bytes(served.read_bytes())
    shared_settings = settings.with_changes(shared_dirs=(shared_root,))
    local = Fetcher(shared_settings).fetch(manifest)["data.h5"]
    assert local.path == target and server.count(method=None) == 0
    assert not (target.parent / ".pd4ml").exists(), "the shared layer must not be written"
    assert Cache(shared_settings).read_stamp(target) is not None  # stamp kept in the user cache


def test_wrong_file_in_shared_layer_is_ignored(
    server: ArchiveServer,
    settings: Settings,
    manifest: DatasetManifest,
    served: Path,
    tmp_path: Path,
) -> None:
    shared_root = tmp_path / "share"
    target = shared_root / "testdata" / "v1" / "raw" / "data.h5"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"x" * served.stat().st_size)
    local = Fetcher(settings.with_changes(shared_dirs=(shared_root,))).fetch(manifest)["data.h5"]
    assert local.origin == "archive" and local.path.read_bytes() == served.read_bytes()


def test_import_accepts_right_files(
    settings: Settings, manifest: DatasetManifest, served: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "downloaded-elsewhere"
    elsewhere.mkdir()
    (elsewhere / "data.h5").write_bytes(served.read_bytes())
    imported = Fetcher(settings.with_changes(offline=True)).import_directory(manifest, elsewhere)
    assert imported["data.h5"].origin == "import"
    local = Fetcher(settings.with_changes(offline=True)).fetch(manifest)["data.h5"]
    assert local.origin == "import" and local.checksum == file_digest(served)
    assert (elsewhere / "data.h5").exists()  # the user's copy is kept


def test_import_rejects_wrong_files_without_touching_the_cache(
    settings: Settings, manifest: DatasetManifest, served: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "downloaded-elsewhere"
    elsewhere.mkdir()
    (elsewhere / "data.h5").write_bytes(b"y" * served.stat().st_size)
    with pytest.raises(ChecksumMismatchError, match="nothing was placed"):
        Fetcher(settings).import_directory(manifest, elsewhere)
    assert not settings.data_dir.exists() or not any(settings.data_dir.rglob("data.h5*"))


def test_unpublished_dataset_names_the_remedy(settings: Settings) -> None:
    with pytest.raises(UnavailableError) as caught:
        Fetcher(settings).fetch(get_manifest("calice_ahcal"))
    message = str(caught.value)
    assert "No public archive record" in message
    assert "pd4ml import calice_ahcal" in message and "PD4ML_MIRROR" in message


def test_unsafe_dataset_or_version_names_rejected(settings: Settings) -> None:
    from pd4ml.errors import UnsafePathError

    with pytest.raises(UnsafePathError):
        Cache(settings).raw_path("../evil", "v1", "a")
    with pytest.raises(UnsafePathError):
        Cache(settings).raw_path("ok", "v1", "/etc/passwd")


def test_offline_import_of_an_unpinned_file_is_refused(
    server: ArchiveServer, settings: Settings, served: Path, tmp_path: Path
) -> None:
    manifest = zenodo_manifest(server, 210, {"data.h5": served}, checksum_origin="record-api")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "data.h5").write_bytes(b"z" * served.stat().st_size)
    with pytest.raises(ChecksumMismatchError, match="no checksum is known"):
        Fetcher(settings.with_changes(offline=True)).import_directory(manifest, elsewhere)
    assert server.count(method=None) == 0
    # online, the record API gives the checksum and the wrong file is refused too
    with pytest.raises(ChecksumMismatchError, match="nothing was placed"):
        Fetcher(settings).import_directory(manifest, elsewhere)
    assert not Cache(settings).record_path("testdata", "v1").exists(), (
        "a refused import wrote to the cache"
    )
