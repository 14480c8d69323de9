"""The cold-start recipe: hold out items, train without them, rank them through the item representation.

See :mod:`hstu_blair.data.holdout` for the protocol. The model is trained on the warm dataset with
negatives drawn only from items seen in training, then each user's first held-out item is ranked
over the whole catalogue (warm and cold), two ways:

- ``cold`` (as served; what reports use): the held-out items have no ID part, exactly as an item
  added at run time (``POST /items``, ``Recommender.add_item``) has none: the model's own
  :meth:`~hstu_blair.models.item_embedding.ItemEmbedding.drop_id_rows`, which adding items uses
  too. The number predicts what an added item gets. (An ID-only model then has zero vectors for
  them; it cannot add items at all.)
- ``cold_trained_rows`` (the protocol before): the held-out items keep their ID rows, initialised
  at random and moved by training only as negatives.

An ID-only model has never trained the held-out items' ID vectors, so it cannot rank them beyond
chance either way; a text path can.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hstu_blair.config import RunConfig
from hstu_blair.data.holdout import cold_targets, pick_cold_items, write_warm_dataset
from hstu_blair.data.manifest import write_json_atomic
from hstu_blair.evaluation.evaluate import evaluate_model, top_k_share
from hstu_blair.recipes.resolve import ensure_dataset, ensure_text, eval_options, text_store, uses_text
from hstu_blair.recipes.resolve import split as resolve_split
from hstu_blair.recipes.train import train
from hstu_blair.run.layout import cold_start_path
from hstu_blair.run.model_files import TrainedModel, load_trained


def cold_start(
    config: RunConfig, share: float = 0.1, seed: int = 0, work_dir: Path | None = None, progress: bool = False
) -> dict[str, Any]:
    """Hold out ``share`` of the items, train ``config`` on the rest, score cold targets and the warm test split.

    Args:
        config: the run config (its dataset is the full one).
        share: share of the catalogue held out.
        seed: seed of the held-out item draw.
        work_dir: where the warm dataset and the run go (default ``{out_dir}/cold-start-{name}``).
        progress: show progress bars.

    Returns:
        ``{"cold": metrics on cold targets as served, "cold_trained_rows": the same with the held-out
        items' trained ID rows, "warm_test": test metrics, "warm_top10_cold_share": the share of warm
        test users' top-10 slots the held-out items take as served (they are ``share`` of the
        catalogue and none of those users' targets: far above ``share``, new items crowd out what
        users come back for), "run_dir": ..., ...}``, also written to ``{run_dir}/cold_start.json``.
    """
    data = ensure_dataset(config)
    cold = pick_cold_items(data.num_items, share, seed)
    work_dir = Path(work_dir or Path(config.out_dir) / f"cold-start-{config.name}")
    warm = write_warm_dataset(data, cold, work_dir / f"warm-data-share{share}-seed{seed}")
    cfg = copy.deepcopy(config)
    cfg.data.path = str(warm.path)
    cfg.data.source = None
    cfg.train.negatives_pool = "seen"
    if uses_text(cfg) and not cfg.text.embeddings:
        ensure_text(config, data, progress)  # the full catalogue's store (cold items' text included)
        cfg.text.embeddings = str(text_store(config, data))
    result = train(cfg, run_dir=work_dir / "run", progress=progress)
    trained = load_trained(result.run_dir)
    targets = cold_targets(data, cold)
    options = eval_options(cfg)
    with_rows = evaluate_model(trained.model, data, targets, cfg.data.max_len, options)
    as_served(trained, cold)
    served = evaluate_model(trained.model, data, targets, cfg.data.max_len, options)
    cold_share = warm_top10_cold_share(trained, cold, cfg)
    payload = {
        "dataset": Path(config.data.path).name,
        "label": config.name,
        "share": share,
        "seed": seed,
        "cold_items": int(cold.size),
        "cold_targets": len(targets),
        "cold": served,
        "cold_trained_rows": with_rows,
        "warm_test": result.metrics,
        "warm_top10_cold_share": cold_share,
        "run_dir": str(result.run_dir),
        "model": cfg.model.name,
        "fusion": cfg.model.fusion,
    }
    write_json_atomic(cold_start_path(result.run_dir), payload)
    return json.loads(cold_start_path(result.run_dir).read_text())


def warm_top10_cold_share(served: TrainedModel, cold_items: np.ndarray, config: RunConfig) -> float:
    """Share of the warm test users' top-10 slots that ``cold_items`` take in ``served`` (a model
    :func:`as_served` already gave them no ID part; ``config`` its run's config)."""
    held_out = torch.zeros(served.data.num_items + 1, dtype=torch.bool)
    held_out[torch.as_tensor(cold_items, dtype=torch.long)] = True
    warm_test = resolve_split(config, served.data).targets("test")
    return top_k_share(
        served.model, served.data, warm_test, config.data.max_len, held_out, 10, eval_options(config)
    )


def as_served(trained: TrainedModel, cold_items: np.ndarray) -> TrainedModel:
    """``trained`` with the held-out items given no ID part (in place), as serving gives items added
    by text: their vectors are then what ``Recommender.add_item`` with the same text would give."""
    trained.model.items.drop_id_rows(torch.as_tensor(cold_items, dtype=torch.long))
    return trained
