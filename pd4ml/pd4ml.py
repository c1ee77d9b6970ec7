"""The original pd4ml's classes, names and signatures, returning the original's data.

Scripts written for the original package (``github.com/erum-data-idt/pd4ml``, 2021–2023) run
unchanged::

    from pd4ml.pd4ml import TopTagging, Spinodal, EOSL, Airshower, Belle

    X, y = Spinodal.load("train", path="./datasets")          # list of arrays, labels
    X, y = EOSL.load_data("test", path="./datasets", graph=True)
    X["features"], X["adj_matrix"]                             # (N, 576, 1), (N, 576, 576) int8

Every original name returns what the original returned — the same arrays (the original's full
``train`` and ``test`` splits, in the original file's order and dtypes), the same
preprocessing, shapes, units and label scales — built on pd4ml's datasets (verified downloads,
one cache, memory maps instead of arrays in RAM):

* ``TopTagging``: ``load`` X = constituents ``(N, 200, 4)`` [E, px, py, pz] in GeV and the
  ``ttv`` flag ``(N,)``; ``load_data`` ``[(N, 100, 7)]`` float32, with ``graph=True``
  ``(N, 100, 7)`` and the kNN (k = 7) adjacency ``(N, 100, 100)`` int8, transposed;
* ``Spinodal``: ``(N, 20, 20)``; ``load_data`` the ``load`` list unscaled, with ``graph=True``
  ``(N, 400, 1)`` and the 8-connected grid ``(N, 400, 400)``;
* ``EOSL``: ``(N, 24, 24)``; ``load_data`` ``[(N, 576)]`` standard-scaled, with ``graph=True``
  ``(N, 576, 1)`` and the 8-connected grid ``(N, 576, 576)``;
* ``Airshower``: signal ``(N, 9, 9, 80)``, time ``(N, 9, 9, 1)``, stations ``(81, 3)``;
  ``load_data`` ``[(N, 81, 81)]``, with ``graph=True`` ``(N, 81, 81)`` and the 9 × 9 grid;
* ``Belle``: particles ``(N, 100, 9)``, mother indices ``(N, 100)``; ``load_data``
  ``[(N, 100, 191)]`` (8 raw kinematics, 182 one-hot PDG, mother index), with ``graph=True``
  ``(N, 100, 190)`` and mother ↔ daughter + self-loops ``(N, 100, 100)`` int8.

``y`` is the file's labels unchanged: 0/1 for the classifications, Xmax in g/cm² (unscaled) for
Airshower. EOSL is scaled with the per-pixel mean and standard deviation of the full train
split (as the original's StandardScaler; fitted once and stored instead of on every call).

Where pd4ml deviates from the original's output (each deliberate, each tested):

* **TopTagging kNN graph**: padded constituents are never neighbours and the node mask comes
  from the real-constituent count. The original computed the 7 nearest neighbours among all
  100 slots with the padding at (Δη, Δφ) = (0, 0) and masked the padding out afterwards, so a
  real constituent close to the jet axis lost neighbour slots to padding (fewer than 7 real
  neighbours), and a constituent with pT of exactly 1 GeV (ln pT = 0) was treated as padding.
  Here every real constituent has its min(7, n − 1) nearest real neighbours; everything else
  (transpose, self-loops on real constituents, int8) is the original's.
* **Row order of TopTagging ``train`` from the official files** (the default version ``v0``):
  the official training rows followed by the official validation rows (``ttv`` 0 then 2). The
  original npz (version ``pd4ml-2021``, used automatically when its file is at the original's
  location, see below) is read in its own order.
* The **Airshower time normalisation** reproduces the original: it divides by the standard
  deviation of the split being loaded (train and test are therefore scaled slightly
  differently, as in every published result). :meth:`pd4ml.Airshower.load_data` uses the train
  value for every split.

``path`` (default ``"./datasets"``, as the original) is the pd4ml cache directory: data is kept
under ``path/<dataset>/<version>/`` (``raw/`` the verified archive files, ``arrays/`` pd4ml's
arrays, ``original/`` the arrays of this module). ``path=None`` uses ``PD4ML_DATA_DIR`` (or
the user cache), like the rest of pd4ml; ``PD4ML_SHARED_DATA``, ``PD4ML_MIRROR`` and
``PD4ML_OFFLINE`` apply as everywhere. A file the original downloaded, at its location
``path/<ClassName>/<filename>`` (e.g. ``./datasets/TopTagging/1_top_tagging_2M.npz``), is
verified against its published md5 and imported, and that version is then the default.

Arrays of ``load`` and ``load_data`` are copy-on-write memory maps: nothing is read into RAM
until used, and a script may modify them in place (the changes stay in its memory; the cache
is never written). The adjacency of the grids is a read-only broadcast view, as in the
original. To run original scripts on other data (a synthetic stand-in in tests), replace the
pd4ml dataset a name is built on: :func:`using_sources`.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pd4ml._logging import get_logger
from pd4ml.adapters.original import adjacency as _knn_adjacency
from pd4ml.cache import Cache, atomic_directory, read_json, write_json_atomic
from pd4ml.config import Settings
from pd4ml.datasets import pipeline
from pd4ml.datasets.airshower import Airshower as _Airshower
from pd4ml.datasets.base import Dataset as _BaseDataset
from pd4ml.datasets.images import EOS as _EOS
from pd4ml.datasets.images import Spinodal as _Spinodal
from pd4ml.datasets.results import LoadMetadata, LoadResult
from pd4ml.datasets.smartbkg import SmartBKG as _SmartBKG
from pd4ml.datasets.top_tagging import TopTagging as _TopTagging
from pd4ml.errors import ConversionError, DamagedCacheError, UnknownNameError
from pd4ml.fetch import Fetcher
from pd4ml.fetch.locking import exclusive
from pd4ml.graphs import decay_tree_dense, grid_neighbours
from pd4ml.manifest import DatasetVersion
from pd4ml.naming import closest_hint
from pd4ml.npyio import allocate_npy, copy_npz_member, npz_headers, release_rows

log = get_logger("original")

#: Version of the arrays written under ``<version>/original/`` (bump when they change).
ORIGINAL_LAYOUT_VERSION = 1
#: The original's splits.
SPLITS = ("train", "test")
#: Rows per chunk of the preprocessing passes (bounds the resident memory).
_CHUNK = 2_000

#: The 182 mapped-PID values of Belle, most frequent first: their position is the one-hot
#: column of the original's ``load_data`` (any other value, and the padding 0, has none).
BELLE_SORTED_PDG: tuple[int, ...] = (
    506, 423, 236, 143, 321, 171, 323, 15, 114, 19, 96, 394, 372, 46, 44, 190, 134, 141, 375,
    8, 337, 220, 415, 248, 249, 11, 34, 434, 263, 4, 126, 378, 418, 183, 182, 10, 245, 85, 45,
    210, 178, 139, 275, 322, 419, 121, 437, 42, 118, 424, 480, 483, 79, 414, 61, 393, 38, 349,
    108, 86, 32, 357, 238, 173, 305, 57, 413, 491, 158, 355, 78, 176, 164, 352, 187, 205, 471,
    71, 458, 350, 101, 280, 389, 376, 89, 120, 457, 436, 186, 444, 76, 390, 402, 342, 258, 391,
    407, 162, 185, 152, 276, 149, 302, 106, 110, 401, 109, 487, 279, 192, 446, 334, 56, 359,
    194, 314, 202, 420, 208, 427, 475, 495, 465, 442, 489, 360, 448, 216, 215, 300, 214, 13,
    227, 501, 502, 399, 344, 474, 150, 53, 325, 129, 326, 195, 366, 370, 336, 163, 154, 66,
    105, 285, 473, 455, 421, 43, 119, 271, 373, 363, 428, 304, 229, 425, 133, 270, 219, 479,
    112, 250, 217, 33, 403, 338, 206, 39, 268, 130, 328, 93, 346, 212,
)  # fmt: skip

Arrays = list[np.ndarray]
Inputs = dict[str, Any]


# -- small helpers -------------------------------------------------------------------------------
def _copy_on_write(array: np.ndarray) -> np.ndarray:
    """``array`` reopened as a copy-on-write memory map when it maps a whole ``.npy`` file."""
    filename = getattr(array, "filename", None)
    if isinstance(array, np.memmap) and filename is not None:
        reopened: np.ndarray = np.load(filename, mmap_mode="c", allow_pickle=False)
        if reopened.shape == array.shape and reopened.dtype == array.dtype:
            return reopened
    return array


def _open_store(directory: Path) -> dict[str, np.ndarray] | None:
    """The arrays of a store written by :func:`_write_store`, or ``None`` if incomplete."""
    meta = read_json(directory / "meta.json")
    if not isinstance(meta, dict) or meta.get("layout") != ORIGINAL_LAYOUT_VERSION:
        return None
    arrays = {}
    for name, size in meta.get("arrays", {}).items():
        path = directory / f"{name}.npy"
        try:
            if path.stat().st_size != size:
                log.warning("%s has the wrong size; it will be rebuilt", path)
                return None
            arrays[name] = np.load(path, mmap_mode="c", allow_pickle=False)
        except (OSError, ValueError):
            return None
    return arrays


@contextlib.contextmanager
def _write_store(directory: Path, info: Mapping[str, Any]) -> Iterator[Path]:
    """A staging directory that becomes the store ``directory`` when the block succeeds."""
    with atomic_directory(directory) as staging:
        yield staging
        sizes = {path.stem: path.stat().st_size for path in sorted(staging.glob("*.npy"))}
        write_json_atomic(
            staging / "meta.json", {"layout": ORIGINAL_LAYOUT_VERSION, "arrays": sizes, **info}
        )


def _stored(
    directory: Path, info: Mapping[str, Any], build: Callable[[Path], None], force: bool
) -> dict[str, np.ndarray]:
    """The store ``directory``, built once (under a lock) by ``build(staging)``."""
    arrays = None if force else _open_store(directory)
    if arrays is not None:
        return arrays
    lock = directory.parent / ".pd4ml" / f"{directory.name}.lock"
    with exclusive(lock, f"writing {directory}"):
        arrays = None if force else _open_store(directory)
        if arrays is None:
            with _write_store(directory, info) as staging:
                build(staging)
            arrays = _open_store(directory)
    if arrays is None:
        raise DamagedCacheError(f"{directory} could not be read back after writing it")
    return arrays


def _chunks(n: int, size: int = _CHUNK) -> Iterator[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(start + size, n)


def _grid_adjacency(n_events: int, rows: int, columns: int) -> np.ndarray:
    """The original's 8-connected grid adjacency, ``(n_events, P, P)`` int8, no self-loops: a
    read-only broadcast view of one ``(P, P)`` matrix."""
    neighbours, valid = grid_neighbours(rows, columns, 8)
    dense = np.zeros((rows * columns, rows * columns), dtype=np.int8)
    node, slot = np.nonzero(valid)
    dense[node, neighbours[node, slot]] = 1
    return np.broadcast_to(dense, (n_events, *dense.shape))


def belle_pdg_index(tokens: np.ndarray) -> np.ndarray:
    """The original's remapping of Belle's PID tokens: the position in
    :data:`BELLE_SORTED_PDG` (0 … 181), 183 for every other value (the padding 0 included).

    ``tokens`` of any shape and numeric dtype (a value matches only when it equals a listed
    integer exactly); returns int64 of the same shape.
    """
    values = np.asarray(tokens)
    table = np.full(max(BELLE_SORTED_PDG) + 1, len(BELLE_SORTED_PDG) + 1, dtype=np.int64)
    table[list(BELLE_SORTED_PDG)] = np.arange(len(BELLE_SORTED_PDG))
    rounded = np.rint(values) if np.issubdtype(values.dtype, np.floating) else values
    usable = (rounded == values) & (rounded >= 0) & (rounded < len(table))
    index = np.full(values.shape, len(BELLE_SORTED_PDG) + 1, dtype=np.int64)
    index[usable] = table[rounded[usable].astype(np.int64)]
    return index


def belle_one_hot(index: np.ndarray, depth: int) -> np.ndarray:
    """``(…, depth)`` int8 one-hot of ``index``; indices ≥ ``depth`` give all zeros (as
    ``tf.one_hot`` and the original's ``np_onehot``)."""
    encoded = np.zeros((*index.shape, depth + 1), dtype=np.int8)
    np.put_along_axis(encoded, np.minimum(index, depth)[..., None], 1, axis=-1)
    return encoded[..., :depth]


# -- the hook: which pd4ml dataset an original name is built on ----------------------------------
@contextlib.contextmanager
def using_sources(sources: Mapping[type[Dataset], type[_BaseDataset]]) -> Iterator[None]:
    """Build original names on other pd4ml datasets inside the block, e.g. synthetic variants::

        with using_sources({TopTagging: synthetic_variant(pd4ml.TopTagging, ...)}):
            exec(original_script)

    Each replacement must be a subclass of the class's :attr:`Dataset.source` (so that it
    converts the same files); the previous sources are restored on exit.
    """
    previous = {cls: cls.source for cls in sources}
    try:
        for cls, source in sources.items():
            if not (isinstance(source, type) and issubclass(source, cls.built_on)):
                raise TypeError(
                    f"the source of {cls.__name__} must be a subclass of "
                    f"{cls.built_on.__module__}.{cls.built_on.__qualname__}, not {source!r}"
                )
            cls.source = source
        yield
    finally:
        for cls, source in previous.items():
            cls.source = source


# -- the base class ------------------------------------------------------------------------------
class Dataset:
    """Base class of the original's datasets: class attributes and classmethods only.

    Every subclass is added to :attr:`datasets_register` (a set, as in the original) unless
    declared with ``register=False``.
    """

    name: ClassVar[str]
    """The original's display name (``"TopTagging"``)."""
    filename: ClassVar[str]
    """The original's file name (``"1_top_tagging_2M.npz"``)."""
    url: ClassVar[str]
    """The original's download URL (dead since 2023; pd4ml fetches from its manifest)."""
    md5: ClassVar[str]
    """The md5 of the original's file."""
    task: ClassVar[str]
    """``"classification"`` or ``"regression"``."""
    source: ClassVar[type[_BaseDataset]]
    """The pd4ml dataset this name is built on (replace it with :func:`using_sources`)."""
    built_on: ClassVar[type[_BaseDataset]]
    """The pd4ml dataset class of :attr:`source` by default (replacements subclass it)."""
    datasets_register: ClassVar[set[type[Dataset]]] = set()
    """The registered datasets (iterate it and print ``.name``)."""

    def __init_subclass__(cls, register: bool = True, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "source" in vars(cls):
            cls.built_on = vars(cls)["source"]
        if register:
            Dataset.datasets_register.add(cls)

    @classmethod
    def print_description(cls) -> None:
        """Print the dataset's description (the class docstring), as the original did."""
        print(inspect.getdoc(cls))

    @classmethod
    def data_path(cls, path: str | os.PathLike[str], with_filename: bool = True) -> Path:
        """Where the original kept the file: ``path/<ClassName>/<filename>``."""
        folder = Path(path).expanduser() / cls.__name__
        return folder / cls.filename if with_filename else folder

    # -- versions and settings -----------------------------------------------------------------
    @classmethod
    def _settings(cls, path: str | os.PathLike[str] | None) -> Settings:
        if path is not None and not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a directory (str or os.PathLike) or None, not {path!r}")
        return Settings.from_env(path)

    @classmethod
    def _version(
        cls, version: str | None, path: str | os.PathLike[str] | None, settings: Settings
    ) -> DatasetVersion:
        """The version to read: ``version``, else the one holding the original's file when it is
        at the original's location (imported once), else the manifest's default."""
        manifest = cls.source.manifest()
        if version is not None:
            return manifest.version(version)
        holding = [v for v in manifest.versions if any(f.key == cls.filename for f in v.files)]
        if path is not None and holding and cls.data_path(path).is_file():
            chosen = holding[0]
            fetcher = Fetcher(settings)
            if not fetcher.is_cached(manifest, chosen, chosen.file(cls.filename)):
                log.info("importing the original's %s", cls.data_path(path))
                fetcher.import_directory(manifest, cls.data_path(path, False), chosen)
            return chosen
        return manifest.version(None)

    @classmethod
    def _split(cls, split: object) -> str:
        if split in SPLITS:
            return str(split)
        raise UnknownNameError(
            f"{cls.__name__} has no split {split!r}{closest_hint(str(split), list(SPLITS))}; "
            "the original's splits are 'train' and 'test' (pd4ml's own classes, such as "
            f"pd4ml.{cls.source.__name__}, also have 'val')"
        )

    @classmethod
    def _root(cls, settings: Settings, version: DatasetVersion) -> Path:
        """Where this class's arrays live: tied to this module's layout version and to the
        source dataset's conversion and preprocessing versions, so a new version of either
        is never served from an older cache."""
        source = cls.source
        manifest = source.manifest()
        base = Cache(settings).version_dir(manifest.name, version.name)
        variant = pipeline.arrays_variant(source)
        name = (
            f"v{ORIGINAL_LAYOUT_VERSION}-c{source.converter_version}-p{source.prepare_version}"
            + (f"-{variant}" if variant else "")
        )
        return base / "original" / name

    # -- load ----------------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        split: str = "train",
        path: str | os.PathLike[str] | None = "./datasets",
        force_download: bool = False,
        *,
        version: str | None = None,
    ) -> tuple[Arrays, np.ndarray]:
        """``(X, y)`` of the original's file: ``X = [X_<split>_0, X_<split>_1, …]``, ``y``.

        Args:
            split: ``"train"`` or ``"test"``.
            path: the cache directory (see the module docstring).
            force_download: fetch, convert and write again.
            version: a version of :attr:`source`'s manifest (default: see the module docstring).
        """
        split = cls._split(split)
        settings = cls._settings(path)
        dataset_version = cls._version(version, path, settings)
        arrays = cls._original_arrays(split, settings, dataset_version, bool(force_download))
        inputs = sorted((int(name[2:]), array) for name, array in arrays.items() if name != "y")
        return [array for _, array in inputs], arrays["y"]

    @classmethod
    def _original_arrays(
        cls, split: str, settings: Settings, version: DatasetVersion, force: bool
    ) -> dict[str, np.ndarray]:
        """``X_0, X_1, …, y`` of ``split``: streamed from the original npz into the store."""
        if not all(entry.key.endswith(".npz") for entry in version.files):
            return cls._arrays_from_pd4ml(split, settings, version, force)
        manifest = cls.source.manifest()

        def build(staging: Path) -> None:
            (local,) = Fetcher(settings).fetch(manifest, version, force=force).values()
            headers = npz_headers(local.path)
            inputs = sorted(
                int(key.rsplit("_", 1)[1])
                for key in headers
                if key.startswith(f"X_{split}_") and key.rsplit("_", 1)[1].isdigit()
            )
            if not inputs or inputs != list(range(len(inputs))) or f"y_{split}" not in headers:
                raise ConversionError(
                    f"{local.path}: not an original pd4ml file: expected X_{split}_0, "
                    f"X_{split}_1, … and y_{split}; arrays: {sorted(headers)}"
                )
            for index in inputs:
                copy_npz_member(local.path, f"X_{split}_{index}", staging / f"X_{index}.npy")
            copy_npz_member(local.path, f"y_{split}", staging / "y.npy")

        directory = cls._root(settings, version) / "load" / split
        return _stored(directory, {"split": split, "from": "npz"}, build, force)

    @classmethod
    def _arrays_from_pd4ml(
        cls, split: str, settings: Settings, version: DatasetVersion, force: bool
    ) -> dict[str, np.ndarray]:
        raise ConversionError(
            f"{cls.__name__}: version {version.name!r} is not in the original's npz layout; "
            f"choose one that is (pd4ml info {cls.source.name})"
        )

    @classmethod
    def _source_load(
        cls, split: str, settings: Settings, version: DatasetVersion, force: bool
    ) -> LoadResult:
        return cls.source.load(split, settings=settings, version=version.name, force_download=force)

    # -- load_data -----------------------------------------------------------------------------
    @classmethod
    def load_data(
        cls,
        split: str = "train",
        path: str | os.PathLike[str] | None = "./datasets",
        graph: bool = False,
        force_download: bool = False,
        *,
        version: str | None = None,
    ) -> tuple[Inputs, np.ndarray]:
        """``(X, y)`` preprocessed as the original: ``X = {"features": [array]}`` without a
        graph, ``{"features": nodes, "adj_matrix": A}`` with one (shapes in the module table).
        """
        split = cls._split(split)
        if not isinstance(graph, (bool, np.bool_)):
            raise TypeError(f"graph must be True or False, not {graph!r}")
        settings = cls._settings(path)
        dataset_version = cls._version(version, path, settings)
        return cls._preprocess(split, settings, dataset_version, bool(graph), bool(force_download))

    @classmethod
    def _preprocess(
        cls, split: str, settings: Settings, version: DatasetVersion, graph: bool, force: bool
    ) -> tuple[Inputs, np.ndarray]:
        raise NotImplementedError(f"{cls.__name__} does not define _preprocess()")

    @classmethod
    def _arrays(
        cls, split: str, settings: Settings, version: DatasetVersion, force: bool
    ) -> tuple[Arrays, np.ndarray]:
        arrays = cls._original_arrays(split, settings, version, force)
        inputs = sorted((int(name[2:]), array) for name, array in arrays.items() if name != "y")
        return [array for _, array in inputs], arrays["y"]


# -- the five datasets (docstrings: the original's descriptions, typos corrected) -----------------
class TopTagging(Dataset):
    """Top tagging dataset.

    Description:
    14 TeV, hadronic tops for signal, QCD dijets background, Delphes ATLAS detector card with
    Pythia. No MPI/pile-up included. Particle-flow entries (produced by Delphes E-flow) have
    been clustered into anti-kT 0.8 jets in the pT range [550, 650] GeV. All top jets are
    matched to a parton-level top within ΔR = 0.8, and to all top decay partons within 0.8.
    Also |eta|_jet < 2 has been required.

    Ref:
    Deep-learned Top Tagging with a Lorentz Layer by A. Butter, G. Kasieczka, T. Plehn and
    M. Russell (arXiv:1707.08966); the Top Quark Tagging Reference Dataset, Zenodo 2603256.

    Dataset shape:
    ~2M events divided between training (~1.6M) and test (~400k); the first input has shape
    (# of events, 200, 4): the leading 200 jet constituent four-momenta (E, px, py, pz) in GeV,
    zero-padded, sorted by pT with the highest first. The second input is the flag "ttv" of the
    event in the official files: 0 = training, 1 = test, 2 = validation (training and
    validation events are merged into the training split).

    load_data: features (N, 100, 7) float32 — ln pT, ln E, Δη·sign(η_jet), Δφ, ln(pT/pT_jet),
    ln(E/E_jet), ΔR of the first 100 constituents (0 for padding); with graph=True the kNN
    (k = 7 in Δη, Δφ) adjacency (N, 100, 100) int8, transposed, with self-loops on real
    constituents.

    The labels are 0 for QCD and 1 for top.
    """

    name = "TopTagging"
    filename = "1_top_tagging_2M.npz"
    url = "https://syncandshare.desy.de/index.php/s/TWqT3E9j6q5yYSF/download/1_top_tagging_2M.npz"
    md5 = "708a8369d75ceff2229bd8c46b47afea"
    task = "classification"
    source = _TopTagging

    #: The original's preprocessing parameters (constituents kept, neighbours).
    N_CONSTITUENTS = 100
    K = 7

    @classmethod
    def _arrays_from_pd4ml(
        cls, split: str, settings: Settings, version: DatasetVersion, force: bool
    ) -> dict[str, np.ndarray]:
        """From the official files: ``train`` = official train then validation rows."""
        if split == "test":
            test = cls._source_load("test", settings, version, force)
            return {
                "X_0": _copy_on_write(test["constituents"]),
                "X_1": _copy_on_write(test["ttv"]),
                "y": _copy_on_write(test.y),
            }
        parts = [cls._source_load(name, settings, version, force) for name in ("train", "val")]

        def build(staging: Path) -> None:
            n = sum(part.n_events for part in parts)
            outputs = {
                "X_0": allocate_npy(staging / "X_0.npy", (n, 200, 4), np.float32),
                "X_1": allocate_npy(staging / "X_1.npy", (n,), parts[0]["ttv"].dtype),
                "y": allocate_npy(staging / "y.npy", (n,), parts[0].y.dtype),
            }
            offset = 0
            for part in parts:
                sources = {"X_0": part["constituents"], "X_1": part["ttv"], "y": part.y}
                for start, stop in _chunks(part.n_events, 20_000):
                    for name, source in sources.items():
                        outputs[name][offset + start : offset + stop] = source[start:stop]
                    release_rows(outputs["X_0"], offset + start, offset + stop)
                offset += part.n_events
            for output in outputs.values():
                output.flush()

        directory = cls._root(settings, version) / "load" / split
        return _stored(directory, {"split": split, "from": "train+val"}, build, force)

    @classmethod
    def _preprocess(
        cls, split: str, settings: Settings, version: DatasetVersion, graph: bool, force: bool
    ) -> tuple[Inputs, np.ndarray]:
        X, y = cls._arrays(split, settings, version, force)
        params = {
            "n_constituents": cls.N_CONSTITUENTS,
            "k": cls.K,
            "dense_adjacency": False,
            "graph": graph,
        }
        root = cls._root(settings, version) / f"load_data-graph{int(graph)}"
        directory = root / split
        source = cls.source
        if force or not pipeline.current_prepared(directory):
            with exclusive(root.parent / ".pd4ml" / f"{root.name}.lock", "preparing TopTagging"):
                if force or not pipeline.current_prepared(directory):
                    manifest = source.manifest()
                    raw = LoadResult(
                        X=[X[0]],
                        y=y,
                        weights=None,
                        names=("constituents",),
                        metadata=LoadMetadata(
                            dataset=manifest.name,
                            version=version.name,
                            split=split,
                            n_events=len(y),
                            doi=version.source.doi,
                            source="original",
                            synthetic=version.synthetic,
                        ),
                    )
                    pipeline.prepare_split(source, root, split, raw, {}, params)
        prepared = pipeline.open_prepared(directory, None, quiet=True)
        features = _copy_on_write(prepared.features)
        if not graph:
            return {"features": [features]}, y
        return {"features": features, "adj_matrix": _copy_on_write(_knn_adjacency(prepared))}, y


class Spinodal(Dataset):
    """Spinodal dataset.

    Description:
    The classification goal for this dataset is to identify the nature of the QCD phase
    transition in heavy-ion collisions at the CBM experiment and, in particular, whether
    signals of a spinodal instability associated with the phase transition can be found in the
    final momentum spectra of certain collisions.

    Ref:
    J. Steinheimer, L. Pang, K. Zhou, V. Koch, J. Randrup and H. Stoecker, JHEP 12 (2019) 122,
    doi:10.1007/JHEP12(2019)122 [arXiv:1906.06562 [nucl-th]].

    Dataset shape:
    29,000 2D histograms of shape 20x20 describing pion momenta, divided in training (70%) and
    test (30%): (# of events, 20, 20).

    load_data: the load list unchanged; with graph=True features (N, 400, 1) (pixels
    row-major) and the 8-connected grid adjacency (N, 400, 400) int8, no self-loops.

    The label is 1 for a Spinodal event and 0 for a Maxwell event.
    """

    name = "Spinodal"
    filename = "2_spinodal_29k.npz"
    url = "https://syncandshare.desy.de/index.php/s/RN9AYWLgKHEPEfF/download/2_spinodal_29k.npz"
    md5 = "c22326822d9bac7c074467ccccc6fe4f"
    task = "classification"
    source = _Spinodal

    @classmethod
    def _preprocess(
        cls, split: str, settings: Settings, version: DatasetVersion, graph: bool, force: bool
    ) -> tuple[Inputs, np.ndarray]:
        X, y = cls._arrays(split, settings, version, force)
        if not graph:
            return {"features": X}, y
        images = X[0]
        n, rows, columns = images.shape
        nodes = images.reshape(n, rows * columns, 1)
        return {"features": nodes, "adj_matrix": _grid_adjacency(n, rows, columns)}, y


class EOSL(Dataset):
    """EOSL or EOSQ dataset.

    Description:
    The task here is to classify the QCD transition nature (two different equations of state:
    cross-over EOSL or first-order EOSQ) in heavy-ion collisions from the final-state pion
    spectra. The pion spectra in transverse momentum and azimuthal angle are simulated with a
    hybrid model (viscous hydrodynamics plus the hadronic cascade UrQMD) of heavy-ion
    collisions, varying physical parameters (collision energy, centrality, initial time,
    initial-condition models with fluctuations, shear viscosity, freeze-out temperature,
    switching time from hydrodynamics to the hadronic cascade).

    Ref:
    L.-G. Pang, K. Zhou, N. Su, H. Petersen, H. Stoecker and X.-N. Wang, An equation-of-state-
    meter of quantum chromodynamics transition from deep learning, Nature Commun. 9 (2018) 210;
    Y.-L. Du, K. Zhou, J. Steinheimer, L.-G. Pang, A. Motornenko, H.-S. Zong, X.-N. Wang and
    H. Stoecker, Identifying the nature of the QCD transition in relativistic collision of
    heavy nuclei with deep learning, arXiv:1910.11530.

    Dataset shape:
    ~180,000 2D histograms of shape 24x24 of the pion spectra, divided in 70% training and 30%
    test: (# of events, 24, 24).

    load_data: features (N, 576) standard-scaled per pixel with the mean and standard
    deviation of the train split; with graph=True (N, 576, 1) and the 8-connected grid
    adjacency (N, 576, 576) int8, no self-loops.

    Label is 1 for EOSQ and 0 for EOSL.
    """

    name = "EOSL"
    filename = "3_EOSL_or_EOSQ_180k.npz"
    url = (
        "https://syncandshare.desy.de/index.php/s/NXojejGjKdSJSR2/download/3_EOSL_or_EOSQ_180k.npz"
    )
    md5 = "c070a9743163c3f467ceb87ac4e19fd1"
    task = "classification"
    source = _EOS

    @classmethod
    def scaler(
        cls, settings: Settings, version: DatasetVersion, force: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, scale)`` ``(576,)`` float64 of the flattened train spectra, as a
        StandardScaler fits them (population standard deviation; 1 where it is 0). Fitted once
        and stored."""

        def build(staging: Path) -> None:
            (train, *_), _ = cls._arrays("train", settings, version, force)
            flat = train.reshape(len(train), -1)
            total = np.zeros(flat.shape[1])
            for start, stop in _chunks(len(flat), 20_000):
                total += np.asarray(flat[start:stop], dtype=np.float64).sum(axis=0)
            mean = total / max(len(flat), 1)
            squares = np.zeros(flat.shape[1])
            for start, stop in _chunks(len(flat), 20_000):
                squares += ((np.asarray(flat[start:stop], dtype=np.float64) - mean) ** 2).sum(0)
            std = np.sqrt(squares / max(len(flat), 1))
            eps = np.finfo(np.float64).eps
            scale = np.where(std < 10 * eps * np.maximum(np.abs(mean), 1e-300), 1.0, std)
            scale = np.where(std == 0, 1.0, scale)
            np.save(staging / "mean.npy", mean)
            np.save(staging / "scale.npy", scale)

        stored = _stored(cls._root(settings, version) / "scaler", {}, build, force)
        return np.asarray(stored["mean"]), np.asarray(stored["scale"])

    @classmethod
    def _preprocess(
        cls, split: str, settings: Settings, version: DatasetVersion, graph: bool, force: bool
    ) -> tuple[Inputs, np.ndarray]:
        X, y = cls._arrays(split, settings, version, force)
        images = X[0]
        n, rows, columns = images.shape
        mean, scale = cls.scaler(settings, version, force)
        dtype = np.result_type(images.dtype, np.float32)

        def build(staging: Path) -> None:
            out = allocate_npy(staging / "features.npy", (n, rows * columns), dtype)
            for start, stop in _chunks(n, 20_000):
                block = np.asarray(images[start:stop], dtype=np.float64).reshape(stop - start, -1)
                out[start:stop] = (block - mean) / scale
                release_rows(out, start, stop)
            out.flush()

        directory = cls._root(settings, version) / "load_data" / split
        features = _stored(directory, {"split": split}, build, force)["features"]
        if not graph:
            return {"features": [features]}, y
        return {
            "features": features.reshape(n, rows * columns, 1),
            "adj_matrix": _grid_adjacency(n, rows, columns),
        }, y


class Airshower(Dataset):
    """Airshower regression task: the shower maximum.

    Based on https://doi.org/10.1016/j.astropartphys.2017.10.006 (M. Erdmann, J. Glombitza,
    D. Walz, Astropart. Phys. 97 (2018) 46). Produced by J. Glombitza.

    Dataset shape — three inputs:
    - signal traces (70k, 9, 9, 80): 9x9 = 81 ground stations, 80 signal bins per station;
      -1 where a station or time bin detected no particle;
    - arrival times (70k, 9, 9, 1): start time of each station's trace (arrival of the first
      particles); -1 where a station detected nothing;
    - the detector geometry (81, 3): x, y, z of each station, for reference.

    load_data: features (N, 81, 81) float32 — per station (row-major 9x9) log10(S + 1) of the
    80 trace bins (0 where missing) followed by the arrival time minus the event's mean,
    divided by the standard deviation of those times over the split being loaded (0 where
    missing); with graph=True the 8-connected 9x9 grid adjacency (N, 81, 81) int8.

    Label: "Xmax", the depth of the shower maximum in g/cm² (unscaled), for a regression task.
    """

    name = "Airshower"
    filename = "4_airshower_100k_regression.npz"
    url = "https://syncandshare.desy.de/index.php/s/8oJoYcaCRaC9dL7/download/4_airshower_100k_regression.npz"
    md5 = "367dc93bec6111a1990f85cc8ff58d1f"
    task = "regression"
    source = _Airshower

    @staticmethod
    def centred_times(time: np.ndarray) -> np.ndarray:
        """Arrival times ``(n, 9, 9, 1)`` (-1 missing) minus each event's mean over its stations,
        ``(n, 81)`` float64, NaN where missing (and for events without any station)."""
        values = np.asarray(time, dtype=np.float64).reshape(len(time), -1)
        values = np.where(values == -1, np.nan, values)
        counts = np.sum(~np.isnan(values), axis=1, keepdims=True)
        sums = np.nansum(values, axis=1, keepdims=True)
        mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        centred: np.ndarray = values - mean
        return centred

    @classmethod
    def time_scale(cls, time: np.ndarray) -> float:
        """The original's ``nanstd`` of the centred arrival times of a whole split."""
        total = squares = 0.0
        count = 0
        for start, stop in _chunks(len(time), 20_000):
            centred = cls.centred_times(time[start:stop])
            real = centred[~np.isnan(centred)]
            total += float(real.sum())
            squares += float((real**2).sum())
            count += real.size
        if count == 0:
            return float("nan")
        mean = total / count
        return float(np.sqrt(max(squares / count - mean**2, 0.0)))

    @classmethod
    def _preprocess(
        cls, split: str, settings: Settings, version: DatasetVersion, graph: bool, force: bool
    ) -> tuple[Inputs, np.ndarray]:
        X, y = cls._arrays(split, settings, version, force)
        signal, time = X[0], X[1]
        n, rows, columns, bins = signal.shape
        stations = rows * columns
        dtype = np.result_type(signal.dtype, time.dtype, np.float32)

        def build(staging: Path) -> None:
            scale = cls.time_scale(time)
            out = allocate_npy(staging / "features.npy", (n, stations, bins + 1), dtype)
            for start, stop in _chunks(n, 5_000):
                traces = np.asarray(signal[start:stop], dtype=np.float64)
                traces = traces.reshape(stop - start, stations, bins)
                traces = np.where((traces == -1) | (traces < 0), 0.0, traces)
                centred = cls.centred_times(time[start:stop]) / scale
                out[start:stop, :, :bins] = np.log10(traces + 1.0)
                out[start:stop, :, bins] = np.where(np.isnan(centred), 0.0, centred)
                release_rows(out, start, stop)
            out.flush()

        directory = cls._root(settings, version) / "load_data" / split
        features = _stored(directory, {"split": split}, build, force)["features"]
        if not graph:
            return {"features": [features]}, y
        return {"features": features, "adj_matrix": _grid_adjacency(n, rows, columns)}, y


class Belle(Dataset):
    """SmartBKG dataset (Belle II — generated events passing a downstream selection).

    The goal of this classification problem is to identify generated events that pass a
    selection already before the expensive detector simulation and reconstruction.

    Original dataset and additional information:
    https://github.com/kahn-jms/belle-selective-mc-dataset

    Dataset shape — two inputs:
    - (280000 events, 100 particles (zero-padded), 9 features: 'prodTime', 'energy', 'x', 'y',
      'z', 'px', 'py', 'pz', 'PID'); PID is a unique PDG particle ID mapped to a continuous
      range;
    - (280000 events, 100): the index of each particle's mother (-1 padded), from which the
      graph of the event is built.

    load_data: features (N, 100, 191) — the 8 raw kinematics, the one-hot (182) of the PID's
    rank in the original's frequency table (all zero for other values and padding) and the
    mother index; with graph=True features (N, 100, 190) and the adjacency (N, 100, 100) int8
    (mother ↔ daughter, self-loops on particles with a mother).

    Label: the event passes (1) or fails (0) a selection applied after detector simulation
    and reconstruction.
    """

    name = "Belle"
    filename = "6_belle_selective_400k.npz"
    url = "https://syncandshare.desy.de/index.php/s/CWD9CdCHgizgNxq/download/6_belle_selective_400k.npz"
    md5 = "85b10c9df3903455ab247a0ab4b51e5f"
    task = "classification"
    source = _SmartBKG

    @classmethod
    def load_data(
        cls,
        split: str = "train",
        path: str | os.PathLike[str] | None = "./datasets",
        graph: bool = False,
        force_download: bool = False,
        num_pdg: int = 182,
        max_entries: int | None = None,
        as_tf_data: bool = False,
        batch_size: int = 1024,
        validation_split: float | None = 0.2,
        *,
        version: str | None = None,
    ) -> Any:
        """The original's Belle ``load_data`` (see the class docstring), with its extra arguments.

        Args:
            num_pdg: one-hot depth (ranks ≥ ``num_pdg`` give all zeros).
            max_entries: keep only the first events (computed in memory, not cached).
            as_tf_data: return ``tf.data`` datasets of batches ``({"adj_matrix": float32,
                "features": float32}, y)`` instead: ``(train, validation)`` — the first
                ``1 - validation_split`` of the events and the rest — or one dataset when
                ``validation_split`` is ``None``; ``graph`` is ignored then.
        """
        split = cls._split(split)
        if not isinstance(graph, (bool, np.bool_)):
            raise TypeError(f"graph must be True or False, not {graph!r}")
        if isinstance(num_pdg, bool) or not isinstance(num_pdg, int) or num_pdg < 1:
            raise ValueError(f"num_pdg must be a whole number ≥ 1, not {num_pdg!r}")
        settings = cls._settings(path)
        dataset_version = cls._version(version, path, settings)
        X, y = cls._arrays(split, settings, dataset_version, bool(force_download))
        if max_entries is not None:
            X = [array[:max_entries] for array in X]
            y = y[:max_entries]
        if as_tf_data:
            return cls._tf_data(X, y, num_pdg, batch_size, validation_split)
        cached = max_entries is None
        particles, mothers = X
        n, n_nodes = particles.shape[:2]
        if graph:
            dtype = np.result_type(particles.dtype, np.int8)
            shape: tuple[int, ...] = (n, particles.shape[1], particles.shape[2] - 1 + num_pdg)
        else:
            dtype = np.result_type(particles.dtype, np.int8, mothers.dtype)
            shape = (n, particles.shape[1], particles.shape[2] + num_pdg)

        def build(staging: Path) -> None:
            out = allocate_npy(staging / "features.npy", shape, dtype)
            adjacency = (
                allocate_npy(staging / "adj_matrix.npy", (n, n_nodes, n_nodes), np.int8)
                if graph
                else None
            )
            for start, stop in _chunks(n):
                out[start:stop] = cls.features(
                    particles[start:stop], None if graph else mothers[start:stop], num_pdg
                )
                release_rows(out, start, stop)
                if adjacency is not None:
                    block = np.asarray(mothers[start:stop]).astype(np.int8)
                    adjacency[start:stop] = decay_tree_dense(block)
                    release_rows(adjacency, start, stop)
            out.flush()
            if adjacency is not None:
                adjacency.flush()

        if cached:
            name = f"load_data-graph{int(graph)}" + ("" if num_pdg == 182 else f"-pdg{num_pdg}")
            directory = cls._root(settings, dataset_version) / name
            arrays = _stored(directory / split, {"split": split}, build, bool(force_download))
        else:
            scratch: dict[str, np.ndarray] = {}
            features = cls.features(particles, None if graph else mothers, num_pdg)
            scratch["features"] = features
            if graph:
                scratch["adj_matrix"] = decay_tree_dense(np.asarray(mothers).astype(np.int8))
            arrays = scratch
        if not graph:
            return {"features": [arrays["features"]]}, y
        return {"features": arrays["features"], "adj_matrix": arrays["adj_matrix"]}, y

    @staticmethod
    def features(particles: np.ndarray, mothers: np.ndarray | None, num_pdg: int) -> np.ndarray:
        """The original's Belle features of a block of events.

        ``particles`` ``(n, 100, 9)``; returns ``(n, 100, 8 + num_pdg)`` (kinematics, then the
        int8 one-hot of :func:`belle_pdg_index`), with the mother index appended as one more
        column when ``mothers`` ``(n, 100)`` is given, in NumPy's promoted dtype of the parts.
        """
        block = np.asarray(particles)
        parts = [block[..., :-1], belle_one_hot(belle_pdg_index(block[..., -1]), num_pdg)]
        if mothers is not None:
            parts.append(np.asarray(mothers)[..., None])
        return np.concatenate(parts, axis=-1)

    @staticmethod
    def _tf_data(
        X: Arrays, y: np.ndarray, num_pdg: int, batch_size: int, validation_split: float | None
    ) -> Any:
        import tensorflow as tf

        particles, mothers = X[0], X[1]  # memory maps: read one batch at a time
        labels_all = y

        def transform(inputs: Mapping[str, Any], labels: Any) -> Any:
            indices = tf.cast(inputs["mother_indices"], tf.int64)
            n_nodes = tf.shape(indices)[1]
            target = tf.where(indices < 0, tf.cast(n_nodes, tf.int64), indices)
            adjacency = tf.one_hot(tf.cast(target, tf.int32), n_nodes + 1)[:, :, :-1]
            adjacency = adjacency + tf.linalg.matrix_transpose(adjacency)
            has_mother = tf.cast(indices != -1, tf.float32)[:, :, None]
            adjacency = adjacency + tf.eye(n_nodes)[None] * has_mother
            encoded = tf.one_hot(inputs["pdg"], num_pdg)
            features = tf.concat([tf.cast(inputs["features"], tf.float32), encoded], axis=-1)
            return {
                "adj_matrix": tf.cast(adjacency != 0, tf.float32),
                "features": features,
            }, labels

        def batch(start: int, stop: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
            block = np.asarray(particles[start:stop])
            inputs = {
                "mother_indices": np.asarray(mothers[start:stop]),
                "pdg": belle_pdg_index(block[..., -1]),
                "features": block[..., :-1],
            }
            return inputs, np.asarray(labels_all[start:stop])

        example_inputs, example_labels = batch(0, min(1, len(labels_all)))
        signature = (
            {
                name: tf.TensorSpec((None, *value.shape[1:]), tf.as_dtype(value.dtype))
                for name, value in example_inputs.items()
            },
            tf.TensorSpec((None,), tf.as_dtype(example_labels.dtype)),
        )

        def dataset(first: int, last: int) -> Any:
            def batches() -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
                for start in range(first, last, batch_size):
                    yield batch(start, min(start + batch_size, last))

            return tf.data.Dataset.from_generator(batches, output_signature=signature).map(
                transform
            )

        n_events = len(labels_all)
        if validation_split is None:
            return dataset(0, n_events)
        split_at = int(n_events * (1 - validation_split))
        return dataset(0, split_at), dataset(split_at, n_events)

    @classmethod
    def load_graph_tf_data(cls, *args: Any, **kwargs: Any) -> Any:
        """``load_data(..., as_tf_data=True)``, as the original's ``Belle.load_graph_tf_data``."""
        kwargs["as_tf_data"] = True
        return cls.load_data(*args, **kwargs)


class LoadPreprocessedData:
    """The original's namespace of loaders (``lpd``): one function per dataset, each the
    ``load_data`` of its class."""

    @staticmethod
    def top_tagging_data(*args: Any, **kwargs: Any) -> tuple[Inputs, np.ndarray]:
        """:meth:`TopTagging.load_data`."""
        return TopTagging.load_data(*args, **kwargs)

    @staticmethod
    def spinodal_data(*args: Any, **kwargs: Any) -> tuple[Inputs, np.ndarray]:
        """:meth:`Spinodal.load_data`."""
        return Spinodal.load_data(*args, **kwargs)

    @staticmethod
    def eosl_data(*args: Any, **kwargs: Any) -> tuple[Inputs, np.ndarray]:
        """:meth:`EOSL.load_data`."""
        return EOSL.load_data(*args, **kwargs)

    @staticmethod
    def airshower_data(*args: Any, **kwargs: Any) -> tuple[Inputs, np.ndarray]:
        """:meth:`Airshower.load_data`."""
        return Airshower.load_data(*args, **kwargs)

    @staticmethod
    def belle_data(*args: Any, **kwargs: Any) -> Any:
        """:meth:`Belle.load_data`."""
        return Belle.load_data(*args, **kwargs)


lpd = LoadPreprocessedData

__all__ = [
    "BELLE_SORTED_PDG",
    "EOSL",
    "Airshower",
    "Belle",
    "Dataset",
    "LoadPreprocessedData",
    "Spinodal",
    "TopTagging",
    "belle_one_hot",
    "belle_pdg_index",
    "lpd",
    "using_sources",
]
