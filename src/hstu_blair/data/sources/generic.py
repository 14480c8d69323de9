"""Any interaction table (CSV, TSV, Parquet, JSON Lines) -> :class:`RawDataset`.

The interactions table needs a user, an item and a timestamp column (names in :class:`PrepareOptions`),
and optionally a rating column (``rating_column=None`` gives every interaction rating 1.0). An optional
items table gives each item a text (``text_columns`` joined with ". ") and a title (``title_column``);
its other columns are kept as item attributes (``item_attributes.parquet``, for serving filters).
Format is chosen by extension: ``.csv``, ``.tsv``, ``.parquet``, ``.jsonl`` / ``.ndjson``; the text
formats may be gzip-compressed (``.gz``).

Ids are kept as text: integer ids become their decimal text, integral floats (ids a pandas frame
turned into floats) their integer text. Timestamps are converted to integer seconds from
``timestamp_unit`` (``s``, ``ms``, ``us``, ``ns``: floored; ``iso``: ISO-8601 dates or datetimes, read
as UTC unless they carry an offset); Parquet date/datetime columns are converted whatever the unit.

Every problem names the file, the 1-based line (row, for Parquet) and the field. With
``skip_bad_lines`` bad records are counted under ``bad_lines:<file name>`` instead.

The tables are read by the shared toolkit (:mod:`.tables`, :mod:`.readers`, :mod:`.columns`).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import polars as pl

from hstu_blair.data import schema
from hstu_blair.data.item_attributes import attribute_frame
from hstu_blair.data.item_text import compose_item_text, compose_item_title
from hstu_blair.data.options import PrepareOptions
from hstu_blair.data.sources.bad_lines import BadLines
from hstu_blair.data.sources.base import RawDataset, dedupe_items
from hstu_blair.data.sources.columns import convert, id_column, rating_column, timestamp_column
from hstu_blair.data.sources.tables import read_table, table_format
from hstu_blair.errors import HstuBlairError


def _stem(path: Path) -> str:
    name = path.name
    for suffix in reversed(path.suffixes):
        name = name[: -len(suffix)]
    return name or path.name


def _input_files(paths: list[Path], options: PrepareOptions) -> tuple[Path, Path | None]:
    """(interactions table, items table or None) from the options, else from the order of ``paths``."""
    explicit = [p for p in (options.interactions_file, options.items_file) if p is not None]
    rest = [p for p in paths if p not in explicit]
    for p in rest:
        if p.is_dir():
            raise HstuBlairError(
                f"generic: {p} is a directory; give the interactions table (and items table) as files"
            )
    interactions = options.interactions_file or (rest.pop(0) if rest else None)
    if interactions is None:
        raise HstuBlairError("generic: no interactions table given (an input path or interactions_file)")
    items = options.items_file or (rest.pop(0) if rest else None)
    if rest:
        raise HstuBlairError(
            f"generic: unexpected extra input(s) {', '.join(map(str, rest))}; "
            "expected an interactions table and optionally an items table"
        )
    return Path(interactions), (Path(items) if items is not None else None)


def read_items(
    path: Path, options: PrepareOptions, bad: BadLines, removed: Counter[str]
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """Items table -> (``item_id``, ``title``, ``text``; ``item_id`` and the item attributes, or None);
    repeated ids keep their first row (counted).

    ``text`` joins the cleaned ``text_columns`` (lists joined with ", ") with ". "; ``title`` is the
    cleaned ``title_column``, or empty when that is not set. Every other column is an item
    attribute (:func:`~hstu_blair.data.item_attributes.attribute_frame` types it).
    """
    id_col = options.item_id_column or options.item_column
    title_col = options.title_column
    text_cols = list(dict.fromkeys(options.text_columns + ([title_col] if title_col else [])))
    available = read_table(path, [id_col], BadLines(True, Counter())).columns
    extra = [c for c in dict.fromkeys(available) if c not in (id_col, *text_cols) and c != schema.ITEM_ID]
    table = read_table(path, [id_col, *text_cols, *extra], bad)
    rows = convert(table, {schema.ITEM_ID: id_column(table, id_col)}, bad, keep=[*text_cols, *extra])
    texts, titles = [], []
    for row in rows.iter_rows(named=True):
        texts.append(compose_item_text(row, options.text_columns, options.ascii_only))
        titles.append(compose_item_title(row, title_col))
    items = rows.select(
        schema.ITEM_ID,
        pl.Series(schema.TITLE, titles, dtype=pl.String),
        pl.Series(schema.TEXT, texts, dtype=pl.String),
    )
    attributes = attribute_frame(rows, extra)
    if attributes is not None:
        attributes = attributes.unique(subset=[schema.ITEM_ID], keep="first", maintain_order=True)
    return dedupe_items(items, path, removed), attributes


def load_generic(paths: list[Path], options: PrepareOptions) -> RawDataset:
    """Read an interactions table, and optionally an items table, named by the options' columns.

    Args:
        paths: the interactions table, then optionally the items table (unless ``interactions_file``
            / ``items_file`` name them).
        options: column names (``user_column``, ``item_column``, ``timestamp_column``,
            ``rating_column``, ``item_id_column``, ``text_columns``, ``title_column``),
            ``timestamp_unit``, ``skip_bad_lines``, ``ascii_only``.

    Returns:
        The raw dataset, interactions in file order.

    Raises:
        DataFormatError: unknown format, missing column (the available ones are listed), an empty or
            unparsable value (file, line or row, and field named).
    """
    interactions_path, items_path = _input_files(paths, options)
    removed: Counter[str] = Counter()
    bad = BadLines(options.skip_bad_lines, removed)
    wanted = [options.user_column, options.item_column, options.timestamp_column]
    if options.rating_column:
        wanted.append(options.rating_column)
    table = read_table(interactions_path, wanted, bad)
    columns = {
        schema.USER_ID: id_column(table, options.user_column),
        schema.ITEM_ID: id_column(table, options.item_column),
        schema.TIMESTAMP: timestamp_column(table, options.timestamp_column, options.timestamp_unit),
    }
    if options.rating_column:
        columns[schema.RATING] = rating_column(table, options.rating_column)
    interactions = convert(table, columns, bad)
    if not options.rating_column:
        interactions = interactions.with_columns(pl.lit(1.0, pl.Float32).alias(schema.RATING))

    items, attributes = (
        read_items(items_path, options, bad, removed) if items_path is not None else (None, None)
    )
    files = [interactions_path] + ([items_path] if items_path is not None else [])
    info: dict[str, object] = {
        "format": table_format(interactions_path),
        "timestamp_unit": options.timestamp_unit,
        "rating": options.rating_column or "constant 1.0",
    }
    if items_path is not None:
        info["items_format"] = table_format(items_path)
    return RawDataset(
        name=_stem(interactions_path),
        source="generic",
        interactions=interactions,
        items=items,
        files=files,
        removed=removed,
        bad_lines=bad.records,
        info=info,
        item_attributes=attributes,
    )
