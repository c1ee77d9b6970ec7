"""The loopback archive server speaks the Zenodo and CERN Open Data protocols."""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path

import pytest
import requests

from pd4ml.testing import HTML_ERROR_PAGE, ArchiveServer, Fault
from tests.conftest import write_random_file


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    return write_random_file(tmp_path / "train.h5", 100_000, seed=3)


def test_binds_loopback_only() -> None:
    with pytest.raises(ValueError, match="loopback"):
        ArchiveServer(host="0.0.0.0")


def test_zenodo_record_json(server: ArchiveServer, payload: Path) -> None:
    server.add_zenodo_record(2603256, {"train.h5": payload})
    record = requests.get(f"{server.url}/api/records/2603256", timeout=5).json()
    assert record["recid"] == "2603256" and record["doi"] == "10.5281/zenodo.2603256"
    (entry,) = record["files"]
    assert entry["key"] == "train.h5" and entry["size"] == 100_000
    assert entry["checksum"] == "md5:" + hashlib.md5(payload.read_bytes()).hexdigest()
    assert entry["links"]["self"].endswith("/api/records/2603256/files/train.h5/content")
    listing = requests.get(f"{server.url}/api/records/2603256/files", timeout=5).json()
    assert listing["entries"][0]["key"] == "train.h5"


@pytest.mark.parametrize(
    "path",
    [
        "/records/7/files/train.h5?download=1",
        "/records/7/files/train.h5/content",
        "/api/records/7/files/train.h5/content",
        "/record/7/files/train.h5",  # pre-2023 form: redirected
    ],
)
def test_zenodo_file_urls(server: ArchiveServer, payload: Path, path: str) -> None:
    server.add_zenodo_record(7, {"train.h5": payload})
    response = requests.get(server.url + path, timeout=5)
    assert response.status_code == 200
    assert response.content == payload.read_bytes()


def test_old_zenodo_url_redirects(server: ArchiveServer, payload: Path) -> None:
    server.add_zenodo_record(7, {"train.h5": payload})
    response = requests.get(
        f"{server.url}/record/7/files/train.h5", timeout=5, allow_redirects=False
    )
    assert response.status_code == 301
    assert response.headers["Location"] == "/records/7/files/train.h5"


def test_cern_open_data_record_and_eos_path(server: ArchiveServer, payload: Path) -> None:
    server.add_cernopendata_record(
        328, {"higgs.csv.gz": payload}, eos_directory="/eos/opendata/atlas/x"
    )
    record = requests.get(f"{server.url}/api/records/328", timeout=5).json()
    (entry,) = record["metadata"]["files"]
    assert entry["uri"] == "root://eospublic.cern.ch//eos/opendata/atlas/x/higgs.csv.gz"
    assert entry["checksum"] == f"adler32:{zlib.adler32(payload.read_bytes(), 1) & 0xFFFFFFFF:08x}"
    for path in ("//eos/opendata/atlas/x/higgs.csv.gz", "/record/328/files/higgs.csv.gz"):
        assert requests.get(server.url + path, timeout=5).content == payload.read_bytes()


def test_range_requests(server: ArchiveServer, payload: Path) -> None:
    url = server.add_file("data/train.h5", payload)
    data = payload.read_bytes()
    response = requests.get(url, headers={"Range": "bytes=1000-"}, timeout=5)
    assert response.status_code == 206
    assert response.headers["Content-Range"] == f"bytes 1000-{len(data) - 1}/{len(data)}"
    assert response.content == data[1000:]
    assert requests.get(url, headers={"Range": "bytes=10-19"}, timeout=5).content == data[10:20]
    assert requests.get(url, headers={"Range": "bytes=-5"}, timeout=5).content == data[-5:]
    unsatisfiable = requests.get(url, headers={"Range": f"bytes={len(data)}-"}, timeout=5)
    assert unsatisfiable.status_code == 416
    head = requests.head(url, timeout=5)
    assert (
        head.headers["Content-Length"] == str(len(data))
        and head.headers["Accept-Ranges"] == "bytes"
    )


def test_faults_apply_and_are_counted(server: ArchiveServer, payload: Path) -> None:
    url = server.add_file("f.bin", payload)
    data = payload.read_bytes()

    def fetch_with(fault: Fault) -> requests.Response:
        server.inject(fault)
        return requests.get(url, timeout=5)

    first = fetch_with(Fault.status(503, retry_after=7, path="/files/f.bin"))
    assert first.status_code == 503 and first.headers["Retry-After"] == "7"
    assert fetch_with(Fault.html_page(path="/files/f.bin")).content == HTML_ERROR_PAGE
    corrupted = fetch_with(Fault.corrupt(10, 4)).content
    assert corrupted != data and corrupted[:10] == data[:10] and corrupted[14:] == data[14:]
    assert len(fetch_with(Fault.extra_bytes(100)).content) == len(data) + 100
    unsized = fetch_with(Fault.no_content_length())
    assert "Content-Length" not in unsized.headers and unsized.content == data
    assert requests.get(url, timeout=5).content == data  # the queue is used up
    assert server.count("/files/f.bin") == 6
    assert [entry.fault for entry in server.requests] == [
        "status",
        "html_page",
        "corrupt",
        "extra_bytes",
        "no_content_length",
        None,
    ]


def test_faults_of_different_kinds_combine(server: ArchiveServer, payload: Path) -> None:
    url = server.add_file("f.bin", payload)
    server.inject(Fault.extra_bytes(10), Fault.no_content_length(), Fault.extra_bytes(20))
    response = requests.get(url, timeout=5)
    assert len(response.content) == payload.stat().st_size + 10
    assert "Content-Length" not in response.headers
    assert server.requests[0].fault == "extra_bytes+no_content_length"
    assert len(requests.get(url, timeout=5).content) == payload.stat().st_size + 20


def test_drop_after_closes_early(server: ArchiveServer, payload: Path) -> None:
    url = server.add_file("f.bin", payload)
    server.inject(Fault.drop_after(5000))
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(url, timeout=5).content  # noqa: B018 - reading the body is the point


def test_serves_a_directory(tmp_path: Path) -> None:
    write_random_file(tmp_path / "zenodo" / "11" / "a.npz", 10)
    write_random_file(tmp_path / "cernopendata" / "12" / "b.csv.gz", 10)
    write_random_file(tmp_path / "files" / "sub" / "c.root", 10)
    with ArchiveServer() as archive:
        archive.add_directory(tmp_path)
        assert (
            requests.get(f"{archive.url}/api/records/11", timeout=5).json()["files"][0]["key"]
            == "a.npz"
        )
        assert requests.get(f"{archive.url}/record/12/files/b.csv.gz", timeout=5).status_code == 200
        assert requests.get(f"{archive.url}/files/sub/c.root", timeout=5).status_code == 200
        assert requests.get(f"{archive.url}/files/nothing", timeout=5).status_code == 404


def test_server_runs_in_a_process_of_its_own(payload: Path) -> None:
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    environment = {**os.environ, "PYTHONPATH": str(root)}
    command = "import sys; from pd4ml.testing.server import main; sys.exit(main(sys.argv[1:]))"
    process = subprocess.Popen(
        [sys.executable, "-c", command, "--zenodo-record", "7", str(payload)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=environment,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdin is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        body = requests.get(f"{url}/records/7/files/train.h5?download=1", timeout=10).content
        assert body == payload.read_bytes()
        process.stdin.close()
        assert process.wait(timeout=10) == 0, "closing stdin must stop the server"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
