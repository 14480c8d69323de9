"""RecBole atomic files (the format many public recommendation datasets ship in) -> :class:`RawDataset`.

Every atomic file is tab-separated, without quoting, plain or ``.gz``; its first line names each
field with its type, ``name:type``, the type one of ``token`` (an id or a word), ``token_seq``
(space-separated tokens, e.g. a history or a title), ``float`` and ``float_seq``.

Files, recognised by their suffix (the stems may differ: ``Games-6k.test.inter`` with ``Games.item``):

- interactions, in one of two forms (the header says which):

  - plain: ``<name>.inter`` (or split into ``.train.inter``, ``.valid.inter``, ``.test.inter``,
    read in that order), one interaction per row: ``user_id:token``, ``item_id:token`` and
    optionally ``timestamp:float`` (unix seconds, floored) and ``rating:float``. Without a
    timestamp, time is the row's position among the user's rows (order-only).
  - sequential: ``user_id:token<TAB>item_id_list:token_seq<TAB>item_id:token``, a history (oldest
    first) and its target, usually split into ``.train/.valid/.test.inter`` with every prefix of a
    user possibly its own row. Each user's whole sequence is rebuilt from all their rows: the longest
    row that is not cut (its history shorter than the longest history of the files, the cap), then
    the rows at the cap that continue it one item at a time (histories cut to their last ``cap``
    items, as UniSRec writes them). Every other row must be a prefix (or, at the cap, a window) of
    that sequence; one that is not is an error naming its file and line (``skip_bad_lines``: counted
    under ``removed.rows_disagree`` and not used). With ``timestamp_list:float_seq`` and
    ``timestamp:float`` fields the times are rebuilt with the items; otherwise time is order-only
    (timestamp = position in the sequence).

- item text: ``<name>.item`` (``item_id:token`` and any fields, e.g. ``title:token_seq``,
  ``categories:token_seq``, ``brand:token``) and/or ``<name>.text`` (``item_id:token<TAB>
  text:token_seq``). The text joins ``text_columns`` (default ``text``; when the table has no such
  field, all its ``token`` and ``token_seq`` fields but the id, in header order) with ". "; the title
  is ``title_column`` (default: the ``title`` field, if any). With both files, the text comes from
  ``.text`` and the title from ``.item``.
- id maps: ``<name>.item2index`` / ``<name>.user2index`` (``ORIGINAL_ID<TAB>token``, no header), as
  UniSRec ships them: when present, the external ids are the original ones (ASINs, reviewer ids),
  every token of the interactions must have one, and the item tables may be keyed by either.

The published sets are splits already filtered by their authors (5-core, leave-one-out on these
sequences), so this source's defaults change nothing: no k-core, and items without text stay
(``items_without_text="keep"``). Ratings are 1.0 unless a ``rating`` field gives them.

This module reads the plain form and the item tables and loads the dataset; the atomic files and id
maps are in :mod:`.recbole_files`, the rebuilding of sequential rows in :mod:`.recbole_sequences`.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import polars as pl

from hstu_blair.data import schema
from hstu_blair.data.item_text import clean_text, join_fields
from hstu_blair.data.options import PrepareOptions
from hstu_blair.data.sources.bad_lines import BadLines
from hstu_blair.data.sources.base import ORDER_ONLY_TIME, RawDataset, dedupe_items
from hstu_blair.data.sources.columns import Column, convert, id_column
from hstu_blair.data.sources.recbole_files import (
    FIELD_TYPES,
    LIST_SUFFIX,
    AtomicFile,
    AtomicFiles,
    find_atomic_files,
    read_atomic,
    read_id_map,
    require_fields,
)
from hstu_blair.data.sources.recbole_sequences import rebuild_sequences, sequence_interactions
from hstu_blair.errors import DataFormatError


# ---- the plain form: one interaction per row ----------------------------------------------------------
def plain_interactions(
    files: list[AtomicFile], options: PrepareOptions, bad: BadLines
) -> tuple[pl.DataFrame, bool]:
    """Rows of the plain ``.inter`` files, in file order -> interactions; whether they had timestamps.

    Raises:
        DataFormatError: a missing or mistyped field, an invalid id, or a missing timestamp (file,
            line and field named).
    """
    user, item, time, rating = (
        options.user_column,
        options.item_column,
        options.timestamp_column,
        options.rating_column,
    )
    frames, timed = [], all(time in f.fields for f in files)
    for atomic in files:
        require_fields(atomic, {user: ("token",), item: ("token",)})
        table = atomic.table
        columns = {schema.USER_ID: id_column(table, user), schema.ITEM_ID: id_column(table, item)}
        if timed:
            require_fields(atomic, {time: ("float",)})
            seconds = pl.col(time).str.strip_chars().cast(pl.Float64, strict=False).floor().cast(pl.Int64)
            columns[schema.TIMESTAMP] = Column(time, seconds, "a unix time in seconds")
        if rating and rating in atomic.fields:
            value = pl.col(rating).str.strip_chars().cast(pl.Float32, strict=False)
            columns[schema.RATING] = Column(rating, value, "a number")
        frame = convert(table, columns, bad)
        if schema.RATING not in frame.columns:
            frame = frame.with_columns(pl.lit(1.0, pl.Float32).alias(schema.RATING))
        frames.append(frame)
    interactions = pl.concat(frames, how="diagonal_relaxed")
    if not timed:  # order-only: the row's position among the user's rows
        position = pl.int_range(pl.len()).over(schema.USER_ID).cast(pl.Int64)
        interactions = interactions.with_columns(position.alias(schema.TIMESTAMP))
    return interactions.select(list(schema.INTERACTIONS_SCHEMA)), timed


# ---- item tables and id maps ------------------------------------------------------------------------
def text_fields(atomic: AtomicFile, options: PrepareOptions) -> tuple[list[str], str | None]:
    """(fields joined into the text, title field) of an item table.

    The text: ``text_columns`` when the table has them all; when they are the default (``text``) and
    the table has no such field, every ``token`` / ``token_seq`` field but the id, in header order.
    The title: ``title_column``, else the ``title`` field when there is one.

    Raises:
        DataFormatError: a named text or title field is not in the header (the fields are listed).
    """
    names = [n for n in atomic.fields if n != options.item_column]
    wanted = list(options.text_columns)
    if wanted == PrepareOptions().text_columns and not all(n in atomic.fields for n in wanted):
        wanted = [n for n in names if atomic.fields[n].type in ("token", "token_seq")]
    title = options.title_column or ("title" if "title" in atomic.fields else None)
    require_fields(atomic, dict.fromkeys([*wanted, *([title] if title else [])], FIELD_TYPES))
    return wanted, title


def read_item_table(
    path: Path, options: PrepareOptions, bad: BadLines, removed: Counter[str], to_external: dict[str, str]
) -> pl.DataFrame:
    """A ``.item`` or ``.text`` file -> items (``item_id``, ``title``, ``text``), keyed by external id.

    A key that is a token of the item map (``to_external``) is mapped to its original id; other keys
    are taken as they are (already original ids, or tokens when there is no map).
    """
    atomic = read_atomic(path, bad)
    require_fields(atomic, {options.item_column: ("token",)})
    fields, title_field = text_fields(atomic, options)
    table = atomic.table
    keep = list(dict.fromkeys([*fields, *([title_field] if title_field else [])]))
    rows = convert(table, {schema.ITEM_ID: id_column(table, options.item_column)}, bad, keep=keep)
    originals = set(to_external.values())
    ids, titles, texts = [], [], []
    for row in rows.iter_rows(named=True):
        key = row[schema.ITEM_ID]
        ids.append(key if key in originals else to_external.get(key, key))
        texts.append(join_fields(clean_text(row[f] or "", options.ascii_only) for f in fields))
        titles.append(clean_text(row[title_field] or "", options.ascii_only) if title_field else "")
    items = pl.DataFrame(
        {
            schema.ITEM_ID: pl.Series(ids, dtype=pl.String),
            schema.TITLE: pl.Series(titles, dtype=pl.String),
            schema.TEXT: pl.Series(texts, dtype=pl.String),
        }
    )
    return dedupe_items(items, path, removed)


def item_catalogue(
    files: AtomicFiles,
    options: PrepareOptions,
    bad: BadLines,
    removed: Counter[str],
    to_external: dict[str, str],
) -> pl.DataFrame | None:
    """The items' titles and texts: from ``.item``, ``.text``, or both (text of ``.text``, title of ``.item``)."""
    tables = {
        kind: read_item_table(path, options, bad, removed, to_external)
        for kind, path in (("item", files.item), ("text", files.text))
        if path is not None
    }
    if len(tables) < 2:
        return next(iter(tables.values()), None)
    item, text = tables["item"], tables["text"]
    merged = item.join(text, on=schema.ITEM_ID, how="full", coalesce=True, suffix="_text")
    return merged.select(
        schema.ITEM_ID,
        pl.col(schema.TITLE).fill_null(pl.col(schema.TITLE + "_text")).fill_null(""),
        pl.col(schema.TEXT + "_text").fill_null(pl.col(schema.TEXT)).fill_null(""),
    )


def to_external_ids(
    interactions: pl.DataFrame, column: str, mapping: dict[str, str], path: Path
) -> pl.DataFrame:
    """Replace the tokens of ``column`` by their original ids from an id map.

    Raises:
        DataFormatError: a token the map does not hold (the map file is named, with the token).
    """
    missing = interactions[column].filter(~interactions[column].is_in(list(mapping))).unique()
    if missing.len():
        shown = ", ".join(repr(t) for t in missing.head(5).to_list())
        raise DataFormatError(
            path, f"{missing.len()} {column} token(s) of the interactions are not in this map: {shown}"
        )
    mapped = interactions[column].replace_strict(
        list(mapping), list(mapping.values()), return_dtype=pl.String
    )
    return interactions.with_columns(mapped.alias(column))


# ---- the source -------------------------------------------------------------------------------------
def _name(files: AtomicFiles) -> str:
    return files.inter[0].name.split(".")[0]


def load_recbole(paths: list[Path], options: PrepareOptions) -> RawDataset:
    """Read a dataset's RecBole atomic files (see the module docstring).

    Args:
        paths: the folder of the atomic files, or the files.
        options: ``interactions_file`` / ``items_file`` name files explicitly; ``user_column``,
            ``item_column``, ``timestamp_column``, ``rating_column`` name the fields (RecBole's
            defaults: ``user_id``, ``item_id``, ``timestamp``, ``rating``); ``text_columns`` and
            ``title_column`` choose the item text; ``skip_bad_lines`` and ``ascii_only`` apply.

    Raises:
        DataFormatError: a malformed header, row or id, a sequential row that disagrees with its
            user's sequence, or a token missing from an id map (file, line and field named).
        HstuBlairError: the interaction files cannot be found or are ambiguous.
    """
    files = find_atomic_files([Path(p) for p in paths], options)
    removed: Counter[str] = Counter()
    bad = BadLines(options.skip_bad_lines, removed)
    inter = [read_atomic(path, bad) for path in files.inter]
    history = options.item_column + LIST_SUFFIX
    sequential = any(history in atomic.fields for atomic in inter)
    info: dict[str, object] = {"form": "sequential" if sequential else "interactions"}
    if sequential:
        sequences, disagree = rebuild_sequences(inter, options, bad, info)
        if disagree:
            removed["rows_disagree"] += disagree
        interactions, timed = sequence_interactions(sequences)
    else:
        interactions, timed = plain_interactions(inter, options, bad)
    info["time"] = "unix seconds (timestamp field)" if timed else ORDER_ONLY_TIME
    item_map = read_id_map(files.item_map, bad) if files.item_map else {}
    if files.item_map:
        interactions = to_external_ids(interactions, schema.ITEM_ID, item_map, files.item_map)
    if files.user_map:
        user_map = read_id_map(files.user_map, bad)
        interactions = to_external_ids(interactions, schema.USER_ID, user_map, files.user_map)
    info["ids"] = "original ids (the id maps)" if files.item_map or files.user_map else "the files' tokens"
    items = item_catalogue(files, options, bad, removed, item_map)
    return RawDataset(
        name=_name(files),
        source="recbole",
        interactions=interactions,
        items=items,
        files=files.all,
        removed=removed,
        bad_lines=bad.records,
        info=info,
    )
