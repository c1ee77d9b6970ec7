"""The dataset base class and the ``load`` / ``load_data`` contract.

A dataset is a subclass of :class:`Dataset` that knows how to convert its official raw files
into arrays (:meth:`Dataset.convert`), which splits exist, and how to preprocess them
(:meth:`Dataset.prepare`). The machinery they share lives beside it, one job per module:

* :mod:`pd4ml.datasets.results` — what a load returns (:class:`LoadResult`,
  :class:`PreparedData`, :class:`LoadMetadata`);
* :mod:`pd4ml.datasets.storage` — the array store (one writer, one open path, per-array
  records: shape, size, SHA-256, per event or shared);
* :mod:`pd4ml.datasets.pipeline` — convert and prepare, once, under locks, with the cache key;
* :mod:`pd4ml.datasets.registry` — the explicit, ordered registry.

``load(split)`` fetches the files feeding that split (verified, see :mod:`pd4ml.fetch`),
converts them once into ``.npy`` arrays under the cache, and returns read-only memory maps:
nothing is read into RAM, and a warm load is instant. The result unpacks like the original
pd4ml's, ``X, y = TopTagging.load("train")`` with ``X`` a list of arrays.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np

from pd4ml.cache import Cache, prepare_lock
from pd4ml.config import Settings
from pd4ml.datasets import pipeline
from pd4ml.datasets.augment import Augmentation
from pd4ml.datasets.pipeline import open_prepared
from pd4ml.datasets.registry import datasets, get, load, register, unregister
from pd4ml.datasets.registry import register as register_dataset
from pd4ml.datasets.results import LoadMetadata, LoadResult, PreparedData
from pd4ml.datasets.storage import ArrayWriter
from pd4ml.datasets.views import make_view
from pd4ml.errors import DamagedCacheError, UnknownNameError
from pd4ml.fetch import Fetcher, LocalFile
from pd4ml.fetch.locking import exclusive
from pd4ml.manifest import DatasetManifest, DatasetVersion, get_manifest
from pd4ml.naming import closest_hint, normalise_name

_T = TypeVar("_T")


class classproperty(Generic[_T]):
    """A read-only property on the class (``TopTagging.description``)."""

    def __init__(self, getter: Callable[[Any], _T]) -> None:
        self.getter = getter
        self.__doc__ = getter.__doc__

    def __get__(self, instance: object, owner: type) -> _T:
        return self.getter(owner)


def check_whole_number(name: str, value: object, minimum: int, kind: str = "a whole number") -> int:
    """``value`` as an ``int`` ≥ ``minimum``; a bool, float or string is a ``TypeError``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be {kind}, not {value!r} ({type(value).__name__})")
    if int(value) < minimum:
        raise ValueError(f"{name} must be {minimum} or more, not {value}")
    return int(value)


def check_max_events(max_events: object) -> int | None:
    """``max_events`` validated: ``None`` or a whole number ≥ 0 (not a bool)."""
    if max_events is None:
        return None
    return check_whole_number("max_events", max_events, 0, "None or a whole number of events")


def check_flag(name: str, value: object) -> bool:
    """A ``True``/``False`` argument validated."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, not {value!r}")
    return bool(value)


def check_optional_string(name: str, value: object) -> str | None:
    """A name argument that may be omitted (``version``)."""
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a string (or None), not {value!r}")
    return value


def check_path(value: object) -> str | os.PathLike[str] | None:
    """A directory argument (``path``)."""
    if value is not None and not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"path must be a directory (str or os.PathLike) or None, not {value!r}")
    return value


class Dataset:
    """Base class of every dataset. Subclasses set :attr:`name` and implement :meth:`convert`.

    A subclass is registered (listed by :func:`pd4ml.datasets`, found by :func:`pd4ml.get`)
    only when asked: ``class Mine(Dataset, register=True)`` with its own ``name``, or
    :func:`pd4ml.datasets.registry.register`. Subclassing a built-in dataset never replaces it.
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
    """The parameters of :meth:`load_data` and their defaults. A value given must have the
    default's type (``True``/``False`` for flags, a whole number ≥ 1 for counts, a string)."""
    prepare_choices: ClassVar[Mapping[str, tuple[Any, ...]]] = {}
    """The allowed values of parameters that take one of a few (``form``, ``representation``)."""
    prepare_version: ClassVar[int] = 1
    """The preprocessing version: bump by hand whenever :meth:`prepare` (or code it calls,
    such as the kernels or scalers) changes its output; it is part of the cache key. The
    fingerprint test fails when the output changes without a bump."""
    convert_fingerprints: ClassVar[Mapping[int, str]] = {}
    """Fingerprint of :meth:`convert`'s output on a fixed synthetic input, by
    ``converter_version`` (the history is kept; the test-suite checks the current one)."""
    prepare_fingerprints: ClassVar[Mapping[int, str]] = {}
    """Fingerprint of :meth:`prepare`'s output on a fixed synthetic input (several parameter
    sets, with and without a graph), by ``prepare_version``."""

    node_positions: ClassVar[tuple[str, int, int] | None] = None
    """Where the nodes' positions are in a prepared split with a graph: ``(array, first column,
    stop column)`` of the array's last axis (recorded in the split's metadata for the graph
    adapters), or ``None``."""

    symmetries: ClassVar[str] = ""
    """One or two sentences: which transforms are exact symmetries of the prepared features
    and why, or why there are none (empty: not declared). :meth:`augmentation` implements
    them."""

    @classmethod
    def augmentation(cls, prepared: PreparedData) -> Augmentation | None:
        """The physical augmentation of ``prepared`` (:mod:`pd4ml.datasets.augment`): random
        transforms for training and deterministic variants for test-time augmentation, or
        ``None`` where the representation has no exact symmetry (see :attr:`symmetries`)."""
        return None

    def __init_subclass__(cls, register: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if register:
            register_dataset(cls)

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
    def print_description(cls) -> None:
        """Print the dataset card (the original pd4ml's ``print_description()``)."""
        print(cls.info())

    @classproperty
    def datasets_register(cls) -> tuple[type[Dataset], ...]:
        """The registered datasets in order (the original pd4ml's ``Dataset.datasets_register``;
        iterate it and print ``.name``)."""
        return tuple(datasets())

    @classmethod
    def info(cls) -> str:
        """A human-readable card: description, versions, files, checksums, DOI, licence."""
        return cls.manifest().card()

    @classmethod
    def cite(cls) -> str:
        """BibTeX for the dataset (its DOI record and papers) and for pd4ml."""
        from pd4ml.citation import package_bibtex

        return cls.manifest().bibtex() + "\n" + package_bibtex()

    # -- splits ------------------------------------------------------------------------------
    @classmethod
    def resolve_split(cls, split: str) -> str:
        """The canonical split name for ``split`` (aliases and case accepted)."""
        if not isinstance(split, str):
            raise TypeError(
                f"split must be a string such as {cls.splits[0]!r}, not {split!r}; "
                f"splits: {', '.join(cls.splits)}"
            )
        if split in cls.splits:
            return split
        by_normal = {normalise_name(name): name for name in cls.splits}
        by_normal.update({normalise_name(alias): name for alias, name in cls.split_aliases.items()})
        found = by_normal.get(normalise_name(split))
        if found is not None:
            return found
        known = list(cls.splits) + list(cls.split_aliases)
        raise UnknownNameError(
            f"{cls.manifest().display_name} has no split {split!r}"
            f"{closest_hint(split, known)}; "
            f"splits: {', '.join(cls.splits)}"
        )

    @classmethod
    def resolve_version(cls, version: object) -> DatasetVersion:
        """The manifest version named ``version`` (``None``: the default)."""
        return cls.manifest().version(check_optional_string("version", version))

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

    @classmethod
    def conversion_parameters(cls) -> Mapping[str, Any]:
        """Settings of a class that change what :meth:`convert` writes (CALICE branch names and
        layer geometry): part of the converted cache's identity, so two variants never share
        arrays. ``{}`` for most datasets."""
        return {}

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
        check_flag("force_download", force_download)
        dataset_version = cls.resolve_version(version)
        fetcher = Fetcher(settings or Settings.from_env(check_path(path)))
        return fetcher.fetch(cls.manifest(), dataset_version, force=force_download)

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
            max_events: return only the first ``max_events`` events (no full read); arrays
                that are the same for every event are returned whole.
            settings: explicit :class:`~pd4ml.config.Settings` (overrides ``path``).

        Returns:
            A :class:`LoadResult` that unpacks as ``(X, y)``.

        Raises:
            TypeError / ValueError: an argument of the wrong type or value (named).
        """
        split = cls.resolve_split(split)
        max_events = check_max_events(max_events)
        force_download = check_flag("force_download", force_download)
        dataset_version = cls.resolve_version(version)
        settings = settings or Settings.from_env(check_path(path))
        split_dir = (
            None if force_download else pipeline.find_split(cls, settings, dataset_version, split)
        )
        if split_dir is None:
            split_dir = pipeline.build_split(cls, settings, dataset_version, split, force_download)
        try:
            return pipeline.open_split(cls, split_dir, dataset_version, split, max_events)
        except DamagedCacheError as error:  # e.g. a damaged header: convert again, once
            pipeline.log.warning("%s", error)
            split_dir = pipeline.build_split(
                cls, settings, dataset_version, split, force=True, refetch=False
            )
            return pipeline.open_split(cls, split_dir, dataset_version, split, max_events)

    # -- preprocessing -----------------------------------------------------------------------
    @classmethod
    def fit_statistics(cls, train: LoadResult, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Statistics fitted on the train split once (scalers); stored and reused for all splits.

        Datasets that fit none keep this default, and preparing their test split never loads
        train.
        """
        return {}

    fit_statistics.__func__.fits_nothing = True  # type: ignore[attr-defined]

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
        """Cache key: dataset, version, ``converter_version``, ``prepare_version``, parameters."""
        return pipeline.prepared_key(cls, version, params)

    @classmethod
    def resolve_params(cls, graph: bool, params: Mapping[str, Any]) -> dict[str, Any]:
        """The defaults updated with ``params``; unknown names are an error."""
        unknown = sorted(set(params) - set(cls.prepare_defaults))
        if unknown:
            known = ", ".join(sorted(cls.prepare_defaults)) or "none"
            raise TypeError(
                f"{cls.__name__}.load_data got unknown parameter(s) {unknown}; known: {known}"
            )
        checked = {name: cls._check_parameter(name, value) for name, value in params.items()}
        return {**cls.prepare_defaults, **checked, "graph": check_flag("graph", graph)}

    @classmethod
    def _check_parameter(cls, name: str, value: Any) -> Any:
        """``value`` of the preprocessing parameter ``name``, checked against its default."""
        default = cls.prepare_defaults[name]
        where = f"{cls.__name__}.load_data({name}=...)"
        if isinstance(default, bool):
            return check_flag(where, value)
        if isinstance(default, int):
            return check_whole_number(where, value, 1)
        if isinstance(default, str) and not isinstance(value, str):
            raise TypeError(f"{where} must be a string, not {value!r}")
        choices = cls.prepare_choices.get(name)
        if choices is not None and value not in choices:
            raise ValueError(f"{where} must be one of {list(choices)}, not {value!r}")
        return value

    @classmethod
    def load_data(
        cls,
        split: str = "train",
        *,
        graph: bool = False,
        path: str | os.PathLike[str] | None = None,
        force_download: bool = False,
        version: str | None = None,
        max_events: int | None = None,
        settings: Settings | None = None,
        **params: Any,
    ) -> PreparedData:
        """The literature's preprocessing of one split, cached on disk and memory-mapped.

        Statistics (scalers) are fitted on the train split once, stored, and reused for every
        split; datasets that fit none never touch train to prepare another split. The cache key
        is the dataset version, the explicit preprocessing version and the parameters.
        ``params`` are dataset-specific (see :attr:`prepare_defaults`). Every argument but
        ``split`` is keyword-only.

        Returns a :class:`PreparedData`, a mapping of array name → memory map. For the
        original pd4ml's ``X, y = load_data(...)`` use :mod:`pd4ml.pd4ml` (the original's
        classes and signatures) or :func:`pd4ml.adapters.original.original_inputs`.
        """
        split = cls.resolve_split(split)
        max_events = check_max_events(max_events)
        force_download = check_flag("force_download", force_download)
        dataset_version = cls.resolve_version(version)
        settings = settings or Settings.from_env(check_path(path))
        resolved = cls.resolve_params(graph, params)
        key = cls.prepared_key(dataset_version, resolved)
        version_dir = Cache(settings).version_dir(cls.manifest().name, dataset_version.name)
        root = version_dir / "prepared" / key
        directory = root / split
        lock = prepare_lock(version_dir, key)

        def prepare(force: bool, *, unless_current: bool) -> None:
            with exclusive(lock, f"preparing {cls.__name__}"):
                if unless_current and pipeline.current_prepared(directory):
                    return  # another process prepared it meanwhile
                raw = cls.load(split, settings=settings, version=version, force_download=force)
                fitted = pipeline.statistics(cls, root, dataset_version, resolved, settings)
                pipeline.prepare_split(cls, root, split, raw, fitted, resolved)

        if force_download or not pipeline.current_prepared(directory):
            prepare(force_download, unless_current=not force_download)
        try:
            return open_prepared(directory, max_events)
        except DamagedCacheError as error:  # e.g. a damaged header: prepare again, once
            pipeline.log.warning("%s", error)
            prepare(False, unless_current=False)
            return open_prepared(directory, max_events)

    # -- framework views (registered by pd4ml.adapters) -----------------------------------------
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
        """``load_data(split, graph=graph, ...)`` as a ``torch.utils.data.Dataset``.

        Returns a :class:`pd4ml.adapters.torch.TorchEvents`: ``len()`` events, indexing gives
        dicts of tensors (an int: one event; a slice or row array: one batch read in one go),
        and ``.loader(batch_size, shuffle=...)`` gives a ``DataLoader`` of whole-batch reads.
        """
        prepared = cls.load_data(split, graph=graph, **load_data_args)
        return make_view("torch", prepared, names=names, weights=weights)

    @classmethod
    def pyg(cls, split: str = "train", *, weights: str | None = None, **load_data_args: Any) -> Any:
        """``load_data(split, graph=True, ...)`` as PyTorch Geometric ``Data`` per event
        (:class:`pd4ml.adapters.pyg.GraphEvents`)."""
        return make_view("pyg", cls.load_data(split, graph=True, **load_data_args), weights=weights)

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
        """``load_data(split, graph=graph, ...)`` as a TensorFlow view
        (:class:`pd4ml.adapters.tf.TfEvents`; ``.dataset(batch_size, shuffle=...)``)."""
        prepared = cls.load_data(split, graph=graph, **load_data_args)
        return make_view("tf", prepared, names=names, weights=weights)


__all__ = [
    "ArrayWriter",
    "Dataset",
    "LoadMetadata",
    "LoadResult",
    "PreparedData",
    "check_max_events",
    "datasets",
    "get",
    "load",
    "open_prepared",
    "register",
    "unregister",
]
