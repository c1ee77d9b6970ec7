"""The ``pd4ml`` command line (also ``python -m pd4ml`` and ``pd4ml-hep``).

Commands: ``list``, ``info NAME``, ``download NAME… | --all``, ``verify [NAME]``, ``urls NAME``,
``import NAME DIR``, ``cite [NAME | --results DIR…]``, ``cache [clean]``, ``bench …`` (the
benchmark runner, :mod:`pd4ml.bench.cli`) and ``demo`` (``bench --all --source demo --profile
quick``). Exit codes: 0 success,
1 a failed download/verification/import, 2 a usage error (unknown name, bad arguments).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from pd4ml._version import __version__
from pd4ml.cache import Cache, convert_lock, prepare_lock, read_json
from pd4ml.config import Settings
from pd4ml.datasets.storage import verify_split
from pd4ml.errors import Pd4mlError, UnknownNameError
from pd4ml.fetch import Fetcher
from pd4ml.fetch.archives import archive_urls
from pd4ml.fetch.locking import try_exclusive
from pd4ml.manifest import DatasetManifest, bundled_manifests, find_manifest, human_size

EXIT_FAILURE = 1
EXIT_USAGE = 2


def _manifests(names: Sequence[str]) -> list[DatasetManifest]:
    return [find_manifest(name) for name in names]


def _command_list(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    fetcher = Fetcher(settings)
    table = Table(title=f"pd4ml {__version__} datasets (cache: {settings.data_dir})")
    for column in ("dataset", "name", "task", "version", "size", "cached", "archive"):
        table.add_column(column)
    for manifest in bundled_manifests().values():
        version = manifest.version()
        stamped = [fetcher.is_cached(manifest, version, entry) for entry in version.files]
        cached = "yes" if all(stamped) else ("partly" if any(stamped) else "no")
        table.add_row(
            manifest.display_name,
            manifest.name,
            manifest.task,
            version.name,
            human_size(version.total_size),
            cached,
            version.source.status,
        )
    console.print(table)
    return 0


def _command_info(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    console.print(find_manifest(args.name).card(), markup=False, highlight=False)
    return 0


def _command_download(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    if not args.all and not args.names:
        raise UnknownNameError("name at least one dataset, or use --all")
    manifests = list(bundled_manifests().values()) if args.all else _manifests(args.names)
    fetcher = Fetcher(settings)
    failures = 0
    for manifest in manifests:
        version = manifest.version(args.version)
        if args.all and version.source.status == "unpublished":
            console.print(f"{manifest.name}: skipped ({version.source.status_note})")
            continue
        try:
            files = fetcher.fetch(manifest, version, force=args.force)
        except Pd4mlError as error:
            failures += 1
            print(f"pd4ml: error: {manifest.name}: {error}", file=sys.stderr)
            continue
        for key, local in files.items():
            console.print(f"{manifest.name} {version.name} {key}: {local.origin}, {local.checksum}")
    return EXIT_FAILURE if failures else 0


def _command_verify(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    manifests = _manifests(args.names) if args.names else list(bundled_manifests().values())
    fetcher = Fetcher(settings)
    bad = 0
    checked = 0
    for manifest in manifests:
        for version in manifest.versions:
            for key, path, status in fetcher.verify(manifest, version):
                if status == "missing":
                    continue
                checked += 1
                ok = status == "ok"
                bad += not ok
                colour = "green" if ok else "red"
                console.print(
                    f"[{colour}]{status}[/{colour}] {manifest.name} {version.name} {key} ({path})",
                    highlight=False,
                )
    names = {manifest.name for manifest in manifests} if args.names else None
    arrays_checked, arrays_bad = _verify_arrays(names, settings, console)
    checked += arrays_checked
    bad += arrays_bad
    if not checked:
        console.print("nothing cached to verify")
    return EXIT_FAILURE if bad else 0


def _verify_arrays(names: set[str] | None, settings: Settings, console: Console) -> tuple[int, int]:
    """Re-hash every converted and prepared split (and the stored statistics and dense
    adjacencies) of the datasets ``names`` (default all) against the checksums written with
    them, in the user cache and the read-only shared layers. Damaged splits of the user cache
    are removed (under the lock of their writer), so the next load rebuilds them."""
    checked = bad = 0
    roots = [(settings.data_dir, True), *((root, False) for root in settings.shared_dirs)]
    for root, writable in roots:
        for version_dir in sorted(root.glob("*/*")) if root.is_dir() else []:
            dataset, version = version_dir.parent.name, version_dir.name
            if dataset.startswith(".") or not version_dir.is_dir():
                continue
            if names is not None and dataset not in names:
                continue
            for meta_path, lock in _array_records(version_dir):
                meta = read_json(meta_path)
                if not isinstance(meta, dict):
                    continue
                directory = meta_path.parent
                where = f"{dataset} {version} {directory.relative_to(version_dir)}"
                if "array_files" not in meta:
                    console.print(
                        f"[yellow]outdated[/yellow] {where}: written by an older pd4ml, "
                        "rebuilt on the next load",
                        highlight=False,
                        soft_wrap=True,
                    )
                    continue
                checked += 1
                problems = verify_split(directory, meta)
                if not problems:
                    console.print(f"[green]ok[/green] {where}", highlight=False, soft_wrap=True)
                    continue
                bad += 1
                action = "in a read-only shared layer: ask its maintainer to rebuild it"
                if writable:
                    with try_exclusive(lock) as held:
                        if held:
                            _remove_records(meta_path)
                            action = "removed; the next load rebuilds it from the raw files"
                        else:
                            action = "in use by a running process; not removed"
                console.print(
                    f"[red]damaged[/red] {where}: " + "; ".join(problems) + f" — {action}",
                    highlight=False,
                    soft_wrap=True,
                )
    return checked, bad


def _array_records(version_dir: Path) -> list[tuple[Path, Path]]:
    """The record files of a version directory, each with the lock of its writer."""
    found = [(path, convert_lock(version_dir)) for path in version_dir.glob("arrays*/*/meta.json")]
    for key_dir in sorted((version_dir / "prepared").glob("*")):
        if not key_dir.is_dir() or key_dir.name.startswith("."):
            continue
        lock = prepare_lock(version_dir, key_dir.name)
        found += [(path, lock) for path in sorted(key_dir.glob("*/meta.json"))]
        found += [
            (path, path.parent / ".adj_matrix.lock")
            for path in sorted(key_dir.glob("*/adj_matrix-*.meta.json"))
        ]
    return sorted(found)


def _remove_records(meta_path: Path) -> None:
    """Remove what a damaged record describes: a split or statistics directory, or a dense
    adjacency file with its record."""
    if meta_path.name == "meta.json":
        shutil.rmtree(meta_path.parent, ignore_errors=True)
        return
    stem = meta_path.name[: -len(".meta.json")]
    (meta_path.parent / f"{stem}.npy").unlink(missing_ok=True)
    meta_path.unlink(missing_ok=True)


def _command_urls(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    manifest = find_manifest(args.name)
    version = manifest.version(args.version)
    cache = Cache(settings)
    for entry in version.files:
        if entry.is_pattern:
            record_api = f"{version.source.resolved_base_url}/api/records/{version.source.record}"
            console.print(
                f"{entry.key}: the file name and checksum are listed by the record: {record_api}",
                highlight=False,
                soft_wrap=True,
            )
            continue
        urls = [
            *entry.mirrors,
            *(
                archive_urls(version, entry, settings)
                if version.source.status != "unpublished"
                else []
            ),
        ]
        checksums = " ".join(map(str, entry.checksums)) or "(checksum: from the record API)"
        if args.plain:
            for url in urls:
                print(
                    f"{url}\t{checksums}\t{'' if entry.size is None else entry.size}\t{entry.key}"
                )
            continue
        console.print(f"{entry.key}  ({human_size(entry.size)})", highlight=False)
        console.print(f"  checksums: {checksums}", highlight=False)
        for url in urls:
            console.print(f"  {url}", highlight=False, soft_wrap=True)
        if not urls:
            console.print(f"  no public URL: {version.source.status_note}", highlight=False)
        target = cache.raw_path(manifest.name, version.name, entry.key)
        console.print(f"  cache location: {target}", highlight=False, soft_wrap=True)
    if not args.plain:
        console.print(
            f"\nAfter downloading them elsewhere: pd4ml import {manifest.name} DIR", highlight=False
        )
    return 0


def _command_import(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    manifest = find_manifest(args.name)
    imported = Fetcher(settings).import_directory(manifest, Path(args.directory), args.version)
    for key, local in imported.items():
        console.print(f"imported {key} → {local.path} ({local.checksum})", highlight=False)
    version = manifest.version(args.version)
    missing = [entry.key for entry in version.files if entry.key not in imported]
    if missing:
        console.print(f"still missing: {', '.join(missing)}", highlight=False)
    return 0


def _command_cite(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    from pd4ml.citation import package_bibtex

    if args.results:
        if args.name:
            raise UnknownNameError("give a dataset name or --results DIR, not both")
        from pd4ml.bench.citations import results_bibtex

        print(results_bibtex([Path(directory) for directory in args.results]), end="")
        return 0
    text = (
        find_manifest(args.name).bibtex() + "\n" + package_bibtex()
        if args.name
        else package_bibtex()
    )
    print(text, end="")
    return 0


def _command_cache(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    cache = Cache(settings)
    if args.action == "clean":
        return _clean_cache(args, cache, console)
    console.print(f"cache: {cache.root}", highlight=False)
    for root in cache.shared_roots():
        console.print(f"shared (read-only): {root}", highlight=False)
    usage = cache.usage()
    table = Table()
    for column in ("dataset", "version", "size"):
        table.add_column(column)
    for (dataset, version), size in usage.items():
        table.add_row(dataset, version, human_size(size))
    table.add_row("total", "", human_size(sum(usage.values())))
    console.print(table)
    leftovers = cache.leftovers()
    if leftovers:
        size = sum(entry.size() for entry in leftovers)
        console.print(
            f"{len(leftovers)} interrupted download(s), conversion(s) or preparation(s) "
            f"({human_size(size)}; those still running are kept): "
            "`pd4ml cache clean --partial`",
            highlight=False,
        )
        for entry in leftovers:
            console.print(f"  {entry.kind}: {entry.path}", highlight=False, soft_wrap=True)
    return 0


def _clean_cache(args: argparse.Namespace, cache: Cache, console: Console) -> int:
    if args.partial:
        for entry in cache.leftovers():
            with try_exclusive(entry.lock) as held:
                if not held:
                    console.print(
                        f"kept {entry.path} (its {entry.kind} is running)",
                        highlight=False,
                        soft_wrap=True,
                    )
                    continue
                size = entry.size()
                entry.remove()
            console.print(
                f"removed {entry.path} ({human_size(size)})", highlight=False, soft_wrap=True
            )
        return 0
    if not args.names and not args.all:
        raise UnknownNameError("name the dataset(s) to remove from the cache, or use --all")
    targets = (
        [cache.root / m.name for m in bundled_manifests().values()]
        if args.all
        else [cache.root / find_manifest(name).name for name in args.names]
    )
    for target in targets:
        if target.exists():
            shutil.rmtree(target)
            console.print(f"removed {target}", highlight=False)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``pd4ml`` command."""
    parser = argparse.ArgumentParser(
        prog="pd4ml", description="Physics data for machine learning: datasets, cache, citations."
    )
    parser.add_argument("--version", action="version", version=f"pd4ml-hep {__version__}")
    parser.add_argument(
        "--data-dir", help="cache directory (default: PD4ML_DATA_DIR or user cache)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    commands.add_parser("list", help="datasets: task, version, size, cached?")
    info = commands.add_parser("info", help="description, files, checksums, DOI, licence")
    info.add_argument("name")
    download = commands.add_parser("download", help="fetch and verify datasets")
    download.add_argument("names", nargs="*", metavar="NAME")
    download.add_argument("--all", action="store_true", help="every dataset with a public archive")
    download.add_argument("--version", dest="version", default=None)
    download.add_argument("--force", action="store_true", help="download again even if cached")
    verify = commands.add_parser("verify", help="re-hash cached files against their checksums")
    verify.add_argument("names", nargs="*", metavar="NAME")
    urls = commands.add_parser("urls", help="URLs and checksums for a manual download elsewhere")
    urls.add_argument("name")
    urls.add_argument("--version", dest="version", default=None)
    urls.add_argument(
        "--plain", action="store_true", help="tab-separated: url, checksums, size, key"
    )
    importing = commands.add_parser(
        "import", help="verify files fetched elsewhere, place them in the cache"
    )
    importing.add_argument("name")
    importing.add_argument("directory")
    importing.add_argument("--version", dest="version", default=None)
    cite = commands.add_parser(
        "cite", help="BibTeX for a dataset, for pd4ml, or for everything behind a leaderboard"
    )
    cite.add_argument("name", nargs="?")
    cite.add_argument(
        "--results",
        nargs="+",
        metavar="DIR",
        help="the datasets and papers behind the records of these benchmark runs",
    )
    cache = commands.add_parser("cache", help="where the cache is, how big; clean it")
    cache.add_argument("action", nargs="?", choices=["info", "clean"], default="info")
    cache.add_argument("names", nargs="*", metavar="NAME")
    cache.add_argument("--all", action="store_true", help="clean: every dataset")
    cache.add_argument("--partial", action="store_true", help="clean: interrupted downloads only")
    demo = commands.add_parser(
        "demo",
        help="the offline end-to-end demo: python -m pd4ml.bench --all --source demo "
        "--profile quick (synthetic files through the loopback archive server)",
        add_help=False,
    )
    demo.add_argument("bench_arguments", nargs=argparse.REMAINDER)
    bench = commands.add_parser(
        "bench", help="the benchmark runner (python -m pd4ml.bench)", add_help=False
    )
    bench.add_argument("bench_arguments", nargs=argparse.REMAINDER)
    return parser


_COMMANDS = {
    "list": _command_list,
    "info": _command_info,
    "download": _command_download,
    "verify": _command_verify,
    "urls": _command_urls,
    "import": _command_import,
    "cite": _command_cite,
    "cache": _command_cache,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] in (["bench"], ["demo"]):
        # the runner has its own parser (and --help); hand it every argument unparsed
        from pd4ml.bench.cli import main as bench_main

        if arguments[0] == "bench":
            return bench_main(arguments[1:], prog="pd4ml bench")
        chosen = "--datasets" in arguments or "--all" in arguments
        demo = ["--source", "demo", "--profile", "quick", *arguments[1:]]
        return bench_main(demo if chosen else ["--all", *demo], prog="pd4ml demo")
    parser = build_parser()
    args = parser.parse_args(arguments)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    settings = Settings.from_env(args.data_dir)
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    try:
        return _COMMANDS[args.command](args, settings, console)
    except UnknownNameError as error:
        print(f"pd4ml: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except Pd4mlError as error:
        print(f"pd4ml: error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("pd4ml: interrupted (partial downloads resume next time)", file=sys.stderr)
        return 130
