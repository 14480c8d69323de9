"""Sampled softmax over uniform catalogue negatives (SPEC §3).

For P training positions with L2-normalised query q, positive item vector p and negatives n_r:

    loss = mean_i  -log softmax([<q_i, p_i>, <q_i, n_i1>, ..., <q_i, n_iR>] / tau)[0]

with tau = 0.05, and every negative whose id equals the position's positive id has its scaled
logit replaced by -5e4 (negatives equal to other history items are kept, as in the reference).

Two ways to draw negatives:

- ``sampled_softmax_loss``: the reference, R negatives per position, (P, R) ids and (P, R, D)
  vectors (memory P*R*D).
- ``shared_negatives_loss``: ours, R negatives shared by every position of the batch, (R,) ids and
  (R, D) vectors, one (P, D) x (D, R) matmul.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

TEMPERATURE = 0.05
COLLISION_LOGIT = -5e4  # the reference's value for a negative equal to the positive


def _softmax_loss(pos_logits: torch.Tensor, neg_logits: torch.Tensor) -> torch.Tensor:
    """Mean over rows of -log_softmax([pos, negs])[0]; pos (P,), negs (P, R), already scaled."""
    logits = torch.cat([pos_logits[:, None], neg_logits], dim=1)  # (P, 1+R)
    return -F.log_softmax(logits, dim=1)[:, 0].mean()


def sampled_softmax_loss(
    query: torch.Tensor,
    pos_ids: torch.Tensor,
    pos_vectors: torch.Tensor,
    neg_ids: torch.Tensor,
    neg_vectors: torch.Tensor,
    temperature: float = TEMPERATURE,
) -> torch.Tensor:
    """Reference sampled softmax: R negatives per position.

    Args:
        query: (P, D) L2-normalised states of the training positions.
        pos_ids: (P,) long id each position must predict.
        pos_vectors: (P, D) L2-normalised vectors of ``pos_ids``.
        neg_ids: (P, R) long negative ids of each position.
        neg_vectors: (P, R, D) L2-normalised vectors of ``neg_ids``.
        temperature: tau.

    Returns:
        scalar mean loss over the P positions.
    """
    neg_dots = torch.bmm(neg_vectors, query[:, :, None])[:, :, 0]  # (P, R) no (P, D, R) copy
    return sampled_softmax_from_logits(query, pos_vectors, pos_ids, neg_dots, neg_ids, temperature)


def sampled_softmax_from_logits(
    query: torch.Tensor,
    pos_vectors: torch.Tensor,
    pos_ids: torch.Tensor,
    neg_dots: torch.Tensor,
    neg_ids: torch.Tensor,
    temperature: float = TEMPERATURE,
) -> torch.Tensor:
    """Sampled softmax from precomputed negative dot products ``neg_dots`` (P, R) of ids ``neg_ids``
    ((P, R), or anything broadcasting to it such as (1, R) for shared negatives).

    The common core of every sampled-softmax variant: callers compute the dots their own way
    (a per-position batched product, one shared matmul, or a per-row product without gathering a
    (P, R, D) tensor).
    """
    pos_logits = (query * pos_vectors).sum(-1) / temperature  # (P,)
    neg_logits = (neg_dots / temperature).masked_fill(neg_ids == pos_ids[:, None], COLLISION_LOGIT)  # (P, R)
    return _softmax_loss(pos_logits, neg_logits)


def shared_negatives_loss(
    query: torch.Tensor,
    pos_ids: torch.Tensor,
    pos_vectors: torch.Tensor,
    neg_ids: torch.Tensor,
    neg_vectors: torch.Tensor,
    temperature: float = TEMPERATURE,
) -> torch.Tensor:
    """Sampled softmax with R negatives shared by every position (one matmul).

    Args:
        query: (P, D) L2-normalised states of the training positions.
        pos_ids: (P,) long id each position must predict.
        pos_vectors: (P, D) L2-normalised vectors of ``pos_ids``.
        neg_ids: (R,) long negative ids shared by all positions.
        neg_vectors: (R, D) L2-normalised vectors of ``neg_ids``.
        temperature: tau.

    Returns:
        scalar mean loss over the P positions.
    """
    neg_dots = query @ neg_vectors.T  # (P, R) one matmul
    return sampled_softmax_from_logits(query, pos_vectors, pos_ids, neg_dots, neg_ids[None, :], temperature)
