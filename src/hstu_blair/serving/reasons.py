"""Reasons: which history items made a recommendation, by leave-one-out rescoring.

For each of the last ``last`` distinct items ``h`` of the history the model reads (most recent
first), the history is encoded again without ``h`` (every occurrence; older items may slide into
the window); the weight of ``h`` for a recommended item ``r`` is

    weight(h, r) = score(r | history) - score(r | history without h)

with scores the cosines that rank items. Each recommendation names its ``top`` items of positive
weight, best first. All variants of all queries of a batch go through one model call.

A history whose encoded window holds a single distinct item leaves nothing when it is removed: the
score without it is taken as 0 (no evidence for any item), and that item is named as the reason of
every recommendation whatever the sign of its weight (it is the only thing the model read).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from hstu_blair.serving.catalogue import Catalogue
from hstu_blair.serving.queries import PreparedQuery, Reason, Recommendation, Recommendations
from hstu_blair.serving.scorer import Scorer

__all__ = ["LAST", "TOP", "Reason", "add_reasons", "candidates"]

LAST = 5
"""Distinct history items tried (the most recent ones)."""
TOP = 3
"""Reasons named per recommended item."""


def candidates(ids: np.ndarray, max_len: int, last: int = LAST) -> list[int]:
    """The last ``last`` distinct item indices of the part of a history the model reads (its last
    ``max_len`` items), most recent first."""
    out: list[int] = []
    for idx in ids[-max_len:][::-1].tolist():
        if idx not in out:
            out.append(int(idx))
            if len(out) == last:
                break
    return out


def without(query: PreparedQuery, item: int) -> PreparedQuery | None:
    """``query`` with every occurrence of ``item`` removed (None: nothing left)."""
    keep = query.ids != item  # (L,)
    if not keep.any():
        return None
    return PreparedQuery(query.ids[keep], query.times[keep], query.query_time, False, 1)


def _variants(
    prepared: Sequence[PreparedQuery], max_len: int, last: int
) -> tuple[list[PreparedQuery], list[list[tuple[int, int | None]]]]:
    """The leave-one-out queries of all ``prepared``, and per query its (candidate, row of the
    variant among them, or None when nothing is left) pairs."""
    variants: list[PreparedQuery] = []
    plans: list[list[tuple[int, int | None]]] = []
    for query in prepared:
        plan: list[tuple[int, int | None]] = []
        for item in candidates(query.ids, max_len, last):
            variant = without(query, item)
            if variant is None:
                plan.append((item, None))
            else:
                plan.append((item, len(variants)))
                variants.append(variant)
        plans.append(plan)
    return variants, plans


def _explain_one(
    full: torch.Tensor,
    rows: torch.Tensor,
    plan: list[tuple[int, int | None]],
    items: torch.Tensor,
    catalogue: Catalogue,
    top: int,
) -> list[tuple[Reason, ...]]:
    """Reasons of the recommended items of one query.

    Args:
        full: (D,) the query vector of the whole history.
        rows: (V, D) the query vectors of all variants of the batch.
        plan: (candidate, variant row or None) pairs of this query.
        items: (k, D) the recommended items' vectors.
    """
    if not plan:
        return [() for _ in range(items.shape[0])]
    full_scores = items @ full  # (k,)
    without_scores = torch.stack(
        [items @ rows[row] if row is not None else torch.zeros_like(full_scores) for _, row in plan]
    )  # (m, k)
    weights = (full_scores.unsqueeze(0) - without_scores).cpu().numpy()  # (m, k)
    sole = len(plan) == 1 and plan[0][1] is None  # a single distinct item: always named
    out = []
    for j in range(items.shape[0]):
        order = np.argsort(-weights[:, j], kind="stable")
        chosen = [m for m in order[:top] if sole or weights[m, j] > 0]
        out.append(tuple(_reason(catalogue, plan[m][0], float(weights[m, j])) for m in chosen))
    return out


def _reason(catalogue: Catalogue, idx: int, weight: float) -> Reason:
    return Reason(catalogue.item_ids[idx], catalogue.titles[idx], weight)


def add_reasons(
    scorer: Scorer,
    catalogue: Catalogue,
    prepared: Sequence[PreparedQuery],
    results: Sequence[Recommendations],
    last: int = LAST,
    top: int = TOP,
) -> list[Recommendations]:
    """``results`` (one per query of ``prepared``) with each recommendation's reasons filled in.

    One model call encodes every query and every leave-one-out variant of the batch.

    Args:
        scorer: the scorer that answered the queries.
        catalogue: the catalogue the results name.
        prepared: the queries, as answered.
        results: their recommendations.
        last: distinct history items tried per query (the most recent ones).
        top: reasons named per recommended item.

    Returns:
        New :class:`Recommendations`, the same items and scores, with ``reasons`` set.
    """
    if not prepared:
        return []
    variants, plans = _variants(prepared, scorer.max_len, last)
    vectors = scorer.query_vectors([*prepared, *variants])  # (B + V, D)
    full, rows = vectors[: len(prepared)], vectors[len(prepared) :]
    explained = []
    for b, (result, plan) in enumerate(zip(results, plans)):
        indices = [catalogue.index_of(r.item_id) or 0 for r in result]
        items = scorer.item_vectors(indices).to(full.dtype)  # (k, D)
        reasons = _explain_one(full[b], rows, plan, items, catalogue, top)
        recs = [Recommendation(r.item_id, r.score, r.title, why) for r, why in zip(result, reasons)]
        explained.append(Recommendations(recs, result.skipped))
    return explained
