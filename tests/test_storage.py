"""The array store and the convert/prepare pipeline: staging, full disks, damaged arrays,
argument validation, shared arrays, the registry and the direction of imports."""

from __future__ import annotations

import ast
import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

import pd4ml
from pd4ml import npyio
from pd4ml.cache import Cache, convert_lock
from pd4ml.cli import main as cli_main
from pd4ml.config import Settings
from pd4ml.datasets import storage
from pd4ml.datasets.base import ArrayWriter, Dataset
from pd4ml.datasets.registry import register, unregister
from pd4ml.errors import DiskFullError, RegistrationError
from pd4ml.manifest import DatasetManifest, DatasetVersion
from pd4ml.testing import ArchiveServer
from pd4ml.testing.demo import write_demo_npz
from tests.conftest import zenodo_manifest

GEOMETRY = np.arange(30, dtype=np.float32).reshape(10, 3)


def make_dataset(manifest: DatasetManifest, fit: bool = True) -> type[Dataset]:
    """A small dataset: points from the demo npz, a shared geometry, a scaler fitted on train."""

    class Jets(Dataset):
        name = "testdata"
        manifest_override = manifest
        splits = ("train", "test")
        prepare_defaults: ClassVar[Mapping[str, Any]] = {"scale": True}

        @classmethod
        def convert(
            cls,
            raw_files: Mapping[str, Path],
            version: DatasetVersion,
            writer: ArrayWriter,
            split: str,
        ) -> None:
            key = "jets.npz" if "jets.npz" in raw_files else f"{split}.npz"
            with np.load(raw_files[key]) as arrays:
                writer.save(split, "points", arrays[f"X_{split}_0"])
                writer.save(split, "labels", arrays[f"y_{split}"])
            writer.save(split, "geometry", GEOMETRY, per_event=False)
            writer.describe(split, features=["points"], labels="labels", extra=["geometry"])

        @classmethod
        def prepare(
            cls,
            raw: Any,
            statistics: Mapping[str, np.ndarray],
            params: Mapping[str, Any],
            writer: ArrayWriter,
            split: str,
        ) -> None:
            points = np.asarray(raw.X[0], dtype=np.float32)
            if params["scale"] and "scale" in statistics:
                points = points / statistics["scale"]
            out = writer.empty(split, "features", points.shape, np.float32)
            out[:] = points
            out.flush()
            writer.save(split, "labels", np.asarray(raw.y))
            writer.save(split, "geometry", GEOMETRY, per_event=False)
            writer.describe_arrays(split, ["features", "labels", "geometry"], {})

    if fit:

        def fit_statistics(
            cls: type[Dataset], train: Any, params: Mapping[str, Any]
        ) -> dict[str, np.ndarray]:
            return {"scale": np.asarray(np.abs(train.X[0]).max(), dtype=np.float32)}

        Jets.fit_statistics = classmethod(fit_statistics)  # type: ignore[assignment, method-assign]
    return Jets


@pytest.fixture
def jets_file(tmp_path: Path) -> Path:
    return write_demo_npz(tmp_path / "served" / "jets.npz", n_train=700, n_test=300, seed=4)


@pytest.fixture
def dataset(server: ArchiveServer, jets_file: Path) -> type[Dataset]:
    return make_dataset(zenodo_manifest(server, 600, {"jets.npz": jets_file}))


def arrays_dir(settings: Settings) -> Path:
    return settings.data_dir / "testdata" / "v1" / "arrays"


def run_cli(settings: Settings, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli_main(["--data-dir", str(settings.data_dir), *args])
    return code, capsys.readouterr().out


# -- item 1: staging left by killed processes -------------------------------------------------
def test_staging_of_a_killed_conversion_is_reported_cleaned_and_removed_by_a_rerun(
    dataset: type[Dataset], settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset.load("train", settings=settings)
    stale = arrays_dir(settings) / ".convert-killed"
    (stale / "train").mkdir(parents=True)
    (stale / "train" / "points.npy").write_bytes(b"\0" * 100_000)
    code, out = run_cli(settings, "cache", capsys=capsys)
    assert code == 0 and "staging" in out and ".convert-killed" in out
    code, out = run_cli(settings, "cache", "clean", "--partial", capsys=capsys)
    assert code == 0 and not stale.exists() and "removed" in out
    # a rerun of a conversion of the same version removes stale staging by itself
    stale.mkdir()
    dataset.load("test", settings=settings)
    assert not stale.exists()


def test_staging_of_a_running_conversion_is_kept(
    dataset: type[Dataset], settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset.load("train", settings=settings)
    staging = arrays_dir(settings) / ".convert-running"
    staging.mkdir()
    holder = hold_lock(convert_lock(settings.data_dir / "testdata" / "v1"))
    try:
        code, out = run_cli(settings, "cache", "clean", "--partial", capsys=capsys)
        assert code == 0 and staging.exists() and "kept" in out
    finally:
        holder.kill()
        holder.wait()
    run_cli(settings, "cache", "clean", "--partial", capsys=capsys)
    assert not staging.exists()


def test_staging_of_a_killed_preparation_is_removed_by_a_rerun(
    dataset: type[Dataset], settings: Settings
) -> None:
    prepared = dataset.load_data("train", settings=settings)
    assert prepared.directory is not None
    root = prepared.directory.parent
    stale = root / ".prepare-killed"
    stale.mkdir()
    assert [entry.path for entry in Cache(settings).staging()] == [stale]
    dataset.load_data("test", settings=settings)
    assert not stale.exists()


def test_a_conversion_killed_by_sigkill_leaves_only_staging(
    server: ArchiveServer, jets_file: Path, settings: Settings, tmp_path: Path
) -> None:
    """A real kill -9 in the middle of a conversion: nothing half-written is ever served."""
    manifest = zenodo_manifest(server, 601, {"jets.npz": jets_file})
    script = tmp_path / "convert.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import json, sys, time
            from pathlib import Path
            sys.path.insert(0, {str(Path(__file__).parents[1])!r})
            from pd4ml.config import Settings
            from pd4ml.manifest import parse_manifest
            from tests import test_storage as t
            manifest = parse_manifest(json.loads({json.dumps(manifest_payload(manifest))!r}))
            cls = t.make_dataset(manifest)
            original = cls.convert.__func__
            def slow(kls, raw, version, writer, split):
                original(kls, raw, version, writer, split)
                print("written", flush=True)
                time.sleep(60)
            cls.convert = classmethod(slow)
            cls.load("train", settings=Settings(data_dir=Path({str(settings.data_dir)!r})))
            """
        )
    )
    child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "written"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert not (arrays_dir(settings) / "train").exists()
    assert [entry.kind for entry in Cache(settings).staging()] == ["conversion"]
    X, _ = make_dataset(manifest).load("train", settings=settings)
    assert X[0].shape == (700, 16, 3)
    assert Cache(settings).staging() == []


def manifest_payload(manifest: DatasetManifest) -> dict[str, Any]:
    version = manifest.version()
    source = version.source
    return {
        "name": manifest.name,
        "display_name": manifest.display_name,
        "task": manifest.task,
        "licence": manifest.licence,
        "description": manifest.description,
        "version": [
            {
                "name": version.name,
                "title": version.title,
                "synthetic": version.synthetic,
                "source": {
                    "kind": source.kind,
                    "record": source.record,
                    "base_url": source.base_url,
                },
                "file": [
                    {
                        "key": entry.key,
                        "size": entry.size,
                        "checksums": [str(c) for c in entry.checksums],
                    }
                    for entry in version.files
                ],
            }
        ],
    }


# -- item 2: a full disk during conversion ----------------------------------------------------
def test_full_disk_during_conversion_is_a_clear_error_and_leaves_nothing(
    dataset: type[Dataset], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset.download(settings=settings)

    def no_space(handle: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(npyio.os, "posix_fallocate", no_space)
    with pytest.raises(DiskFullError) as caught:
        dataset.load("train", settings=settings)
    message = str(caught.value)
    assert "points.npy" in message and "still needed" in message and " free" in message
    assert "PD4ML_DATA_DIR" in message
    assert not (arrays_dir(settings) / "train").exists()
    assert Cache(settings).staging() == []


def test_memory_mapped_outputs_reserve_their_disk_space(tmp_path: Path) -> None:
    """The blocks of a memory-mapped output are allocated before anything is written (a
    sparse file would fault with SIGBUS on a full disk instead)."""
    path = tmp_path / "big.npy"
    array = storage.allocate_npy(path, (1000, 256), np.float32)
    assert os.stat(path).st_blocks * 512 >= 1000 * 256 * 4
    array[:] = 1.0
    array.flush()
    del array
    np.testing.assert_array_equal(np.load(path), np.ones((1000, 256), np.float32))


def mount_tmpfs(where: Path, size: str) -> subprocess.CompletedProcess[bytes]:
    """Mount a small tmpfs (root only); a failed or impossible mount has a non-zero code."""
    try:
        return subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
            capture_output=True,
        )
    except OSError as error:  # no mount command
        return subprocess.CompletedProcess([], 1, b"", str(error).encode())


def test_full_tmpfs_gives_disk_full_error_not_sigbus(tmp_path: Path) -> None:
    """On a real 1 MB file system: a 4 MB memory-mapped output is refused cleanly."""
    mount = tmp_path / "small"
    mount.mkdir()
    mounted = mount_tmpfs(mount, "1m")
    if mounted.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()}); "
            "the simulated-ENOSPC test covers the behaviour"
        )
    try:
        code = textwrap.dedent(
            f"""
            import sys
            sys.path.insert(0, {str(Path(__file__).parents[1])!r})
            import numpy as np
            from pathlib import Path
            from pd4ml.datasets.storage import ArrayWriter
            from pd4ml.errors import DiskFullError
            writer = ArrayWriter(Path({str(mount)!r}))
            try:
                out = writer.empty("train", "features", (1024, 1024), np.float32)
                out[:] = 1.0
            except DiskFullError as error:
                print("DiskFullError", error)
            """
        )
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert result.returncode == 0, f"killed by signal {-result.returncode}: {result.stderr}"
        assert "DiskFullError" in result.stdout and "still needed" in result.stdout
    finally:
        subprocess.run(["umount", str(mount)], check=False)


# -- item 4: argument validation --------------------------------------------------------------
@pytest.mark.parametrize(
    ("arguments", "error", "pattern"),
    [
        ({"max_events": -1}, ValueError, "max_events must be 0 or more"),
        ({"max_events": True}, TypeError, "max_events must be None or a whole number"),
        ({"max_events": "10"}, TypeError, "max_events"),
        ({"max_events": 1.5}, TypeError, "max_events"),
        ({"version": 5}, TypeError, "version must be a string"),
        ({"force_download": "yes"}, TypeError, "force_download must be True or False"),
        ({"path": 3}, TypeError, "path must be a directory"),
    ],
)
def test_arguments_are_validated(
    dataset: type[Dataset], arguments: dict[str, Any], error: type[Exception], pattern: str
) -> None:
    with pytest.raises(error, match=pattern):
        dataset.load("train", **arguments)
    with pytest.raises(error, match=pattern):
        dataset.load_data("train", **arguments)


def test_split_and_graph_types_are_validated(dataset: type[Dataset]) -> None:
    with pytest.raises(TypeError, match="split must be a string"):
        dataset.load(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="graph must be True or False"):
        dataset.load_data("train", graph="yes")  # type: ignore[arg-type]


def test_max_events_zero_and_numpy_integers(dataset: type[Dataset], settings: Settings) -> None:
    X, y = dataset.load("train", settings=settings, max_events=0)
    assert X[0].shape == (0, 16, 3) and y.shape == (0,)
    X, y = dataset.load("train", settings=settings, max_events=np.int64(5))
    assert y.shape == (5,)


# -- item 7: damaged arrays -------------------------------------------------------------------
def test_flipped_byte_is_found_by_verify_and_rebuilt(
    dataset: type[Dataset], settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    X, _ = dataset.load("train", settings=settings)
    expected = np.array(X[0])
    del X
    target = arrays_dir(settings) / "train" / "points.npy"
    raw = bytearray(target.read_bytes())
    raw[-5] ^= 0xFF
    target.write_bytes(bytes(raw))
    code, out = run_cli(settings, "verify", capsys=capsys)
    assert code == 1 and "damaged" in out and "points.npy" in out and "SHA-256" in out
    X, _ = dataset.load("train", settings=settings)
    np.testing.assert_array_equal(X[0], expected)
    code, out = run_cli(settings, "verify", capsys=capsys)
    assert code == 0 and "damaged" not in out


def test_prepared_arrays_are_verified_too(
    dataset: type[Dataset], settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    prepared = dataset.load_data("train", settings=settings)
    assert prepared.directory is not None
    target = prepared.directory / "features.npy"
    raw = bytearray(target.read_bytes())
    raw[-1] ^= 0x01
    target.write_bytes(bytes(raw))
    code, out = run_cli(settings, "verify", capsys=capsys)
    assert code == 1 and "features.npy" in out


def test_truncated_array_is_rebuilt_on_load(
    dataset: type[Dataset], settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    X, _ = dataset.load("train", settings=settings)
    expected = np.array(X[0])
    del X
    target = arrays_dir(settings) / "train" / "points.npy"
    with open(target, "r+b") as handle:
        handle.truncate(target.stat().st_size // 2)
    X, _ = dataset.load("train", settings=settings)
    np.testing.assert_array_equal(X[0], expected)
    assert "damaged" in caplog.text and "rebuilt" in caplog.text


def test_warm_loads_never_hash(
    dataset: type[Dataset], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset.load("train", settings=settings)
    dataset.load_data("train", settings=settings)

    def forbidden(path: Path, chunk: int = 0) -> str:
        raise AssertionError(f"a warm load hashed {path}")

    monkeypatch.setattr(storage, "file_sha256", forbidden)
    dataset.load("train", settings=settings)
    dataset.load_data("train", settings=settings)


def test_every_array_has_a_record(dataset: type[Dataset], settings: Settings) -> None:
    dataset.load_data("train", settings=settings)
    meta = json.loads((arrays_dir(settings) / "train" / "meta.json").read_text())
    records = meta["array_files"]
    assert set(records) == {"points", "labels", "geometry"}
    path = arrays_dir(settings) / "train" / "points.npy"
    assert records["points"]["bytes"] == path.stat().st_size
    assert records["points"]["sha256"] == storage.file_sha256(path)
    assert records["points"]["per_event"] and not records["geometry"]["per_event"]


# -- item 10: arrays that are not per event ---------------------------------------------------
def test_max_events_never_cuts_shared_arrays(dataset: type[Dataset], settings: Settings) -> None:
    result = dataset.load("train", settings=settings, max_events=4)
    assert result.y.shape == (4,) and result["geometry"].shape == (10, 3)
    assert result.shared == frozenset({"geometry"})
    prepared = dataset.load_data("train", settings=settings, max_events=4)
    assert prepared["features"].shape[0] == 4 and prepared["geometry"].shape == (10, 3)
    assert prepared.shared == frozenset({"geometry"})
    assert prepared.per_event() == ["features", "labels", "weights"]
    np.testing.assert_array_equal(prepared["weights"], np.ones(4, np.float32))


# -- item 11: train is fetched only for statistics that are not stored ------------------------
def split_files(tmp_path: Path) -> dict[str, Path]:
    source = write_demo_npz(tmp_path / "both.npz", n_train=200, n_test=100, seed=2)
    files = {}
    with np.load(source) as arrays:
        for split in ("train", "test"):
            path = tmp_path / "served" / f"{split}.npz"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, **{key: arrays[key] for key in arrays.files})
            files[f"{split}.npz"] = path
    return files


def test_preparing_test_needs_no_train_without_statistics(
    server: ArchiveServer, settings: Settings, tmp_path: Path
) -> None:
    from pd4ml.manifest import parse_manifest

    files = split_files(tmp_path)
    server.add_zenodo_record(602, files)
    entries = [
        {"key": key, "size": path.stat().st_size, "feeds": [key.split(".")[0]]}
        for key, path in files.items()
    ]
    manifest = parse_manifest(
        {
            "name": "testdata",
            "display_name": "Testdata",
            "task": "classification",
            "licence": "CC0-1.0",
            "description": "test data",
            "version": [
                {
                    "name": "v1",
                    "title": "test",
                    "synthetic": True,
                    "source": {"kind": "zenodo", "record": "602", "base_url": server.url},
                    "file": [{**entry, "checksum_origin": "none"} for entry in entries],
                }
            ],
        }
    )
    plain = make_dataset(manifest, fit=False)
    prepared = plain.load_data("test", settings=settings)
    assert prepared.n_events == 100
    assert server.count("*/train.npz") == 0, "train was downloaded for a dataset that fits nothing"
    assert not (arrays_dir(settings) / "train").exists()
    fitted = make_dataset(manifest, fit=True)
    fitted.load_data("test", settings=settings, scale=False)
    assert server.count("*/train.npz") == 1, "statistics need train: fetched once"


# -- item 12: explicit registry ---------------------------------------------------------------
def test_subclassing_a_built_in_dataset_does_not_replace_it() -> None:
    class MyTop(pd4ml.TopTagging):
        pass

    class MyTopRegistered(pd4ml.TopTagging, register=False):
        pass

    assert pd4ml.get("top_tagging") is pd4ml.TopTagging
    assert MyTop not in pd4ml.datasets() and MyTopRegistered not in pd4ml.datasets()


def test_registration_is_explicit_and_clashes_are_errors() -> None:
    with pytest.raises(RegistrationError, match="its own class attribute 'name'"):

        class Inherited(pd4ml.TopTagging, register=True):
            pass

    with pytest.raises(RegistrationError, match="already registered"):

        class Clash(pd4ml.TopTagging, register=True):
            name = "top_tagging"

    class Mine(pd4ml.TopTagging, register=True):
        name = "my_top"
        manifest_override = pd4ml.TopTagging.manifest()

    try:
        assert Mine in pd4ml.datasets() and pd4ml.get("top_tagging") is pd4ml.TopTagging
    finally:
        unregister(Mine)
    assert Mine not in pd4ml.datasets()

    class Replacement(pd4ml.TopTagging):
        name = "top_tagging"

    register(Replacement, replace=True)
    try:
        assert pd4ml.get("top_tagging") is Replacement
    finally:
        register(pd4ml.TopTagging, replace=True)
    assert pd4ml.get("top_tagging") is pd4ml.TopTagging


def test_registry_keeps_the_built_in_order() -> None:
    from pd4ml.datasets import BUILT_IN

    assert [cls.name for cls in pd4ml.datasets()] == [cls.name for cls in BUILT_IN]


# -- item 24: data flows one way --------------------------------------------------------------
LAYERS = ["manifest", "cache", "fetch", "datasets", "adapters", "models", "train", "bench", "cli"]
PACKAGE = Path(pd4ml.__file__).parent


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "pd4ml" or len(parts) < 2:
        return None
    name = parts[1]
    return LAYERS.index(name) if name in LAYERS else None


#: Helper modules and the data layer they may use at most (``None``: none of the layers).
HELPERS = {
    "config": None,
    "errors": None,
    "naming": None,
    "checksums": None,
    "_kernels": None,
    "graphs": None,
    "pandas_hdf": "manifest",
    "npyio": "fetch",
    "citation": "manifest",
    "testing": "datasets",
    "metrics": None,
}


def imported_modules(path: Path) -> Iterator[tuple[int, str]]:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.lineno, node.module


@pytest.mark.parametrize(
    "layer", ["manifest", "cache", "fetch", "datasets", "adapters", "models", "train", "bench"]
)
def test_nothing_imports_upward(layer: str) -> None:
    own = LAYERS.index(layer)
    paths = [PACKAGE / f"{layer}.py"] if (PACKAGE / f"{layer}.py").exists() else []
    paths += sorted((PACKAGE / layer).rglob("*.py")) if (PACKAGE / layer).is_dir() else []
    assert paths
    upward = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            modules = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            for module in modules:
                level = layer_of(module)
                if level is not None and level > own:
                    upward.append(f"{path.relative_to(PACKAGE)}:{node.lineno} imports {module}")
    assert not upward, upward


# -- review follow-ups ------------------------------------------------------------------------
def test_full_tmpfs_during_a_built_in_conversion_is_disk_full_error(tmp_path: Path) -> None:
    """Spinodal's real converter (npz members streamed into memory maps) on a 6 MB file
    system: a DiskFullError, never SIGBUS."""
    mount = tmp_path / "small"
    mount.mkdir()
    mounted = mount_tmpfs(mount, "6m")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()})")
    try:
        code = textwrap.dedent(
            f"""
            import sys
            sys.path.insert(0, {str(Path(__file__).parents[1])!r})
            from pathlib import Path
            from pd4ml import Spinodal
            from pd4ml.config import Settings
            from pd4ml.errors import DiskFullError
            from pd4ml.testing import ArchiveServer
            from pd4ml.testing.synthetic import synthetic_variant, write_pd4ml_image_npz
            from tests.conftest import FAST_RETRY
            raw = write_pd4ml_image_npz(
                Path({str(tmp_path)!r}) / "2_spinodal_29k.npz", "spinodal", 2000, 100, seed=4
            )
            with ArchiveServer() as server:
                server.add_zenodo_record(9100, {{"2_spinodal_29k.npz": raw}})
                cls = synthetic_variant(
                    Spinodal, server.url, 9100, {{"2_spinodal_29k.npz": raw}},
                    template_version="pd4ml-2021",
                )
                settings = Settings(
                    data_dir=Path({str(mount)!r}) / "cache", retry=FAST_RETRY, progress="off"
                )
                try:
                    cls.load("train", settings=settings)
                    print("loaded")
                except DiskFullError as error:
                    print("DiskFullError", error)
            """
        )
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert result.returncode == 0, f"killed by signal {-result.returncode}: {result.stderr}"
        assert "DiskFullError" in result.stdout and "PD4ML_DATA_DIR" in result.stdout
        leftovers = list((mount / "cache").rglob(".convert-*"))
        assert not leftovers, leftovers
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def hold_lock(lock: Path) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import filelock, time; lock = filelock.FileLock({str(lock)!r}); lock.acquire(); "
            "print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_clean_partial_keeps_live_downloads_and_statistics(
    dataset: type[Dataset], settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    prepared = dataset.load_data("train", settings=settings)
    assert prepared.directory is not None
    state = settings.data_dir / "testdata" / "v1" / "raw" / ".pd4ml"
    live_part, dead_part = state / "big.h5.part", state / "old.h5.part"
    live_part.write_bytes(b"x" * 1000)
    dead_part.write_bytes(b"y" * 1000)
    statistics = prepared.directory.parent / ".statistics.tmp-live"
    statistics.mkdir()
    key = prepared.directory.parent.name
    holders = [
        hold_lock(state / "big.h5.lock"),
        hold_lock(settings.data_dir / "testdata" / "v1" / "prepared" / ".pd4ml" / f"{key}.lock"),
    ]
    try:
        code, out = run_cli(settings, "cache", "clean", "--partial", capsys=capsys)
    finally:
        for holder in holders:
            holder.kill()
            holder.wait()
    assert code == 0
    assert live_part.exists() and statistics.exists(), out
    assert not dead_part.exists()
    run_cli(settings, "cache", "clean", "--partial", capsys=capsys)
    assert not live_part.exists() and not statistics.exists()


def test_damaged_header_is_reconverted_offline_without_downloading(
    dataset: type[Dataset], settings: Settings, server: ArchiveServer
) -> None:
    X, _ = dataset.load("train", settings=settings)
    expected = np.array(X[0])
    del X
    target = arrays_dir(settings) / "train" / "points.npy"
    raw = bytearray(target.read_bytes())
    raw[0] ^= 0xFF  # the magic string: same size, unreadable
    target.write_bytes(bytes(raw))
    server.reset_log()
    X, _ = dataset.load("train", settings=settings.with_changes(offline=True))
    np.testing.assert_array_equal(X[0], expected)
    assert server.count(method=None) == 0


def test_damaged_prepared_header_is_prepared_again(
    dataset: type[Dataset], settings: Settings
) -> None:
    prepared = dataset.load_data("train", settings=settings)
    expected = np.array(prepared["features"])
    assert prepared.directory is not None
    target = prepared.directory / "features.npy"
    raw = bytearray(target.read_bytes())
    raw[0] ^= 0xFF
    target.write_bytes(bytes(raw))
    again = dataset.load_data("train", settings=settings)
    np.testing.assert_array_equal(again["features"], expected)


def test_full_disk_while_spooling_is_disk_full_error(
    dataset: type[Dataset], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def spool_fails(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(dataset, "convert", classmethod(spool_fails))
    with pytest.raises(DiskFullError, match="PD4ML_DATA_DIR"):
        dataset.load("train", settings=settings)


@pytest.mark.parametrize(
    ("cls", "params", "error", "pattern"),
    [
        (pd4ml.TopTagging, {"k": "7"}, TypeError, r"load_data\(k=...\) must be a whole number"),
        (pd4ml.TopTagging, {"k": 0}, ValueError, "must be 1 or more"),
        (pd4ml.TopTagging, {"dense_adjacency": "no"}, TypeError, "must be True or False"),
        (pd4ml.EOS, {"form": "bogus"}, ValueError, r"must be one of \['image', 'nodes'\]"),
        (pd4ml.Spinodal, {"standardise": "no"}, TypeError, "must be True or False"),
        (pd4ml.CaliceAHCAL, {"representation": 3}, TypeError, "must be a string"),
    ],
)
def test_preprocessing_parameters_are_validated_before_anything_is_fetched(
    cls: type[Dataset],
    params: dict[str, Any],
    error: type[Exception],
    pattern: str,
    settings: Settings,
) -> None:
    offline = settings.with_changes(offline=True)  # fetching anything would be an OfflineError
    with pytest.raises(error, match=pattern):
        cls.load_data("train", settings=offline, **params)


def test_prepared_data_compares_by_identity_and_pickles_by_path(
    dataset: type[Dataset], settings: Settings
) -> None:
    import pickle

    prepared = dataset.load_data("train", settings=settings)
    other = dataset.load_data("train", settings=settings)
    assert prepared == prepared and prepared != other and prepared in [prepared]
    assert len({prepared, other}) == 2
    payload = pickle.dumps(prepared)
    assert len(payload) < 2000 < prepared["features"].nbytes
    restored = pickle.loads(payload)
    np.testing.assert_array_equal(restored["features"], prepared["features"])
    assert restored.shared == prepared.shared


def test_verify_reports_outdated_splits_without_failing_and_checks_statistics(
    dataset: type[Dataset], settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    prepared = dataset.load_data("train", settings=settings)
    assert prepared.directory is not None
    meta_path = arrays_dir(settings) / "test" / "meta.json"
    dataset.load("test", settings=settings)
    meta = json.loads(meta_path.read_text())
    del meta["array_files"]
    meta_path.write_text(json.dumps(meta))
    code, out = run_cli(settings, "verify", capsys=capsys)
    assert code == 0 and "outdated" in out and "damaged" not in out
    scale = prepared.directory.parent / "statistics" / "scale.npy"
    raw = bytearray(scale.read_bytes())
    raw[-1] ^= 0x01
    scale.write_bytes(bytes(raw))
    code, out = run_cli(settings, "verify", capsys=capsys)
    assert code == 1 and "statistics" in out and "damaged" in out


def test_calice_variants_never_share_converted_arrays(
    server: ArchiveServer, tmp_path: Path
) -> None:
    from pd4ml.errors import ConversionError
    from tests.cases import World

    world = World(tmp_path, server)
    default = world.variant("calice_ahcal")
    cells = np.array(default.load("train", settings=world.settings)["cells"])
    shifted = default.with_geometry(first_layer_z_mm=73.9)  # the hits then lie between layers
    with pytest.raises(ConversionError, match="layer"):
        shifted.load("train", settings=world.settings)
    renamed = default.with_branches(hit_x="hit_x")  # the same conversion: the same cache
    np.testing.assert_array_equal(renamed.load("train", settings=world.settings)["cells"], cells)


def test_airshower_station_positions_stay_whole_when_train_has_81_events(
    server: ArchiveServer, tmp_path: Path
) -> None:
    """Per event or shared is declared by the converter, never guessed from a shape."""
    from pd4ml.testing.synthetic import synthetic_variant, write_airshower_npz

    key = "4_airshower_100k_regression.npz"
    path = write_airshower_npz(tmp_path / key, 81, 10, seed=3)
    server.add_zenodo_record(9200, {key: path})
    variant = synthetic_variant(
        pd4ml.Airshower, server.url, 9200, {key: path}, template_version="pd4ml-2021"
    )
    settings = Settings(data_dir=tmp_path / "cache", progress="off")
    for split in ("train", "val", "test"):
        result = variant.load(split, settings=settings)
        assert result["station_positions"].shape == (81, 3), split
        assert "station_positions" in result.shared


@pytest.mark.parametrize("helper", sorted(HELPERS))
def test_helper_modules_import_no_layer_above_theirs(helper: str) -> None:
    ceiling = HELPERS[helper]
    own = -1 if ceiling is None else LAYERS.index(ceiling)
    base = PACKAGE / helper
    paths = sorted(base.rglob("*.py")) if base.is_dir() else [base.with_suffix(".py")]
    upward = [
        f"{path.relative_to(PACKAGE)}:{line} imports {module}"
        for path in paths
        for line, module in imported_modules(path)
        if (layer_of(module) or -1) > own
    ]
    assert not upward, upward


def test_the_data_layer_has_no_import_cycle() -> None:
    """pipeline, storage, results, registry and views never import base (base imports them)."""
    for name in ("pipeline", "storage", "results", "registry", "views"):
        path = PACKAGE / "datasets" / f"{name}.py"
        tree = ast.parse(path.read_text())
        runtime = [
            module
            for node in tree.body
            for line, module in imported_modules_of(node)
            if module == "pd4ml.datasets.base"
        ]
        assert not runtime, f"{name}.py imports pd4ml.datasets.base at run time"


def imported_modules_of(node: ast.stmt) -> Iterator[tuple[int, str]]:
    """Imports of a top-level statement (``if TYPE_CHECKING:`` blocks excluded), and of the
    functions it defines."""
    if isinstance(node, ast.If):
        return
    for child in ast.walk(node):
        if isinstance(child, ast.Import):
            yield from ((child.lineno, alias.name) for alias in child.names)
        elif isinstance(child, ast.ImportFrom) and child.module:
            yield child.lineno, child.module


def test_saved_scalars_stay_zero_dimensional(tmp_path: Path) -> None:
    storage.save_npy(tmp_path / "scale.npy", np.asarray(2.5))
    loaded = np.load(tmp_path / "scale.npy")
    assert loaded.shape == () and float(loaded) == 2.5
