"""Format-faithful synthetic generators: each writes a dataset's *official raw format*.

The events are random, with a physics-motivated signal a classifier can learn (but not with
one trivial cut). They are **synthetic**: manifests that serve them set ``synthetic = true``,
and every piece of metadata downstream says so. They are never real data.

Writing pandas-HDF5 needs pandas and PyTables (the ``dev`` extra).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from pd4ml.checksums import hash_file
from pd4ml.datasets.base import Dataset
from pd4ml.datasets.top_tagging import CONSTITUENT_COLUMNS, N_CONSTITUENTS, TRUTH_COLUMNS
from pd4ml.manifest import ArchiveSource, DatasetVersion, FileEntry

TOP_MASS = 173.0
W_MASS = 80.4


def _massless(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """``(..., 4)`` [E, px, py, pz] of massless particles."""
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    return np.stack([np.sqrt(px**2 + py**2 + pz**2), px, py, pz], axis=-1)


def _shower(
    generator: np.random.Generator, pt: float, eta: float, phi: float, n: int, spread: float
) -> np.ndarray:
    """``n`` collinear-ish massless particles sharing ``pt`` around (eta, phi)."""
    fractions = generator.dirichlet(np.full(n, 0.6))
    return _massless(
        pt * fractions,
        eta + generator.normal(0, spread, n) * (1 - fractions) ** 2,
        phi + generator.normal(0, spread, n) * (1 - fractions) ** 2,
    )


def top_tagging_jets(n_jets: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic jets: ``(constituents (n, 200, 4) float32, labels (n,), truth (n, 4))``.

    Tops (label 1) decay to three prongs (b and the two W quarks) at angles set by the top and W
    masses; QCD jets (label 0) are one hard prong with a soft, sometimes wide-angle splitting, so
    some reach top-like masses. Jet pT in [550, 650] GeV, |η| < 2; constituents are pT-ordered
    and zero-padded to 200.
    """
    generator = np.random.default_rng(seed)
    constituents = np.zeros((n_jets, N_CONSTITUENTS, 4), dtype=np.float32)
    labels = generator.integers(0, 2, n_jets)
    truth = np.zeros((n_jets, 4), dtype=np.float32)
    for jet in range(n_jets):
        pt = generator.uniform(550, 650)
        eta, phi = generator.uniform(-1.8, 1.8), generator.uniform(-np.pi, np.pi)
        if labels[jet]:
            mass = generator.normal(TOP_MASS, 25.0)
            shares = generator.dirichlet([4.0, 3.0, 3.0])
            opening = 2.0 * mass / pt
            angles = (
                generator.uniform(0, 2 * np.pi)
                + np.array([0.0, 2.1, 4.2])
                + generator.normal(0, 0.3, 3)
            )
            radii = opening * (1 - shares) * generator.uniform(0.5, 0.9)
            prongs = [
                (pt * s, eta + r * np.cos(a), phi + r * np.sin(a))
                for s, r, a in zip(shares, radii, angles, strict=True)
            ]
            counts = generator.poisson([22, 16, 16]) + 3
            if generator.random() < 0.3:  # the b prong falls outside the jet: a W-like jet
                prongs, counts = prongs[1:], counts[1:]
            truth[jet] = _massless(np.array(pt), np.array(eta), np.array(phi)) * [
                1.0,
                1.0,
                1.0,
                1.0,
            ]
            truth[jet, 0] = np.sqrt(truth[jet, 0] ** 2 + mass**2)
        else:
            z = generator.beta(0.9, 2.5) * 0.5
            radius = generator.exponential(0.3) + 0.02
            angle = generator.uniform(0, 2 * np.pi)
            prongs = [
                (pt * (1 - z), eta, phi),
                (pt * z, eta + radius * np.cos(angle), phi + radius * np.sin(angle)),
            ]
            counts = generator.poisson([30, 10]) + 2
        particles = np.concatenate(
            [
                _shower(generator, p, e, f, c, 0.05)
                for (p, e, f), c in zip(prongs, counts, strict=True)
            ]
        )
        noise = generator.poisson(6)
        soft = _massless(
            generator.exponential(1.5, noise) + 0.3,
            eta + generator.normal(0, 0.4, noise),
            phi + generator.normal(0, 0.4, noise),
        )
        particles = np.concatenate([particles, soft])
        particles = particles[np.argsort(-np.hypot(particles[:, 1], particles[:, 2]))][
            :N_CONSTITUENTS
        ]
        constituents[jet, : len(particles)] = particles
    return constituents, labels.astype(np.int64), truth


def write_top_tagging_h5(
    path: str | Path, n_jets: int, seed: int = 0, layout: str = "table", ttv: int = 0
) -> Path:
    """Write synthetic jets in the official Top Tagging file layout (pandas HDF5, key ``table``).

    806 columns: ``E_0, PX_0, PY_0, PZ_0, …, PZ_199`` (float32), ``truthE, truthPX, truthPY,
    truthPZ`` (float32), ``ttv`` and ``is_signal_new`` (int64). ``layout`` is ``"table"`` or
    ``"fixed"`` (both pandas storage formats).
    """
    import pandas as pd

    constituents, labels, truth = top_tagging_jets(n_jets, seed)
    frame = pd.DataFrame(constituents.reshape(n_jets, -1), columns=CONSTITUENT_COLUMNS)
    for index, name in enumerate(TRUTH_COLUMNS):
        frame[name] = truth[:, index]
    frame["ttv"] = np.full(n_jets, ttv, dtype=np.int64)
    frame["is_signal_new"] = labels
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_hdf(path, key="table", format=layout, complevel=1 if layout == "table" else 0)
    return path


def write_top_tagging_pd4ml_npz(
    path: str | Path, n_train: int, n_val: int, n_test: int, seed: int = 0
) -> Path:
    """Synthetic jets in the original pd4ml layout ``1_top_tagging_2M.npz`` (train+val merged)."""
    train, train_labels, _ = top_tagging_jets(n_train + n_val, seed)
    test, test_labels, _ = top_tagging_jets(n_test, seed + 1)
    flag = np.concatenate([np.zeros(n_train), np.full(n_val, 2)]).astype(np.float32)
    order = np.random.default_rng(seed).permutation(n_train + n_val)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        X_train_0=train[order],
        X_train_1=flag[order],
        y_train=train_labels[order].astype(np.float32),
        X_test_0=test,
        X_test_1=np.ones(n_test, dtype=np.float32),
        y_test=test_labels.astype(np.float32),
    )
    return path


def synthetic_variant(
    dataset: type[Dataset],
    base_url: str,
    record: int | str,
    files: Mapping[str, str | Path],
    *,
    template_version: str | None = None,
    kind: str = "zenodo",
) -> type[Dataset]:
    """A copy of ``dataset`` whose only version is synthetic files served by an archive record.

    ``kind`` is ``zenodo`` or ``cernopendata`` (serve the files with
    ``add_cernopendata_record(..., eos_directory="/eos/opendata/test")`` then).

    The file keys and the splits they feed are taken from ``template_version`` of the real
    manifest (default: its default version); sizes and sha256 are taken from the files. The
    returned class is not registered and marks everything it loads as synthetic.
    """
    manifest = dataset.manifest()
    template = manifest.version(template_version)
    entries = []
    for key, path in files.items():
        feeds = list(template.file(key).feeds) if any(f.key == key for f in template.files) else []
        checksum = hash_file(Path(path), "sha256")  # streaming: files may be large
        entries.append(
            FileEntry(
                key=key,
                size=Path(path).stat().st_size,
                checksums=(checksum,),
                feeds=tuple(feeds),
                uri=f"root://eospublic.cern.ch//eos/opendata/test/{key}"
                if kind == "cernopendata"
                else None,
            )
        )
    version = DatasetVersion(
        name=f"synthetic-{template.name}",
        title=f"synthetic files in the layout of {template.title}",
        source=ArchiveSource(kind=kind, record=str(record), base_url=base_url),  # type: ignore[arg-type]
        files=tuple(entries),
        synthetic=True,
    )
    variant_manifest = replace(manifest, versions=(version,), default_version=version.name)
    return type(
        f"Synthetic{dataset.__name__}",
        (dataset,),
        {"manifest_override": variant_manifest, "__module__": dataset.__module__},
        register=False,
    )


HIGGSML_SET_FRACTIONS = {"t": 250_000, "b": 100_000, "v": 450_000, "u": 18_238}


def higgsml_events(n_events: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Synthetic events with the 35 official HiggsML columns (values as in the CSV, -999 kept).

    Signal (H → ττ, a third of the events) has a di-tau mass near 125 GeV, background a
    Z → ττ peak near 91 GeV plus a broad W/top component; mass reconstruction fails (-999) for
    some events, jet quantities are -999 when ``PRI_jet_num`` is too small, as in the
    official file. Weights are small for signal and larger for background.
    """
    from pd4ml.datasets.higgsml import COLUMNS

    generator = np.random.default_rng(seed)
    n = n_events
    label = generator.random(n) < 1 / 3
    z_like = generator.random(n) < 0.5
    mass = np.where(
        label,
        generator.normal(125, 18, n),
        np.where(z_like, generator.normal(91, 12, n), generator.gamma(4, 28, n)),
    )
    mass = np.abs(mass) + 5
    jet_num = np.where(
        label,
        generator.choice(4, n, p=[0.3, 0.35, 0.2, 0.15]),
        generator.choice(4, n, p=[0.45, 0.3, 0.15, 0.1]),
    )
    tau_pt = 20 + generator.exponential(25, n)
    lep_pt = 20 + generator.exponential(np.where(label, 30, 22), n)
    columns: dict[str, np.ndarray] = {
        "EventId": np.arange(100_000, 100_000 + n),
        "DER_mass_MMC": np.where(generator.random(n) < np.where(label, 0.03, 0.2), -999.0, mass),
        "DER_mass_transverse_met_lep": np.abs(generator.normal(np.where(label, 30, 55), 25, n)),
        "DER_mass_vis": 0.7 * mass + generator.normal(0, 12, n),
        "DER_pt_h": generator.exponential(np.where(label, 60, 40), n),
        "DER_deltar_tau_lep": np.clip(generator.normal(np.where(label, 2.3, 2.6), 0.7, n), 0.3, 5),
        "DER_pt_tot": generator.exponential(20, n),
        "DER_sum_pt": tau_pt + lep_pt + generator.exponential(60, n),
        "DER_pt_ratio_lep_tau": lep_pt / tau_pt,
        "DER_met_phi_centrality": np.clip(
            generator.normal(np.where(label, 0.5, -0.2), 0.9, n), -1.414, 1.414
        ),
        "PRI_tau_pt": tau_pt,
        "PRI_tau_eta": generator.uniform(-2.5, 2.5, n),
        "PRI_tau_phi": generator.uniform(-np.pi, np.pi, n),
        "PRI_lep_pt": lep_pt,
        "PRI_lep_eta": generator.uniform(-2.5, 2.5, n),
        "PRI_lep_phi": generator.uniform(-np.pi, np.pi, n),
        "PRI_met": generator.exponential(np.where(label, 35, 45), n),
        "PRI_met_phi": generator.uniform(-np.pi, np.pi, n),
        "PRI_met_sumet": 150 + generator.exponential(120, n),
        "PRI_jet_num": jet_num,
    }
    leading = 30 + generator.exponential(50, n)
    subleading = 30 + generator.exponential(25, n)
    has_one, has_two = jet_num >= 1, jet_num >= 2
    deta = np.abs(generator.normal(np.where(label, 3.0, 1.5), 1.2, n))
    columns.update(
        {
            "DER_deltaeta_jet_jet": np.where(has_two, deta, -999.0),
            "DER_mass_jet_jet": np.where(
                has_two, 60 + generator.exponential(np.where(label, 300, 150), n), -999.0
            ),
            "DER_prodeta_jet_jet": np.where(
                has_two, generator.normal(np.where(label, -3, 0), 2, n), -999.0
            ),
            "DER_lep_eta_centrality": np.where(has_two, generator.uniform(0, 1, n), -999.0),
            "PRI_jet_leading_pt": np.where(has_one, leading, -999.0),
            "PRI_jet_leading_eta": np.where(has_one, generator.uniform(-4.5, 4.5, n), -999.0),
            "PRI_jet_leading_phi": np.where(has_one, generator.uniform(-np.pi, np.pi, n), -999.0),
            "PRI_jet_subleading_pt": np.where(has_two, np.minimum(subleading, leading), -999.0),
            "PRI_jet_subleading_eta": np.where(has_two, generator.uniform(-4.5, 4.5, n), -999.0),
            "PRI_jet_subleading_phi": np.where(
                has_two, generator.uniform(-np.pi, np.pi, n), -999.0
            ),
            "PRI_jet_all_pt": np.where(has_one, leading, 0.0)
            + np.where(has_two, subleading * 1.2, 0.0),
        }
    )
    weight = np.where(
        label,
        generator.choice([0.0016, 0.0018, 0.0020, 0.0026], n),
        generator.exponential(1.2, n) + 0.02,
    )
    shares = np.array(list(HIGGSML_SET_FRACTIONS.values()), dtype=float)
    kaggle_set = generator.choice(list(HIGGSML_SET_FRACTIONS), n, p=shares / shares.sum())
    factor = {("t", True): 3.257674, ("t", False): 3.279658}
    kaggle_weight = np.array(
        [
            w * factor.get((s, bool(lab)), 1.8 if s != "u" else 1.0)
            for w, s, lab in zip(weight, kaggle_set, label, strict=True)
        ]
    )
    columns.update(
        {
            "Weight": weight,
            "Label": np.where(label, "s", "b"),
            "KaggleSet": kaggle_set,
            "KaggleWeight": kaggle_weight,
        }
    )
    return {name: columns[name] for name in COLUMNS}


def write_higgsml_csv(path: str | Path, n_events: int, seed: int = 0) -> Path:
    """Write synthetic events as the official gzip-compressed CSV (35 columns, header row)."""
    import gzip

    columns = higgsml_events(n_events, seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    formatted = []
    for name, values in columns.items():
        if values.dtype.kind in "iU":
            formatted.append(values.astype(str))
        else:
            formatted.append(
                np.char.mod(
                    "%.6g",
                    np.round(values, 3) if name not in ("Weight", "KaggleWeight") else values,
                )
            )
    rows = [",".join(row) for row in zip(*formatted, strict=True)]
    with gzip.open(path, "wt", encoding="ascii", newline="") as stream:
        stream.write(",".join(columns) + "\n")
        stream.write("\n".join(rows) + "\n")
    return path


def smartbkg_events(n_events: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic decay trees in the pd4ml SmartBKG layout: ``(particles, mothers, labels)``.

    ``particles`` ``(n, 100, 9)`` float32 [prodTime, E, x, y, z, px, py, pz, PID token],
    ``mothers`` ``(n, 100)`` (-1 for the two B mesons and padding). Each event starts from a
    B⁰B̄⁰ pair whose daughters decay further; tokens follow a steep (Zipf-like) frequency
    spectrum. Events pass the selection (label 1) more often when a B decays into few, hard,
    "reconstructable" particles (tokens of a preferred set) — a multi-particle, tree-level
    pattern, not one cut.
    """
    generator = np.random.default_rng(seed)
    particles = np.zeros((n_events, 100, 9), dtype=np.float32)
    mothers = np.full((n_events, 100), -1, dtype=np.float32)
    labels = np.zeros(n_events, dtype=np.float32)
    token_weights = 1.0 / np.arange(1, 300) ** 1.3
    token_weights /= token_weights.sum()
    preferred = set(range(3, 12))
    for event in range(n_events):
        rows = [(0, -1, 300), (0, -1, 301)]  # (generation, mother, token): the B pair
        queue = [0, 1]
        while queue and len(rows) < 100:
            parent = queue.pop(0)
            generation = rows[parent][0]
            for _ in range(int(generator.integers(2, 5)) if generation < 3 else 0):
                if len(rows) >= 100:
                    break
                token = int(generator.choice(299, p=token_weights)) + 1
                rows.append((generation + 1, parent, token))
                if generator.random() < 0.55:
                    queue.append(len(rows) - 1)
        count = len(rows)
        energy = generator.exponential(1.2, count) + 0.14
        energy[:2] = 5.29
        direction = generator.normal(size=(count, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        momentum = direction * np.sqrt(np.maximum(energy**2 - 0.0196, 0))[:, None]
        vertex = generator.normal(0, 0.02, (count, 3)) * np.array([r[0] for r in rows])[:, None]
        time = np.abs(generator.normal(0, 1e-3, count)) * np.array([r[0] for r in rows])
        particles[event, :count] = np.column_stack(
            [time, energy, vertex, momentum, [r[2] for r in rows]]
        )
        mothers[event, :count] = [r[1] for r in rows]
        first_generation = [i for i, r in enumerate(rows) if r[1] in (0, 1)]
        hard = sum(1 for i in first_generation if rows[i][2] in preferred and energy[i] > 1.0)
        score = 1.2 * hard - 0.04 * count + generator.normal(0, 0.6)
        labels[event] = float(score > -0.9)
    return particles, mothers, labels


def write_smartbkg_npz(path: str | Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """Synthetic events in the original pd4ml file layout ``6_belle_selective_400k.npz``."""
    train = smartbkg_events(n_train, seed)
    test = smartbkg_events(n_test, seed + 1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        X_train_0=train[0],
        X_train_1=train[1],
        y_train=train[2],
        X_test_0=test[0],
        X_test_1=test[1],
        y_test=test[2],
    )
    return path


def spinodal_histograms(n_events: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic ``(n, 20, 20)`` pion momentum histograms and labels (1 = spinodal).

    Every event is ~300 pions from a smooth thermal (px, py) spectrum; in spinodal events
    (label 1) part of the pions come in a few clumps — the spinodal instability's signature —
    so the classes differ in local fluctuations, not in the total count.
    """
    generator = np.random.default_rng(seed)
    labels = generator.integers(0, 2, n_events)
    edges = np.linspace(-2.0, 2.0, 21)
    histograms = np.zeros((n_events, 20, 20), dtype=np.float32)
    for event in range(n_events):
        n_pions = int(generator.poisson(300))
        temperature = generator.uniform(0.35, 0.5)
        momenta = generator.normal(0, temperature, (n_pions, 2))
        if labels[event]:
            n_clumped = int(n_pions * generator.uniform(0.1, 0.25))
            centres = generator.normal(0, temperature, (int(generator.integers(2, 5)), 2))
            which = generator.integers(0, len(centres), n_clumped)
            momenta[:n_clumped] = centres[which] + generator.normal(0, 0.12, (n_clumped, 2))
        histograms[event] = np.histogram2d(momenta[:, 0], momenta[:, 1], bins=(edges, edges))[0]
    return histograms, labels.astype(np.float32)


def eos_spectra(n_events: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic ``(n, 24, 24)`` pion spectra ρ(pT, φ) and labels (1 = EOSQ, 0 = EOSL).

    ρ ∝ exp(-pT/T)(1 + 2 v2 cos 2(φ - Ψ)) with the slope T and elliptic flow v2 drawn from
    overlapping, class-dependent distributions (a first-order transition softens the
    expansion), plus multiplicity fluctuations and noise.
    """
    generator = np.random.default_rng(seed)
    labels = generator.integers(0, 2, n_events)
    pt = (np.arange(24) + 0.5) / 24 * 2.0
    phi = (np.arange(24) + 0.5) / 24 * 2 * np.pi
    temperature = np.where(
        labels, generator.normal(0.27, 0.025, n_events), generator.normal(0.30, 0.025, n_events)
    )
    flow = np.where(
        labels, generator.normal(0.05, 0.02, n_events), generator.normal(0.07, 0.02, n_events)
    )
    plane = generator.uniform(0, np.pi, n_events)
    spectra = (
        np.exp(-pt[None, :, None] / temperature[:, None, None])
        * pt[None, :, None]
        * (1 + 2 * flow[:, None, None] * np.cos(2 * (phi[None, None, :] - plane[:, None, None])))
    )
    spectra *= generator.uniform(0.8, 1.2, n_events)[:, None, None] / spectra.mean(
        axis=(1, 2), keepdims=True
    )
    spectra *= 1 + generator.normal(0, 0.08, spectra.shape)
    return spectra.astype(np.float32), labels.astype(np.float32)


def airshower_events(
    n_events: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic showers: ``(signal (n,9,9,80), time (n,9,9,1), positions (81,3), Xmax (n,))``.

    Xmax ~ 750 ± 60 g/cm²; a deeper shower (larger Xmax) gives a more curved front (later
    arrival times off the core) and shorter pulses, with the lateral signal falling off from a
    random core. Stations below threshold read -1 everywhere, as in the original files.
    """
    generator = np.random.default_rng(seed)
    spacing = 1500.0
    grid = (np.arange(9) - 4) * spacing
    positions = np.stack(np.meshgrid(grid, grid, indexing="ij"), axis=-1).reshape(81, 2)
    positions = np.column_stack([positions, generator.normal(1400, 15, 81)]).astype(np.float32)
    xmax = generator.normal(750, 60, n_events)
    signal = np.full((n_events, 9, 9, 80), -1, dtype=np.float32)
    time = np.full((n_events, 9, 9, 1), -1, dtype=np.float32)
    bins = np.arange(80)
    for event in range(n_events):
        core = generator.uniform(-spacing, spacing, 2)
        energy = generator.uniform(5, 50)
        distance = np.hypot(positions[:, 0] - core[0], positions[:, 1] - core[1])
        total = energy * 40 * np.exp(-distance / 900.0) * (1 + generator.normal(0, 0.15, 81))
        depth = (xmax[event] - 750) / 60
        arrival = distance**2 / (2 * (8000 - 1200 * depth)) / 300.0 + generator.normal(0, 5, 81)
        width = 6 + 2 * np.clip(depth, -2.5, 2.5) * -0.8 + distance / 700
        on = total > 1.0
        for station in np.flatnonzero(on):
            shape = np.exp(-0.5 * ((bins - 10 - arrival[station] / 25) / width[station]) ** 2)
            trace = total[station] * shape / shape.sum() + np.abs(generator.normal(0, 0.02, 80))
            signal[event, station // 9, station % 9] = trace
            time[event, station // 9, station % 9, 0] = arrival[station]
    return signal, time, positions, xmax.astype(np.float32)


def write_pd4ml_image_npz(
    path: str | Path, kind: str, n_train: int, n_test: int, seed: int = 0
) -> Path:
    """Synthetic ``2_spinodal_29k.npz`` (``kind="spinodal"``) or ``3_EOSL_or_EOSQ_180k.npz``
    (``kind="eos"``) in the original pd4ml layout."""
    generate = {"spinodal": spinodal_histograms, "eos": eos_spectra}[kind]
    train_x, train_y = generate(n_train, seed)
    test_x, test_y = generate(n_test, seed + 1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, X_train_0=train_x, y_train=train_y, X_test_0=test_x, y_test=test_y)
    return path


def write_airshower_npz(path: str | Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """Synthetic ``4_airshower_100k_regression.npz`` in the original pd4ml layout."""
    train = airshower_events(n_train, seed)
    test = airshower_events(n_test, seed + 1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        X_train_0=train[0], X_train_1=train[1], X_train_2=train[2], y_train=train[3],
        X_test_0=test[0], X_test_1=test[1], X_test_2=train[2], y_test=test[3],
    )  # fmt: skip
    return path


def photon_showers(n_showers: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic ILD-like photon showers: ``(layers (n, 30, 30, 30) MeV, energy (n, 1) GeV)``.

    Longitudinal gamma profile whose maximum moves deeper with ln E, a narrow lateral core,
    and a visible energy of about 1 % of the photon energy with a stochastic resolution of
    ~20 %/√E — learnable, not a perfect line.
    """
    generator = np.random.default_rng(seed)
    energy = generator.uniform(10, 100, n_showers)
    layer = np.arange(30) + 0.5
    cells = np.arange(30) - 14.5
    showers = np.zeros((n_showers, 30, 30, 30), dtype=np.float32)
    for index, e in enumerate(energy):
        depth = 2.0 + 2.2 * np.log(e / 10)
        profile = layer ** (depth / 1.2) * np.exp(-layer / 1.2)
        profile /= profile.sum()
        visible = 10.0 * e * (1 + generator.normal(0, 0.2 / np.sqrt(e) + 0.01))  # MeV
        offset = generator.normal(0, 0.5, 2)
        lateral = np.exp(-np.hypot(cells[:, None] - offset[0], cells[None, :] - offset[1]) / 1.3)
        lateral /= lateral.sum()
        showers[index] = (
            visible
            * profile[:, None, None]
            * lateral[None]
            * generator.gamma(20, 1 / 20, (30, 30, 30))
        )
    return showers, energy.reshape(-1, 1).astype(np.float32)


def write_photon_showers_hdf5(path: str | Path, n_showers: int, seed: int = 0) -> Path:
    """Synthetic showers in the official layout of ``photons.hdf5`` (group ``30x30``)."""
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        group = handle.create_group("30x30")
        energy = group.create_dataset("energy", shape=(n_showers, 1), dtype="f8")
        layers = group.create_dataset(
            "layers", shape=(n_showers, 30, 30, 30), dtype="f8", chunks=(100, 30, 30, 30)
        )
        for start in range(0, n_showers, 500):
            block, energies = photon_showers(min(500, n_showers - start), seed + start)
            layers[start : start + len(block)] = block
            energy[start : start + len(block)] = energies
    return path


def ahcal_showers(n_events: int, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """Synthetic AHCAL pion showers: per event a ``(n_hits, 5)`` array [x, y, z mm, MIP, ns]
    and the beam energies (10-80 GeV in steps of 10).

    The visible energy (≈ 40 MIP per GeV) fluctuates with a resolution of about 55 %/√E ⊕ 8 %;
    the shower starts after an exponentially distributed depth, its longitudinal extent grows
    with ln E and its lateral spread is a narrow core plus a wide halo. One hit per cell.
    """
    generator = np.random.default_rng(seed)
    beam = generator.choice(np.arange(10, 81, 10), n_events).astype(np.float32)
    layer_pitch = 26.1  # mm: the schema's layer pitch (calice_ahcal.LAYER_PITCH_MM), used by the
    # converter uses to assign layers
    events = []
    for energy in beam:
        n = int(generator.poisson(22 * energy**0.8)) + 5
        start = min(int(generator.exponential(4.0)), 30)
        depth = generator.gamma(2.0 + 0.3 * np.log(energy), 2.2, n)
        layer = np.clip(start + depth.astype(int), 0, 37)
        halo = generator.random(n) < 0.3
        radius = np.where(halo, generator.exponential(4.0, n), generator.exponential(1.0, n))
        angle = generator.uniform(0, 2 * np.pi, n)
        tile_i = np.clip(np.rint(11.5 + radius * np.cos(angle)), 0, 23).astype(int)
        tile_j = np.clip(np.rint(11.5 + radius * np.sin(angle)), 0, 23).astype(int)
        cells, inverse = np.unique(
            np.stack([layer, tile_i, tile_j], 1), axis=0, return_inverse=True
        )
        resolution = np.hypot(0.55 / np.sqrt(energy), 0.08)
        visible = max(energy * 40 * (1 + generator.normal(0, resolution)), 1.0)
        deposits = generator.lognormal(0, 0.7, n)
        summed = np.bincount(inverse.reshape(-1), weights=deposits, minlength=len(cells))
        summed *= visible / summed.sum()
        hits = np.column_stack(
            [
                (cells[:, 1] - 11.5) * 30.0,
                (cells[:, 2] - 11.5) * 30.0,
                100.0 + cells[:, 0] * layer_pitch,
                summed,
                cells[:, 0] * layer_pitch / 300.0 + generator.exponential(2.0, len(cells)),
            ]
        ).astype(np.float32)
        events.append(hits)
    return events, beam


def write_ahcal_root(path: str | Path, n_events: int, seed: int = 0, tree: str = "events") -> Path:
    """Synthetic showers in the proposed ROOT form (needs uproot and awkward: the dev extra)."""
    import awkward as ak
    import uproot

    events, beam = ahcal_showers(n_events, seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = ("hit_x", "hit_y", "hit_z", "hit_energy", "hit_time")
    with uproot.recreate(path) as handle:
        handle[tree] = {
            **{
                name: ak.Array([event[:, index] for event in events])
                for index, name in enumerate(names)
            },
            "beam_energy": beam,
        }
    return path


def write_ahcal_npz(path: str | Path, n_events: int, seed: int = 0) -> Path:
    """Synthetic showers in the proposed NumPy form (flat hit arrays + ``n_hits``)."""
    events, beam = ahcal_showers(n_events, seed)
    flat = np.concatenate(events)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = ("hit_x", "hit_y", "hit_z", "hit_energy", "hit_time")
    arrays: dict[str, Any] = {name: flat[:, index] for index, name in enumerate(names)}
    arrays["n_hits"] = np.array([len(event) for event in events])
    arrays["beam_energy"] = beam
    np.savez_compressed(path, **arrays)
    return path


def array_digest(array: np.ndarray) -> str:
    """A short sha256 of an array's dtype, shape and values (to compare converter outputs)."""
    import hashlib

    contiguous = np.ascontiguousarray(np.asarray(array))
    digest = hashlib.sha256(f"{contiguous.dtype.str}{contiguous.shape}".encode())
    digest.update(contiguous.tobytes())
    return digest.hexdigest()[:16]


def output_digests(
    dataset: type[Dataset],
    splits: tuple[str, ...],
    prepared: Mapping[str, Mapping[str, Any]],
    **load_args: Any,
) -> dict[str, str]:
    """:func:`array_digest` of every array ``load`` and ``load_data`` give for ``splits``.

    Keys are ``load/<split>/X<i>``, ``load/<split>/y``, ``load/<split>/<extra>`` and
    ``<tag>/<split>/<name>`` for each ``tag → load_data parameters`` of ``prepared``. The unit
    ``weights`` that the pipeline adds to splits without sample weights are left out (all
    ones: they say nothing about the preprocessing).
    """
    digests: dict[str, str] = {}
    for split in splits:
        result = dataset.load(split, **load_args)
        for index, values in enumerate(result.X):
            digests[f"load/{split}/X{index}"] = array_digest(values)
        digests[f"load/{split}/y"] = array_digest(result.y)
        for name, values in result.extra.items():
            digests[f"load/{split}/{name}"] = array_digest(values)
        for tag, params in prepared.items():
            data = dataset.load_data(split, **load_args, **params)
            for name, values in data.items():
                if name == "weights" and bool(np.all(np.asarray(values) == 1.0)):
                    continue
                digests[f"{tag}/{split}/{name}"] = array_digest(values)
    return digests
