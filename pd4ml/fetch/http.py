"""One HTTP download, done right: timeouts, retries with backoff, Range resume, streaming checks.

The body is written to a partial file and hashed while it streams. Transient failures
(connection errors, timeouts, truncated bodies, 429 and 5xx answers) are retried with exponential
backoff that honours ``Retry-After``, resuming from the bytes already received with an HTTP
``Range`` request; a server that ignores ``Range`` is detected (200 instead of 206) and the
download restarts cleanly. Permanent failures for this URL (404, an HTML page instead of the
file, more bytes than the manifest size) raise at once so the caller can try the next source.
"""

from __future__ import annotations

import contextlib
import email.utils
import os
import queue
import re
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import requests
import urllib3

from pd4ml._logging import get_logger
from pd4ml._version import __version__
from pd4ml.checksums import Checksum, Hasher, feed_file, new_hasher
from pd4ml.config import RetryPolicy
from pd4ml.errors import CertificateError, DownloadError, HtmlResponseError, SizeMismatchError
from pd4ml.fetch.progress import Progress

log = get_logger("fetch")
CHUNK = 1 << 20
USER_AGENT = f"pd4ml/{__version__} (+https://pypi.org/project/pd4ml-hep/)"
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_HTML_START = (b"<!doctype html", b"<html", b"<head", b"<body", b"<?xml")
_RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}


class _Transient(Exception):
    """A failure worth retrying, with the server's requested delay if it gave one."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


def new_session() -> requests.Session:
    """A ``requests`` session with pd4ml's User-Agent (TLS verification stays on).

    ``requests`` itself reads ``REQUESTS_CA_BUNDLE`` (and ``CURL_CA_BUNDLE``) on every request;
    when neither is set, the OpenSSL variable ``SSL_CERT_FILE`` names the CA bundle instead of
    certifi's, so the one variable a cluster sets for every other tool also works here.
    """
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    environ = os.environ
    cert_file = environ.get("SSL_CERT_FILE")
    if cert_file and not (environ.get("REQUESTS_CA_BUNDLE") or environ.get("CURL_CA_BUNDLE")):
        session.verify = cert_file
    return session


def _error_chain(error: BaseException) -> list[BaseException]:
    """``error`` and what it wraps (``requests`` nests urllib3's and ssl's errors in args)."""
    chain: list[BaseException] = []
    pending = [error]
    while pending and len(chain) < 20:
        current = pending.pop()
        if any(current is seen for seen in chain):
            continue
        chain.append(current)
        pending += [arg for arg in current.args if isinstance(arg, BaseException)]
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            pending.append(reason)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                pending.append(linked)
    return chain


def certificate_problem(error: BaseException) -> str | None:
    """Why the server's TLS certificate was rejected, or None when ``error`` is not that."""
    for item in _error_chain(error):
        if isinstance(item, ssl.SSLCertVerificationError):
            return str(item.verify_message or item.reason or item)
    text = str(error)
    for marker in ("CERTIFICATE_VERIFY_FAILED", "certificate verify failed"):
        if marker in text:
            return text[text.index(marker) :].split(")")[0].strip(" '\"(")
    return None


def tls_reason(error: BaseException) -> str:
    """The innermost ssl message of a TLS failure (``EOF occurred in violation of protocol``)."""
    for item in reversed(_error_chain(error)):
        if isinstance(item, ssl.SSLError):
            return str(item.reason or item)
    return type(error).__name__


CERTIFICATE_REMEDY = (
    ". The server's certificate is not trusted by this machine's certificate store; behind a "
    "TLS-inspecting proxy or on a cluster with its own certificate authority, set "
    "REQUESTS_CA_BUNDLE (or SSL_CERT_FILE) to the PEM file of that authority. TLS verification "
    "stays on; this is not retried"
)


def certificate_error(url: str, reason: str) -> CertificateError:
    """The error for a server whose TLS certificate this machine does not trust."""
    return CertificateError(
        f"{url}: TLS certificate verification failed ({reason}){CERTIFICATE_REMEDY}"
    )


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    with contextlib.suppress(TypeError, ValueError, IndexError):
        moment = email.utils.parsedate_to_datetime(value)
        return max(0.0, moment.timestamp() - time.time())
    return None


def looks_like_html(head: bytes) -> bool:
    """True when the first bytes of a body are an HTML (or XML error) document."""
    return head.lstrip()[:64].lower().startswith(_HTML_START)


@dataclass
class PartialDownload:
    """State of a download in progress: the partial file, its length and running hashes."""

    path: Path
    algorithms: tuple[str, ...]
    received: int = 0
    hashers: dict[str, Hasher] = field(default_factory=dict)
    tainted: bool = False
    """True once bytes that failed a check were written: the partial file must be discarded."""

    @classmethod
    def resume_or_start(cls, path: Path, algorithms: tuple[str, ...]) -> PartialDownload:
        """Continue a partial file left by an earlier process (its bytes are hashed once)."""
        partial = cls(path, algorithms)
        partial.hashers = {algorithm: new_hasher(algorithm) for algorithm in algorithms}
        if path.exists() and path.stat().st_size > 0:
            received = path.stat().st_size
            for hasher in partial.hashers.values():
                feed_file(hasher, path, limit=received)
            partial.received = received
            log.info("resuming %s from byte %d", path.name, received)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
        return partial

    def restart(self, handle: BinaryIO) -> None:
        """Throw the received bytes away (the server cannot continue where we stopped)."""
        handle.seek(0)
        handle.truncate()
        self.received = 0
        self.hashers = {algorithm: new_hasher(algorithm) for algorithm in self.algorithms}

    def checksums(self) -> dict[str, Checksum]:
        """The checksums of the bytes received so far."""
        return {name: hasher.checksum() for name, hasher in self.hashers.items()}


def _expected_total(response: requests.Response, offset: int) -> int | None:
    """The full file length the server announces, if it announces one."""
    if response.status_code == 206:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if match and match.group(3) != "*":
            return int(match.group(3))
        return None
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


class Downloader:
    """Downloads URLs into partial files with retries and resume (see the module docstring)."""

    def __init__(
        self,
        policy: RetryPolicy,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        headers_for: Callable[[str], dict[str, str]] | None = None,
    ) -> None:
        self.policy = policy
        self.session = session or new_session()
        self.sleep = sleep
        self.headers_for = headers_for or (lambda url: {})

    def download(
        self,
        url: str,
        partial: PartialDownload,
        expected_size: int | None,
        progress: Progress,
        expect_html: bool = False,
    ) -> None:
        """Complete ``partial`` from ``url``.

        Returns when the body is complete (length equals ``expected_size`` when known). Raises
        :class:`DownloadError` (or a subclass) when this URL cannot deliver the file.
        """
        attempt = 0
        furthest = partial.received
        with open(partial.path, "r+b") as handle:
            handle.seek(partial.received)
            while True:
                try:
                    self._one_request(url, partial, handle, expected_size, progress, expect_html)
                    return
                except _Transient as problem:
                    if partial.received > furthest:
                        furthest = partial.received
                        attempt = 0  # new bytes arrived: a flaky line, not a dead one
                    attempt += 1
                    if attempt >= self.policy.max_attempts:
                        raise DownloadError(
                            f"{url}: gave up after {attempt} attempts without progress "
                            f"({problem}); received {partial.received} bytes"
                        ) from None
                    delay = self.policy.backoff(attempt)
                    if problem.retry_after is not None:
                        delay = min(problem.retry_after, self.policy.retry_after_max)
                    log.info(
                        "%s: %s; retrying in %.1f s from byte %d (attempt %d of %d)",
                        url,
                        problem,
                        delay,
                        partial.received,
                        attempt + 1,
                        self.policy.max_attempts,
                    )
                    self.sleep(delay)

    def _one_request(
        self,
        url: str,
        partial: PartialDownload,
        handle: BinaryIO,
        expected_size: int | None,
        progress: Progress,
        expect_html: bool,
    ) -> None:
        offset = partial.received
        if expected_size is not None and offset == expected_size:
            return
        headers = {"Accept-Encoding": "identity", **self.headers_for(url)}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            response = self.session.get(
                url,
                headers=headers,
                stream=True,
                timeout=(self.policy.connect_timeout, self.policy.read_timeout),
                allow_redirects=True,
            )
        except requests.exceptions.SSLError as error:
            reason = certificate_problem(error)
            if reason is not None:  # the same certificate tomorrow: retrying cannot help
                raise certificate_error(url, reason) from None
            raise _Transient(f"TLS error: {tls_reason(error)}") from None
        except (requests.ConnectionError, requests.Timeout) as error:
            raise _Transient(f"connection failed: {type(error).__name__}") from None
        except (
            requests.RequestException
        ) as error:  # bad scheme or URL, redirect loop: not transient
            raise DownloadError(f"{url}: {type(error).__name__}: {error}") from None
        with response:
            status = response.status_code
            if status in _RETRYABLE_STATUS:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                raise _Transient(f"HTTP {status}", retry_after)
            if status == 416 and offset:
                announced = response.headers.get("Content-Range", "").rpartition("/")[2]
                if (
                    expected_size is not None
                    and announced.isdigit()
                    and int(announced) != expected_size
                ):
                    raise SizeMismatchError(
                        f"{url} holds {announced} bytes but the manifest size is {expected_size}"
                    )
                log.info("%s: server refused to resume at byte %d; restarting", url, offset)
                partial.restart(handle)
                progress.reset()
                raise _Transient("HTTP 416 on resume")
            if status not in (200, 206):
                raise DownloadError(f"{url}: HTTP {status} {response.reason}")
            encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                raise DownloadError(
                    f"{url} sent the file with Content-Encoding {encoding!r} although "
                    "'identity' was asked for; its bytes cannot be checked against the checksum"
                )
            restart_pending = bool(offset) and status == 200
            if restart_pending:
                log.info("%s ignores Range requests; restarting from byte 0", url)
                offset = 0
            if status == 206:
                match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
                if not match or int(match.group(1)) != offset:
                    partial.restart(handle)
                    progress.reset()
                    raise _Transient("206 answer does not start where we asked")
            content_type = response.headers.get("Content-Type", "").lower()
            if not expect_html and "text/html" in content_type:
                raise HtmlResponseError(
                    f"{url} answered with an HTML page (Content-Type {content_type!r}) instead "
                    "of the data file: an error or login page, or a dead link"
                )
            total = _expected_total(response, offset)
            size_problem = None
            if expected_size is not None and total is not None and total != expected_size:
                size_problem = f"{url} holds {total} bytes but the manifest size is {expected_size}"
                if total > expected_size:
                    raise SizeMismatchError(size_problem)
                if status != 200:  # a short 206 total: let the body tell
                    size_problem = None
            self._stream_body(
                url,
                response,
                partial,
                handle,
                expected_size,
                progress,
                expect_html,
                restart_pending,
                size_problem,
            )
        if expected_size is not None and partial.received < expected_size:
            raise _Transient(
                f"body ended after {partial.received} of {expected_size} bytes (truncated)"
            )

    def _stream_body(
        self,
        url: str,
        response: requests.Response,
        partial: PartialDownload,
        handle: BinaryIO,
        expected_size: int | None,
        progress: Progress,
        expect_html: bool,
        restart_pending: bool = False,
        size_problem: str | None = None,
    ) -> None:
        """Stream the body into the partial file; a pending restart (the server ignored Range)
        truncates the partial only once the first chunk passed the HTML check."""
        raw = response.raw
        network_errors = (
            urllib3.exceptions.HTTPError,
            requests.RequestException,
            ConnectionError,
            TimeoutError,
        )
        try:
            chunk = raw.read(CHUNK, decode_content=False)
        except network_errors as error:
            raise _Transient(f"connection lost: {type(error).__name__}") from None
        at_start = partial.received == 0 or restart_pending
        if chunk and at_start and not expect_html and looks_like_html(chunk[:512]):
            raise HtmlResponseError(
                f"{url} sent an HTML document instead of the data file "
                "(an error page with status 200)"
            )
        if size_problem is not None:  # checked after the HTML sniff: the more precise message
            raise SizeMismatchError(size_problem)
        if chunk and restart_pending:
            partial.restart(handle)
            progress.reset()
        with _HashingThread(list(partial.hashers.values())) as hashing:
            try:
                while chunk:
                    if expected_size is not None and partial.received + len(chunk) > expected_size:
                        partial.tainted = True
                        raise SizeMismatchError(
                            f"{url} sent more than the manifest size of {expected_size} bytes"
                        )
                    handle.write(chunk)
                    hashing.update(chunk)
                    partial.received += len(chunk)
                    progress.advance(len(chunk))
                    chunk = raw.read(CHUNK, decode_content=False)
            except network_errors as error:
                handle.flush()
                raise _Transient(f"connection lost: {type(error).__name__}") from None
        handle.flush()


class _HashingThread:
    """Feeds chunks to hashers in a second thread, so hashing overlaps receiving and writing.

    ``hashlib`` releases the GIL on large buffers; on two cores this takes the checksum off the
    critical path. The hashers see exactly the chunks handed over, in order, before ``__exit__``
    returns.
    """

    def __init__(self, hashers: list[Hasher]) -> None:
        self.hashers = hashers
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=16)
        self.thread = threading.Thread(target=self._run, name="pd4ml-hash", daemon=True)

    def _run(self) -> None:
        while (chunk := self.queue.get()) is not None:
            for hasher in self.hashers:
                hasher.update(chunk)

    def update(self, chunk: bytes) -> None:
        self.queue.put(chunk)

    def __enter__(self) -> _HashingThread:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.queue.put(None)
        self.thread.join()
