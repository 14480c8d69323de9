"""HR@k, NDCG@k and MRR as pure functions of the 1-based rank of each user's single target item.

A rank is the target's position in the user's ranked list of candidates (1 = first). A miss, i.e. a
target that is not ranked at all (excluded by history masking, or beyond a ranking cut-off), has
rank ``inf``. With one relevant item per user the ideal DCG is 1, so for each user

    hr@k   = 1 if rank <= k else 0
    ndcg@k = 1 / log2(rank + 1) if rank <= k else 0
    mrr    = 1 / rank

and a reported value is the mean over users (a micro-average). By default a miss contributes 0 to
every metric. The reference code (SPEC §5, §7.1 item 8) instead caps every rank at 2501, so a miss
adds 1/2501 to MRR; ``miss_rank=2501`` reproduces that.

Evaluation can stream batches without keeping scores: :func:`metric_sums` per batch,
:func:`add_sums` to combine them (or all-reduce the values), :func:`means_from_sums` at the end.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

DEFAULT_HR_KS: tuple[int, ...] = (1, 5, 10, 50, 200)
DEFAULT_NDCG_KS: tuple[int, ...] = (10, 50, 200)
DEFAULT_KS: dict[str, tuple[int, ...]] = {"hr": DEFAULT_HR_KS, "ndcg": DEFAULT_NDCG_KS}
"""Cut-offs reported by default: HR@{1,5,10,50,200}, NDCG@{10,50,200}, plus MRR."""

REFERENCE_MISS_RANK = 2501
"""The reference's rank for a target outside its filtered top 2,500 (``MAX_K + 1``)."""

N_USERS = "n_users"
N_MISSES = "n_misses"


def metric_names(hr_ks: Sequence[int] = DEFAULT_HR_KS, ndcg_ks: Sequence[int] = DEFAULT_NDCG_KS) -> list[str]:
    """The metric keys in report order: ``hr@k`` for each k, then ``ndcg@k``, then ``mrr``."""
    return [f"hr@{k}" for k in hr_ks] + [f"ndcg@{k}" for k in ndcg_ks] + ["mrr"]


def _as_rank_array(ranks: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(ranks, torch.Tensor):
        ranks = ranks.detach().to("cpu", torch.float64).numpy()
    r = np.asarray(ranks, dtype=np.float64)
    if r.ndim != 1:
        raise ValueError(f"ranks must be a 1-D array (one rank per user), got shape {r.shape}")
    if np.isnan(r).any():
        raise ValueError(f"ranks contain {int(np.isnan(r).sum())} NaN values; use inf for a miss")
    if (r < 1).any():
        raise ValueError(f"ranks are 1-based, got minimum {r.min()}")
    finite = r[np.isfinite(r)]
    if (finite != np.floor(finite)).any():
        raise ValueError("finite ranks must be whole numbers")
    return r


def _check_ks(hr_ks: Sequence[int], ndcg_ks: Sequence[int], miss_rank: float | None) -> None:
    for k in (*hr_ks, *ndcg_ks):
        if int(k) != k or k < 1:
            raise ValueError(f"cut-offs must be positive integers, got {k!r}")
        if miss_rank is not None and k >= miss_rank:
            raise ValueError(
                f"cut-off {k} >= miss_rank {miss_rank}: a capped miss would count as a hit at @{k}"
            )
    if miss_rank is not None and not miss_rank >= 1:
        raise ValueError(f"miss_rank must be >= 1, got {miss_rank}")


def per_user_metrics(
    ranks: np.ndarray | torch.Tensor,
    hr_ks: Sequence[int] = DEFAULT_HR_KS,
    ndcg_ks: Sequence[int] = DEFAULT_NDCG_KS,
    miss_rank: float | None = None,
) -> dict[str, np.ndarray]:
    """Every metric for every user (the input of paired significance tests).

    Args:
        ranks: (U,) 1-based target ranks; ``inf`` marks a miss.
        hr_ks: cut-offs for ``hr@k``.
        ndcg_ks: cut-offs for ``ndcg@k``.
        miss_rank: None (default): a miss scores 0 everywhere. A number such as 2501 (reference mode):
            every rank above it is lowered to it, so a miss adds ``1/miss_rank`` to MRR; every cut-off
            must then be below ``miss_rank`` so that HR/NDCG are unaffected.

    Returns:
        ``{key: (U,) float64 array}`` with the keys of :func:`metric_names`.

    Raises:
        ValueError: ranks are not 1-D, contain NaN, values below 1 or fractions; a bad cut-off.
    """
    _check_ks(hr_ks, ndcg_ks, miss_rank)
    return _per_user(_as_rank_array(ranks), hr_ks, ndcg_ks, miss_rank)


def _per_user(
    r: np.ndarray, hr_ks: Sequence[int], ndcg_ks: Sequence[int], miss_rank: float | None
) -> dict[str, np.ndarray]:
    if miss_rank is not None:
        r = np.minimum(r, float(miss_rank))  # (U,)
    out: dict[str, np.ndarray] = {}
    for k in hr_ks:
        out[f"hr@{k}"] = (r <= k).astype(np.float64)
    gain = 1.0 / np.log2(r + 1.0)  # (U,) 0 for a miss at inf
    for k in ndcg_ks:
        out[f"ndcg@{k}"] = np.where(r <= k, gain, 0.0)
    out["mrr"] = 1.0 / r
    return out


def metric_sums(
    ranks: np.ndarray | torch.Tensor,
    hr_ks: Sequence[int] = DEFAULT_HR_KS,
    ndcg_ks: Sequence[int] = DEFAULT_NDCG_KS,
    miss_rank: float | None = None,
) -> dict[str, float]:
    """Per-metric sums over one batch of users, plus the counts ``n_users`` and ``n_misses``.

    A miss is a rank of ``inf``, or with ``miss_rank`` set any rank >= ``miss_rank``. An empty batch
    gives zeros. Arguments as in :func:`per_user_metrics`.
    """
    _check_ks(hr_ks, ndcg_ks, miss_rank)
    r = _as_rank_array(ranks)  # (U,)
    per_user = _per_user(r, hr_ks, ndcg_ks, miss_rank)
    limit = np.inf if miss_rank is None else float(miss_rank)
    sums = {key: float(values.sum()) for key, values in per_user.items()}
    sums[N_USERS] = float(r.size)
    sums[N_MISSES] = float((r >= limit).sum())
    return sums


def add_sums(total: dict[str, float], batch: dict[str, float]) -> dict[str, float]:
    """Key-wise sum of two :func:`metric_sums` results (a new dict; an empty ``total`` is allowed).

    Raises:
        ValueError: the two dicts hold different keys (different cut-offs).
    """
    if not total:
        return dict(batch)
    if total.keys() != batch.keys():
        raise ValueError(f"cannot add metric sums with keys {sorted(batch)} to {sorted(total)}")
    return {key: total[key] + batch[key] for key in total}


def means_from_sums(sums: dict[str, float]) -> dict[str, float]:
    """Divide each metric sum by ``n_users``; the counts are left out of the result.

    Raises:
        ValueError: ``n_users`` is missing or zero.
    """
    n = sums.get(N_USERS, 0.0)
    if n <= 0:
        raise ValueError("no users were evaluated (n_users is 0)")
    return {key: value / n for key, value in sums.items() if key not in (N_USERS, N_MISSES)}


def metrics_from_ranks(
    ranks: np.ndarray | torch.Tensor,
    hr_ks: Sequence[int] = DEFAULT_HR_KS,
    ndcg_ks: Sequence[int] = DEFAULT_NDCG_KS,
    miss_rank: float | None = None,
) -> dict[str, float]:
    """Mean of every metric over users.

    Args:
        ranks: (U,) 1-based target ranks; ``inf`` marks a miss.
        hr_ks: cut-offs for ``hr@k``.
        ndcg_ks: cut-offs for ``ndcg@k``.
        miss_rank: see :func:`per_user_metrics` (2501 reproduces the reference).

    Returns:
        ``{"hr@1": ..., "ndcg@10": ..., "mrr": ...}`` in the order of :func:`metric_names`.

    Raises:
        ValueError: ``ranks`` is empty, or as in :func:`per_user_metrics`.
    """
    return means_from_sums(metric_sums(ranks, hr_ks, ndcg_ks, miss_rank))
