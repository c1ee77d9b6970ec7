"""``python -m pd4ml.bench`` (also ``pd4ml bench``): run benchmark cells, render leaderboards.

    python -m pd4ml.bench --all --source demo --profile quick        # the offline demo
    python -m pd4ml.bench --datasets top_tagging higgsml --seeds 3   # real data, quick profile
    python -m pd4ml.bench --all --profile paper --executor dask --scheduler tcp://HOST:8786
    python -m pd4ml.bench report DIR [DIR …] [--out DIR]               # merge records

Exit codes: 0 every cell finished, 1 some cell failed (its record says why), 2 a usage error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pd4ml.bench.errors import BenchError
from pd4ml.errors import Pd4mlError, UnknownNameError

EXIT_FAILED_CELLS = 1
EXIT_USAGE = 2


def build_parser(prog: str = "python -m pd4ml.bench") -> argparse.ArgumentParser:
    """The parser of a run."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Train and score (dataset × model × seed) cells; write records with "
        "provenance and a leaderboard. `%(prog)s report DIR…` merges records into one.",
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every dataset")
    which.add_argument("--datasets", nargs="+", metavar="NAME", help="these datasets")
    parser.add_argument(
        "--models",
        nargs="+",
        default=["shared"],
        metavar="NAME",
        help="model names, or the groups 'shared' (FCN, GraphNet; default) and 'reference'",
    )
    parser.add_argument(
        "--seeds", type=int, default=None, help="seeds 0…N-1 per cell (default: 2; paper: 5)"
    )
    parser.add_argument(
        "--profile", choices=["quick", "paper"], default="quick", help="default quick"
    )
    parser.add_argument(
        "--source",
        choices=["archive", "demo"],
        default="archive",
        help="archive: the real files (default); demo: synthetic files on a loopback server",
    )
    parser.add_argument("--executor", choices=["local", "dask"], default="local")
    cluster = parser.add_mutually_exclusive_group()
    cluster.add_argument("--scheduler", metavar="ADDRESS", help="a Dask scheduler (tcp://…)")
    cluster.add_argument("--workers", type=int, metavar="N", help="a local Dask cluster of N")
    parser.add_argument("--out", default="pd4ml-bench", help="output directory")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per cell")
    parser.add_argument("--data-dir", default=None, help="dataset cache (archive source)")
    parser.add_argument(
        "--progress", choices=["auto", "live", "plain", "off"], default="auto", help="display"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    return parser


def build_report_parser(prog: str = "python -m pd4ml.bench report") -> argparse.ArgumentParser:
    """The parser of ``report``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Merge the records of several runs (machines, clusters) into one "
        "leaderboard: LEADERBOARD.md, leaderboard.tex and report/index.html.",
    )
    parser.add_argument("directories", nargs="+", metavar="DIR", help="run directories")
    parser.add_argument("--out", default=None, help="where to write (default: the first DIR)")
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "python -m pd4ml.bench") -> int:
    """Run the command line; return the exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        if arguments[:1] == ["report"]:
            return _report(build_report_parser(f"{prog} report").parse_args(arguments[1:]))
        return _run(build_parser(prog).parse_args(arguments))
    except UnknownNameError as error:
        print(f"pd4ml.bench: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except BenchError as error:
        print(f"pd4ml.bench: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except Pd4mlError as error:
        print(f"pd4ml.bench: error: {error}", file=sys.stderr)
        return EXIT_FAILED_CELLS
    except KeyboardInterrupt:
        print(
            "pd4ml.bench: interrupted; finished records are kept, run the same command "
            "again to go on",
            file=sys.stderr,
        )
        return 130


def _run(args: argparse.Namespace) -> int:
    from pd4ml.bench.runner import BenchConfig, all_datasets, run_bench

    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    seeds = args.seeds if args.seeds is not None else (5 if args.profile == "paper" else 2)
    config = BenchConfig(
        datasets=all_datasets() if args.all else tuple(args.datasets),
        models=tuple(args.models),
        seeds=seeds,
        profile=args.profile,
        source=args.source,
        executor=args.executor,
        scheduler=args.scheduler,
        workers=args.workers,
        out=Path(args.out),
        threads=args.threads,
        data_dir=Path(args.data_dir) if args.data_dir else None,
        progress=args.progress,
        skip_unpublished=bool(args.all),
    )
    summary = run_bench(config)
    ran = len(summary.outcomes)
    print(
        f"pd4ml.bench: {ran} cell(s) run in {summary.seconds:.1f} s, "
        f"{len(summary.failed)} failed, {len(summary.plan.cells) - ran} reused",
        flush=True,
    )
    for outcome in summary.failed:
        print(f"pd4ml.bench: failed {outcome.cell.label}: {outcome.message}", file=sys.stderr)
    return EXIT_FAILED_CELLS if summary.failed else 0


def _report(args: argparse.Namespace) -> int:
    from pd4ml.bench.runner import render

    directories = [Path(directory) for directory in args.directories]
    outputs = render(*directories, out=Path(args.out) if args.out else None)
    for kind, path in outputs.items():
        print(f"pd4ml.bench: {kind}: {path}")
    return 0
