"""The HTML report in a real browser: headless Chromium (Playwright) loads it without errors,
every plot decodes and every table renders; a full-page screenshot is kept.

Needs Debian's Chromium (``apt-get install chromium``; ``.ci/run`` installs it). Set
``PD4ML_SCREENSHOT_DIR`` to keep a copy of the screenshot.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pd4ml.bench import report
from tests.test_bench_leaderboard import example_record, png_size

#: Read at import: the suite's autouse fixture removes every PD4ML_* variable before a test runs.
SCREENSHOT_DIR = os.environ.get("PD4ML_SCREENSHOT_DIR")

INSTALL_HINT = (
    "Chromium is needed for the browser test of the HTML report but was not found "
    "(looked for `chromium` on PATH and /usr/bin/chromium). Install it: on Debian/Ubuntu "
    "`sudo apt-get install chromium` (.ci/run installs it before running the tests)."
)


#: Debian's Chromium, used when ``chromium`` is not on PATH.
DEBIAN_CHROMIUM = Path("/usr/bin/chromium")


def chromium_executable() -> str:
    """The Chromium binary, or a test failure saying how to install it (never a skip)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and DEBIAN_CHROMIUM.exists():
        found = str(DEBIAN_CHROMIUM)
    if found is None:
        pytest.fail(INSTALL_HINT)
    return found


@dataclass
class PageCheck:
    """What the browser saw: problems found (empty when the page is sound) and counts."""

    problems: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)
    tables: int = 0


def check_page(index: Path, screenshot: Path) -> PageCheck:
    """Open ``index`` in headless Chromium, check images and tables, save a screenshot."""
    from playwright.sync_api import sync_playwright

    check = PageCheck()
    arguments = ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_executable(), headless=True, args=arguments
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on(
                "console", lambda message: check.console.append(f"{message.type}: {message.text}")
            )
            page.on("pageerror", lambda error: check.problems.append(f"page error: {error}"))
            page.on(
                "requestfailed",
                lambda request: check.problems.append(f"request failed: {request.url}"),
            )
            page.goto(index.resolve().as_uri(), wait_until="load")
            check.images = page.evaluate(
                """() => Array.from(document.images).map(image => ({
                    src: image.getAttribute("src"), alt: image.getAttribute("alt") || "",
                    complete: image.complete, naturalWidth: image.naturalWidth}))"""
            )
            for image in check.images:
                if not image["complete"] or image["naturalWidth"] <= 0:
                    check.problems.append(f"broken image {image['src']}")
                if not image["alt"].strip():
                    check.problems.append(f"image without alt text {image['src']}")
            tables = page.locator("table")
            check.tables = tables.count()
            for number in range(check.tables):
                table = tables.nth(number)
                box = table.bounding_box()
                rows = table.locator("tbody tr").count()
                caption = table.locator("caption").count()
                if not table.is_visible() or box is None or box["height"] <= 0:
                    check.problems.append(f"table {number} is not visible")
                if rows == 0:
                    check.problems.append(f"table {number} has no rows")
                if caption != 1:
                    check.problems.append(f"table {number} has no caption")
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    check.problems += [line for line in check.console if line.startswith("error")]
    return check


def browser_records() -> list[dict[str, Any]]:
    """One classification and one regression dataset, each with archive and synthetic runs."""
    return [
        *(example_record(seed=seed, metrics=None) for seed in range(2)),
        example_record(model="graphnet", seed=0, lr_finder=True),
        example_record(seed=0, synthetic=True),
        example_record(dataset="airshower", seed=0),
        example_record(dataset="airshower", seed=1),
        example_record(dataset="airshower", seed=2, status="failed"),
        example_record(dataset="airshower", seed=0, synthetic=True, model="cnn"),
    ]


@pytest.fixture(scope="module")
def rendered_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return report.render_html(browser_records(), tmp_path_factory.mktemp("report") / "report")


def test_report_renders_in_chromium_without_errors(rendered_report: Path, tmp_path: Path) -> None:
    screenshot = tmp_path / "report.png"
    check = check_page(rendered_report, screenshot)
    assert check.problems == []
    assert len(check.images) >= 8 and check.tables == 8
    width, height = png_size(screenshot)
    assert width == 1280 and height > 2000  # the full page, not just the viewport
    assert screenshot.stat().st_size > 50_000
    if SCREENSHOT_DIR:
        Path(SCREENSHOT_DIR).mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, Path(SCREENSHOT_DIR) / "pd4ml-report.png")


def test_a_broken_plot_is_caught(rendered_report: Path, tmp_path: Path) -> None:
    copy = tmp_path / "report"
    shutil.copytree(rendered_report.parent, copy)
    removed = sorted((copy / "plots").glob("*.png"))[0]
    removed.unlink()
    check = check_page(copy / "index.html", tmp_path / "broken.png")
    assert f"broken image plots/{removed.name}" in check.problems


def test_missing_chromium_fails_with_the_install_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(sys.modules[__name__], "DEBIAN_CHROMIUM", tmp_path / "no-chromium")
    with pytest.raises(pytest.fail.Exception, match=r"apt-get install chromium"):
        chromium_executable()
