"""A loopback archive server: Zenodo- and CERN-Open-Data-compatible, with fault injection.

A real HTTP server (one thread per connection) bound to ``127.0.0.1`` on a free port. It serves
record JSON and file downloads the way the real archives do, honours ``Range`` requests, and
can misbehave on demand: drop the connection after N bytes, answer 503/429 with
``Retry-After``, omit ``Content-Length``, send an HTML error page, corrupt bytes, send more
bytes than the file has, ignore ``Range``, or be slow. Every request is logged so tests can count
downloads. Users can test their own pipelines offline with it::

    from pd4ml.testing import ArchiveServer, Fault
    with ArchiveServer() as server:
        server.add_zenodo_record(2603256, {"train.h5": "/path/to/train.h5"})
        server.inject(Fault.drop_after(1_000_000, path="*/train.h5"))
        ...  # point PD4ML_ZENODO_URL at server.url

Routes (``{id}`` a record id, ``{key}`` a file name):

* Zenodo: ``GET /api/records/{id}`` (record JSON in the legacy-compatible serialisation),
  ``GET /api/records/{id}/files`` (file listing), files at ``/records/{id}/files/{key}``
  (``?download=1``), ``/records/{id}/files/{key}/content`` and
  ``/api/records/{id}/files/{key}/content``; the pre-2023 ``/record/{id}/files/{key}`` redirects
  (301) to ``/records/…``.
* CERN Open Data: ``GET /api/records/{recid}`` (``metadata.files[]`` with ``uri``, ``size``,
  ``adler32`` checksum), files at ``/record/{recid}/files/{name}`` and at their EOS path
  ``/eos/opendata/…`` (the ``root://eospublic.cern.ch/`` uri prefix replaced by the server URL).
* Plain files: ``/files/{path}``.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import ipaddress
import json
import os
import re
import socket
import ssl
import subprocess
import threading
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote, unquote, urlsplit

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_CHUNK = 256 << 10
HTML_ERROR_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Page not available</title></head>"
    b"<body><h1>Sorry, this share has expired</h1><p>The link you followed is no longer "
    b"valid.</p></body></html>\n"
)


@dataclass
class Fault:
    """One misbehaviour, applied to the next ``times`` requests whose path matches ``path``.

    ``path`` is a shell pattern matched against the URL path (``"*"``: every request);
    ``times=None`` means forever. Build faults with the class methods.
    """

    kind: str
    path: str = "*"
    times: int | None = 1
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def drop_after(cls, n_bytes: int, path: str = "*", times: int | None = 1) -> Fault:
        """Send the headers and ``n_bytes`` of the body, then close the connection."""
        return cls("drop_after", path, times, {"n_bytes": n_bytes})

    @classmethod
    def status(
        cls,
        code: int,
        retry_after: float | str | None = None,
        path: str = "*",
        times: int | None = 1,
    ) -> Fault:
        """Answer with HTTP ``code`` (e.g. 503, 429, 404), optionally with ``Retry-After``."""
        return cls("status", path, times, {"code": code, "retry_after": retry_after})

    @classmethod
    def no_content_length(cls, path: str = "*", times: int | None = 1) -> Fault:
        """Omit ``Content-Length``; the end of the body is marked by closing the connection."""
        return cls("no_content_length", path, times)

    @classmethod
    def html_page(
        cls, path: str = "*", times: int | None = 1, content_type: str = "text/html; charset=utf-8"
    ) -> Fault:
        """Answer 200 with an HTML error page (optionally labelled with another content type)."""
        return cls("html_page", path, times, {"content_type": content_type})

    @classmethod
    def corrupt(
        cls, offset: int, n_bytes: int = 16, path: str = "*", times: int | None = 1
    ) -> Fault:
        """Flip ``n_bytes`` bytes of the file starting at byte ``offset``."""
        return cls("corrupt", path, times, {"offset": offset, "n_bytes": n_bytes})

    @classmethod
    def extra_bytes(cls, n_bytes: int, path: str = "*", times: int | None = 1) -> Fault:
        """Append ``n_bytes`` bytes of garbage to the file (Content-Length includes them)."""
        return cls("extra_bytes", path, times, {"n_bytes": n_bytes})

    @classmethod
    def truncate(cls, n_bytes: int, path: str = "*", times: int | None = 1) -> Fault:
        """Serve only the first ``n_bytes`` bytes, as if that were the whole file."""
        return cls("truncate", path, times, {"n_bytes": n_bytes})

    @classmethod
    def ignore_range(cls, path: str = "*", times: int | None = None) -> Fault:
        """Answer 200 with the whole file even when a ``Range`` is asked for."""
        return cls("ignore_range", path, times)

    @classmethod
    def header(cls, name: str, value: str, path: str = "*", times: int | None = 1) -> Fault:
        """Add a response header to file answers (e.g. an unasked-for ``Content-Encoding``)."""
        return cls("header", path, times, {"name": name, "value": value})

    @classmethod
    def slow(
        cls,
        delay: float = 0.0,
        bytes_per_second: float | None = None,
        path: str = "*",
        times: int | None = 1,
    ) -> Fault:
        """Wait ``delay`` seconds before answering and/or throttle the body."""
        return cls("slow", path, times, {"delay": delay, "bytes_per_second": bytes_per_second})


@dataclass(frozen=True)
class ServedRequest:
    """One request the server answered (for assertions in tests)."""

    method: str
    path: str
    status: int
    range: str | None
    bytes_sent: int
    fault: str | None
    """The applied fault kinds, ``+``-joined (``None`` for a normal answer)."""


@dataclass
class _ServedFile:
    path: Path
    content_type: str = "application/octet-stream"
    _md5: str | None = None
    _adler32: str | None = None

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    def md5(self) -> str:
        if self._md5 is None:
            digest = hashlib.md5(usedforsecurity=False)
            with open(self.path, "rb") as handle:
                while block := handle.read(4 << 20):
                    digest.update(block)
            self._md5 = digest.hexdigest()
        return self._md5

    def adler32(self) -> str:
        if self._adler32 is None:
            value = 1
            with open(self.path, "rb") as handle:
                while block := handle.read(4 << 20):
                    value = zlib.adler32(block, value)
            self._adler32 = f"{value & 0xFFFFFFFF:08x}"
        return self._adler32


@dataclass
class _Record:
    kind: str  # "zenodo" | "cernopendata"
    record_id: str
    files: dict[str, _ServedFile]
    metadata: dict[str, Any]
    eos_paths: dict[str, str] = field(default_factory=dict)  # key -> /eos/... path


class ArchiveServer:
    """The loopback archive server (see the module docstring). Use as a context manager."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tls: tuple[str | os.PathLike[str], str | os.PathLike[str]] | None = None,
    ) -> None:
        """``tls=(certificate_pem, private_key_pem)`` serves HTTPS (see
        :func:`self_signed_certificate`); the default is plain HTTP."""
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the archive server only binds to the loopback interface")
        self._records: dict[str, _Record] = {}
        self._plain: dict[str, _ServedFile] = {}
        self._eos: dict[str, _ServedFile] = {}
        self._faults: list[Fault] = []
        self._log: list[ServedRequest] = []
        self._lock = threading.Lock()
        self._answering = 0  # requests being answered (logged when their answer is complete)
        self._answered = threading.Condition(self._lock)
        handler = type("Handler", (_Handler,), {"archive": self})
        self._httpd = _QuietServer((host, port), handler)
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(os.fspath(tls[0]), os.fspath(tls[1]))
            self._httpd.tls_context = context
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123`` (``https://`` when serving TLS)."""
        host, port = self._httpd.server_address[:2]
        scheme = "https" if self._httpd.tls_context is not None else "http"
        return f"{scheme}://{host!s}:{port}"

    def start(self) -> ArchiveServer:
        """Start serving in a background thread."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, name="pd4ml-archive-server", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> ArchiveServer:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- content -------------------------------------------------------------------------------
    def add_zenodo_record(
        self,
        record_id: int | str,
        files: Mapping[str, str | os.PathLike[str]],
        *,
        title: str = "Loopback test record",
        concept_record_id: int | str | None = None,
        version: str = "v1",
        license_id: str = "cc-by-4.0",
    ) -> str:
        """Serve a Zenodo record holding ``files`` (key → local path); return its record URL."""
        record = str(record_id)
        concept = str(concept_record_id) if concept_record_id is not None else str(int(record) - 1)
        self._add_record(
            _Record(
                "zenodo",
                record,
                {key: _ServedFile(Path(path)) for key, path in files.items()},
                {
                    "title": title,
                    "conceptrecid": concept,
                    "version": version,
                    "license": license_id,
                },
            )
        )
        return f"{self.url}/records/{record}"

    def add_cernopendata_record(
        self,
        record_id: int | str,
        files: Mapping[str, str | os.PathLike[str]],
        *,
        eos_directory: str = "/eos/opendata/test",
        title: str = "Loopback test record",
        doi: str | None = None,
    ) -> str:
        """Serve a CERN Open Data record; files also at ``{eos_directory}/{name}``."""
        record = str(record_id)
        eos = {key: f"{eos_directory.rstrip('/')}/{key}" for key in files}
        served = {key: _ServedFile(Path(path)) for key, path in files.items()}
        self._add_record(
            _Record("cernopendata", record, served, {"title": title, "doi": doi}, eos_paths=eos)
        )
        with self._lock:
            for key, eos_path in eos.items():
                self._eos[eos_path] = served[key]
        return f"{self.url}/record/{record}"

    def add_file(
        self, url_path: str, path: str | os.PathLike[str], content_type: str | None = None
    ) -> str:
        """Serve a local file at ``/files/{url_path}``; return its URL."""
        key = url_path.lstrip("/")
        served = _ServedFile(Path(path))
        if content_type:
            served.content_type = content_type
        with self._lock:
            self._plain[key] = served
        return f"{self.url}/files/{quote(key)}"

    def add_directory(self, root: str | os.PathLike[str]) -> None:
        """Serve a directory laid out as ``zenodo/<id>/*``, ``cernopendata/<id>/*``, ``files/…``."""
        root = Path(root)
        for kind in ("zenodo", "cernopendata"):
            for record_dir in sorted((root / kind).glob("*")):
                if not record_dir.is_dir():
                    continue
                files = {p.name: p for p in sorted(record_dir.iterdir()) if p.is_file()}
                if kind == "zenodo":
                    self.add_zenodo_record(record_dir.name, files)
                else:
                    self.add_cernopendata_record(
                        record_dir.name, files, eos_directory=f"/eos/opendata/{record_dir.name}"
                    )
        plain = root / "files"
        if plain.is_dir():
            for path in sorted(plain.rglob("*")):
                if path.is_file():
                    self.add_file(path.relative_to(plain).as_posix(), path)

    def _add_record(self, record: _Record) -> None:
        with self._lock:
            if record.record_id in self._records:
                raise ValueError(f"record {record.record_id} is already served")
            self._records[record.record_id] = record

    # -- faults and bookkeeping ----------------------------------------------------------------
    def inject(self, *faults: Fault) -> None:
        """Queue faults; each applies to the next matching request(s)."""
        with self._lock:
            self._faults.extend(faults)

    def clear_faults(self) -> None:
        """Forget every queued fault."""
        with self._lock:
            self._faults.clear()

    def take_faults(self, path: str) -> dict[str, Fault]:
        """The faults that apply to a request for ``path`` (the first queued of each kind)."""
        taken: dict[str, Fault] = {}
        with self._lock:
            for fault in list(self._faults):
                if fault.kind in taken or not fnmatch.fnmatch(path, fault.path):
                    continue
                taken[fault.kind] = fault
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
        return taken

    def record_request(self, entry: ServedRequest) -> None:
        with self._lock:
            self._log.append(entry)

    def answering(self, started: bool) -> None:
        """Count a request as being answered (``True``) or done (``False``)."""
        with self._answered:
            self._answering += 1 if started else -1
            self._answered.notify_all()

    @property
    def requests(self) -> list[ServedRequest]:
        """Every request served so far, in order.

        A client can finish reading an answer before the server's thread has logged it, so
        this waits (up to 1 s) for requests still being answered to be logged.
        """
        with self._answered:
            self._answered.wait_for(lambda: self._answering == 0, timeout=1.0)
            return list(self._log)

    def count(self, path: str = "*", method: str | None = "GET") -> int:
        """Number of requests whose path matches the shell pattern ``path``."""
        return sum(
            1
            for entry in self.requests
            if fnmatch.fnmatch(entry.path, path) and (method is None or entry.method == method)
        )

    def reset_log(self) -> None:
        """Forget the request log."""
        with self._lock:
            self._log.clear()

    # -- routing -------------------------------------------------------------------------------
    def record_json(self, record_id: str) -> dict[str, Any] | None:
        record = self._records.get(record_id)
        if record is None:
            return None
        if record.kind == "zenodo":
            return self._zenodo_json(record)
        return self._cern_json(record)

    def _zenodo_json(self, record: _Record) -> dict[str, Any]:
        base = self.url
        rid = record.record_id
        concept = record.metadata["conceptrecid"]
        files = [
            {
                "id": hashlib.sha1(f"{rid}/{key}".encode(), usedforsecurity=False).hexdigest(),
                "key": key,
                "size": served.size,
                "checksum": f"md5:{served.md5()}",
                "links": {"self": f"{base}/api/records/{rid}/files/{quote(key)}/content"},
            }
            for key, served in record.files.items()
        ]
        return {
            "id": int(rid) if rid.isdigit() else rid,
            "recid": rid,
            "conceptrecid": concept,
            "doi": f"10.5281/zenodo.{rid}",
            "conceptdoi": f"10.5281/zenodo.{concept}",
            "doi_url": f"https://doi.org/10.5281/zenodo.{rid}",
            "title": record.metadata["title"],
            "metadata": {
                "title": record.metadata["title"],
                "doi": f"10.5281/zenodo.{rid}",
                "version": record.metadata["version"],
                "license": {"id": record.metadata["license"]},
                "access_right": "open",
                "resource_type": {"type": "dataset", "title": "Dataset"},
                "relations": {
                    "version": [
                        {
                            "index": 0,
                            "is_last": True,
                            "parent": {"pid_type": "recid", "pid_value": concept},
                        }
                    ]
                },
            },
            "links": {
                "self": f"{base}/api/records/{rid}",
                "self_html": f"{base}/records/{rid}",
                "files": f"{base}/api/records/{rid}/files",
            },
            "files": files,
            "status": "published",
            "state": "done",
            "submitted": True,
        }

    def _cern_json(self, record: _Record) -> dict[str, Any]:
        rid = record.record_id
        return {
            "id": rid,
            "links": {"self": f"{self.url}/api/records/{rid}"},
            "metadata": {
                "recid": rid,
                "title": record.metadata["title"],
                "doi": record.metadata["doi"],
                "files": [
                    {
                        "uri": f"root://eospublic.cern.ch/{record.eos_paths[key]}",
                        "size": served.size,
                        "checksum": f"adler32:{served.adler32()}",
                    }
                    for key, served in record.files.items()
                ],
            },
        }

    def resolve(self, path: str) -> tuple[str, Any]:
        """Map a URL path to ``("file", served)``, ``("json", payload)``, ``("redirect", url)``."""
        parts = [unquote(part) for part in path.split("/") if part]
        if len(parts) >= 3 and parts[0] == "api" and parts[1] == "records":
            record = self._records.get(parts[2])
            if record is None:
                return ("missing", None)
            if len(parts) == 3:
                return ("json", self.record_json(parts[2]))
            if len(parts) == 4 and parts[3] == "files" and record.kind == "zenodo":
                payload = self._zenodo_json(record)
                return ("json", {"entries": payload["files"]})
            if len(parts) >= 6 and parts[3] == "files" and parts[-1] == "content":
                return self._file(record, "/".join(parts[4:-1]))
            return ("missing", None)
        if len(parts) >= 4 and parts[0] in ("records", "record") and parts[2] == "files":
            record = self._records.get(parts[1])
            if record is None:
                return ("missing", None)
            key = "/".join(parts[3:])
            if parts[0] == "record" and record.kind == "zenodo":
                return ("redirect", f"/records/{parts[1]}/files/{quote(key)}")
            if key.endswith("/content") and key[: -len("/content")] in record.files:
                key = key[: -len("/content")]
            return self._file(record, key)
        if parts and parts[0] == "eos":
            served = self._eos.get("/" + "/".join(parts))
            return ("file", served) if served else ("missing", None)
        if parts and parts[0] == "files":
            served = self._plain.get("/".join(parts[1:]))
            return ("file", served) if served else ("missing", None)
        return ("missing", None)

    @staticmethod
    def _file(record: _Record, key: str) -> tuple[str, Any]:
        served = record.files.get(key)
        return ("file", served) if served else ("missing", None)


class _Handler(BaseHTTPRequestHandler):
    archive: ArchiveServer
    protocol_version = "HTTP/1.1"
    server_version = "pd4ml-loopback/1"

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: the request log is kept in ArchiveServer.requests

    def do_HEAD(self) -> None:
        self.archive.answering(True)
        try:
            self._answer(head=True)
        finally:
            self.archive.answering(False)

    def do_GET(self) -> None:
        self.archive.answering(True)
        try:
            self._answer(head=False)
        finally:
            self.archive.answering(False)

    # -- helpers ---------------------------------------------------------------------------------
    def _log(self, status: int, sent: int, faults: dict[str, Fault]) -> None:
        self.archive.record_request(
            ServedRequest(
                self.command,
                re.sub(r"/{2,}", "/", urlsplit(self.path).path),
                status,
                self.headers.get("Range"),
                sent,
                "+".join(faults) or None,
            )
        )

    def _simple(
        self, status: int, body: bytes, content_type: str, headers: Mapping[str, str] = {}
    ) -> int:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        return len(body)

    def _answer(self, head: bool) -> None:
        path = re.sub(r"/{2,}", "/", urlsplit(self.path).path)
        faults = self.archive.take_faults(path)
        try:
            slow = faults.get("slow")
            if slow is not None and slow.params.get("delay"):
                time.sleep(float(slow.params["delay"]))
            if "status" in faults:
                code = int(faults["status"].params["code"])
                headers = {}
                if faults["status"].params.get("retry_after") is not None:
                    headers["Retry-After"] = str(faults["status"].params["retry_after"])
                body = f"{code} {HTTPStatus(code).phrase}\n".encode()
                self._log(code, self._simple(code, body, "text/plain", headers), faults)
                return
            kind, target = self.archive.resolve(path)
            if kind == "missing":
                self._log(404, self._simple(404, b"404 Not Found\n", "text/plain"), faults)
            elif "html_page" in faults:
                content_type = str(faults["html_page"].params["content_type"])
                self._log(200, self._simple(200, HTML_ERROR_PAGE, content_type), faults)
            elif kind == "redirect":
                sent = self._simple(301, b"", "text/plain", {"Location": str(target)})
                self._log(301, sent, faults)
            elif kind == "json":
                sent = self._simple(200, json.dumps(target).encode(), "application/json")
                self._log(200, sent, faults)
            else:
                self._send_file(target, faults, head)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _send_file(self, served: _ServedFile, faults: dict[str, Fault], head: bool) -> None:
        size = served.size
        extra = b""
        if "truncate" in faults:
            size = min(size, int(faults["truncate"].params["n_bytes"]))
        if "extra_bytes" in faults:
            n_extra = int(faults["extra_bytes"].params["n_bytes"])
            extra = (b"\x00garbage" * (n_extra // 8 + 1))[:n_extra]
        total = size + len(extra)
        start, end = 0, total - 1
        status = 200
        range_header = self.headers.get("Range")
        if range_header and "ignore_range" not in faults:
            match = _RANGE.match(range_header.strip())
            if match and (match.group(1) or match.group(2)):
                first, last = match.group(1), match.group(2)
                if first:
                    start = int(first)
                    end = min(int(last), total - 1) if last else total - 1
                else:
                    start = max(0, total - int(last))
                if start >= total or start > end:
                    sent = self._simple(
                        416,
                        b"416 Range Not Satisfiable\n",
                        "text/plain",
                        {"Content-Range": f"bytes */{total}"},
                    )
                    self._log(416, sent, faults)
                    return
                status = 206
        length = end - start + 1
        self.send_response(status)
        self.send_header("Content-Type", served.content_type)
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{total}")
        if "header" in faults:
            self.send_header(
                str(faults["header"].params["name"]), str(faults["header"].params["value"])
            )
        if "no_content_length" in faults:
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(length))
        self.end_headers()
        if head:
            self._log(status, 0, faults)
            return
        sent = self._send_body(served, start, length, size, extra, faults)
        self._log(status, sent, faults)

    def _send_body(
        self,
        served: _ServedFile,
        start: int,
        length: int,
        file_size: int,
        extra: bytes,
        faults: dict[str, Fault],
    ) -> int:
        limit = length
        if "drop_after" in faults:
            limit = min(length, int(faults["drop_after"].params["n_bytes"]))
        rate = faults["slow"].params.get("bytes_per_second") if "slow" in faults else None
        corrupt = (
            (int(faults["corrupt"].params["offset"]), int(faults["corrupt"].params["n_bytes"]))
            if "corrupt" in faults
            else None
        )
        file_part = max(0, min(start + limit, file_size) - start)
        sent = 0
        with open(served.path, "rb") as handle:
            if corrupt is None and rate is None and file_part:
                self.wfile.flush()
                sent = self.connection.sendfile(handle, offset=start, count=file_part)
            else:
                handle.seek(start)
                while sent < file_part:
                    block = bytearray(handle.read(min(_CHUNK, file_part - sent)))
                    if not block:
                        break
                    if corrupt is not None:
                        position = start + sent
                        first = max(corrupt[0], position)
                        last = min(corrupt[0] + corrupt[1], position + len(block))
                        for index in range(first - position, last - position):
                            block[index] ^= 0xFF
                    self.wfile.write(block)
                    sent += len(block)
                    if rate:
                        time.sleep(len(block) / float(rate))
        if sent < limit and extra:
            offset_in_extra = max(0, start - file_size)
            piece = extra[offset_in_extra : offset_in_extra + (limit - sent)]
            self.wfile.write(piece)
            sent += len(piece)
        self.wfile.flush()
        if sent < length or self.close_connection:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
        return sent


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    tls_context: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Serve one connection; with TLS, the handshake runs here, in the connection's thread
        (not in the accepting loop, which a client that never completes it would block)."""
        if self.tls_context is None:
            super().finish_request(request, client_address)
            return
        connection = self.tls_context.wrap_socket(request, server_side=True)
        try:
            super().finish_request(connection, client_address)
        finally:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up mid-body are expected (the fetcher aborts bad downloads), and
        so are clients that reject the certificate during the TLS handshake."""
        import sys

        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError, ssl.SSLError)):
            return
        super().handle_error(request, client_address)


def self_signed_certificate(
    directory: str | os.PathLike[str], host: str = "127.0.0.1"
) -> tuple[Path, Path]:
    """Write a self-signed certificate for ``host`` (an IP address or a DNS name, in the
    subjectAltName) and its private key; return ``(certificate_pem, key_pem)``.

    Uses the ``openssl`` command line (present wherever Python's ``ssl`` was built). The
    certificate is its own CA: pointing ``REQUESTS_CA_BUNDLE`` at it makes it trusted.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    certificate, key = directory / "loopback-cert.pem", directory / "loopback-key.pem"
    try:
        ipaddress.ip_address(host)
        alt_name = f"IP:{host}"
    except ValueError:
        alt_name = f"DNS:{host}"
    command = [
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        f"/CN={host}",
        "-addext",
        f"subjectAltName={alt_name}",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-keyout",
        str(key),
        "-out",
        str(certificate),
    ]
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=60)
    except FileNotFoundError:
        raise RuntimeError("self_signed_certificate needs the `openssl` command") from None
    except subprocess.CalledProcessError as error:
        raise RuntimeError(f"openssl failed: {error.stderr.decode(errors='replace')}") from None
    return certificate, key


def serve_directory(root: str | os.PathLike[str]) -> ArchiveServer:
    """A started server for a directory (see :meth:`ArchiveServer.add_directory`)."""
    server = ArchiveServer()
    server.add_directory(root)
    return server.start()


def main(argv: list[str] | None = None) -> int:
    """Serve files from the command line in a process of its own (benchmarks, manual tests).

    ``python -m pd4ml.testing.server --zenodo-record 1 FILE [FILE ...]`` prints the base URL on
    the first line of stdout, then serves until stdin is closed or the process is terminated.
    """
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m pd4ml.testing.server", description=main.__doc__
    )
    parser.add_argument("--zenodo-record", default="1", help="record id to serve the files under")
    parser.add_argument("files", nargs="+", type=Path, help="files to serve (by base name)")
    args = parser.parse_args(argv)
    with ArchiveServer() as server:
        server.add_zenodo_record(args.zenodo_record, {path.name: path for path in args.files})
        print(server.url, flush=True)
        sys.stdin.read()  # returns when the parent closes the pipe (or exits)
    return 0


__all__ = [
    "HTML_ERROR_PAGE",
    "ArchiveServer",
    "Fault",
    "ServedRequest",
    "self_signed_certificate",
    "serve_directory",
]


if __name__ == "__main__":
    raise SystemExit(main())
