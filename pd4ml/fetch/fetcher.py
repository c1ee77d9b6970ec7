"""Turn a manifest file entry into a verified local file.

Resolution order: read-only shared layers → user cache → ``PD4ML_MIRROR`` → manifest mirrors →
archive. A verified file carries a stamp (size, mtime, checksum) so that warm loads never re-hash
it; ``verify`` re-hashes on demand. Downloads go to a partial file under the cache, are hashed
while they stream, and are renamed to the final name only once size and checksum match, under
an inter-process lock so that N processes asking for the same file download it once.

Offline (``PD4ML_OFFLINE=1``) only the network is off: shared layers, the user cache and local
mirrors (directories, ``file://`` URLs) are still used. A full disk raises
:class:`~pd4ml.errors.DiskFullError` (checked before a download of known size, too) and keeps
the partial file for a resume.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import posixpath
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

import requests

from pd4ml._logging import get_logger
from pd4ml.cache import Cache, read_json, write_json_atomic
from pd4ml.checksums import READ_CHUNK, Checksum, hash_file, new_hasher
from pd4ml.config import Settings
from pd4ml.errors import (
    CertificateError,
    ChecksumMismatchError,
    DownloadError,
    IntegrityError,
    OfflineError,
    SizeMismatchError,
    UnavailableError,
)
from pd4ml.fetch.archives import Candidate, RecordFile, candidates, fetch_record_files
from pd4ml.fetch.diskspace import disk_full_as_error, ensure_free_space
from pd4ml.fetch.http import CERTIFICATE_REMEDY, Downloader, PartialDownload, new_session
from pd4ml.fetch.locking import exclusive
from pd4ml.fetch.progress import Progress, progress_enabled
from pd4ml.manifest import DatasetManifest, DatasetVersion, FileEntry

log = get_logger("fetch")
_ALGORITHM_PREFERENCE = ("sha256", "sha512", "sha1", "md5", "adler32")


def _kept_bytes(part: Path) -> int | None:
    """Bytes of a partial file left for a later resume (None: no partial file)."""
    try:
        size = part.stat().st_size
    except OSError:
        return None
    return size or None


class _ResumedMismatchError(ChecksumMismatchError):
    """A checksum mismatch after resuming an earlier partial download (retried from byte 0)."""


@dataclass(frozen=True)
class LocalFile:
    """A verified file on local disk and where it came from.

    ``origin`` says where the bytes came from: ``archive``, ``mirror``, ``import``, ``shared``
    (a read-only layer, used in place) or ``cache`` (found in the user cache without a record).
    """

    key: str
    path: Path
    origin: str
    checksum: str
    url: str | None = None


@dataclass(frozen=True)
class Expected:
    """What a file must look like: acceptable checksums (empty: none known) and size."""

    checksums: tuple[Checksum, ...]
    size: int | None
    origin: str

    @property
    def algorithm(self) -> str:
        """The algorithm to hash with while streaming (the strongest available)."""
        algorithms = {checksum.algorithm for checksum in self.checksums}
        return next((name for name in _ALGORITHM_PREFERENCE if name in algorithms), "sha256")

    @property
    def checksum(self) -> Checksum | None:
        """The checksum that will be compared (for :attr:`algorithm`)."""
        return next((c for c in self.checksums if c.algorithm == self.algorithm), None)

    def accepts(self, checksum_text: str) -> bool:
        """True when a recorded checksum string is one of the expected ones (or none is known)."""
        return not self.checksums or checksum_text in {str(c) for c in self.checksums}


def remedy(manifest_name: str) -> str:
    """The standard advice for getting files by hand."""
    return (
        f"run `pd4ml urls {manifest_name}` to list the URLs and checksums, download the files "
        f"elsewhere, then `pd4ml import {manifest_name} DIR`; or point PD4ML_MIRROR or "
        "PD4ML_SHARED_DATA at a copy"
    )


class Fetcher:
    """Fetches and verifies the files of dataset versions for given :class:`Settings`."""

    def __init__(
        self,
        settings: Settings | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings or Settings.from_env()
        self.cache = Cache(self.settings)
        self.session = session or new_session()
        self.downloader = Downloader(
            self.settings.retry, self.session, sleep=sleep, headers_for=self._auth_headers
        )
        self._records: dict[tuple[str, str], dict[str, RecordFile]] = {}
        self._unsaved_records: set[tuple[str, str]] = set()

    def close(self) -> None:
        """Close the HTTP session."""
        self.session.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- expected checksums ------------------------------------------------------------------
    def _auth_headers(self, url: str) -> dict[str, str]:
        token = self.settings.zenodo_token
        if not token:
            return {}
        zenodo_host = urlsplit(self.settings.zenodo_url or "https://zenodo.org").hostname
        return {"Authorization": f"Bearer {token}"} if urlsplit(url).hostname == zenodo_host else {}

    def _recorded_files(
        self, manifest: DatasetManifest, version: DatasetVersion
    ) -> dict[str, RecordFile]:
        """Record-API facts saved by an earlier download, from the user cache or a shared layer."""
        paths = [self.cache.record_path(manifest.name, version.name)] + [
            self.cache.version_dir(manifest.name, version.name, root) / "record.json"
            for root in self.cache.shared_roots()
        ]
        for path in paths:
            payload = read_json(path)
            if isinstance(payload, dict) and isinstance(payload.get("files"), dict):
                return {
                    key: RecordFile(
                        key=key,
                        size=value.get("size"),
                        checksum=Checksum.parse(value["checksum"])
                        if value.get("checksum")
                        else None,
                        url=None,
                    )
                    for key, value in payload["files"].items()
                    if isinstance(value, dict)
                }
        return {}

    def _record_files(
        self, manifest: DatasetManifest, version: DatasetVersion, *, network: bool
    ) -> dict[str, RecordFile]:
        cache_key = (manifest.name, version.name)
        if cache_key in self._records:
            return self._records[cache_key]
        files = self._recorded_files(manifest, version)
        if not files and network and not self.settings.offline:
            files = fetch_record_files(version, self.settings, self.session)
            self._unsaved_records.add(cache_key)
        if files:
            self._records[cache_key] = files
        return files

    def _save_record(self, manifest: DatasetManifest, version: DatasetVersion) -> None:
        """Record the record-API facts in the cache (once something was verified with them)."""
        cache_key = (manifest.name, version.name)
        if cache_key not in self._unsaved_records:
            return
        files = self._records[cache_key]
        write_json_atomic(
            self.cache.record_path(manifest.name, version.name),
            {
                "source": version.source.kind,
                "record": version.source.record,
                "retrieved_at": time.time(),
                "files": {
                    key: {
                        "size": item.size,
                        "checksum": str(item.checksum) if item.checksum else None,
                    }
                    for key, item in files.items()
                },
            },
        )
        self._unsaved_records.discard(cache_key)

    def expected(
        self,
        manifest: DatasetManifest,
        version: DatasetVersion,
        entry: FileEntry,
        *,
        network: bool = True,
    ) -> Expected:
        """Checksums and size that ``entry`` must match (asking the record API if needed)."""
        origin = entry.checksum_origin
        if origin in ("published", "none"):
            return Expected(entry.checksums, entry.size, origin)
        try:
            files = self._record_files(manifest, version, network=network)
        except DownloadError as error:
            if origin == "third-party":
                log.warning("%s; using the checksum pinned from a third party", error)
                return Expected(entry.checksums, entry.size, origin)
            kind = CertificateError if isinstance(error, CertificateError) else DownloadError
            raise kind(
                f"{manifest.name} {version.name}: {entry.key} has no pinned checksum and the "
                f"record API could not be asked ({error}); {remedy(manifest.name)}"
            ) from None
        record = files.get(entry.key) or files.get(posixpath.basename(entry.key))
        if not files:  # not asked (offline, or a local lookup): stamps were verified before
            if origin == "third-party":
                return Expected(entry.checksums, entry.size, origin)
            return Expected((), entry.size, "unknown")
        if record is None or record.checksum is None:
            if origin == "third-party":
                return Expected(entry.checksums, entry.size, origin)
            listed = "no checksum for" if record is not None else "no file"
            raise DownloadError(
                f"{manifest.name} {version.name}: the archive record lists {listed} "
                f"{entry.key!r}, and the manifest pins none; refusing an unverifiable file"
            )
        size = record.size if record.size is not None else entry.size
        if entry.size is not None and record.size is not None and record.size != entry.size:
            log.warning(
                "%s: the record says %d bytes, the manifest %d; trusting the record",
                entry.key,
                record.size,
                entry.size,
            )
        if origin == "third-party" and record.checksum not in entry.checksums:
            log.warning(
                "%s: the record API publishes %s, the manifest's third-party checksum is %s; "
                "trusting the record",
                entry.key,
                record.checksum,
                ", ".join(map(str, entry.checksums)),
            )
        return Expected((record.checksum,), size, "record-api")

    # -- local lookup ------------------------------------------------------------------------
    def _verified(self, path: Path, expected: Expected, origin: str) -> LocalFile | None:
        """``path`` as a verified :class:`LocalFile`: trust a matching stamp, else hash once."""
        if not path.is_file():
            return None
        stamp = self.cache.read_stamp(path)
        if stamp is not None and (expected.checksum is None or expected.accepts(stamp.checksum)):
            # a stamp without a known checksum was recorded on first download: nothing better
            recorded_origin = origin if origin == "shared" else stamp.origin
            return LocalFile(path.name, path, recorded_origin, stamp.checksum, stamp.url)
        if expected.checksum is None:
            return None
        if expected.size is not None and path.stat().st_size != expected.size:
            log.warning(
                "%s has %d bytes, expected %d; ignoring it",
                path,
                path.stat().st_size,
                expected.size,
            )
            return None
        log.info("verifying %s (no valid stamp)", path)
        actual = hash_file(path, expected.algorithm)
        if actual != expected.checksum:
            log.warning(
                "%s has checksum %s, expected %s; ignoring it", path, actual, expected.checksum
            )
            return None
        self.cache.write_stamp(path, str(actual), origin, beside=origin != "shared")
        return LocalFile(path.name, path, origin, str(actual))

    def find_local(
        self,
        manifest: DatasetManifest,
        version: DatasetVersion,
        entry: FileEntry,
        expected: Expected | None = None,
    ) -> LocalFile | None:
        """The verified local copy of ``entry`` (shared layers first, then the user cache)."""
        if expected is None:
            expected = self.expected(manifest, version, entry, network=False)
        for root in self.cache.shared_roots():
            shared = self._verified(
                self.cache.raw_path(manifest.name, version.name, entry.key, root),
                expected,
                "shared",
            )
            if shared is not None:
                return LocalFile(entry.key, shared.path, shared.origin, shared.checksum, shared.url)
        cached = self._verified(
            self.cache.raw_path(manifest.name, version.name, entry.key), expected, "cache"
        )
        if cached is not None:
            return LocalFile(entry.key, cached.path, cached.origin, cached.checksum, cached.url)
        return None

    def is_cached(
        self, manifest: DatasetManifest, version: DatasetVersion, entry: FileEntry
    ) -> bool:
        """True when a stamped (verified) copy exists locally; no hashing, no network."""
        expected = self.expected(manifest, version, entry, network=False)
        for root in (*self.cache.shared_roots(), self.cache.root):
            path = self.cache.raw_path(manifest.name, version.name, entry.key, root)
            stamp = self.cache.read_stamp(path) if path.is_file() else None
            if stamp is not None and (
                expected.checksum is None or expected.accepts(stamp.checksum)
            ):
                return True
        return False

    # -- fetching ----------------------------------------------------------------------------
    def fetch(
        self,
        manifest: DatasetManifest,
        version: DatasetVersion | str | None = None,
        keys: Iterable[str] | None = None,
        *,
        force: bool = False,
    ) -> dict[str, LocalFile]:
        """Verified local copies of the version's files (all of them, or ``keys``)."""
        version = version if isinstance(version, DatasetVersion) else manifest.version(version)
        entries = [version.file(key) for key in keys] if keys is not None else list(version.files)
        resolved: list[FileEntry] = []
        unresolved: list[str] = []  # offline: file patterns whose record is not recorded here
        for entry in entries:
            try:
                resolved.append(self.resolve_entry(manifest, version, entry))
            except OfflineError:
                unresolved.append(
                    f"{entry.key} (a file the archive's record names; not recorded here)"
                )
        entries = resolved
        found: dict[str, LocalFile] = {}
        missing: list[FileEntry] = []
        for entry in entries:
            local = None if force else self.find_local(manifest, version, entry)
            if local is None:
                missing.append(entry)
            else:
                found[entry.key] = local
        if self.settings.offline:
            # offline means no network: local mirrors (directories, file:// URLs) still count
            unreachable = unresolved + [
                entry.key
                for entry in missing
                if not any(
                    candidate.local_path.is_file()
                    for candidate in self._sources(manifest, version, entry)
                )
            ]
            if unreachable:
                raise OfflineError(
                    f"PD4ML_OFFLINE=1 and {manifest.name} {version.name} is missing "
                    f"{', '.join(unreachable)} from {self._searched(manifest, version)}; "
                    f"{remedy(manifest.name)}"
                )
        if missing and version.source.status == "unpublished" and not self.settings.mirrors:
            raise UnavailableError(
                f"{manifest.display_name} {version.name}: {version.source.status_note} Files "
                f"needed: {', '.join(entry.key for entry in missing)}. Provide them with "
                f"`pd4ml import {manifest.name} DIR`, or set PD4ML_MIRROR (a directory or URL "
                f"holding {manifest.name}/{version.name}/<file>) or PD4ML_SHARED_DATA."
            )
        for entry in missing:
            found[entry.key] = self._fetch_one(manifest, version, entry, force=force)
        return {entry.key: found[entry.key] for entry in entries}

    def resolve_entry(
        self,
        manifest: DatasetManifest,
        version: DatasetVersion,
        entry: FileEntry,
        *,
        network: bool = True,
    ) -> FileEntry:
        """The concrete file for an entry whose key is a pattern (``*.npz``) resolved from the
        archive's record (recorded in the cache, or asked when online); others unchanged."""
        if not entry.is_pattern:
            return entry
        files = self._record_files(manifest, version, network=network and not self.settings.offline)
        names = sorted(files)
        if not files:
            local = [
                path.name
                for root in (*self.cache.shared_roots(), self.cache.root)
                for path in sorted(
                    self.cache.version_dir(manifest.name, version.name, root).glob("raw/*")
                )
                if path.is_file() and fnmatch.fnmatch(path.name, entry.key)
            ]
            names = sorted(set(local))
        matches = [name for name in names if fnmatch.fnmatch(name, entry.key)]
        if not files and not matches and self.settings.offline:
            raise OfflineError(
                f"PD4ML_OFFLINE=1 and {manifest.name} {version.name} has no local file matching "
                f"{entry.key!r} (its name comes from the archive's record, which is not recorded "
                f"in {self._searched()}); {remedy(manifest.name)}"
            )
        if len(matches) != 1:
            listed = ", ".join(names) or "none known (offline, nothing recorded)"
            raise DownloadError(
                f"{manifest.name} {version.name}: the file pattern {entry.key!r} matches "
                f"{len(matches)} file(s) of the record; its files: {listed}"
            )
        record = files.get(matches[0])
        return replace(
            entry,
            key=matches[0],
            size=record.size if record is not None else entry.size,
        )

    def _searched(
        self, manifest: DatasetManifest | None = None, version: DatasetVersion | None = None
    ) -> str:
        """The local places looked in (cache layers, and local mirrors when given a version)."""
        places = [str(root) for root in (*self.cache.shared_roots(), self.cache.root)]
        if manifest is not None and version is not None:
            places += [
                f"the local mirror {Path(base.removeprefix('file://')) / manifest.name}"
                f"/{version.name}"
                for base in self.settings.mirrors
                if "://" not in base or base.startswith("file://")
            ]
        return ", ".join(places[:-1]) + (" and " if len(places) > 1 else "") + places[-1]

    def _sources(
        self, manifest: DatasetManifest, version: DatasetVersion, entry: FileEntry
    ) -> list[Candidate]:
        """Where to get ``entry`` from, in order; offline only the local mirrors."""
        found = candidates(manifest.name, version, entry, self.settings)
        if self.settings.offline:
            return [candidate for candidate in found if candidate.is_local]
        return found

    def _fetch_one(
        self, manifest: DatasetManifest, version: DatasetVersion, entry: FileEntry, *, force: bool
    ) -> LocalFile:
        final = self.cache.raw_path(manifest.name, version.name, entry.key)
        with exclusive(self.cache.state_path(final, ".lock"), f"download of {entry.key}"):
            expected = self.expected(manifest, version, entry)
            if not force:  # another process may have finished it while we waited
                local = self.find_local(manifest, version, entry, expected)
                if local is not None:
                    return local
            errors: list[tuple[Candidate, Exception]] = []
            for candidate in self._sources(manifest, version, entry):
                try:
                    try:
                        return self._fetch_from(
                            manifest, version, entry, expected, candidate, final
                        )
                    except _ResumedMismatchError:
                        log.warning(
                            "%s: the resumed download failed its checksum; once more from byte 0",
                            entry.key,
                        )
                        return self._fetch_from(
                            manifest, version, entry, expected, candidate, final
                        )
                except DownloadError as error:
                    log.warning("%s: %s", entry.key, error)
                    errors.append((candidate, error))
            raise self._failure(manifest, version, entry, errors)

    def _failure(
        self,
        manifest: DatasetManifest,
        version: DatasetVersion,
        entry: FileEntry,
        errors: list[tuple[Candidate, Exception]],
    ) -> DownloadError:
        texts = [str(e).replace(CERTIFICATE_REMEDY, "") for _, e in errors]  # said once below
        tried = "; ".join(
            f"[{c.origin}] {text}"
            if text.startswith(c.location)
            else f"[{c.origin}] {c.location}: {text}"
            for (c, _), text in zip(errors, texts, strict=True)
        )
        tried = tried or "no source"
        note = ""
        if any(isinstance(error, CertificateError) for _, error in errors):
            note = " " + CERTIFICATE_REMEDY.removeprefix(". ") + "."
        if version.source.status != "available":
            note += f" Note: {version.source.status_note}"
        message = (
            f"could not obtain {entry.key} of {manifest.name} {version.name}. "
            f"Tried: {tried}.{note} "
            f"To fix: {remedy(manifest.name)}."
        )
        if self.settings.offline:
            return OfflineError(f"PD4ML_OFFLINE=1 (only local mirrors are tried): {message}")
        kinds = {type(error) for _, error in errors}
        if len(kinds) == 1:
            kind = next(iter(kinds))
            if issubclass(kind, (IntegrityError, CertificateError)):  # every source, same cause
                return kind(message)
        return DownloadError(message)

    def _fetch_from(
        self,
        manifest: DatasetManifest,
        version: DatasetVersion,
        entry: FileEntry,
        expected: Expected,
        candidate: Candidate,
        final: Path,
    ) -> LocalFile:
        if expected.origin == "unknown":
            raise DownloadError(
                f"{candidate.location}: no checksum is known for {entry.key} here (it comes from "
                "the archive's record API, which is not recorded in the cache); refusing an "
                "unverifiable copy. Fetch it once with network access, or `pd4ml import` it on "
                "a machine that reaches the archive, or point PD4ML_SHARED_DATA at a pd4ml cache "
                "that holds it"
            )
        part = self.cache.state_path(final, ".part")
        with disk_full_as_error(part, expected.size, resumable=lambda: _kept_bytes(part)):
            return self._fetch_into(manifest, version, entry, expected, candidate, final, part)

    def _fetch_into(
        self,
        manifest: DatasetManifest,
        version: DatasetVersion,
        entry: FileEntry,
        expected: Expected,
        candidate: Candidate,
        final: Path,
        part: Path,
    ) -> LocalFile:
        identity_path = self.cache.state_path(final, ".part.json")
        identity = {"checksum": str(expected.checksum) if expected.checksum else None}
        if read_json(identity_path) != identity or expected.checksum is None or candidate.is_local:
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
        write_json_atomic(identity_path, identity)
        partial = PartialDownload.resume_or_start(part, (expected.algorithm,))
        if expected.size is not None:  # fail before the first byte rather than at 99 %
            ensure_free_space(part, expected.size - partial.received)
        label = f"{manifest.display_name}/{entry.key}"
        started = time.monotonic()
        resumed_from = partial.received
        try:
            with Progress(label, expected.size, progress_enabled(self.settings.progress)) as bar:
                bar.reset(partial.received)
                if candidate.is_local:
                    self._copy_local(candidate.local_path, partial, expected.size, bar)
                else:
                    log.info("downloading %s from %s", entry.key, candidate.location)
                    self.downloader.download(
                        candidate.location,
                        partial,
                        expected.size,
                        bar,
                        expect_html=entry.key.lower().endswith((".html", ".htm")),
                    )
            self._check(partial, expected, candidate.location)
        except ChecksumMismatchError as error:
            self._discard(part, identity_path)
            if resumed_from > 0:  # the old partial may be what was damaged, not the server
                raise _ResumedMismatchError(str(error)) from None
            raise
        except IntegrityError:
            if partial.tainted or candidate.is_local or partial.received == 0:
                self._discard(part, identity_path)
            raise
        except BaseException:
            if expected.checksum is None:  # nothing to check a resumed file against later
                self._discard(part, identity_path)
            raise
        if self.settings.fsync:
            with open(part, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(part, final)
        with contextlib.suppress(FileNotFoundError):
            identity_path.unlink()
        checksum = str(partial.checksums()[expected.algorithm])
        self.cache.write_stamp(final, checksum, candidate.origin, candidate.location)
        self._save_record(manifest, version)
        elapsed = max(time.monotonic() - started, 1e-9)
        log.info(
            "%s verified (%s), %.1f MB/s",
            entry.key,
            checksum,
            (partial.received - resumed_from) / elapsed / 1e6,
        )
        return LocalFile(entry.key, final, candidate.origin, checksum, candidate.location)

    @staticmethod
    def _discard(*paths: Path) -> None:
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    @staticmethod
    def _copy_local(
        source: Path, partial: PartialDownload, size: int | None, bar: Progress
    ) -> None:
        if not source.is_file():
            raise DownloadError(f"{source}: no such file")
        if size is not None and source.stat().st_size != size:
            raise SizeMismatchError(f"{source} has {source.stat().st_size} bytes, expected {size}")
        hashers = list(partial.hashers.values())
        with open(source, "rb") as reader, open(partial.path, "wb") as writer:
            while chunk := reader.read(READ_CHUNK):
                writer.write(chunk)
                for hasher in hashers:
                    hasher.update(chunk)
                partial.received += len(chunk)
                bar.advance(len(chunk))

    @staticmethod
    def _check(partial: PartialDownload, expected: Expected, location: str) -> None:
        if expected.size is not None and partial.received != expected.size:
            raise SizeMismatchError(
                f"{location}: got {partial.received} bytes, expected {expected.size}"
            )
        if expected.checksum is None:
            log.warning(
                "%s: no published checksum exists; recorded %s of this first copy",
                location,
                partial.checksums()[expected.algorithm],
            )
            return
        actual = partial.checksums()[expected.algorithm]
        if actual != expected.checksum:
            raise ChecksumMismatchError(
                f"{location}: checksum {actual} does not match the expected {expected.checksum} "
                "(corrupted or changed upstream); the file was discarded"
            )

    # -- verification and import -------------------------------------------------------------
    def verify(
        self, manifest: DatasetManifest, version: DatasetVersion | str | None = None
    ) -> list[tuple[str, Path | None, str]]:
        """Re-hash every local file of a version: ``(key, path, "ok" | "missing" | reason)``.

        A bad file in the user cache loses its stamp, so the next load replaces it.
        """
        version = version if isinstance(version, DatasetVersion) else manifest.version(version)
        results: list[tuple[str, Path | None, str]] = []
        for pattern_entry in version.files:
            try:
                entry = self.resolve_entry(manifest, version, pattern_entry, network=False)
            except DownloadError:
                results.append((pattern_entry.key, None, "missing"))
                continue
            paths = [
                self.cache.raw_path(manifest.name, version.name, entry.key, root)
                for root in (*self.cache.shared_roots(), self.cache.root)
            ]
            path = next((p for p in paths if p.is_file()), None)
            if path is None:
                results.append((entry.key, None, "missing"))
                continue
            expected = self.expected(manifest, version, entry, network=False)
            stamp = self.cache.read_stamp(path)
            wanted = expected.checksum or (Checksum.parse(stamp.checksum) if stamp else None)
            if wanted is None:
                results.append((entry.key, path, "no checksum known to verify against"))
                continue
            actual = hash_file(path, wanted.algorithm)
            if actual == wanted and (expected.size is None or path.stat().st_size == expected.size):
                shared = path != paths[-1]
                origin = "shared" if shared else (stamp.origin if stamp else "cache")
                self.cache.write_stamp(
                    path, str(actual), origin, stamp.url if stamp else None, beside=not shared
                )
                results.append((entry.key, path, "ok"))
            else:
                locations = self.cache.stamp_locations(path)
                for location in locations if path == paths[-1] else locations[1:]:
                    with contextlib.suppress(OSError):
                        location.unlink()
                results.append((entry.key, path, f"checksum {actual} != expected {wanted}"))
        return results

    def import_directory(
        self,
        manifest: DatasetManifest,
        directory: Path,
        version: DatasetVersion | str | None = None,
    ) -> dict[str, LocalFile]:
        """Verify files fetched elsewhere and place them in the cache (air-gapped clusters).

        Every file found in ``directory`` (by key, or by base name) is checked first; only when
        all of them match is anything copied, so a wrong file leaves the cache untouched.
        """
        version = version if isinstance(version, DatasetVersion) else manifest.version(version)
        directory = Path(directory)
        if not directory.is_dir():
            raise DownloadError(f"{directory} is not a directory")
        planned: list[tuple[FileEntry, Path, Expected, Checksum]] = []
        problems: list[str] = []
        for pattern_entry in version.files:
            try:
                entry = self.resolve_entry(manifest, version, pattern_entry)
            except DownloadError as error:
                problems.append(str(error))
                continue
            source = next(
                (
                    p
                    for p in (directory / entry.key, directory / Path(entry.key).name)
                    if p.is_file()
                ),
                None,
            )
            if source is None:
                continue
            expected = self.expected(manifest, version, entry)
            if expected.checksum is None and expected.origin != "none":
                problems.append(
                    f"{source}: no checksum is known for {entry.key} (the archive's record API "
                    "could not be asked); import it on a machine that can reach the archive, "
                    "or fetch its checksum with `pd4ml urls` there"
                )
                continue
            size = source.stat().st_size
            if expected.size is not None and size != expected.size:
                problems.append(f"{source}: {size} bytes, expected {expected.size}")
                continue
            actual = hash_file(source, expected.algorithm)
            if expected.checksum is not None and actual != expected.checksum:
                problems.append(f"{source}: checksum {actual}, expected {expected.checksum}")
                continue
            planned.append((entry, source, expected, actual))
        if problems:
            raise ChecksumMismatchError(
                "import refused, nothing was placed in the cache: " + "; ".join(problems)
            )
        if not planned:
            wanted = ", ".join(entry.key for entry in version.files)
            raise DownloadError(
                f"{directory} holds none of the files of {manifest.name} {version.name} ({wanted})"
            )
        imported: dict[str, LocalFile] = {}
        for entry, source, expected, actual in planned:
            if expected.checksum is None:
                log.warning(
                    "%s: no published checksum; recorded %s of the imported file", entry.key, actual
                )
            final = self.cache.raw_path(manifest.name, version.name, entry.key)
            with exclusive(self.cache.state_path(final, ".lock"), f"import of {entry.key}"):
                part = self.cache.state_path(final, ".part")
                part.parent.mkdir(parents=True, exist_ok=True)
                partial = PartialDownload(
                    part,
                    (actual.algorithm,),
                    hashers={actual.algorithm: new_hasher(actual.algorithm)},
                )
                try:
                    with disk_full_as_error(final, source.stat().st_size):
                        ensure_free_space(part, source.stat().st_size)
                        self._copy_local(source, partial, expected.size, Progress("", None, False))
                except BaseException:
                    self._discard(part)  # an import copies from scratch: nothing to resume
                    raise
                if partial.checksums()[actual.algorithm] != actual:
                    self._discard(part)
                    raise ChecksumMismatchError(f"{source} changed while it was being imported")
                os.replace(part, final)
                self.cache.write_stamp(final, str(actual), "import", str(source))
                self._save_record(manifest, version)
            imported[entry.key] = LocalFile(entry.key, final, "import", str(actual), str(source))
        return imported
