"""The real-data samples: skipped with a reason in a lone clone, a failure under CI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import conftest


def test_missing_sample_is_skipped_with_its_name_outside_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(conftest, "SHARED", tmp_path / "no-shared")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"no-shared/higgsml/sample\.csv"):
        conftest.shared_file("higgsml", "sample.csv")


def test_missing_sample_fails_under_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(conftest, "SHARED", tmp_path / "no-shared")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="under CI=true"):
        conftest.shared_file("higgsml", "sample.csv")


def test_present_sample_is_returned(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "higgsml").mkdir()
    (tmp_path / "higgsml" / "sample.csv").write_text("x")
    monkeypatch.setattr(conftest, "SHARED", tmp_path)
    assert conftest.shared_file("higgsml", "sample.csv") == tmp_path / "higgsml" / "sample.csv"
