"""Filters on the raw interaction table, as boolean keep-masks over integer-coded ids.

Raw string ids are coded to integers once (:func:`code_ids`); each filter then narrows a keep-mask
with vectorised numpy, and :func:`removed_counts` reports what a step removed (interactions,
users, items). On 8M interactions this is several times faster than filtering string columns.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from hstu_blair.data.schema import ITEM_ID, USER_ID

Removed = dict[str, int]


def code_ids(df: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes (0..distinct-1, any order) of the raw user and item ids."""
    users = df[USER_ID].cast(pl.Categorical).to_physical().to_numpy().astype(np.int64)
    items = df[ITEM_ID].cast(pl.Categorical).to_physical().to_numpy().astype(np.int64)
    return users, items


def _distinct(codes: np.ndarray, mask: np.ndarray) -> int:
    return int(np.count_nonzero(np.bincount(codes[mask]))) if mask.any() else 0


def removed_counts(users: np.ndarray, items: np.ndarray, before: np.ndarray, after: np.ndarray) -> Removed:
    """Interactions, users and items present under ``before`` but not under ``after``."""
    return {
        "interactions": int(before.sum() - after.sum()),
        "users": _distinct(users, before) - _distinct(users, after),
        "items": _distinct(items, before) - _distinct(items, after),
    }


def first_occurrences(users: np.ndarray, items: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    """Keep-mask that removes repeated (user, item, timestamp) rows, keeping the first in file order.

    Repeats of an item by a user at *different* times are kept (repeat consumption is real signal).
    """
    keep = np.ones(users.shape[0], dtype=bool)
    pair = users.astype(np.int64) * (int(items.max(initial=-1)) + 1) + items  # (N,) one code per (user, item)
    order = pl.Series(pair).arg_sort().to_numpy()  # (N,)
    ordered = pair[order]
    same = ordered[1:] == ordered[:-1]  # (N-1,)
    if not same.any():  # every (user, item) once: nothing to compare (Amazon 5-core)
        return keep
    # Only rows whose (user, item) occurs more than once are sorted by (pair, time, file position);
    # a hash of all (user, item, time) triples would take several times the table's memory.
    in_run = np.zeros(pair.shape[0], dtype=bool)
    in_run[1:] = same
    in_run[:-1] |= same
    rows = order[in_run]
    rows = rows[np.lexsort((rows, timestamps[rows], pair[rows]))]
    p, t = pair[rows], timestamps[rows]
    keep[rows[1:][(p[1:] == p[:-1]) & (t[1:] == t[:-1])]] = False
    return keep


def min_user_rows(users: np.ndarray, k: int, mask: np.ndarray) -> np.ndarray:
    """Narrow ``mask`` to the rows of users with at least ``k`` rows under it (no item filter).

    The reference's Steam filter (``kcore_mode="users-only"``, SPEC §1.3) and the last step of
    its single-pass k-core.
    """
    mask = mask.copy()
    idx = np.flatnonzero(mask)
    counts = np.bincount(users[idx], minlength=int(users.max(initial=-1)) + 1)
    mask[idx[counts[users[idx]] < k]] = False
    return mask


def single_pass_rows(users: np.ndarray, items: np.ndarray, k: int, mask: np.ndarray) -> np.ndarray:
    """Narrow ``mask`` to the rows whose user and item both have at least ``k`` rows under it.

    Both counts are taken once, before either filter (the reference's row filter, SPEC §1.2-1.3).
    """
    mask = mask.copy()
    idx = np.flatnonzero(mask)
    cu = np.bincount(users[idx], minlength=int(users.max(initial=-1)) + 1)
    ci = np.bincount(items[idx], minlength=int(items.max(initial=-1)) + 1)
    mask[idx[(cu[users[idx]] < k) | (ci[items[idx]] < k)]] = False
    return mask


def kcore(
    users: np.ndarray, items: np.ndarray, k: int, mask: np.ndarray, iterative: bool = True
) -> tuple[np.ndarray, int]:
    """Narrow ``mask`` to a k-core; return the new mask and the number of rounds.

    ``iterative=True``: repeatedly drop users and items with fewer than ``k`` interactions until
    stable, so every user and item keeps at least ``k``.
    ``iterative=False`` (the reference's filter, SPEC §1.2-1.3): :func:`single_pass_rows`, then
    users left with < k items are dropped (:func:`min_user_rows`); items may end with fewer
    than ``k`` interactions.
    """
    if not iterative:
        return min_user_rows(users, k, single_pass_rows(users, items, k, mask)), 1
    mask = mask.copy()
    n_users, n_items = int(users.max(initial=-1)) + 1, int(items.max(initial=-1)) + 1
    rounds = 0
    while True:
        rounds += 1
        idx = np.flatnonzero(mask)
        cu = np.bincount(users[idx], minlength=n_users)
        ci = np.bincount(items[idx], minlength=n_items)
        drop = (cu[users[idx]] < k) | (ci[items[idx]] < k)
        if not drop.any():
            return mask, rounds
        mask[idx[drop]] = False
