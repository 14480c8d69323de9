"""``hstu-blair`` command line: each subcommand parses arguments, calls one API function, prints a summary."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from hstu_blair._version import __version__
from hstu_blair.errors import HstuBlairError
from hstu_blair.serving.cli_args import add_recommend_parser, add_serve_parser
from hstu_blair.text.cli_args import add_embed_parser, add_pretrain_parser

Handler = Callable[[argparse.Namespace], int]


def _add_set_option(p: argparse.ArgumentParser, help: str) -> None:
    """The repeatable ``--set section.key=value`` config override."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help)


# ---- prepare / stats / download ----------------------------------------------------------------
def _add_prepare(sub: argparse._SubParsersAction) -> None:
    from hstu_blair.data.prepare import SOURCES

    p = sub.add_parser(
        "prepare",
        help="turn published dataset files into a prepared-dataset directory",
        description=(
            "Read a dataset from its published files (plain or .gz), filter it (duplicates, items "
            "without text, k-core) and write manifest.json, items.parquet and sequences.parquet to "
            "--out. Files are recognised by their published names; --interactions/--items override. "
            "`ml-latest-small` is bundled and needs no --input."
        ),
    )
    p.add_argument("source", choices=list(SOURCES), help="dataset source format")
    p.add_argument(
        "--input", "-i", nargs="+", type=Path, default=[], metavar="PATH", help="files or directories"
    )
    p.add_argument("--out", "-o", type=Path, required=True, help="output directory")
    p.add_argument(
        "--reference",
        action="store_true",
        help="the reference preprocessing: single-pass k-core, ASCII-only reference text, keep duplicates",
    )
    p.add_argument(
        "--kcore",
        type=int,
        default=None,
        help="min interactions per user and item (default: 5 for amazon2023/steam, none otherwise)",
    )
    p.add_argument("--kcore-mode", choices=["iterative", "single-pass"], default=None)
    p.add_argument(
        "--items-without-text",
        choices=["drop", "keep"],
        default=None,
        help="drop interactions of items lacking text (default, the paper) or keep them with empty text",
    )
    p.add_argument(
        "--duplicates",
        choices=["drop-exact", "keep"],
        default=None,
        help="drop repeated (user, item, timestamp) rows (default) or keep them",
    )
    p.add_argument(
        "--ascii-only", action="store_true", default=None, help="replace non-ASCII text with spaces"
    )
    p.add_argument("--text-style", choices=["clean", "reference"], default=None)
    p.add_argument(
        "--skip-bad-lines",
        action="store_true",
        default=None,
        help="count malformed lines in the manifest instead of stopping at the first",
    )
    p.add_argument(
        "--no-reviews",
        dest="with_reviews",
        action="store_false",
        default=None,
        help="do not keep review/tag texts (used by pretrain-text)",
    )
    p.add_argument("--name", help="dataset name recorded in the manifest")
    g = p.add_argument_group("file overrides and generic columns")
    g.add_argument(
        "--interactions", dest="interactions_file", type=Path, help="the interactions/ratings file"
    )
    g.add_argument("--items", dest="items_file", type=Path, help="the item metadata/catalogue file")
    g.add_argument("--reviews", dest="reviews_file", type=Path, help="the review-text file")
    g.add_argument("--user-col", dest="user_column")
    g.add_argument("--item-col", dest="item_column")
    g.add_argument("--time-col", dest="timestamp_column")
    g.add_argument("--rating-col", dest="rating_column", help="'none' for implicit feedback (rating 1)")
    g.add_argument("--item-id-col", dest="item_id_column", help="item id column of the item table")
    g.add_argument("--text-cols", dest="text_columns", nargs="+", help="text columns of the item table")
    g.add_argument("--title-col", dest="title_column")
    g.add_argument("--timestamp-unit", choices=["s", "ms", "us", "ns", "iso"], default=None)
    p.set_defaults(handler=_prepare)


def _prepare(args: argparse.Namespace) -> int:
    from hstu_blair.data.prepare import PrepareOptions, prepare
    from hstu_blair.data.summary import format_summary, summarize

    fields = PrepareOptions.__dataclass_fields__
    overrides = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    if overrides.get("rating_column") == "none":
        overrides["rating_column"] = None
    options = PrepareOptions.reference(**overrides) if args.reference else PrepareOptions(**overrides)
    data = prepare(args.source, args.input, args.out, options)
    print(format_summary(summarize(data)))
    print(f"\nwrote {args.out}")
    return 0


def _add_stats(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stats",
        help="print statistics of a prepared dataset",
        description="Users, items, interactions, sequence-length percentiles, density and "
        "the filter report of a prepared-dataset directory.",
    )
    p.add_argument("dataset", type=Path, help="prepared-dataset directory")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_stats)


def _stats(args: argparse.Namespace) -> int:
    from hstu_blair.data.dataset import load_dataset
    from hstu_blair.data.summary import format_summary, summarize

    summary = summarize(load_dataset(args.dataset))
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def _add_download(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "download",
        help="download a dataset's official files (resumable, checksum-verified)",
        description=(
            "Download a dataset's published files into DIR (default data/raw/NAME) and check each against "
            "its official size and sha256. NAME is amazon2023:<Category> (5-core ratings + item metadata, "
            "the paper's inputs, e.g. amazon2023:Video_Games), amazon2023:<Category>:reviews (raw reviews "
            "with text), steam, or a MovieLens set (ml-100k, ml-1m, ml-20m, ml-latest-small, ml-latest; the "
            "zip is unpacked). An interrupted download resumes from its .part file; verified files are "
            "skipped. Offline, the error lists each URL and where to put the file."
        ),
    )
    p.add_argument("name", nargs="?", help="dataset name (see --list)")
    p.add_argument("--dest", type=Path, help="target directory (default data/raw/NAME)")
    p.add_argument(
        "--base-url", help="mirror keeping the official relative paths (or HSTU_BLAIR_DOWNLOAD_BASE_URL)"
    )
    p.add_argument("--list", action="store_true", help="list the downloadable datasets")
    p.set_defaults(handler=_download)


def _download(args: argparse.Namespace) -> int:
    from hstu_blair.data.download import download, list_downloads

    if args.list or not args.name:
        for d in list_downloads():
            size = f"{d.size / 1e6:,.0f} MB" if d.size else "size unknown"
            print(f"{d.name:<45} {size:>12}  {d.description}")
        return 0
    dest = args.dest or Path("data/raw") / args.name.replace(":", "_")
    paths = download(args.name, dest, base_url=args.base_url)
    for path in paths:
        print(path)
    return 0


# ---- train / evaluate ----------------------------------------------------------------------------
def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train and evaluate a model from a config file",
        description=(
            "Train HSTU / SASRec (ID-only or text-fused) as CONFIG says, validate every epoch with early "
            "stopping, keep the best checkpoint and report test metrics. Configs for every row of both "
            "papers are under configs/. Override any key with --set section.key=value."
        ),
    )
    p.add_argument("config", type=Path, nargs="?", help="TOML config file (default: built-in defaults)")
    _add_set_option(p, "override a config value, e.g. --set train.epochs=5 (repeatable)")
    p.add_argument(
        "--reference",
        action="store_true",
        help="the reference protocol: no validation, per-position negatives, ranks capped at 2500",
    )
    p.add_argument("--run-dir", type=Path, help="output directory (default: {out_dir}/{name}-{timestamp})")
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --run-dir from its last checkpoint"
    )
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(handler=_train)


def _print_metrics(metrics: dict, title: str) -> None:
    print(title)
    for key, value in metrics.items():
        print(f"  {key:<22} {value:.4f}" if isinstance(value, float) else f"  {key:<22} {value}")


def _train(args: argparse.Namespace) -> int:
    from hstu_blair.config import load_config
    from hstu_blair.training.loop import train

    if args.resume and args.run_dir is None:
        raise HstuBlairError("--resume needs --run-dir")
    config = load_config(args.config, args.overrides, reference=args.reference)
    result = train(config, run_dir=args.run_dir, resume=args.resume, progress=not args.no_progress)
    _print_metrics(
        result.metrics,
        f"test metrics ({config.model.name}, fusion={config.model.fusion}, best epoch {result.best_epoch}):",
    )
    print(f"run directory: {result.run_dir}")
    return 0


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="re-evaluate a saved run",
        description="Score a run's best (or last) checkpoint on the validation or test split "
        "with full ranking over the whole catalogue.",
    )
    p.add_argument("run_dir", type=Path)
    p.add_argument("--split", choices=["valid", "test"], default="test")
    p.add_argument("--checkpoint", choices=["best", "last"], default="best")
    _add_set_option(p, "override eval.* settings, e.g. --set eval.reference_ranks=true")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    from hstu_blair.evaluation.evaluate import evaluate_run

    metrics = evaluate_run(args.run_dir, args.split, args.checkpoint, args.overrides)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        _print_metrics(metrics, f"{args.split} metrics of {args.run_dir} ({args.checkpoint} checkpoint):")
    return 0


def _add_cold_start(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cold-start",
        help="hold out items, train without them, rank them through the text path",
        description=(
            "Hold out a random share of items with all their interactions, train CONFIG on the rest "
            "(negatives drawn from seen items only), then rank each user's first held-out item over the "
            "whole catalogue. ID-only models cannot rank such items; text-only and fused models can."
        ),
    )
    p.add_argument("config", type=Path, nargs="?", help="TOML config file (default: built-in defaults)")
    p.add_argument("--share", type=float, default=0.1, help="share of items held out (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the held-out item draw")
    p.add_argument("--work-dir", type=Path, help="where the warm dataset and the run go")
    _add_set_option(p, "override a config value, e.g. --set model.fusion=text (repeatable)")
    p.set_defaults(handler=_cold_start)


def _cold_start(args: argparse.Namespace) -> int:
    from hstu_blair.config import load_config
    from hstu_blair.evaluation.cold_start import run_cold_start

    result = run_cold_start(load_config(args.config, args.overrides), args.share, args.seed, args.work_dir)
    _print_metrics(
        result["cold"],
        f"cold-start items ({result['cold_items']} held out, {result['cold_targets']} targets):",
    )
    _print_metrics(result["warm_test"], "warm test split:")
    print(f"run directory: {result['run_dir']}")
    return 0


# ---- reproduce / report ------------------------------------------------------------------------
def _add_reproduce(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reproduce",
        help="run a grid of datasets x models x seeds (resumable)",
        description=(
            "Run every (model, seed) of a grid file (configs/grids/*.toml) whose run is not finished: "
            "finished runs are skipped, interrupted ones resumed, entries whose data is absent reported. "
            "Then `hstu-blair report` the output folder."
        ),
    )
    p.add_argument("grid", type=Path, help="grid TOML file")
    _add_set_option(p, "override a config value in every run (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="list what would run")
    p.set_defaults(handler=_reproduce)


def _reproduce(args: argparse.Namespace) -> int:
    from hstu_blair.reports.reproduce import reproduce

    result = reproduce(args.grid, args.overrides, dry_run=args.dry_run)
    print(
        f"finished {len(result.finished)}, already done {len(result.already_done)}, "
        f"skipped for missing data {len(result.missing_data)}"
    )
    for line in result.missing_data:
        print(f"  missing data: {line}")
    return 0


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="paper-style tables and plots from run directories",
        description=(
            "Write report.md / report.json (a table per dataset: mean ± std over seeds, %% gain over HSTU "
            "and SASRec, best in bold, paired t-test across seeds) and PNG plots (metrics with error "
            "bars, validation curves) for the runs found under RUNS."
        ),
    )
    p.add_argument("runs", type=Path, nargs="+", help="run directories or folders holding them")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--expected", choices=["paper"], help="place the published numbers beside ours")
    p.add_argument(
        "--tolerance", type=float, default=0.10, help="relative difference flagged against the paper"
    )
    p.add_argument("--title", default="Results")
    p.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    from hstu_blair.reports.report import write_report

    try:
        write_report(args.runs, args.out, args.expected, args.tolerance, title=args.title)
    except ValueError as exc:
        raise HstuBlairError(str(exc)) from None
    print((args.out / "report.md").read_text())
    print(f"wrote {args.out}/report.md, report.json and plots")
    return 0


# ---- entry point ---------------------------------------------------------------------------------
COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_prepare,
    _add_stats,
    _add_download,
    add_embed_parser,
    add_pretrain_parser,
    _add_train,
    _add_evaluate,
    _add_cold_start,
    add_recommend_parser,
    add_serve_parser,
    _add_reproduce,
    _add_report,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hstu-blair",
        description="Text-enhanced generative sequential recommendation (HSTU, HSTU-BLaIR, SASRec).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code (errors of bad input exit with 2 and one message)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    handler: Handler = args.handler
    try:
        return handler(args)
    except (HstuBlairError, KeyError, FileNotFoundError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"hstu-blair {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
