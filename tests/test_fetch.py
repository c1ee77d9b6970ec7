"""Download → verify against the loopback archive server, with every fault it can inject."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pd4ml.cache import Cache
from pd4ml.config import Settings
from pd4ml.errors import (
    ChecksumMismatchError,
    DownloadError,
    HtmlResponseError,
    SizeMismatchError,
    UnsafePathError,
)
from pd4ml.fetch import Fetcher
from pd4ml.manifest import DatasetManifest
from pd4ml.testing import ArchiveServer, Fault
from tests.conftest import file_digest, make_manifest, write_random_file, zenodo_manifest

MB = 1_000_000


class Sleeps:
    """Records the delays the fetcher asks for instead of sleeping."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def final_path(settings: Settings, manifest: DatasetManifest, key: str) -> Path:
    return Cache(settings).raw_path(manifest.name, manifest.version().name, key)


def assert_nothing_left(settings: Settings, manifest: DatasetManifest, key: str) -> None:
    final = final_path(settings, manifest, key)
    assert not final.exists(), "an unverified file was left under the final name"
    state = final.parent / ".pd4ml"
    assert not list(state.glob("*.part")) if state.exists() else True


@pytest.fixture
def big_file(tmp_path: Path) -> Path:
    return write_random_file(tmp_path / "served" / "train.h5", 50 * MB, seed=11)


@pytest.fixture
def small_file(tmp_path: Path) -> Path:
    return write_random_file(tmp_path / "served" / "small.h5", 300_000, seed=12)


def test_cold_download_verifies_and_stamps(
    server: ArchiveServer, settings: Settings, small_file: Path
) -> None:
    manifest = zenodo_manifest(server, 100, {"small.h5": small_file})
    local = Fetcher(settings).fetch(manifest)["small.h5"]
    assert local.origin == "archive"
    assert local.path.read_bytes() == small_file.read_bytes()
    assert local.checksum == file_digest(small_file)
    assert server.count("/records/100/files/small.h5") == 1
    again = Fetcher(settings).fetch(manifest)["small.h5"]
    assert again.path == local.path and again.origin == "archive"
    assert server.count() == 1, "a warm fetch must not touch the network"


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9])
def test_dropped_connection_is_resumed_with_range(
    server: ArchiveServer, settings: Settings, big_file: Path, fraction: float
) -> None:
    manifest = zenodo_manifest(server, 101, {"train.h5": big_file})
    drop_at = int(fraction * 50 * MB)
    server.inject(Fault.drop_after(drop_at, path="/records/101/files/train.h5"))
    local = Fetcher(settings, sleep=Sleeps()).fetch(manifest)["train.h5"]
    assert local.checksum == file_digest(big_file)
    ranges = [entry.range for entry in server.requests if entry.path.endswith("train.h5")]
    assert ranges[0] is None
    assert ranges[1] == f"bytes={drop_at}-", (
        "the second request must resume where the first stopped"
    )
    assert [entry.status for entry in server.requests] == [200, 206]
    assert sum(entry.bytes_sent for entry in server.requests) == 50 * MB


def test_repeated_drops_keep_resuming(
    server: ArchiveServer, settings: Settings, big_file: Path
) -> None:
    manifest = zenodo_manifest(server, 102, {"train.h5": big_file})
    server.inject(*(Fault.drop_after(7 * MB) for _ in range(6)))  # more drops than max_attempts
    local = Fetcher(settings, sleep=Sleeps()).fetch(manifest)["train.h5"]
    assert local.checksum == file_digest(big_file)
    assert server.count() == 7  # 6 drops after 7 MB each, then the last 8 MB


def test_server_ignoring_range_restarts_cleanly(
    server: ArchiveServer, settings: Settings, big_file: Path
) -> None:
    manifest = zenodo_manifest(server, 103, {"train.h5": big_file})
    server.inject(Fault.drop_after(20 * MB), Fault.ignore_range(times=None))
    local = Fetcher(settings, sleep=Sleeps()).fetch(manifest)["train.h5"]
    assert local.checksum == file_digest(big_file)
    assert [entry.status for entry in server.requests] == [200, 200]
    assert server.requests[1].range == f"bytes={20 * MB}-"


@pytest.mark.parametrize(("code", "delay"), [(503, 2), (429, 3)])
def test_retry_after_is_honoured(
    server: ArchiveServer, settings: Settings, small_file: Path, code: int, delay: int
) -> None:
    manifest = zenodo_manifest(server, 104, {"small.h5": small_file})
    server.inject(Fault.status(code, retry_after=delay), Fault.status(code, retry_after=delay))
    sleeps = Sleeps()
    local = Fetcher(settings, sleep=sleeps).fetch(manifest)["small.h5"]
    assert local.checksum == file_digest(small_file)
    assert sleeps.delays == [delay, delay]
    assert [entry.status for entry in server.requests] == [code, code, 200]


def test_retry_after_http_date_and_backoff(
    server: ArchiveServer, settings: Settings, small_file: Path
) -> None:
    manifest = zenodo_manifest(server, 105, {"small.h5": small_file})
    server.inject(Fault.status(502), Fault.status(500))
    sleeps = Sleeps()
    Fetcher(settings, sleep=sleeps).fetch(manifest)
    assert sleeps.delays == [settings.retry.backoff(1), settings.retry.backoff(2)]
    assert settings.retry.backoff(2) == 2 * settings.retry.backoff(1)


def test_corrupted_bytes_fail_and_leave_nothing(
    server: ArchiveServer, settings: Settings, small_file: Path
) -> None:
    manifest = zenodo_manifest(server, 106, {"small.h5": small_file})
    server.inject(Fault.corrupt(1000, 8, times=None))
    with pytest.raises(ChecksumMismatchError) as caught:
        Fetcher(settings, sleep=Sleeps()).fetch(manifest)
    message = str(caught.value)
    assert "small.h5" in message and file_digest(small_file) in message
    assert "pd4ml urls testdata" in message and "pd4ml import testdata" in message
    assert_nothing_left(settings, manifest, "small.h5")


def test_truncated_body_fails_and_leaves_nothing(
    server: ArchiveServer, settings: Settings, small_file: Path
) -> None:
    manifest = zenodo_manifest(server, 107, {"small.h5": small_file})
    server.inject(Fault.truncate(100_000, times=None))
    with pytest.raises(DownloadError, match="holds 100000 bytes but the manifest size is 300000"):
        Fetcher(settings, sleep=Sleeps()).fetch(manifest)
    assert_nothing_left(settings, manifest, "small.h5")


@pytest.mark.parametrize("content_type", ["text/html; charset=utf-8", "application/octet-stream"])
def test_html_page_is_rejected(
    server: ArchiveServer, settings: Settings, small_file: Path, content_type: str
) -> None:
    manifest = zenodo_manifest(server, 108, {"small.h5": small_file})
    server.inject(Fault.html_page(times=None, content_type=content_type))
    with pytest.raises(HtmlResponseError, match="HTML"):
        Fetcher(settings, sleep=Sleeps()).fetch(manifest)
    assert_nothing_left(settings, manifest, "small.h5")


def test_more_bytes_than_manifest_size_is_aborted(
    server: ArchiveServer, settings: Settings, small_file: Path
) -> None:
    manifest = zenodo_manifest(server, 109, {"small.h5": small_file})
    server.inject(Fault.extra_bytes(5000, times=None))
    with pytest.raises(SizeMismatchError, match="300000"):
        Fetcher(settings, sleep=Sleeps()).fetch(manifest)
    assert_nothing_left(settings, manifest, "small.h5")


def test_more_bytes_without_content_length(
    server: ArchiveServer, settings: Settings, small_file: Path
) -> None:
    manifest = zenodo_manifest(server, 110, {"small.h5": small_file})
    server.inject(Fault.extra_bytes(5000, times=None), Fault.no_content_length(times=None))
    with pytest.raises(SizeMismatchError, match="more than the manifest size"):
        Fetcher(settings, sleep=Sleeps()).fetch(manifest)
    assert_nothing_left(settings, manifest, "small.h5")


def test_missing_content_length_works(
    server: ArchiveServer, settings: Settings, small_file: Path
) -> None:
    manifest = zenodo_manifest(server, 111, {"small.h5": small_file})
    server.inject(Fault.no_content_length())
    local = Fetcher(settings).fetch(manifest)["small.h5"]
    assert local.checksum == file_digest(small_file)
    assert [entry.fault for entry in server.requests] == ["no_content_length"]


def test_slow_server_still_completes(
    server: ArchiveServer, settings: Settings, small_file: Path
) -> None:
    manifest = zenodo_manifest(server, 112, {"small.h5": small_file})
    server.inject(Fault.slow(delay=0.2, bytes_per_second=3_000_000))
    assert Fetcher(settings).fetch(manifest)["small.h5"].checksum == file_digest(small_file)


def test_checksum_taken_from_record_api_and_recorded(
    server: ArchiveServer, settings: Settings, small_file: Path
) -> None:
    manifest = zenodo_manifest(server, 113, {"small.h5": small_file}, checksum_origin="record-api")
    local = Fetcher(settings).fetch(manifest)["small.h5"]
    assert local.checksum == file_digest(small_file, "md5")
    assert server.count("/api/records/113") == 1
    record = json.loads(Cache(settings).record_path("testdata", "v1").read_text())
    assert record["files"]["small.h5"]["checksum"] == file_digest(small_file, "md5")
    # a corrupted download is caught with the recorded checksum, without asking the API again
    local.path.unlink()
    server.inject(Fault.corrupt(0, 4, times=None))
    with pytest.raises(ChecksumMismatchError):
        Fetcher(settings, sleep=Sleeps()).fetch(manifest)
    assert server.count("/api/records/113") == 1


def test_record_api_wins_over_a_wrong_third_party_checksum(
    server: ArchiveServer, settings: Settings, small_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server.add_zenodo_record(114, {"small.h5": small_file})
    manifest = make_manifest(
        {"kind": "zenodo", "record": "114", "base_url": server.url},
        {"small.h5": None},
        checksum_origin="third-party",
        extra_file_fields={"checksums": ["md5:" + "0" * 32], "size": small_file.stat().st_size},
    )
    local = Fetcher(settings).fetch(manifest)["small.h5"]
    assert local.checksum == file_digest(small_file)
    assert "trusting the record" in caplog.text


def test_third_party_checksum_used_when_the_api_is_down(
    server: ArchiveServer, settings: Settings, small_file: Path
) -> None:
    manifest = zenodo_manifest(server, 115, {"small.h5": small_file}, checksum_origin="third-party")
    server.inject(Fault.status(404, path="/api/records/115"))
    assert Fetcher(settings, sleep=Sleeps()).fetch(manifest)["small.h5"].checksum == file_digest(
        small_file
    )


def test_unsafe_key_from_the_record_api_is_refused(
    server: ArchiveServer, settings: Settings, small_file: Path
) -> None:
    from pd4ml.fetch.archives import parse_zenodo_record

    with pytest.raises(UnsafePathError):
        parse_zenodo_record(
            {"files": [{"key": "../../../.bashrc", "size": 1, "checksum": "md5:" + "0" * 32}]}
        )


def test_cern_open_data_adler32(
    server: ArchiveServer, settings: Settings, small_file: Path
) -> None:
    server.add_cernopendata_record(
        328, {"higgs.csv.gz": small_file}, eos_directory="/eos/opendata/atlas/h"
    )
    manifest = make_manifest(
        {"kind": "cernopendata", "record": "328", "base_url": server.url},
        {"higgs.csv.gz": small_file},
        algorithm="adler32",
        extra_file_fields={"uri": "root://eospublic.cern.ch//eos/opendata/atlas/h/higgs.csv.gz"},
    )
    local = Fetcher(settings).fetch(manifest)["higgs.csv.gz"]
    assert local.checksum.startswith("adler32:")
    assert server.requests[0].path == "/eos/opendata/atlas/h/higgs.csv.gz"


def test_cern_open_data_record_api(
    server: ArchiveServer, settings: Settings, small_file: Path
) -> None:
    server.add_cernopendata_record(329, {"doc.csv.gz": small_file}, eos_directory="/eos/opendata/x")
    manifest = make_manifest(
        {"kind": "cernopendata", "record": "329", "base_url": server.url},
        {"doc.csv.gz": None},
        checksum_origin="record-api",
    )
    local = Fetcher(settings).fetch(manifest)["doc.csv.gz"]
    assert local.checksum == file_digest(small_file, "adler32")
    assert server.requests[-1].path == "/record/329/files/doc.csv.gz"


def test_plain_url_source(server: ArchiveServer, settings: Settings, small_file: Path) -> None:
    url = server.add_file("pd4ml/6_belle.npz", small_file)
    manifest = make_manifest(
        {"kind": "url"}, {"6_belle.npz": small_file}, extra_file_fields={"urls": [url]}
    )
    assert Fetcher(settings).fetch(manifest)["6_belle.npz"].origin == "archive"


def test_mirror_directory_is_tried_first(
    server: ArchiveServer, settings: Settings, small_file: Path, tmp_path: Path
) -> None:
    manifest = zenodo_manifest(server, 116, {"small.h5": small_file})
    mirror = tmp_path / "mirror"
    (mirror / "testdata" / "v1").mkdir(parents=True)
    (mirror / "testdata" / "v1" / "small.h5").write_bytes(small_file.read_bytes())
    local = Fetcher(settings.with_changes(mirrors=(str(mirror),))).fetch(manifest)["small.h5"]
    assert local.origin == "mirror" and server.count() == 0
    assert local.path != mirror / "testdata" / "v1" / "small.h5"


def test_bad_mirror_falls_back_to_the_archive(
    server: ArchiveServer, settings: Settings, small_file: Path, tmp_path: Path
) -> None:
    manifest = zenodo_manifest(server, 117, {"small.h5": small_file})
    mirror = tmp_path / "mirror" / "testdata" / "v1"
    mirror.mkdir(parents=True)
    (mirror / "small.h5").write_bytes(b"x" * small_file.stat().st_size)
    url_mirror = f"{server.url}/files/mirror"
    local = Fetcher(settings.with_changes(mirrors=(url_mirror, str(tmp_path / "mirror")))).fetch(
        manifest
    )["small.h5"]
    assert local.origin == "archive"
    assert server.requests[0].path == "/files/mirror/testdata/v1/small.h5"
    assert server.requests[0].status == 404


def test_http_mirror(server: ArchiveServer, settings: Settings, small_file: Path) -> None:
    manifest = zenodo_manifest(server, 118, {"small.h5": small_file})
    server.add_file("mirror/testdata/v1/small.h5", small_file)
    local = Fetcher(settings.with_changes(mirrors=(f"{server.url}/files/mirror",))).fetch(manifest)[
        "small.h5"
    ]
    assert local.origin == "mirror"
    assert server.count("/records/*") == 0


def test_partial_file_of_a_killed_process_is_resumed(
    server: ArchiveServer, settings: Settings, big_file: Path
) -> None:
    manifest = zenodo_manifest(server, 119, {"train.h5": big_file})
    final = final_path(settings, manifest, "train.h5")
    state = final.parent / ".pd4ml"
    state.mkdir(parents=True)
    (state / "train.h5.part").write_bytes(big_file.read_bytes()[: 12 * MB])
    (state / "train.h5.part.json").write_text(json.dumps({"checksum": file_digest(big_file)}))
    local = Fetcher(settings).fetch(manifest)["train.h5"]
    assert local.checksum == file_digest(big_file)
    assert server.requests[0].range == f"bytes={12 * MB}-"
    assert server.requests[0].bytes_sent == 38 * MB


def test_force_download_fetches_again(
    server: ArchiveServer, settings: Settings, small_file: Path
) -> None:
    manifest = zenodo_manifest(server, 120, {"small.h5": small_file})
    Fetcher(settings).fetch(manifest)
    Fetcher(settings).fetch(manifest, force=True)
    assert server.count("/records/120/files/small.h5") == 2


def test_all_sources_failing_lists_every_url(
    server: ArchiveServer, settings: Settings, small_file: Path
) -> None:
    manifest = zenodo_manifest(server, 121, {"small.h5": small_file})
    server.inject(Fault.status(404, times=None))
    with pytest.raises(DownloadError) as caught:
        Fetcher(settings).fetch(manifest)
    message = str(caught.value)
    assert "/records/121/files/small.h5?download=1: " in message
    assert "/api/records/121/files/small.h5/content: " in message
    assert "HTTP 404" in message


def test_zenodo_token_only_sent_to_zenodo(server: ArchiveServer, settings: Settings) -> None:
    fetcher = Fetcher(settings.with_changes(zenodo_token="secret", zenodo_url=server.url))
    assert fetcher._auth_headers(f"{server.url}/records/1/files/a") == {
        "Authorization": "Bearer secret"
    }
    assert fetcher._auth_headers("https://example.org/a") == {}


def test_record_without_the_file_is_refused(
    server: ArchiveServer, settings: Settings, small_file: Path
) -> None:
    server.add_zenodo_record(130, {"other.h5": small_file})
    server.add_file("direct/small.h5", small_file)
    manifest = make_manifest(
        {"kind": "zenodo", "record": "130", "base_url": server.url},
        {"small.h5": None},
        checksum_origin="record-api",
    )
    with pytest.raises(DownloadError, match=r"lists no file 'small\.h5'"):
        Fetcher(settings).fetch(manifest)
    assert server.count("*/files/*") == 0, "an unverifiable file must not even be downloaded"


def test_unsupported_mirror_scheme_falls_through(
    server: ArchiveServer, settings: Settings, small_file: Path
) -> None:
    manifest = zenodo_manifest(server, 131, {"small.h5": small_file})
    local = Fetcher(settings.with_changes(mirrors=("s3://bucket/pd4ml",))).fetch(manifest)[
        "small.h5"
    ]
    assert local.origin == "archive"


def test_content_encoding_is_refused_clearly(
    server: ArchiveServer, settings: Settings, small_file: Path
) -> None:
    manifest = zenodo_manifest(server, 132, {"small.h5": small_file})
    server.inject(Fault.header("Content-Encoding", "gzip", times=None))
    sleeps = Sleeps()
    with pytest.raises(DownloadError, match="Content-Encoding 'gzip'"):
        Fetcher(settings, sleep=sleeps).fetch(manifest)
    assert sleeps.delays == [], "a refused encoding is not transient: no retries"


def test_html_from_a_mirror_keeps_the_resumable_partial(
    server: ArchiveServer, settings: Settings, big_file: Path
) -> None:
    manifest = zenodo_manifest(server, 133, {"train.h5": big_file})
    server.add_file("mirror/testdata/v1/train.h5", big_file)
    state = final_path(settings, manifest, "train.h5").parent / ".pd4ml"
    state.mkdir(parents=True)
    (state / "train.h5.part").write_bytes(
        big_file.read_bytes()[: 20 * MB]
    )  # an interrupted download
    (state / "train.h5.part.json").write_text(json.dumps({"checksum": file_digest(big_file)}))
    server.inject(
        Fault.html_page(path="/files/mirror/*", times=None, content_type="application/octet-stream")
    )
    mirrored = settings.with_changes(mirrors=(f"{server.url}/files/mirror",))
    local = Fetcher(mirrored, sleep=Sleeps()).fetch(manifest)["train.h5"]
    assert local.checksum == file_digest(big_file)
    archive = [entry for entry in server.requests if entry.path.startswith("/records/")]
    assert archive[0].range == f"bytes={20 * MB}-", "the partial was thrown away by the HTML answer"


def test_short_file_on_a_server_ignoring_range_fails_fast(
    server: ArchiveServer, settings: Settings, small_file: Path
) -> None:
    manifest = zenodo_manifest(server, 134, {"small.h5": small_file})
    server.inject(Fault.truncate(1000, times=None), Fault.ignore_range())
    with pytest.raises(SizeMismatchError):
        Fetcher(settings, sleep=Sleeps()).fetch(manifest)
    assert server.count() == 2


def test_damaged_partial_is_retried_from_zero(
    server: ArchiveServer, settings: Settings, big_file: Path
) -> None:
    manifest = zenodo_manifest(server, 135, {"train.h5": big_file})
    final = final_path(settings, manifest, "train.h5")
    state = final.parent / ".pd4ml"
    state.mkdir(parents=True)
    (state / "train.h5.part").write_bytes(b"\0" * (5 * MB))  # garbage left by a crash
    (state / "train.h5.part.json").write_text(json.dumps({"checksum": file_digest(big_file)}))
    local = Fetcher(settings).fetch(manifest)["train.h5"]
    assert local.checksum == file_digest(big_file)
    assert [entry.range for entry in server.requests] == [f"bytes={5 * MB}-", None]
