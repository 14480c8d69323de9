"""Full-ranking evaluation of a model on evaluation targets (every catalogue item is a candidate)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from hstu_blair.data.dataset import SequenceData
from hstu_blair.data.splits import EvalTargets
from hstu_blair.evaluation.metrics import REFERENCE_MISS_RANK, metrics_from_ranks
from hstu_blair.evaluation.ranking import target_ranks, topk_items
from hstu_blair.models.sequential import SequentialModel
from hstu_blair.training.batching import Exclude, eval_batch
from hstu_blair.training.distributed import DistInfo, gather_concat

REFERENCE_MAX_RANK = 2500
"""The reference keeps the top 2,500 items (SPEC §5); a target below is a miss."""

__all__ = [
    "REFERENCE_MAX_RANK",
    "REFERENCE_MISS_RANK",
    "EvalOptions",
    "evaluate_model",
    "rank_targets",
    "top_k_share",
]


@dataclass(frozen=True)
class EvalOptions:
    """How targets are ranked.

    Attributes:
        batch_size: users per forward pass.
        exclude: items never ranked for a user: ``history`` = the whole known history (what
            the serving API never recommends; the default), ``window`` = only the (truncated)
            history the model reads (the reference's rule), ``none`` = nothing. A target the
            user had before is then a miss (counted in ``n_target_in_history``).
        max_rank: ranks above it are misses (the reference: 2,500), None = exact ranks.
        miss_rank: rank a miss counts as in MRR (the reference: 2,501), None = a miss counts 0.
    """

    batch_size: int = 512
    exclude: Exclude = "history"
    max_rank: int | None = None
    miss_rank: float | None = None


def _check_item_mask(mask: torch.Tensor, data: SequenceData, name: str) -> None:
    """Raise ``ValueError`` unless ``mask`` is a bool tensor with one entry per item index (n+1,)."""
    if mask.dtype != torch.bool or tuple(mask.shape) != (data.num_items + 1,):
        raise ValueError(
            f"{name} must be a bool mask of shape ({data.num_items + 1},), got {mask.dtype} {tuple(mask.shape)}"
        )


def _scored_batches(
    model: SequentialModel,
    data: SequenceData,
    targets: EvalTargets,
    max_len: int,
    options: EvalOptions,
    device: torch.device | str,
    progress: bool,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    """``(scores (B, n+1), target (B,), exclude (B, W) or None)`` per batch of ``targets``: dot products of
    each query with every L2-normalised item vector, computed once for the whole split. The caller
    runs under ``torch.inference_mode`` with the model in eval mode."""
    table = model.item_table().to(device)  # (n+1, D) raw: the encoder's inputs
    items = model.item_vectors(table=table)  # (n+1, D) normalised: the candidates
    bs = options.batch_size
    for b in tqdm(
        range(math.ceil(len(targets) / bs)), desc="evaluate", unit="batch", disable=not progress, leave=False
    ):
        sl = slice(b * bs, (b + 1) * bs)
        batch, target = eval_batch(data, targets.users[sl], targets.positions[sl], max_len, options.exclude)
        batch = batch.to(device)
        query = model.query_vectors(batch.ids, batch.timestamps, batch.lengths, table)  # (B, D)
        yield query.float() @ items.float().T, target.to(device), batch.exclude


@torch.inference_mode()
def rank_targets(
    model: SequentialModel,
    data: SequenceData,
    targets: EvalTargets,
    max_len: int,
    options: EvalOptions = EvalOptions(),
    device: torch.device | str = "cpu",
    progress: bool = False,
    candidates: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, int]]:
    """1-based rank of every target among all items (``inf`` = miss), plus counts of special cases.

    The query is the model's state after the (at most ``max_len``) history items; scores are dot
    products with every L2-normalised item vector. The item vectors (the inputs' raw table and the
    normalised candidates) are computed once for the whole split. ``candidates``, an (n+1,) bool
    mask, ranks among those items only (the others never outrank a target).

    Raises:
        ValueError: ``candidates`` is not a bool mask with one entry per item index.
    """
    if candidates is not None:
        _check_item_mask(candidates, data, "candidates")
    was_training = model.training
    model.eval()
    outside = None if candidates is None else ~candidates.to(device)
    ranks, counts = [], {"target_in_history": 0, "beyond_max_rank": 0, "tied": 0}
    for scores, target, exclude in _scored_batches(model, data, targets, max_len, options, device, progress):
        if outside is not None:
            scores[:, outside] = float("-inf")
        result = target_ranks(scores, target, exclude, options.max_rank)
        ranks.append(result.ranks.cpu())
        counts["target_in_history"] += result.n_target_excluded
        counts["beyond_max_rank"] += result.n_beyond_max_rank
        counts["tied"] += result.n_tied
    model.train(was_training)
    return (torch.cat(ranks) if ranks else torch.empty(0, dtype=torch.float64)), counts


@torch.inference_mode()
def top_k_share(
    model: SequentialModel,
    data: SequenceData,
    targets: EvalTargets,
    max_len: int,
    items: torch.Tensor,
    k: int = 10,
    options: EvalOptions = EvalOptions(),
    device: torch.device | str = "cpu",
) -> float:
    """Share of the top-``k`` slots of ``targets``' users (their history excluded, as ranked for the
    metrics) that go to ``items``, e.g. how much of warm users' lists items added by text take.
    A user with fewer than ``k`` candidates left has only that many slots (no filler counted).

    Args:
        items: (n+1,) bool mask over item indices (index 0, the padding, is never ranked).
        k: list length.

    Raises:
        ValueError: ``items`` does not have one entry per item index.
    """
    _check_item_mask(items, data, "items")
    was_training = model.training
    model.eval()
    mask = items.to(device)
    taken, slots = 0, 0
    for scores, _, exclude in _scored_batches(model, data, targets, max_len, options, device, False):
        values, top = topk_items(scores, k, exclude, inplace=True)  # (B, k)
        filled = values > float("-inf")  # trailing filler slots (index 0) when candidates run out
        taken += int((mask[top] & filled).sum())
        slots += int(filled.sum())
    model.train(was_training)
    return taken / slots if slots else 0.0


def evaluate_model(
    model: SequentialModel,
    data: SequenceData,
    targets: EvalTargets,
    max_len: int,
    options: EvalOptions = EvalOptions(),
    device: torch.device | str = "cpu",
    dist_info: DistInfo | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Metrics (HR@k, NDCG@k, MRR, averaged over targets) of ``model`` on ``targets``.

    Under ``torchrun`` each rank scores its share of users and the ranks are gathered.
    """
    dist_info = dist_info or DistInfo()
    share = slice(dist_info.rank, None, dist_info.world_size)
    mine = EvalTargets(targets.users[share], targets.positions[share])
    ranks, counts = rank_targets(model, data, mine, max_len, options, device, progress)
    ranks = gather_concat(ranks, dist_info)
    metrics: dict[str, Any] = metrics_from_ranks(ranks.numpy(), miss_rank=options.miss_rank)
    metrics["n_users"] = int(ranks.numel())
    if not dist_info.enabled:
        metrics.update({f"n_{k}": v for k, v in counts.items()})
    return metrics
