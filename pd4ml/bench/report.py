"""The HTML report: one static, self-contained page with the leaderboard tables and plots.

``render_html(records, directory)`` writes ``directory/index.html`` and the plots as PNG files in
``directory/plots/`` (referenced relatively, so the folder can be copied or served anywhere). The
page has inline CSS, no JavaScript and no external URL. Per section (dataset × synthetic?, as in
:mod:`pd4ml.bench.leaderboard`):

* classification: ROC curve (true- vs false-positive rate) and background rejection 1/ε_B vs
  signal efficiency ε_S (log scale), one line per row (its lowest seed);
* regression: residual distributions, resolution vs true value and, for calorimeters, σ/E vs E;
* training curves (train and validation loss per epoch) and the learning-rate range test
  (smoothed loss vs learning rate, suggestion marked) when a record has one.

Plots are drawn with matplotlib's object-oriented API on an Agg canvas (no pyplot state, no
display needed), and every figure is released after it is saved.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pd4ml.bench.leaderboard import (
    MIXED_NOTICE,
    SYNTHETIC_NOTICE,
    SYNTHETIC_PUBLISHED_NOTE,
    Record,
    Row,
    Section,
    columns,
    failure_lines,
    group_records,
    provenance,
    provenance_items,
    published_metric,
    row_cells,
    std_explanation,
    summary_text,
)
from pd4ml.bench.published import NO_PUBLISHED_FIGURE, PublishedFigure, format_figure_value

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 78rem; padding: 0 1rem; color: #1b1b1b; background: #fff; line-height: 1.45; }
h1 { margin-bottom: 0.2rem; }
h2 { border-bottom: 2px solid #ccd; padding-bottom: 0.2rem; margin-top: 2.5rem; }
.banner { background: #fff3cd; border: 2px solid #d9a400; color: #5c4400; padding: 0.8rem 1rem;
          font-weight: bold; font-size: 1.1rem; margin: 1rem 0; }
.mixed { background: #fde2e1; border-color: #c0392b; color: #6b1a13; }
table { border-collapse: collapse; margin: 0.8rem 0 1.2rem; font-size: 0.9rem; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: 0.3rem 0; }
.table-wrap { max-width: 100%; overflow-x: auto; }
th { white-space: normal; }
th, td { border-top: 1px solid #ccd; border-bottom: 1px solid #ccd; padding: 0.3rem 0.6rem;
         text-align: right; }
td { white-space: nowrap; }
th:first-child, td:first-child, td.text, th.text { text-align: left; }
td.text { white-space: normal; max-width: 28rem; }
thead th { border-bottom: 2px solid #556; background: #f3f4f8; }
.plots { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: 0; }
figure img { width: 26rem; height: auto; border: 1px solid #e0e0e8; }
figcaption { font-size: 0.85rem; color: #444; max-width: 26rem; }
.failed li { color: #8b1a1a; }
.note { color: #555; font-style: italic; }
dl.provenance dt { font-weight: 600; margin-top: 0.4rem; }
dl.provenance dd { margin-left: 1.2rem; }
"""

_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")


def _escape(text: object) -> str:
    return html.escape(str(text), quote=True)


# --------------------------------------------------------------------------------------------
# Plots


def _new_figure() -> Any:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.0, 4.2), dpi=100)
    figure.subplots_adjust(left=0.13, right=0.97, top=0.87, bottom=0.13)
    return figure, figure.add_subplot()


def _save(figure: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    figure.savefig(temporary, format="png")
    figure.clear()
    temporary.replace(path)


def _curve(record: Record | None, name: str) -> dict[str, Any] | None:
    if record is None:
        return None
    curves = record.get("curves") or {}
    value = curves.get(name)
    return value if isinstance(value, dict) else None


def _array(values: Any) -> np.ndarray:
    """A curve's list as float64, with JSON nulls as NaN."""
    return np.array([math.nan if v is None else v for v in values or []], dtype=np.float64)


Plotter = Callable[[Any, Sequence[Row]], bool]


def _plot_roc(axes: Any, rows: Sequence[Row]) -> bool:
    drawn = False
    for index, row in enumerate(rows):
        roc = _curve(row.first_record(), "roc")
        if roc is None:
            continue
        fpr, tpr = _array(roc["false_positive_rate"]), _array(roc["true_positive_rate"])
        axes.plot(fpr, tpr, color=_COLOURS[index % len(_COLOURS)], label=row.label)
        drawn = True
    if drawn:
        axes.plot([0, 1], [0, 1], color="#999", linestyle=":", linewidth=1, label="random")
        axes.set(xlabel="false-positive rate", ylabel="true-positive rate", xlim=(0, 1))
        axes.set_ylim(0, 1.01)
    return drawn


def _plot_rejection(axes: Any, rows: Sequence[Row]) -> bool:
    drawn = False
    for index, row in enumerate(rows):
        roc = _curve(row.first_record(), "roc")
        if roc is None:
            continue
        fpr, tpr = _array(roc["false_positive_rate"]), _array(roc["true_positive_rate"])
        keep = (fpr > 0) & np.isfinite(fpr) & np.isfinite(tpr)
        if not np.any(keep):
            continue
        axes.plot(
            tpr[keep], 1.0 / fpr[keep], color=_COLOURS[index % len(_COLOURS)], label=row.label
        )
        drawn = True
    if drawn:
        axes.set_yscale("log")
        axes.set(xlabel="signal efficiency ε_S", ylabel="background rejection 1/ε_B", xlim=(0, 1))
        for working_point in (0.3, 0.5):
            axes.axvline(working_point, color="#bbb", linewidth=0.8, linestyle="--")
    return drawn


def _plot_residuals(axes: Any, rows: Sequence[Row]) -> bool:
    drawn = False
    for index, row in enumerate(rows):
        residuals = _curve(row.first_record(), "residuals")
        if residuals is None:
            continue
        edges, counts = _array(residuals["edges"]), _array(residuals["counts"])
        if len(edges) != len(counts) + 1 or len(counts) == 0:
            continue
        total = np.nansum(counts)
        density = counts / (total * np.diff(edges)) if total > 0 else counts
        axes.stairs(density, edges, color=_COLOURS[index % len(_COLOURS)], label=row.label)
        drawn = True
    if drawn:
        axes.set(xlabel="residual (prediction − truth)", ylabel="density")
    return drawn


def _plot_resolution_vs_truth(axes: Any, rows: Sequence[Row]) -> bool:
    drawn = False
    for index, row in enumerate(rows):
        table = _curve(row.first_record(), "resolution_vs_truth")
        if table is None:
            continue
        colour = _COLOURS[index % len(_COLOURS)]
        centres = _array(table["centres"])
        axes.plot(centres, _array(table["resolution"]), "o-", color=colour, label=row.label)
        if "bias" in table:
            axes.plot(centres, _array(table["bias"]), "x--", color=colour, alpha=0.6)
        drawn = True
    if drawn:
        axes.axhline(0, color="#999", linewidth=0.8)
        axes.set(xlabel="true value", ylabel="resolution (o) and bias (x)")
    return drawn


def _plot_energy_resolution(axes: Any, rows: Sequence[Row]) -> bool:
    drawn = False
    for index, row in enumerate(rows):
        table = _curve(row.first_record(), "energy_resolution")
        if table is None:
            continue
        axes.plot(
            _array(table["centres"]),
            _array(table["sigma_over_e"]),
            "o-",
            color=_COLOURS[index % len(_COLOURS)],
            label=row.label,
        )
        drawn = True
    if drawn:
        axes.set(xlabel="true energy E (GeV)", ylabel="σ/E")
    return drawn


def _plot_training(axes: Any, rows: Sequence[Row]) -> bool:
    drawn = False
    for index, row in enumerate(rows):
        record = row.first_record()
        history = record.get("history") if record else None
        if not history:
            continue
        colour = _COLOURS[index % len(_COLOURS)]
        epochs = _array([entry.get("epoch") for entry in history])
        train = _array([entry.get("train_loss") for entry in history])
        axes.plot(epochs, train, "-", color=colour, label=f"{row.label} train")
        validation = _array([entry.get("val_loss") for entry in history])
        if np.any(np.isfinite(validation)):
            axes.plot(epochs, validation, "--", color=colour, label=f"{row.label} validation")
        drawn = True
    if drawn:
        axes.set(xlabel="epoch", ylabel="loss")
    return drawn


def _plot_lr_finder(axes: Any, rows: Sequence[Row]) -> bool:
    drawn = False
    for index, row in enumerate(rows):
        finder = next(
            (record["lr_finder"] for record in row.finished if record.get("lr_finder")), None
        )
        if not finder:
            continue
        colour = _COLOURS[index % len(_COLOURS)]
        rates, smoothed = _array(finder["learning_rates"]), _array(finder["smoothed"])
        keep = (rates > 0) & np.isfinite(smoothed)
        if not np.any(keep):
            continue
        axes.plot(rates[keep], smoothed[keep], color=colour, label=row.label)
        suggestion = float(finder["suggestion"])
        axes.axvline(suggestion, color=colour, linestyle="--", linewidth=1)
        axes.annotate(
            f"suggested {suggestion:.2g}",
            (suggestion, float(np.nanmin(smoothed[keep]))),
            color=colour,
            fontsize=8,
            rotation=90,
            va="bottom",
            ha="right",
        )
        drawn = True
    if drawn:
        axes.set_xscale("log")
        axes.set(xlabel="learning rate", ylabel="smoothed loss")
    return drawn


def _plan(section: Section) -> list[tuple[str, str, Plotter]]:
    """(file stem, title, plotter) of the plots a section gets."""
    plots: list[tuple[str, str, Plotter]] = []
    if section.task == "classification":
        plots += [
            ("roc", "ROC curve", _plot_roc),
            ("rejection", "Background rejection vs signal efficiency", _plot_rejection),
        ]
    else:
        plots += [
            ("residuals", "Residual distribution", _plot_residuals),
            ("resolution", "Resolution and bias vs true value", _plot_resolution_vs_truth),
            ("energy-resolution", "Energy resolution σ/E vs E", _plot_energy_resolution),
        ]
    plots += [
        ("training", "Training curves", _plot_training),
        ("lr-finder", "Learning-rate range test", _plot_lr_finder),
    ]
    return plots


def _alt_text(section: Section, title: str, rows: Sequence[Row]) -> str:
    models = ", ".join(row.label for row in rows)
    return f"{title} for {section.display_name} ({section.label}); models: {models}"


def render_plots(section: Section, plots_directory: Path) -> list[tuple[str, str, str]]:
    """Draw the plots of ``section`` into ``plots_directory``; returns (file, title, alt) each.

    A plot whose curves no record has is left out (failed rows and missing optional curves are
    simply absent from it).
    """
    rows = [row for row in section.rows if row.finished]
    drawn = []
    for stem, title, plotter in _plan(section):
        figure, axes = _new_figure()
        if not plotter(axes, rows):
            figure.clear()
            continue
        label = f"{section.display_name} — {section.label}"
        axes.set_title(f"{title}\n{label}", fontsize=10)
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=7, loc="best")
        if section.synthetic:
            figure.text(0.01, 0.01, SYNTHETIC_NOTICE, fontsize=7, color="#b05000")
        name = f"{section.slug}-{stem}.png"
        _save(figure, plots_directory / name)
        drawn.append((name, title, _alt_text(section, title, rows)))
    return drawn


# --------------------------------------------------------------------------------------------
# HTML


def _html_table(
    caption: str, header: Sequence[str], rows: Sequence[Sequence[str]], text_columns: set[int]
) -> list[str]:
    def attributes(index: int) -> str:
        return ' class="text"' if index in text_columns else ""

    lines = [
        '<div class="table-wrap">',
        "<table>",
        f"<caption>{_escape(caption)}</caption>",
        "<thead><tr>",
    ]
    lines += [
        f'<th scope="col"{attributes(i)}>{_escape(title)}</th>' for i, title in enumerate(header)
    ]
    lines += ["</tr></thead>", "<tbody>"]
    for row in rows:
        cells = "".join(f"<td{attributes(i)}>{_escape(cell)}</td>" for i, cell in enumerate(row))
        lines.append(f"<tr>{cells}</tr>")
    lines += ["</tbody>", "</table>", "</div>"]
    return lines


def _published_rows(figures: Sequence[PublishedFigure]) -> list[list[str]]:
    rows = []
    for figure in figures:
        source = figure.source
        if figure.arxiv:
            source += f"; arXiv:{figure.arxiv}"
        if figure.doi:
            source += f"; doi:{figure.doi}"
        rows.append(
            [
                figure.model,
                published_metric(figure),
                format_figure_value(figure),
                source,
                figure.note,
            ]
        )
    return rows


def _section_html(section: Section, plots_directory: Path) -> list[str]:
    lines = [f'<section id="{section.slug}">', f"<h2>{_escape(section.title)}</h2>"]
    if section.synthetic:
        lines.append(f'<p class="banner">⚠ {_escape(SYNTHETIC_NOTICE)}</p>')
    header = [column.title for column in columns(section)]
    rows = [
        [cell if isinstance(cell, str) else summary_text(cell) for cell in row_cells(section, row)]
        for row in section.rows
    ]
    caption = f"Leaderboard: {section.title}. {std_explanation()}"
    lines += _html_table(caption, header, rows, {0, 1})
    failures = failure_lines(section)
    if failures:
        lines += ["<h3>Failed cells</h3>", '<ul class="failed">']
        lines += [f"<li>{_escape(line)}</li>" for line in failures]
        lines.append("</ul>")
    lines.append(f"<h3>Published figures: {_escape(section.display_name)}</h3>")
    if section.published:
        if section.synthetic:
            lines.append(f'<p class="note">{_escape(SYNTHETIC_PUBLISHED_NOTE)}</p>')
        lines += _html_table(
            f"Published figures for {section.display_name} "
            "(from the literature, not measured here)",
            ["model", "metric", "published value", "source", "note"],
            _published_rows(section.published),
            {0, 1, 3, 4},
        )
    else:
        lines.append(f'<p class="note">{_escape(NO_PUBLISHED_FIGURE)}</p>')
    plots = render_plots(section, plots_directory)
    if plots:
        lines.append('<div class="plots">')
        for name, title, alt in plots:
            lines += [
                "<figure>",
                f'<img src="plots/{_escape(name)}" alt="{_escape(alt)}" width="600" height="420">',
                f"<figcaption>{_escape(title)}</figcaption>",
                "</figure>",
            ]
        lines.append("</div>")
    else:
        lines.append('<p class="note">No curves in these records to plot.</p>')
    lines.append("</section>")
    return lines


def render_html(records: Sequence[Record], directory: Path) -> Path:
    """Write the report page ``directory/index.html`` and its plots ``directory/plots/*.png``.

    Returns:
        The path of ``index.html``.
    """
    directory = Path(directory)
    plots_directory = directory / "plots"
    plots_directory.mkdir(parents=True, exist_ok=True)
    for stale in plots_directory.glob("*.png"):  # plots of sections that no longer exist
        stale.unlink()
    summary = provenance(records)
    body = ["<h1>pd4ml leaderboard</h1>"]
    if summary.synthetic:
        body.append(f'<p class="banner" role="alert">⚠ {_escape(summary.notice)}</p>')
    if summary.mixed:
        body.append(f'<p class="banner mixed" role="alert">{_escape(MIXED_NOTICE)}</p>')
    if not records:
        body.append("<p>No records were found.</p>")
    else:
        body += ["<h2>Provenance</h2>", '<dl class="provenance">']
        for heading, entries in provenance_items(summary):
            body.append(f"<dt>{_escape(heading)}</dt>")
            body += [f"<dd>{_escape(entry)}</dd>" for entry in entries]
        body.append("</dl>")
        for section in group_records(records):
            body += _section_html(section, plots_directory)
    page = "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            "<title>pd4ml leaderboard</title>",
            f"<style>{_CSS}</style>",
            "</head>",
            "<body>",
            *body,
            "</body>",
            "</html>",
            "",
        ]
    )
    index = directory / "index.html"
    temporary = directory / ".index.html.tmp"
    temporary.write_text(page, encoding="utf-8")
    temporary.replace(index)
    return index
