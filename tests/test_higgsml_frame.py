"""HiggsML's aligned Cartesian frame: what the code does is what the module documents (the tau
at φ = 0, unlike LUMIN's lepton), checked on random events."""

from __future__ import annotations

import sys

import numpy as np

from pd4ml.datasets.higgsml import FEATURE_NAMES, to_cartesian


def random_events(n: int, seed: int = 0) -> np.ndarray:
    generator = np.random.default_rng(seed)
    features = generator.uniform(1.0, 200.0, size=(n, len(FEATURE_NAMES))).astype(np.float32)
    for name in FEATURE_NAMES:
        column = FEATURE_NAMES.index(name)
        if name.endswith("_phi"):
            features[:, column] = generator.uniform(-np.pi, np.pi, n)
        elif name.endswith("_eta"):
            features[:, column] = generator.uniform(-2.5, 2.5, n)
    features[: n // 4, FEATURE_NAMES.index("PRI_jet_subleading_pt")] = np.nan  # undefined jet
    return features


def test_aligned_frame_puts_the_tau_at_phi_zero_and_the_lepton_at_positive_phi_and_eta() -> None:
    events = random_events(500)
    aligned, names = to_cartesian(events, align=True)
    detector, detector_names = to_cartesian(events, align=False)
    assert names == detector_names and len(names) == 31
    column = {name: aligned[:, names.index(name)] for name in names}
    raw = {name: events[:, i].astype(np.float64) for i, name in enumerate(FEATURE_NAMES)}
    assert (column["PRI_tau_py"] == 0.0).all()  # kept, zero by construction
    np.testing.assert_allclose(column["PRI_tau_px"], raw["PRI_tau_pt"], rtol=1e-12)
    assert (column["PRI_lep_py"] >= 0).all() and (column["PRI_lep_pz"] >= 0).all()
    assert "PRI_lep_py" in names  # LUMIN drops its reference object's py; pd4ml does not
    assert (np.abs(detector[:, names.index("PRI_tau_py")]) > 0).all()
    # a rotation and reflections: transverse momenta and |pz| unchanged, event by event
    for name in ("tau", "lep", "jet_leading", "jet_subleading", "met"):
        transverse = np.hypot(column[f"PRI_{name}_px"], column[f"PRI_{name}_py"])
        expected = np.hypot(
            detector[:, names.index(f"PRI_{name}_px")], detector[:, names.index(f"PRI_{name}_py")]
        )
        np.testing.assert_allclose(transverse, expected, rtol=1e-9)
    assert np.isnan(column["PRI_jet_subleading_px"][:125]).all()
    # the angle from the tau to the lepton keeps its size
    delta = np.arctan2(column["PRI_lep_py"], column["PRI_lep_px"])
    expected_delta = np.abs(
        np.mod(raw["PRI_lep_phi"] - raw["PRI_tau_phi"] + np.pi, 2 * np.pi) - np.pi
    )
    np.testing.assert_allclose(delta, expected_delta, atol=1e-9)


def test_the_module_documents_the_frame_and_how_it_differs_from_lumin() -> None:
    docs = " ".join((sys.modules[to_cartesian.__module__].__doc__ or "").split())
    assert "follows LUMIN's" not in docs
    assert "so that the **tau** is at φ = 0" in docs
    assert "LUMIN rotates the **lepton** to φ = 0" in docs
    assert "``PRI_tau_py`` is exactly 0 in every event; the column is kept" in docs
    assert "(``PRI_lep_py``)" in docs
