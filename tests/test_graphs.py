"""pd4ml.graphs.knn_neighbours: real nodes in any slots, both implementations, checked inputs."""

from __future__ import annotations

import numpy as np
import pytest

from pd4ml.graphs import GraphInputError, knn_neighbours


@pytest.fixture(params=["compiled", "numpy"])
def implementation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with the numba kernel (the default) and with the NumPy reference
    (``PD4ML_NO_NUMBA=1``)."""
    if request.param == "numpy":
        monkeypatch.setenv("PD4ML_NO_NUMBA", "1")
    return str(request.param)


def ordered_knn(points: np.ndarray, mask: np.ndarray, k: int) -> np.ndarray:
    """Per-slot lists of the k nearest real nodes by (float32 squared distance, slot), a plain
    loop over every pair: ``(n_events, n_nodes, k)``, -1 where there is none."""
    expected = np.full((*mask.shape, k), -1, dtype=np.int32)
    for event in range(mask.shape[0]):
        real = np.flatnonzero(mask[event])
        for i in real:
            ranked = []
            for j in real:
                if j != i:
                    difference = (points[event, i] - points[event, j]).astype(np.float32)
                    squared = np.float32(0.0)
                    for component in difference:
                        squared = np.float32(squared + np.float32(component * component))
                    ranked.append((float(squared), int(j)))
            nearest = [j for _, j in sorted(ranked)[:k]]
            expected[event, i, : len(nearest)] = nearest
    return expected


@pytest.mark.parametrize("k", [1, 4, 9])
def test_real_nodes_after_padding_slots_are_kept(k: int, implementation: str) -> None:
    generator = np.random.default_rng(100 + k)
    n_events, n_nodes = 40, 24
    points = generator.integers(-2, 3, size=(n_events, n_nodes, 2)).astype(np.float32)  # ties
    points[:10] = generator.normal(size=(10, n_nodes, 2))
    mask = generator.random((n_events, n_nodes)) < 0.6  # padding anywhere
    mask[0] = False  # no real node
    mask[1] = False
    mask[1, -1] = True  # one real node, in the last slot
    mask[2] = np.arange(n_nodes) < 11  # leading (the kernel's in-place case)
    mask[3] = np.arange(n_nodes) >= 5  # trailing
    mask[4, :] = True
    mask[4, 0] = False  # one padding slot before all the real nodes
    neighbours, valid = knn_neighbours(points, mask, k, chunk=7)
    expected = ordered_knn(points, mask, k)
    np.testing.assert_array_equal(neighbours, expected)
    np.testing.assert_array_equal(valid, expected >= 0)
    assert valid[4, 1:].all() if k < n_nodes - 1 else True
    assert not valid[~mask].any()


def test_a_non_leading_mask_gives_the_graph_of_its_real_nodes(implementation: str) -> None:
    """The graph of real nodes in slots (0, 2, 3) is the graph of the same nodes in (0, 1, 2)."""
    points = np.array([[[0.0, 0.0], [9.0, 9.0], [1.0, 0.0], [3.0, 0.0]]], dtype=np.float32)
    mask = np.array([[True, False, True, True]])
    neighbours, valid = knn_neighbours(points, mask, 2)
    np.testing.assert_array_equal(neighbours[0], [[2, 3], [-1, -1], [0, 3], [2, 0]])
    np.testing.assert_array_equal(valid[0], neighbours[0] >= 0)
    compact, compact_valid = knn_neighbours(points[:, [0, 2, 3]], mask[:, [0, 2, 3]], 2)
    slots = np.array([0, 2, 3])
    np.testing.assert_array_equal(slots[compact[0]], neighbours[0, slots])
    np.testing.assert_array_equal(compact_valid[0], valid[0, slots])


def test_three_dimensional_points_use_the_numpy_definition() -> None:
    generator = np.random.default_rng(3)
    points = generator.normal(size=(6, 10, 3)).astype(np.float32)
    mask = generator.random((6, 10)) < 0.7
    neighbours, valid = knn_neighbours(points, mask, 3)
    np.testing.assert_array_equal(neighbours, ordered_knn(points, mask, 3))
    np.testing.assert_array_equal(valid, neighbours >= 0)


def test_mismatched_shapes_and_negative_k_are_refused() -> None:
    points = np.zeros((2, 5, 2), dtype=np.float32)
    with pytest.raises(GraphInputError, match=r"mask \(n_events, n_nodes\).*\(2, 4\)"):
        knn_neighbours(points, np.ones((2, 4), dtype=bool), 3)
    with pytest.raises(GraphInputError, match=r"points must be \(n_events, n_nodes, n_dims\)"):
        knn_neighbours(points[0], np.ones((2, 5), dtype=bool), 3)
    with pytest.raises(GraphInputError, match="k must be >= 0"):
        knn_neighbours(points, np.ones((2, 5), dtype=bool), -1)
    assert isinstance(GraphInputError("x"), ValueError)
