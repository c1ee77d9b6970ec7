"""Compiled kernels (numba, the ``fast`` extra) for the per-constituent hot loops.

Each kernel has a NumPy twin that defines its result; the kernels are only faster. Without
numba, :func:`top_features_kernel` returns ``None`` and callers use the NumPy path.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

_CACHE: dict[str, Any] = {}


def numba_available() -> bool:
    """True when numba can be imported (and ``PD4ML_NO_NUMBA`` is not set)."""
    if os.environ.get("PD4ML_NO_NUMBA"):
        return False
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def top_features_kernel() -> Any | None:
    """Kernel ``(constituents, n_keep, features_out, mask_out)`` for the seven TopTagging
    constituent features (see :func:`pd4ml.datasets.top_tagging.constituent_features`)."""
    if "top" in _CACHE:
        return _CACHE["top"]
    if not numba_available():
        return None
    import numba

    @numba.njit(parallel=True, cache=True, nogil=True)
    def kernel(constituents, n_keep, features, mask):  # type: ignore[no-untyped-def]
        n_max = constituents.shape[1]
        for jet in numba.prange(constituents.shape[0]):
            count = 0
            for i in range(n_max):
                if constituents[jet, i, 0] > 0:
                    count += 1
            energy = 0.0
            px = 0.0
            py = 0.0
            pz = 0.0
            for i in range(count):
                energy += constituents[jet, i, 0]
                px += constituents[jet, i, 1]
                py += constituents[jet, i, 2]
                pz += constituents[jet, i, 3]
            jet_pt = np.hypot(px, py)
            jet_eta = np.arcsinh(pz / jet_pt) if jet_pt > 0 else 0.0
            jet_phi = np.arctan2(py, px)
            side = -1.0 if jet_eta < 0 else 1.0
            safe_jet_pt = jet_pt if jet_pt > 0 else 1.0
            safe_jet_energy = energy if energy > 0 else 1.0
            for i in range(n_keep):
                if i >= count:
                    for f in range(7):
                        features[jet, i, f] = 0.0
                    mask[jet, i] = False
                    continue
                e = float(constituents[jet, i, 0])
                x = float(constituents[jet, i, 1])
                y = float(constituents[jet, i, 2])
                z = float(constituents[jet, i, 3])
                pt = np.hypot(x, y)
                safe_pt = pt if pt > 0 else 1.0
                eta = np.arcsinh(z / safe_pt)
                eta_rel = (eta - jet_eta) * side
                phi_rel = np.arctan2(y, x) - jet_phi + np.pi
                phi_rel = phi_rel - 2 * np.pi * np.floor(phi_rel / (2 * np.pi)) - np.pi
                safe_e = e if e > 0 else 1.0
                features[jet, i, 0] = np.log(safe_pt)
                features[jet, i, 1] = np.log(safe_e)
                features[jet, i, 2] = eta_rel
                features[jet, i, 3] = phi_rel
                features[jet, i, 4] = np.log(safe_pt / safe_jet_pt)
                features[jet, i, 5] = np.log(safe_e / safe_jet_energy)
                features[jet, i, 6] = np.hypot(eta_rel, phi_rel)
                mask[jet, i] = True

    _CACHE["top"] = kernel
    return kernel
