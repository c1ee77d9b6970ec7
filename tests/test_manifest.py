"""The bundled manifests follow the schema and pin the known facts."""

from __future__ import annotations

from typing import Any

import pytest

from pd4ml.errors import ManifestError, UnknownNameError, UnsafePathError
from pd4ml.manifest import (
    bundled_manifests,
    find_manifest,
    get_manifest,
    manifest_files,
    parse_manifest,
    parse_manifest_text,
    safe_key,
)

EXPECTED = [
    "higgsml",
    "top_tagging",
    "smartbkg",
    "spinodal",
    "eos",
    "airshower",
    "calice_ahcal",
    "ild_photon_showers",
]


def test_all_manifests_validate_in_order() -> None:
    files = [name for name, _ in manifest_files()]
    assert len(files) == len(EXPECTED)
    for file_name, text in manifest_files():
        manifest = parse_manifest_text(text, where=file_name)
        assert manifest.description and manifest.licence and manifest.citations
        assert all("@" in citation.bibtex for citation in manifest.citations)
        for version in manifest.versions:
            assert version.files, f"{file_name}: {version.name} lists no files"
    assert list(bundled_manifests()) == EXPECTED


def test_higgsml_pins_the_cern_open_data_facts() -> None:
    version = get_manifest("higgsml").version()
    assert version.source.kind == "cernopendata"
    assert version.source.record == "328"
    assert version.source.doi == "10.7483/OPENDATA.ATLAS.ZBP2.M5T8"
    entry = version.file("atlas-higgs-challenge-2014-v2.csv.gz")
    assert entry.size == 65_630_848
    assert str(entry.checksum("adler32")) == "adler32:e4717bbe"
    assert entry.uri and entry.uri.startswith("root://eospublic.cern.ch//eos/opendata/atlas/")


def test_top_tagging_versions() -> None:
    manifest = get_manifest("top_tagging")
    zenodo = manifest.version("v0")
    assert zenodo.source.kind == "zenodo" and zenodo.source.record == "2603256"
    assert [entry.key for entry in zenodo.files] == ["train.h5", "val.h5", "test.h5"]
    assert all(entry.checksum_origin == "third-party" for entry in zenodo.files)
    original = manifest.version("pd4ml-2021").file("1_top_tagging_2M.npz")
    assert str(original.checksum("md5")) == "md5:708a8369d75ceff2229bd8c46b47afea"


@pytest.mark.parametrize(
    ("name", "key", "md5"),
    [
        ("smartbkg", "6_belle_selective_400k.npz", "85b10c9df3903455ab247a0ab4b51e5f"),
        ("spinodal", "2_spinodal_29k.npz", "c22326822d9bac7c074467ccccc6fe4f"),
        ("eos", "3_EOSL_or_EOSQ_180k.npz", "c070a9743163c3f467ceb87ac4e19fd1"),
        ("airshower", "4_airshower_100k_regression.npz", "367dc93bec6111a1990f85cc8ff58d1f"),
    ],
)
def test_original_pd4ml_files_pinned(name: str, key: str, md5: str) -> None:
    version = get_manifest(name).version("pd4ml-2021")
    assert str(version.file(key).checksum("md5")) == f"md5:{md5}"
    assert version.source.status == "offline" and version.source.status_note


def test_calice_is_marked_unpublished() -> None:
    version = get_manifest("calice_ahcal").version()
    assert version.source.status == "unpublished"
    assert "No public" in version.source.status_note


def _minimal(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "x",
        "task": "classification",
        "licence": "CC0",
        "description": "d",
        "version": [
            {
                "name": "v1",
                "title": "t",
                "source": {"kind": "zenodo", "record": "1"},
                "file": [{"key": "a.h5", "checksums": ["md5:" + "0" * 32]}],
            }
        ],
    }
    data.update(overrides)
    return data


def test_minimal_manifest_parses() -> None:
    manifest = parse_manifest(_minimal())
    assert manifest.version().file("a.h5").checksum_origin == "published"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(colour="red"), "unknown key"),
        (lambda d: d["version"][0]["file"][0].update(sizee=3), "unknown key"),
        (lambda d: d["version"][0]["file"][0].update(checksums=["md5:xyz"]), "hexadecimal"),
        (lambda d: d["version"][0]["file"][0].update(key="../../etc/passwd"), "'..'"),
        (lambda d: d["version"][0]["file"][0].update(size=-1), "non-negative"),
        (lambda d: d.update(task="clustering"), "expected one of"),
        (lambda d: d["version"][0]["source"].pop("record"), "needs 'record'"),
        (lambda d: d["version"][0]["source"].update(status="offline"), "status_note"),
        (lambda d: d["version"][0]["file"][0].update(checksum_origin="record-api"), "pinned"),
        (lambda d: d.update(default_version="v9"), "no version"),
        (lambda d: d["version"].append(dict(d["version"][0])), "duplicate version"),
    ],
)
def test_schema_violations_are_rejected(change: Any, message: str) -> None:
    data = _minimal()
    change(data)
    with pytest.raises((ManifestError, UnknownNameError), match=message):
        parse_manifest(data)


@pytest.mark.parametrize(
    "key", ["../x", "a/../../b", "/etc/passwd", "C:evil", "a\\b", "a//b", "./a", "", "a\x00b"]
)
def test_unsafe_keys_rejected(key: str) -> None:
    with pytest.raises(UnsafePathError):
        safe_key(key)


def test_safe_key_accepts_subdirectories() -> None:
    assert str(safe_key("sub/dir/file.h5")) == "sub/dir/file.h5"


def test_lookup_by_alias_and_suggestion() -> None:
    assert find_manifest("TopTagging").name == "top_tagging"
    assert find_manifest("top-tagging").name == "top_tagging"
    assert find_manifest("Belle").name == "smartbkg"
    with pytest.raises(UnknownNameError, match="did you mean 'higgsml'"):
        find_manifest("HigsML")
