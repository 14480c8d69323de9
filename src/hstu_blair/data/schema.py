"""Fixed column names and dtypes of every table the data stage produces.

One name per idea: ``user_id`` / ``item_id`` are the external (raw) ids of the source files, as
strings, everywhere they appear (tables, files, the serving API, HTTP bodies); ``user_idx`` /
``item_idx`` are the dense indices the models use (users 0..m-1, items 1..n, 0 = padding).

Raw tables (what a source loader returns, before indices are assigned):

- interactions: ``user_id`` (str), ``item_id`` (str), ``timestamp`` (int64, seconds),
  ``rating`` (float32)
- items: ``item_id`` (str), ``title`` (str), ``text`` (str)
- reviews (optional, for text pretraining): ``user_id``, ``item_id``, ``text``

Prepared tables (files of the prepared-dataset directory, format version 2):

- ``items.parquet``: ``item_idx`` (int32, 1..n; 0 is padding), ``item_id``, ``title``, ``text``
- ``sequences.parquet``: one row per user, ``user_idx`` (int32, 0..m-1), ``user_id``,
  ``item_idx`` (list[int32], chronological), ``timestamp`` (list[int64], seconds),
  ``rating`` (list[float32]); exploding the three list columns gives the interactions with the
  raw tables' column names
- ``reviews.parquet`` (optional): ``user_id``, ``item_idx``, ``text``

Format version 1 (written before 0.2) named these columns differently; :data:`LEGACY_COLUMNS`
maps them and readers rename on load.
"""

from __future__ import annotations

import polars as pl

USER_ID = "user_id"
ITEM_ID = "item_id"
USER_IDX = "user_idx"
ITEM_IDX = "item_idx"
TIMESTAMP = "timestamp"
RATING = "rating"
TITLE = "title"
TEXT = "text"

INTERACTIONS_SCHEMA: dict[str, pl.DataType] = {
    USER_ID: pl.String,
    ITEM_ID: pl.String,
    TIMESTAMP: pl.Int64,
    RATING: pl.Float32,
}
ITEMS_SCHEMA: dict[str, pl.DataType] = {ITEM_ID: pl.String, TITLE: pl.String, TEXT: pl.String}
REVIEWS_SCHEMA: dict[str, pl.DataType] = {USER_ID: pl.String, ITEM_ID: pl.String, TEXT: pl.String}

SEQUENCES_SCHEMA: dict[str, pl.DataType] = {
    USER_IDX: pl.Int32,
    USER_ID: pl.String,
    ITEM_IDX: pl.List(pl.Int32),
    TIMESTAMP: pl.List(pl.Int64),
    RATING: pl.List(pl.Float32),
}
PREPARED_ITEMS_SCHEMA: dict[str, pl.DataType] = {
    ITEM_IDX: pl.Int32,
    ITEM_ID: pl.String,
    TITLE: pl.String,
    TEXT: pl.String,
}
PREPARED_REVIEWS_SCHEMA: dict[str, pl.DataType] = {USER_ID: pl.String, ITEM_IDX: pl.Int32, TEXT: pl.String}

FORMAT_VERSION = 2
"""Version of the prepared-dataset directory contract; bumped on any incompatible change."""
READABLE_VERSIONS = (1, 2)
"""Versions :class:`~hstu_blair.data.dataset.SequenceData` reads (1 is renamed on load)."""

LEGACY_COLUMNS: dict[str, dict[str, str]] = {
    "items": {"item_id": ITEM_IDX, "raw_id": ITEM_ID},
    "sequences": {
        "user_id": USER_IDX,
        "raw_user_id": USER_ID,
        "item_ids": ITEM_IDX,
        "timestamps": TIMESTAMP,
        "ratings": RATING,
    },
    "reviews": {"raw_user_id": USER_ID, "item_id": ITEM_IDX},
}
"""Format version 1 column name -> current name, per table."""


def conform(df: pl.DataFrame, schema: dict[str, pl.DataType], name: str) -> pl.DataFrame:
    """Select and cast ``df`` to ``schema``; a missing column is a programming error in a loader."""
    missing = [c for c in schema if c not in df.columns]
    if missing:
        raise AssertionError(f"{name} table lacks columns {missing}; has {df.columns}")
    return df.select([pl.col(c).cast(t) for c, t in schema.items()])


def rename_legacy(df: pl.DataFrame, table: str) -> pl.DataFrame:
    """A format-version-1 table with today's column names (see :data:`LEGACY_COLUMNS`)."""
    return df.rename({old: new for old, new in LEGACY_COLUMNS[table].items() if old in df.columns})
