"""A full disk: a DiskFullError naming the path, the bytes and the remedy; the partial resumes."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path
from typing import Any

import pytest

import pd4ml.fetch.http
from pd4ml.cache import Cache
from pd4ml.cli import main
from pd4ml.config import Settings
from pd4ml.errors import DiskFullError, Pd4mlError
from pd4ml.fetch import Fetcher
from pd4ml.testing import ArchiveServer
from tests.conftest import file_digest, write_random_file, zenodo_manifest

MIB = 1 << 20


class _FillingFile:
    """A real file whose writes fail with ENOSPC once ``capacity`` bytes were written."""

    def __init__(self, handle: Any, capacity: int) -> None:
        self._handle = handle
        self._capacity = capacity

    def write(self, data: bytes) -> int:
        if self._handle.tell() + len(data) > self._capacity:
            raise OSError(errno.ENOSPC, "No space left on device")
        return int(self._handle.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    def __enter__(self) -> _FillingFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._handle.close()


def fill_disk_after(monkeypatch: pytest.MonkeyPatch, capacity: int) -> None:
    """Make the download's partial file refuse writes beyond ``capacity`` bytes."""

    def filling_open(file: Any, *args: Any, **kwargs: Any) -> _FillingFile:
        return _FillingFile(open(file, *args, **kwargs), capacity)

    monkeypatch.setattr(pd4ml.fetch.http, "open", filling_open, raising=False)


def fake_free_space(monkeypatch: pytest.MonkeyPatch, free: int) -> None:
    def disk_usage(path: Any) -> Any:
        return shutil._ntuple_diskusage(10 * free + 1, 9 * free + 1, free)

    monkeypatch.setattr(shutil, "disk_usage", disk_usage)


@pytest.fixture
def served(tmp_path: Path) -> Path:
    return write_random_file(tmp_path / "served" / "train.h5", 5 * MIB + 123, seed=31)


def test_disk_full_mid_download_is_a_pd4ml_error_and_the_partial_resumes(
    monkeypatch: pytest.MonkeyPatch, server: ArchiveServer, settings: Settings, served: Path
) -> None:
    manifest = zenodo_manifest(server, 300, {"train.h5": served})
    fill_disk_after(monkeypatch, 2 * MIB)
    with pytest.raises(DiskFullError) as caught:
        Fetcher(settings).fetch(manifest)
    error = caught.value
    assert isinstance(error, Pd4mlError) and isinstance(error, OSError)
    assert error.errno == errno.ENOSPC
    part = Cache(settings).state_path(
        Cache(settings).raw_path("testdata", "v1", "train.h5"), ".part"
    )
    message = str(error)
    assert str(part) in message and "PD4ML_DATA_DIR" in message
    assert f"{served.stat().st_size - 2 * MIB} bytes) still needed" in message
    assert "free" in message and "resumes" in message
    assert part.stat().st_size == 2 * MIB, "the received bytes must stay for a resume"

    monkeypatch.undo()  # room again
    monkeypatch.setenv("PD4ML_PROGRESS", "off")
    local = Fetcher(settings).fetch(manifest)["train.h5"]
    assert local.checksum == file_digest(served)
    ranges = [entry.range for entry in server.requests if entry.path.endswith("train.h5")]
    assert ranges == [None, f"bytes={2 * MIB}-"], "the second download must resume"


def test_known_size_larger_than_free_space_fails_before_downloading(
    monkeypatch: pytest.MonkeyPatch, server: ArchiveServer, settings: Settings, served: Path
) -> None:
    manifest = zenodo_manifest(server, 301, {"train.h5": served})
    fake_free_space(monkeypatch, 1_000_000)
    with pytest.raises(DiskFullError) as caught:
        Fetcher(settings).fetch(manifest)
    message = str(caught.value)
    assert f"({served.stat().st_size} bytes) still needed" in message
    assert "1.00 MB (1000000 bytes) free" in message and "PD4ML_DATA_DIR" in message
    assert server.count("*/train.h5") == 0, "nothing may be downloaded that cannot fit"


def test_disk_full_copying_from_a_local_mirror(
    monkeypatch: pytest.MonkeyPatch,
    server: ArchiveServer,
    settings: Settings,
    served: Path,
    tmp_path: Path,
) -> None:
    manifest = zenodo_manifest(server, 302, {"train.h5": served})
    mirror = tmp_path / "mirror"
    (mirror / "testdata" / "v1").mkdir(parents=True)
    shutil.copyfile(served, mirror / "testdata" / "v1" / "train.h5")
    fake_free_space(monkeypatch, 4096)
    with pytest.raises(DiskFullError, match="PD4ML_DATA_DIR"):
        Fetcher(settings.with_changes(mirrors=(str(mirror),))).fetch(manifest)
    assert server.count(method=None) == 0, "a full disk is not a reason to try the next source"


def test_cli_reports_a_full_disk_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
    server: ArchiveServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    files = {
        key: write_random_file(tmp_path / "srv" / key, 10_000 + i, seed=i)
        for i, key in enumerate(("train.h5", "val.h5", "test.h5"))
    }
    server.add_zenodo_record(2603256, files)
    monkeypatch.setenv("PD4ML_ZENODO_URL", server.url)
    fake_free_space(monkeypatch, 100)
    code = main(["--data-dir", str(tmp_path / "c"), "download", "top_tagging"])
    err = capsys.readouterr().err
    assert code == 1
    assert "not enough disk space" in err and "PD4ML_DATA_DIR" in err and "100 bytes free" in err
    assert "Traceback" not in err and "Errno 28" not in err
