"""Steam games (``steam_games.json``): the item table, with our cleaned text or the reference's."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import polars as pl

from hstu_blair.data import schema
from hstu_blair.data.ids import check_id
from hstu_blair.data.item_text import field_text
from hstu_blair.data.sources.bad_lines import BadLines
from hstu_blair.data.sources.files import decoded_lines, line_blocks
from hstu_blair.data.sources.steam_records import UNPARSEABLE, BadRecord, id_text, read_record
from hstu_blair.errors import DataFormatError

GAME_TEXT_FIELDS = ("app_name", "publisher", "developer", "genres", "tags", "specs")
"""Game fields joined (non-empty ones, with ``" | "``) into the item text, as the reference does."""

_GAME_KEYS = frozenset({"id", "item_id", "title", *GAME_TEXT_FIELDS})
_BLOCK_BYTES = 1 << 22  # bytes of whole lines read at a time


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
    item = id_text(raw_id)
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
        reference_parse: parse lines as the reference does (:func:`~.steam_records.reference_parse`).
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
                    raise BadRecord(problem)
                game = read_record(line, _GAME_KEYS, reference_parse)
            except BadRecord as exc:
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
