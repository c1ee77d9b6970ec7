"""TopTagging — the Top Quark Tagging Reference Dataset (Zenodo 2603256).

Hadronic tops (label 1) against QCD jets (label 0): anti-kT R = 0.8 jets with
pT in [550, 650] GeV and |η| < 2 at 14 TeV (Pythia 8 + Delphes), up to 200 pT-ordered
constituents each as four-momenta.

``load(split)`` gives ``X = [constituents]`` with ``constituents`` of shape
``(n_jets, 200, 4)`` float32 ``[E, px, py, pz]`` in GeV (zero-padded) and ``y`` ``(n_jets,)`` int64.
Splits: ``train`` (1,211,000), ``val`` (403,000), ``test`` (404,000) from the official files; the
``pd4ml-2021`` version (train and validation merged in one npz) recovers them from its ``ttv``
flag. Extra arrays: ``truth_top`` ``(n_jets, 4)`` (the matched top's four-momentum, zero for
QCD) and ``ttv`` (the original split flag: 0 train, 1 test, 2 validation).

``load_data(split, graph=False, n_constituents=100, k=7)`` gives, for the first
``n_constituents`` constituents:

* ``features`` ``(n_jets, P, 7)`` float32: ln pT, ln E, Δη·sign(η_jet), Δφ (wrapped to [-π, π)),
  ln(pT/pT_jet), ln(E/E_jet), ΔR — the jet is the sum of *all* its constituents; padding is 0;
* ``mask`` ``(n_jets, P)`` bool, from the real constituent count (a constituent with pT of
  exactly 1 GeV is real, unlike in the original, which used ln pT ≠ 0);
* with ``graph=True``: ``neighbours`` ``(n_jets, P, k)`` int8 (int16 for P > 128; -1 where there
  is none) and ``neighbour_mask`` — the k nearest neighbours in (Δη, Δφ), nearest first, never
  padding, never the node itself (ParticleNet uses k = 16); with ``dense_adjacency=True`` also
  the dense ``adjacency`` ``(n_jets, P, P)`` int8 in the orientation of ``neighbours``:
  ``adjacency[n, i, j] = 1`` when constituent j is among the k nearest neighbours of i (row i
  holds the nodes that i aggregates from), plus ``adjacency[n, i, i] = 1`` on every real
  constituent; padding rows and columns are 0. It is the **transpose** of the original pd4ml's
  ``adj_matrix`` (``A[i, j] = 1`` when i is among the k nearest neighbours of j; the kNN
  relation is not symmetric), not a drop-in input for models written against the original:
  those take ``X["adj_matrix"]`` of ``X, y = TopTagging.load_data(split, graph=True)`` (the
  same as ``PreparedData.adjacency()``, see :func:`pd4ml.adapters.common.dense_adjacency`),
  which is ``np.swapaxes(adjacency, 1, 2)``;
* ``labels`` ``(n_jets,)`` int64.

Precision: the features are computed in float64 from the float32 inputs and rounded to float32
once, at the end. The kNN graph is computed from the stored float32 (Δη, Δφ), with squared
distances in float32 (each operation rounded to float32), ties to the lower index. The compiled
(numba) kernels, the default, and the NumPy reference implementations (selected with
``PD4ML_NO_NUMBA=1``) give identical arrays, bit for bit.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pd4ml._kernels import top_features_kernel, top_features_knn_kernel
from pd4ml.datasets.augment import Augmentation, ColumnReflection
from pd4ml.datasets.base import ArrayWriter, Dataset, LoadResult, PreparedData
from pd4ml.errors import ConversionError
from pd4ml.graphs import index_dtype, knn_neighbours, neighbours_to_dense
from pd4ml.manifest import DatasetVersion
from pd4ml.npyio import copy_npz_member, npz_headers, release_rows
from pd4ml.pandas_hdf import PandasHdf

N_CONSTITUENTS = 200
CONSTITUENT_COLUMNS = [
    f"{name}_{i}" for i in range(N_CONSTITUENTS) for name in ("E", "PX", "PY", "PZ")
]
TRUTH_COLUMNS = ["truthE", "truthPX", "truthPY", "truthPZ"]
FEATURE_NAMES = ("log_pt", "log_e", "eta_rel", "phi_rel", "log_pt_rel", "log_e_rel", "delta_r")
OFFICIAL_FILES = {"train": "train.h5", "val": "val.h5", "test": "test.h5"}
_READ_CHUNK = 8_192  # jets read at a time when converting (26 MB of constituents)
_PREPARE_CHUNK = 5_000


def constituent_count(constituents: np.ndarray) -> np.ndarray:
    """Real constituents per jet ``(n_jets,)``: entries with E > 0 (padding is trailing zeros)."""
    counts: np.ndarray = np.count_nonzero(constituents[..., 0] > 0, axis=1)
    return counts


def constituent_features(
    constituents: np.ndarray, n_constituents: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    """The seven constituent features and the mask of real constituents.

    Args:
        constituents: ``(n_jets, n_max, 4)`` ``[E, px, py, pz]`` in GeV, pT-ordered, zero-padded.
        n_constituents: keep the first P constituents.

    Returns:
        ``features`` ``(n_jets, P, 7)`` float32 (see the module docstring; 0 for padding) and
        ``mask`` ``(n_jets, P)`` bool.
    """
    kernel = top_features_kernel()
    if kernel is not None and constituents.shape[1] >= n_constituents:
        features_out = np.empty((constituents.shape[0], n_constituents, 7), dtype=np.float32)
        mask_out = np.empty((constituents.shape[0], n_constituents), dtype=np.bool_)
        kernel(
            np.ascontiguousarray(constituents, dtype=np.float32),
            n_constituents,
            features_out,
            mask_out,
        )
        return features_out, mask_out
    return _constituent_features_numpy(constituents, n_constituents)


def _constituent_features_numpy(
    constituents: np.ndarray, n_constituents: int
) -> tuple[np.ndarray, np.ndarray]:
    """The NumPy definition of :func:`constituent_features`: the reference implementation, which
    the compiled kernel reproduces bit for bit (used with ``PD4ML_NO_NUMBA=1``)."""
    momenta = np.asarray(constituents, dtype=np.float64)
    n_jets, n_max, _ = momenta.shape
    count = constituent_count(momenta)
    real_all = np.arange(n_max)[None, :] < count[:, None]
    jet = np.where(real_all[..., None], momenta, 0.0).sum(axis=1)
    jet_pt = np.hypot(jet[:, 1], jet[:, 2])
    jet_eta = np.arcsinh(np.divide(jet[:, 3], jet_pt, out=np.zeros_like(jet_pt), where=jet_pt > 0))
    jet_phi = np.arctan2(jet[:, 2], jet[:, 1])
    jet_energy = jet[:, 0]

    kept = momenta[:, :n_constituents]
    mask = real_all[:, :n_constituents]
    width = kept.shape[1]
    energy, px, py, pz = (kept[..., index] for index in range(4))
    pt = np.hypot(px, py)
    safe_pt = np.where(mask & (pt > 0), pt, 1.0)
    eta = np.arcsinh(pz / safe_pt)
    phi = np.arctan2(py, px)
    side = np.where(jet_eta < 0, -1.0, 1.0)[:, None]
    eta_rel = (eta - jet_eta[:, None]) * side
    phi_rel = np.mod(phi - jet_phi[:, None] + np.pi, 2 * np.pi) - np.pi
    safe_energy = np.where(mask & (energy > 0), energy, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        features = np.stack(
            [
                np.log(safe_pt),
                np.log(safe_energy),
                eta_rel,
                phi_rel,
                np.log(safe_pt / np.where(jet_pt > 0, jet_pt, 1.0)[:, None]),
                np.log(safe_energy / np.where(jet_energy > 0, jet_energy, 1.0)[:, None]),
                np.hypot(eta_rel, phi_rel),
            ],
            axis=-1,
        )
    features[~mask] = 0.0
    if width < n_constituents:  # fewer slots in the file than asked for: pad
        padded = np.zeros((n_jets, n_constituents, len(FEATURE_NAMES)))
        padded[:, :width] = features
        padded_mask = np.zeros((n_jets, n_constituents), dtype=bool)
        padded_mask[:, :width] = mask
        features, mask = padded, padded_mask
    return features.astype(np.float32), mask


class TopTagging(Dataset):
    """The Top Quark Tagging Reference Dataset (see the module docstring for shapes)."""

    name = "top_tagging"
    prepare_version = 2
    convert_fingerprints: ClassVar[Mapping[int, str]] = {1: "da6ce0bf3a6f8357"}
    prepare_fingerprints: ClassVar[Mapping[int, str]] = {
        2: "d3455b33111e78a9+f25f47579f59c02c+67a74ddeb9baa708"
    }
    node_positions = ("features", 2, 4)
    prepare_defaults: ClassVar[Mapping[str, Any]] = {
        "n_constituents": 100,
        "k": 7,
        "dense_adjacency": False,
    }
    symmetries: ClassVar[str] = (
        "The reflection Δφ → -Δφ (phi_rel) of every constituent: it is what the rotation by π "
        "about the jet's transverse direction does to the features — that rotation exchanges "
        "the two identical proton beams, and since eta_rel carries sign(η_jet) every other "
        "feature, the mask and the kNN graph (distances in (Δη, Δφ)) are unchanged exactly, up "
        "to the sign of the detector's solenoid field as for HiggsML. Rotations in the "
        "(Δη, Δφ) plane and Δη → -Δη are not symmetries: the beam direction singles out the "
        "Δη axis (and ln E depends on η)."
    )

    @classmethod
    def augmentation(cls, prepared: PreparedData) -> Augmentation:
        """:class:`~pd4ml.datasets.augment.ColumnReflection` of ``phi_rel`` (column 3 of
        ``features``): random sign per jet for training, the identity and the reflection
        (``n ≤ 2``) for test-time augmentation; ``mask``, ``neighbours`` and
        ``neighbour_mask`` pass through unchanged (they are invariant)."""
        return ColumnReflection("features", [FEATURE_NAMES.index("phi_rel")])

    # -- conversion ---------------------------------------------------------------------------
    @classmethod
    def convert(
        cls, raw_files: Mapping[str, Path], version: DatasetVersion, writer: ArrayWriter, split: str
    ) -> None:
        if OFFICIAL_FILES[split] in raw_files:
            cls._convert_h5(raw_files[OFFICIAL_FILES[split]], writer, split)
        elif "1_top_tagging_2M.npz" in raw_files:
            cls._convert_pd4ml_npz(raw_files["1_top_tagging_2M.npz"], writer)
        else:
            raise ConversionError(
                f"no TopTagging file for split {split!r} among {sorted(raw_files)}"
            )

    @classmethod
    def _convert_h5(cls, path: Path, writer: ArrayWriter, split: str) -> None:
        """One official pandas-HDF5 file, :data:`_READ_CHUNK` jets at a time, straight into
        the memory-mapped outputs (resident memory is one chunk, whatever the file size)."""
        with PandasHdf(path) as table:
            missing = [
                name
                for name in (*CONSTITUENT_COLUMNS, "is_signal_new")
                if name not in table.columns
            ]
            if missing:
                raise ConversionError(
                    f"{path}: not a Top Tagging file: missing column(s) {', '.join(missing[:4])}"
                )
            n_jets = table.n_rows
            constituents = writer.empty(
                split, "constituents", (n_jets, N_CONSTITUENTS, 4), np.float32
            )
            labels = writer.empty(split, "labels", (n_jets,), np.int64)
            truth = writer.empty(split, "truth_top", (n_jets, 4), np.float32)
            flag = writer.empty(split, "ttv", (n_jets,), np.int8)
            has_truth = all(name in table.columns for name in TRUTH_COLUMNS)
            has_flag = "ttv" in table.columns
            for start in range(0, n_jets, _READ_CHUNK):
                stop = min(start + _READ_CHUNK, n_jets)
                rows = constituents[start:stop].reshape(stop - start, N_CONSTITUENTS * 4)
                table.read(CONSTITUENT_COLUMNS, start, stop, out=rows)
                chunk_labels = table.read(["is_signal_new"], start, stop, dtype=np.int64)[:, 0]
                _check_labels(path, chunk_labels)
                labels[start:stop] = chunk_labels
                if has_truth:
                    table.read(TRUTH_COLUMNS, start, stop, out=truth[start:stop])
                else:
                    truth[start:stop] = 0.0
                flag[start:stop] = (
                    table.read(["ttv"], start, stop, dtype=np.int8)[:, 0] if has_flag else -1
                )
                for array in (constituents, labels, truth, flag):
                    release_rows(array, start, stop)
            for array in (constituents, labels, truth, flag):
                array.flush()
        writer.describe(
            split, features=["constituents"], labels="labels", extra=["truth_top", "ttv"]
        )

    @classmethod
    def _convert_pd4ml_npz(cls, path: Path, writer: ArrayWriter) -> None:
        """The original pd4ml npz: train and val from its ``X_train_1`` flag, test as stored.

        Members are streamed to memory-mapped scratch files, then rows are gathered
        :data:`_READ_CHUNK` source jets at a time, so resident memory is one chunk.
        """
        headers = npz_headers(path)
        expected = {"X_train_0": 3, "X_train_1": 1, "y_train": 1, "X_test_0": 3, "y_test": 1}
        for key, ndim in expected.items():
            if key not in headers or len(headers[key].shape) != ndim:
                raise ConversionError(f"{path}: expected array {key} with {ndim} dimensions")
        if headers["X_train_0"].shape[1:] != (N_CONSTITUENTS, 4):
            raise ConversionError(f"{path}: X_train_0 has shape {headers['X_train_0'].shape}")
        scratch = writer.directory / ".scratch"
        scratch.mkdir(exist_ok=True)
        train = copy_npz_member(path, "X_train_0", scratch / "X_train_0.npy")
        flag = copy_npz_member(path, "X_train_1", scratch / "X_train_1.npy")
        labels = copy_npz_member(path, "y_train", scratch / "y_train.npy")
        for split, code in (("train", 0), ("val", 2)):
            _write_flagged_rows(writer, split, code, train, flag, labels)
        del train, flag, labels
        copy_npz_member(path, "X_test_0", writer.path("test", "constituents"))
        test_labels = copy_npz_member(path, "y_test", scratch / "y_test.npy")
        _write_labels(writer, "test", test_labels)
        _write_constant_columns(writer, "test", headers["X_test_0"].shape[0], code=1)
        writer.describe(
            "test", features=["constituents"], labels="labels", extra=["truth_top", "ttv"]
        )
        del test_labels
        for item in scratch.iterdir():
            item.unlink()
        scratch.rmdir()

    # -- preprocessing ------------------------------------------------------------------------
    @classmethod
    def prepare(
        cls,
        raw: LoadResult,
        statistics: Mapping[str, np.ndarray],
        params: Mapping[str, Any],
        writer: ArrayWriter,
        split: str,
    ) -> None:
        prepare_arrays(
            raw["constituents"],
            np.asarray(raw.y),
            writer,
            split,
            int(params["n_constituents"]),
            int(params["k"]),
            bool(params["graph"]),
            dense_adjacency=bool(params["dense_adjacency"]),
        )


def _check_labels(path: Path, labels: np.ndarray) -> None:
    if not np.isin(labels, (0, 1)).all():
        raise ConversionError(f"{path}: is_signal_new holds values other than 0 and 1")


def _write_constant_columns(writer: ArrayWriter, split: str, n_jets: int, code: int) -> None:
    """``ttv`` (all ``code``) and a zero ``truth_top`` of ``split``, one chunk at a time."""
    flag = writer.empty(split, "ttv", (n_jets,), np.int8)
    truth = writer.empty(split, "truth_top", (n_jets, 4), np.float32)
    for start in range(0, n_jets, _READ_CHUNK):
        stop = min(start + _READ_CHUNK, n_jets)
        flag[start:stop] = code
        truth[start:stop] = 0.0
        release_rows(flag, start, stop)
        release_rows(truth, start, stop)
    flag.flush()
    truth.flush()


def _write_labels(writer: ArrayWriter, split: str, labels: np.ndarray) -> None:
    """``labels`` (any numeric dtype) as the int64 ``labels`` of ``split``, chunk by chunk."""
    output = writer.empty(split, "labels", (len(labels),), np.int64)
    for start in range(0, len(labels), _READ_CHUNK):
        stop = min(start + _READ_CHUNK, len(labels))
        output[start:stop] = np.asarray(labels[start:stop]).astype(np.int64)
        release_rows(output, start, stop)
    output.flush()


def _write_flagged_rows(
    writer: ArrayWriter,
    split: str,
    code: int,
    constituents: np.ndarray,
    flag: np.ndarray,
    labels: np.ndarray,
) -> None:
    """The jets of ``constituents`` whose ``flag`` is ``code``, in file order, as ``split``.

    Rows are found and gathered :data:`_READ_CHUNK` source jets at a time.
    """
    n_source = len(flag)
    n_jets = sum(
        int(np.count_nonzero(np.asarray(flag[start : start + _READ_CHUNK]) == code))
        for start in range(0, n_source, _READ_CHUNK)
    )
    output = writer.empty(split, "constituents", (n_jets, N_CONSTITUENTS, 4), np.float32)
    split_labels = writer.empty(split, "labels", (n_jets,), np.int64)
    position = 0
    for start in range(0, n_source, _READ_CHUNK):
        stop = min(start + _READ_CHUNK, n_source)
        rows = start + np.flatnonzero(np.asarray(flag[start:stop]) == code)
        end = position + len(rows)
        output[position:end] = constituents[rows]
        split_labels[position:end] = np.asarray(labels[rows]).astype(np.int64)
        release_rows(constituents, start, stop)
        release_rows(output, position, end)
        position = end
    output.flush()
    split_labels.flush()
    _write_constant_columns(writer, split, n_jets, code)
    writer.describe(split, features=["constituents"], labels="labels", extra=["truth_top", "ttv"])


def _write_rows(array: np.ndarray, start: int, rows: np.ndarray) -> None:
    """``array[start : start + len(rows)] = rows``, for a file-backed ``array`` by writing the
    file rather than through the memory map.

    Writing fresh pages of a shared file mapping costs a page fault each (and a filesystem
    callback); one ``pwrite`` of the block puts the same bytes in the page cache, where the
    mapping sees them, at a fraction of the cost. Used for writable memory maps that own their
    mapping (not views); anything else is assigned.
    """
    if not (
        isinstance(array, np.memmap)
        and isinstance(array.base, mmap.mmap)
        and array.mode in ("r+", "w+")
        and array.filename is not None
        and array.flags.c_contiguous
        and rows.dtype == array.dtype
        and rows.shape[1:] == array.shape[1:]
    ):
        array[start : start + len(rows)] = rows
        return
    data = np.ascontiguousarray(rows).data.cast("B")
    position = array.offset + start * array.strides[0]
    descriptor = os.open(array.filename, os.O_WRONLY)
    try:
        while data:
            written = os.pwrite(descriptor, data, position)
            data = data[written:]
            position += written
    finally:
        os.close(descriptor)


def prepare_arrays(
    constituents: np.ndarray,
    labels: np.ndarray,
    writer: ArrayWriter,
    split: str,
    n_constituents: int,
    k: int,
    graph: bool,
    dense_adjacency: bool = False,
) -> None:
    """Features (and the kNN graph) of ``constituents`` ``(n_jets, 200, 4)``, chunk by chunk.

    Outputs are ``.npy`` files of ``writer`` (``features`` ``(n_jets, n_constituents, 7)``,
    ``mask``, and with ``graph`` ``neighbours`` / ``neighbour_mask`` ``(n_jets, n_constituents,
    k)``, and ``adjacency``); resident memory stays at one chunk of ``_PREPARE_CHUNK`` jets
    whatever the number of jets. By default one fused compiled kernel computes a chunk into
    buffers reused from chunk to chunk, which are then written to the files (see
    :func:`_write_rows`); with ``PD4ML_NO_NUMBA=1``, the NumPy reference implementations.
    """
    n_jets = constituents.shape[0]
    features = writer.empty(split, "features", (n_jets, n_constituents, 7), np.float32)
    mask = writer.empty(split, "mask", (n_jets, n_constituents), np.bool_)
    names = ["features", "mask", "labels"]
    if graph:
        shape = (n_jets, n_constituents, k)
        neighbours = writer.empty(split, "neighbours", shape, index_dtype(n_constituents))
        neighbour_mask = writer.empty(
            split, "neighbour_mask", (n_jets, n_constituents, k), np.bool_
        )
        names += ["neighbours", "neighbour_mask"]
    if graph and dense_adjacency:
        shape = (n_jets, n_constituents, n_constituents)
        adjacency = writer.empty(split, "adjacency", shape, np.int8)
        names.append("adjacency")
    outputs = [features, mask]
    if graph:
        outputs += [neighbours, neighbour_mask]
    kernel = top_features_knn_kernel(k) if graph else top_features_kernel()
    if constituents.shape[1] < n_constituents:
        kernel = None
    written = [*outputs, adjacency] if graph and dense_adjacency else outputs
    # the compiled kernels write every element of these buffers; two sets, reused in turn, so
    # that one chunk is written to the files (in a thread) while the next one is computed
    buffers = [
        [
            np.empty((min(_PREPARE_CHUNK, n_jets), *array.shape[1:]), dtype=array.dtype)
            for array in (outputs if kernel is not None else [])
        ]
        for _ in range(2)
    ]

    def store(start: int, stop: int, block: list[np.ndarray]) -> None:
        for output, rows in zip(written, block, strict=True):
            _write_rows(output, start, rows)
        for array in (constituents, *written):  # keep the resident memory at one chunk
            release_rows(array, start, stop)

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending: Future[None] | None = None
        for number, start in enumerate(range(0, n_jets, _PREPARE_CHUNK)):
            stop = min(start + _PREPARE_CHUNK, n_jets)
            block: list[np.ndarray]
            if kernel is not None:  # features (and graph) in one pass per jet
                block = [buffer[: stop - start] for buffer in buffers[number % 2]]
                kernel(
                    np.ascontiguousarray(constituents[start:stop], dtype=np.float32),
                    n_constituents,
                    *block,
                )
            else:
                block = list(constituent_features(constituents[start:stop], n_constituents))
                if graph:
                    block += knn_neighbours(block[0][..., 2:4], block[1], k)
            if graph and dense_adjacency:
                block.append(neighbours_to_dense(block[2], block[3], True, real=block[1]))
            if pending is not None:
                pending.result()
            pending = pool.submit(store, start, stop, block)
        if pending is not None:
            pending.result()
    writer.save(split, "labels", labels)
    writer.describe_arrays(split, names, {"feature_names": list(FEATURE_NAMES)})
