"""The command line: list, info, download, verify, urls, import, cite, cache, demo, bench."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pd4ml.cli import main
from pd4ml.testing import ArchiveServer
from tests.conftest import write_random_file

ROOT = Path(__file__).resolve().parents[1]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["list"], capsys)
    assert code == 0
    for name in ("HiggsML", "TopTagging", "SmartBKG", "Spinodal", "EOS", "Airshower", "CALICE"):
        assert name in out
    assert "65.6 MB" in out and "unpublished" in out


def test_info(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["info", "HiggsML"], capsys)
    assert code == 0
    assert "adler32:e4717bbe" in out and "10.7483/OPENDATA.ATLAS.ZBP2.M5T8" in out
    assert "atlas-higgs-challenge-2014-v2.csv.gz" in out and "CC0" in out


def test_unknown_name_suggests_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["info", "toptaging"], capsys)
    assert code == 2
    assert "did you mean 'top_tagging'" in err


def test_urls(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["urls", "top_tagging"], capsys)
    assert code == 0
    assert "https://zenodo.org/records/2603256/files/train.h5?download=1" in out
    assert "md5:45663819f47c13724f67eb0fd80bfa5c" in out and "pd4ml import top_tagging DIR" in out
    code, out, _ = run(["urls", "higgsml", "--plain"], capsys)
    first = out.splitlines()[0].split("\t")
    assert (
        first[0]
        == "https://opendata.cern.ch/eos/opendata/atlas/higgs-challenge-2014/atlas-higgs-challenge-2014-v2.csv.gz"
    )
    assert first[1:] == ["adler32:e4717bbe", "65630848", "atlas-higgs-challenge-2014-v2.csv.gz"]


def test_cite(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["cite", "top_tagging"], capsys)
    assert code == 0
    assert "doi       = {10.5281/zenodo.2603256}" in out and "1902.09914" in out
    assert "Shared Data and Algorithms" in out
    code, out, _ = run(["cite"], capsys)
    assert "10.1007/s41781-022-00082-6" in out


def serve_fake_top_tagging(server: ArchiveServer, tmp_path: Path) -> None:
    """Stand-in files (random bytes, not the dataset) under the real record id."""
    files = {
        key: write_random_file(tmp_path / "srv" / key, 10_000 + i, seed=i)
        for i, key in enumerate(("train.h5", "val.h5", "test.h5"))
    }
    server.add_zenodo_record(2603256, files)


def test_download_verify_cache_clean(
    server: ArchiveServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    serve_fake_top_tagging(server, tmp_path)
    monkeypatch.setenv("PD4ML_ZENODO_URL", server.url)
    cache = tmp_path / "c"
    code, out, err = run(["--data-dir", str(cache), "download", "TopTagging"], capsys)
    assert code == 0, err
    assert out.count("archive") == 3
    # the record API was asked, and its checksums (not the third-party ones) were used
    assert server.count("/api/records/2603256") == 1
    code, out, _ = run(["--data-dir", str(cache), "verify", "top_tagging"], capsys)
    assert code == 0 and out.count("ok") == 3
    (cache / "top_tagging" / "v0" / "raw" / "val.h5").write_bytes(b"broken")
    code, out, _ = run(["--data-dir", str(cache), "verify"], capsys)
    assert code == 1 and "val.h5" in out
    code, out, _ = run(["--data-dir", str(cache), "list"], capsys)
    assert "partly" in out
    code, out, _ = run(["--data-dir", str(cache), "cache"], capsys)
    assert code == 0 and "top_tagging" in out
    code, out, _ = run(["--data-dir", str(cache), "cache", "clean", "top_tagging"], capsys)
    assert code == 0 and not (cache / "top_tagging").exists()


def test_download_failure_exit_code(
    server: ArchiveServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PD4ML_CERN_OPENDATA_URL", server.url)  # serves nothing: 404
    code, _, _ = run(["--data-dir", str(tmp_path / "c"), "download", "higgsml"], capsys)
    assert code == 1


def test_import_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wrong = tmp_path / "elsewhere"
    wrong.mkdir()
    (wrong / "2_spinodal_29k.npz").write_bytes(b"not the file")
    code, _, err = run(
        ["--data-dir", str(tmp_path / "c"), "import", "spinodal", str(wrong)], capsys
    )
    assert code == 1 and "nothing was placed" in err
    assert not (tmp_path / "c").exists()


def test_offline_download_fails_fast(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PD4ML_OFFLINE", "1")
    code, _, err = run(["--data-dir", str(tmp_path / "c"), "download", "higgsml"], capsys)
    assert code == 1 and "PD4ML_OFFLINE=1" in err and "pd4ml import higgsml" in err


def test_demo_runs_the_bench_on_synthetic_files_and_cite_results(tmp_path: Path) -> None:
    """``pd4ml demo`` is ``python -m pd4ml.bench --all --source demo --profile quick`` (here
    narrowed to one cell); ``pd4ml cite --results`` cites what its records used."""
    out = tmp_path / "demo"
    result = subprocess.run(
        [
            *(sys.executable, "-m", "pd4ml", "demo", "--datasets", "higgsml", "--models", "fcn"),
            *("--seeds", "1", "--out", str(out), "--progress", "plain"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "SYNTHETIC" in result.stdout and "1 cell(s) run" in result.stdout
    record = json.loads((out / "results" / "higgsml" / "fcn" / "seed-0.json").read_text())
    assert record["cell"]["source"] == "demo" and record["dataset"]["synthetic"] is True
    assert (out / "LEADERBOARD.md").is_file() and (out / "report" / "index.html").is_file()
    cited = subprocess.run(
        [sys.executable, "-m", "pd4ml", "cite", "--results", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert cited.returncode == 0, cited.stderr
    assert "@" in cited.stdout and "Benato" in cited.stdout
    assert "10.7483/OPENDATA.ATLAS.ZBP2.M5T8" in cited.stdout  # the HiggsML record's DOI
    bench = subprocess.run(
        [sys.executable, "-m", "pd4ml", "bench", "report", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert bench.returncode == 0 and "LEADERBOARD.md" in bench.stdout, bench.stderr
