"""Bulk loading of users' events from a CSV or Parquet file into a run's store.

The file has the columns ``user_id``, ``item_id`` and ``timestamp`` (integer seconds; other
columns are ignored). Every row is checked before anything is stored: an empty id, a timestamp
that is not an integer in range, or an item that is not in the catalogue (the trained items
plus the items added to the store) is an error naming the file, the row (the CSV line) and the
field; then all rows are stored in one transaction, each event once: a row repeating another
row of the file, or an event already stored (same user, item and timestamp), is skipped and counted.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import polars as pl

from hstu_blair.errors import DataFormatError
from hstu_blair.run.model_files import read_model_info
from hstu_blair.run.store import EventsWritten, Store
from hstu_blair.serving.errors import ServingError
from hstu_blair.serving.ids import TIME_LIMIT, check_new_id

COLUMNS = ("user_id", "item_id", "timestamp")


def read_events(path: str | Path) -> list[tuple[str, str, int]]:
    """``(user_id, item_id, timestamp)`` rows of a CSV (``.csv``, ``.tsv``) or Parquet file.

    Raises:
        DataFormatError: a missing column, an empty id or a bad timestamp (file, line, field named).
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
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise DataFormatError(path, f"missing columns {missing}; the file has {frame.columns}")
    frame = frame.select(
        pl.col("user_id").cast(pl.String),  # ids as written: no silent stripping (canonical form below)
        pl.col("item_id").cast(pl.String),
        pl.col("timestamp").cast(pl.String).str.strip_chars().alias("raw_time"),
    ).with_columns(pl.col("raw_time").cast(pl.Int64, strict=False).alias("timestamp"))
    for name in ("user_id", "item_id"):
        bad = frame.with_row_index().filter(pl.col(name).is_null() | (pl.col(name) == ""))
        if bad.height:
            raise DataFormatError(
                path, f"empty {name} ({bad.height} rows)", first_line + bad["index"][0], name
            )
    bad = frame.with_row_index().filter(
        pl.col("timestamp").is_null() | (pl.col("timestamp").abs() > TIME_LIMIT)
    )
    if bad.height:
        raise DataFormatError(
            path,
            f"timestamp {bad['raw_time'][0]!r} is not an integer number of seconds in [-2**40, 2**40]"
            f" ({bad.height} such rows)",
            first_line + bad["index"][0],
            "timestamp",
        )
    users = frame["user_id"].to_list()
    for n, user in enumerate(users):  # the form POST /events and GET /users/{id} accept
        try:
            check_new_id(user, "user_id")
        except ServingError as exc:
            raise DataFormatError(path, str(exc), first_line + n, "user_id") from None
    return list(zip(users, frame["item_id"].to_list(), frame["timestamp"].to_list()))


def import_events(path: str | Path, run_dir: str | Path, store: str | Path | None = None) -> EventsWritten:
    """Check every row of ``path`` (see :func:`read_events`) against the run's catalogue and store
    them all in one transaction, each event once.

    Returns:
        What was stored: ``received`` rows, ``stored`` distinct events (``repeated``: rows
        repeating another row of the file), ``new`` (the others were in the store already).

    Raises:
        DataFormatError: a bad row, or one naming an item not in the catalogue (nothing is stored).
        StoreError: the store cannot be opened or written.
    """
    rows = read_events(path)
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
                "item_id",
            )
        return db.add_events(rows)
