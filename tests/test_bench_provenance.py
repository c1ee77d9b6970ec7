"""Provenance of benchmark records: code version, hardware, sampled memory, timestamps."""

from __future__ import annotations

import importlib.metadata
import platform
import re
import shutil
import subprocess
import sys
import time
import types
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import pd4ml
from pd4ml._version import __version__
from pd4ml.bench import provenance
from pd4ml.bench.provenance import (
    NOT_A_CHECKOUT,
    MemorySampler,
    code_version,
    cpu_name,
    git_revision,
    hardware,
    memory_now,
    source_digest,
    utc_now,
)
from pd4ml.bench.records import validate_record
from tests.bench_examples import example_record

MB = 1_000_000


def git(directory: Path, *arguments: str) -> str:
    identity = ["-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false"]
    return subprocess.run(
        ["git", "-C", str(directory), *identity, *arguments],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A git repository tracking ``src/pkg`` with one commit; returns the package directory."""
    repository = tmp_path / "repository"
    package = repository / "src" / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("x = 1\n")
    (repository / "README").write_text("readme\n")
    git(repository, "init", "-q")
    git(repository, "add", ".")
    git(repository, "commit", "-q", "-m", "first")
    return package


needs_git = pytest.mark.skipif(
    subprocess.run(["git", "--version"], capture_output=True, check=False).returncode != 0,
    reason="git is not installed",
)


# -- code version -------------------------------------------------------------------------------


def test_code_version_is_a_valid_code_block() -> None:
    code = code_version()
    assert set(code) == {
        "pd4ml_version",
        "git_revision",
        "source_digest",
        "python",
        "torch",
        "numpy",
    }
    assert code["pd4ml_version"] == __version__
    assert code["python"] == platform.python_version()
    assert code["numpy"] == np.__version__
    assert all(isinstance(value, str) and value for value in code.values())
    assert code["git_revision"] == git_revision(Path(pd4ml.__file__).resolve().parent)
    validate_record(example_record(code=code))


def test_code_version_says_when_torch_is_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    real_version = importlib.metadata.version

    def version(name: str) -> str:
        if name == "torch":
            raise importlib.metadata.PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    assert code_version()["torch"] == "not installed"


def test_the_source_digest_changes_with_any_edit_committed_or_not(tmp_path: Path) -> None:
    """Two different working trees on one commit must never share a benchmark cell: the
    digest covers every source file's content, tracked or not."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("x = 1\n")
    (package / "sub" / "model.py").write_text("width = 16\n")
    first = source_digest([package])
    assert re.fullmatch(r"[0-9a-f]{16}", first)
    assert source_digest([package]) == first
    (package / "sub" / "model.py").write_text("width = 32\n")
    second = source_digest([package])
    assert second != first
    (package / "sub" / "new.py").write_text("")  # a new (untracked) module
    assert source_digest([package]) not in (first, second)
    (package / "sub" / "new.py").unlink()
    (package / "README.md").write_text("docs\n")  # not source
    assert source_digest([package]) == second
    (package / "sub" / "model.py").rename(package / "model.py")  # same content, other path
    assert source_digest([package]) != second


@needs_git
def test_git_revision_of_a_clean_checkout_is_the_head_commit(checkout: Path) -> None:
    head = git(checkout, "rev-parse", "HEAD")
    assert re.fullmatch(r"[0-9a-f]{40}", head)
    assert git_revision(checkout) == head


@needs_git
def test_git_revision_is_dirty_when_tracked_files_change(checkout: Path) -> None:
    head = git(checkout, "rev-parse", "HEAD")
    (checkout / "new_module.py").write_text("untracked\n")  # untracked: still clean
    assert git_revision(checkout) == head
    (checkout / "__init__.py").write_text("x = 2\n")
    assert git_revision(checkout) == f"{head}-dirty"
    git(checkout, "checkout", "--", "__init__.py")
    (checkout.parents[1] / "README").write_text("changed\n")  # outside the package's tree
    assert git_revision(checkout) == head


@needs_git
def test_git_revision_ignores_git_variables_pointing_elsewhere(
    checkout: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    head = git(checkout, "rev-parse", "HEAD")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "__init__.py").write_text("other\n")
    git(elsewhere, "init", "-q")
    git(elsewhere, "add", ".")
    git(elsewhere, "commit", "-q", "-m", "other")
    assert git(elsewhere, "rev-parse", "HEAD") != head
    monkeypatch.setenv("GIT_DIR", str(elsewhere / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(elsewhere))
    assert git_revision(checkout) == head


def test_git_revision_outside_a_checkout(tmp_path: Path) -> None:
    package = tmp_path / "site-packages" / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    assert git_revision(package) == NOT_A_CHECKOUT == "unknown (not a git checkout)"


@needs_git
def test_git_revision_of_an_untracked_package_inside_a_repository(checkout: Path) -> None:
    """A wheel installed into a virtual environment inside a repository is not that
    repository's code."""
    repository = checkout.parents[1]
    (repository / ".gitignore").write_text(".venv/\n")
    installed = repository / ".venv" / "lib" / "site-packages" / "pkg"
    installed.mkdir(parents=True)
    (installed / "__init__.py").write_text("")
    assert git_revision(installed) == NOT_A_CHECKOUT


def test_git_revision_without_git(checkout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(checkout))  # no git on the PATH
    assert git_revision(checkout) == NOT_A_CHECKOUT


def test_git_calls_time_out_after_5_seconds(
    checkout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    timeouts = []

    def hanging(arguments: list[str], **options: Any) -> subprocess.CompletedProcess[str]:
        timeouts.append(options["timeout"])
        raise subprocess.TimeoutExpired(arguments, options["timeout"])

    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/git")
    monkeypatch.setattr(subprocess, "run", hanging)
    assert git_revision(checkout) == "unknown (git did not answer within 5 s)"
    assert timeouts == [5.0]


# -- hardware -----------------------------------------------------------------------------------


def test_hardware_is_a_valid_hardware_block() -> None:
    block = hardware(3)
    assert set(block) == {"cpu", "cores", "threads", "gpu", "hostname", "platform"}
    assert block["threads"] == 3
    assert block["cores"] >= 1
    assert block["cpu"]
    assert block["platform"] == platform.platform()
    validate_record(example_record(hardware=block))


@pytest.mark.parametrize("threads", [0, -1, True, 1.5])
def test_hardware_rejects_a_bad_thread_count(threads: Any) -> None:
    with pytest.raises(ValueError, match="threads"):
        hardware(threads)


def test_cpu_name_from_cpuinfo_or_platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7763 64-Core Processor\n"
    )
    assert cpu_name(cpuinfo) == "AMD EPYC 7763 64-Core Processor"
    monkeypatch.setattr(platform, "processor", lambda: "arm")
    assert cpu_name(tmp_path / "missing") == "arm"
    monkeypatch.setattr(platform, "processor", lambda: "")
    monkeypatch.setattr(platform, "machine", lambda: "")
    assert cpu_name(tmp_path / "missing") == "unknown"


def fake_torch(names: list[str]) -> types.ModuleType:
    module = types.ModuleType("torch")
    module.cuda = types.SimpleNamespace(  # type: ignore[attr-defined]
        is_available=lambda: bool(names),
        device_count=lambda: len(names),
        get_device_name=lambda index: names[index],
    )
    return module


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        ([], None),
        (["NVIDIA H200"], "NVIDIA H200"),
        (["NVIDIA H200", "NVIDIA H200"], "2 × NVIDIA H200"),
        (["NVIDIA A100", "NVIDIA T4"], "NVIDIA A100, NVIDIA T4"),
    ],
)
def test_the_gpu_is_named_when_cuda_is_available(
    names: list[str], expected: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch", fake_torch(names))
    assert hardware(1)["gpu"] == expected


def test_no_gpu_without_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    assert hardware(1)["gpu"] is None


# -- memory -------------------------------------------------------------------------------------

needs_proc = pytest.mark.skipif(memory_now() is None, reason="no /proc/self/status")


@needs_proc
def test_allocated_memory_raises_the_anonymous_peak() -> None:
    baseline = memory_now()
    assert baseline is not None
    with MemorySampler() as memory:
        array = np.ones(200 * MB // 8)  # touches every page
        time.sleep(0.2)
        del array
    assert memory.samples >= 3  # the thread sampled inside the block
    assert memory.peak_anonymous_rss_bytes - baseline[1] >= 150 * MB
    assert memory.peak_rss_bytes >= memory.peak_anonymous_rss_bytes
    assert memory.to_json() == {
        "peak_rss_bytes": memory.peak_rss_bytes,
        "peak_anonymous_rss_bytes": memory.peak_anonymous_rss_bytes,
        "start_rss_bytes": memory.start_rss_bytes,
        "start_anonymous_rss_bytes": memory.start_anonymous_rss_bytes,
    }
    assert memory.start_anonymous_rss_bytes < memory.peak_anonymous_rss_bytes - 150 * MB
    validate_record(example_record(memory=memory.to_json()))


@needs_proc
def test_a_memory_mapped_file_does_not_raise_the_anonymous_peak(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    chunk = np.full(8 * MB, 7, dtype=np.uint8).tobytes()
    with open(path, "wb") as handle:
        for _ in range(25):
            handle.write(chunk)
    del chunk
    baseline = memory_now()
    assert baseline is not None
    with MemorySampler() as memory:
        mapped = np.memmap(path, dtype=np.uint8, mode="r")
        assert int(mapped.sum(dtype=np.uint64)) == 7 * 200 * MB  # every page read
        time.sleep(0.1)
        del mapped
    assert memory.peak_anonymous_rss_bytes - baseline[1] <= 50 * MB
    assert memory.peak_rss_bytes - baseline[0] >= 150 * MB  # the mapped pages were resident


def test_memory_now_reads_the_status_file(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmHWM:\t  999 kB\nVmRSS:\t  2048 kB\nRssAnon:\t  1024 kB\n")
    assert memory_now(status) == (2048 * 1024, 1024 * 1024)
    assert memory_now(tmp_path / "missing") is None


def test_without_proc_the_peaks_are_the_lifetime_maximum(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("resource")
    monkeypatch.setattr(provenance, "memory_now", lambda: None)
    with MemorySampler(interval=0.01) as memory:
        time.sleep(0.03)
    assert memory.peak_rss_bytes > 10 * MB  # a Python process with numpy
    assert memory.peak_anonymous_rss_bytes == memory.peak_rss_bytes


def test_a_sampler_measures_one_block() -> None:
    with MemorySampler() as memory:
        pass
    with pytest.raises(RuntimeError, match="one block"):
        memory.__enter__()
    with pytest.raises(ValueError, match="interval"):
        MemorySampler(interval=0)


# -- time ---------------------------------------------------------------------------------------


def test_utc_now_is_iso_8601_utc() -> None:
    stamp = utc_now()
    parsed = datetime.fromisoformat(stamp)
    assert parsed.utcoffset() == timedelta(0)
    assert abs(parsed - datetime.now(timezone.utc)) < timedelta(seconds=5)
    timing = dict(example_record()["timing"], started_at=stamp, finished_at=utc_now())
    validate_record(example_record(timing=timing))
