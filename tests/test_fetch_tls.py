"""TLS: an untrusted certificate fails at once with the CA-bundle remedy; a trusted one works."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from pd4ml.config import Settings
from pd4ml.errors import CertificateError
from pd4ml.fetch import Fetcher
from pd4ml.testing import ArchiveServer
from pd4ml.testing.server import self_signed_certificate
from tests.conftest import file_digest, write_random_file, zenodo_manifest

_CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[ArchiveServer]:
    with ArchiveServer(tls=certificate) as archive:
        yield archive


@pytest.fixture(autouse=True)
def default_trust_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only certifi's bundle, whatever the developer's shell sets."""
    for name in _CA_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def served(tmp_path: Path) -> Path:
    return write_random_file(tmp_path / "served" / "data.h5", 1_500_000, seed=41)


def test_server_speaks_tls_with_its_certificate(
    tls_server: ArchiveServer, certificate: tuple[Path, Path], served: Path
) -> None:
    assert tls_server.url.startswith("https://127.0.0.1:")
    url = tls_server.add_file("data.h5", served)
    answer = requests.get(url, verify=str(certificate[0]), timeout=10)
    assert answer.status_code == 200 and answer.content == served.read_bytes()
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(url, timeout=10)  # not in certifi's bundle


@pytest.mark.parametrize("checksum_origin", ["published", "record-api"])
def test_untrusted_certificate_fails_at_once_naming_the_ca_variables(
    tls_server: ArchiveServer, tmp_path: Path, served: Path, checksum_origin: str
) -> None:
    manifest = zenodo_manifest(
        tls_server, 400, {"data.h5": served}, checksum_origin=checksum_origin
    )
    settings = Settings(data_dir=tmp_path / "cache", progress="off")  # the real retry policy
    sleeps: list[float] = []
    started = time.monotonic()
    with pytest.raises(CertificateError) as caught:
        Fetcher(settings, sleep=sleeps.append).fetch(manifest)
    assert time.monotonic() - started < 5.0, "a certificate failure must not be retried"
    assert sleeps == []
    message = str(caught.value)
    assert "certificate verification failed" in message
    assert "REQUESTS_CA_BUNDLE" in message and "SSL_CERT_FILE" in message
    assert "connection failed: SSLError" not in message
    assert tls_server.count(method=None) == 0, "no request may pass an untrusted handshake"


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"])
def test_certificate_trusted_through_the_ca_bundle_variable(
    monkeypatch: pytest.MonkeyPatch,
    tls_server: ArchiveServer,
    certificate: tuple[Path, Path],
    tmp_path: Path,
    served: Path,
    variable: str,
) -> None:
    manifest = zenodo_manifest(tls_server, 401, {"data.h5": served}, checksum_origin="record-api")
    monkeypatch.setenv(variable, str(certificate[0]))
    settings = Settings(data_dir=tmp_path / "cache", progress="off")
    local = Fetcher(settings).fetch(manifest)["data.h5"]
    assert local.origin == "archive" and local.checksum == file_digest(served)
    assert tls_server.count("/api/records/401") == 1 and tls_server.count("*/data.h5") == 1
