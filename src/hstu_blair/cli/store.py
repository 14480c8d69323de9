"""``check`` and ``events import``: the run directory's health and bulk loads into its store."""

from __future__ import annotations

import argparse
from pathlib import Path

import hstu_blair as hb

STORE_HELP = (
    "the store: a SQLite file path or a PostgreSQL URL postgresql://USER:PASS@HOST/DB "
    "(default RUN_DIR/store.sqlite)"
)


def add_check_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``check RUN_DIR [--store]``."""
    p = sub.add_parser(
        "check",
        help="report a run directory's health: model files, store, set-aside records",
        description=(
            "Check a run directory without loading the model or writing anything: the served "
            "version's model.json and weights, with the checks loading does before allocating "
            "(keys, types and sizes; safetensors headers against file sizes, tensor names and "
            "shapes against the architecture), the dataset and text store the model "
            "names, and the store (SQLite's integrity check, schema version, counts of added items, "
            "events and users, damaged rows, records set aside, and the events and items it lost "
            "since the model versions recorded them; a store the run had that is missing or empty). "
            "Exit status: 0 healthy, 1 records set aside or damaged (the run is served without "
            "them), 2 the store is damaged or lost data (restore it from a backup) or the run is "
            "unusable."
        ),
    )
    p.add_argument("run_dir", type=Path, help="run directory written by `hstu-blair train`")
    p.add_argument("--store", help=STORE_HELP)
    p.set_defaults(handler=run_check)
    return p


def run_check(args: argparse.Namespace) -> int:
    """Handler of ``check``: prints the findings; returns 0, 1 or 2 (see the help)."""
    health = hb.check_run(args.run_dir, args.store)
    print(f"{args.run_dir}: {health.status}")
    for key, value in health.facts.items():
        print(f"  {key:<18} {value}")
    for line in health.set_aside:
        print(f"  set aside: {line}")
    for line in health.damaged:
        print(f"  damaged: {line}")
    for line in health.problems:
        print(f"  unusable: {line}")
    return health.exit_code


def add_events_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``events import FILE RUN_DIR [--store]``."""
    p = sub.add_parser(
        "events",
        help="load users' events into a run's store",
        description="Users' events (user_id, item_id, timestamp) kept in a run's store.",
    )
    actions = p.add_subparsers(dest="events_command", metavar="ACTION", required=True)
    imp = actions.add_parser(
        "import",
        help="bulk-load events from a CSV or Parquet file",
        description=(
            "Load events from FILE (.csv, .tsv or .parquet with columns user_id, item_id, timestamp, "
            "or the names --user-column, --item-column, --time-column give; other columns are ignored) "
            "into RUN_DIR's store, in one transaction. Timestamps are integer seconds or ISO 8601 dates "
            "or datetimes (UTC unless they carry an offset), as POST /events takes them; negative ones "
            "are refused. Ids follow the rule prepare applies (Unicode NFC; no invisible, bidirectional "
            "or control characters). "
            "Every row is checked first: a bad id, a bad timestamp or an item not in the catalogue "
            "(trained plus added items) stops the import naming file, line and field, and nothing is "
            "stored. Each event is stored once: rows repeating another row of the file, or an event "
            "already in the store (same user_id, item_id and timestamp), are skipped and counted, so "
            "importing a file again stores nothing. Running servers use the events from their next "
            "query on."
        ),
    )
    imp.add_argument("file", type=Path, help="CSV or Parquet file of events")
    imp.add_argument("run_dir", type=Path, help="run directory written by `hstu-blair train`")
    imp.add_argument("--store", help=STORE_HELP)
    imp.add_argument("--user-column", default="user_id", help="the user id column (default %(default)s)")
    imp.add_argument("--item-column", default="item_id", help="the item id column (default %(default)s)")
    imp.add_argument(
        "--time-column",
        default="timestamp",
        help="the timestamp column: integer seconds or ISO 8601 (default %(default)s)",
    )
    imp.set_defaults(handler=run_events_import)
    return p


def run_events_import(args: argparse.Namespace) -> int:
    """Handler of ``events import``: prints how many events were stored and skipped; returns 0."""
    columns = (args.user_column, args.item_column, args.time_column)
    written = hb.import_events(args.file, args.run_dir, args.store, columns)
    print(
        f"stored {written.new} events from {args.file} in the store of {args.run_dir} "
        f"({written.received} rows: {written.repeated} exact duplicate rows of the file and "
        f"{written.already_stored} events already in the store skipped)"
    )
    return 0
