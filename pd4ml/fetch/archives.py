"""Archive protocols: where a file of a dataset version can be downloaded, and record APIs.

* **Zenodo** — record JSON at ``{base}/api/records/{id}``; files at
  ``{base}/records/{id}/files/{key}?download=1`` (supports ``Range``) and
  ``{base}/api/records/{id}/files/{key}/content``. The record parser tolerates the legacy and the
  transitional 2023 field names (``key``/``filename``, ``size``/``filesize``, checksums with or
  without the ``md5:`` prefix, ``links.self``/``links.download``/``links.content``).
* **CERN Open Data** — record JSON at ``{base}/api/records/{recid}`` with ``metadata.files[]``
  (``uri``, ``size``, ``checksum`` as ``adler32:…``); files over HTTPS at the EOS path (the
  ``root://eospublic.cern.ch/`` prefix of the uri replaced by the base URL) or at
  ``{base}/record/{recid}/files/{name}``.
* **url** — the manifest lists the file's URLs.
"""

from __future__ import annotations

import posixpath
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from pd4ml._logging import get_logger
from pd4ml.checksums import Checksum
from pd4ml.config import Settings
from pd4ml.errors import DownloadError, UnsafePathError
from pd4ml.fetch.http import (
    certificate_error,
    certificate_problem,
    parse_retry_after,
    tls_reason,
)
from pd4ml.manifest import DatasetVersion, FileEntry, safe_key

log = get_logger("fetch")
EOS_PREFIX = "root://eospublic.cern.ch/"


@dataclass(frozen=True)
class Candidate:
    """One place to get a file from: a URL or a local file, and what kind of place it is."""

    location: str
    origin: str  # "mirror" or "archive"

    @property
    def is_local(self) -> bool:
        """True for a file path (``file://`` URLs and plain paths)."""
        return "://" not in self.location or self.location.startswith("file://")

    @property
    def local_path(self) -> Path:
        """The file path of a local candidate."""
        if self.location.startswith("file://"):
            return Path(urlsplit(self.location).path)
        return Path(self.location)


@dataclass(frozen=True)
class RecordFile:
    """A file as an archive's record API describes it."""

    key: str
    size: int | None
    checksum: Checksum | None
    url: str | None


def archive_base_url(version: DatasetVersion, settings: Settings) -> str | None:
    """The base URL of the version's archive, with the environment override applied."""
    source = version.source
    if source.kind == "zenodo" and settings.zenodo_url:
        return settings.zenodo_url.rstrip("/")
    if source.kind == "cernopendata" and settings.cernopendata_url:
        return settings.cernopendata_url.rstrip("/")
    base = source.resolved_base_url
    return base.rstrip("/") if base else None


def archive_urls(version: DatasetVersion, entry: FileEntry, settings: Settings) -> list[str]:
    """Download URLs of ``entry`` at the version's archive, most capable first."""
    source = version.source
    base = archive_base_url(version, settings)
    key = quote(entry.key)
    if source.kind == "zenodo":
        return [
            f"{base}/records/{source.record}/files/{key}?download=1",
            f"{base}/api/records/{source.record}/files/{key}/content",
        ]
    if source.kind == "cernopendata":
        urls = []
        if entry.uri and entry.uri.startswith(EOS_PREFIX):
            urls.append(f"{base}/{quote(entry.uri[len(EOS_PREFIX) :].lstrip('/'))}")
        urls.append(f"{base}/record/{source.record}/files/{quote(posixpath.basename(entry.key))}")
        return urls
    return list(entry.urls)


def candidates(
    dataset: str, version: DatasetVersion, entry: FileEntry, settings: Settings
) -> list[Candidate]:
    """Every place to try, in order: ``PD4ML_MIRROR`` entries, manifest mirrors, the archive.

    A ``PD4ML_MIRROR`` base (URL or directory) is expected to hold
    ``{base}/{dataset}/{version}/{key}``.
    """
    found: list[Candidate] = []
    for base in settings.mirrors:
        base = base.rstrip("/")
        if "://" in base and not base.startswith("file://"):
            location = f"{base}/{quote(dataset)}/{quote(version.name)}/{quote(entry.key)}"
        else:
            location = str(Path(base.removeprefix("file://")) / dataset / version.name / entry.key)
        found.append(Candidate(location, "mirror"))
    found += [Candidate(url, "mirror") for url in entry.mirrors]
    if version.source.status != "unpublished":
        found += [Candidate(url, "archive") for url in archive_urls(version, entry, settings)]
    return found


def _as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_zenodo_record(payload: dict[str, Any]) -> dict[str, RecordFile]:
    """Files of a Zenodo record JSON, tolerant of the legacy, transitional and RDM field names."""
    entries = payload.get("files")
    if isinstance(entries, dict):  # InvenioRDM ``/files`` listing
        entries = entries.get("entries")
    if not isinstance(entries, list):
        raise DownloadError("Zenodo record JSON has no 'files' list")
    files: dict[str, RecordFile] = {}
    for item in entries:
        if not isinstance(item, dict):
            continue
        key = item.get("key") or item.get("filename")
        if not isinstance(key, str):
            continue
        try:
            safe_key(key)
        except UnsafePathError as error:
            raise UnsafePathError(f"Zenodo record lists an unsafe file key: {error}") from None
        checksum_text = item.get("checksum")
        checksum = (
            Checksum.parse(checksum_text, default_algorithm="md5")
            if isinstance(checksum_text, str) and checksum_text
            else None
        )
        raw_links = item.get("links")
        links: dict[str, Any] = raw_links if isinstance(raw_links, dict) else {}
        url = links.get("content") or links.get("download") or links.get("self")
        files[key] = RecordFile(
            key=key,
            size=_as_int(item.get("size", item.get("filesize"))),
            checksum=checksum,
            url=url if isinstance(url, str) else None,
        )
    return files


def parse_cernopendata_record(payload: dict[str, Any]) -> dict[str, RecordFile]:
    """Files of a CERN Open Data record JSON (``metadata.files[]``), keyed by file name."""
    metadata = payload.get("metadata", payload)
    entries = metadata.get("files") if isinstance(metadata, dict) else None
    if not isinstance(entries, list):
        raise DownloadError("CERN Open Data record JSON has no 'metadata.files' list")
    files: dict[str, RecordFile] = {}
    for item in entries:
        if not isinstance(item, dict):
            continue
        uri = item.get("uri") or item.get("key")
        if not isinstance(uri, str):
            continue
        key = posixpath.basename(uri)
        safe_key(key)
        checksum_text = item.get("checksum")
        checksum = (
            Checksum.parse(checksum_text, default_algorithm="adler32")
            if isinstance(checksum_text, str) and checksum_text
            else None
        )
        files[key] = RecordFile(
            key=key, size=_as_int(item.get("size")), checksum=checksum, url=None
        )
    return files


def fetch_record_files(
    version: DatasetVersion, settings: Settings, session: requests.Session
) -> dict[str, RecordFile]:
    """Ask the archive's record API which files the record holds, with sizes and checksums."""
    source = version.source
    base = archive_base_url(version, settings)
    if source.kind not in ("zenodo", "cernopendata") or base is None:
        raise DownloadError(f"a {source.kind!r} source has no record API")
    url = f"{base}/api/records/{source.record}"
    headers = {"Accept": "application/json"}
    if source.kind == "zenodo" and settings.zenodo_token:
        headers["Authorization"] = f"Bearer {settings.zenodo_token}"
    policy = settings.retry
    last_error = "no attempt"
    for attempt in range(1, policy.max_attempts + 1):
        delay = policy.backoff(attempt)
        try:
            response = session.get(
                url, headers=headers, timeout=(policy.connect_timeout, policy.read_timeout)
            )
        except requests.exceptions.SSLError as error:
            reason = certificate_problem(error)
            if reason is not None:
                raise certificate_error(url, reason) from None
            last_error = f"TLS error: {tls_reason(error)}"
        except (requests.ConnectionError, requests.Timeout) as error:
            last_error = type(error).__name__
        else:
            if response.status_code == 200:
                try:
                    payload = response.json()
                except ValueError:
                    raise DownloadError(f"{url} did not answer with JSON") from None
                if source.kind == "zenodo":
                    return parse_zenodo_record(payload)
                return parse_cernopendata_record(payload)
            last_error = f"HTTP {response.status_code}"
            if response.status_code not in (429, 500, 502, 503, 504):
                break
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if retry_after is not None:
                delay = min(retry_after, policy.retry_after_max)
        if attempt < policy.max_attempts:
            time.sleep(delay)
    raise DownloadError(f"record API {url} failed: {last_error}")
