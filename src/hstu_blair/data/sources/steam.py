"""Steam (UCSD, Kang & McAuley 2018): ``steam_reviews.json`` + ``steam_games.json`` -> canonical tables.

Both files hold one Python dict literal per line (``{u'username': u'...', u'date': u'2017-12-17', ...}``),
written by Python 2's ``str(dict)``: not JSON. Each line is read losslessly: a fast path matches the
whole line against the grammar of such a literal (``u'..'``/``'..'``/``".."`` strings with their
escapes, numbers, ``True``/``False``/``None``, lists of strings) and decodes the strings exactly as
Python does; any line it cannot handle with certainty goes to :func:`ast.literal_eval`.

Tables produced (SPEC §1.3, Steam):

- interactions: user = ``username``, item = ``product_id``, timestamp = ``date`` at 00:00 UTC
  (``%Y-%m-%d``, or the ``Posted November 5, 2017.`` style), rating 1.0.
- items, from the games file: id = ``id`` (else ``item_id``), title = ``app_name`` (else ``title``),
  text = ``title | publisher | developer | genres | tags | specs`` (lists joined with ``", "``,
  empty fields left out), each field cleaned with :func:`~hstu_blair.data.item_text.clean_text`
  (``ascii_only`` respected).
- reviews (``with_reviews``): ``username``, ``product_id`` and the raw review ``text``.

Rows dropped here and counted in ``removed``: reviews without a ``username`` (``reviews_without_username``;
a few lines carry only the numeric Steam ``user_id``, a different id space we do not mix with user
names, and the reference drops them too), games without an id (``games_without_id``), repeated game
ids (``duplicate_game_ids``, the first entry is kept), and bad lines under ``skip_bad_lines``.

Differences from the reference (SPEC §1.3, §7.2 items 6-8), and the options that reproduce it:

- The reference turns each line into JSON by replacing quotes and silently drops every line that
  then fails to parse: any string holding an apostrophe (written ``u"..."``), a double quote, or a
  character written ``\\x..``/``\\U........`` (accented letters, emoji), e.g. 4 of the 25 games of
  the published sample; and a string ending in ``u`` loses it. Here every line is read exactly,
  and a line that is not a valid literal is an error (or counted with ``skip_bad_lines``).
  ``steam_parse="reference"`` parses as the reference does (:func:`reference_parse`) and counts
  the dropped lines as ``reference_unparseable_lines:<file>``.
- Dates are midnight UTC, not local time; a date without a year is an error instead of year 1900.
- Ties on the same day keep file order (the reference sorts by ``(timestamp, item id)``, then
  unstably by timestamp: ``tie_order="reference"`` in ``prepare`` emulates it).
- Item text is HTML-unescaped and whitespace-collapsed (the reference does no cleaning for Steam),
  and starts with ``title`` when a game has no ``app_name`` (the reference then leaves the name out);
  a repeated game id keeps its first entry (the reference: the last). ``text_style="reference"``
  gives the reference's text and entry (:func:`reference_game_text`).
- ``prepare`` applies an iterative 5-core on users *and* items by default; the reference keeps users
  with at least 5 reviews (of items that have metadata) and filters no items, so its catalogue keeps
  rarely reviewed games: ``kcore_mode="users-only"``.
"""

from __future__ import annotations

import ast
import calendar
import datetime as dt
import json
import logging
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
from hstu_blair.data.item_text import field_text
from hstu_blair.data.options import PrepareOptions
from hstu_blair.data.sources.bad_lines import BadLines
from hstu_blair.data.sources.base import RawDataset, find_file
from hstu_blair.data.sources.files import decoded_lines, line_blocks
from hstu_blair.errors import DataFormatError

log = logging.getLogger(__name__)

REVIEWS_FILE = "steam_reviews.json"
GAMES_FILE = "steam_games.json"
GAME_TEXT_FIELDS = ("app_name", "publisher", "developer", "genres", "tags", "specs")
"""Game fields joined (non-empty ones, with ``" | "``) into the item text, as the reference does."""

# ---- Python-literal lines ------------------------------------------------------------------------
# The escapes the fast path decodes itself; any other backslash sequence (octal, \N{...}, invalid
# ones that Python keeps with a warning) sends the line to ast.literal_eval.
_ESCAPE = r"\\(?:[\\'\"abfnrtv]|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8})"
_WS = r"[ \t]*"
_NUMBER = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?"
_CONSTANT = r"True|False|None"


def _string(capture: bool) -> str:
    """Regex of a ``u'..'``, ``'..'``, ``u".."`` or ``".."`` literal; ``capture`` groups the bodies."""
    open_, close = ("(", ")") if capture else ("(?:", ")")
    # raw CR, LF and NUL cannot appear inside a Python string literal: lines holding them fall back
    single = rf"'{open_}[^'\\\r\n\x00]*(?:{_ESCAPE}[^'\\\r\n\x00]*)*{close}'"
    double = rf'"{open_}[^"\\\r\n\x00]*(?:{_ESCAPE}[^"\\\r\n\x00]*)*{close}"'
    return rf"[uU]?(?:{single}|{double})"


_STR = _string(capture=False)
_LIST = rf"\[{_WS}(?:{_STR}(?:{_WS},{_WS}{_STR})*(?:{_WS},)?)?{_WS}\]"
_VALUE = rf"(?:{_STR}|{_LIST}|{_NUMBER}|{_CONSTANT})"
# A line is read pair by pair, each match anchored where the previous one ended, so together they
# cover the whole line: "{" first pair, then ", " pair ..., then the closing "}" (a trailing comma
# is allowed, as in Python). Groups: key body (single-quoted, double-quoted), value token.
_FIRST_PAIR = re.compile(rf"{_WS}\{{{_WS}{_string(True)}{_WS}:{_WS}({_VALUE})")
_NEXT_PAIR = re.compile(rf"{_WS},{_WS}{_string(True)}{_WS}:{_WS}({_VALUE})")
_END = re.compile(rf"{_WS}(?:,{_WS})?\}}{_WS}")
_EMPTY = re.compile(rf"{_WS}\{{{_WS}\}}{_WS}")
_ITEM = re.compile(_string(capture=True))
_KEY = re.compile(rf"[{{,]{_WS}{_string(True)}{_WS}:")
_CONSTANTS = {"True": True, "False": False, "None": None}


def _unescape(body: str) -> str:
    """Decode the body of a string literal whose escapes ``_ESCAPE`` accepted, as Python would."""
    if "\\" not in body:
        return body
    # raw_unicode_escape writes characters above U+00FF as \u/\U escapes and leaves the rest
    # (backslashes included) as latin-1 bytes, which unicode_escape then decodes back
    return body.encode("raw_unicode_escape").decode("unicode_escape")


def _value(token: str) -> object:
    """The Python value of one token that ``_VALUE`` matched."""
    first = token[0]
    if first in "uU'\"":
        return _unescape(token[2:-1] if first in "uU" else token[1:-1])
    if first == "[":
        return [_unescape(single or double) for single, double in _ITEM.findall(token)]
    if first in "TFN":
        return _CONSTANTS[token]
    if "." in token or "e" in token or "E" in token:
        return float(token)
    return int(token)


def parse_literal_fast(line: str, keys: frozenset[str] | None = None) -> dict[str, object] | None:
    """Parse one dict-literal line without ``eval``, or return ``None`` when unsure.

    Args:
        line: one line, e.g. ``{u'id': u'761140', u'tags': [u'Indie'], u'price': 4.99}``.
        keys: decode only these keys (the others are still checked); ``None`` = all.

    Returns:
        The dict ``ast.literal_eval(line)`` gives (restricted to ``keys``), or ``None`` when the
        line is outside the fast grammar (the caller then uses ``ast.literal_eval``).
    """
    record: dict[str, object] = {}
    match = _FIRST_PAIR.match(line)
    if match is None:
        return record if _EMPTY.fullmatch(line) else None
    next_pair = _NEXT_PAIR.match  # this loop runs ~10 times per line, 7.8M lines
    try:
        while match is not None:
            key_single, key_double, token = match.groups()
            key = key_double if key_single is None else key_single
            if "\\" in key:
                key = _unescape(key)
            if keys is None or key in keys:
                record[key] = _value(token)
            end = match.end()
            match = next_pair(line, end)
    except (ValueError, UnicodeError):  # e.g. a \U escape beyond U+10FFFF, an int of over 4300 digits
        return None
    return record if _END.fullmatch(line, end) else None


class _BadRecord(ValueError):
    """A line that is not a valid record; ``field`` names the last key read before the problem."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def _literal(line: str, keys: frozenset[str] | None) -> dict[str, object]:
    """The dict of one line (fast path, else ``ast.literal_eval``); raises :class:`_BadRecord`."""
    record = parse_literal_fast(line, keys)
    if record is not None:
        return record
    try:
        value = ast.literal_eval(line)
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError) as exc:
        column = getattr(exc, "offset", None) or len(line)
        reason = getattr(exc, "msg", None) or str(exc)
        keys_before = [_unescape(m[2] if m[1] is None else m[1]) for m in _KEY.finditer(line, 0, column)]
        raise _BadRecord(
            f"not a Python dict literal ({reason}, near column {column}); "
            "expected one {u'key': value, ...} per line",
            keys_before[-1] if keys_before else None,
        ) from None
    if not isinstance(value, dict):
        raise _BadRecord(f"expected a dict literal {{u'key': value, ...}}, got a {type(value).__name__}")
    if keys is not None:
        value = {k: v for k, v in value.items() if k in keys}
    return value


def parse_literal(
    line: str, path: Path | str, number: int, keys: frozenset[str] | None = None
) -> dict[str, object]:
    """Parse one dict-literal line: the fast path, else :func:`ast.literal_eval`.

    Args:
        line: the line's text.
        path, number: file and 1-based line number, for the error message.
        keys: keep only these keys; ``None`` = all.

    Raises:
        DataFormatError: the line is not a Python dict literal (names file, line, and the last
            key read before the error when there is one).
    """
    try:
        return _literal(line, keys)
    except _BadRecord as exc:
        raise DataFormatError(path, str(exc), line=number, field=exc.field) from None


def reference_parse(line: str) -> object | None:
    """The value the reference's "fix" gives for one line, or ``None`` when it drops the line.

    The reference (SPEC §1.3 Steam, §7.2 item 6) replaces ``u'`` with ``'``, then every ``'`` with
    ``"``, ``False``/``True`` with ``false``/``true`` (inside strings too), and calls ``json.loads``;
    lines that then fail are silently dropped. So any string holding an apostrophe, a ``\\x..`` or
    ``\\U........`` escape is lost with its line, a string ending in ``u`` loses that ``u`` (its
    closing ``u'`` is replaced), and ``True``/``False`` inside a string become lower case.
    """
    fixed = line.replace("u'", "'").replace("'", '"').replace("False", "false").replace("True", "true")
    try:
        return json.loads(fixed)
    except json.JSONDecodeError:
        return None


def _record(line: str, keys: frozenset[str], reference: bool) -> dict[str, object] | None:
    """The record of one line (``keys`` only): exactly (:func:`_literal`), or as the reference reads
    it (:func:`reference_parse`; ``None`` when the reference drops the line). Raises :class:`_BadRecord`."""
    if not reference:
        return _literal(line, keys)
    value = reference_parse(line)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _BadRecord(f"expected a dict literal {{u'key': value, ...}}, got a {type(value).__name__}")
    return {k: v for k, v in value.items() if k in keys}


UNPARSEABLE = "reference_unparseable_lines"
"""``removed`` key prefix (``<prefix>:<file name>``) of the lines ``steam_parse="reference"`` drops."""


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


def _id_text(value: object) -> str | None:
    """An id given as a string or an integer, as a string; ``None`` for anything else."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _review_item_time_text(
    record: dict[str, object], with_text: bool, dates: dict[str, int]
) -> tuple[str, int, str]:
    """(game id, review time in seconds, text) of one review record; raises :class:`_BadRecord`.

    ``dates`` caches the parsed dates (a few thousand distinct ones: each is parsed once).
    """
    item = _id_text(record.get("product_id"))
    if not item:
        got = f"got {record['product_id']!r}" if "product_id" in record else "missing"
        raise _BadRecord(f"expected the game id as a non-empty string ({got})", "product_id")
    item, problem = check_id(item)
    if problem:
        raise _BadRecord(problem, "product_id")
    date = record.get("date")
    if not isinstance(date, str):
        got = f"got {date!r}" if "date" in record else "missing"
        raise _BadRecord(f"expected a date string like '2017-12-17' ({got})", "date")
    if date not in dates:
        try:
            dates[date] = parse_date(date)
        except ValueError as exc:
            raise _BadRecord(str(exc), "date") from None
    text = record.get("text", "")
    if with_text and not isinstance(text, str):
        raise _BadRecord(f"expected a string, got {type(text).__name__}", "text")
    return item, dates[date], text if isinstance(text, str) else ""


def _review_user(record: dict[str, object]) -> str | None:
    """The reviewer's id, or ``None`` for a review without a username; raises :class:`_BadRecord`."""
    user = record.get("username")
    if user is None or user == "":
        return None
    if not isinstance(user, str):
        raise _BadRecord(f"expected a string, got {type(user).__name__}", "username")
    user, problem = check_id(user)
    if problem:
        raise _BadRecord(problem, "username")
    return user


def _parse_review_block(
    first_line: int, block: bytes, with_text: bool, reference: bool = False
) -> _ReviewBlock:
    """Parse the review lines of one block (runs in a worker process for large files).

    ``reference``: parse as the reference does (:func:`reference_parse`); the lines it drops are
    counted in ``removed[UNPARSEABLE]``.
    """
    out = _ReviewBlock()
    keys = _REVIEW_KEYS if with_text else _REVIEW_KEYS - {"text"}  # decoding the text is the costly part
    dates: dict[str, int] = {}
    for number, line, problem in decoded_lines(block, first_line):
        if line is None:
            out.bad.append((number, None, problem))
            continue
        try:
            record = _record(line, keys, reference)
            if record is None:
                out.removed[UNPARSEABLE] += 1
                continue
            item, stamp, text = _review_item_time_text(record, with_text, dates)
            out.with_user_id += "user_id" in record
            user = _review_user(record)
        except _BadRecord as exc:
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
        reference: parse lines as the reference does (:func:`reference_parse`); the lines it
            drops are counted as ``removed["reference_unparseable_lines:<file name>"]``.

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


# ---- games -----------------------------------------------------------------------------------------
_GAME_KEYS = frozenset({"id", "item_id", "title", *GAME_TEXT_FIELDS})


def reference_game_text(game: dict[str, object]) -> str:
    """The reference's text of one game: the non-empty fields of :data:`GAME_TEXT_FIELDS`, lists
    joined with ``", "``, each field as ``str`` (no cleaning), joined with ``" | "``."""
    fields = []
    for key in GAME_TEXT_FIELDS:
        value = game.get(key)
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        if value:
            fields.append(str(value))
    return " | ".join(fields)


def _game_id(
    game: dict[str, object], path: Path, number: int, bad: BadLines, removed: Counter[str]
) -> str | None:
    """The game's id (``id``, or ``item_id`` when that is falsy: the reference's choice), or ``None``
    for a game without one (counted) or with a bad one (reported or counted)."""
    raw_id = game.get("id") or game.get("item_id")
    if raw_id is None or raw_id == "":
        removed["games_without_id"] += 1
        return None
    item = _id_text(raw_id)
    name = "id" if game.get("id") else "item_id"
    if item is None:
        bad(
            DataFormatError(path, f"expected a string or integer id, got {raw_id!r}", line=number, field=name)
        )
        return None
    item, problem = check_id(item)
    if problem:
        bad(DataFormatError(path, problem, line=number, field=name))
        return None
    return item


def _game_title_text(game: dict[str, object], ascii_only: bool, reference_text: bool) -> tuple[str, str]:
    """(title, text) of one game: cleaned fields joined with " | ", or the reference's text."""
    title = field_text(game.get("app_name") or game.get("title"), ascii_only)
    if reference_text:
        return title, reference_game_text(game)
    parts = [title] + [field_text(game.get(name), ascii_only) for name in GAME_TEXT_FIELDS[1:]]
    return title, " | ".join(p for p in parts if p)


def read_games(
    path: Path,
    ascii_only: bool,
    bad: BadLines,
    removed: Counter[str],
    reference_parse: bool = False,
    reference_text: bool = False,
) -> pl.DataFrame:
    """Read ``steam_games.json(.gz)`` into the item table (``raw_item_id``, ``title``, ``text``).

    Args:
        path: the games file, plain or gzip.
        ascii_only: replace non-ASCII characters in titles and texts with spaces.
        bad: raises on the first malformed line, or counts it.
        removed: receives ``games_without_id`` and ``duplicate_game_ids`` counts (and, with
            ``reference_parse``, ``reference_unparseable_lines:<file name>``).
        reference_parse: parse lines as the reference does (:func:`reference_parse`).
        reference_text: the reference's text (:func:`reference_game_text`, ``ascii_only``
            ignored) and, for a repeated id, its last entry (the reference's dict assignment).

    Raises:
        DataFormatError: a malformed line or an id that is not a string or integer.
    """
    games: dict[str, tuple[str, str]] = {}  # id -> (title, text), in order of first appearance
    for first, block in line_blocks(path, _BLOCK_BYTES):
        for number, line, problem in decoded_lines(block, first):
            try:
                if line is None:
                    raise _BadRecord(problem)
                game = _record(line, _GAME_KEYS, reference_parse)
            except _BadRecord as exc:
                bad(DataFormatError(path, str(exc), line=number, field=exc.field))
                continue
            if game is None:
                removed[f"{UNPARSEABLE}:{path.name}"] += 1
                continue
            item = _game_id(game, path, number, bad, removed)
            if item is None:
                continue
            if item in games:
                removed["duplicate_game_ids"] += 1
                if not reference_text:
                    continue
            title, text = _game_title_text(game, ascii_only, reference_text)
            games[item] = (title, text)
    return pl.DataFrame(
        {
            schema.ITEM_ID: list(games),
            schema.TITLE: [title for title, _ in games.values()],
            schema.TEXT: [text for _, text in games.values()],
        },
        schema={schema.ITEM_ID: pl.String, schema.TITLE: pl.String, schema.TEXT: pl.String},
    )


# ---- loader ----------------------------------------------------------------------------------------
def load_steam(paths: list[Path], options: PrepareOptions) -> RawDataset:
    """Read the Steam reviews (and games, when given) into canonical raw tables.

    Files are recognised by name (``steam_reviews.json``, ``steam_games.json``, each optionally
    ``.gz``) among ``paths`` (files or directories); ``options.interactions_file`` and
    ``options.items_file`` override. Without a games file the items have no text.

    Args:
        paths: input files or directories.
        options: ``skip_bad_lines``, ``ascii_only``, ``with_reviews``, ``steam_parse``,
            ``text_style`` and the file overrides are used.

    Returns:
        The raw dataset named ``"steam"``.

    Raises:
        DataFormatError: no reviews file, or a malformed line (file, line, field) unless skipped.
    """
    reviews_path = options.interactions_file or find_file(paths, REVIEWS_FILE)
    if reviews_path is None:
        raise DataFormatError(
            ", ".join(map(str, paths)) or "<no inputs>",
            f"no {REVIEWS_FILE}(.gz) among the inputs; pass the file or set interactions_file",
        )
    games_path = options.items_file or find_file(paths, GAMES_FILE)
    removed: Counter[str] = Counter()
    bad = BadLines(options.skip_bad_lines, removed)
    reference = options.steam_parse == "reference"
    interactions, reviews, with_user_id = read_reviews(
        Path(reviews_path), options.with_reviews, bad, removed, reference=reference
    )
    items = None
    if games_path is not None:
        reference_text = options.text_style == "reference"
        items = read_games(Path(games_path), options.ascii_only, bad, removed, reference, reference_text)
    else:
        log.warning("steam: no %s(.gz) among the inputs; items will have no text", GAMES_FILE)
    files = [Path(reviews_path)] + ([Path(games_path)] if games_path is not None else [])
    info: dict[str, object] = {
        "reviews_with_user_id": with_user_id,
        "games": items.height if items is not None else None,
        "timestamp": "review date at 00:00 UTC",
    }
    if bad.first_error:
        info["first_bad_line"] = dict(bad.first_error)
    return RawDataset(
        name="steam",
        source="steam",
        interactions=interactions,
        items=items,
        reviews=reviews,
        files=files,
        removed=removed,
        bad_lines=bad.records,
        info=info,
    )
