"""The convert/prepare pipeline: raw files → converted split → prepared split, each built once.

Conversion and preparation run in a staging directory under an inter-process lock and are
renamed into place when complete, so a killed process never leaves a half-written split; a
staging directory left by a killed process is removed by the next run that takes the same
lock (and by ``pd4ml cache clean --partial``). Splits are opened through one path
(:func:`pd4ml.datasets.storage.open_arrays`): a split whose files are missing or of the wrong
size is rebuilt, with a warning, instead of crashing; warm loads never hash.

The prepared-cache key is the dataset, its version, the explicit ``converter_version`` and
``prepare_version`` of the dataset class (bumped by hand when the output changes; a
fingerprint test fails when the output changes without a bump) and the parameters.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pd4ml._logging import get_logger
from pd4ml._version import __version__
from pd4ml.cache import (
    Cache,
    atomic_directory,
    convert_lock,
    read_json,
    replace_directory,
    write_json_atomic,
)
from pd4ml.config import Settings
from pd4ml.datasets.results import LoadMetadata, LoadResult, PreparedData
from pd4ml.datasets.storage import (
    REBUILD,
    STORAGE_VERSION,
    ArrayWriter,
    damaged_arrays,
    open_arrays,
    record_array,
    remove_stale_staging,
    save_npy,
    staging_directory,
)
from pd4ml.errors import ConversionError, DamagedCacheError, DiskFullError
from pd4ml.fetch import Fetcher
from pd4ml.fetch.diskspace import disk_full_as_error, disk_full_error, free_bytes, is_disk_full
from pd4ml.fetch.locking import exclusive
from pd4ml.manifest import DatasetVersion

if TYPE_CHECKING:
    from pd4ml.datasets.base import Dataset

log = get_logger("datasets")


def conversion_parameters(cls: type[Dataset]) -> dict[str, Any]:
    """The dataset's conversion parameters, as stored in JSON."""
    parameters: dict[str, Any] = json.loads(
        json.dumps(cls.conversion_parameters(), sort_keys=True, default=str)
    )
    return parameters


def arrays_variant(cls: type[Dataset]) -> str:
    """Suffix of the arrays directory of a class with conversion parameters (``""``: none)."""
    parameters = conversion_parameters(cls)
    if not parameters:
        return ""
    return hashlib.sha256(json.dumps(parameters, sort_keys=True).encode()).hexdigest()[:12]


def _intact(directory: Path, expected: Mapping[str, Any]) -> bool:
    """Whether ``directory`` holds a complete split of the current layout whose ``meta.json``
    has the ``expected`` values, with every array of its recorded size (a damaged one is
    logged: it will be rebuilt)."""
    meta = read_json(directory / "meta.json")
    if not isinstance(meta, dict) or meta.get("storage_version") != STORAGE_VERSION:
        return False
    if any(meta.get(key, {}) != value for key, value in expected.items()):
        return False
    problems = damaged_arrays(directory, meta)
    if problems:
        log.warning("%s is damaged (%s); it will be rebuilt", directory, "; ".join(problems))
    return not problems


def current_split(directory: Path, cls: type[Dataset]) -> bool:
    """Whether ``directory`` holds a complete converted split of the current layout."""
    expected = {
        "converter_version": cls.converter_version,
        "conversion": conversion_parameters(cls),
    }
    return _intact(directory, expected)


def find_split(
    cls: type[Dataset], settings: Settings, version: DatasetVersion, split: str
) -> Path | None:
    """A complete, current converted split in a shared layer or the user cache."""
    cache = Cache(settings)
    for root in (*settings.shared_dirs, settings.data_dir):
        directory = cache.arrays_dir(cls.manifest().name, version.name, root, arrays_variant(cls))
        directory = directory / split
        if current_split(directory, cls):
            return directory
    return None


def build_split(
    cls: type[Dataset],
    settings: Settings,
    version: DatasetVersion,
    split: str,
    force: bool,
    refetch: bool | None = None,
) -> Path:
    """Fetch the raw files of ``split`` and convert them (once, under the conversion lock).

    ``force`` converts again even when a current split exists; ``refetch`` (default: ``force``)
    also downloads the raw files again (a damaged array needs only a new conversion).
    """
    manifest = cls.manifest()
    fetcher = Fetcher(settings)
    refetch = force if refetch is None else refetch
    keys = cls.files_for_split(version, split)
    local = fetcher.fetch(manifest, version, keys, force=refetch)
    cache = Cache(settings)
    arrays = cache.arrays_dir(manifest.name, version.name, variant=arrays_variant(cls))
    lock = convert_lock(cache.version_dir(manifest.name, version.name))
    with exclusive(lock, f"conversion of {manifest.name} {version.name}"):
        if not force:
            existing = find_split(cls, settings, version, split)
            if existing is not None:
                return existing
        freed = remove_stale_staging(arrays, ".convert-")
        if freed:
            log.info("removed %.1f MB of staging left by an interrupted conversion", freed / 1e6)
        staging = staging_directory(arrays, ".convert-")
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
                    "conversion": conversion_parameters(cls),
                    "storage_version": STORAGE_VERSION,
                    "array_files": writer.records(written),
                    "pd4ml_version": __version__,
                    "synthetic": version.synthetic,
                    "source": "synthetic" if version.synthetic else "+".join(sources),
                    "files": {key: item.checksum for key, item in local.items()},
                    "converted_at": time.time(),
                }
                write_json_atomic(staging / written / "meta.json", meta)
                replace_directory(staging / written, arrays / written)
            log.info("converted in %.1f s", time.monotonic() - started)
        except (ConversionError, DiskFullError):
            raise
        except (OSError, ValueError, KeyError, IndexError) as error:
            if is_disk_full(error):
                raise disk_full_error(staging, needed=None, free=free_bytes(staging)) from error
            names = ", ".join(str(item.path) for item in local.values())
            raise ConversionError(
                f"converting {names} failed: {type(error).__name__}: {error}"
            ) from error
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return arrays / split


def open_split(
    cls: type[Dataset], directory: Path, version: DatasetVersion, split: str, max_events: int | None
) -> LoadResult:
    """A converted split as a :class:`LoadResult` of memory maps."""
    meta = read_json(directory / "meta.json")
    if not isinstance(meta, dict):
        raise DamagedCacheError(f"{directory}/meta.json is missing or unreadable{REBUILD}")
    arrays, shared = open_arrays(directory, meta, max_events)
    features = [arrays[name] for name in meta["features"]]
    labels = arrays[meta["labels"]]
    weights = arrays[meta["weights"]] if meta.get("weights") else None
    extra = {name: arrays[name] for name in meta.get("extra", [])}
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
    return LoadResult(features, labels, weights, tuple(meta["features"]), metadata, extra, shared)


# -- preparation ---------------------------------------------------------------------------------
def prepared_key(cls: type[Dataset], version: DatasetVersion, params: Mapping[str, Any]) -> str:
    """Cache key of a preparation: dataset, version, explicit code versions and parameters."""
    payload = {
        "dataset": cls.manifest().name,
        "version": version.name,
        "converter_version": cls.converter_version,
        "conversion": conversion_parameters(cls),
        "prepare_version": cls.prepare_version,
        "storage_version": STORAGE_VERSION,
        "params": {key: params[key] for key in sorted(params)},
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def current_prepared(directory: Path) -> bool:
    """Whether ``directory`` holds a complete prepared split of the current layout."""
    return _intact(directory, {})


def needs_statistics(cls: type[Dataset]) -> bool:
    """Whether the dataset fits statistics on train (it overrides ``fit_statistics``)."""
    return not getattr(getattr(cls.fit_statistics, "__func__", None), "fits_nothing", False)


def statistics(
    cls: type[Dataset],
    root: Path,
    version: DatasetVersion,
    params: Mapping[str, Any],
    settings: Settings,
) -> dict[str, np.ndarray]:
    """The train statistics of a preparation: read when stored, else fitted once and stored.

    Datasets that fit nothing never load (or download) train for them.
    """
    if not needs_statistics(cls):
        return {}
    folder = root / "statistics"
    meta = read_json(folder / "meta.json")
    if isinstance(meta, dict):
        try:
            return {
                name: np.load(folder / f"{name}.npy", allow_pickle=False) for name in meta["arrays"]
            }
        except (OSError, ValueError) as error:
            log.warning("stored statistics in %s are unreadable (%s); refitting", folder, error)
    remove_stale_staging(root, ".statistics.tmp-")
    train = cls.load("train", settings=settings, version=version.name)
    fitted = cls.fit_statistics(train, params)
    with atomic_directory(folder) as staging:
        for name, value in fitted.items():
            save_npy(staging / f"{name}.npy", np.asarray(value))
        records = {
            name: record_array(staging / f"{name}.npy", per_event=False).to_json()
            for name in fitted
        }
        write_json_atomic(
            staging / "meta.json",
            {
                "arrays": sorted(fitted),
                "fitted_on": "train",
                "n_events": train.n_events,
                "storage_version": STORAGE_VERSION,
                "array_files": records,
            },
        )
    return fitted


def prepare_split(
    cls: type[Dataset],
    root: Path,
    split: str,
    raw: LoadResult,
    fitted: Mapping[str, np.ndarray],
    params: Mapping[str, Any],
) -> None:
    """Run ``cls.prepare`` for ``split`` in a staging directory and move it into place.

    Call with the preparation lock held: staging left in ``root`` by a killed run is removed.
    """
    remove_stale_staging(root, ".prepare-")
    staging = staging_directory(root, ".prepare-")
    try:
        writer = ArrayWriter(staging)
        started = time.monotonic()
        with disk_full_as_error(staging):
            cls.prepare(raw, fitted, params, writer, split)
            if split not in writer.splits:
                raise ConversionError(f"{cls.__name__}.prepare did not produce split {split!r}")
            add_unit_weights(writer, split, raw.n_events)
        meta = {
            **writer.splits[split],
            "dataset": raw.metadata.dataset,
            "version": raw.metadata.version,
            "split": split,
            "params": dict(params),
            "prepare_version": cls.prepare_version,
            "storage_version": STORAGE_VERSION,
            "array_files": writer.records(split),
            "node_positions": node_positions(cls, writer.splits[split]["arrays"]),
            "statistics": {
                name: np.asarray(value).tolist()
                if np.asarray(value).size <= 64
                else f"{np.asarray(value).shape} array"
                for name, value in fitted.items()
            },
            "source": raw.metadata.source,
            "synthetic": raw.metadata.synthetic,
            "files": dict(raw.metadata.files),
            "pd4ml_version": __version__,
            "prepared_at": time.time(),
            "seconds": time.monotonic() - started,
        }
        write_json_atomic(staging / split / "meta.json", meta)
        replace_directory(staging / split, root / split)
        write_json_atomic(root / "params.json", dict(params))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def node_positions(cls: type[Dataset], names: list[str]) -> dict[str, Any] | None:
    """The dataset's declared node positions, when their array is part of the split."""
    if cls.node_positions is None or cls.node_positions[0] not in names:
        return None
    array, start, stop = cls.node_positions
    return {"array": array, "columns": [start, stop]}


def add_unit_weights(writer: ArrayWriter, split: str, n_events: int) -> None:
    """Give a prepared split without sample weights a ``weights`` array of ones (float32).

    Every prepared split then has its weights under one name, and holds at least three arrays
    (features, labels, weights), so a script that unpacks it as the original pd4ml's
    ``X, y = load_data(...)`` fails loudly instead of getting two array names.
    """
    names = writer.splits[split]["arrays"]
    if "weights" in names:
        return
    weights = writer.empty(split, "weights", (n_events,), np.float32)
    weights[:] = 1.0
    weights.flush()
    del weights
    names.append("weights")


def open_prepared(directory: Path, max_events: int | None, quiet: bool = False) -> PreparedData:
    """Open a prepared split directory as :class:`PreparedData` (memory maps)."""
    meta = read_json(directory / "meta.json")
    if not isinstance(meta, dict):
        raise DamagedCacheError(f"{directory}/meta.json is missing or unreadable{REBUILD}")
    arrays, shared = open_arrays(directory, meta, max_events)
    if meta.get("synthetic") and not quiet:
        log.warning(
            "%s %s is SYNTHETIC test data, not a real dataset", meta["dataset"], meta["split"]
        )
    return PreparedData(arrays, meta, directory, max_events, shared)
