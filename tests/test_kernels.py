"""The compiled kernels against their NumPy reference implementations, bit for bit, on real jets;
the ``PD4ML_NO_NUMBA`` switch; the on-disk cache of the compiled code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import pd4ml._kernels
from pd4ml.datasets.base import ArrayWriter
from pd4ml.datasets.top_tagging import (
    TopTagging,
    _constituent_features_numpy,
    constituent_features,
    prepare_arrays,
)
from pd4ml.graphs import _knn_block, knn_neighbours
from tests.conftest import shared_file

ROOT = Path(__file__).resolve().parents[1]
PYTHIA_SAMPLE = ("toptagging", "pythia8_particle_level_4k.h5")
N_KEEP = 100


@pytest.fixture(scope="module")
def pythia_jets(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """The 4,000 real particle-level Pythia jets of the shared sample ``(4000, 200, 4)``."""
    folder = tmp_path_factory.mktemp("pythia")
    TopTagging._convert_h5(shared_file(*PYTHIA_SAMPLE), ArrayWriter(folder), "train")
    jets: np.ndarray = np.load(folder / "train" / "constituents.npy")
    return jets


def reference_knn(points: np.ndarray, mask: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`pd4ml.graphs._knn_block` on the whole array (the NumPy definition)."""
    return _knn_block(points.astype(np.float32), mask, k)


def assert_same_bits(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.dtype == expected.dtype == np.float32 and actual.shape == expected.shape
    different = actual.view(np.uint32) != expected.view(np.uint32)
    assert not different.any(), (
        f"{int(different.sum())} float32 values differ (first at {np.argwhere(different)[0]})"
    )


@pytest.mark.parametrize("k", [7, 16])
def test_kernels_equal_the_numpy_reference_exactly_on_real_jets(
    pythia_jets: np.ndarray, k: int
) -> None:
    """Features bitwise equal after the float32 cast, kNN indices and masks identical."""
    expected_features, expected_mask = _constituent_features_numpy(pythia_jets, N_KEEP)
    expected_neighbours, expected_valid = reference_knn(
        expected_features[..., 2:4], expected_mask, k
    )

    features, mask = constituent_features(pythia_jets, N_KEEP)  # the compiled kernel
    assert_same_bits(features, expected_features)
    np.testing.assert_array_equal(mask, expected_mask)
    neighbours, valid = knn_neighbours(features[..., 2:4], mask, k)  # compiled
    np.testing.assert_array_equal(neighbours, expected_neighbours)
    np.testing.assert_array_equal(valid, expected_valid)

    kernel = pd4ml._kernels.top_features_knn_kernel(k)
    assert kernel is not None
    n_jets = len(pythia_jets)
    fused = [
        np.empty((n_jets, N_KEEP, 7), np.float32),
        np.empty((n_jets, N_KEEP), np.bool_),
        np.empty((n_jets, N_KEEP, k), np.int32),
        np.empty((n_jets, N_KEEP, k), np.bool_),
    ]
    kernel(pythia_jets, N_KEEP, *fused)
    assert_same_bits(fused[0], expected_features)
    np.testing.assert_array_equal(fused[1], expected_mask)
    np.testing.assert_array_equal(fused[2], expected_neighbours)
    np.testing.assert_array_equal(fused[3], expected_valid)
    assert valid.sum() > 0.9 * mask.sum() * k  # real jets: most constituents have k neighbours


def test_prepared_files_are_identical_with_and_without_numba(
    pythia_jets: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end (memory map → .npy files): the default install and ``PD4ML_NO_NUMBA=1``
    write the same bytes."""
    source = np.lib.format.open_memmap(
        tmp_path / "constituents.npy", mode="w+", dtype=np.float32, shape=pythia_jets.shape
    )
    source[:] = pythia_jets
    labels = np.zeros(len(pythia_jets), dtype=np.int64)
    names = ("features", "mask", "neighbours", "neighbour_mask")
    stored = {}
    for path in ("compiled", "numpy"):
        if path == "numpy":
            monkeypatch.setenv("PD4ML_NO_NUMBA", "1")
            assert pd4ml._kernels.top_features_knn_kernel(7) is None  # the reference path
        prepare_arrays(source, labels, ArrayWriter(tmp_path / path), "train", N_KEEP, 7, True)
        stored[path] = [(tmp_path / path / "train" / f"{name}.npy").read_bytes() for name in names]
    for name, compiled, numpy in zip(names, stored["compiled"], stored["numpy"], strict=True):
        assert compiled == numpy, f"{name}.npy differs between the two paths"


def test_the_reference_switch_and_a_clear_error_without_numba(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert pd4ml._kernels.use_compiled_kernels()
    assert pd4ml._kernels.top_features_knn_kernel(7) is not None
    monkeypatch.setenv("PD4ML_NO_NUMBA", "1")  # even after the kernel was built
    assert not pd4ml._kernels.use_compiled_kernels()
    for factory in (
        pd4ml._kernels.top_features_kernel,
        pd4ml._kernels.gather_rows_kernel,
        lambda: pd4ml._kernels.top_features_knn_kernel(7),
        lambda: pd4ml._kernels.knn_kernel(7),
    ):
        assert factory() is None
    monkeypatch.delenv("PD4ML_NO_NUMBA")
    monkeypatch.setattr(pd4ml._kernels, "_CACHE", {})
    monkeypatch.setitem(sys.modules, "numba", None)  # a broken installation: import fails
    with pytest.raises(pd4ml._kernels.NumbaImportError, match=r"pip install 'numba>=0\.59'"):
        pd4ml._kernels.knn_kernel(3)


CACHE_PROBE = textwrap.dedent(
    """
    import json
    import numpy as np
    from pd4ml._kernels import knn_kernel, top_features_knn_kernel
    fused, knn = top_features_knn_kernel(5), knn_kernel(5)
    jets = np.zeros((3, 20, 4), np.float32)
    jets[:, :6, 0] = 10.0
    jets[:, :6, 1] = np.arange(1, 7)
    jets[:, :6, 2] = np.arange(6, 0, -1)
    features, mask = np.empty((3, 10, 7), np.float32), np.empty((3, 10), bool)
    neighbours, valid = np.empty((3, 10, 5), np.int32), np.empty((3, 10, 5), bool)
    fused(jets, 10, features, mask, neighbours, valid)
    knn(np.ascontiguousarray(features[..., 2:4]), mask, neighbours, valid)
    print(json.dumps({
        name: [sum(kernel.stats.cache_hits.values()), sum(kernel.stats.cache_misses.values())]
        for name, kernel in (("fused", fused), ("knn", knn))
    }))
    """
)


def test_kernels_are_cached_on_disk(tmp_path: Path) -> None:
    """A second process loads the compiled kernels from the cache instead of compiling."""
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("PD4ML_", "NUMBA_"))
    }
    environment["NUMBA_CACHE_DIR"] = str(tmp_path / "numba-cache")
    environment["PYTHONPATH"] = str(ROOT)
    runs = [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", CACHE_PROBE],
                capture_output=True,
                text=True,
                check=True,
                cwd=ROOT,
                env=environment,
            ).stdout.splitlines()[-1]
        )
        for _ in range(2)
    ]
    assert runs[0] == {"fused": [0, 1], "knn": [0, 1]}, runs  # compiled, then written
    assert runs[1] == {"fused": [1, 0], "knn": [1, 0]}, runs  # loaded from the cache
    assert any((tmp_path / "numba-cache").rglob("*.nbi"))
