"""Datasets derived from a prepared one: interactions appended (users' events, items added at run
time), or cut at a time; and writing a derived dataset as a prepared directory.

``append_events`` is what ``hstu-blair update`` trains on: each event is appended to its user's
sequence in time order (ties: the user's earlier interactions first, then events in the order
given), new users become new sequences after the existing ones (in order of first event), and new
items get the indices after the catalogue's. ``truncate_before`` keeps the interactions before a
time (the temporal study's datasets). Both keep every catalogue item, so the dataset's text store
still lines up with the item indices.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from hstu_blair.data import schema
from hstu_blair.data.dataset import ITEMS, MANIFEST, SEQUENCES, SequenceData
from hstu_blair.data.manifest import sha256_file, write_json_atomic


@dataclass(frozen=True)
class AppendReport:
    """What :func:`append_events` added, and the events it could not place."""

    items: int
    events: int
    new_users: int
    unknown_item_events: int
    duplicate_events: int = 0
    """Events left out because they repeat an interaction of the dataset or an earlier event
    (same user, item and timestamp): nothing is trained on twice."""


def _with_sequences(
    data: SequenceData, items: pl.DataFrame, sequences: pl.DataFrame, name: str, digest: str
) -> SequenceData:
    manifest = dict(data.manifest)
    n_inter = int(sequences[schema.ITEM_IDX].list.len().sum())
    manifest.update(
        name=name,
        derived_from={"name": data.name, "data_hash": data.data_hash},
        num_users=sequences.height,
        num_items=items.height,
        num_interactions=n_inter,
        # data_hash reads the outputs: a derived dataset hashes to its parent's hash plus its change
        outputs={**data.manifest.get("outputs", {}), "derived": digest},
    )
    return SequenceData(data.path, manifest, items, sequences)


def _added_items(n: int, new_items: pl.DataFrame | None) -> pl.DataFrame:
    """``new_items`` (``item_id``, ``title``, ``text``) with the indices n+1.. in row order."""
    added = pl.DataFrame(schema={schema.ITEM_ID: pl.String, schema.TITLE: pl.String, schema.TEXT: pl.String})
    if new_items is not None and new_items.height:
        added = new_items.select(schema.ITEM_ID, schema.TITLE, schema.TEXT)
    return added.with_columns(
        pl.int_range(n + 1, n + 1 + added.height, dtype=pl.Int32).alias(schema.ITEM_IDX)
    )


def _merged_sequences(
    sequences: pl.DataFrame, kept: list[tuple[str, int, int]], users: dict[str, int]
) -> pl.DataFrame:
    """``sequences`` with the events ``kept`` (user id, item index, timestamp; ``users`` gives each
    user's index) merged in by time, an event after the interactions of its timestamp; no rating."""
    base = sequences.explode([schema.ITEM_IDX, schema.TIMESTAMP, schema.RATING]).select(
        schema.USER_IDX, schema.USER_ID, schema.ITEM_IDX, schema.TIMESTAMP, schema.RATING
    )
    appended = pl.DataFrame(
        {
            schema.USER_IDX: [users[u] for u, _, _ in kept],
            schema.USER_ID: [u for u, _, _ in kept],
            schema.ITEM_IDX: [i for _, i, _ in kept],
            schema.TIMESTAMP: [t for _, _, t in kept],
            schema.RATING: [None] * len(kept),
        },
        schema=base.schema,
    )
    both = pl.concat(
        [base.with_columns(pl.lit(0).alias("_from")), appended.with_columns(pl.lit(1).alias("_from"))]
    ).with_row_index("_order")
    merged = (
        both.sort([schema.USER_IDX, schema.TIMESTAMP, "_from", "_order"])
        .group_by(schema.USER_IDX, maintain_order=True)
        .agg(pl.col(schema.USER_ID).first(), schema.ITEM_IDX, schema.TIMESTAMP, schema.RATING)
    )
    return schema.conform(merged, schema.SEQUENCES_SCHEMA, "sequences")


def append_events(
    data: SequenceData,
    events: Sequence[tuple[str, str, int]],
    new_items: pl.DataFrame | None = None,
    name: str | None = None,
) -> tuple[SequenceData, AppendReport]:
    """``data`` with ``new_items`` added to the catalogue and ``events`` appended (module docstring).

    Args:
        data: the prepared dataset.
        events: ``(user_id, item_id, timestamp)`` rows.
        new_items: ``item_id``, ``title``, ``text`` of items to add (indices n+1.. in row order).
        name: the derived dataset's name (default ``<name>+events``).

    Returns:
        The derived dataset (in memory) and what was added; events naming an item in neither the
        catalogue nor ``new_items`` are left out and counted (``unknown_item_events``).
    """
    added = _added_items(data.num_items, new_items)
    items = schema.conform(
        pl.concat([data.items, added], how="diagonal"), schema.PREPARED_ITEMS_SCHEMA, "items"
    )
    index = dict(zip(items[schema.ITEM_ID].to_list(), items[schema.ITEM_IDX].to_list()))
    known = [(u, index[i], t) for u, i, t in events if i in index]
    kept = _unseen(data, known)
    users = dict(zip(data.sequences[schema.USER_ID].to_list(), data.sequences[schema.USER_IDX].to_list()))
    first_new = len(users)
    for u, _, _ in kept:
        users.setdefault(u, len(users))
    sequences = _merged_sequences(data.sequences, kept, users)
    digest = hashlib.sha256(
        json.dumps([added.rows(), kept], separators=(",", ":"), default=str).encode()
    ).hexdigest()
    derived = _with_sequences(data, items, sequences, name or f"{data.name}+events", digest)
    report = AppendReport(
        added.height, len(kept), len(users) - first_new, len(events) - len(known), len(known) - len(kept)
    )
    return derived, report


def _unseen(data: SequenceData, events: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """``(user_id, item_idx, timestamp)`` events that repeat neither an interaction of ``data`` nor
    an earlier event, in order."""
    users = list({u for u, _, _ in events})
    rows = (
        data.sequences.filter(pl.col(schema.USER_ID).is_in(users))
        .explode([schema.ITEM_IDX, schema.TIMESTAMP])
        .select(schema.USER_ID, schema.ITEM_IDX, schema.TIMESTAMP)
    )
    seen = {(str(u), int(i), int(t)) for u, i, t in rows.iter_rows()}
    kept = []
    for event in events:
        if event not in seen:
            seen.add(event)
            kept.append(event)
    return kept


def truncate_before(data: SequenceData, cutoff: int, name: str) -> tuple[SequenceData, int]:
    """The interactions before ``cutoff`` (seconds); users left without any are dropped (returned
    as a count), every item stays in the catalogue."""
    keep = data.time_seq < cutoff  # (N,)
    counts = np.add.reduceat(keep.astype(np.int64), data.offsets[:-1])  # (U,)
    mask = pl.Series(keep)
    flat = data.sequences.explode([schema.ITEM_IDX, schema.TIMESTAMP, schema.RATING]).filter(mask)
    sequences = flat.group_by(schema.USER_IDX, maintain_order=True).agg(
        pl.col(schema.USER_ID).first(), schema.ITEM_IDX, schema.TIMESTAMP, schema.RATING
    )
    sequences = sequences.with_columns(pl.int_range(0, sequences.height).alias(schema.USER_IDX))
    sequences = schema.conform(sequences, schema.SEQUENCES_SCHEMA, "sequences")
    digest = hashlib.sha256(f"before:{cutoff}".encode()).hexdigest()
    return _with_sequences(data, data.items, sequences, name, digest), int((counts == 0).sum())


def save_dataset(data: SequenceData, out: Path) -> SequenceData:
    """Write ``data`` as a prepared-dataset directory (manifest, items, sequences) and load it back."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data.items.write_parquet(out / ITEMS)
    data.sequences.write_parquet(out / SEQUENCES)
    outputs = {name: sha256_file(out / name) for name in (ITEMS, SEQUENCES)}
    write_json_atomic(out / MANIFEST, {**data.manifest, "outputs": outputs, "num_reviews": 0})
    return SequenceData.load(out)
