"""Cold-start items: hold out a share of items with all their interactions, train without them,
then rank them through the text (or fused) item representation.

Protocol: items are drawn uniformly at random (``share`` of the catalogue, seeded). The "warm"
dataset keeps every user's sequence minus the held-out items' interactions, with the same item
ids (the catalogue and its text are unchanged), and is trained on as usual, with negatives drawn
only from items seen in training. A cold test example is each user's first interaction with a
held-out item that has at least one earlier (warm) interaction: the history is everything before
it, the target is the cold item, and the ranking is over the whole catalogue (warm and cold).
An ID-only model has never trained the held-out items' ID vectors, so it cannot rank them beyond
chance; a text path can.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from hstu_blair.config import RunConfig
from hstu_blair.data import schema
from hstu_blair.data.dataset import ITEMS, MANIFEST, SEQUENCES, SequenceData
from hstu_blair.data.manifest import write_json_atomic
from hstu_blair.data.splits import EvalTargets
from hstu_blair.errors import EmptyDatasetError


def pick_cold_items(num_items: int, share: float, seed: int) -> np.ndarray:
    """``round(share * n)`` item ids drawn without replacement (sorted)."""
    if not 0 < share < 1:
        raise ValueError(f"share must be in (0, 1), got {share}")
    n = max(1, round(share * num_items))
    return np.sort(np.random.default_rng(seed).choice(np.arange(1, num_items + 1), size=n, replace=False))


def write_warm_dataset(data: SequenceData, cold_items: np.ndarray, out: Path) -> SequenceData:
    """A prepared dataset without the cold items' interactions (same item ids and catalogue)."""
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
            schema.USER_ID: np.arange(users.size, dtype=np.int32),
            schema.RAW_USER: data.sequences[schema.RAW_USER].to_numpy()[users],
            schema.ITEM_IDS: lists(items),
            schema.TIMESTAMPS: lists(times),
            schema.RATINGS: lists(ratings),
        }
    )
    out.mkdir(parents=True, exist_ok=True)
    schema.conform(seq, schema.SEQUENCES_SCHEMA, "sequences").write_parquet(out / SEQUENCES)
    shutil.copyfile(data.path / ITEMS, out / ITEMS)
    manifest = copy.deepcopy(data.manifest)
    manifest.update(
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


def run_cold_start(
    config: RunConfig, share: float = 0.1, seed: int = 0, work_dir: Path | None = None, progress: bool = False
) -> dict[str, Any]:
    """Hold out items, train ``config`` on the rest, and score cold targets and the warm test split.

    Returns:
        ``{"cold": metrics on cold targets, "warm_test": test metrics, "run_dir": ..., "cold_items": n}``
        (also written to ``{run_dir}/cold_start.json``).
    """
    from hstu_blair.evaluation.evaluate import evaluate
    from hstu_blair.training.loop import ensure_dataset, train
    from hstu_blair.training.run_dir import load_run

    data = ensure_dataset(config)
    cold = pick_cold_items(data.num_items, share, seed)
    work_dir = Path(work_dir or Path(config.out_dir) / f"cold-start-{config.name}")
    warm = write_warm_dataset(data, cold, work_dir / f"warm-data-share{share}-seed{seed}")
    cfg = copy.deepcopy(config)
    cfg.data.path = str(warm.path)
    cfg.data.source = None
    cfg.train.negatives_pool = "seen"
    if cfg.model.fusion != "id" and not cfg.text.embeddings:
        from hstu_blair.text.store import default_store_path

        cfg.text.embeddings = str(default_store_path(data.path, cfg.text.encoder))
        if not Path(cfg.text.embeddings).exists():
            from hstu_blair.models.build import load_text_for

            load_text_for(config, data)  # embeds the full catalogue (text of cold items included)
    result = train(cfg, run_dir=work_dir / "run", progress=progress)
    run = load_run(result.run_dir)
    targets = cold_targets(data, cold)
    metrics = evaluate(run.model, data, targets, run.config)
    payload = {
        "dataset": Path(config.data.path).name,
        "label": config.name,
        "share": share,
        "seed": seed,
        "cold_items": int(cold.size),
        "cold_targets": len(targets),
        "cold": metrics,
        "warm_test": result.metrics,
        "run_dir": str(result.run_dir),
        "model": cfg.model.name,
        "fusion": cfg.model.fusion,
    }
    write_json_atomic(result.run_dir / "cold_start.json", payload)
    return json.loads((result.run_dir / "cold_start.json").read_text())
