"""Held-out items for the cold-start protocol: pick them, write a dataset without them, find their targets.

Protocol: items are drawn uniformly at random (``share`` of the catalogue, seeded). The "warm"
dataset keeps every user's sequence minus the held-out items' interactions, with the same item
indices (the catalogue and its text are unchanged). A cold test example is each user's first
interaction with a held-out item that has at least one earlier (warm) interaction: the history
is everything before it, the target is the cold item.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import numpy as np
import polars as pl

from hstu_blair.data import schema
from hstu_blair.data.dataset import ITEMS, MANIFEST, SEQUENCES, SequenceData
from hstu_blair.data.manifest import write_json_atomic
from hstu_blair.data.splits import EvalTargets
from hstu_blair.errors import ConfigError, EmptyDatasetError


def pick_cold_items(num_items: int, share: float, seed: int) -> np.ndarray:
    """``round(share * n)`` item indices drawn without replacement (sorted).

    Raises:
        ConfigError: ``share`` is not in (0, 1).
    """
    if not 0 < share < 1:
        raise ConfigError(f"the cold-start share must be in (0, 1), got {share}")
    n = max(1, round(share * num_items))
    return np.sort(np.random.default_rng(seed).choice(np.arange(1, num_items + 1), size=n, replace=False))


def write_warm_dataset(data: SequenceData, cold_items: np.ndarray, out: Path) -> SequenceData:
    """A prepared dataset without the cold items' interactions (same item indices and catalogue).

    Users left without any interaction are dropped (counted in the manifest's ``cold_start``).

    Raises:
        EmptyDatasetError: nothing is left.
    """
    keep = ~np.isin(data.item_seq, cold_items)  # (N,)
    kept_per_user = (
        np.add.reduceat(keep.astype(np.int64), data.offsets[:-1]) if data.num_interactions else keep
    )
    users = np.flatnonzero(kept_per_user > 0)
    if users.size == 0:
        raise EmptyDatasetError("no interactions left after holding out the cold items")
    offsets = np.concatenate([[0], np.cumsum(kept_per_user[users])])
    items, times, ratings = data.item_seq[keep], data.time_seq[keep], data.rating_seq[keep]

    def lists(values: np.ndarray) -> list[np.ndarray]:
        return [values[offsets[i] : offsets[i + 1]] for i in range(users.size)]

    seq = pl.DataFrame(
        {
            schema.USER_IDX: np.arange(users.size, dtype=np.int32),
            schema.USER_ID: data.sequences[schema.USER_ID].to_numpy()[users],
            schema.ITEM_IDX: lists(items),
            schema.TIMESTAMP: lists(times),
            schema.RATING: lists(ratings),
        }
    )
    out.mkdir(parents=True, exist_ok=True)
    schema.conform(seq, schema.SEQUENCES_SCHEMA, "sequences").write_parquet(out / SEQUENCES)
    schema.conform(data.items, schema.PREPARED_ITEMS_SCHEMA, "items").write_parquet(out / ITEMS)
    manifest = copy.deepcopy(data.manifest)
    manifest.update(
        format_version=schema.FORMAT_VERSION,
        num_users=int(users.size),
        num_interactions=int(keep.sum()),
        cold_start={
            "source_dataset": str(data.path),
            "cold_items": int(cold_items.size),
            "removed_interactions": int((~keep).sum()),
            "removed_users": int(data.num_users - users.size),
        },
    )
    manifest["outputs"] = {n: hashlib.sha256((out / n).read_bytes()).hexdigest() for n in (ITEMS, SEQUENCES)}
    write_json_atomic(out / MANIFEST, manifest)
    for stale in out.glob("reviews.parquet"):  # reviews are not carried over: they would leak
        stale.unlink()
    return SequenceData.load(out)


def cold_targets(data: SequenceData, cold_items: np.ndarray) -> EvalTargets:
    """Each user's first interaction with a cold item that has at least one warm item before it."""
    is_cold = np.isin(data.item_seq, cold_items)  # (N,)
    users, positions = [], []
    for u in range(data.num_users):
        start, end = data.offsets[u], data.offsets[u + 1]
        hits = np.flatnonzero(is_cold[start:end])
        if hits.size and hits[0] > 0:
            users.append(u)
            positions.append(hits[0])
    return EvalTargets(np.array(users, dtype=np.int64), np.array(positions, dtype=np.int64))
