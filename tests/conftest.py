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


def synthetic_rows(
    n_users: int = 64, n_items: int = 40, length: int = 12, seed: int = 0
) -> list[tuple[str, str, int]]:
    """Users walking a cycle of items with random starts and small detours: learnable order."""
    import random

    rng = random.Random(seed)
    rows = []
    for u in range(n_users):
        start = rng.randrange(n_items)
        t = 1_600_000_000 + rng.randrange(10_000)
        for step in range(length):
            item = (start + step) % n_items if rng.random() > 0.15 else rng.randrange(n_items)
            t += rng.choice([60, 3600, 86_400])
            rows.append((f"u{u}", f"i{item}", t))
    return rows


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A prepared dataset directory of 64 synthetic users over 40 items (with item texts)."""
    from hstu_blair.data.dataset import write_dataset
    from hstu_blair.data.prepare import PrepareOptions, filter_raw

    out = tmp_path_factory.mktemp("tiny") / "data"
    texts = {f"i{i}": f"item number {i} in group {i % 5}" for i in range(40)}
    raw = make_raw(synthetic_rows(), texts=texts)
    options = PrepareOptions(kcore=0)
    kept, removed = filter_raw(raw, options)
    write_dataset(raw, kept, removed, options.to_dict(), out)
    return out


def tiny_overrides(data_path: Path, out_dir: Path, **extra: object) -> list[str]:
    """Config overrides for a seconds-long training run on ``tiny_dataset``."""
    base = {
        "data.path": f'"{data_path}"',
        "out_dir": f'"{out_dir}"',
        "data.max_len": 10,
        "model.d_model": 16,
        "model.d_qk": 8,
        "model.d_v": 8,
        "model.ffn_dim": 16,
        "model.num_heads": 2,
        "train.epochs": 3,
        "train.batch_size": 16,
        "train.num_negatives": 16,
        "train.threads": 1,
        "eval.batch_size": 32,
    }
    base.update(
        {
            k: (f'"{v}"' if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else v)
            for k, v in extra.items()
        }
    )
    return [f"{k}={v}" for k, v in base.items()]
