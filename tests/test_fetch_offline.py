"""Offline means no network: local mirrors and shared layers still work; errors name remedies."""

from __future__ import annotations

from pathlib import Path

import pytest

from pd4ml.cache import Cache
from pd4ml.config import Settings
from pd4ml.errors import OfflineError
from pd4ml.fetch import Fetcher
from pd4ml.manifest import DatasetManifest, get_manifest
from pd4ml.testing import ArchiveServer
from tests.conftest import file_digest, make_manifest, write_random_file, zenodo_manifest


@pytest.fixture
def served(tmp_path: Path) -> Path:
    return write_random_file(tmp_path / "served" / "data.h5", 700_000, seed=51)


@pytest.fixture
def manifest(server: ArchiveServer, served: Path) -> DatasetManifest:
    return zenodo_manifest(server, 500, {"data.h5": served})


def local_mirror(root: Path, files: dict[str, bytes]) -> Path:
    """A ``PD4ML_MIRROR`` directory laid out as ``{base}/testdata/v1/{key}``."""
    for key, content in files.items():
        target = root / "testdata" / "v1" / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return root


@pytest.mark.parametrize("as_url", [False, True], ids=["directory", "file-url"])
def test_offline_uses_a_local_mirror_holding_the_file(
    monkeypatch: pytest.MonkeyPatch,
    server: ArchiveServer,
    manifest: DatasetManifest,
    served: Path,
    tmp_path: Path,
    as_url: bool,
) -> None:
    mirror = local_mirror(tmp_path / "mirror", {"data.h5": served.read_bytes()})
    monkeypatch.setenv("PD4ML_OFFLINE", "1")
    monkeypatch.setenv("PD4ML_MIRROR", mirror.as_uri() if as_url else str(mirror))
    local = Fetcher().fetch(manifest)["data.h5"]
    assert local.origin == "mirror" and local.checksum == file_digest(served)
    assert local.path.read_bytes() == served.read_bytes()
    assert server.count(method=None) == 0
    # and the copy is in the cache now: the next offline load needs no mirror
    monkeypatch.delenv("PD4ML_MIRROR")
    assert Fetcher().fetch(manifest)["data.h5"].path == local.path


def test_offline_skips_network_mirrors_but_not_local_ones(
    server: ArchiveServer,
    settings: Settings,
    manifest: DatasetManifest,
    served: Path,
    tmp_path: Path,
) -> None:
    server.add_file("mirror/testdata/v1/data.h5", served)
    mirror = local_mirror(tmp_path / "mirror", {"data.h5": served.read_bytes()})
    offline = settings.with_changes(
        offline=True, mirrors=(f"{server.url}/files/mirror", str(mirror))
    )
    local = Fetcher(offline).fetch(manifest)["data.h5"]
    assert local.origin == "mirror" and local.url == str(mirror / "testdata" / "v1" / "data.h5")
    assert server.count(method=None) == 0


def test_offline_with_a_mirror_lacking_the_file_names_it_and_the_remedy(
    server: ArchiveServer, settings: Settings, manifest: DatasetManifest, tmp_path: Path
) -> None:
    mirror = local_mirror(tmp_path / "mirror", {"other.h5": b"x"})
    offline = settings.with_changes(offline=True, mirrors=(str(mirror),))
    with pytest.raises(OfflineError) as caught:
        Fetcher(offline).fetch(manifest)
    message = str(caught.value)
    assert "data.h5" in message and str(mirror / "testdata" / "v1") in message
    assert "pd4ml urls testdata" in message and "pd4ml import testdata" in message
    assert server.count(method=None) == 0


def test_offline_wrong_file_in_a_local_mirror_is_refused(
    server: ArchiveServer,
    settings: Settings,
    manifest: DatasetManifest,
    served: Path,
    tmp_path: Path,
) -> None:
    mirror = local_mirror(tmp_path / "mirror", {"data.h5": b"y" * served.stat().st_size})
    offline = settings.with_changes(offline=True, mirrors=(str(mirror),))
    with pytest.raises(OfflineError, match="does not match the expected") as caught:
        Fetcher(offline).fetch(manifest)
    assert "pd4ml import testdata" in str(caught.value)
    assert not Cache(settings).raw_path("testdata", "v1", "data.h5").exists()
    assert server.count(method=None) == 0


def test_offline_mirror_copy_of_a_record_api_file_is_not_accepted_unverified(
    server: ArchiveServer, settings: Settings, served: Path, tmp_path: Path
) -> None:
    manifest = zenodo_manifest(server, 501, {"data.h5": served}, checksum_origin="record-api")
    mirror = local_mirror(tmp_path / "mirror", {"data.h5": served.read_bytes()})
    offline = settings.with_changes(offline=True, mirrors=(str(mirror),))
    with pytest.raises(OfflineError, match="no checksum is known"):
        Fetcher(offline).fetch(manifest)
    assert not Cache(settings).raw_path("testdata", "v1", "data.h5").exists()
    assert server.count(method=None) == 0


def test_offline_shared_layer_is_used(
    server: ArchiveServer,
    settings: Settings,
    manifest: DatasetManifest,
    served: Path,
    tmp_path: Path,
) -> None:
    shared = tmp_path / "group-share"
    Fetcher(Settings(data_dir=shared, progress="off")).fetch(manifest)
    server.reset_log()
    offline = settings.with_changes(offline=True, shared_dirs=(shared,))
    local = Fetcher(offline).fetch(manifest)["data.h5"]
    assert local.origin == "shared" and local.path.is_relative_to(shared)
    assert server.count(method=None) == 0


def test_offline_file_pattern_with_an_empty_cache_is_an_offline_error(
    server: ArchiveServer, settings: Settings, served: Path
) -> None:
    server.add_zenodo_record(502, {"2_spinodal_29k.npz": served, "other.h5": served})
    source = {"kind": "zenodo", "record": "502", "base_url": server.url}
    manifest = make_manifest(
        source, {"*.npz": None, "other.h5": served}, checksum_origin="record-api"
    )
    with pytest.raises(OfflineError) as caught:
        Fetcher(settings.with_changes(offline=True)).fetch(manifest)
    message = str(caught.value)
    assert "PD4ML_OFFLINE=1" in message and "'*.npz'" not in message  # one message for both
    assert "*.npz" in message and "other.h5" in message
    assert "pd4ml urls testdata" in message and "pd4ml import testdata" in message
    assert server.count(method=None) == 0
    # once online the pattern resolves from the record; offline it then comes from the cache
    Fetcher(settings).fetch(manifest)
    server.reset_log()
    local = Fetcher(settings.with_changes(offline=True)).fetch(manifest)
    assert set(local) == {"2_spinodal_29k.npz", "other.h5"} and server.count(method=None) == 0


def test_offline_spinodal_record_version_is_an_offline_error(settings: Settings) -> None:
    with pytest.raises(OfflineError) as caught:
        Fetcher(settings.with_changes(offline=True)).fetch(
            get_manifest("spinodal"), "zenodo-5710736"
        )
    message = str(caught.value)
    assert "*.npz" in message
    assert "pd4ml urls spinodal" in message and "pd4ml import spinodal DIR" in message


def test_verify_still_lists_an_unresolved_pattern_as_missing(
    server: ArchiveServer, settings: Settings, served: Path
) -> None:
    server.add_zenodo_record(503, {"a.npz": served})
    source = {"kind": "zenodo", "record": "503", "base_url": server.url}
    manifest = make_manifest(source, {"*.npz": None}, checksum_origin="record-api")
    results = Fetcher(settings.with_changes(offline=True)).verify(manifest)
    assert results == [("*.npz", None, "missing")]
