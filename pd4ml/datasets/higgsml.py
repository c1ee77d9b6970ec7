"""HiggsML — the ATLAS Higgs Boson Machine Learning Challenge 2014 (CERN Open Data record 328).

``load(split)`` gives ``X = [features]`` with ``features`` ``(n_events, 30)`` float32 — the 13
``DER_*`` and 17 ``PRI_*`` columns in the official order (:data:`FEATURE_NAMES`; momenta in
GeV, angles in radians) — and ``y`` ``(n_events,)`` int64 (1 = signal ``s``, 0 = background
``b``). **Undefined values (the official sentinel -999.0) are NaN**, in every array pd4ml
returns; ``np.isnan`` is the mask. ``weights`` is the physics weight ``Weight`` (float64); the
extra arrays are ``kaggle_weights`` (``KaggleWeight``, renormalised within each Kaggle subset —
the AMS of the public and private leaderboards uses it) and ``event_id``.

Splits (by ``KaggleSet``): ``train`` and ``val`` (the official training set t, 250,000
events, with a seeded stratified 10 % held out as ``val``; seed and fraction are recorded in
the metadata), ``public_test`` (b, 100,000), ``private_test`` (v, 450,000; ``test`` is an
alias). Subset u (18,238 events) belongs to no split.

``load_data(split, cartesian=True, align=True)`` gives 31 features (their names in the
metadata's ``feature_names``): the 13 ``DER_*`` columns unchanged; ``PRI_<object>_px``,
``_py``, ``_pz`` in GeV for the tau, the lepton and the leading and subleading jets (from pT, η,
φ; NaN where the jet is undefined); ``PRI_met_px`` and ``PRI_met_py`` (from ``PRI_met`` and
``PRI_met_phi``); then ``PRI_met``, ``PRI_met_sumet``, ``PRI_jet_num`` and ``PRI_jet_all_pt``.
With ``align`` every event is put in one frame before the conversion:

1. rotated about the beam axis so that the **tau** is at φ = 0 (each φ becomes its difference
   to ``PRI_tau_phi``, wrapped to [-π, π));
2. reflected in y (φ → -φ for every object and the missing momentum) when the lepton's rotated
   φ is negative, so that the lepton has φ ≥ 0 (py ≥ 0);
3. reflected in z (η → -η for every object) when the lepton's η is negative, so that the lepton
   has η ≥ 0 (pz ≥ 0).

So ``PRI_tau_py`` is exactly 0 in every event; the column is kept (after scaling it is 0, its
standard deviation of 0 being replaced by 1). With ``align=False`` the momenta are in the
detector's frame.

This frame is like, but not the same as, the one of LUMIN's HiggsML solution, whose
``proc_event`` uses the lepton as the first reference object and the tau as the second: LUMIN
rotates the **lepton** to φ = 0 and reflects in y so that the **tau** has φ ≥ 0 (the z
reflection, lepton η ≥ 0, is the same), and it drops the reference object's py, which is zero
by construction (``PRI_lep_py``), where pd4ml keeps its own zero column ``PRI_tau_py``.

Features are standardised with the mean and standard deviation of the train split (fitted once,
stored); NaN becomes 0 after scaling and ``missing`` ``(n_events, n_features)`` says where.
:class:`MomentumAugmentation` gives the random φ-rotation/flip augmentation and its test-time
variants on those arrays (a rotation makes ``PRI_tau_py`` non-zero: with its mean 0 and scale 1
it is then in GeV, unstandardised).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import itertools
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, ClassVar

import numpy as np

from pd4ml.datasets.augment import Augmentation, CartesianMomenta, PolarAngles
from pd4ml.datasets.base import ArrayWriter, Dataset, LoadResult, PreparedData
from pd4ml.datasets.splits import copy_array, copy_rows, stratified_holdout
from pd4ml.errors import ConversionError
from pd4ml.manifest import DatasetVersion
from pd4ml.npyio import release_rows

DERIVED = (
    "DER_mass_MMC", "DER_mass_transverse_met_lep", "DER_mass_vis", "DER_pt_h",
    "DER_deltaeta_jet_jet", "DER_mass_jet_jet", "DER_prodeta_jet_jet", "DER_deltar_tau_lep",
    "DER_pt_tot", "DER_sum_pt", "DER_pt_ratio_lep_tau", "DER_met_phi_centrality",
    "DER_lep_eta_centrality",
)  # fmt: skip
PRIMITIVE = (
    "PRI_tau_pt", "PRI_tau_eta", "PRI_tau_phi", "PRI_lep_pt", "PRI_lep_eta", "PRI_lep_phi",
    "PRI_met", "PRI_met_phi", "PRI_met_sumet", "PRI_jet_num", "PRI_jet_leading_pt",
    "PRI_jet_leading_eta", "PRI_jet_leading_phi", "PRI_jet_subleading_pt",
    "PRI_jet_subleading_eta", "PRI_jet_subleading_phi", "PRI_jet_all_pt",
)  # fmt: skip
FEATURE_NAMES = DERIVED + PRIMITIVE
COLUMNS = ("EventId", *FEATURE_NAMES, "Weight", "Label", "KaggleSet", "KaggleWeight")
OBJECTS = ("tau", "lep", "jet_leading", "jet_subleading")
SENTINEL = -999.0
VALIDATION_FRACTION = 0.1
VALIDATION_SEED = 20140512
KAGGLE_SETS = {"train": "t", "public_test": "b", "private_test": "v"}


def _open_text(path: Path) -> IO[str]:
    with open(path, "rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    if gzipped:
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="ascii", newline="")
    return open(path, encoding="ascii", newline="")


_CSV_CHUNK_ROWS = 65_536  # rows parsed at a time
_PREPARE_CHUNK = 32_768  # events engineered at a time when preparing (8 MB of float64 features)
_TABLE_TAILS = {"features": (len(FEATURE_NAMES),)}


def iter_higgsml_csv(
    paths: Sequence[Path], chunk_rows: int | None = None
) -> Iterator[dict[str, np.ndarray]]:
    """Parse official-layout CSV files (``.csv`` or ``.csv.gz``) in one pass, in chunks of rows.

    Columns are matched by name from the header (a missing column is an error naming the
    file). Each chunk (at most ``chunk_rows`` rows) holds ``event_id``, ``features``
    ``(n, 30)`` float32 with -999 → NaN, ``weight``, ``label`` (1/0), ``kaggle_set`` (one
    character) and ``kaggle_weight``; memory is bounded by the chunk, not the file.
    """
    rows_per_chunk = chunk_rows or _CSV_CHUNK_ROWS
    for path in paths:
        try:
            with _open_text(path) as stream:
                header = stream.readline().strip().split(",")
                missing = [name for name in COLUMNS if name not in header]
                if missing:
                    raise ConversionError(f"{path}: missing column(s) {', '.join(missing)}")
                index = {name: header.index(name) for name in COLUMNS}
                strings = (index["Label"], index["KaggleSet"])
                numeric = [index[name] for name in COLUMNS if index[name] not in strings]
                names = [name for name in COLUMNS if index[name] not in strings]
                first_row = 2  # line number of the chunk's first row, for error messages
                while True:
                    lines = list(itertools.islice(stream, rows_per_chunk))
                    if not lines:
                        break
                    rows = [line for line in lines if line.strip()]
                    if rows:
                        yield _parse_rows(path, rows, numeric, strings, names, first_row)
                    first_row += len(lines)
        except (OSError, EOFError, UnicodeDecodeError) as error:
            raise ConversionError(
                f"{path}: cannot read ({error}); truncated or corrupted?"
            ) from None


def _parse_rows(
    path: Path,
    rows: list[str],
    numeric: list[int],
    strings: tuple[int, int],
    names: list[str],
    first_row: int,
) -> dict[str, np.ndarray]:
    try:
        values = np.loadtxt(rows, delimiter=",", usecols=numeric, dtype=np.float64, ndmin=2)
        labels = np.loadtxt(rows, delimiter=",", usecols=strings, dtype=str, ndmin=2)
    except ValueError as error:
        raise ConversionError(
            f"{path}: malformed row in lines {first_row}..{first_row + len(rows) - 1} ({error})"
        ) from None
    column = {name: values[:, position] for position, name in enumerate(names)}
    if not np.isin(labels[:, 0], ("s", "b")).all():
        raise ConversionError(f"{path}: Label holds values other than 's' and 'b'")
    features = np.stack([column[name] for name in FEATURE_NAMES], axis=1)
    features[features == SENTINEL] = np.nan
    return {
        "event_id": column["EventId"].astype(np.int64),
        "features": features.astype(np.float32),
        "weight": column["Weight"],
        "label": (labels[:, 0] == "s").astype(np.int64),
        "kaggle_set": labels[:, 1].astype("U1"),
        "kaggle_weight": column["KaggleWeight"],
    }


def _empty_table() -> dict[str, np.ndarray]:
    return {
        "event_id": np.zeros(0, np.int64),
        "features": np.zeros((0, len(FEATURE_NAMES)), np.float32),
        "weight": np.zeros(0, np.float64),
        "label": np.zeros(0, np.int64),
        "kaggle_set": np.zeros(0, "U1"),
        "kaggle_weight": np.zeros(0, np.float64),
    }


def read_higgsml_csv(paths: Sequence[Path]) -> dict[str, np.ndarray]:
    """The whole table of :func:`iter_higgsml_csv` in memory (for small files and tests)."""
    parts = list(iter_higgsml_csv(paths)) or [_empty_table()]
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def spool_higgsml_csv(paths: Sequence[Path], scratch: Path) -> dict[str, np.ndarray]:
    """The table of :func:`iter_higgsml_csv`, written to ``scratch`` chunk by chunk and
    returned as read-only memory maps (one ``(n_events, ...)`` array per column)."""
    dtypes = {key: values.dtype for key, values in _empty_table().items()}
    files = {key: scratch / f"{key}.bin" for key in dtypes}
    n_rows = 0
    with contextlib.ExitStack() as stack:
        outputs = {key: stack.enter_context(open(file, "wb")) for key, file in files.items()}
        for chunk in iter_higgsml_csv(paths):
            for key, values in chunk.items():
                outputs[key].write(np.ascontiguousarray(values, dtype=dtypes[key]).tobytes())
            n_rows += len(chunk["label"])
    if n_rows == 0:
        return _empty_table()
    return {
        key: np.memmap(
            files[key], dtype=dtype, mode="r", shape=(n_rows, *_TABLE_TAILS.get(key, ()))
        )
        for key, dtype in dtypes.items()
    }


def to_cartesian(features: np.ndarray, align: bool) -> tuple[np.ndarray, list[str]]:
    """The Cartesian features ``(n_events, 31)`` float64 and their names, in the frame of the
    module docstring with ``align`` (tau at φ = 0, lepton at φ ≥ 0 and η ≥ 0; not LUMIN's
    frame, which has the lepton at φ = 0); NaN stays NaN."""
    column = {name: features[:, i].astype(np.float64) for i, name in enumerate(FEATURE_NAMES)}
    phi_reference = column["PRI_tau_phi"] if align else 0.0
    eta_sign = np.where(column["PRI_lep_eta"] < 0, -1.0, 1.0) if align else 1.0

    def wrapped(phi: np.ndarray) -> np.ndarray:
        return np.mod(phi - phi_reference + np.pi, 2 * np.pi) - np.pi

    phi_sign = np.where(wrapped(column["PRI_lep_phi"]) < 0, -1.0, 1.0) if align else 1.0
    output: dict[str, np.ndarray] = {name: column[name] for name in DERIVED}
    for name in OBJECTS:
        pt, eta, phi = (column[f"PRI_{name}_{part}"] for part in ("pt", "eta", "phi"))
        phi = wrapped(phi) * phi_sign
        output[f"PRI_{name}_px"] = pt * np.cos(phi)
        output[f"PRI_{name}_py"] = pt * np.sin(phi)
        output[f"PRI_{name}_pz"] = pt * np.sinh(eta * eta_sign)
    met_phi = wrapped(column["PRI_met_phi"]) * phi_sign
    output["PRI_met_px"] = column["PRI_met"] * np.cos(met_phi)
    output["PRI_met_py"] = column["PRI_met"] * np.sin(met_phi)
    for name in ("PRI_met", "PRI_met_sumet", "PRI_jet_num", "PRI_jet_all_pt"):
        output[name] = column[name]
    names = list(output)
    return np.stack([output[name] for name in names], axis=1), names


def rotation_invariant_scaling(
    names: Sequence[str], mean: np.ndarray, scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Standardisation that commutes with the φ rotations and y/z flips of the augmentation.

    Every momentum component gets offset 0, and the x and y components of one object share a
    scale, the root mean square of its transverse components (``z``: the root mean square of
    pz), so a rotated or flipped event standardises to the rotated or flipped standardised
    event. (Per-column means and standard deviations would not: after ``align``, the tau's py
    is 0 with unit scale, and a rotation would turn it into raw GeV.) Other columns keep their
    mean and standard deviation.
    """
    mean = np.array(mean, dtype=np.float64, copy=True)
    scale = np.array(scale, dtype=np.float64, copy=True)
    square = scale**2 + mean**2  # E[x²] per column
    index = {name: i for i, name in enumerate(names)}
    for name in (*OBJECTS, "met"):
        x, y = index[f"PRI_{name}_px"], index[f"PRI_{name}_py"]
        transverse = np.sqrt((square[x] + square[y]) / 2)
        mean[[x, y]], scale[[x, y]] = 0.0, transverse
        if f"PRI_{name}_pz" in index:
            z = index[f"PRI_{name}_pz"]
            mean[z], scale[z] = 0.0, np.sqrt(square[z])
    return mean, scale


def _engineered_chunks(
    cls: type[HiggsML], features: np.ndarray, params: Mapping[str, Any]
) -> Iterator[np.ndarray]:
    """The engineered features of ``features`` ``(n_events, 30)``, :data:`_PREPARE_CHUNK` events
    at a time (one empty block for an empty split)."""
    for start in range(0, max(len(features), 1), _PREPARE_CHUNK):
        stop = min(start + _PREPARE_CHUNK, len(features))
        yield cls._engineered(np.asarray(features[start:stop]), params)[0]
        release_rows(features, start, stop)


def _sum_rows(total: np.ndarray | None, block: np.ndarray) -> np.ndarray:
    """``total + block.sum(axis=0)`` with the rows added one after the other, as NumPy sums
    the rows of a whole array (so that a chunked sum equals the sum of the whole, bit for bit)."""
    rows = block if total is None else np.concatenate([total[None], block])
    summed: np.ndarray = np.sum(rows, axis=0)
    return summed


def nan_mean_and_std(blocks: Callable[[], Iterable[np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """``np.nanmean`` and ``np.nanstd`` over axis 0 of the rows of ``blocks()``.

    ``blocks`` gives the ``(n, n_features)`` float64 blocks of the table, in order, each time
    it is called (at least one block, possibly empty): a first pass sums the values and counts
    the defined ones, a second sums the squared deviations from the mean, the two-pass
    algorithm of NumPy, with the rows added in NumPy's order. Memory is one block. A feature
    that is never defined has NaN mean and scale.

    For C-ordered blocks of two or more features (HiggsML has 30) the result equals NumPy's on
    the whole table bit for bit, whatever the chunking: NumPy then adds the rows one after the
    other. With a single feature, or Fortran-ordered blocks, NumPy sums pairwise along the
    contiguous axis and the two agree only to rounding (about 3e-15 relative).
    """
    total: np.ndarray | None = None
    count: np.ndarray | None = None
    for block in blocks():
        undefined = np.isnan(block)
        block_count = np.asarray(np.sum(~undefined, axis=0, dtype=np.intp))
        count = block_count if count is None else count + block_count
        total = _sum_rows(total, np.where(undefined, 0.0, block))
    if total is None or count is None:
        raise ValueError("nan_mean_and_std needs at least one (possibly empty) block")
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
    squares: np.ndarray | None = None
    for block in blocks():
        deviation = block - mean
        deviation[np.isnan(block)] = 0.0
        squares = _sum_rows(squares, deviation * deviation)
    if squares is None:
        raise ValueError("blocks() gave no blocks the second time")
    with np.errstate(invalid="ignore", divide="ignore"):
        variance = squares / count
    variance[count <= 0] = np.nan
    std: np.ndarray = np.sqrt(variance)
    return mean, std


class MomentumAugmentation:
    """φ rotations and y/z flips of the Cartesian momenta in prepared HiggsML features.

    Works on the standardised arrays of ``load_data(cartesian=True)``: momenta are unscaled,
    transformed and rescaled with the stored train statistics; missing values stay 0. Train
    time: :meth:`random` (a uniform rotation per event, each flip with probability 1/2). Test
    time: :meth:`variants` (``n_rotations`` angles × the four flip combinations; average the
    predictions over them).
    """

    def __init__(self, feature_names: Sequence[str], mean: np.ndarray, scale: np.ndarray) -> None:
        self.mean = np.asarray(mean, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)
        names = list(feature_names)
        self.vectors = [
            tuple(names.index(f"PRI_{name}_{axis}") for axis in ("px", "py", "pz"))
            for name in OBJECTS
        ]
        self.met = (names.index("PRI_met_px"), names.index("PRI_met_py"))

    def _apply(
        self,
        features: np.ndarray,
        missing: np.ndarray,
        angle: np.ndarray,
        flip_y: np.ndarray,
        flip_z: np.ndarray,
    ) -> np.ndarray:
        output = np.array(features, dtype=np.float32, copy=True)
        cos, sin = np.cos(angle), np.sin(angle)
        pairs = [(x, y, z) for x, y, z in self.vectors] + [(*self.met, None)]
        for x, y, z in pairs:
            px = output[:, x] * self.scale[x] + self.mean[x]
            py = output[:, y] * self.scale[y] + self.mean[y]
            rotated_x = px * cos - py * sin
            rotated_y = (px * sin + py * cos) * flip_y
            output[:, x] = (rotated_x - self.mean[x]) / self.scale[x]
            output[:, y] = (rotated_y - self.mean[y]) / self.scale[y]
            if z is not None:
                pz = output[:, z] * self.scale[z] + self.mean[z]
                output[:, z] = (pz * flip_z - self.mean[z]) / self.scale[z]
        output[missing] = 0.0
        return output

    def random(
        self, features: np.ndarray, missing: np.ndarray, generator: np.random.Generator
    ) -> np.ndarray:
        """One random rotation and flips per event (train-time augmentation)."""
        n = len(features)
        return self._apply(
            features,
            missing,
            generator.uniform(0, 2 * np.pi, n),
            np.where(generator.random(n) < 0.5, -1.0, 1.0),
            np.where(generator.random(n) < 0.5, -1.0, 1.0),
        )

    def variants(
        self, features: np.ndarray, missing: np.ndarray, n_rotations: int = 2
    ) -> list[np.ndarray]:
        """The ``n_rotations × 4`` deterministic test-time versions (the first is unchanged)."""
        n = len(features)
        versions = []
        for rotation in range(n_rotations):
            for flip_y in (1.0, -1.0):
                for flip_z in (1.0, -1.0):
                    versions.append(
                        self._apply(
                            features,
                            missing,
                            np.full(n, 2 * np.pi * rotation / n_rotations),
                            np.full(n, flip_y),
                            np.full(n, flip_z),
                        )
                    )
        return versions


class HiggsML(Dataset):
    """The ATLAS HiggsML challenge dataset (see the module docstring for shapes)."""

    name = "higgsml"
    convert_fingerprints: ClassVar[Mapping[int, str]] = {1: "952d5440f4f54759"}
    prepare_fingerprints: ClassVar[Mapping[int, str]] = {
        1: "17bb7f4546a2bc84+9dfe1a4ee5d5326a",
        2: "5aa7b4956c1beb2f+9dfe1a4ee5d5326a",
    }
    #: 2: momenta standardised so that the φ/flip augmentation commutes with the scaling
    prepare_version = 2
    splits: ClassVar[tuple[str, ...]] = ("train", "val", "public_test", "private_test")
    split_aliases: ClassVar[Mapping[str, str]] = {
        "test": "private_test",
        "public": "public_test",
        "private": "private_test",
        "validation": "val",
    }
    prepare_defaults: ClassVar[Mapping[str, Any]] = {"cartesian": True, "align": True}

    @classmethod
    def convert(
        cls, raw_files: Mapping[str, Path], version: DatasetVersion, writer: ArrayWriter, split: str
    ) -> None:
        scratch = writer.directory / ".scratch"
        scratch.mkdir(parents=True, exist_ok=True)
        try:
            write_higgsml_splits(spool_higgsml_csv(list(raw_files.values()), scratch), writer)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    @classmethod
    def fit_statistics(cls, train: LoadResult, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """``mean`` and ``scale`` (standard deviation) of each engineered feature over train,
        ignoring NaN; :data:`_PREPARE_CHUNK` events are engineered at a time."""
        mean, scale = nan_mean_and_std(lambda: _engineered_chunks(cls, train.X[0], params))
        if params["cartesian"]:
            names = cls._engineered(np.asarray(train.X[0][:0]), params)[1]
            mean, scale = rotation_invariant_scaling(names, mean, scale)
        return {"mean": mean, "scale": scale}

    @classmethod
    def _engineered(
        cls, features: np.ndarray, params: Mapping[str, Any]
    ) -> tuple[np.ndarray, list[str]]:
        if params["cartesian"]:
            return to_cartesian(features, bool(params["align"]))
        return features.astype(np.float64), list(FEATURE_NAMES)

    @classmethod
    def prepare(
        cls,
        raw: LoadResult,
        statistics: Mapping[str, np.ndarray],
        params: Mapping[str, Any],
        writer: ArrayWriter,
        split: str,
    ) -> None:
        """Engineered, standardised features and their ``missing`` mask, written
        :data:`_PREPARE_CHUNK` events at a time into the memory-mapped outputs."""
        source = raw.X[0]
        n_events = len(source)
        names = cls._engineered(np.asarray(source[:0]), params)[1]
        mean = statistics["mean"]
        scale = np.where(statistics["scale"] > 0, statistics["scale"], 1.0)
        features = writer.empty(split, "features", (n_events, len(names)), np.float32)
        missing = writer.empty(split, "missing", (n_events, len(names)), np.bool_)
        jets = writer.empty(split, "jet_multiplicity", (n_events,), np.int64)
        jet_column = FEATURE_NAMES.index("PRI_jet_num")
        for start in range(0, n_events, _PREPARE_CHUNK):
            stop = min(start + _PREPARE_CHUNK, n_events)
            block = np.asarray(source[start:stop])
            engineered, _ = cls._engineered(block, params)
            undefined = np.isnan(engineered)
            scaled = (engineered - mean) / scale
            scaled[undefined] = 0.0
            features[start:stop] = scaled.astype(np.float32)
            missing[start:stop] = undefined
            jets[start:stop] = block[:, jet_column].astype(np.int64)
            for array in (source, features, missing, jets):
                release_rows(array, start, stop)
        for name, values in (
            ("labels", np.asarray(raw.y)),
            ("weights", np.asarray(raw.weights)),
            ("kaggle_weights", np.asarray(raw["kaggle_weights"])),
        ):
            output = writer.empty(split, name, values.shape, values.dtype)
            copy_array(values, output)
            output.flush()
        for array in (features, missing, jets):
            array.flush()
        writer.describe_arrays(
            split,
            ["features", "missing", "labels", "weights", "kaggle_weights", "jet_multiplicity"],
            {"feature_names": names, "mean": mean.tolist(), "scale": scale.tolist()},
        )

    symmetries: ClassVar[str] = (
        "Rotations about the beam axis and the reflections y → -y and z → -z of every "
        "momentum: the proton-proton collisions are symmetric under them for momentum-only "
        "features, every DER_* feature, pT, |p| and the missing ET are invariant, and labels "
        "and weights are unchanged. As in LUMIN, the reversal of the solenoid field that a "
        "reflection implies is ignored (the reconstructed momenta do not carry it)."
    )

    @classmethod
    def augmentation(cls, prepared: PreparedData) -> Augmentation:
        """The φ-rotation and y/z-flip augmentation of a prepared split.

        ``load_data(cartesian=True)`` (the default): :class:`~pd4ml.datasets.augment.
        CartesianMomenta` on the (px, py, pz) of the tau, lepton and jets and (px, py) of the
        missing momentum; it also takes the array form of :class:`MomentumAugmentation`
        (``random(features, missing, generator)``, ``variants(features, missing,
        n_rotations)``). ``cartesian=False``: :class:`~pd4ml.datasets.augment.PolarAngles` on
        the ``PRI_*_phi`` and ``PRI_*_eta`` columns. Both need ``features`` and ``missing`` in
        the batch; missing values stay 0.
        """
        info = prepared.metadata["info"]
        names = list(info["feature_names"])
        mean, scale = np.asarray(info["mean"]), np.asarray(info["scale"])
        if "PRI_tau_px" in names:
            legacy = MomentumAugmentation(names, mean, scale)
            x, y = legacy.met
            vectors: list[tuple[int, int, int | None]] = [
                (x_column, y_column, z_column) for x_column, y_column, z_column in legacy.vectors
            ]
            vectors.append((x, y, None))
            return CartesianMomenta(vectors, mean, scale, legacy=legacy)
        primitive = [(i, name) for i, name in enumerate(names) if name.startswith("PRI_")]
        phis = [i for i, name in primitive if name.endswith("_phi")]
        etas = [i for i, name in primitive if name.endswith("_eta")]
        return PolarAngles(phis, etas, mean, scale)


_OUTPUT_COLUMNS = {
    "features": "features",
    "labels": "label",
    "weights": "weight",
    "kaggle_weights": "kaggle_weight",
    "event_id": "event_id",
}


def write_higgsml_splits(table: Mapping[str, np.ndarray], writer: ArrayWriter) -> None:
    """Write every split (train/val from t, public_test from b, private_test from v).

    ``table`` holds the columns of :func:`iter_higgsml_csv` (arrays or memory maps); rows are
    gathered into the memory-mapped outputs chunk by chunk.
    """
    kaggle_set = np.asarray(table["kaggle_set"])
    for split, code in KAGGLE_SETS.items():
        rows = kaggle_set == code
        if split == "train":
            held = stratified_holdout(
                np.asarray(table["label"])[rows], VALIDATION_FRACTION, VALIDATION_SEED
            )
            indices = np.flatnonzero(rows)
            groups = {"train": indices[~held], "val": indices[held]}
        else:
            groups = {split: np.flatnonzero(rows)}
        for name, selection in groups.items():
            for output_name, column in _OUTPUT_COLUMNS.items():
                source = table[column]
                output = writer.empty(
                    name, output_name, (len(selection), *source.shape[1:]), source.dtype
                )
                copy_rows(source, selection, output)
                output.flush()
                del output
            info: dict[str, Any] = {
                "kaggle_set": code,
                "feature_names": list(FEATURE_NAMES),
                "undefined": "NaN (official sentinel -999.0)",
            }
            if split == "train":
                info.update(
                    {
                        "validation_fraction": VALIDATION_FRACTION,
                        "validation_seed": VALIDATION_SEED,
                        "stratified_by": "label",
                    }
                )
            writer.describe(
                name,
                features=["features"],
                labels="labels",
                weights="weights",
                extra=["kaggle_weights", "event_id"],
                info=info,
            )
