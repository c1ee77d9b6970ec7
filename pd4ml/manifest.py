"""The dataset manifest: declarative, versioned facts about every dataset.

One TOML file per dataset lives in ``datasets_manifest/`` (installed as the package
``pd4ml.datasets_manifest``). A manifest names the dataset, its task, licence and citations, and one
or more *versions*; a version names its archive (a Zenodo record, a CERN Open Data record or plain
URLs) and its files with size, checksums and the splits each feeds. No URL is hidden in Python code.

The schema is checked strictly when a manifest is read (unknown keys are errors), so a typo in a
manifest fails the test-suite instead of silently dropping a checksum.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import PurePosixPath
from typing import Any, Literal, cast

from pd4ml.checksums import Checksum
from pd4ml.errors import ManifestError, UnknownNameError, UnsafePathError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

SourceKind = Literal["zenodo", "cernopendata", "url"]
SourceStatus = Literal["available", "offline", "unpublished"]
ChecksumOrigin = Literal["published", "third-party", "record-api", "none"]
Task = Literal["classification", "regression"]

SOURCE_KINDS: tuple[str, ...] = ("zenodo", "cernopendata", "url")
SOURCE_STATUSES: tuple[str, ...] = ("available", "offline", "unpublished")
CHECKSUM_ORIGINS: tuple[str, ...] = ("published", "third-party", "record-api", "none")
TASKS: tuple[str, ...] = ("classification", "regression")
DEFAULT_BASE_URLS = {"zenodo": "https://zenodo.org", "cernopendata": "https://opendata.cern.ch"}


def safe_key(key: str) -> PurePosixPath:
    """Check that an archive file key is a plain relative path and return it.

    Keys come from manifests and from archive record APIs (server-controlled); a key with ``..``,
    an absolute path, a drive letter, a backslash or a control character could write outside the
    cache, so it is refused.
    """
    if not isinstance(key, str) or not key:
        raise UnsafePathError(f"archive file key {key!r} is empty or not a string")
    if "\\" in key or any(ord(character) < 32 for character in key) or ":" in key.split("/")[0]:
        raise UnsafePathError(f"archive file key {key!r} contains a backslash, drive or control")
    path = PurePosixPath(key)
    if path.is_absolute() or key.startswith("/"):
        raise UnsafePathError(f"archive file key {key!r} is an absolute path")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise UnsafePathError(f"archive file key {key!r} contains '..', '.' or an empty segment")
    return path


def human_size(size: int | None) -> str:
    """``1.6 GB``-style sizes (decimal units, as archives print them)."""
    if size is None:
        return "unknown"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"


@dataclass(frozen=True)
class Citation:
    """One BibTeX entry: the dataset's DOI record, a paper, or software."""

    role: Literal["dataset", "paper", "software"]
    bibtex: str


@dataclass(frozen=True)
class ArchiveSource:
    """Where a dataset version is published.

    ``kind`` is ``zenodo`` (``record`` = Zenodo record id), ``cernopendata`` (``record`` = recid) or
    ``url`` (every file lists its own ``urls``). ``status`` is ``available``, ``offline`` (the host
    is known to be unreachable; mirrors and manual import still work) or ``unpublished`` (no public
    record exists yet).
    """

    kind: SourceKind
    record: str | None = None
    doi: str | None = None
    concept_doi: str | None = None
    base_url: str | None = None
    landing_page: str | None = None
    status: SourceStatus = "available"
    status_note: str = ""

    @property
    def resolved_base_url(self) -> str | None:
        """The archive's base URL: the manifest's, else the public default for the kind."""
        return self.base_url or DEFAULT_BASE_URLS.get(self.kind)


@dataclass(frozen=True)
class FileEntry:
    """One file of a dataset version.

    ``key`` is the file name in the archive; ``size`` is in bytes; ``checksums`` are the pinned
    ones, and ``checksum_origin`` says how far they can be trusted: ``published`` (by the archive
    or the dataset's authors), ``third-party`` (believed right; the record API is asked first and
    wins on disagreement), ``record-api`` (not pinned: the fetcher takes it from the archive's
    record API at download time and records it) or ``none`` (no checksum exists anywhere; the
    first verified copy is recorded with sha256).
    """

    key: str
    size: int | None = None
    checksums: tuple[Checksum, ...] = ()
    checksum_origin: ChecksumOrigin = "published"
    feeds: tuple[str, ...] = ()
    uri: str | None = None
    urls: tuple[str, ...] = ()
    mirrors: tuple[str, ...] = ()
    note: str = ""

    @property
    def path(self) -> PurePosixPath:
        """The key as a safe relative path."""
        return safe_key(self.key)

    @property
    def is_pattern(self) -> bool:
        """True when ``key`` is a shell pattern resolved from the archive's record."""
        return any(character in self.key for character in "*?[")

    def checksum(self, algorithm: str) -> Checksum | None:
        """The pinned checksum for ``algorithm``, if any."""
        return next((c for c in self.checksums if c.algorithm == algorithm), None)

    @property
    def preferred_checksum(self) -> Checksum | None:
        """The strongest pinned checksum (sha256 > sha512 > sha1 > md5 > adler32)."""
        for algorithm in ("sha256", "sha512", "sha1", "md5", "adler32"):
            found = self.checksum(algorithm)
            if found is not None:
                return found
        return None


@dataclass(frozen=True)
class DatasetVersion:
    """A version of a dataset: its archive and files. ``synthetic`` marks generated test data."""

    name: str
    title: str
    source: ArchiveSource
    files: tuple[FileEntry, ...]
    synthetic: bool = False
    notes: str = ""

    def file(self, key: str) -> FileEntry:
        """The file entry named ``key``."""
        for entry in self.files:
            if entry.key == key:
                return entry
        raise UnknownNameError(
            f"version {self.name!r} has no file {key!r}; files: {[f.key for f in self.files]}"
        )

    @property
    def total_size(self) -> int | None:
        """Total size of all files in bytes, or ``None`` if a size is unknown."""
        sizes = [entry.size for entry in self.files]
        return None if any(size is None for size in sizes) else sum(cast(list[int], sizes))


@dataclass(frozen=True)
class DatasetManifest:
    """Everything the manifest says about one dataset."""

    name: str
    display_name: str
    task: Task
    description: str
    licence: str
    versions: tuple[DatasetVersion, ...]
    default_version: str
    aliases: tuple[str, ...] = ()
    citations: tuple[Citation, ...] = ()
    homepage: str | None = None
    order: int = 1000
    extra: Mapping[str, Any] = field(default_factory=dict)

    def version(self, name: str | None = None) -> DatasetVersion:
        """The version called ``name`` (default: :attr:`default_version`)."""
        wanted = name or self.default_version
        for version in self.versions:
            if version.name == wanted:
                return version
        from pd4ml.naming import closest_hint

        names = [version.name for version in self.versions]
        raise UnknownNameError(
            f"dataset {self.name!r} has no version {wanted!r}{closest_hint(wanted, names)}; "
            f"versions: {', '.join(names)}"
        )

    @property
    def doi(self) -> str | None:
        """The DOI of the default version's archive record."""
        return self.version().source.doi

    def card(self) -> str:
        """A plain-text card of a dataset: description, versions, files, checksums, DOI, licence."""
        lines = [
            f"{self.display_name} ({self.name}) — {self.task}",
            "",
            self.description,
            "",
            f"licence: {self.licence}",
        ]
        if self.aliases:
            lines.append(f"aliases: {', '.join(self.aliases)}")
        if self.homepage:
            lines.append(f"homepage: {self.homepage}")
        for version in self.versions:
            source = version.source
            default = " (default)" if version.name == self.default_version else ""
            lines += ["", f"version {version.name}{default}: {version.title}"]
            where = f"{source.kind}" + (f" record {source.record}" if source.record else "")
            lines.append(f"  archive: {where}; status: {source.status}")
            if source.status_note:
                lines.append(f"  note: {source.status_note}")
            if source.doi:
                lines.append(f"  DOI: {source.doi}")
            if source.concept_doi:
                lines.append(f"  concept DOI (all versions): {source.concept_doi}")
            if version.synthetic:
                lines.append("  SYNTHETIC test data")
            for entry in version.files:
                checksums = ", ".join(map(str, entry.checksums)) or "taken from the record API"
                if entry.checksum_origin == "third-party":
                    checksums += " (from a third party; the record API is checked first)"
                if entry.checksum_origin == "none":
                    checksums = "none published (sha256 recorded on first download)"
                feeds = f" → {', '.join(entry.feeds)}" if entry.feeds else ""
                lines.append(f"  - {entry.key}  {human_size(entry.size)}  {checksums}{feeds}")
                if entry.note:
                    lines.append(f"      {entry.note}")
        return "\n".join(lines) + "\n"

    def bibtex(self) -> str:
        """All citations as one BibTeX string."""
        return "\n\n".join(citation.bibtex.strip() for citation in self.citations) + "\n"


# --------------------------------------------------------------------------------------------
# Parsing with a strict schema


class _Reader:
    """Typed access to one TOML table; records the keys read so unknown keys can be rejected."""

    def __init__(self, table: Mapping[str, Any], where: str) -> None:
        if not isinstance(table, Mapping):
            raise ManifestError(f"{where}: expected a table, got {type(table).__name__}")
        self.table = table
        self.where = where
        self.seen: set[str] = set()

    def _get(self, key: str, required: bool) -> Any:
        self.seen.add(key)
        if key not in self.table:
            if required:
                raise ManifestError(f"{self.where}: missing required key {key!r}")
            return None
        return self.table[key]

    def string(self, key: str, *, required: bool = False, default: str | None = None) -> Any:
        value = self._get(key, required)
        if value is None:
            return default
        if not isinstance(value, str):
            raise ManifestError(f"{self.where}: {key!r} must be a string, got {value!r}")
        return value

    def choice(self, key: str, choices: tuple[str, ...], *, default: str | None = None) -> Any:
        value = self.string(key, required=default is None, default=default)
        if value not in choices:
            raise ManifestError(f"{self.where}: {key!r} is {value!r}; expected one of {choices}")
        return value

    def integer(self, key: str) -> int | None:
        value = self._get(key, False)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ManifestError(f"{self.where}: {key!r} must be a non-negative integer")
        return value

    def boolean(self, key: str, default: bool = False) -> bool:
        value = self._get(key, False)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise ManifestError(f"{self.where}: {key!r} must be true or false")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        value = self._get(key, False)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ManifestError(f"{self.where}: {key!r} must be a list of strings")
        return tuple(value)

    def tables(self, key: str, *, required: bool = False) -> list[Mapping[str, Any]]:
        value = self._get(key, required)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(item, Mapping) for item in value):
            raise ManifestError(f"{self.where}: {key!r} must be an array of tables ([[{key}]])")
        return value

    def table_value(self, key: str) -> Mapping[str, Any]:
        value = self._get(key, True)
        if not isinstance(value, Mapping):
            raise ManifestError(f"{self.where}: {key!r} must be a table")
        return value

    def finish(self) -> None:
        unknown = sorted(set(self.table) - self.seen)
        if unknown:
            raise ManifestError(f"{self.where}: unknown key(s) {unknown}")


def _parse_source(table: Mapping[str, Any], where: str) -> ArchiveSource:
    reader = _Reader(table, where)
    kind = reader.choice("kind", SOURCE_KINDS)
    source = ArchiveSource(
        kind=kind,
        record=reader.string("record"),
        doi=reader.string("doi"),
        concept_doi=reader.string("concept_doi"),
        base_url=reader.string("base_url"),
        landing_page=reader.string("landing_page"),
        status=reader.choice("status", SOURCE_STATUSES, default="available"),
        status_note=reader.string("status_note", default=""),
    )
    reader.finish()
    if kind in ("zenodo", "cernopendata") and not source.record:
        raise ManifestError(f"{where}: a {kind} source needs 'record'")
    if source.status != "available" and not source.status_note:
        raise ManifestError(f"{where}: status {source.status!r} needs a 'status_note' saying why")
    return source


def _parse_file(table: Mapping[str, Any], where: str, source: ArchiveSource) -> FileEntry:
    reader = _Reader(table, where)
    key = reader.string("key", required=True)
    try:
        safe_key(key)
    except UnsafePathError as error:
        raise ManifestError(f"{where}: {error}") from None
    checksums = tuple(Checksum.parse(text) for text in reader.strings("checksums"))
    entry = FileEntry(
        key=key,
        size=reader.integer("size"),
        checksums=checksums,
        checksum_origin=reader.choice(
            "checksum_origin", CHECKSUM_ORIGINS, default="published" if checksums else "record-api"
        ),
        feeds=reader.strings("feeds"),
        uri=reader.string("uri"),
        urls=reader.strings("urls"),
        mirrors=reader.strings("mirrors"),
        note=reader.string("note", default=""),
    )
    reader.finish()
    if entry.checksum_origin in ("published", "third-party") and not checksums:
        raise ManifestError(f"{where}: checksum_origin {entry.checksum_origin!r} needs checksums")
    if entry.checksum_origin in ("record-api", "none") and checksums:
        raise ManifestError(
            f"{where}: checksums are pinned, so checksum_origin cannot be {entry.checksum_origin!r}"
        )
    if entry.is_pattern and (entry.checksum_origin != "record-api" or "/" in key):
        raise ManifestError(
            f"{where}: a file-name pattern ({key!r}) is resolved from the record API: it needs "
            "checksum_origin = 'record-api' and no directory part"
        )
    if entry.checksum_origin == "record-api" and source.kind == "url":
        raise ManifestError(f"{where}: a plain-URL source has no record API to take checksums from")
    if source.kind == "url" and not entry.urls and source.status == "available":
        raise ManifestError(f"{where}: a plain-URL source needs 'urls' for every file")
    return entry


def parse_manifest(data: Mapping[str, Any], where: str = "manifest") -> DatasetManifest:
    """Build a :class:`DatasetManifest` from parsed TOML, checking the schema strictly."""
    reader = _Reader(data, where)
    name = reader.string("name", required=True)
    versions = []
    for index, version_table in enumerate(reader.tables("version", required=True)):
        version_where = f"{where}: version[{index}]"
        version_reader = _Reader(version_table, version_where)
        version_name = version_reader.string("name", required=True)
        version_where = f"{where}: version {version_name!r}"
        source = _parse_source(version_reader.table_value("source"), f"{version_where}.source")
        files = tuple(
            _parse_file(file_table, f"{version_where}.file[{position}]", source)
            for position, file_table in enumerate(version_reader.tables("file", required=True))
        )
        keys = [entry.key for entry in files]
        if len(set(keys)) != len(keys):
            raise ManifestError(f"{version_where}: duplicate file keys {keys}")
        versions.append(
            DatasetVersion(
                name=version_name,
                title=version_reader.string("title", required=True),
                source=source,
                files=files,
                synthetic=version_reader.boolean("synthetic"),
                notes=version_reader.string("notes", default=""),
            )
        )
        version_reader.finish()
    citations = []
    for index, citation_table in enumerate(reader.tables("citation")):
        citation_reader = _Reader(citation_table, f"{where}: citation[{index}]")
        citations.append(
            Citation(
                role=citation_reader.choice("role", ("dataset", "paper", "software")),
                bibtex=citation_reader.string("bibtex", required=True),
            )
        )
        citation_reader.finish()
    manifest = DatasetManifest(
        name=name,
        display_name=reader.string("display_name", default=name),
        task=reader.choice("task", TASKS),
        description=reader.string("description", required=True).strip(),
        licence=reader.string("licence", required=True),
        versions=tuple(versions),
        default_version=reader.string("default_version", default=versions[0].name),
        aliases=reader.strings("aliases"),
        citations=tuple(citations),
        homepage=reader.string("homepage"),
        order=reader.integer("order") or 1000,
        extra=dict(data.get("extra", {})),
    )
    reader.seen.add("extra")
    reader.finish()
    names = [version.name for version in versions]
    if len(set(names)) != len(names):
        raise ManifestError(f"{where}: duplicate version names {names}")
    manifest.version()  # the default version must exist
    return manifest


def parse_manifest_text(text: str, where: str = "manifest") -> DatasetManifest:
    """Parse a manifest from TOML text."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ManifestError(f"{where}: invalid TOML: {error}") from None
    return parse_manifest(data, where)


def manifest_files() -> Iterator[tuple[str, str]]:
    """Yield ``(file name, TOML text)`` of every bundled manifest, sorted by file name."""
    package = resources.files("pd4ml.datasets_manifest")
    for item in sorted(package.iterdir(), key=lambda entry: entry.name):
        if item.name.endswith(".toml"):
            yield item.name, item.read_text(encoding="utf-8")


@cache
def bundled_manifests() -> dict[str, DatasetManifest]:
    """All bundled manifests by dataset name, ordered by their ``order`` key."""
    manifests: dict[str, DatasetManifest] = {}
    for file_name, text in manifest_files():
        manifest = parse_manifest_text(text, where=f"datasets_manifest/{file_name}")
        if manifest.name in manifests:
            raise ManifestError(f"datasets_manifest/{file_name}: duplicate name {manifest.name!r}")
        manifests[manifest.name] = manifest
    return dict(sorted(manifests.items(), key=lambda item: (item[1].order, item[0])))


def get_manifest(name: str) -> DatasetManifest:
    """The bundled manifest of dataset ``name`` (exact manifest name)."""
    manifests = bundled_manifests()
    try:
        return manifests[name]
    except KeyError:
        from pd4ml.naming import closest_hint

        raise UnknownNameError(
            f"no manifest for dataset {name!r}{closest_hint(name, list(manifests))}"
        ) from None


def find_manifest(name: str, extra: list[DatasetManifest] | None = None) -> DatasetManifest:
    """The manifest whose name, display name or alias matches ``name`` (case-insensitive)."""
    from pd4ml.naming import closest_hint, normalise_name

    manifests = list(bundled_manifests().values()) + list(extra or [])
    labels: dict[str, DatasetManifest] = {}
    for manifest in manifests:
        for label in (manifest.name, manifest.display_name, *manifest.aliases):
            labels.setdefault(label, manifest)
    wanted = normalise_name(name)
    for label, manifest in labels.items():
        if normalise_name(label) == wanted:
            return manifest
    raise UnknownNameError(
        f"unknown dataset {name!r}{closest_hint(name, list(labels))}; "
        f"datasets: {', '.join(m.name for m in manifests)}"
    )
