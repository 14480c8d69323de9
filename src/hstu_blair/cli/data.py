"""``prepare``, ``stats`` and ``download``: the data subcommands (they never load torch)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hstu_blair.data.dataset import load_dataset
from hstu_blair.data.download import download, list_downloads
from hstu_blair.data.options import PrepareOptions
from hstu_blair.data.prepare import SOURCES, prepare
from hstu_blair.data.summary import format_summary, summarize


def add_prepare(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument(
        "--kcore",
        type=int,
        default=None,
        help="min interactions per user and item (default: 5 for amazon2023/steam/xwines/lastfm-hetrec, none otherwise)",
    )
    p.add_argument(
        "--kcore-mode",
        choices=["iterative", "single-pass", "users-only"],
        default=None,
        help="iterative k-core (default), the reference's single pass (Amazon), or users only (its Steam)",
    )
    p.add_argument(
        "--item-universe",
        choices=["interacted", "before-user-drop", "catalogue"],
        default=None,
        help=(
            "items written (candidates and negatives): those with interactions (default), also the "
            "items of users the single-pass k-core drops last (the reference's Amazon), or the whole "
            "item table (the reference's MovieLens)"
        ),
    )
    p.add_argument(
        "--tie-order",
        choices=["stable", "random", "reference"],
        default=None,
        help=(
            "order of a user's interactions with equal timestamps: file order (default), random "
            "(--tie-seed), or the reference's unstable sort (numpy-version and CPU dependent)"
        ),
    )
    p.add_argument("--tie-seed", type=int, default=None, help="seed of --tie-order random (default 0)")
    p.add_argument(
        "--drop-first-data-row",
        action="store_true",
        default=None,
        help="drop the first data row of an Amazon rating CSV, as the reference's header=1 does",
    )
    p.add_argument(
        "--steam-parse",
        choices=["exact", "reference"],
        default=None,
        help="read Steam lines exactly (default) or as the reference's quote-replacing fix does (drops lines)",
    )
    p.add_argument(
        "--items-without-text",
        choices=["drop", "keep", "drop-missing"],
        default=None,
        help=(
            "drop interactions of items lacking text (the paper; the default except for user-sequences "
            "and recbole), "
            "keep them with empty text (the default for user-sequences and recbole, whose published splits keep "
            "every item), or drop only items missing from the item table (the reference)"
        ),
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
        help=(
            "skip malformed lines instead of stopping at the first: counted in the manifest, each "
            "(file, line, field, reason) in bad_lines.jsonl"
        ),
    )
    p.add_argument(
        "--no-reviews",
        dest="with_reviews",
        action="store_false",
        default=None,
        help="do not keep review/tag texts (used by pretrain-text)",
    )
    p.add_argument(
        "--no-tag-text",
        dest="tag_text",
        action="store_false",
        default=None,
        help="lastfm-hetrec: item text from the artist name only, without users' tags (they leak later events)",
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
    print(f"\nwrote {args.out}")
    return 0


def add_stats(sub: argparse._SubParsersAction) -> None:
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
