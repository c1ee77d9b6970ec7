"""Compiled kernels (numba, a core dependency) for the per-constituent hot loops.

Each kernel has a NumPy twin that defines its result and is the tested reference
implementation; the kernels are only faster, and give the same bits. Setting the environment
variable ``PD4ML_NO_NUMBA`` (to anything non-empty) makes the factories here return ``None``, and
callers then use the NumPy twins (for checking a result against the reference; much slower).

* :func:`top_features_kernel` — the seven TopTagging constituent features
  (twin: ``pd4ml.datasets.top_tagging._constituent_features_numpy``), computed in float64 from
  the float32 inputs with the twin's operations, then rounded to float32.
* :func:`knn_kernel` — k nearest neighbours in 2-D of padded point clouds, the real nodes in
  any slots (twin: ``pd4ml.graphs._knn_block``), compiled for each k (a constant of the code).
  Squared distances are float32, as in the twin (see :func:`_knn_helpers`).
* :func:`top_features_knn_kernel` — both fused, one jet at a time: the features of a jet and
  then its kNN graph on the stored (float32) (Δη, Δφ), written straight into the outputs (no
  temporaries, no pre-initialisation, no per-jet allocation). Same results as the two kernels
  one after the other, bit for bit.

The per-jet and per-event work lives in jitted helpers (:func:`_feature_helper`,
:func:`_knn_helpers`), inlined into the parallel kernels; parallel loops run over contiguous
blocks of jets, with one set of scratch buffers per block (no allocation per jet). Every kernel is
compiled with ``cache=True``: the machine code is stored beside this file (or in
``NUMBA_CACHE_DIR``) and loaded by later processes instead of being compiled again.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from pd4ml.errors import Pd4mlError

_CACHE: dict[str, Any] = {}
_GROUPS = 16  # kNN: the minima of this many groups of candidates bound the k-th distance
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_BLOCKS = 256  # parallel loops: jets in at most this many contiguous blocks, scratch per block
#: Environment variable that selects the NumPy reference implementations instead of the kernels.
REFERENCE_VARIABLE = "PD4ML_NO_NUMBA"
# The jitted helpers, set on first use. The kernels refer to them as globals, not closure
# variables: numba keys its on-disk cache on the closure's pickled contents, which for a
# dispatcher differ from process to process (the cache would never hit).
_jet_features: Any = None
_event_knn: Any = None
_knn_scratch: Any = None


class NumbaImportError(Pd4mlError, ImportError):
    """numba, a dependency of pd4ml, cannot be imported (a broken or partial installation)."""


def use_compiled_kernels() -> bool:
    """True unless ``PD4ML_NO_NUMBA`` is set (non-empty): then the NumPy reference
    implementations are used instead of the compiled kernels."""
    return not os.environ.get(REFERENCE_VARIABLE)


def _numba() -> Any:
    """The ``numba`` module, or :class:`NumbaImportError` saying how to repair the install."""
    try:
        import numba
    except ImportError as error:
        raise NumbaImportError(
            f"numba cannot be imported ({error}); it is a dependency of pd4ml: reinstall it with "
            f"`pip install 'numba>=0.59'`, or set {REFERENCE_VARIABLE}=1 to run the (much slower) "
            "NumPy reference implementations instead"
        ) from error
    return numba


def _define_helpers() -> None:
    """Define the jitted helpers (numba must be importable); see :func:`_feature_helper` and
    :func:`_knn_helpers` for what they do."""
    global _jet_features, _event_knn, _knn_scratch
    if _jet_features is None:
        _jet_features = _feature_helper()
        _event_knn, _knn_scratch = _knn_helpers()


def _feature_helper() -> Any:
    """``jet_features(constituents, jet, n_keep, features, mask, xs, ys) -> count`` (jitted).

    The seven features of jet ``jet`` of ``constituents`` ``(n_jets, n_max, 4)`` into
    ``features[jet]`` ``(n_keep, 7)`` float32 and ``mask[jet]`` ``(n_keep,)``, padding rows
    zeroed; the stored (float32) Δη and Δφ of the first ``min(count, n_keep)`` constituents also
    go to the scratch ``xs`` and ``ys`` ``(>= n_keep,)``. Returns the real constituent count
    (E > 0).

    Every loaded element is cast to float64 (``np.float64``: numba's ``float()`` of a float32
    stays float32) and the arithmetic is that of the NumPy definition, operation for operation
    (``hypot``, ``arcsinh``, ``arctan2``, ``mod`` — written out —, ``log`` of the ratios, the
    jet as the sum of the first ``count`` constituents in order), so that the float32 results
    are the same bits.
    """
    numba = _numba()

    @numba.njit(inline="always")
    def jet_features(constituents, jet, n_keep, features, mask, xs, ys):  # type: ignore[no-untyped-def]
        n_max = constituents.shape[1]
        count = 0
        for i in range(n_max):
            if constituents[jet, i, 0] > 0:
                count += 1
        energy = 0.0
        px = 0.0
        py = 0.0
        pz = 0.0
        for i in range(count):
            energy += np.float64(constituents[jet, i, 0])
            px += np.float64(constituents[jet, i, 1])
            py += np.float64(constituents[jet, i, 2])
            pz += np.float64(constituents[jet, i, 3])
        jet_pt = np.hypot(px, py)
        jet_eta = np.arcsinh(pz / jet_pt) if jet_pt > 0 else 0.0
        jet_phi = np.arctan2(py, px)
        side = -1.0 if jet_eta < 0 else 1.0
        jet_pt_safe = jet_pt if jet_pt > 0 else 1.0
        jet_energy_safe = energy if energy > 0 else 1.0
        two_pi = 2 * np.pi
        real = min(count, n_keep)
        for i in range(real):
            e = np.float64(constituents[jet, i, 0])
            x = np.float64(constituents[jet, i, 1])
            y = np.float64(constituents[jet, i, 2])
            z = np.float64(constituents[jet, i, 3])
            pt = np.hypot(x, y)
            safe_pt = pt if pt > 0 else 1.0
            safe_e = e if e > 0 else 1.0
            eta_rel = (np.arcsinh(z / safe_pt) - jet_eta) * side
            # np.mod(turned, 2π) - π without the fmod call, the same bits: ``turned`` lies in
            # [-π, 3π], where fmod is exact and equals ``turned - 2π`` (exact by Sterbenz) above
            # 2π, and NumPy adds 2π (rounded, as here) to a negative remainder
            turned = np.arctan2(y, x) - jet_phi + np.pi
            if turned >= two_pi:
                turned -= two_pi
            elif turned < 0:
                turned += two_pi
            phi_rel = turned - np.pi
            eta32 = np.float32(eta_rel)
            phi32 = np.float32(phi_rel)
            features[jet, i, 0] = np.log(safe_pt)
            features[jet, i, 1] = np.log(safe_e)
            features[jet, i, 2] = eta32
            features[jet, i, 3] = phi32
            features[jet, i, 4] = np.log(safe_pt / jet_pt_safe)
            features[jet, i, 5] = np.log(safe_e / jet_energy_safe)
            features[jet, i, 6] = np.hypot(eta_rel, phi_rel)
            mask[jet, i] = True
            xs[i] = eta32
            ys[i] = phi32
        for i in range(real, n_keep):
            for f in range(7):
                features[jet, i, f] = 0.0
            mask[jet, i] = False
        return count

    return jet_features


def _knn_helpers() -> tuple[Any, Any]:
    """``(event_knn, knn_scratch)`` (jitted, inlined into the kernels, which pass ``k`` as a
    constant of their code).

    ``knn_scratch(n_nodes, k)``: the scratch tuple for events of up to ``n_nodes`` nodes.

    ``event_knn(xs, ys, n, k, neighbours, valid, scratch)``: the k nearest neighbours of the ``n``
    leading real nodes at ``(xs, ys)`` (float32 ``(>= n,)``) into ``neighbours`` ``(n_nodes,
    k)`` int32 and ``valid`` ``(n_nodes, k)`` bool, every element written (rows ``>= n`` and
    missing neighbours ``-1`` / False). Brute force over the event's real nodes, without
    branches that depend on the data: per node,

    1. the squared distances in float32 from the float32 coordinates, ``dx*dx + dy*dy`` with
       each operation rounded to float32 (no fused multiply-add), as the NumPy definition (self
       and padding: inf);
    2. a bound on the k-th distance: the k-th smallest of the minima of ``_GROUPS`` groups of
       candidates (k disjoint candidates lie within it), capped at the largest float32 so that
       inf (self, padding, overflow) and NaN never pass;
    3. the candidates within the bound (about k of them), in index order;
    4. each of them pushed through a sorted list of k keys ``(distance bits << 32) | index``
       (uint64: the order of (distance, index), as distances are non-negative) with
       compare-exchanges — nearest first, ties to the lower index.
    """
    numba = _numba()

    groups = _GROUPS
    largest = _FLOAT32_MAX

    @numba.njit(inline="always")
    def knn_scratch(n_nodes, k):  # type: ignore[no-untyped-def]
        distance = np.empty(max(1, (n_nodes + groups - 1) // groups) * groups, dtype=np.float32)
        return (
            distance,
            distance.reshape((-1, groups)),
            distance.view(np.uint32),
            np.empty(groups, dtype=np.float32),
            np.empty(distance.shape[0], dtype=np.int64),
            np.empty(max(k, 1), dtype=np.float32),
            np.empty(max(k, 1), dtype=np.uint64),
        )

    @numba.njit(inline="always")
    def event_knn(xs, ys, n, k, neighbours, valid, scratch):  # type: ignore[no-untyped-def]
        distance, rows, bits, group_min, candidates, smallest, best = scratch
        infinity = np.float32(np.inf)
        cap = np.float32(largest)
        empty = ~np.uint64(0)
        low = np.uint64(0xFFFFFFFF)
        n_rows = (n + groups - 1) // groups
        real = n if k > 0 else 0
        for j in range(real, n_rows * groups):
            distance[j] = infinity
        for i in range(real):
            x = xs[i]
            y = ys[i]
            for j in range(n):
                dx = xs[j] - x
                dy = ys[j] - y
                distance[j] = dx * dx + dy * dy
            distance[i] = infinity
            bound = cap
            if k <= groups:
                for g in range(groups):
                    group_min[g] = rows[0, g]
                for r in range(1, n_rows):
                    for g in range(groups):
                        value = rows[r, g]
                        group_min[g] = value if value < group_min[g] else group_min[g]
                for slot in range(k):
                    smallest[slot] = infinity
                for g in range(groups):
                    carried = group_min[g]
                    for slot in range(k):
                        held = smallest[slot]
                        smallest[slot] = carried if carried < held else held
                        carried = held if carried < held else carried
                bound = smallest[k - 1] if smallest[k - 1] < cap else cap
            found = 0
            for j in range(n):
                candidates[found] = j
                found += distance[j] <= bound
            for slot in range(k):
                best[slot] = empty
            for a in range(found):
                j = candidates[a]
                carried_key = (np.uint64(bits[j]) << np.uint64(32)) | np.uint64(j)
                for slot in range(k):
                    held_key = best[slot]
                    best[slot] = carried_key if carried_key < held_key else held_key
                    carried_key = held_key if carried_key < held_key else carried_key
            for slot in range(k):
                if best[slot] == empty:
                    neighbours[i, slot] = -1
                    valid[i, slot] = False
                else:
                    neighbours[i, slot] = np.int32(best[slot] & low)
                    valid[i, slot] = True
        for i in range(real, neighbours.shape[0]):
            for slot in range(k):
                neighbours[i, slot] = -1
                valid[i, slot] = False

    return event_knn, knn_scratch


def top_features_kernel() -> Any | None:
    """Kernel ``(constituents, n_keep, features_out, mask_out)`` for the seven TopTagging
    constituent features (see :func:`pd4ml.datasets.top_tagging.constituent_features`).

    ``constituents`` ``(n_jets, n_max, 4)`` float32 with ``n_max >= n_keep``; every element of
    ``features_out`` ``(n_jets, n_keep, 7)`` float32 and ``mask_out`` ``(n_jets, n_keep)`` bool
    is written.
    """
    if not use_compiled_kernels():
        return None
    if "top" in _CACHE:
        return _CACHE["top"]
    numba = _numba()

    _define_helpers()

    @numba.njit(parallel=True, cache=True, nogil=True)
    def kernel(constituents, n_keep, features, mask):  # type: ignore[no-untyped-def]
        n_jets = constituents.shape[0]
        n_blocks = min(n_jets, _BLOCKS)
        for block in numba.prange(n_blocks):
            xs = np.empty(n_keep, dtype=np.float32)
            ys = np.empty(n_keep, dtype=np.float32)
            for jet in range(block * n_jets // n_blocks, (block + 1) * n_jets // n_blocks):
                _jet_features(constituents, jet, n_keep, features, mask, xs, ys)

    _CACHE["top"] = kernel
    return kernel


def top_features_knn_kernel(k: int) -> Any | None:
    """Fused kernel ``(constituents, n_keep, features, mask, neighbours, valid)`` for ``k``.

    The features of :func:`top_features_kernel` and, per jet right after them, the k nearest
    neighbours on the stored (Δη, Δφ) of its real constituents, as :func:`knn_kernel` gives
    them. ``constituents`` ``(n_jets, n_max, 4)`` float32 with ``n_max >= n_keep``; outputs
    (every element written, so ``np.empty`` or a fresh memory map will do):
    ``features`` ``(n_jets, n_keep, 7)`` float32, ``mask`` ``(n_jets, n_keep)`` bool,
    ``neighbours`` ``(n_jets, n_keep, k)`` int32 and ``valid`` ``(n_jets, n_keep, k)`` bool.
    """
    key = f"top_knn{k}"
    if not use_compiled_kernels():
        return None
    if key in _CACHE:
        return _CACHE[key]
    numba = _numba()

    _define_helpers()

    @numba.njit(parallel=True, cache=True, nogil=True)
    def kernel(constituents, n_keep, features, mask, neighbours, valid):  # type: ignore[no-untyped-def]
        n_jets = constituents.shape[0]
        n_blocks = min(n_jets, _BLOCKS)
        for block in numba.prange(n_blocks):
            xs = np.empty(n_keep, dtype=np.float32)
            ys = np.empty(n_keep, dtype=np.float32)
            scratch = _knn_scratch(n_keep, k)
            for jet in range(block * n_jets // n_blocks, (block + 1) * n_jets // n_blocks):
                count = _jet_features(constituents, jet, n_keep, features, mask, xs, ys)
                _event_knn(xs, ys, min(count, n_keep), k, neighbours[jet], valid[jet], scratch)

    _CACHE[key] = kernel
    return kernel


def knn_kernel(k: int) -> Any | None:
    """Kernel ``(points, mask, neighbours, valid)``: ``k`` nearest neighbours in 2-D.

    ``points`` ``(n_events, n_nodes, 2)`` float32 and ``mask`` ``(n_events, n_nodes)`` bool (True
    for the real nodes, in any slots: padding may come before real nodes); every element of
    ``neighbours`` ``(n_events, n_nodes, k)`` int32 and ``valid`` ``(n_events, n_nodes, k)``
    bool is written (see :func:`pd4ml.graphs.knn_neighbours` for the result). Shapes are not
    checked here (no bounds checks): :func:`pd4ml.graphs.knn_neighbours` checks them.

    The real nodes of an event are gathered in slot order, so that a lower index among them is a
    lower slot (ties go to the lower slot); when they are not the leading slots, their rows are
    computed into scratch and scattered back to their slots, with the neighbour indices mapped
    to slots.
    """
    key = f"knn_kernel{k}"
    if not use_compiled_kernels():
        return None
    if key in _CACHE:
        return _CACHE[key]
    numba = _numba()

    _define_helpers()

    @numba.njit(parallel=True, cache=True, nogil=True)
    def kernel(points, mask, neighbours, valid):  # type: ignore[no-untyped-def]
        n_events, n_nodes, _ = points.shape
        n_blocks = min(n_events, _BLOCKS)
        for block in numba.prange(n_blocks):
            xs = np.empty(n_nodes, dtype=np.float32)
            ys = np.empty(n_nodes, dtype=np.float32)
            slots = np.empty(n_nodes, dtype=np.int64)
            compact = np.empty((n_nodes, k), dtype=np.int32)
            compact_valid = np.empty((n_nodes, k), dtype=np.bool_)
            scratch = _knn_scratch(n_nodes, k)
            for event in range(block * n_events // n_blocks, (block + 1) * n_events // n_blocks):
                count = 0
                for slot in range(n_nodes):
                    if mask[event, slot]:
                        xs[count] = points[event, slot, 0]
                        ys[count] = points[event, slot, 1]
                        slots[count] = slot
                        count += 1
                if count == 0 or slots[count - 1] == count - 1:  # leading: rows in place
                    _event_knn(xs, ys, count, k, neighbours[event], valid[event], scratch)
                    continue
                _event_knn(xs, ys, count, k, compact, compact_valid, scratch)
                for slot in range(n_nodes):
                    for j in range(k):
                        neighbours[event, slot, j] = -1
                        valid[event, slot, j] = False
                for i in range(count):
                    for j in range(k):
                        if compact_valid[i, j]:
                            neighbours[event, slots[i], j] = np.int32(slots[compact[i, j]])
                            valid[event, slots[i], j] = True

    _CACHE[key] = kernel
    return kernel


def gather_rows_kernel() -> Any | None:
    """Kernel ``(source, rows, out)``: ``out[i] = source[rows[i]]`` for 2-D uint8 byte views,
    rows copied in parallel (the shuffled-batch gather of :mod:`pd4ml.adapters`). ``rows``
    must be valid (``0 <= rows < len(source)``): there is no bounds check."""
    if not use_compiled_kernels():
        return None
    if "gather" in _CACHE:
        return _CACHE["gather"]
    numba = _numba()

    @numba.njit(parallel=True, cache=True, nogil=True)
    def kernel(source, rows, out):  # type: ignore[no-untyped-def]
        for i in numba.prange(rows.shape[0]):
            out[i, :] = source[rows[i], :]

    _CACHE["gather"] = kernel
    return kernel
