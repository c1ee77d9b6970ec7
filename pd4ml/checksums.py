"""Checksums as archives publish them: ``md5:<hex>``, ``sha256:<hex>``, ``adler32:<8 hex>``.

Hashing is streaming (``update`` per received chunk), so a download is verified without a second
pass over the file.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pd4ml.errors import ManifestError

ALGORITHMS = ("md5", "sha1", "sha256", "sha512", "adler32")
_HEX_LENGTH = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128, "adler32": 8}
_HEX = re.compile(r"^[0-9a-f]+$")
READ_CHUNK = 4 << 20


@dataclass(frozen=True)
class Checksum:
    """A checksum with its algorithm, e.g. ``Checksum("md5", "708a8369…")``."""

    algorithm: str
    value: str

    @classmethod
    def parse(cls, text: str, default_algorithm: str | None = None) -> Checksum:
        """Parse ``"algo:hex"``; a bare hex string needs ``default_algorithm``.

        >>> Checksum.parse("adler32:e4717bbe")
        Checksum(algorithm='adler32', value='e4717bbe')
        """
        text = text.strip()
        if ":" in text:
            algorithm, value = text.split(":", 1)
        elif default_algorithm is not None:
            algorithm, value = default_algorithm, text
        else:
            raise ManifestError(f"checksum {text!r} has no algorithm prefix (expected 'md5:<hex>')")
        algorithm = algorithm.strip().lower()
        value = value.strip().lower()
        if algorithm not in _HEX_LENGTH:
            raise ManifestError(
                f"checksum {text!r}: unknown algorithm {algorithm!r} "
                f"(known: {', '.join(ALGORITHMS)})"
            )
        if len(value) != _HEX_LENGTH[algorithm] or not _HEX.match(value):
            raise ManifestError(
                f"checksum {text!r}: expected {_HEX_LENGTH[algorithm]} hexadecimal digits"
            )
        return cls(algorithm, value)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.value}"


class Hasher(Protocol):
    """What :func:`new_hasher` returns: feed bytes, read the checksum."""

    algorithm: str

    def update(self, data: bytes | memoryview) -> None: ...

    def checksum(self) -> Checksum: ...


class _HashlibHasher:
    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm
        if algorithm == "md5":  # not for security: FIPS-mode systems refuse md5 otherwise
            self._hash = hashlib.md5(usedforsecurity=False)
        else:
            self._hash = hashlib.new(algorithm)

    def update(self, data: bytes | memoryview) -> None:
        self._hash.update(data)

    def checksum(self) -> Checksum:
        return Checksum(self.algorithm, self._hash.hexdigest())


class _Adler32Hasher:
    """adler32 as CERN Open Data computes it (``zlib.adler32`` seeded with 1)."""

    algorithm = "adler32"

    def __init__(self) -> None:
        self._value = 1

    def update(self, data: bytes | memoryview) -> None:
        self._value = zlib.adler32(data, self._value)

    def checksum(self) -> Checksum:
        return Checksum("adler32", f"{self._value & 0xFFFFFFFF:08x}")


def new_hasher(algorithm: str) -> Hasher:
    """A fresh streaming hasher for ``algorithm`` (one of :data:`ALGORITHMS`)."""
    if algorithm == "adler32":
        return _Adler32Hasher()
    if algorithm not in _HEX_LENGTH:
        raise ValueError(f"unknown checksum algorithm {algorithm!r}")
    return _HashlibHasher(algorithm)


def hash_file(path: Path, algorithm: str, *, limit: int | None = None) -> Checksum:
    """Hash a whole file (or its first ``limit`` bytes) in 4 MiB chunks."""
    hasher = new_hasher(algorithm)
    feed_file(hasher, path, limit=limit)
    return hasher.checksum()


def feed_file(hasher: Hasher, path: Path, *, limit: int | None = None) -> int:
    """Feed a file (or its first ``limit`` bytes) into ``hasher``; return the bytes read."""
    remaining = limit
    total = 0
    with open(path, "rb") as handle:
        while remaining is None or remaining > 0:
            size = READ_CHUNK if remaining is None else min(READ_CHUNK, remaining)
            chunk = handle.read(size)
            if not chunk:
                break
            hasher.update(chunk)
            total += len(chunk)
            if remaining is not None:
                remaining -= len(chunk)
    return total
