"""Amazon Reviews 2023 interactions and review text: the 5-core rating CSV and the raw review JSONL."""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl

from hstu_blair.data import schema
from hstu_blair.data.ids import normalize_id, normalize_ids
from hstu_blair.data.item_text import field_text, join_fields
from hstu_blair.data.sources.amazon2023_records import (
    Rows,
    interaction_rows,
    peek_asin,
    require_id,
    require_ms,
    require_number,
    to_seconds,
)
from hstu_blair.data.sources.bad_lines import BadLines
from hstu_blair.data.sources.files import numbered_lines, read_bytes
from hstu_blair.data.sources.json_lines import parse_json_line
from hstu_blair.errors import DataFormatError

CSV_COLUMNS = ("user_id", "parent_asin", "rating", "timestamp")
"""Header of the 5-core ``rating_only`` CSV files."""


def _csv_header(path: Path, data: bytes) -> list[str]:
    """The header names of line 1; undecodable bytes or a missing column raise naming it."""
    first = data.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        names = next(csv.reader([first.decode("utf-8-sig")]), [])
    except UnicodeDecodeError as exc:
        raise DataFormatError(
            path, f"header is not valid UTF-8 text ({exc.reason} at byte {exc.start})", line=1
        ) from None
    names = [n.strip() for n in names]
    for column in CSV_COLUMNS:
        if column not in names:
            raise DataFormatError(
                path,
                f"header lacks column {column!r}; expected {','.join(CSV_COLUMNS)}, found {','.join(names)!r}",
                line=1,
                field=column,
            )
    return names


def _parse_csv_row(path: Path, number: int, raw: bytes, header: list[str]) -> tuple[str, str, int, float]:
    """``(user, item, timestamp_ms, rating)`` of one data line; any problem names the line and field."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        cells = raw.decode("utf-8", errors="replace").split(",")
        where = next((name for name, cell in zip(header, cells) if "\ufffd" in cell), None)
        raise DataFormatError(
            path, f"not valid UTF-8 text ({exc.reason} at byte {exc.start})", number, where
        ) from None
    cells = next(csv.reader([line.rstrip("\r\n")]))
    if len(cells) != len(header):
        raise DataFormatError(
            path, f"expected {len(header)} comma-separated fields, found {len(cells)}", number
        )
    row = dict(zip(header, cells))
    user = normalize_id(row["user_id"], path=path, line=number, field="user_id")
    item = normalize_id(row["parent_asin"], path=path, line=number, field="parent_asin")
    try:
        rating = float(row["rating"])
    except ValueError:
        raise DataFormatError(path, f"expected a number, found {row['rating']!r}", number, "rating") from None
    try:
        stamp = int(row["timestamp"])
    except ValueError:
        msg = f"expected an integer Unix time in milliseconds, found {row['timestamp']!r}"
        raise DataFormatError(path, msg, number, "timestamp") from None
    return user, item, stamp, rating


def _scan_ratings_csv(path: Path, header: list[str], bad: BadLines) -> pl.DataFrame:
    """Line-by-line reading of a rating CSV: exact line numbers for every bad row (the slow path)."""
    rows = interaction_rows()
    for number, raw in numbered_lines(path):
        if number == 1:
            continue
        try:
            rows.append(*_parse_csv_row(path, number, raw, header))
        except DataFormatError as error:
            bad(error)
    return rows.frame()


def read_ratings_csv(path: Path, bad: BadLines) -> pl.DataFrame:
    """Read a 5-core ``rating_only`` CSV into the raw interaction table (timestamps ms -> s).

    Raises:
        DataFormatError: missing header column, or a bad row (file, line, field) unless skipping.
    """
    return to_seconds(read_ratings_csv_ms(path, bad))


def read_ratings_csv_ms(path: Path, bad: BadLines) -> pl.DataFrame:
    """Read a 5-core ``rating_only`` CSV into the raw interaction table, timestamps in milliseconds.

    Polars reads the file; if any row fails to parse or convert, the file is re-read line by line
    so that the error (or, with ``skip_bad_lines``, each counted row) names its exact line.

    Raises:
        DataFormatError: missing header column, or a bad row (file, line, field) unless skipping.
    """
    data = read_bytes(path)
    header = _csv_header(path, data)
    try:
        df = pl.read_csv(io.BytesIO(data), infer_schema=False, has_header=True, columns=list(CSV_COLUMNS))
    except pl.exceptions.PolarsError:
        return _scan_ratings_csv(path, header, bad)
    df = df.filter(~pl.all_horizontal(pl.all().is_null()))  # blank lines
    out = df.select(
        pl.col("user_id").map_batches(normalize_ids, return_dtype=pl.String).alias(schema.USER_ID),
        pl.col("parent_asin").map_batches(normalize_ids, return_dtype=pl.String).alias(schema.ITEM_ID),
        pl.col("timestamp").str.strip_chars().cast(pl.Int64, strict=False).alias(schema.TIMESTAMP),
        pl.col("rating").str.strip_chars().cast(pl.Float32, strict=False).alias(schema.RATING),
    )
    invalid = out.select(pl.any_horizontal(pl.all().is_null())).to_series()
    if invalid.any():
        return _scan_ratings_csv(path, header, bad)
    return out


def _parse_review(
    path: Path, number: int, line: bytes, with_event: bool
) -> tuple[dict[str, Any], str, str, tuple[int, float] | None]:
    """(the review object, user id, item id, and with ``with_event`` its (timestamp in ms, rating))."""
    obj = parse_json_line(path, number, line)
    user = require_id(path, number, obj, "user_id")
    asin = require_id(path, number, obj, "parent_asin")
    if not with_event:
        return obj, user, asin, None
    event = (require_ms(path, number, obj, "timestamp"), require_number(path, number, obj, "rating"))
    return obj, user, asin, event


def read_reviews_jsonl(
    path: Path,
    bad: BadLines,
    *,
    interactions: bool,
    reviews: bool,
    items: set[str] | None = None,
    ascii_only: bool = False,
) -> tuple[pl.DataFrame | None, pl.DataFrame | None, Counter[str]]:
    """Read a raw review file: interactions and/or the (user, item, title + text) review table.

    Args:
        path: ``<Category>.jsonl`` (plain or gzip).
        bad: raises on a bad line, or counts it.
        interactions: build the interaction table (user_id, parent_asin, rating, timestamp in ms).
        reviews: build the review text table.
        items: keep only reviews of these items (the interactions' items); ``None`` keeps all.
        ascii_only: replace non-ASCII characters in review text with spaces.

    Returns:
        ``(interactions or None, reviews or None, counts)``; ``counts`` has ``reviews_read`` and
        ``reviews_of_other_items``.
    """
    inter = interaction_rows()
    texts = Rows(schema.REVIEWS_SCHEMA)
    wanted = None if items is None else {asin.encode() for asin in items}
    counts: Counter[str] = Counter(reviews_read=0, reviews_of_other_items=0) if reviews else Counter()
    for number, line in numbered_lines(path):
        if not interactions and wanted is not None:
            peeked = peek_asin(line)
            if peeked is not None and peeked not in wanted:
                counts["reviews_read"] += 1
                counts["reviews_of_other_items"] += 1
                continue
        try:
            obj, user, asin, event = _parse_review(path, number, line, interactions)
        except DataFormatError as error:
            bad(error)
            continue
        if event is not None:
            inter.append(user, asin, *event)
        if reviews:
            counts["reviews_read"] += 1
            if items is not None and asin not in items:
                counts["reviews_of_other_items"] += 1
                continue
            title, body = (
                field_text(obj.get("title"), ascii_only),
                field_text(obj.get("text"), ascii_only),
            )
            texts.append(user, asin, join_fields((title, body)))
    return (
        to_seconds(inter.frame()) if interactions else None,
        texts.frame() if reviews else None,
        counts,
    )
