"""The leaderboard renderers (Markdown, LaTeX, HTML), published figures and results BibTeX."""

from __future__ import annotations

import copy
import json
import math
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pd4ml.bench import leaderboard, report
from pd4ml.bench.citations import results_bibtex, split_bibtex
from pd4ml.bench.leaderboard import (
    MIXED_NOTICE,
    SYNTHETIC_NOTICE,
    format_number,
    group_records,
    latex_escape,
    render_latex,
    render_markdown,
    write_leaderboard,
)
from pd4ml.bench.published import NO_PUBLISHED_FIGURE, PAPERS, PUBLISHED
from pd4ml.bench.records import validate_record

# --------------------------------------------------------------------------------------------
# Records built per the record schema (pd4ml-bench-record/1)

KEY_A = "0123456789abcdef"
KEY_B = "fedcba9876543210"


def example_record(
    dataset: str = "top_tagging",
    model: str = "fcn",
    seed: int = 0,
    *,
    synthetic: bool = False,
    status: str = "finished",
    key: str = KEY_A,
    metrics: dict[str, Any] | None = None,
    hostname: str = "node-1",
    curves: bool = True,
    lr_finder: bool = False,
    train_seconds: float = 10.0,
) -> dict[str, Any]:
    """One record with the structure of the record schema; numbers are deterministic."""
    classification = dataset not in ("airshower", "calice_ahcal", "ild_photon_showers")
    task = "classification" if classification else "regression"
    rng = np.random.default_rng(seed + 17 * len(model))
    complete = metrics is None
    if metrics is None:
        metrics = (
            {"accuracy": 0.9, "auc": 0.95, "rejection_30": 100.0, "rejection_50": 40.0, "bce": 0.3}
            if classification
            else {"mse": 4.0, "mae": 1.5, "bias": 0.1, "resolution": 2.0, "resolution_68": 1.9}
        )
    record: dict[str, Any] = {
        "schema": "pd4ml-bench-record/1",
        "status": status,
        "cell": {
            "dataset": dataset,
            "model": model,
            "seed": seed,
            "profile": "quick",
            "source": "demo" if synthetic else "archive",
            "key": key,
        },
        "dataset": {
            "name": dataset,
            "display_name": {"top_tagging": "TopTagging", "airshower": "Airshower"}.get(
                dataset, dataset
            ),
            "version": "synthetic-1" if synthetic else "v0",
            "doi": None if synthetic else "10.5281/zenodo.2603256",
            "archive": "loopback archive server" if synthetic else "zenodo record 2603256",
            "source": "synthetic" if synthetic else "shared+archive",
            "synthetic": synthetic,
            "files": {"train.h5": "sha256:" + "ab" * 32},
            "prepare_version": 1,
            "params": {},
            "n_train": 1000,
            "n_val": 200,
            "n_test": 300,
            "test_splits": ["test"],
        },
        "code": {
            "pd4ml_version": "0.4.0",
            "git_revision": "9bd51bb1234567890abcdef1234567890abcdef0",
            "source_digest": "0123456789abcdef",
            "python": "3.11.7",
            "torch": "2.5.0",
            "numpy": "2.1.0",
        },
        "model": {
            "name": model,
            "kind": "shared",
            "architecture": model.upper(),
            "parameters": 12345,
            "config": {},
        },
        "recipe": {"epochs": 3},
        "seed": seed,
        "hardware": {
            "cpu": "AMD EPYC 7B13",
            "cores": 2,
            "threads": 1,
            "gpu": None,
            "hostname": hostname,
            "platform": "Linux-6.1-x86_64",
        },
        "timing": {
            "prepare_seconds": 1.0,
            "train_seconds": train_seconds,
            "inference_seconds": 0.5,
            "total_seconds": train_seconds + 1.5,
            "started_at": "2025-01-01T00:00:00Z",
            "finished_at": "2025-01-01T00:00:12Z",
        },
        "memory": {"peak_rss_bytes": 10**9, "peak_anonymous_rss_bytes": 9 * 10**8},
        "task": task,
        "metrics": metrics if status == "finished" else {},
        "curves": {},
        "history": [
            {"epoch": epoch, "train_loss": 1.0 / (epoch + 1), "learning_rate": 1e-3}
            | ({"val_loss": 1.1 / (epoch + 1)} if epoch else {})
            for epoch in range(3)
        ],
        "lr_finder": None,
        "failure": None,
    }
    if status == "finished":
        record["predictions"] = {
            "file": f"seed-{seed}.predictions.npy",
            "sha256": "0" * 64,
            "splits": ["test"],
            "n_events": 1000,
        }
    if curves and status == "finished":
        if classification:
            fpr = np.linspace(0, 1, 51) ** 2
            record["curves"]["roc"] = {
                "false_positive_rate": fpr.tolist(),
                "true_positive_rate": np.sqrt(np.linspace(0, 1, 51)).tolist(),
            }
        else:
            edges = np.linspace(-5, 5, 21)
            counts = np.histogram(rng.normal(size=500), bins=edges)[0]
            centres = np.linspace(1, 10, 6)
            record["curves"]["residuals"] = {"edges": edges.tolist(), "counts": counts.tolist()}
            record["curves"]["resolution_vs_truth"] = {
                "centres": centres.tolist(),
                "bias": (0.01 * centres).tolist(),
                "resolution": (0.5 + 0.1 * centres).tolist(),
                "counts": [80] * 6,
            }
            if dataset in ("calice_ahcal", "ild_photon_showers"):
                record["curves"]["energy_resolution"] = {
                    "centres": centres.tolist(),
                    "sigma_over_e": (0.5 / np.sqrt(centres)).tolist(),
                    "counts": [80] * 6,
                }
    if lr_finder:
        rates = np.logspace(-6, 0, 30)
        record["lr_finder"] = {
            "learning_rates": rates.tolist(),
            "smoothed": (1 + (np.log10(rates) + 3) ** 2 / 10).tolist(),
            "suggestion": 1e-3,
        }
    if synthetic:
        record["synthetic_notice"] = SYNTHETIC_NOTICE
    if status == "failed":
        record["failure"] = {
            "type": "RuntimeError",
            "message": "CUDA out of memory\nsecond line of the message",
            "traceback": "Traceback (most recent call last):\n  ...",
        }
    if complete:  # a test's own partial metrics do not make a complete record
        validate_record(record, where=f"example {dataset}/{model}/seed-{seed}")
    return record


def classification_seeds(synthetic: bool = False) -> list[dict[str, Any]]:
    accuracies = (0.91, 0.92, 0.96)
    return [
        example_record(
            seed=seed,
            synthetic=synthetic,
            metrics={
                "accuracy": accuracy,
                "auc": 0.95 + seed / 100,
                "rejection_30": 100.0 + 10 * seed,
                "rejection_50": "inf" if seed == 2 else 40.0,
                "bce": 0.3,
            },
            train_seconds=10.0 + seed,
        )
        for seed, accuracy in enumerate(accuracies)
    ]


def without_plots(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``records`` without curves or history: the report then draws nothing (fast tests)."""
    stripped = copy.deepcopy(records)
    for record in stripped:
        record["curves"], record["history"], record["lr_finder"] = {}, [], None
    return stripped


def write_records(directory: Path, records: list[dict[str, Any]]) -> Path:
    for record in records:
        cell = record["cell"]
        path = directory / "results" / cell["dataset"] / cell["model"] / f"seed-{cell['seed']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record))
    return directory


def section_of(markdown: str, title_part: str) -> str:
    """The Markdown text from the heading containing ``title_part`` to the next ``## ``."""
    start = next(
        match.start()
        for match in re.finditer(r"^## .*$", markdown, re.MULTILINE)
        if title_part in match.group(0)
    )
    following = re.search(r"^## ", markdown[start + 3 :], re.MULTILINE)
    return markdown[start : start + 3 + following.start()] if following else markdown[start:]


def table_rows(text: str) -> list[list[str]]:
    """The body rows of the first Markdown table in ``text`` (the leaderboard, not published)."""
    lines = text.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith("| model"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("| "):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


# --------------------------------------------------------------------------------------------
# Statistics and formatting


def test_mean_and_std_over_seeds_match_numpy() -> None:
    markdown = render_markdown(classification_seeds())
    accuracy = np.array([0.91, 0.92, 0.96])
    auc = np.array([0.95, 0.96, 0.97])
    mean, std = accuracy.mean(), accuracy.std(ddof=1)
    assert (f"{mean:.4f}", f"{std:.2g}") == ("0.9300", "0.026")
    assert "0.9300 ± 0.026" in markdown
    assert f"{auc.mean():.4f} ± {auc.std(ddof=1):.2f}" == "0.9600 ± 0.01"
    assert "0.9600 ± 0.010" in markdown
    rejection = np.array([100.0, 110.0, 120.0])
    assert f"{rejection.mean():.1f}" == "110.0" and "110.0 ± 10" in markdown
    assert "∞ (1 of 3 seeds ∞)" in markdown  # one seed had no background left at ε_S = 0.5
    assert "| 11.00 |" in markdown  # mean train time of 10, 11 and 12 s
    row = table_rows(section_of(markdown, "TopTagging"))[0]
    assert row[:3] == ["fcn", "quick", "3"]
    assert "12,345" in row and "v0" in row and "0.4.0 (9bd51bb12)" in row


def test_one_seed_shows_a_dash_for_the_std() -> None:
    markdown = render_markdown([example_record(metrics={"accuracy": 0.875, "auc": 0.5})])
    assert "0.8750 ± —" in markdown and "0.5000 ± —" in markdown
    # metrics a record lacks are shown as absent, not as zero
    assert "| — |" in markdown


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.98581, "0.9858"),
        (1615.3, "1615"),
        (9.99996, "10.00"),
        (0.000123456, "0.0001235"),
        (0.0000123, "1.230e-05"),
        (123456789.0, "1.235e+08"),
        (0.0, "0"),
        (math.inf, "∞"),
        (-math.inf, "−∞"),
        (math.nan, "NaN"),
        (-0.0421, "-0.04210"),
    ],
)
def test_numbers_have_four_significant_digits(value: float, text: str) -> None:
    assert format_number(value) == text


# --------------------------------------------------------------------------------------------
# Grouping


def test_two_cell_keys_of_one_model_are_two_rows() -> None:
    records = [
        example_record(seed=0, key=KEY_A, metrics={"accuracy": 0.8}),
        example_record(seed=1, key=KEY_A, metrics={"accuracy": 0.9}),
        example_record(seed=0, key=KEY_B, metrics={"accuracy": 0.5}),
    ]
    markdown = render_markdown(records)
    rows = table_rows(section_of(markdown, "TopTagging"))
    assert [row[0] for row in rows] == ["fcn [01234567]", "fcn [fedcba98]"]
    assert rows[0][2] == "2" and rows[0][3].startswith("0.8500 ± 0.071")
    assert rows[1][2] == "1" and rows[1][3] == "0.5000 ± —"


def test_synthetic_records_carry_the_banner_everywhere(tmp_path: Path) -> None:
    records = classification_seeds(synthetic=True)
    markdown = render_markdown(records)
    assert markdown.splitlines()[2] == f"> **⚠ {SYNTHETIC_NOTICE}**"
    assert "SYNTHETIC data" in section_of(markdown, "TopTagging")
    latex = render_latex(records)
    head = latex.split("\\begin{table}")[0]
    assert "SYNTHETIC data: these numbers are not physics results" in head
    assert re.search(r"\\caption\{SYNTHETIC data: these numbers are not physics results", latex)
    html = report.render_html(without_plots(records), tmp_path / "report").read_text()
    body = html.split("<body>")[1]
    assert body.index('class="banner"') < body.index("<h2>Provenance</h2>")
    assert SYNTHETIC_NOTICE in body


def test_archive_only_records_have_no_synthetic_notice(tmp_path: Path) -> None:
    records = classification_seeds()
    assert "SYNTHETIC" not in render_markdown(records)
    assert "SYNTHETIC" not in render_latex(records)
    assert "SYNTHETIC" not in report.render_html(without_plots(records), tmp_path / "r").read_text()


def test_synthetic_and_archive_records_are_separate_and_never_averaged(tmp_path: Path) -> None:
    archive = classification_seeds()
    synthetic = [
        example_record(seed=seed, synthetic=True, metrics={"accuracy": 0.5, "auc": 0.5})
        for seed in range(2)
    ]
    markdown = render_markdown(archive + synthetic)
    top = markdown.split("## Provenance")[0]
    assert SYNTHETIC_NOTICE in top and MIXED_NOTICE in top
    archive_section = section_of(markdown, "TopTagging (top_tagging) — archive data")
    synthetic_section = section_of(markdown, "TopTagging (top_tagging) — SYNTHETIC data")
    assert table_rows(archive_section)[0][3] == "0.9300 ± 0.026"
    assert table_rows(synthetic_section)[0][3] == "0.5000 ± 0"
    mixed_mean = np.mean([0.91, 0.92, 0.96, 0.5, 0.5])
    assert format_number(float(mixed_mean)) not in markdown
    sections = group_records(archive + synthetic)
    assert [(s.dataset, s.synthetic, len(s.records)) for s in sections] == [
        ("top_tagging", False, 3),
        ("top_tagging", True, 2),
    ]
    latex = render_latex(archive + synthetic)
    assert latex.count("\\begin{tabular}") == 4  # two result tables, two published tables
    html = report.render_html(without_plots(archive + synthetic), tmp_path / "report").read_text()
    assert 'id="top-tagging-archive-data"' in html and 'id="top-tagging-synthetic-data"' in html
    assert MIXED_NOTICE in html


def test_failed_cells_are_listed_with_the_first_line_of_their_error(tmp_path: Path) -> None:
    records = [
        *classification_seeds(),
        example_record(seed=3, status="failed"),
        example_record(model="graphnet", seed=0, status="failed"),
    ]
    markdown = render_markdown(records)
    failed = markdown.split("### Failed cells")[1].split("###")[0]
    assert (
        "top_tagging / fcn / seed 3 (quick, key 01234567): RuntimeError: CUDA out of memory"
        in failed
    )
    assert "top_tagging / graphnet / seed 0" in failed
    assert "second line" not in markdown
    rows = {row[0]: row for row in table_rows(section_of(markdown, "TopTagging"))}
    assert rows["fcn"][2] == "3 (+1 failed)" and rows["fcn"][3] == "0.9300 ± 0.026"
    assert rows["graphnet"][2] == "0 (+1 failed)" and rows["graphnet"][3] == "failed"
    assert "CUDA out of memory" in render_latex(records)
    html = report.render_html(without_plots(records), tmp_path / "report").read_text()
    assert "seed 3 (quick, key 01234567): RuntimeError: CUDA out of memory" in html


def test_only_failed_records_render(tmp_path: Path) -> None:
    records = [example_record(status="failed")]
    assert "failed" in render_markdown(records)
    render_latex(records)
    index = report.render_html(records, tmp_path / "report")
    assert "No curves in these records to plot." in index.read_text()


def test_provenance_lists_every_machine_and_dataset_doi() -> None:
    records = [
        example_record(seed=0, hostname="node-1"),
        example_record(seed=1, hostname="cluster-7"),
    ]
    markdown = render_markdown(records)
    provenance = markdown.split("## Provenance")[1].split("## TopTagging")[0]
    assert "hardware (merged runs)" in provenance
    assert "node-1: AMD EPYC 7B13, 2 cores, torch threads 1, no GPU" in provenance
    assert "cluster-7: AMD EPYC 7B13" in provenance
    assert "version v0, DOI 10.5281/zenodo.2603256" in provenance
    assert "pd4ml 0.4.0 (9bd51bb12), python 3.11.7, torch 2.5.0" in provenance
    assert "quick" in provenance and "archive (dataset from shared+archive)" in provenance


def test_duplicate_seed_from_two_directories_is_counted_once() -> None:
    records = [
        example_record(seed=0, metrics={"accuracy": 0.8}),
        example_record(seed=0, metrics={"accuracy": 0.8}, hostname="other"),
        example_record(seed=1, metrics={"accuracy": 0.9}),
    ]
    markdown = render_markdown(records)
    assert table_rows(section_of(markdown, "TopTagging"))[0][2] == "2"
    assert "seed(s) 0 appear in more than one run directory" in markdown


def test_regression_metrics_and_higgsml_ams() -> None:
    markdown = render_markdown([example_record(dataset="airshower")])
    header = next(line for line in markdown.splitlines() if line.startswith("| model"))
    assert "| MSE | resolution | bias |" in header and "AUC" not in header
    higgs = example_record(
        dataset="higgsml",
        metrics={"accuracy": 0.8, "auc": 0.9, "rejection_30": 50, "rejection_50": 20, "ams": 3.5}
        | {"ams_public": 3.4},
    )
    assert "| AMS (private) | AMS (public) |" in render_markdown([higgs])
    in_units = example_record(dataset="airshower")
    in_units["dataset"]["target_units"] = "g/cm²"
    header = next(
        line for line in render_markdown([in_units]).splitlines() if line.startswith("| model")
    )
    assert "| MSE in (g/cm²)² | resolution in g/cm² | bias in g/cm² |" in header


# --------------------------------------------------------------------------------------------
# Published figures


def test_published_figures_are_shown_beside_the_table() -> None:
    markdown = render_markdown(classification_seeds())
    published = markdown.split("### Published figures: TopTagging")[1]
    assert "| ParticleNet | 1/ε_B @ ε_S=0.3 | 1615 ± 93 |" in published
    assert "arXiv:1902.08570" in published and "recalled, verify" in published
    assert "accuracy (ratio to reference) | ≈0.995 × reference (ParticleNet)" in published
    assert "read from the paper's summary figure" in published


def test_dataset_without_published_figures_says_so() -> None:
    record = example_record(dataset="ild_photon_showers")
    assert NO_PUBLISHED_FIGURE in render_markdown([record])
    assert NO_PUBLISHED_FIGURE in render_latex([record])


def test_published_table_covers_every_dataset_with_cited_papers() -> None:
    assert set(PUBLISHED) == {
        "top_tagging",
        "smartbkg",
        "spinodal",
        "eos",
        "airshower",
        "calice_ahcal",
        "higgsml",
        "ild_photon_showers",
    }
    for dataset, figures in PUBLISHED.items():
        for figure in figures:
            assert figure.dataset == dataset and figure.note and figure.source
            if figure.bibtex_key:
                assert split_bibtex(PAPERS[figure.bibtex_key])[0][0] == figure.bibtex_key
    ratios = [figure for figures in PUBLISHED.values() for figure in figures if figure.is_ratio]
    assert len(ratios) == 10 and all("ratio to the reference" in f.note for f in ratios)


# --------------------------------------------------------------------------------------------
# LaTeX


def test_latex_escapes_and_uses_booktabs() -> None:
    record = example_record(model="fcn_large", metrics={"accuracy": 0.9})
    latex = render_latex([record])
    assert "fcn\\_large" in latex and "fcn_large &" not in latex
    for rule in ("\\toprule", "\\midrule", "\\bottomrule"):
        assert latex.count(rule) == 2
    assert "0.9000 $\\pm$ ---" in latex
    assert "ParticleNet & $1/\\varepsilon_B$ ($\\varepsilon_S = 0.3$) & 1615 $\\pm$ 93" in latex
    assert latex_escape("a_b & 50% #1 {x} ~ ^ $") == (
        "a\\_b \\& 50\\% \\#1 \\{x\\} \\textasciitilde{} \\textasciicircum{} \\$"
    )


def _strip_comments(latex: str) -> str:
    return "\n".join(re.sub(r"(?<!\\)%.*$", "", line) for line in latex.splitlines())


def test_latex_is_structurally_sound(tmp_path: Path) -> None:
    records = [
        *classification_seeds(),
        *classification_seeds(synthetic=True),
        example_record(dataset="airshower"),
        example_record(seed=4, status="failed"),
    ]
    latex = _strip_comments(render_latex(records))
    depth = 0
    for character in re.sub(r"\\[{}$%&_#]", "", latex):
        depth += {"{": 1, "}": -1}.get(character, 0)
        assert depth >= 0
    assert depth == 0
    unescaped = re.sub(r"\\\$", "", latex)
    assert unescaped.count("$") % 2 == 0
    environments = re.findall(r"\\(begin|end)\{(\w+)\}", latex)
    stack: list[str] = []
    for kind, name in environments:
        if kind == "begin":
            stack.append(name)
        else:
            assert stack.pop() == name
    assert not stack
    tables = re.findall(r"\\begin\{tabular\}\{([^\n]*?)\}\n(.*?)\\end\{tabular\}", latex, re.S)
    assert len(tables) == 6
    for spec, body in tables:
        n_columns = len(re.sub(r"\{[^}]*\}", "", spec))
        lines = [line.strip() for line in body.splitlines() if line.strip()]
        assert lines[0] == "\\toprule" and lines[2] == "\\midrule" and lines[-1] == "\\bottomrule"
        for line in [lines[1], *lines[3:-1]]:
            assert line.endswith("\\\\")
            assert len(re.split(r"(?<!\\)&", line)) == n_columns, line
    text = re.sub(r"\$[^$]*\$", "", re.sub(r"\\[$_#%&{}]", "", latex))
    assert not re.search(r"[_#%]", text)
    if shutil.which("pdflatex"):
        document = tmp_path / "table.tex"
        document.write_text(
            "\\documentclass{article}\\usepackage[utf8]{inputenc}\\usepackage{booktabs}"
            "\\usepackage{graphicx}\\begin{document}\\input{leaderboard}\\end{document}\n"
        )
        (tmp_path / "leaderboard.tex").write_text(render_latex(records))
        subprocess.run(
            ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "table.tex"],
            cwd=tmp_path,
            check=True,
            capture_output=True,
            timeout=60,
        )


# --------------------------------------------------------------------------------------------
# HTML report and its plots


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG, after checking its signature and chunk CRCs."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    offset, chunks = 8, []
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"{path}: bad CRC in chunk {kind!r}"
        chunks.append(kind)
        offset += 12 + length
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND" and b"IDAT" in chunks
    ihdr = data[16:24]
    width, height = struct.unpack(">II", ihdr)
    return width, height


def report_records() -> list[dict[str, Any]]:
    """Every kind of plot once, plus sections and rows that have nothing to plot."""
    calorimeter = example_record(dataset="calice_ahcal", seed=0)
    calorimeter["history"] = []
    return [
        *classification_seeds(),
        example_record(seed=0, synthetic=True, lr_finder=True, curves=False),
        example_record(model="graphnet", seed=0, curves=False),
        example_record(dataset="airshower", seed=0, lr_finder=True),
        example_record(dataset="airshower", seed=1),
        *without_plots([example_record(dataset="airshower", synthetic=True, model="cnn")]),
        example_record(dataset="airshower", seed=1, status="failed"),
        calorimeter,
    ]


def test_html_report_has_tables_with_captions_and_valid_plots(tmp_path: Path) -> None:
    index = report.render_html(report_records(), tmp_path / "report")
    html = index.read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert "<script" not in html and "http://" not in html and "https://" not in html
    assert html.count("<table>") == html.count("<caption>") == 10
    images = re.findall(r'<img src="([^"]+)" alt="([^"]+)"', html)
    assert len(images) == html.count("<img ")
    names = {Path(src).name for src, _ in images}
    for stem in ("roc", "rejection", "training"):
        assert f"top-tagging-archive-data-{stem}.png" in names
    assert "top-tagging-archive-data-lr-finder.png" not in names  # no record has one
    assert "top-tagging-synthetic-data-lr-finder.png" in names
    for stem in ("residuals", "resolution", "training", "lr-finder"):
        assert f"airshower-archive-data-{stem}.png" in names
    assert "airshower-archive-data-energy-resolution.png" not in names  # not a calorimeter
    assert "calice-ahcal-archive-data-energy-resolution.png" in names
    assert not any(name.startswith("airshower-synthetic") for name in names)
    assert "No curves in these records to plot." in html
    for src, alt in images:
        assert src.startswith("plots/") and alt.strip()
        width, height = png_size(index.parent / src)
        assert (width, height) == (600, 420)
    assert {path.name for path in (index.parent / "plots").iterdir()} == names


def test_write_leaderboard_writes_all_three_outputs(tmp_path: Path) -> None:
    directory = write_records(tmp_path / "run", without_plots(classification_seeds()))
    records = leaderboard.load_records([directory])
    assert len(records) == 3
    paths = write_leaderboard(records, tmp_path / "run")
    assert paths == {
        "markdown": tmp_path / "run" / "LEADERBOARD.md",
        "latex": tmp_path / "run" / "leaderboard.tex",
        "html": tmp_path / "run" / "report" / "index.html",
    }
    assert "0.9300 ± 0.026" in paths["markdown"].read_text()
    assert "0.9300 $\\pm$ 0.026" in paths["latex"].read_text()
    assert "0.9300 ± 0.026" in paths["html"].read_text()


def test_render_handles_records_without_optional_parts(tmp_path: Path) -> None:
    record = example_record(curves=False)
    record["history"] = []
    del record["curves"]
    index = report.render_html([copy.deepcopy(record)], tmp_path / "report")
    assert "No curves in these records to plot." in index.read_text()


# --------------------------------------------------------------------------------------------
# Citations


def test_results_bibtex_cites_datasets_papers_and_pd4ml_once(tmp_path: Path) -> None:
    directory = write_records(
        tmp_path / "run",
        [*classification_seeds(), example_record(dataset="eos", synthetic=True)],
    )
    bibtex = results_bibtex([directory])
    keys = [key for key, _ in split_bibtex(bibtex)]
    assert len(keys) == len(set(keys))
    for key in (
        "Benato:2021olt",
        "pd4ml_hep",
        "Kasieczka:TopTaggingReference",
        "Kasieczka:2019dbj",
        "ParticleNet:1902.08570",
        "LGATrSlim:2512.17011",
        "Du:2019civ",
        "Pang:2016vdc",
    ):
        assert key in keys
    assert "Stöcker" in bibtex or 'St{\\"o}cker' in bibtex  # the full pd4ml entry wins
    header = bibtex.split("@")[0]
    assert "% dataset top_tagging: version v0, DOI 10.5281/zenodo.2603256, real data" in header
    assert "% dataset eos: version synthetic-1, DOI no DOI (synthetic), SYNTHETIC" in header
    assert SYNTHETIC_NOTICE in header
    assert results_bibtex([*classification_seeds()]).count("@") == bibtex.count("@") - 2


def test_results_bibtex_without_records_cites_pd4ml() -> None:
    bibtex = results_bibtex([])
    assert "No records were found" in bibtex
    assert [key for key, _ in split_bibtex(bibtex)] == ["Benato:2021olt", "pd4ml_hep"]


def test_record_strings_cannot_inject_latex_or_markup() -> None:
    """Records merged from elsewhere are data: a newline cannot end a LaTeX comment and start
    a command, and tags stay text in Markdown."""
    record = example_record(hostname="node\n\\write18{id}")
    record["dataset"]["version"] = "v1\n\\input{/etc/hostname} <script>alert(1)</script>"
    latex = render_latex([record])
    assert not any(
        line.lstrip().startswith(("\\write18", "\\input")) for line in latex.splitlines()
    )
    markdown = render_markdown([record])
    assert "<script>" not in markdown and "&lt;script&gt;" in markdown


def test_results_bibtex_cites_registered_models_and_names_where_doi_less_data_live(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dataclasses import replace

    from pd4ml.bench import models as bench_models_module

    entry = bench_models_module._REGISTRY["fcn"]
    cited = replace(
        entry,
        name="particlenet",
        kind="reference",
        citation="@article{Qu:2019gqs,\n  title = {ParticleNet}\n}",
    )
    monkeypatch.setitem(bench_models_module._REGISTRY, "particlenet", cited)
    record = example_record(model="particlenet")
    real_without_doi = example_record(dataset="spinodal", seed=1)
    real_without_doi["dataset"]["doi"] = None
    real_without_doi["dataset"]["archive"] = "url: syncandshare.desy.de [offline]"
    text = results_bibtex([record, real_without_doi])
    assert "@article{Qu:2019gqs" in text
    assert "no DOI (url: syncandshare.desy.de [offline])" in text
    assert "no DOI (synthetic), real data" not in text


def test_record_strings_cannot_inject_bibtex_entries() -> None:
    record = example_record()
    record["dataset"]["version"] = "v1\n@misc{injected, title={x}}\n%"
    text = results_bibtex([record])
    assert "@misc{injected" not in text
    assert [key for key, _ in split_bibtex(text) if key == "injected"] == []
