"""The most-popular baseline, scored exactly as a model is: the same targets, the same excluded
history, the same full-catalogue ranks and metrics.

Every user gets the catalogue ordered by training interactions (most first; among equal counts the
lower item index first, the order :meth:`Recommender.popular` serves), minus the items
``options.exclude`` removes (by default the user's whole known history). A model that does not
beat this list has learned nothing a count could not give; ``train`` reports it beside the model's
metrics and warns when the model is not above it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from hstu_blair.data.dataset import SequenceData
from hstu_blair.data.splits import EvalTargets
from hstu_blair.evaluation.evaluate import EvalOptions
from hstu_blair.evaluation.metrics import metrics_from_ranks
from hstu_blair.evaluation.ranking import target_ranks
from hstu_blair.training.batching import eval_batch


def popularity_scores(item_counts: torch.Tensor | np.ndarray) -> torch.Tensor:
    """(n+1,) float64 scores ordering items by count, ties broken by the lower index.

    ``count + 0.5 * (1 - index / (n+1))``: distinct for every item (exact ranks, no optimistic
    tie-break) and in the order of a stable descending sort of the counts.

    Args:
        item_counts: (n+1,) interactions per item index (index 0 = padding, never a candidate).
    """
    counts = torch.as_tensor(np.asarray(item_counts), dtype=torch.float64)  # (n+1,)
    index = torch.arange(counts.numel(), dtype=torch.float64)  # (n+1,)
    return counts + 0.5 * (1.0 - index / counts.numel())  # (n+1,)


def evaluate_popularity(
    data: SequenceData,
    targets: EvalTargets,
    item_counts: torch.Tensor | np.ndarray,
    max_len: int,
    options: EvalOptions | None = None,
) -> dict[str, Any]:
    """Metrics of the most-popular list on ``targets`` (the keys of ``evaluate_model``'s).

    Args:
        data: the dataset the targets index.
        targets: evaluation examples (a split's ``valid`` or ``test``).
        item_counts: (n+1,) training interactions per item index (what the list is ordered by).
        max_len: history length of the model it is compared with (what ``exclude="window"`` masks).
        options: the model's evaluation options (excluded items, rank cap, MRR of a miss;
            default ``EvalOptions()``).
    """
    options = options or EvalOptions()
    scores = popularity_scores(item_counts)  # (n+1,)
    ranks = []
    bs = options.batch_size
    for b in range(math.ceil(len(targets) / bs)):
        sl = slice(b * bs, (b + 1) * bs)
        batch, target = eval_batch(data, targets.users[sl], targets.positions[sl], max_len, options.exclude)
        batch_scores = scores[None, :].expand(len(target), -1)  # (B, n+1) a view, no copy
        ranks.append(target_ranks(batch_scores, target, batch.exclude, options.max_rank).ranks)
    ranks_all = torch.cat(ranks) if ranks else torch.empty(0, dtype=torch.float64)
    metrics: dict[str, Any] = metrics_from_ranks(ranks_all.numpy(), miss_rank=options.miss_rank)
    metrics["n_users"] = int(ranks_all.numel())
    return metrics
