"""Plan the cells of a benchmark run, run the pending ones (locally or on Dask), render the
leaderboard.

A run is resumable: a cell whose record exists, is valid, finished and has the same
configuration key is skipped; a failed or damaged record, or one of another configuration
(recipe, dataset version, code version), is recomputed. Records are written atomically, so a
run killed at any moment (Ctrl-C, ``kill -9``) leaves only complete, valid records.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from pd4ml.bench.cells import Cell, CellOutcome, configuration_key, dataset_version, run_cell
from pd4ml.bench.errors import BenchError
from pd4ml.bench.executors import CellEvent, run_dask, run_local
from pd4ml.bench.models import check_profile, select_models
from pd4ml.bench.provenance import code_version
from pd4ml.datasets.registry import datasets as registered_datasets
from pd4ml.datasets.registry import get as get_dataset
from pd4ml.testing.served import ServedFiles, serve_synthetic

#: The demo's synthetic events per dataset: (train, test) written (one-file datasets split
#: their total themselves: HiggsML keeps about 30 % for train + val, the calorimeters 80 %).
DEMO_EVENTS: dict[str, tuple[int, int]] = {
    "top_tagging": (1200, 500),
    "smartbkg": (1500, 500),
    "spinodal": (1000, 300),
    "eos": (800, 300),
    "airshower": (1200, 500),
    "calice_ahcal": (900, 200),
    "higgsml": (5000, 0),
    "ild_photon_showers": (1000, 200),
}
_DEMO_RECORD = 7100


@dataclass(frozen=True)
class BenchConfig:
    """A benchmark run.

    Attributes:
        datasets: dataset names (the registered ones, in order, for ``--all``).
        models: model names or the groups ``shared`` / ``reference``.
        seeds: seeds ``0 … seeds-1`` per (dataset, model).
        profile: ``quick`` or ``paper``.
        source: ``archive`` (real files) or ``demo`` (synthetic files, loopback server).
        executor: ``local`` (one cell after another in this process) or ``dask``.
        scheduler: a Dask scheduler address (``tcp://host:8786``), or None for a local
            cluster of ``workers`` processes.
        workers: worker processes of the local Dask cluster.
        out: the output directory (records, leaderboard, report).
        threads: torch threads per cell (None: every core for ``local``, 1 for ``dask``).
        data_dir: the dataset cache (None: ``PD4ML_DATA_DIR`` or the default; the demo uses
            ``out/demo/cache``).
        progress: ``auto`` (a live display on a terminal, log lines otherwise), ``live``,
            ``plain`` or ``off``.
        skip_unpublished: leave out (with a notice) the archive datasets whose version has no
            public record yet and whose files are not in the cache (``--all`` sets it, as
            ``pd4ml download --all`` does).
    """

    datasets: tuple[str, ...]
    models: tuple[str, ...] = ("shared",)
    seeds: int = 2
    profile: str = "quick"
    source: Literal["archive", "demo"] = "archive"
    executor: Literal["local", "dask"] = "local"
    scheduler: str | None = None
    workers: int | None = None
    out: Path = field(default_factory=lambda: Path("pd4ml-bench"))
    threads: int | None = None
    data_dir: Path | None = None
    progress: Literal["auto", "live", "plain", "off"] = "auto"
    skip_unpublished: bool = False

    def __post_init__(self) -> None:
        check_profile(self.profile)
        # each name once, in the order given (a repeated name is not a second cell)
        # (dataset aliases resolve to their names first: UnknownNameError with a suggestion)
        object.__setattr__(
            self, "datasets", tuple(dict.fromkeys(get_dataset(name).name for name in self.datasets))
        )
        object.__setattr__(self, "models", tuple(dict.fromkeys(self.models)))
        if self.workers is not None and (
            isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1
        ):
            raise BenchError(f"workers must be a whole number ≥ 1, not {self.workers!r}")
        if not self.datasets:
            raise BenchError("name at least one dataset (--datasets NAME …) or use --all")
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 1:
            raise BenchError(f"seeds must be a whole number ≥ 1, not {self.seeds!r}")
        if self.source not in ("archive", "demo"):
            raise BenchError(f"source must be 'archive' or 'demo', not {self.source!r}")
        if self.executor not in ("local", "dask"):
            raise BenchError(f"executor must be 'local' or 'dask', not {self.executor!r}")
        if self.executor == "local" and (self.scheduler or self.workers):
            raise BenchError("--scheduler and --workers need --executor dask")
        if self.scheduler and self.workers:
            raise BenchError("give either --scheduler ADDRESS or --workers N, not both")
        if self.source == "demo" and self.scheduler:
            raise BenchError(
                "the demo's archive server listens on 127.0.0.1 only, so remote workers cannot "
                "reach it: use --workers N (a local cluster) with --source demo"
            )
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise BenchError(f"threads must be a whole number ≥ 1, not {self.threads!r}")

    def cell_threads(self) -> int:
        """Torch threads per cell."""
        if self.threads is not None:
            return self.threads
        return 1 if self.executor == "dask" else usable_cores()


def usable_cores() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def all_datasets() -> tuple[str, ...]:
    """Every registered dataset, in registry order."""
    return tuple(cls.name for cls in registered_datasets())


@dataclass(frozen=True)
class Plan:
    """The cells of a run: all of them, the ones to run, and notices (datasets without a
    requested model)."""

    cells: tuple[Cell, ...]
    pending: tuple[Cell, ...]
    notices: tuple[str, ...]


def plan(config: BenchConfig) -> Plan:
    """Every (dataset, model, seed) cell of ``config`` and which of them must run."""
    from pd4ml.bench.cells import finished_record

    out = Path(config.out).resolve()
    data_dir = (
        str(out / "demo" / "cache")
        if config.source == "demo"
        else (str(config.data_dir) if config.data_dir else None)
    )
    cells: list[Cell] = []
    notices: list[str] = []
    digest = code_version()["source_digest"]
    for dataset in config.datasets:
        if config.source == "archive" and config.skip_unpublished:
            reason = _unpublished(dataset, config.data_dir)
            if reason:
                notices.append(f"{dataset}: skipped, {reason}")
                continue
        models, missing = select_models(config.models, dataset)
        notices += missing
        demo_events = DEMO_EVENTS[dataset] if config.source == "demo" else None
        version = _version_name(dataset, config.source)
        for model in models:
            key = configuration_key(
                dataset, model, config.profile, config.source, demo_events, version
            )
            setup = model.setup(dataset, config.profile)
            for seed in range(config.seeds):
                cells.append(
                    Cell(
                        dataset=dataset,
                        model=model.name,
                        seed=seed,
                        profile=config.profile,
                        source=config.source,
                        out=str(out),
                        key=key,
                        threads=config.cell_threads(),
                        data_dir=data_dir,
                        demo_events=demo_events,
                        setup=setup,
                        architecture=model.architecture,
                        kind=model.kind,
                        source_digest=digest,
                    )
                )
    pending = tuple(cell for cell in cells if not finished_record(cell))
    return Plan(tuple(cells), pending, tuple(notices))


def _unpublished(dataset: str, data_dir: Path | None) -> str:
    """Why an unpublished dataset version cannot be fetched (empty if it can, or is cached)."""
    from pd4ml.config import Settings
    from pd4ml.fetch import Fetcher

    manifest = get_dataset(dataset).manifest()
    version = manifest.version()
    if version.source.status != "unpublished":
        return ""
    fetcher = Fetcher(Settings.from_env(data_dir))
    if all(fetcher.is_cached(manifest, version, entry) for entry in version.files):
        return ""
    return (
        f"its version {version.name} has no public archive record yet "
        f"({version.source.status_note}); `pd4ml import {dataset} DIR` adds files you have"
    )


def _version_name(dataset: str, source: str) -> str:
    probe = Cell(dataset, "", 0, "quick", source, "", "")  # type: ignore[arg-type]
    return dataset_version(probe)


@contextlib.contextmanager
def demo_files(cells: Sequence[Cell], out: Path) -> Iterator[dict[str, ServedFiles]]:
    """Write the demo's synthetic files of the datasets of ``cells`` (kept in ``out/demo/raw``
    between runs) and serve them from the loopback archive server while the block runs."""
    from pd4ml.testing import ArchiveServer

    names = list(dict.fromkeys(cell.dataset for cell in cells))
    with ArchiveServer() as server:
        served = {}
        for index, name in enumerate(names):
            n_train, n_test = DEMO_EVENTS[name]
            served[name] = serve_synthetic(
                server,
                name,
                out / "demo" / "raw",
                n_train,
                n_test,
                record=_DEMO_RECORD + index,
                seed=0,
            )
        yield served


@dataclass(frozen=True)
class RunSummary:
    """What a run did."""

    plan: Plan
    outcomes: tuple[CellOutcome, ...]
    seconds: float
    outputs: dict[str, Path]

    @property
    def failed(self) -> list[CellOutcome]:
        """The cells that failed in this run."""
        return [outcome for outcome in self.outcomes if outcome.status == "failed"]


def run_bench(
    config: BenchConfig,
    *,
    run: Callable[[Cell], CellOutcome] = run_cell,
    echo: Callable[[str], None] | None = None,
) -> RunSummary:
    """Run the pending cells of ``config`` and render the leaderboard from every record in
    ``config.out``."""
    from pd4ml.bench.display import Display

    started = time.perf_counter()
    out = Path(config.out).resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise BenchError(f"cannot create the output directory {out}: {error}") from error
    the_plan = plan(config)
    display = Display(config.progress, echo)
    if config.source == "demo":
        display.note(
            "demo source: SYNTHETIC files in the official layouts, served by a loopback "
            "archive server on 127.0.0.1; the numbers are not physics results"
        )
    for notice in the_plan.notices:
        display.note(notice)
    display.note(
        f"{len(the_plan.cells)} cells, {len(the_plan.cells) - len(the_plan.pending)} done "
        f"already, {len(the_plan.pending)} to run ({config.profile} profile, "
        f"{config.source} data, {config.executor} executor) → {out}"
    )
    outcomes: list[CellOutcome] = []
    if the_plan.pending:
        with contextlib.ExitStack() as stack:
            cells = list(the_plan.pending)
            if config.source == "demo":
                served = stack.enter_context(demo_files(cells, out))
                cells = [replace(cell, served=served[cell.dataset]) for cell in cells]
            with display.live(cells) as on_event:
                outcomes = _execute(config, cells, run, on_event)
    outputs = render(out)
    for kind, path in outputs.items():
        display.note(f"{kind}: {path}")
    return RunSummary(the_plan, tuple(outcomes), time.perf_counter() - started, outputs)


def _execute(
    config: BenchConfig,
    cells: list[Cell],
    run: Callable[[Cell], CellOutcome],
    on_event: Callable[[CellEvent[Cell, CellOutcome]], None],
) -> list[CellOutcome]:
    if config.executor == "dask":
        return run_dask(
            cells,
            run,
            on_event,
            scheduler=config.scheduler,
            workers=config.workers,
            threads_per_worker=1,
            lost=lost_cell,
        )
    return run_local(cells, run, on_event, lost=lost_cell)


def lost_cell(cell: Cell, error: BaseException) -> CellOutcome:
    """The outcome of a cell whose worker died more often than the retries allow: a failed
    record is written for it (the other cells are not affected)."""
    from pd4ml.bench.cells import _complete, _failed_parts
    from pd4ml.bench.provenance import utc_now
    from pd4ml.bench.records import write_record

    record = _failed_parts(cell, error)
    record["status"] = "failed"
    now = utc_now()
    record["timing"] = {
        "prepare_seconds": 0.0,
        "train_seconds": 0.0,
        "inference_seconds": 0.0,
        "total_seconds": 0.0,
        "started_at": now,
        "finished_at": now,
    }
    record["memory"] = {"peak_rss_bytes": 0, "peak_anonymous_rss_bytes": 0}
    message = f"worker lost: {type(error).__name__}: {error}".splitlines()[0]
    record["failure"]["message"] = message
    write_record(cell.path, _complete(cell, record))
    return CellOutcome(cell, "failed", str(cell.path), 0.0, message)


def render(*directories: Path, out: Path | None = None) -> dict[str, Path]:
    """Render LEADERBOARD.md, leaderboard.tex and report/index.html from every record under
    ``directories`` into ``out`` (default: the first directory)."""
    from pd4ml.bench.leaderboard import load_records, write_leaderboard

    records = load_records(list(directories))
    return write_leaderboard(records, out or directories[0])
