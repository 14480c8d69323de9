"""Metrics by the popularity of the target item: where in the catalogue a model's hits come from.

Targets are grouped by their item's training interactions (what the most-popular list counts), in
fixed log-spaced bins, so two runs on the same split get the same groups and can be compared
group by group: text is expected to help most on the rarely seen items (the tail) and least on
the head, where the ID embeddings have plenty of data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from hstu_blair.evaluation.metrics import metrics_from_ranks

POPULARITY_EDGES: tuple[int, ...] = (1, 5, 20, 100, 500)
"""Lower bounds of the bins after the first: 0, 1-4, 5-19, 20-99, 100-499, 500+ interactions."""

__all__ = ["POPULARITY_EDGES", "bin_labels", "metrics_by_target_popularity"]


def bin_labels(edges: Sequence[int] = POPULARITY_EDGES) -> list[str]:
    """``["0", "1-4", ...]``: one label per bin of :func:`metrics_by_target_popularity`."""
    bounds = [0, *edges]
    labels = [f"{lo}-{hi - 1}" if hi - 1 > lo else f"{lo}" for lo, hi in zip(bounds, bounds[1:])]
    return [*labels, f"{bounds[-1]}+"]


def metrics_by_target_popularity(
    ranks: np.ndarray | torch.Tensor,
    target_items: np.ndarray,
    item_counts: np.ndarray | torch.Tensor,
    edges: Sequence[int] = POPULARITY_EDGES,
    miss_rank: float | None = None,
) -> list[dict[str, Any]]:
    """One row per popularity bin: ``bin``, ``n_targets``, ``share`` and the bin's metrics.

    Every target falls in exactly one bin (the shares add up to 1); a bin without targets keeps
    its row, with ``n_targets`` 0 and no metrics.

    Args:
        ranks: (E,) 1-based rank of each target (``inf`` = miss), as ``rank_targets`` returns.
        target_items: (E,) the target item of each rank.
        item_counts: (n+1,) training interactions per item index.
        edges: increasing positive lower bounds of the bins after the first (which holds 0).
        miss_rank: as in :func:`metrics_from_ranks`.

    Raises:
        ValueError: ``edges`` not increasing positive integers, or ``ranks`` and ``target_items``
            of different lengths.
    """
    if not edges or any(int(e) != e or e < 1 for e in edges) or list(edges) != sorted(set(edges)):
        raise ValueError(f"edges must be increasing positive integers, got {list(edges)}")
    r = ranks.detach().cpu().numpy() if isinstance(ranks, torch.Tensor) else np.asarray(ranks)  # (E,)
    items = np.asarray(target_items, dtype=np.int64)  # (E,)
    if r.shape != items.shape:
        raise ValueError(f"ranks {r.shape} and target_items {items.shape} must have the same shape")
    counts = np.asarray(item_counts, dtype=np.int64)[items]  # (E,) the targets' popularity
    bins = np.searchsorted(np.asarray(edges), counts, side="right")  # (E,) 0 .. len(edges)
    rows = []
    for b, label in enumerate(bin_labels(edges)):
        mask = bins == b
        n = int(mask.sum())
        row: dict[str, Any] = {"bin": label, "n_targets": n, "share": n / max(len(r), 1)}
        if n:
            row.update(metrics_from_ranks(r[mask], miss_rank=miss_rank))
        rows.append(row)
    return rows
