"""``pd4ml cite --results DIR``: the BibTeX behind a set of bench records.

The bibliography holds, de-duplicated by BibTeX key (the first entry of a key wins): pd4ml's own
paper and package, the citations of every dataset behind the records (from the bundled
manifests; a synthetic demo record still names its real dataset, whose papers describe what the
synthetic generator imitates), and the papers of the published figures the leaderboard shows
beside them. A comment header lists the records' datasets, versions and DOIs and says when any
record is synthetic.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pd4ml.bench.leaderboard import SYNTHETIC_NOTICE, is_synthetic, load_records, one_line
from pd4ml.bench.published import published_figures
from pd4ml.citation import package_bibtex
from pd4ml.errors import Pd4mlError
from pd4ml.manifest import find_manifest

_ENTRY_START = re.compile(r"^@\w+\s*\{\s*([^,\s]+)\s*,", re.MULTILINE)


def split_bibtex(text: str) -> list[tuple[str, str]]:
    """``(key, entry)`` for every ``@type{key, …}`` entry of ``text``, in order."""
    starts = list(_ENTRY_START.finditer(text))
    entries = []
    for index, match in enumerate(starts):
        end = starts[index + 1].start() if index + 1 < len(starts) else len(text)
        entries.append((match.group(1), text[match.start() : end].strip()))
    return entries


def _records(directories_or_records: Sequence[Path | str | Mapping[str, Any]]) -> list[Any]:
    records: list[Any] = []
    directories: list[Path | str] = []
    for item in directories_or_records:
        if isinstance(item, Mapping):
            records.append(item)
        else:
            directories.append(item)
    if directories:
        records += load_records(directories)
    return records


def results_bibtex(directories_or_records: Sequence[Path | str | Mapping[str, Any]]) -> str:
    """The BibTeX of every dataset and paper behind the records, with a provenance header.

    Args:
        directories_or_records: run directories (or their ``results/``), record dicts, or both.

    Raises:
        pd4ml.bench.records.RecordError: an invalid record file.
    Datasets without a citation known here are named in the header; models registered with a
    citation (reference models) are cited too.
    """
    records = _records(directories_or_records)
    header = ["% BibTeX for pd4ml bench results."]
    datasets: dict[str, set[str]] = {}
    for record in records:
        dataset = record["dataset"]
        doi = dataset.get("doi") or (
            "no DOI (synthetic)" if is_synthetic(record) else f"no DOI ({dataset['archive']})"
        )
        kind = "SYNTHETIC" if is_synthetic(record) else "real data"
        datasets.setdefault(record["cell"]["dataset"], set()).add(
            _comment_text(f"version {dataset['version']}, DOI {doi}, {kind}")
        )
    if not records:
        header.append("% No records were found; only pd4ml itself is cited.")
    for name in sorted(datasets):
        header.append(f"% dataset {name}: {'; '.join(sorted(datasets[name]))}")
    if any(is_synthetic(record) for record in records):
        header += [
            f"% {SYNTHETIC_NOTICE}.",
            "% Synthetic records imitate the datasets cited below; they do not use their data.",
        ]
    blocks = [package_bibtex()]
    for name in sorted(datasets):
        citation = _dataset_bibtex(name)
        if citation is None:
            header.append(
                f"% dataset {name}: not a dataset known to this installation (a registered "
                "dataset of the machine that made the records?); cite it by hand"
            )
        else:
            blocks.append(citation)
    for name in sorted(datasets):
        blocks += [figure.bibtex() or "" for figure in published_figures(name)]
    blocks += _model_citations(records)
    seen: set[str] = set()
    entries = []
    for block in blocks:
        for key, entry in split_bibtex(block):
            if key not in seen:
                seen.add(key)
                entries.append(entry)
    return "\n".join(header) + "\n\n" + "\n\n".join(entries) + "\n"


def _dataset_bibtex(name: str) -> str | None:
    """The BibTeX of a dataset: its bundled manifest's, else a registered dataset's."""
    try:
        return find_manifest(name).bibtex()
    except Pd4mlError:
        pass
    from pd4ml.datasets.registry import get

    try:
        return get(name).manifest().bibtex()
    except Pd4mlError:
        return None


def _model_citations(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """The BibTeX of the registered models behind the records (those that carry one)."""
    from pd4ml.bench.models import bench_models

    models = bench_models()
    names = sorted({str(record["model"]["name"]) for record in records})
    return [models[name].citation for name in names if name in models and models[name].citation]


def _comment_text(text: str) -> str:
    """Record text safe in a BibTeX comment line: one line, and no ``@`` (which would open an
    entry; BibTeX has no comment syntax that protects one)."""
    return one_line(text).replace("@", "(at)")
