"""Fixed column names and dtypes of every table the data stage produces.

Raw tables (what a source loader returns, before ids are assigned):

- interactions: ``raw_user_id`` (str), ``raw_item_id`` (str), ``timestamp`` (int64, seconds),
  ``rating`` (float32)
- items: ``raw_item_id`` (str), ``title`` (str), ``text`` (str)
- reviews (optional, for text pretraining): ``raw_user_id``, ``raw_item_id``, ``text``

Prepared tables (files of the prepared-dataset directory):

- ``items.parquet``: ``item_id`` (int32, 1..n; 0 is padding), ``raw_id``, ``title``, ``text``
- ``sequences.parquet``: one row per user, ``user_id`` (int32, 0..m-1), ``raw_user_id``,
  ``item_ids`` (list[int32], chronological), ``timestamps`` (list[int64], seconds),
  ``ratings`` (list[float32])
- ``reviews.parquet`` (optional): ``user_id``, ``item_id``, ``text``
"""

from __future__ import annotations

import polars as pl

RAW_USER = "raw_user_id"
RAW_ITEM = "raw_item_id"
TIMESTAMP = "timestamp"
RATING = "rating"
TITLE = "title"
TEXT = "text"

ITEM_ID = "item_id"
USER_ID = "user_id"
RAW_ID = "raw_id"
ITEM_IDS = "item_ids"
TIMESTAMPS = "timestamps"
RATINGS = "ratings"

INTERACTIONS_SCHEMA: dict[str, pl.DataType] = {
    RAW_USER: pl.String,
    RAW_ITEM: pl.String,
    TIMESTAMP: pl.Int64,
    RATING: pl.Float32,
}
ITEMS_SCHEMA: dict[str, pl.DataType] = {RAW_ITEM: pl.String, TITLE: pl.String, TEXT: pl.String}
REVIEWS_SCHEMA: dict[str, pl.DataType] = {RAW_USER: pl.String, RAW_ITEM: pl.String, TEXT: pl.String}

SEQUENCES_SCHEMA: dict[str, pl.DataType] = {
    USER_ID: pl.Int32,
    RAW_USER: pl.String,
    ITEM_IDS: pl.List(pl.Int32),
    TIMESTAMPS: pl.List(pl.Int64),
    RATINGS: pl.List(pl.Float32),
}
PREPARED_ITEMS_SCHEMA: dict[str, pl.DataType] = {
    ITEM_ID: pl.Int32,
    RAW_ID: pl.String,
    TITLE: pl.String,
    TEXT: pl.String,
}

FORMAT_VERSION = 1
"""Version of the prepared-dataset directory contract; bumped on any incompatible change."""


def conform(df: pl.DataFrame, schema: dict[str, pl.DataType], name: str) -> pl.DataFrame:
    """Select and cast ``df`` to ``schema``; a missing column is a programming error in a loader."""
    missing = [c for c in schema if c not in df.columns]
    if missing:
        raise AssertionError(f"{name} table lacks columns {missing}; has {df.columns}")
    return df.select([pl.col(c).cast(t) for c, t in schema.items()])
