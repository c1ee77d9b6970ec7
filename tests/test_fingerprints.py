"""Preprocessing fingerprints: the converted and prepared arrays of a fixed small synthetic
input hash to the value recorded next to each dataset's ``converter_version`` and
``prepare_version``.

The prepared-cache key holds those explicit versions, not a hash of the code. So a change
that alters the output of a conversion or preparation (in the dataset's module, the kernels,
the scalers, the graph builders) must bump the version, or users would be served stale
arrays; this test fails until it is bumped and the new fingerprint recorded. (If only the
synthetic generator changed, record the new fingerprints without a bump.)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pd4ml.cache import read_json
from pd4ml.testing import ArchiveServer
from tests.cases import CASES, World


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with ArchiveServer() as server:
        yield World(tmp_path_factory.mktemp("fingerprints"), server)


def split_fingerprint(directory: Path) -> str:
    """SHA-256 over the recorded SHA-256 of every array of a split, by name."""
    meta = read_json(directory / "meta.json")
    assert isinstance(meta, dict)
    hashes = {name: record["sha256"] for name, record in sorted(meta["array_files"].items())}
    return hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()[:16]


def fingerprints(world: World, name: str) -> tuple[str, str]:
    """(converted train split, prepared train splits without and with a graph)."""
    case = CASES[name]
    variant = world.variant(name)
    prepared = []
    for graph in (False, True) if case.graph else (False,):
        data = variant.load_data("train", graph=graph, settings=world.settings)
        assert data.directory is not None
        prepared.append(split_fingerprint(data.directory))
    converted = data.directory.parents[2] / "arrays" / "train"
    return split_fingerprint(converted), "+".join(prepared)


@pytest.mark.parametrize("name", list(CASES))
def test_outputs_match_the_recorded_fingerprints(world: World, name: str) -> None:
    dataset = CASES[name].dataset
    converted, prepared = fingerprints(world, name)
    assert converted == dataset.convert_fingerprint, (
        f"{dataset.__name__}'s converted arrays changed: bump converter_version "
        f"(now {dataset.converter_version}) and set convert_fingerprint = {converted!r}"
    )
    assert prepared == dataset.prepare_fingerprint, (
        f"{dataset.__name__}'s prepared arrays changed: bump prepare_version "
        f"(now {dataset.prepare_version}) and set prepare_fingerprint = {prepared!r}"
    )
