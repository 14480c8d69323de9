"""What every source loader returns, and the small file helpers they share."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from hstu_blair.data import schema
from hstu_blair.errors import DataFormatError


@dataclass
class RawDataset:
    """Canonical tables of one source, before filtering and id assignment.

    Attributes:
        name: short dataset name (``"Video_Games"``, ``"steam"``, ``"ml-1m"``...).
        source: loader name (``amazon2023``, ``steam``, ``movielens``, ``generic``).
        interactions: see :data:`schema.INTERACTIONS_SCHEMA`; rows in source-file order, which is
            the tie-break for equal timestamps.
        items: item catalogue with text, or ``None`` when the source has none.
        reviews: optional (user, item, review/tag text) pairs for text pretraining.
        files: every input file read.
        removed: rows the loader itself dropped, by reason (bad lines when skipping, rows
            lacking a required field...). Never silently empty: a loader that drops counts.
        info: anything else worth recording in the manifest (detected variant, original unit).
        bad_lines: every line skipped with ``skip_bad_lines`` (``file``, ``line``, ``field``,
            ``reason``), written beside the manifest as ``bad_lines.jsonl``.
        source_times: (N,) the interactions' timestamps in the unit of the source files, when
            ``timestamp`` (seconds) lost precision (Amazon 2023 rating CSV: milliseconds); the
            reference sorts on these (``tie_order="reference"``). ``None``: ``timestamp`` is exact.
        item_attributes: ``item_id`` and one typed column per catalogue attribute (category,
            price, in_stock, ...; see :mod:`hstu_blair.data.item_attributes`), or ``None``.
    """

    name: str
    source: str
    interactions: pl.DataFrame
    items: pl.DataFrame | None = None
    reviews: pl.DataFrame | None = None
    files: list[Path] = field(default_factory=list)
    removed: Counter[str] = field(default_factory=Counter)
    info: dict[str, object] = field(default_factory=dict)
    bad_lines: list[dict[str, object]] = field(default_factory=list)
    source_times: np.ndarray | None = None
    item_attributes: pl.DataFrame | None = None

    def __post_init__(self) -> None:
        self.interactions = schema.conform(self.interactions, schema.INTERACTIONS_SCHEMA, "interactions")
        if self.source_times is not None and self.source_times.shape != (self.interactions.height,):
            raise AssertionError(
                f"source_times has shape {self.source_times.shape}, interactions {self.interactions.height} rows"
            )
        if self.items is not None:
            self.items = schema.conform(self.items, schema.ITEMS_SCHEMA, "items")
        if self.reviews is not None:
            self.reviews = schema.conform(self.reviews, schema.REVIEWS_SCHEMA, "reviews")


ORDER_ONLY_TIME = "order-only: timestamp = position in the user's sequence (0, 1, ...); no real time"
"""``info["time"]`` of the sources whose files give only each user's order of items."""


def order_only_interactions(sequences: Iterable[tuple[str, Sequence[object]]]) -> pl.DataFrame:
    """(user id, item ids oldest first) pairs -> interactions whose timestamp is the position
    in the user's sequence (0, 1, ...), rating 1.0; rows user by user, in sequence order."""
    users: list[str] = []
    items: list[str] = []
    positions: list[int] = []
    for user, seq in sequences:
        users.extend([user] * len(seq))
        items.extend(str(i) for i in seq)
        positions.extend(range(len(seq)))
    return pl.DataFrame(
        {
            schema.USER_ID: pl.Series(users, dtype=pl.String),
            schema.ITEM_ID: pl.Series(items, dtype=pl.String),
            schema.TIMESTAMP: pl.Series(positions, dtype=pl.Int64),
            schema.RATING: pl.Series([1.0] * len(users), dtype=pl.Float32),
        }
    )


def find_file(paths: list[Path], *names: str) -> Path | None:
    """The first path whose file name is one of ``names`` (with or without ``.gz``), if any.

    Directories in ``paths`` are searched one level deep.
    """
    wanted = {n.lower() for n in names} | {n.lower() + ".gz" for n in names}
    candidates: list[Path] = []
    for p in paths:
        candidates.extend(sorted(p.iterdir()) if p.is_dir() else [p])
    for p in candidates:
        if p.name.lower() in wanted:
            return p
    return None


def expand_inputs(paths: list[Path]) -> list[Path]:
    """Files given directly plus the files inside given directories (one level)."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files.extend(sorted(q for q in p.iterdir() if q.is_file()))
        elif p.exists():
            files.append(p)
        else:
            raise DataFormatError(p, "input path does not exist")
    return files


def dedupe_items(items: pl.DataFrame, path: Path, removed: Counter[str]) -> pl.DataFrame:
    """Keep the first row of each item id; count the others under ``duplicate_item_rows:<file>``."""
    unique = items.unique(subset=[schema.ITEM_ID], keep="first", maintain_order=True)
    if unique.height < items.height:
        removed[f"duplicate_item_rows:{path.name}"] += items.height - unique.height
    return unique
