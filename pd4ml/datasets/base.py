"""The dataset base class, the ordered registry, and the ``load`` contract.

A dataset is a subclass of :class:`Dataset` that knows how to convert its official raw files
into arrays (:meth:`Dataset.convert`) and which splits exist. Everything else is shared:

* ``load(split)`` fetches the files feeding that split (verified, see :mod:`pd4ml.fetch`),
  converts them once into ``.npy`` arrays under the cache (atomically, under a lock), and
  returns read-only memory maps: nothing is read into RAM, and a warm load is instant.
* The result unpacks like the original pd4ml, ``X, y = TopTagging.load("train")`` with ``X`` a
  list of arrays, and also carries the sample weights and the provenance metadata.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import inspect
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
from numpy.lib import format as npy_format

from pd4ml._logging import get_logger
from pd4ml._version import __version__
from pd4ml.cache import Cache, atomic_directory, read_json, write_json_atomic
from pd4ml.config import Settings
from pd4ml.errors import ConversionError, UnknownNameError
from pd4ml.fetch import Fetcher, LocalFile
from pd4ml.manifest import DatasetManifest, DatasetVersion, get_manifest
from pd4ml.naming import closest_hint, normalise_name

log = get_logger("datasets")
_T = TypeVar("_T")


class classproperty(Generic[_T]):
    """A read-only property on the class (``TopTagging.description``)."""

    def __init__(self, getter: Callable[[Any], _T]) -> None:
        self.getter = getter
        self.__doc__ = getter.__doc__

    def __get__(self, instance: object, owner: type) -> _T:
        return self.getter(owner)


@dataclass(frozen=True)
class LoadMetadata:
    """Provenance of a loaded split.

    ``source`` says where the raw files came from: ``archive``, ``mirror``, ``shared``,
    ``import`` or ``synthetic`` (generated test data, never a real measurement).
    """

    dataset: str
    version: str
    split: str
    n_events: int
    doi: str | None
    source: str
    synthetic: bool
    files: Mapping[str, str] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LoadResult:
    """Arrays of one split: unpacks as ``(X, y)`` like the original pd4ml.

    ``X`` is a list of read-only memory-mapped arrays (one per input, shapes documented by each
    dataset), ``y`` the labels (or regression targets) of shape ``(n_events,)``, ``weights`` the
    per-event sample weights or ``None``, ``names`` the names of the arrays in ``X``.
    """

    X: list[np.ndarray]
    y: np.ndarray
    weights: np.ndarray | None
    names: tuple[str, ...]
    metadata: LoadMetadata
    extra: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Any]:
        yield self.X
        yield self.y

    def __len__(self) -> int:
        return 2

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, int):
            return (self.X, self.y)[key]
        if key in self.names:
            return self.X[self.names.index(key)]
        if key in self.extra:
            return self.extra[key]
        raise KeyError(f"no array {key!r}; arrays: {list(self.names) + list(self.extra)}")

    @property
    def n_events(self) -> int:
        """Number of events in the split (after ``max_events``)."""
        return int(self.y.shape[0])


@dataclass(frozen=True)
class PreparedData:
    """Preprocessed arrays of one split, by name (read-only memory maps).

    Typical names: ``features`` (inputs), ``mask`` (real entries of padded inputs),
    ``neighbours``/``neighbour_mask`` (sparse graph), ``labels``, ``weights``. Each dataset
    documents its names, shapes and units; ``metadata`` records the parameters, the statistics
    fitted on train, and the provenance of the underlying split.

    It also unpacks as the original pd4ml's ``load_data`` result, ``X, y = data``: without a
    graph ``X = {"features": [features]}``; with ``graph=True``
    ``X = {"features": features, "adj_matrix": adjacency}`` (features in node form, the dense
    ``(n_events, P, P)`` int8 adjacency, see :meth:`adjacency`).

    Framework views: :meth:`torch`, :meth:`pyg` and :meth:`tf` (see :mod:`pd4ml.adapters`).
    """

    arrays: Mapping[str, np.ndarray]
    metadata: Mapping[str, Any]
    directory: Path | None = None
    max_events: int | None = None

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.arrays[name]
        except KeyError:
            raise KeyError(f"no array {name!r}; arrays: {list(self.arrays)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self.arrays

    def __iter__(self) -> Iterator[Any]:
        from pd4ml.adapters.common import graph_kind, node_form

        graph = bool(self.metadata.get("params", {}).get("graph", False))
        if graph:
            features = node_form(self.features, graph_kind(self))
            yield {"features": features, "adj_matrix": self.adjacency()}
        else:
            yield {"features": [self.features]}
        yield self.labels

    def keys(self) -> list[str]:
        """The array names."""
        return list(self.arrays)

    @property
    def features(self) -> np.ndarray:
        """The model inputs."""
        return self["features"]

    @property
    def labels(self) -> np.ndarray:
        """Labels (classification) or targets (regression), ``(n_events,)``."""
        return self["labels"]

    @property
    def weights(self) -> np.ndarray | None:
        """Per-event sample weights, or ``None``."""
        return self.arrays.get("weights")

    @property
    def n_events(self) -> int:
        """Number of events (after ``max_events``)."""
        return int(self.labels.shape[0])

    def adjacency(self) -> np.ndarray:
        """The dense ``(n_events, P, P)`` int8 adjacency of the original pd4ml.

        Grids give a read-only broadcast view of one ``(P, P)`` matrix. Per-event graphs are
        expanded from the sparse arrays: for a few events (``max_events`` with at most
        256 MB of matrices) in memory; otherwise once, chunk by chunk and under a lock, into
        ``adj_matrix-v<N>.npy`` beside the prepared split (memory-mapped; P² bytes per event
        on disk, nothing in RAM), reused afterwards. See
        :func:`pd4ml.adapters.common.dense_adjacency` for the convention.
        """
        from pd4ml.adapters.common import ADJACENCY_VERSION, check_graph, dense_adjacency

        kind = check_graph(self)
        n_nodes = int(self.features.shape[1]) if self.features.ndim >= 2 else 0
        in_memory = self.max_events is not None and self.n_events * n_nodes**2 <= 256 << 20
        if kind == "grid" or self.directory is None or in_memory:
            return dense_adjacency(self, slice(None))
        path = self.directory / f"adj_matrix-v{ADJACENCY_VERSION}.npy"
        if not path.is_file():
            from pd4ml.fetch.locking import exclusive

            with exclusive(self.directory / ".adj_matrix.lock", "writing the dense adjacency"):
                if not path.is_file():
                    _write_dense_adjacency(self.directory, path)
        dense: np.ndarray = np.load(path, mmap_mode="r", allow_pickle=False)
        return dense[: self.max_events] if self.max_events is not None else dense

    def torch(self, names: Sequence[str] | None = None, weights: str | None = None) -> Any:
        """A torch ``Dataset`` of this split (:class:`pd4ml.adapters.torch.TorchEvents`)."""
        from pd4ml.adapters.torch import TorchEvents

        return TorchEvents(self, names=names, weights=weights)

    def pyg(self, weights: str | None = None) -> Any:
        """PyTorch Geometric ``Data`` per event (:class:`pd4ml.adapters.pyg.GraphEvents`)."""
        from pd4ml.adapters.pyg import GraphEvents

        return GraphEvents(self, weights=weights)

    def tf(self, names: Sequence[str] | None = None, weights: str | None = None) -> Any:
        """A TensorFlow view of this split (:class:`pd4ml.adapters.tf.TfEvents`)."""
        from pd4ml.adapters.tf import TfEvents

        return TfEvents(self, names=names, weights=weights)


def _write_dense_adjacency(directory: Path, path: Path, chunk: int = 2048) -> None:
    from pd4ml.adapters.common import dense_adjacency

    full = open_prepared(directory, None, quiet=True)
    n_events = full.n_events
    first = dense_adjacency(full, slice(0, min(1, n_events)))
    shape = (n_events, *first.shape[1:])
    log.info("writing the dense adjacency %s (%.2f GB) to %s", shape, np.prod(shape) / 1e9, path)
    handle, temporary = tempfile.mkstemp(prefix=".adj_matrix-", suffix=".npy", dir=directory)
    os.close(handle)
    try:
        output = npy_format.open_memmap(temporary, mode="w+", dtype=np.int8, shape=shape)
        for start in range(0, n_events, chunk):
            stop = min(start + chunk, n_events)
            output[start:stop] = dense_adjacency(full, slice(start, stop))
        output.flush()
        del output
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def open_prepared(directory: Path, max_events: int | None, quiet: bool = False) -> PreparedData:
    """Open a prepared split directory as :class:`PreparedData` (memory maps)."""
    meta = read_json(directory / "meta.json")
    if not isinstance(meta, dict):
        raise ConversionError(f"{directory}/meta.json is missing or unreadable")
    from pd4ml.adapters.common import SHARED_ARRAYS

    arrays: dict[str, np.ndarray] = {}
    for name in meta["arrays"]:
        array: np.ndarray = np.load(directory / f"{name}.npy", mmap_mode="r", allow_pickle=False)
        per_event = array.ndim and name not in SHARED_ARRAYS
        arrays[name] = array[:max_events] if max_events is not None and per_event else array
    if meta.get("synthetic") and not quiet:
        log.warning(
            "%s %s is SYNTHETIC test data, not a real dataset", meta["dataset"], meta["split"]
        )
    return PreparedData(arrays, meta, directory, max_events)


class ArrayWriter:
    """Collects the arrays a converter produces, split by split, as ``.npy`` files.

    Use :meth:`empty` to fill big arrays chunk by chunk (a memory-mapped ``.npy``), or
    :meth:`save` for small ones; then :meth:`describe` each split.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.splits: dict[str, dict[str, Any]] = {}

    def _path(self, split: str, name: str) -> Path:
        folder = self.directory / split
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{name}.npy"

    def empty(
        self, split: str, name: str, shape: Sequence[int], dtype: np.dtype[Any] | type | str
    ) -> np.memmap[Any, Any]:
        """A writable memory-mapped array that becomes ``<split>/<name>.npy``."""
        return npy_format.open_memmap(
            self._path(split, name), mode="w+", dtype=np.dtype(dtype), shape=tuple(shape)
        )

    def save(self, split: str, name: str, array: np.ndarray) -> None:
        """Write a whole array as ``<split>/<name>.npy``."""
        np.save(self._path(split, name), np.ascontiguousarray(array), allow_pickle=False)

    def path(self, split: str, name: str) -> Path:
        """Where array ``name`` of ``split`` is written (for converters that stream into it)."""
        return self._path(split, name)

    def describe(
        self,
        split: str,
        *,
        features: Sequence[str],
        labels: str,
        weights: str | None = None,
        extra: Sequence[str] = (),
        info: Mapping[str, Any] | None = None,
    ) -> None:
        """Declare which arrays of ``split`` are the inputs X (in order), labels and weights."""
        for name in (*features, labels, *([weights] if weights else []), *extra):
            if not (self.directory / split / f"{name}.npy").is_file():
                raise ConversionError(
                    f"converter declared array {split}/{name} but did not write it"
                )
        self.splits[split] = {
            "features": list(features),
            "labels": labels,
            "weights": weights,
            "extra": list(extra),
            "info": dict(info or {}),
        }

    def describe_arrays(self, split: str, names: Sequence[str], info: Mapping[str, Any]) -> None:
        """Declare the arrays of a prepared ``split`` (see :meth:`Dataset.load_data`)."""
        for name in names:
            if not (self.directory / split / f"{name}.npy").is_file():
                raise ConversionError(f"preparation declared {split}/{name} but did not write it")
        self.splits[split] = {"arrays": list(names), "info": dict(info)}


class Dataset:
    """Base class of every dataset. Subclasses set :attr:`name` and implement :meth:`convert`.

    Subclasses register themselves (in definition order) unless declared with
    ``class Mine(Dataset, register=False)``.
    """

    name: ClassVar[str]
    """The manifest name, e.g. ``"top_tagging"``."""
    splits: ClassVar[tuple[str, ...]] = ("train", "val", "test")
    """The valid split names."""
    split_aliases: ClassVar[Mapping[str, str]] = {"validation": "val", "valid": "val"}
    """Other accepted names."""
    converter_version: ClassVar[int] = 1
    """Bump when :meth:`convert` changes its output; cached arrays are rebuilt."""
    manifest_override: ClassVar[DatasetManifest | None] = None
    """A manifest given in code (tests, demos) instead of the bundled TOML file."""
    prepare_defaults: ClassVar[Mapping[str, Any]] = {}
    """The parameters of :meth:`load_data` and their defaults."""
    prepare_version: ClassVar[int] = 1
    """Bump when :meth:`prepare` changes meaning; the source code is hashed into the key too."""

    def __init_subclass__(cls, register: bool = True, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if register:
            _register(cls)

    # -- facts from the manifest --------------------------------------------------------------
    @classmethod
    def manifest(cls) -> DatasetManifest:
        """The dataset's manifest."""
        return cls.manifest_override or get_manifest(cls.name)

    @classproperty
    def description(cls) -> str:
        """One paragraph on the physics, the task and the labels."""
        return cls.manifest().description

    @classmethod
    def info(cls) -> str:
        """A human-readable card: description, versions, files, checksums, DOI, licence."""
        from pd4ml.cli import render_info

        return render_info(cls.manifest())

    @classmethod
    def cite(cls) -> str:
        """BibTeX for the dataset (its DOI record and papers) and for pd4ml."""
        from pd4ml.citation import package_bibtex

        return cls.manifest().bibtex() + "\n" + package_bibtex()

    # -- splits ------------------------------------------------------------------------------
    @classmethod
    def resolve_split(cls, split: str) -> str:
        """The canonical split name for ``split`` (aliases and case accepted)."""
        if split in cls.splits:
            return split
        by_normal = {normalise_name(name): name for name in cls.splits}
        by_normal.update({normalise_name(alias): name for alias, name in cls.split_aliases.items()})
        found = by_normal.get(normalise_name(str(split)))
        if found is not None:
            return found
        known = list(cls.splits) + list(cls.split_aliases)
        raise UnknownNameError(
            f"{cls.manifest().display_name} has no split {split!r}"
            f"{closest_hint(str(split), known)}; "
            f"splits: {', '.join(cls.splits)}"
        )

    @classmethod
    def files_for_split(cls, version: DatasetVersion, split: str) -> list[str]:
        """Keys of the raw files that feed ``split`` (a file without ``feeds`` feeds all)."""
        return [entry.key for entry in version.files if not entry.feeds or split in entry.feeds]

    # -- conversion --------------------------------------------------------------------------
    @classmethod
    def convert(
        cls, raw_files: Mapping[str, Path], version: DatasetVersion, writer: ArrayWriter, split: str
    ) -> None:
        """Convert raw files into arrays; must write and :meth:`ArrayWriter.describe` ``split``.

        ``raw_files`` maps file keys to verified local paths (the files feeding ``split``). A
        converter may write other splits from the same files too (one pass over a shared file).
        """
        raise NotImplementedError(f"{cls.__name__} does not define convert()")

    # -- loading -----------------------------------------------------------------------------
    @classmethod
    def download(
        cls,
        path: str | os.PathLike[str] | None = None,
        force_download: bool = False,
        *,
        version: str | None = None,
        settings: Settings | None = None,
    ) -> dict[str, LocalFile]:
        """Fetch and verify every raw file of a version (without converting)."""
        manifest = cls.manifest()
        fetcher = Fetcher(settings or Settings.from_env(path))
        return fetcher.fetch(manifest, manifest.version(version), force=force_download)

    @classmethod
    def load(
        cls,
        split: str = "train",
        path: str | os.PathLike[str] | None = None,
        force_download: bool = False,
        *,
        version: str | None = None,
        max_events: int | None = None,
        settings: Settings | None = None,
    ) -> LoadResult:
        """Load one split as read-only memory maps.

        Args:
            split: a split name (see :attr:`splits`); a typo gets the closest valid name.
            path: cache directory (the original pd4ml's argument; default ``PD4ML_DATA_DIR`` or
                the platform's user cache dir).
            force_download: download and convert again even if cached.
            version: a version name from the manifest (default: the manifest's default).
            max_events: return only the first ``max_events`` events (no full read).
            settings: explicit :class:`~pd4ml.config.Settings` (overrides ``path``).

        Returns:
            A :class:`LoadResult` that unpacks as ``(X, y)``.
        """
        split = cls.resolve_split(split)
        settings = settings or Settings.from_env(path)
        manifest = cls.manifest()
        dataset_version = manifest.version(version)
        split_dir = cls._split_directory(settings, dataset_version, split)
        if split_dir is None or force_download:
            split_dir = cls._build_split(settings, dataset_version, split, force_download)
        return cls._open_split(split_dir, dataset_version, split, max_events)

    # -- preprocessing -----------------------------------------------------------------------
    @classmethod
    def fit_statistics(cls, train: LoadResult, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Statistics fitted on the train split once (scalers); stored and reused for all splits."""
        return {}

    @classmethod
    def prepare(
        cls,
        raw: LoadResult,
        statistics: Mapping[str, np.ndarray],
        params: Mapping[str, Any],
        writer: ArrayWriter,
        split: str,
    ) -> None:
        """Write the preprocessed arrays of ``split`` and :meth:`ArrayWriter.describe_arrays`."""
        raise NotImplementedError(f"{cls.__name__} does not define prepare()")

    @classmethod
    def prepared_key(cls, version: DatasetVersion, params: Mapping[str, Any]) -> str:
        """Cache key: dataset version, parameters and the preprocessing code (its source)."""
        sources = []
        for module in (sys.modules[cls.__module__], importlib.import_module("pd4ml.graphs")):
            with contextlib.suppress(OSError, TypeError):
                sources.append(
                    hashlib.sha256(Path(inspect.getfile(module)).read_bytes()).hexdigest()
                )
        payload = {
            "dataset": cls.manifest().name,
            "version": version.name,
            "converter_version": cls.converter_version,
            "prepare_version": cls.prepare_version,
            "params": {key: params[key] for key in sorted(params)},
            "code": sources,
        }
        text = json.dumps(payload, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    @classmethod
    def resolve_params(cls, graph: bool, params: Mapping[str, Any]) -> dict[str, Any]:
        """The defaults updated with ``params``; unknown names are an error."""
        unknown = sorted(set(params) - set(cls.prepare_defaults))
        if unknown:
            known = ", ".join(sorted(cls.prepare_defaults)) or "none"
            raise TypeError(
                f"{cls.__name__}.load_data got unknown parameter(s) {unknown}; known: {known}"
            )
        return {**cls.prepare_defaults, **params, "graph": bool(graph)}

    @classmethod
    def load_data(
        cls,
        split: str = "train",
        graph: bool | str | os.PathLike[str] = False,
        *,
        path: str | os.PathLike[str] | None = None,
        force_download: bool = False,
        version: str | None = None,
        max_events: int | None = None,
        settings: Settings | None = None,
        **params: Any,
    ) -> PreparedData:
        """The literature's preprocessing of one split, cached on disk and memory-mapped.

        Statistics (scalers) are fitted on the train split once, stored, and reused for every
        split. The cache key hashes the dataset version, the parameters and the preprocessing
        code, so a changed parameter never returns a stale result. ``params`` are
        dataset-specific (see :attr:`prepare_defaults`). As in the original pd4ml, a path
        given as the second positional argument is the ``path``.

        The result unpacks as the original's ``X, y`` (see :class:`PreparedData`).
        """
        from pd4ml.fetch.locking import exclusive

        if isinstance(graph, (str, os.PathLike)):  # the original's load_data(split, path)
            path, graph = graph, False
        if not isinstance(graph, (bool, np.bool_)):
            raise TypeError(f"graph must be True or False, not {graph!r}")
        split = cls.resolve_split(split)
        settings = settings or Settings.from_env(path)
        dataset_version = cls.manifest().version(version)
        resolved = cls.resolve_params(graph, params)
        key = cls.prepared_key(dataset_version, resolved)
        cache = Cache(settings)
        root = cache.version_dir(cls.manifest().name, dataset_version.name) / "prepared" / key
        directory = root / split
        if force_download or not (directory / "meta.json").is_file():
            with exclusive(root.parent / ".pd4ml" / f"{key}.lock", f"preparing {cls.__name__}"):
                if force_download or not (directory / "meta.json").is_file():
                    raw = cls.load(
                        split, settings=settings, version=version, force_download=force_download
                    )
                    statistics = cls._statistics(root, dataset_version, resolved, settings)
                    cls._prepare_split(root, split, raw, statistics, resolved)
        return cls._open_prepared(directory, max_events)

    @classmethod
    def torch(
        cls,
        split: str = "train",
        graph: bool = False,
        *,
        names: Sequence[str] | None = None,
        weights: str | None = None,
        **load_data_args: Any,
    ) -> Any:
        """``load_data(split, graph, ...)`` as a ``torch.utils.data.Dataset``.

        Returns a :class:`pd4ml.adapters.torch.TorchEvents`: ``len()`` events, indexing gives
        dicts of tensors (an int: one event; a slice or row array: one batch read in one go),
        and ``.loader(batch_size, shuffle=...)`` gives a ``DataLoader`` of whole-batch reads.
        ``load_data_args`` are those of :meth:`load_data` (``path``, ``max_events``, the
        dataset's preprocessing parameters …).
        """
        return cls.load_data(split, graph, **load_data_args).torch(names=names, weights=weights)

    @classmethod
    def pyg(cls, split: str = "train", *, weights: str | None = None, **load_data_args: Any) -> Any:
        """``load_data(split, graph=True, ...)`` as PyTorch Geometric ``Data`` per event.

        Returns a :class:`pd4ml.adapters.pyg.GraphEvents` (a ``torch.utils.data.Dataset`` that
        PyG's ``DataLoader`` accepts; ``.loader(batch_size, shuffle=...)`` reads whole batches).
        """
        return cls.load_data(split, True, **load_data_args).pyg(weights=weights)

    @classmethod
    def tf(
        cls,
        split: str = "train",
        graph: bool = False,
        *,
        names: Sequence[str] | None = None,
        weights: str | None = None,
        **load_data_args: Any,
    ) -> Any:
        """``load_data(split, graph, ...)`` as a TensorFlow view.

        Returns a :class:`pd4ml.adapters.tf.TfEvents`; ``.dataset(batch_size, shuffle=...)``
        gives a streaming ``tf.data.Dataset`` of ``(inputs, labels, weights)``, with
        ``original=True`` the original pd4ml's ``{"features", "adj_matrix"}`` inputs.
        """
        return cls.load_data(split, graph, **load_data_args).tf(names=names, weights=weights)

    @classmethod
    def _statistics(
        cls, root: Path, version: DatasetVersion, params: Mapping[str, Any], settings: Settings
    ) -> dict[str, np.ndarray]:
        folder = root / "statistics"
        meta = read_json(folder / "meta.json")
        if isinstance(meta, dict):
            return {
                name: np.load(folder / f"{name}.npy", allow_pickle=False) for name in meta["arrays"]
            }
        train = cls.load("train", settings=settings, version=version.name)
        statistics = cls.fit_statistics(train, params)
        with atomic_directory(folder) as staging:
            for name, value in statistics.items():
                np.save(staging / f"{name}.npy", np.asarray(value), allow_pickle=False)
            write_json_atomic(
                staging / "meta.json",
                {"arrays": sorted(statistics), "fitted_on": "train", "n_events": train.n_events},
            )
        return statistics

    @classmethod
    def _prepare_split(
        cls,
        root: Path,
        split: str,
        raw: LoadResult,
        statistics: Mapping[str, np.ndarray],
        params: Mapping[str, Any],
    ) -> None:
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".prepare-", dir=root))
        try:
            writer = ArrayWriter(staging)
            started = time.monotonic()
            cls.prepare(raw, statistics, params, writer, split)
            if split not in writer.splits:
                raise ConversionError(f"{cls.__name__}.prepare did not produce split {split!r}")
            description = writer.splits[split]
            meta = {
                **description,
                "dataset": raw.metadata.dataset,
                "version": raw.metadata.version,
                "split": split,
                "params": dict(params),
                "statistics": {
                    name: np.asarray(v).tolist()
                    if np.asarray(v).size <= 64
                    else f"{np.asarray(v).shape} array"
                    for name, v in statistics.items()
                },
                "source": raw.metadata.source,
                "synthetic": raw.metadata.synthetic,
                "prepared_at": time.time(),
                "seconds": time.monotonic() - started,
            }
            write_json_atomic(staging / split / "meta.json", meta)
            _replace_directory(staging / split, root / split)
            write_json_atomic(root / "params.json", dict(params))
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    @classmethod
    def _open_prepared(cls, directory: Path, max_events: int | None) -> PreparedData:
        return open_prepared(directory, max_events)

    @classmethod
    def _split_directory(
        cls, settings: Settings, version: DatasetVersion, split: str
    ) -> Path | None:
        """A complete, current converted split in a shared layer or the user cache."""
        cache = Cache(settings)
        for root in (*settings.shared_dirs, settings.data_dir):
            directory = cache.arrays_dir(cls.manifest().name, version.name, root) / split
            meta = read_json(directory / "meta.json")
            if isinstance(meta, dict) and meta.get("converter_version") == cls.converter_version:
                return directory
        return None

    @classmethod
    def _build_split(
        cls, settings: Settings, version: DatasetVersion, split: str, force: bool
    ) -> Path:
        from pd4ml.fetch.locking import exclusive

        manifest = cls.manifest()
        fetcher = Fetcher(settings)
        keys = cls.files_for_split(version, split)
        local = fetcher.fetch(manifest, version, keys, force=force)
        cache = Cache(settings)
        arrays = cache.arrays_dir(manifest.name, version.name)
        lock = cache.version_dir(manifest.name, version.name) / ".pd4ml" / "convert.lock"
        with exclusive(lock, f"conversion of {manifest.name} {version.name}"):
            if not force:
                existing = cls._split_directory(settings, version, split)
                if existing is not None:
                    return existing
            arrays.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".convert-", dir=arrays))
            try:
                writer = ArrayWriter(staging)
                started = time.monotonic()
                log.info("converting %s %s (%s)", manifest.name, version.name, split)
                cls.convert({key: item.path for key, item in local.items()}, version, writer, split)
                if split not in writer.splits:
                    raise ConversionError(f"{cls.__name__}.convert did not produce split {split!r}")
                sources = sorted({item.origin for item in local.values()})
                for written, description in writer.splits.items():
                    meta = {
                        **description,
                        "dataset": manifest.name,
                        "version": version.name,
                        "split": written,
                        "converter_version": cls.converter_version,
                        "pd4ml_version": __version__,
                        "synthetic": version.synthetic,
                        "source": "synthetic" if version.synthetic else "+".join(sources),
                        "files": {key: item.checksum for key, item in local.items()},
                        "converted_at": time.time(),
                    }
                    write_json_atomic(staging / written / "meta.json", meta)
                    _replace_directory(staging / written, arrays / written)
                log.info("converted in %.1f s", time.monotonic() - started)
            except ConversionError:
                raise
            except (OSError, ValueError, KeyError, IndexError) as error:
                names = ", ".join(str(item.path) for item in local.values())
                raise ConversionError(
                    f"converting {names} failed: {type(error).__name__}: {error}"
                ) from error
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return arrays / split

    @classmethod
    def _open_split(
        cls, directory: Path, version: DatasetVersion, split: str, max_events: int | None
    ) -> LoadResult:
        meta = read_json(directory / "meta.json")
        if not isinstance(meta, dict):
            raise ConversionError(f"{directory}/meta.json is missing or unreadable")

        def open_array(name: str) -> np.ndarray:
            array: np.ndarray = np.load(
                directory / f"{name}.npy", mmap_mode="r", allow_pickle=False
            )
            return array[:max_events] if max_events is not None and array.ndim else array

        features = [open_array(name) for name in meta["features"]]
        labels = open_array(meta["labels"])
        weights = open_array(meta["weights"]) if meta.get("weights") else None
        extra = {name: open_array(name) for name in meta.get("extra", [])}
        manifest = cls.manifest()
        metadata = LoadMetadata(
            dataset=manifest.name,
            version=version.name,
            split=split,
            n_events=int(labels.shape[0]),
            doi=version.source.doi,
            source=meta.get("source", "unknown"),
            synthetic=bool(meta.get("synthetic", False)),
            files=dict(meta.get("files", {})),
            extra=dict(meta.get("info", {})),
        )
        if metadata.synthetic:
            log.warning("%s %s is SYNTHETIC test data, not a real dataset", manifest.name, split)
        return LoadResult(features, labels, weights, tuple(meta["features"]), metadata, extra)


def _replace_directory(source: Path, final: Path) -> None:
    """Move ``source`` to ``final`` atomically, replacing an older ``final``."""
    if final.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
        os.replace(final, trash / final.name)
        os.replace(source, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(source, final)


# ------------------------------------------------------------------------------------------------
# Registry

_REGISTRY: dict[str, type[Dataset]] = {}


def _register(cls: type[Dataset]) -> None:
    if not hasattr(cls, "name"):
        raise TypeError(f"{cls.__name__} must set the class attribute 'name'")
    _REGISTRY[cls.name] = cls


def unregister(cls: type[Dataset]) -> None:
    """Remove a dataset class from the registry (tests, plugins)."""
    with contextlib.suppress(KeyError):
        del _REGISTRY[cls.name]


def datasets() -> list[type[Dataset]]:
    """All registered dataset classes, in the manifests' order (then registration order)."""
    registered = list(_REGISTRY.values())
    return sorted(registered, key=lambda cls: (cls.manifest().order, registered.index(cls)))


def get(name: str) -> type[Dataset]:
    """The dataset class for a name or alias (case, dashes and underscores ignored)."""
    labels: dict[str, type[Dataset]] = {}
    for cls in _REGISTRY.values():
        manifest = cls.manifest()
        for label in (cls.name, cls.__name__, manifest.display_name, *manifest.aliases):
            labels[label] = cls
    wanted = normalise_name(name)
    for label, cls in labels.items():
        if normalise_name(label) == wanted:
            return cls
    names = [cls.name for cls in _REGISTRY.values()]
    raise UnknownNameError(
        f"unknown dataset {name!r}{closest_hint(name, list(labels))}; "
        f"datasets: {', '.join(names) or 'none registered'}"
    )


def load(name: str, split: str = "train", **kwargs: Any) -> LoadResult:
    """``pd4ml.load("top_tagging", "train")`` — :meth:`Dataset.load` by dataset name."""
    return get(name).load(split, **kwargs)


__all__ = [
    "ArrayWriter",
    "Dataset",
    "LoadMetadata",
    "LoadResult",
    "PreparedData",
    "datasets",
    "get",
    "load",
    "unregister",
]
