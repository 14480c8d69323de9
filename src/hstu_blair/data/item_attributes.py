"""Item attributes: the catalogue columns that are neither id, title nor text (category, brand,
price, in_stock, ...), kept by ``prepare`` for business filters at serving time.

Written beside ``items.parquet`` as ``item_attributes.parquet``: ``item_idx`` 1..n, then one column
per attribute, null where an item has no value (never zero-filled). The manifest's
``item_attributes`` lists each attribute's ``name`` and ``dtype`` (``string``, ``int``, ``float``,
``bool``). Text columns (CSV, TSV) are typed by their values: all ``true``/``false`` -> ``bool``, all
integers -> ``int``, all numbers -> ``float``, else ``string``; empty cells are null.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from hstu_blair.data import schema

ATTRIBUTES = "item_attributes.parquet"
DTYPES = {"string": pl.String, "int": pl.Int64, "float": pl.Float64, "bool": pl.Boolean}
"""Attribute dtype names (as the manifest records them) and their column types."""
RESERVED = (schema.ITEM_IDX, schema.ITEM_ID, schema.TITLE, schema.TEXT)


def _typed_text(values: pl.Series) -> pl.Series:
    """A string column as bool, int, float or string by its non-empty values (empty -> null)."""
    stripped = values.str.strip_chars()
    cleaned = pl.when(stripped == "").then(None).otherwise(stripped)
    text = pl.select(cleaned.alias(values.name)).to_series()
    present = text.drop_nulls()
    lower = present.str.to_lowercase()
    if present.len() and lower.is_in(["true", "false"]).all():
        return (text.str.to_lowercase() == "true").alias(values.name)
    for dtype in (pl.Int64, pl.Float64):
        cast = text.cast(dtype, strict=False)
        if cast.null_count() == text.null_count():
            return cast
    return text


def typed_attribute(values: pl.Series) -> pl.Series:
    """One attribute column in one of :data:`DTYPES` (NaN and empty text -> null)."""
    dtype = values.dtype
    if dtype == pl.String:
        return _typed_text(values)
    if dtype == pl.Boolean:
        return values
    if dtype.is_integer():
        return values.cast(pl.Int64)
    if dtype.is_float():
        return values.cast(pl.Float64).fill_nan(None)
    if dtype.is_temporal() or dtype == pl.Null:
        return values.cast(pl.String)
    return pl.Series(values.name, [None if v is None else str(v) for v in values.to_list()], pl.String)


def dtype_name(dtype: pl.DataType) -> str:
    """The manifest's name of a typed attribute column's dtype."""
    return next(name for name, t in DTYPES.items() if dtype == t)


def attribute_frame(items: pl.DataFrame, columns: list[str]) -> pl.DataFrame | None:
    """``item_id`` and the typed ``columns`` of a catalogue table (None: no columns)."""
    columns = [c for c in columns if c not in RESERVED]
    if not columns:
        return None
    return items.select(schema.ITEM_ID, *[typed_attribute(items[c]) for c in columns])


def write_item_attributes(
    attributes: pl.DataFrame | None, item_vocab: pl.DataFrame, out: Path
) -> list[dict[str, str]]:
    """``item_attributes.parquet`` for the vocabulary's items (a stale file is removed when there
    are none); returns the manifest's ``item_attributes`` (``name``, ``dtype`` per attribute)."""
    if attributes is None or attributes.width <= 1:
        (out / ATTRIBUTES).unlink(missing_ok=True)
        return []
    first = attributes.unique(subset=[schema.ITEM_ID], keep="first", maintain_order=True)
    first = first.with_columns(
        typed_attribute(first[c])
        for c in first.columns
        if c != schema.ITEM_ID and first[c].dtype not in DTYPES.values()
    )
    table = (
        item_vocab.join(first, on=schema.ITEM_ID, how="left")
        .sort(schema.ITEM_IDX)
        .drop(schema.ITEM_ID)
        .with_columns(pl.col(schema.ITEM_IDX).cast(pl.Int32))
    )
    table.write_parquet(out / ATTRIBUTES)
    return [{"name": c, "dtype": dtype_name(table[c].dtype)} for c in table.columns if c != schema.ITEM_IDX]


def read_item_attributes(path: Path, manifest: dict[str, Any]) -> pl.DataFrame | None:
    """The ``item_idx`` + attribute table of a prepared directory (None when it has none)."""
    if not manifest.get("item_attributes") or not (path / ATTRIBUTES).exists():
        return None
    return pl.read_parquet(path / ATTRIBUTES)
