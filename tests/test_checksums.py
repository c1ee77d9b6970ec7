from __future__ import annotations

import hashlib
import zlib
from pathlib import Path

import pytest

from pd4ml.checksums import Checksum, feed_file, hash_file, new_hasher
from pd4ml.errors import ManifestError


def test_parse_prefixed_and_bare() -> None:
    assert Checksum.parse("adler32:E4717BBE") == Checksum("adler32", "e4717bbe")
    assert (
        Checksum.parse("0123456789abcdef0123456789abcdef", default_algorithm="md5").algorithm
        == "md5"
    )
    assert (
        str(Checksum.parse("md5:708a8369d75ceff2229bd8c46b47afea"))
        == "md5:708a8369d75ceff2229bd8c46b47afea"
    )


@pytest.mark.parametrize(
    "text",
    ["708a8369d75ceff2229bd8c46b47afea", "md5:1234", "crc32:deadbeef", "sha256:" + "g" * 64],
)
def test_parse_rejects_malformed(text: str) -> None:
    with pytest.raises(ManifestError):
        Checksum.parse(text)


def test_adler32_matches_cern_open_data_definition(tmp_path: Path) -> None:
    data = b"ATLAS Higgs challenge" * 1000
    path = tmp_path / "file.bin"
    path.write_bytes(data)
    expected = f"{zlib.adler32(data, 1) & 0xFFFFFFFF:08x}"
    assert hash_file(path, "adler32").value == expected


def test_streaming_equals_whole(tmp_path: Path) -> None:
    data = bytes(range(256)) * 40_000
    path = tmp_path / "file.bin"
    path.write_bytes(data)
    for algorithm in ("md5", "sha256", "adler32"):
        hasher = new_hasher(algorithm)
        for start in range(0, len(data), 7777):
            hasher.update(data[start : start + 7777])
        assert hasher.checksum() == hash_file(path, algorithm)
    assert hash_file(path, "sha256").value == hashlib.sha256(data).hexdigest()


def test_feed_file_limit(tmp_path: Path) -> None:
    path = tmp_path / "file.bin"
    path.write_bytes(b"abcdefgh")
    hasher = new_hasher("md5")
    assert feed_file(hasher, path, limit=3) == 3
    assert hasher.checksum().value == hashlib.md5(b"abc").hexdigest()
