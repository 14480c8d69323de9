"""Shared test helpers: paths to the real datasets and tiny raw datasets built in code."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest

from hstu_blair.data.sources.base import RawDataset

SHARED = (
    Path(os.environ.get("HSTU_BLAIR_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "datasets"
)
FIXTURES = Path(__file__).parent / "fixtures"


def shared_dataset(name: str) -> Path:
    """Path of a real dataset folder in ../shared/datasets, or skip the test when it is absent."""
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"real dataset {name} not present at {path}")
    return path


def make_raw(
    rows: list[tuple[str, str, int]], texts: dict[str, str] | None = None, source: str = "generic"
) -> RawDataset:
    """A RawDataset from (user, item, timestamp) rows (rating 1) and optional item texts."""
    interactions = pl.DataFrame(
        {
            "raw_user_id": [r[0] for r in rows],
            "raw_item_id": [r[1] for r in rows],
            "timestamp": [r[2] for r in rows],
            "rating": [1.0] * len(rows),
        }
    )
    items = None
    if texts is not None:
        items = pl.DataFrame({"raw_item_id": list(texts), "title": list(texts), "text": list(texts.values())})
    return RawDataset(name="tiny", source=source, interactions=interactions, items=items)
