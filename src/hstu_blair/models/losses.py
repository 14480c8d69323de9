"""Sampled softmax over uniform catalogue negatives (SPEC §3).

For P training positions with L2-normalised query q, positive item vector p and negatives n_r:

    loss = mean_i  -log softmax([<q_i, p_i>, <q_i, n_i1>, ..., <q_i, n_iR>] / tau)[0]

with tau = 0.05, and every negative whose id equals the position's positive id has its scaled
logit replaced by -5e4 (negatives equal to other history items are kept, as in the reference).

Three ways to lay out negatives (``training.negatives``):

- ``sampled_softmax_loss``: the reference, R negatives per position, (P, R) ids and (P, R, D)
  vectors (memory P*R*D).
- ``row_sampled_softmax_loss`` (the default): R negatives per user row shared by its positions,
  logits from :func:`row_logits` (one batched product, no (P, R, D) gather), on the padded
  (B, T) layout.
- ``shared_negatives_loss``: R negatives shared by every position of the batch, (R,) ids and
  (R, D) vectors, one (P, D) x (D, R) matmul.

The first and the last end in :func:`sampled_softmax_from_logits`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

TEMPERATURE = 0.05
COLLISION_LOGIT = -5e4  # the reference's value for a negative equal to the positive


class _RowLogits(torch.autograd.Function):
    """``states @ negatives^T`` per row, with a backward whose batched products read contiguous
    operands (autograd's own backward of ``bmm(states, negatives.transpose(1, 2))`` multiplies a
    transposed (B, D, R) view, several times slower on CPU, and hands a strided gradient to the
    negatives' gather, which copies it)."""

    @staticmethod
    def forward(ctx, states: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(states, negatives)
        return torch.bmm(states, negatives.transpose(1, 2))  # (B, T, R)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:  # type: ignore[override]
        states, negatives = ctx.saved_tensors
        grad = grad.contiguous()  # (B, T, R); bf16 when the forward ran under autocast
        grad_states = grad_negatives = None
        if ctx.needs_input_grad[0]:
            grad_states = torch.bmm(grad, negatives.to(grad.dtype)).to(states.dtype)  # (B, T, D)
        if ctx.needs_input_grad[1]:
            grad_negatives = torch.bmm(grad.transpose(1, 2), states.to(grad.dtype))  # (B, R, D)
            grad_negatives = grad_negatives.to(negatives.dtype)
        return grad_states, grad_negatives


def row_logits(states: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """Dot products of every position of a row with that row's negatives.

    Args:
        states: (B, T, D) positions' query vectors.
        negatives: (B, R, D) each row's negative item vectors.

    Returns:
        (B, T, R) ``states[b, t] . negatives[b, r]``.
    """
    return _RowLogits.apply(states, negatives)


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


def full_softmax_loss(
    query: torch.Tensor,
    pos_ids: torch.Tensor,
    item_ids: torch.Tensor,
    item_vectors: torch.Tensor,
    temperature: float = TEMPERATURE,
) -> torch.Tensor:
    """Cross-entropy of each position's target over a whole set of distinct items (a full softmax
    over the catalogue, or over a pool): one (P, D) x (D, R) product and one fused cross-entropy,
    with the target's own column as the positive (nothing to mask).

    Args:
        query: (P, D) states of the training positions (L2-normalised with cosine similarity).
        pos_ids: (P,) long id each position must predict; each must be one of ``item_ids``.
        item_ids: (R,) long distinct item ids (``1..n`` in order for the whole catalogue).
        item_vectors: (R, D) their vectors, as scored.
        temperature: tau.

    Returns:
        scalar mean loss over the P positions.

    Raises:
        ValueError: a target is not among ``item_ids``.
    """
    R = item_ids.numel()
    if torch.equal(item_ids, torch.arange(1, R + 1, device=item_ids.device)):  # 1..n: column = id - 1
        columns = pos_ids - 1
    else:
        lookup = torch.full((int(item_ids.max()) + 1,), -1, dtype=torch.long, device=item_ids.device)
        lookup[item_ids] = torch.arange(R, device=item_ids.device)
        columns = lookup[pos_ids.clamp(max=lookup.numel() - 1)]
        columns = torch.where(pos_ids < lookup.numel(), columns, -1)
        if bool((columns < 0).any()):
            missing = pos_ids[columns < 0].unique()[:5].tolist()
            raise ValueError(
                f"training targets {missing} are not among the softmax's items (the negatives pool)"
            )
    logits = (query / temperature) @ item_vectors.T  # (P, R)
    return F.cross_entropy(logits, columns)


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


def row_sampled_softmax_loss(
    states: torch.Tensor,
    valid: torch.Tensor,
    targets: torch.Tensor,
    pos_vectors: torch.Tensor,
    neg_ids: torch.Tensor,
    neg_vectors: torch.Tensor,
    temperature: float = TEMPERATURE,
) -> torch.Tensor:
    """Sampled softmax with R negatives per user row, shared by the row's positions.

    Computed on the padded (B, T) layout and averaged over the real positions: no (P, R) gather of
    logits and no scatter back in the backward pass. The query is divided by the temperature before
    the products (the same logits up to float rounding, one (B, T, D) scaling instead of a (B, T, R) one).

    Args:
        states: (B, T, D) L2-normalised states.
        valid: (B, T) bool, real positions.
        targets: (B, T) long id each position must predict (anything at padded positions).
        pos_vectors: (B, T, D) L2-normalised vectors of ``targets``.
        neg_ids: (B, R) long negative ids of each row.
        neg_vectors: (B, R, D) L2-normalised vectors of ``neg_ids``.
        temperature: tau.

    Returns:
        scalar mean loss over the real positions.
    """
    q = states * (1.0 / temperature)  # (B, T, D)
    pos = (q * pos_vectors).sum(-1)  # (B, T)
    neg = row_logits(q, neg_vectors)  # (B, T, R)
    neg = neg.masked_fill(neg_ids[:, None, :] == targets[:, :, None], COLLISION_LOGIT)  # (B, T, R)
    per_position = torch.logsumexp(torch.cat([pos[..., None], neg], dim=-1), dim=-1) - pos  # (B, T)
    weights = valid.to(per_position.dtype)  # (B, T)
    return (per_position * weights).sum() / weights.sum()


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
