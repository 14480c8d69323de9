"""Bulk loading of users' events from a CSV or Parquet file into a run's store.

The file has the columns ``user_id``, ``item_id`` and ``timestamp`` (other names with
``columns``; other columns are ignored); a timestamp is integer seconds or an ISO 8601 date or
datetime (UTC unless it has an offset), as ``POST /events`` takes it. Ids follow the one rule of
:func:`hstu_blair.serving.ids.check_new_id` (Unicode NFC; no invisible, bidirectional or control
characters). Every row is checked before anything is stored: a bad id, a timestamp that is
neither (or negative, or out of range), or an item that is not in the catalogue (the trained
items plus the items added to the store) is an error naming the file, the row (the CSV line) and
the field; then all rows are stored in one transaction, each event once: a row repeating
another row of the file, or an event already stored (same user, item and timestamp), is skipped
and counted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from hstu_blair.errors import DataFormatError
from hstu_blair.run.model_files import read_model_info
from hstu_blair.run.store import EventsWritten, Store
from hstu_blair.serving.errors import ServingError
from hstu_blair.serving.ids import check_new_id, check_time, same_id

COLUMNS = ("user_id", "item_id", "timestamp")


def read_events(path: str | Path, columns: Sequence[str] = COLUMNS) -> list[tuple[str, str, int]]:
    """``(user_id, item_id, timestamp)`` rows of a CSV (``.csv``, ``.tsv``) or Parquet file.

    Args:
        path: the file.
        columns: the names of its user, item and timestamp columns.

    Raises:
        DataFormatError: a missing column, a bad id or a bad timestamp (file, line, field named).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv"):
            frame = pl.read_csv(path, separator="\t" if suffix == ".tsv" else ",", infer_schema=False)
            first_line = 2  # after the header
        elif suffix in (".parquet", ".pq"):
            frame = pl.read_parquet(path)
            first_line = 1
        else:
            raise DataFormatError(path, f"unknown file type {suffix!r}: expected .csv, .tsv or .parquet")
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataFormatError(path, f"cannot read it ({exc})") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataFormatError(path, f"missing columns {missing}; the file has {frame.columns}")
    user_col, item_col, time_col = columns
    frame = frame.select(
        pl.col(user_col).cast(pl.String).alias("user_id"),  # as written: canonical form below
        pl.col(item_col).cast(pl.String).alias("item_id"),
        pl.col(time_col).cast(pl.String).str.strip_chars().alias("raw_time"),
    )
    for name, column in (("user_id", user_col), ("item_id", item_col)):
        bad = frame.with_row_index().filter(pl.col(name).is_null() | (pl.col(name) == ""))
        if bad.height:
            raise DataFormatError(
                path, f"empty {name} ({bad.height} rows)", first_line + bad["index"][0], column
            )
    return _checked_rows(path, frame, first_line, columns)


def _checked_rows(
    path: Path, frame: pl.DataFrame, first_line: int, columns: Sequence[str]
) -> list[tuple[str, str, int]]:
    """The rows with their user ids in canonical form, item ids in NFC and times in seconds."""
    times = frame["raw_time"].to_list()
    seconds: list[int] = []
    for n, raw in enumerate(times):  # integer seconds or ISO 8601, as POST /events takes them
        try:
            seconds.append(check_time(int(raw) if raw and raw.lstrip("-").isdigit() else raw, "timestamp"))
        except (ServingError, TypeError) as exc:
            why = str(exc) if isinstance(exc, ServingError) else "timestamp is empty"
            raise DataFormatError(path, why, first_line + n, columns[2]) from None
    users = frame["user_id"].to_list()
    for n, user in enumerate(users):  # the form POST /events and GET /users/{id} accept
        try:
            users[n] = check_new_id(user, "user_id")
        except ServingError as exc:
            raise DataFormatError(path, str(exc), first_line + n, columns[0]) from None
    items = [same_id(item) for item in frame["item_id"].to_list()]
    return list(zip(users, items, seconds))


def import_events(
    path: str | Path,
    run_dir: str | Path,
    store: str | Path | None = None,
    columns: Sequence[str] = COLUMNS,
) -> EventsWritten:
    """Check every row of ``path`` (see :func:`read_events`; ``columns``: its user, item and
    timestamp columns) against the run's catalogue and store them all in one transaction, each event once.

    Returns:
        What was stored: ``received`` rows, ``stored`` distinct events (``repeated``: rows
        repeating another row of the file), ``new`` (the others were in the store already).

    Raises:
        DataFormatError: a bad row, or one naming an item not in the catalogue (nothing is stored).
        StoreError: the store cannot be opened or written.
    """
    rows = read_events(path, columns)
    with contextlib.closing(Store.for_run(run_dir, store)) as db:
        catalogue = set(read_model_info(Path(run_dir)).get("item_ids") or ())
        catalogue.update(db.item_ids())
        first_line = 2 if Path(path).suffix.lower() in (".csv", ".tsv") else 1
        unknown = [(n, item) for n, (_, item, _) in enumerate(rows) if item not in catalogue]
        if unknown:
            shown = ", ".join(repr(item) for _, item in unknown[:5])
            raise DataFormatError(
                path,
                f"item {unknown[0][1]!r} is not in the run's catalogue ({len(unknown)} rows name unknown "
                f"items: {shown}{' ...' if len(unknown) > 5 else ''}); nothing was stored",
                first_line + unknown[0][0],
                columns[1],
            )
        return db.add_events(rows)
