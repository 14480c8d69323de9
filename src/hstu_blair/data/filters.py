"""Filters on the raw interaction table. Each returns the kept rows and what it removed, as counts."""

from __future__ import annotations

import polars as pl

from hstu_blair.data.schema import RAW_ITEM, RAW_USER, TIMESTAMP

Removed = dict[str, int]


def _counts(before: pl.DataFrame, after: pl.DataFrame) -> Removed:
    return {
        "interactions": before.height - after.height,
        "users": before[RAW_USER].n_unique() - (after[RAW_USER].n_unique() if after.height else 0),
        "items": before[RAW_ITEM].n_unique() - (after[RAW_ITEM].n_unique() if after.height else 0),
    }


def drop_exact_duplicates(df: pl.DataFrame) -> tuple[pl.DataFrame, Removed]:
    """Remove repeated (user, item, timestamp) rows, keeping the first in file order.

    Repeats of an item by a user at *different* times are kept (repeat consumption is real signal).
    """
    kept = df.unique(subset=[RAW_USER, RAW_ITEM, TIMESTAMP], keep="first", maintain_order=True)
    return kept, _counts(df, kept)


def keep_items(df: pl.DataFrame, items: pl.Series) -> tuple[pl.DataFrame, Removed]:
    """Keep interactions whose item is in ``items`` (e.g. the items that have text)."""
    kept = df.filter(pl.col(RAW_ITEM).is_in(items.implode()))
    return kept, _counts(df, kept)


def kcore_iterative(df: pl.DataFrame, k: int) -> tuple[pl.DataFrame, Removed]:
    """Iterative k-core: repeatedly drop users and items with fewer than ``k`` interactions until stable.

    Afterwards every user and every item has at least ``k`` interactions.
    """
    kept = df
    rounds = 0
    while True:
        rounds += 1
        filtered = kept.filter((pl.len().over(RAW_USER) >= k) & (pl.len().over(RAW_ITEM) >= k))
        if filtered.height == kept.height:
            break
        kept = filtered
    counts = _counts(df, kept)
    counts["rounds"] = rounds
    return kept, counts


def kcore_single_pass(df: pl.DataFrame, k: int) -> tuple[pl.DataFrame, Removed]:
    """The reference's filter (SPEC §1.2-1.3): one pass, then drop users left with < ``k`` items.

    Item and user counts are both computed on the input before any row is removed; rows with
    item count >= k and user count >= k are kept; users whose remaining sequence is shorter than
    ``k`` are then dropped. Items may end with fewer than ``k`` interactions.
    """
    kept = df.filter((pl.len().over(RAW_ITEM) >= k) & (pl.len().over(RAW_USER) >= k))
    kept = kept.filter(pl.len().over(RAW_USER) >= k)
    counts = _counts(df, kept)
    counts["rounds"] = 1
    return kept, counts


def keep_min_user_length(df: pl.DataFrame, n: int) -> tuple[pl.DataFrame, Removed]:
    """Drop users with fewer than ``n`` interactions (once, not iterated with items)."""
    kept = df.filter(pl.len().over(RAW_USER) >= n)
    return kept, _counts(df, kept)
