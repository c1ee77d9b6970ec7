"""The leaderboard: bench records grouped, averaged over seeds and rendered as Markdown and LaTeX.

Grouping (the same in every output): one section per (dataset, synthetic?), archive data first;
within a section one row per (model, cell key), i.e. per configuration. A row's metrics are the
mean ± sample standard deviation (``ddof=1``) over its finished seeds; synthetic and archive
records are never averaged together, and when both are present every output says so at the top
and shows them in separate, labelled sections. Any synthetic record puts the synthetic notice at
the top of every output. Failed cells are listed per section with the first line of their error.

The records are plain dicts as :func:`pd4ml.bench.records.read_record` returns them (the schema
is in ``pd4ml/bench/record.schema.json``); :func:`load_records` reads them from run directories.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pd4ml.bench.published import (
    NO_PUBLISHED_FIGURE,
    PublishedFigure,
    format_figure_value,
    published_figures,
)

Record = Mapping[str, Any]

SYNTHETIC_NOTICE = "SYNTHETIC data: these numbers are not physics results"
MIXED_NOTICE = (
    "These results mix synthetic and archive records. They are shown in separate, labelled "
    "sections and never averaged together."
)
SYNTHETIC_PUBLISHED_NOTE = (
    "The published figures below are for the real dataset; numbers measured on synthetic data "
    "cannot be compared with them."
)

CLASSIFICATION_METRICS: tuple[str, ...] = ("accuracy", "auc", "rejection_30", "rejection_50")
REGRESSION_METRICS: tuple[str, ...] = ("mse", "resolution", "bias")

#: Plain-text (Markdown and HTML) and LaTeX column titles of each metric.
METRIC_TITLES: dict[str, tuple[str, str]] = {
    "accuracy": ("accuracy", "accuracy"),
    "auc": ("AUC", "AUC"),
    "rejection_30": ("1/ε_B @ ε_S=0.3", r"$1/\varepsilon_B$ ($\varepsilon_S = 0.3$)"),
    "rejection_50": ("1/ε_B @ ε_S=0.5", r"$1/\varepsilon_B$ ($\varepsilon_S = 0.5$)"),
    "ams": ("AMS (private)", "AMS (private)"),
    "ams_public": ("AMS (public)", "AMS (public)"),
    "mse": ("MSE", "MSE"),
    "resolution": ("resolution", "resolution"),
    "bias": ("bias", "bias"),
    "sigma_over_e": ("σ/E", r"$\sigma/E$"),
}


# --------------------------------------------------------------------------------------------
# Reading


def load_records(directories: Sequence[Path | str]) -> list[dict[str, Any]]:
    """Every record under ``directories`` (run directories or their ``results/``), validated.

    Raises:
        pd4ml.bench.records.RecordError: a file that is not a valid record (the message names it).
    """
    from pd4ml.bench.records import iter_records

    return [record for _, record in iter_records([Path(path) for path in directories])]


def _metric_float(value: Any) -> float:
    from pd4ml.bench.records import metric_float

    return float(metric_float(value))


# --------------------------------------------------------------------------------------------
# Grouping and statistics


@dataclass(frozen=True)
class Summary:
    """Mean and sample standard deviation of one metric over the seeds of a row."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def n_nonfinite(self) -> int:
        return sum(1 for value in self.values if not math.isfinite(value))

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def std(self) -> float | None:
        """``ddof=1`` standard deviation over seeds; None for fewer than two finite seeds."""
        if self.n < 2 or self.n_nonfinite:
            return None
        return float(np.std(self.values, ddof=1))


@dataclass(frozen=True)
class Row:
    """One configuration (model, cell key) of one section: its finished and failed records."""

    model: str
    key: str
    profile: str
    finished: tuple[Record, ...]
    failed: tuple[Record, ...]
    label: str
    duplicate_seeds: tuple[int, ...] = ()

    def summary(self, metric: str) -> Summary:
        values = [
            _metric_float(record["metrics"][metric])
            for record in self.finished
            if metric in record.get("metrics", {})
        ]
        return Summary(tuple(values))

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(sorted(int(record["cell"]["seed"]) for record in self.finished))

    def first_record(self) -> Record | None:
        """The finished record with the lowest seed (the one plotted)."""
        if not self.finished:
            return None
        return min(self.finished, key=lambda record: int(record["cell"]["seed"]))


@dataclass(frozen=True)
class Section:
    """All records of one dataset that are either all synthetic or all from real data."""

    dataset: str
    display_name: str
    synthetic: bool
    task: str
    rows: tuple[Row, ...]
    records: tuple[Record, ...]
    metrics: tuple[str, ...]
    published: tuple[PublishedFigure, ...] = field(default=())

    @property
    def label(self) -> str:
        return "SYNTHETIC data" if self.synthetic else "archive data"

    @property
    def title(self) -> str:
        return f"{self.display_name} ({self.dataset}) — {self.label}"

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", f"{self.dataset}-{self.label}".lower()).strip("-")

    @property
    def failed(self) -> tuple[Record, ...]:
        return tuple(record for row in self.rows for record in row.failed)


def is_synthetic(record: Record) -> bool:
    """True for a record measured on synthetic data."""
    return bool(record["dataset"].get("synthetic", False))


def _metrics_of(task: str, records: Iterable[Record]) -> tuple[str, ...]:
    names = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
    present = {name for record in records for name in record.get("metrics", {})}
    if task == "classification" and "ams" in present:
        names = (*names, "ams", *(("ams_public",) if "ams_public" in present else ()))
    return names


def _rows(records: Sequence[Record]) -> tuple[Row, ...]:
    by_configuration: dict[tuple[str, str], list[Record]] = {}
    for record in records:
        cell = record["cell"]
        by_configuration.setdefault((cell["model"], cell["key"]), []).append(record)
    keys_per_model: dict[str, int] = {}
    for model, _ in by_configuration:
        keys_per_model[model] = keys_per_model.get(model, 0) + 1
    rows = []
    for (model, key), group in sorted(by_configuration.items()):
        finished: dict[int, Record] = {}
        duplicates: list[int] = []
        for record in group:
            if record["status"] != "finished":
                continue
            seed = int(record["cell"]["seed"])
            if seed in finished:  # the same cell merged from two run directories
                duplicates.append(seed)
                continue
            finished[seed] = record
        failed = tuple(record for record in group if record["status"] != "finished")
        profile = ", ".join(sorted({str(record["cell"]["profile"]) for record in group}))
        label = model if keys_per_model[model] == 1 else f"{model} [{key[:8]}]"
        rows.append(
            Row(
                model=model,
                key=key,
                profile=profile,
                finished=tuple(finished[seed] for seed in sorted(finished)),
                failed=failed,
                label=label,
                duplicate_seeds=tuple(sorted(duplicates)),
            )
        )
    return tuple(rows)


def _dataset_order(name: str) -> tuple[int, str]:
    from pd4ml.errors import Pd4mlError
    from pd4ml.manifest import find_manifest

    try:
        return (find_manifest(name).order, name)
    except Pd4mlError:
        return (10_000, name)


def group_records(records: Iterable[Record]) -> list[Section]:
    """The sections of the leaderboard: one per (dataset, synthetic?), archive before synthetic."""
    groups: dict[tuple[str, bool], list[Record]] = {}
    for record in records:
        groups.setdefault((record["cell"]["dataset"], is_synthetic(record)), []).append(record)
    sections = []
    for (dataset, synthetic), group in sorted(
        groups.items(), key=lambda item: (_dataset_order(item[0][0]), item[0][1])
    ):
        task = str(group[0]["task"])
        sections.append(
            Section(
                dataset=dataset,
                display_name=str(group[0]["dataset"].get("display_name") or dataset),
                synthetic=synthetic,
                task=task,
                rows=_rows(group),
                records=tuple(group),
                metrics=_metrics_of(task, group),
                published=published_figures(dataset),
            )
        )
    return sections


# --------------------------------------------------------------------------------------------
# Number formatting


def format_number(value: float, digits: int = 4) -> str:
    """``value`` to ``digits`` significant digits: ``0.9312``, ``1615``, ``1.234e-05``, ``∞``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    if -4 <= magnitude < 6:
        rounded = round(value, digits - 1 - magnitude)
        if rounded != 0 and math.floor(math.log10(abs(rounded))) > magnitude:  # 9.9996 → 10.00
            magnitude += 1
        decimals = max(0, digits - 1 - magnitude)
        return f"{rounded:.{decimals}f}"
    return f"{value:.{digits - 1}e}"


def format_summary(summary: Summary) -> tuple[str, str | None, str]:
    """(mean, std or None, remark) of a metric summary, as text.

    The mean has 4 significant digits, the standard deviation 2; one seed gives ``—`` for the
    standard deviation, non-finite seeds are counted in the remark (``2 of 3 seeds ∞``).
    """
    if summary.n == 0:
        return "—", None, ""
    mean = format_number(summary.mean)
    if summary.n_nonfinite:
        kinds = {format_number(value) for value in summary.values if not math.isfinite(value)}
        remark = f"{summary.n_nonfinite} of {summary.n} seeds {'/'.join(sorted(kinds))}"
        return mean, None, remark if summary.n > 1 else ""
    std = summary.std
    return mean, ("—" if std is None else format_number(std, 2)), ""


def _short_revision(revision: str) -> str:
    match = re.fullmatch(r"([0-9a-f]{7,40})(.*)", revision)
    return match.group(1)[:9] + match.group(2) if match else revision


def code_version(record: Record) -> str:
    """``0.4.0 (1a2b3c4d5)``: the pd4ml version and the short git revision of a record."""
    code = record["code"]
    return f"{code['pd4ml_version']} ({_short_revision(str(code['git_revision']))})"


def _joined(values: Iterable[str]) -> str:
    return ", ".join(sorted(set(values))) or "—"


def first_line(text: str) -> str:
    """The first non-empty line of an error message."""
    for line in str(text).splitlines():
        if line.strip():
            return line.strip()
    return ""


# --------------------------------------------------------------------------------------------
# Table content shared by the renderers


@dataclass(frozen=True)
class Column:
    """One column of a section table: its text and LaTeX title and whether it is a metric."""

    title: str
    latex_title: str
    metric: str | None = None


def columns(section: Section) -> list[Column]:
    """The columns of a section's table."""
    units = sorted(
        {
            str(r["dataset"]["target_units"])
            for r in section.records
            if r["dataset"].get("target_units")
        }
    )
    unit = units[0] if len(units) == 1 else None

    def titles(name: str) -> tuple[str, str]:
        text, latex = METRIC_TITLES[name]
        if unit is None or name not in ("mse", "resolution", "bias"):
            return text, latex
        shown = f"({unit})²" if name == "mse" else unit
        return f"{text} in {shown}", f"{latex} in {latex_escape(shown)}"

    metric_columns = [Column(*titles(name), name) for name in section.metrics]
    return [
        Column("model", "model"),
        Column("profile", "profile"),
        Column("seeds", "seeds"),
        *metric_columns,
        Column("parameters", "parameters"),
        Column("train time (s)", "train time (s)"),
        Column("dataset version", "dataset version"),
        Column("code version", "code version"),
    ]


Cell = str | Summary


def row_cells(section: Section, row: Row) -> list[Cell]:
    """The cells of one row: plain text, or a :class:`Summary` for a metric."""
    seeds = str(len(row.finished))
    if row.failed:
        seeds += f" (+{len(row.failed)} failed)"
    records = row.finished or row.failed
    metric_cells: list[Cell] = [
        row.summary(name) if row.finished else "failed" for name in section.metrics
    ]
    parameters = _joined(f"{int(record['model']['parameters']):,}" for record in records)
    train = Summary(tuple(float(record["timing"]["train_seconds"]) for record in row.finished))
    return [
        row.label,
        row.profile,
        seeds,
        *metric_cells,
        parameters,
        format_number(train.mean) if row.finished else "—",
        _joined(str(record["dataset"]["version"]) for record in records),
        _joined(code_version(record) for record in records),
    ]


def summary_text(summary: Summary) -> str:
    """``0.9300 ± 0.026``, ``0.9300 ± —`` (one seed), ``∞ (2 of 3 seeds ∞)``, ``—`` (absent)."""
    mean, std, remark = format_summary(summary)
    text = mean if std is None else f"{mean} ± {std}"
    return f"{text} ({remark})" if remark else text


def failure_lines(section: Section) -> list[str]:
    """``top_tagging / fcn / seed 2 (quick, key 0123abcd): RuntimeError: out of memory``."""
    lines = []
    for record in sorted(
        section.failed, key=lambda r: (r["cell"]["model"], r["cell"]["key"], r["cell"]["seed"])
    ):
        cell = record["cell"]
        failure = record.get("failure") or {}
        message = first_line(failure.get("message", "")) or "(no message)"
        lines.append(
            f"{cell['dataset']} / {cell['model']} / seed {cell['seed']} "
            f"({cell['profile']}, key {str(cell['key'])[:8]}): "
            f"{failure.get('type', 'error')}: {message}"
        )
    return lines


# --------------------------------------------------------------------------------------------
# Provenance


@dataclass(frozen=True)
class Provenance:
    """What the records were measured on and with, for the top of every output."""

    datasets: tuple[str, ...]
    hardware: tuple[str, ...]
    code: tuple[str, ...]
    profiles: tuple[str, ...]
    sources: tuple[str, ...]
    synthetic: bool
    mixed: bool
    notice: str


def provenance(records: Sequence[Record]) -> Provenance:
    """The provenance summary of ``records``: datasets (version, DOI, source), every machine."""
    datasets = set()
    hardware = set()
    for record in records:
        dataset = record["dataset"]
        doi = dataset.get("doi") or (
            "no DOI (synthetic)" if dataset.get("synthetic") else f"no DOI ({dataset['archive']})"
        )
        kind = "SYNTHETIC" if dataset.get("synthetic") else "real data"
        datasets.add(
            f"{dataset.get('display_name', record['cell']['dataset'])} "
            f"({record['cell']['dataset']}) version {dataset['version']}, DOI {doi}, "
            f"source {dataset['source']}, {kind}"
        )
        machine = record["hardware"]
        gpu = machine.get("gpu") or "no GPU"
        hardware.add(
            f"{machine.get('hostname', '?')}: {machine['cpu']}, {machine['cores']} cores, "
            f"torch threads {machine['threads']}, {gpu}, {machine.get('platform', '')}".rstrip(", ")
        )
    synthetic_flags = {is_synthetic(record) for record in records}
    notices = [
        str(record.get("synthetic_notice") or SYNTHETIC_NOTICE)
        for record in records
        if is_synthetic(record)
    ]
    return Provenance(
        datasets=tuple(sorted(datasets)),
        hardware=tuple(sorted(hardware)),
        code=tuple(
            sorted(
                {
                    f"pd4ml {code_version(record)}, python {record['code']['python']}, "
                    f"torch {record['code']['torch']}, numpy {record['code']['numpy']}"
                    for record in records
                }
            )
        ),
        profiles=tuple(sorted({str(record["cell"]["profile"]) for record in records})),
        sources=tuple(
            sorted(
                {
                    f"{record['cell']['source']} (dataset from {record['dataset']['source']})"
                    for record in records
                }
            )
        ),
        synthetic=True in synthetic_flags,
        mixed=len(synthetic_flags) == 2,
        notice=notices[0] if notices else "",
    )


def provenance_items(summary: Provenance) -> list[tuple[str, tuple[str, ...]]]:
    """(heading, entries) pairs of the provenance summary, in display order."""
    return [
        ("datasets", summary.datasets),
        ("hardware" if len(summary.hardware) == 1 else "hardware (merged runs)", summary.hardware),
        ("code", summary.code),
        ("profiles", summary.profiles),
        ("sources", summary.sources),
    ]


def std_explanation() -> str:
    """How to read a metric cell, for captions."""
    return (
        "Metrics are mean ± sample standard deviation (ddof = 1) over seeds; "
        "— is shown for a single seed."
    )


# --------------------------------------------------------------------------------------------
# Markdown


def one_line(text: str) -> str:
    """``text`` with every control character (newlines included) replaced by a space."""
    return "".join(
        " " if ord(character) < 32 or ord(character) == 127 else character
        for character in str(text)
    )


def _markdown_escape(text: str) -> str:
    """One table-cell line of ``text``: HTML-escaped (a record's strings never become markup
    in a Markdown viewer) and with ``|`` escaped."""
    return html.escape(one_line(text), quote=False).replace("|", "\\|")


def render_markdown(records: Sequence[Record]) -> str:
    """The leaderboard as GitHub-flavoured Markdown (``LEADERBOARD.md``)."""
    summary = provenance(records)
    lines = ["# pd4ml leaderboard", ""]
    if summary.synthetic:
        lines += [f"> **⚠ {summary.notice}**", ""]
    if summary.mixed:
        lines += [f"> **{MIXED_NOTICE}**", ""]
    if not records:
        lines += ["No records were found.", ""]
        return "\n".join(lines)
    lines += ["## Provenance", ""]
    for heading, entries in provenance_items(summary):
        lines.append(f"- **{heading}**:")
        lines += [f"  - {_markdown_escape(entry)}" for entry in entries]
    lines += ["", std_explanation(), ""]
    for section in group_records(records):
        lines += _markdown_section(section)
    return "\n".join(lines).rstrip() + "\n"


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(_markdown_escape(title) for title in header) + " |"]
    lines.append("|" + "|".join(" --- " for _ in header) + "|")
    lines += ["| " + " | ".join(_markdown_escape(cell) for cell in row) + " |" for row in rows]
    return lines


def _markdown_section(section: Section) -> list[str]:
    lines = [f"## {_markdown_escape(section.title)}", ""]
    if section.synthetic:
        lines += [f"> **⚠ {SYNTHETIC_NOTICE}**", ""]
    table_columns = columns(section)
    rows = [
        [cell if isinstance(cell, str) else summary_text(cell) for cell in row_cells(section, row)]
        for row in section.rows
    ]
    lines += _markdown_table([column.title for column in table_columns], rows)
    lines.append("")
    for row in section.rows:
        if row.duplicate_seeds:
            lines += [
                f"Note: {row.label} seed(s) {', '.join(map(str, row.duplicate_seeds))} appear in "
                "more than one run directory; the first copy is used.",
                "",
            ]
    failures = failure_lines(section)
    if failures:
        lines += ["### Failed cells", ""]
        lines += [f"- {_markdown_escape(line)}" for line in failures]
        lines.append("")
    lines += [f"### Published figures: {section.display_name}", ""]
    if not section.published:
        lines += [f"_{NO_PUBLISHED_FIGURE}_", ""]
        return lines
    if section.synthetic:
        lines += [f"_{SYNTHETIC_PUBLISHED_NOTE}_", ""]
    lines += _markdown_table(
        ["model", "metric", "published value", "source", "note"],
        [
            [
                figure.model,
                published_metric(figure),
                format_figure_value(figure),
                _figure_source(figure),
                figure.note,
            ]
            for figure in section.published
        ],
    )
    lines.append("")
    return lines


def published_metric(figure: PublishedFigure, *, latex: bool = False) -> str:
    """The metric of a published figure under the table's column title (a ratio says so);
    ``latex=True`` gives LaTeX source (already escaped)."""
    text_title, latex_title = METRIC_TITLES.get(figure.metric, (figure.metric, figure.metric))
    if not latex:
        return figure.metric_label.replace(figure.metric, text_title, 1)
    label = latex_escape(figure.metric_label)
    return label.replace(latex_escape(figure.metric), latex_title, 1)


def _figure_source(figure: PublishedFigure) -> str:
    parts = [figure.source]
    if figure.arxiv:
        parts.append(f"arXiv:{figure.arxiv}")
    if figure.doi:
        parts.append(f"doi:{figure.doi}")
    return "; ".join(parts)


# --------------------------------------------------------------------------------------------
# LaTeX

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "∞": r"$\infty$",
    "−": "$-$",
    "—": "---",
    "–": "--",
    "≈": r"$\approx$",
    "×": r"$\times$",
    "σ": r"$\sigma$",
    "ε": r"$\varepsilon$",
    "√": r"$\surd$",
    "²": r"$^2$",
    "⚠": "",
}


def latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped and a few symbols in math mode."""
    return "".join(_LATEX_SPECIAL.get(character, character) for character in one_line(text))


def _latex_summary(summary: Summary) -> str:
    mean, std, remark = format_summary(summary)
    text = latex_escape(mean) if std is None else f"{latex_escape(mean)} $\\pm$ {latex_escape(std)}"
    return f"{text} ({latex_escape(remark)})" if remark else text


def render_latex(records: Sequence[Record]) -> str:
    """The leaderboard as LaTeX tables (booktabs) to ``\\input`` in a document.

    Needs ``\\usepackage{booktabs}`` and ``\\usepackage{graphicx}`` (tables are scaled to the
    text width with ``\\resizebox``) in the preamble; the provenance summary is written as a
    comment block at the top and published figures cite their papers with ``\\cite`` (the keys
    of :func:`pd4ml.bench.citations.results_bibtex`).
    """
    summary = provenance(records)
    lines = [
        "% pd4ml leaderboard: needs \\usepackage{booktabs} and \\usepackage{graphicx};",
        "% the \\cite keys are in the BibTeX of `pd4ml cite --results DIR`.",
        "% Generated from bench records; do not edit by hand.",
    ]
    for heading, entries in provenance_items(summary):
        lines.append(f"% {heading}:")
        lines += [f"%   {one_line(entry)}" for entry in entries]
    if summary.synthetic:
        lines += ["", f"\\noindent\\textbf{{{latex_escape(summary.notice)}}}\\par"]
    if summary.mixed:
        lines += ["", f"\\noindent\\textbf{{{latex_escape(MIXED_NOTICE)}}}\\par"]
    for section in group_records(records):
        lines += ["", *_latex_section(section)]
    return "\n".join(lines) + "\n"


def _latex_tabular(header: Sequence[str], rows: Sequence[Sequence[str]], spec: str) -> list[str]:
    lines = [f"\\begin{{tabular}}{{{spec}}}", "\\toprule", " & ".join(header) + r" \\", "\\midrule"]
    lines += [" & ".join(row) + r" \\" for row in rows]
    lines += ["\\bottomrule", "\\end{tabular}"]
    return lines


def _latex_section(section: Section) -> list[str]:
    table_columns = columns(section)
    rows = [
        [
            latex_escape(cell) if isinstance(cell, str) else _latex_summary(cell)
            for cell in row_cells(section, row)
        ]
        for row in section.rows
    ]
    dataset = section.records[0]["dataset"]
    caption = (
        f"{section.display_name} ({section.dataset}), {section.label}, version "
        f"{', '.join(sorted({str(r['dataset']['version']) for r in section.records}))}"
    )
    if dataset.get("doi"):
        caption += f", DOI {dataset['doi']}"
    caption += ". " + std_explanation()
    if section.synthetic:
        caption = f"{SYNTHETIC_NOTICE}. " + caption
    spec = "ll" + "r" * (len(table_columns) - 2)
    lines = [
        "\\begin{table}[htbp]",
        "\\centering",
        f"\\caption{{{latex_escape(caption)}}}",
        f"\\label{{tab:pd4ml-{section.slug}}}",
        "\\resizebox{\\textwidth}{!}{%",
        *_latex_tabular([column.latex_title for column in table_columns], rows, spec),
        "}",
        "\\end{table}",
    ]
    failures = failure_lines(section)
    if failures:
        lines += ["", f"\\paragraph{{Failed cells: {latex_escape(section.title)}}}"]
        lines += ["\\begin{itemize}"]
        lines += [f"\\item {latex_escape(line)}" for line in failures]
        lines += ["\\end{itemize}"]
    lines.append("")
    if not section.published:
        lines.append(f"% {section.dataset}: {NO_PUBLISHED_FIGURE}")
        return lines
    published_caption = f"Published figures for {section.display_name} (not measured here)."
    if section.synthetic:
        published_caption += " " + SYNTHETIC_PUBLISHED_NOTE
    published_rows = [
        [
            latex_escape(figure.model),
            published_metric(figure, latex=True),
            latex_escape(format_figure_value(figure)),
            latex_escape(figure.source)
            + (f"~\\cite{{{figure.bibtex_key}}}" if figure.bibtex_key else ""),
            latex_escape(figure.note),
        ]
        for figure in section.published
    ]
    lines += [
        "\\begin{table}[htbp]",
        "\\centering",
        f"\\caption{{{latex_escape(published_caption)}}}",
        f"\\label{{tab:pd4ml-{section.slug}-published}}",
        "\\resizebox{\\textwidth}{!}{%",
        *_latex_tabular(
            ["model", "metric", "value", "source", "note"],
            published_rows,
            "lllp{5cm}p{6cm}",
        ),
        "}",
        "\\end{table}",
    ]
    return lines


# --------------------------------------------------------------------------------------------
# All outputs


def write_leaderboard(records: Sequence[Record], out: Path) -> dict[str, Path]:
    """Write ``LEADERBOARD.md``, ``leaderboard.tex`` and ``report/index.html`` under ``out``.

    Returns:
        ``{"markdown": …, "latex": …, "html": …}``: the paths written.
    """
    from pd4ml.bench.report import render_html

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    markdown = out / "LEADERBOARD.md"
    latex = out / "leaderboard.tex"
    _write_text(markdown, render_markdown(records))
    _write_text(latex, render_latex(records))
    html = render_html(records, out / "report")
    return {"markdown": markdown, "latex": latex, "html": html}


def _write_text(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)
