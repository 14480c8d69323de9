"""``prepare``, ``stats`` and ``download``: the data subcommands (they never load torch)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from hstu_blair.data.dataset import BAD_LINES, load_dataset
from hstu_blair.data.download import download, list_downloads
from hstu_blair.data.options import OptionDoc, PrepareOptions
from hstu_blair.data.prepare import SOURCES, prepare
from hstu_blair.data.summary import format_summary, summarize

FLAG_NAMES = {
    "interactions_file": "--interactions",
    "items_file": "--items",
    "reviews_file": "--reviews",
    "user_column": "--user-col",
    "item_column": "--item-col",
    "timestamp_column": "--time-col",
    "rating_column": "--rating-col",
    "item_id_column": "--item-id-col",
    "text_columns": "--text-cols",
    "title_column": "--title-col",
    "with_reviews": "--no-reviews",
    "tag_text": "--no-tag-text",
}
"""Flags not spelled ``--<field-name>``; every other :class:`PrepareOptions` field is ``--field-name``."""
FILE_AND_COLUMN_OPTIONS = tuple(FLAG_NAMES)[:10] + ("timestamp_unit",)
"""The options listed under "file overrides and columns" in ``--help``."""


_METAVARS = {Path: "PATH", int: "N"}


def _add_option(group: argparse._ActionsContainer, option: OptionDoc) -> None:
    """One ``prepare`` flag made from an option's type, allowed values, default and docstring."""
    flag = FLAG_NAMES.get(option.name, "--" + option.name.replace("_", "-"))
    text = option.help.replace("%", "%%")
    kwargs: dict[str, Any] = {"dest": option.name, "default": None}
    if option.kind is bool:
        kwargs["action"] = "store_false" if option.default else "store_true"
        text = f"turns off what is on by default: {text}" if option.default else text
    elif option.kind is list:
        kwargs.update(nargs="+", metavar="NAME")
    else:
        kwargs["type"] = option.kind
        kwargs["metavar"] = None if option.choices else _METAVARS.get(option.kind, "NAME")
        if option.choices:
            kwargs["choices"] = list(option.choices)
        if option.default is not None:
            text += f" (default: {option.default})"
    group.add_argument(flag, help=text, **kwargs)


def add_prepare(sub: argparse._SubParsersAction) -> None:
    """Register ``hstu-blair prepare``."""
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
        help=(
            "the reference preprocessing of SOURCE (docs/reference.md): its k-core, item universe, "
            "tie order, text and file quirks; options given explicitly still win"
        ),
    )
    files = p.add_argument_group("file overrides and columns")
    for option in PrepareOptions.describe():
        _add_option(files if option.name in FILE_AND_COLUMN_OPTIONS else p, option)
    p.set_defaults(handler=_prepare)


def _prepare(args: argparse.Namespace) -> int:
    fields = PrepareOptions.__dataclass_fields__
    overrides = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    if overrides.get("rating_column") == "none":
        overrides["rating_column"] = None
    if args.reference:
        options = PrepareOptions.reference(source=args.source, **overrides)
    else:
        options = PrepareOptions(**overrides)
    data = prepare(args.source, args.input, args.out, options)
    print(format_summary(summarize(data)))
    if getattr(args, "verbose", False):
        print_bad_lines(args.out)
    print(f"\nwrote {args.out}")
    return 0


def print_bad_lines(dataset: Path) -> None:
    """Print every line ``--skip-bad-lines`` skipped (``file:line (field): reason``), from the
    dataset's ``bad_lines.jsonl``; nothing when none was skipped."""
    path = dataset / BAD_LINES
    if not path.exists():
        return
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    print(f"\nskipped lines ({len(records)}, also in {path}):")
    for r in records:
        print(f"  {r['file']}:{r['line']} (field {r['field']!r}): {r['reason']}")


def add_stats(sub: argparse._SubParsersAction) -> None:
    """Register ``hstu-blair stats``."""
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
    summary = summarize(load_dataset(args.dataset))
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def add_download(sub: argparse._SubParsersAction) -> None:
    """Register ``hstu-blair download``."""
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
