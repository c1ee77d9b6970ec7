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
from typing import Any

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


#: Parameter sets prepared for each dataset besides the defaults without and with a graph.
VARIANTS: dict[str, list[dict[str, Any]]] = {
    "top_tagging": [{"graph": True, "dense_adjacency": True, "k": 4, "n_constituents": 30}],
    "smartbkg": [{"one_hot": True}, {"graph": True, "dense_adjacency": True}],
    "spinodal": [{"form": "nodes", "standardise": True}],
    "eos": [{"form": "nodes", "graph": True}],
    "airshower": [{"standardise_target": False}],
    "calice_ahcal": [{"representation": "voxels"}],
    "higgsml": [{"cartesian": False, "align": False}],
    "ild_photon_showers": [{"standardise_target": True}],
}


def fingerprints(world: World, name: str) -> tuple[str, str]:
    """(converted train split, prepared train splits for every parameter set)."""
    case = CASES[name]
    variant = world.variant(name)
    sets: list[dict[str, Any]] = [{"graph": False}]
    sets += [{"graph": True}] if case.graph else []
    sets += VARIANTS[name]
    prepared = []
    for params in sets:
        data = variant.load_data("train", settings=world.settings, **params)
        assert data.directory is not None
        prepared.append(split_fingerprint(data.directory))
    (converted,) = data.directory.parents[2].glob("arrays*/train")
    return split_fingerprint(converted), "+".join(prepared)


@pytest.mark.parametrize("name", list(CASES))
def test_outputs_match_the_recorded_fingerprints(world: World, name: str) -> None:
    dataset = CASES[name].dataset
    converted, prepared = fingerprints(world, name)
    for kind, value, versions, current in (
        ("converter", converted, dataset.convert_fingerprints, dataset.converter_version),
        ("prepare", prepared, dataset.prepare_fingerprints, dataset.prepare_version),
    ):
        noun = "convert" if kind == "converter" else "prepare"
        if current not in versions:
            pytest.fail(
                f"{dataset.__name__}: no fingerprint recorded for {kind}_version {current}; "
                f"add {current}: {value!r} to {noun}_fingerprints"
            )
        assert value == versions[current], (
            f"{dataset.__name__}'s {noun.rstrip('e')}ed arrays changed: bump {kind}_version to "
            f"{current + 1} and add {current + 1}: {value!r} to {noun}_fingerprints "
            "(keep the older entries)"
        )


@pytest.mark.parametrize("name", list(CASES))
def test_fingerprint_history_is_consistent(name: str) -> None:
    """The current version is the newest recorded one, and no two versions share an output."""
    dataset = CASES[name].dataset
    for versions, current in (
        (dataset.convert_fingerprints, dataset.converter_version),
        (dataset.prepare_fingerprints, dataset.prepare_version),
    ):
        assert versions and max(versions) == current
        assert len(set(versions.values())) == len(versions)
