"""Steam reviews (``steam_reviews.json``): review dates, and the interactions and review texts,
parsed in blocks of lines (worker processes for large files)."""

from __future__ import annotations

import calendar
import datetime as dt
import multiprocessing
import os
import re
import warnings
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.pool import AsyncResult
from pathlib import Path

import polars as pl

from hstu_blair.data import schema
from hstu_blair.data.ids import check_id
from hstu_blair.data.sources.bad_lines import BadLines
from hstu_blair.data.sources.files import decoded_lines, line_blocks
from hstu_blair.data.sources.steam_records import UNPARSEABLE, BadRecord, id_text, read_record
from hstu_blair.errors import DataFormatError

# ---- dates -----------------------------------------------------------------------------------------
_MONTHS = {
    name.lower(): number
    for number in range(1, 13)
    for name in (calendar.month_name[number], calendar.month_abbr[number])
}
_ISO_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_POSTED_DATE = re.compile(r"(?:Posted:?\s+)?([A-Za-z]+)\.?\s+(\d{1,2}),\s*(\d{4})\s*\.?", re.IGNORECASE)
_POSTED_NO_YEAR = re.compile(r"(?:Posted:?\s+)?([A-Za-z]+)\.?\s+(\d{1,2})\s*\.?", re.IGNORECASE)


def parse_date(value: str) -> int:
    """Seconds since the epoch of a review date at 00:00 UTC.

    Accepts ``2017-12-17`` and ``Posted December 17, 2017.`` (``Posted`` and the final dot optional,
    full or abbreviated English month names, any case).

    Raises:
        ValueError: any other form, an impossible date, or a date without a year (Steam omits the
            current year; the reference then silently uses 1900).
    """
    text = value.strip()
    if m := _ISO_DATE.fullmatch(text):
        year, month, day = int(m[1]), int(m[2]), int(m[3])
    elif (m := _POSTED_DATE.fullmatch(text)) and m[1].lower() in _MONTHS:
        year, month, day = int(m[3]), _MONTHS[m[1].lower()], int(m[2])
    elif (m := _POSTED_NO_YEAR.fullmatch(text)) and m[1].lower() in _MONTHS:
        raise ValueError(f"date {value!r} has no year; expected e.g. 'Posted December 17, 2017.'")
    else:
        raise ValueError(f"date {value!r} is not 'YYYY-MM-DD' or 'Posted Month D, YYYY.'")
    try:
        dt.date(year, month, day)
    except ValueError as exc:
        raise ValueError(f"date {value!r} is impossible ({exc})") from None
    return calendar.timegm((year, month, day, 0, 0, 0))


# ---- reviews ---------------------------------------------------------------------------------------
_REVIEW_KEYS = frozenset({"username", "user_id", "product_id", "date", "text"})
_BLOCK_BYTES = 1 << 22  # ~10k review lines per block
_PARALLEL_MIN_BYTES = 64 << 20  # files smaller than this are read in one process


@dataclass
class _ReviewBlock:
    """Parsed rows of one block of whole lines (columns), plus what was dropped or bad."""

    users: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    times: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    bad: list[tuple[int, str | None, str]] = field(default_factory=list)  # (line, field, message)
    removed: Counter[str] = field(default_factory=Counter)
    with_user_id: int = 0


def _review_item_time_text(
    record: dict[str, object], with_text: bool, dates: dict[str, int]
) -> tuple[str, int, str]:
    """(game id, review time in seconds, text) of one review record; raises :class:`BadRecord`.

    ``dates`` caches the parsed dates (a few thousand distinct ones: each is parsed once).
    """
    item = id_text(record.get("product_id"))
    if not item:
        got = f"got {record['product_id']!r}" if "product_id" in record else "missing"
        raise BadRecord(f"expected the game id as a non-empty string ({got})", "product_id")
    item, problem = check_id(item)
    if problem:
        raise BadRecord(problem, "product_id")
    date = record.get("date")
    if not isinstance(date, str):
        got = f"got {date!r}" if "date" in record else "missing"
        raise BadRecord(f"expected a date string like '2017-12-17' ({got})", "date")
    if date not in dates:
        try:
            dates[date] = parse_date(date)
        except ValueError as exc:
            raise BadRecord(str(exc), "date") from None
    text = record.get("text", "")
    if with_text and not isinstance(text, str):
        raise BadRecord(f"expected a string, got {type(text).__name__}", "text")
    return item, dates[date], text if isinstance(text, str) else ""


def _review_user(record: dict[str, object]) -> str | None:
    """The reviewer's id, or ``None`` for a review without a username; raises :class:`BadRecord`."""
    user = record.get("username")
    if user is None or user == "":
        return None
    if not isinstance(user, str):
        raise BadRecord(f"expected a string, got {type(user).__name__}", "username")
    user, problem = check_id(user)
    if problem:
        raise BadRecord(problem, "username")
    return user


def _parse_review_block(
    first_line: int, block: bytes, with_text: bool, reference: bool = False
) -> _ReviewBlock:
    """Parse the review lines of one block (runs in a worker process for large files).

    ``reference``: parse as the reference does (:func:`~.steam_records.reference_parse`); the lines
    it drops are counted in ``removed[UNPARSEABLE]``.
    """
    out = _ReviewBlock()
    keys = _REVIEW_KEYS if with_text else _REVIEW_KEYS - {"text"}  # decoding the text is the costly part
    dates: dict[str, int] = {}
    for number, line, problem in decoded_lines(block, first_line):
        if line is None:
            out.bad.append((number, None, problem))
            continue
        try:
            record = read_record(line, keys, reference)
            if record is None:
                out.removed[UNPARSEABLE] += 1
                continue
            item, stamp, text = _review_item_time_text(record, with_text, dates)
            out.with_user_id += "user_id" in record
            user = _review_user(record)
        except BadRecord as exc:
            out.bad.append((number, exc.field, str(exc)))
            continue
        if user is None:
            out.removed["reviews_without_username"] += 1
            continue
        out.users.append(user)
        out.items.append(item)
        out.times.append(stamp)
        if with_text:
            out.texts.append(text)
    return out


def _default_workers() -> int:
    """Processes for parsing large files: the CPUs this process may use, at most 4."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(4, cpus))


def _review_blocks(path: Path, with_text: bool, workers: int, reference: bool) -> Iterator[_ReviewBlock]:
    """Parsed blocks in file order; files of ``_PARALLEL_MIN_BYTES`` or more use ``workers`` processes.

    The main process reads and decompresses; at most ``2 * workers`` blocks are in flight.
    """
    blocks = line_blocks(path, _BLOCK_BYTES)
    parallel = workers > 1 and path.stat().st_size >= _PARALLEL_MIN_BYTES
    if not parallel or "fork" not in multiprocessing.get_all_start_methods():
        for first, block in blocks:
            yield _parse_review_block(first, block, with_text, reference)
        return
    # fork, not spawn: spawn re-imports the caller's __main__, which hangs a script without an
    # `if __name__ == "__main__"` guard. The children run only the pure-Python parsing above
    # (no polars, no threads), so locks held by other threads at fork time are never needed there.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)
        pool = multiprocessing.get_context("fork").Pool(workers)
    with pool:
        pending: deque[AsyncResult[_ReviewBlock]] = deque()
        for first, block in blocks:
            pending.append(pool.apply_async(_parse_review_block, (first, block, with_text, reference)))
            if len(pending) >= 2 * workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def read_reviews(
    path: Path,
    with_text: bool,
    bad: BadLines,
    removed: Counter[str],
    workers: int | None = None,
    reference: bool = False,
) -> tuple[pl.DataFrame, pl.DataFrame | None, int]:
    """Read ``steam_reviews.json(.gz)`` into interactions and (``with_text``) review texts.

    Args:
        path: the reviews file, plain or gzip.
        with_text: also return the ``(user, item, text)`` reviews table.
        bad: raises on the first malformed line, or counts it.
        removed: receives the counts of reviews dropped without being malformed.
        workers: parsing processes for files of 64 MiB or more (default: usable CPUs, at most 4).
        reference: parse lines as the reference does (:func:`~.steam_records.reference_parse`);
            the lines it drops are counted as ``removed["reference_unparseable_lines:<file name>"]``.

    Returns:
        ``(interactions, reviews or None, number of lines that carry a user_id)``, rows in file order.

    Raises:
        DataFormatError: a malformed line (file, line, field), unless ``bad`` skips.
    """
    columns = {schema.USER_ID: pl.String, schema.ITEM_ID: pl.String, schema.TIMESTAMP: pl.Int64}
    frames = [pl.DataFrame(schema=columns)]
    texts = [
        pl.DataFrame(schema={schema.USER_ID: pl.String, schema.ITEM_ID: pl.String, schema.TEXT: pl.String})
    ]
    with_user_id = 0
    for part in _review_blocks(path, with_text, workers or _default_workers(), reference):
        for number, name, message in part.bad:
            bad(DataFormatError(path, message, line=number, field=name))
        unparseable = part.removed.pop(UNPARSEABLE, 0)
        if unparseable:
            removed[f"{UNPARSEABLE}:{path.name}"] += unparseable
        removed.update(part.removed)
        with_user_id += part.with_user_id
        frame = pl.DataFrame(
            {schema.USER_ID: part.users, schema.ITEM_ID: part.items, schema.TIMESTAMP: part.times},
            schema=columns,
        )
        frames.append(frame)
        if with_text:
            texts.append(
                frame.drop(schema.TIMESTAMP).with_columns(pl.Series(schema.TEXT, part.texts, pl.String))
            )
    interactions = pl.concat(frames).with_columns(pl.lit(1.0, pl.Float32).alias(schema.RATING))
    reviews = pl.concat(texts) if with_text else None
    return interactions, reviews, with_user_id
