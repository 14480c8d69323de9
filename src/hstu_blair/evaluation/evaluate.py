"""Full-ranking evaluation of a model on an evaluation split (every item in the catalogue is a candidate)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import torch
from tqdm.auto import tqdm

from hstu_blair.config import RunConfig
from hstu_blair.data.dataset import SequenceData
from hstu_blair.data.splits import EvalTargets
from hstu_blair.errors import ConfigError
from hstu_blair.evaluation.metrics import REFERENCE_MISS_RANK, metrics_from_ranks
from hstu_blair.evaluation.ranking import target_ranks
from hstu_blair.models.sequential import SequentialModel
from hstu_blair.training.batching import eval_batch
from hstu_blair.training.distributed import DistInfo, gather_concat

REFERENCE_MAX_RANK = 2500


@torch.inference_mode()
def rank_targets(
    model: SequentialModel,
    data: SequenceData,
    targets: EvalTargets,
    max_len: int,
    batch_size: int = 512,
    mask_history: bool = True,
    max_rank: int | None = None,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> tuple[torch.Tensor, dict[str, int]]:
    """1-based rank of every target among all items (``inf`` = miss), plus counts of special cases.

    The query is the model's state after the (at most ``max_len``) history items; scores are dot
    products with every L2-normalised item vector. With ``mask_history`` the truncated history is
    excluded from the ranking as in the reference, so a repeated target counts as a miss.
    """
    was_training = model.training
    model.eval()
    items = model.item_vectors().to(device)  # (n+1, D), computed once for the whole split
    ranks, counts = [], {"target_in_history": 0, "beyond_max_rank": 0, "tied": 0}
    n_batches = math.ceil(len(targets) / batch_size)
    for b in tqdm(range(n_batches), desc="evaluate", unit="batch", disable=not progress, leave=False):
        sl = slice(b * batch_size, (b + 1) * batch_size)
        batch = eval_batch(data, targets.users[sl], targets.positions[sl], max_len).to(device)
        query = model.encode(batch.ids, batch.timestamps, batch.lengths)  # (B, D)
        scores = query.float() @ items.float().T  # (B, n+1)
        result = target_ranks(scores, batch.targets, batch.ids if mask_history else None, max_rank)
        ranks.append(result.ranks.cpu())
        counts["target_in_history"] += result.n_target_excluded
        counts["beyond_max_rank"] += result.n_beyond_max_rank
        counts["tied"] += result.n_tied
    model.train(was_training)
    return (torch.cat(ranks) if ranks else torch.empty(0, dtype=torch.float64)), counts


def evaluate(
    model: SequentialModel,
    data: SequenceData,
    targets: EvalTargets,
    config: RunConfig,
    device: torch.device | str = "cpu",
    dist_info: DistInfo | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Metrics (HR@k, NDCG@k, MRR, averaged over users) of ``model`` on ``targets``.

    Under ``torchrun`` each rank scores its share of users and the ranks are gathered.
    ``eval.reference_ranks`` reproduces the reference (ranks capped at 2,500, misses counted as
    rank 2,501 in MRR).
    """
    dist_info = dist_info or DistInfo()
    share = slice(dist_info.rank, None, dist_info.world_size)
    mine = EvalTargets(targets.users[share], targets.positions[share])
    ec = config.eval
    ranks, counts = rank_targets(
        model,
        data,
        mine,
        config.data.max_len,
        ec.batch_size,
        ec.mask_history,
        REFERENCE_MAX_RANK if ec.reference_ranks else None,
        device,
        progress,
    )
    ranks = gather_concat(ranks, dist_info)
    metrics: dict[str, Any] = metrics_from_ranks(
        ranks.numpy(), miss_rank=REFERENCE_MISS_RANK if ec.reference_ranks else None
    )
    metrics["n_users"] = int(ranks.numel())
    if not dist_info.enabled:
        metrics.update({f"n_{k}": v for k, v in counts.items()})
    return metrics


def evaluate_run(
    run_dir: str | Path,
    split: Literal["valid", "test"] = "test",
    checkpoint: Literal["best", "last"] = "best",
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Re-evaluate a saved run on ``split`` (``eval.*`` settings may be overridden as ``eval.key=value``)."""
    from hstu_blair.config import parse_override
    from hstu_blair.training.run_dir import load_run

    run = load_run(run_dir, checkpoint)
    for text in overrides or []:
        keys, value = parse_override(text)
        if len(keys) != 2 or keys[0] != "eval" or not hasattr(run.config.eval, keys[1]):
            raise ConfigError(f"override {text!r}: only eval.* keys can be changed when re-evaluating")
        setattr(run.config.eval, keys[1], value)
    targets = run.data.split(run.config.data.protocol).targets(split)
    return evaluate(run.model, run.data, targets, run.config)
