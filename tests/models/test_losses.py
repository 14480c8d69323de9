"""Sampled softmax losses against an explicit softmax; shared vs per-position negatives; masking."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hstu_blair.models.losses import full_softmax_loss, sampled_softmax_loss, shared_negatives_loss

P, R, D, TAU = 4, 6, 5, 0.05


def unit(*shape: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=gen), dim=-1)


def explicit_loss(query, pos_ids, pos_vectors, neg_ids, neg_vectors) -> float:
    """-log(exp(s_pos) / (exp(s_pos) + sum_r exp(s_r))), collisions dropped, averaged by hand."""
    total = 0.0
    for i in range(query.shape[0]):
        pos = float(query[i] @ pos_vectors[i]) / TAU
        terms = [math.exp(pos)]
        for r in range(neg_ids.shape[1]):
            if int(neg_ids[i, r]) != int(pos_ids[i]):
                terms.append(math.exp(float(query[i] @ neg_vectors[i, r]) / TAU))
        total += -math.log(terms[0] / sum(terms))
    return total / query.shape[0]


def test_per_position_loss_matches_explicit_softmax():
    query, pos_vectors = unit(P, D, seed=0), unit(P, D, seed=1)
    pos_ids = torch.tensor([1, 2, 3, 4])
    neg_ids = torch.tensor([[5, 6, 7, 8, 9, 10]] * P) + torch.arange(P)[:, None]  # (P, R) no collision
    neg_vectors = unit(P, R, D, seed=2)
    got = sampled_softmax_loss(query, pos_ids, pos_vectors, neg_ids, neg_vectors, TAU)
    assert got.item() == pytest.approx(
        explicit_loss(query, pos_ids, pos_vectors, neg_ids, neg_vectors), rel=1e-5
    )


def test_shared_equals_per_position_when_negatives_are_the_same():
    query, pos_vectors = unit(P, D, seed=3), unit(P, D, seed=4)
    pos_ids = torch.tensor([1, 7, 3, 9])
    neg_ids = torch.tensor([7, 2, 3, 11, 12, 7])  # collides with positions 1 and 2
    neg_vectors = unit(R, D, seed=5)
    shared = shared_negatives_loss(query, pos_ids, pos_vectors, neg_ids, neg_vectors, TAU)
    per_position = sampled_softmax_loss(
        query, pos_ids, pos_vectors, neg_ids.expand(P, R), neg_vectors.expand(P, R, D), TAU
    )
    torch.testing.assert_close(shared, per_position)
    want = explicit_loss(query, pos_ids, pos_vectors, neg_ids.expand(P, R), neg_vectors.expand(P, R, D))
    assert shared.item() == pytest.approx(want, rel=1e-5)


def test_collisions_are_masked_as_if_absent():
    pos_vectors = unit(1, D, seed=7)
    query = pos_vectors.clone()  # a well-trained position: the positive dominates its softmax
    pos_ids = torch.tensor([3])
    neg_vectors = unit(R, D, seed=8)
    neg_vectors[2] = pos_vectors[0]  # a negative equal to the positive, with its vector
    neg_ids = torch.tensor([5, 6, 3, 8, 9, 10])
    masked = shared_negatives_loss(query, pos_ids, pos_vectors, neg_ids, neg_vectors, TAU)
    keep = torch.tensor([0, 1, 3, 4, 5])
    without = shared_negatives_loss(query, pos_ids, pos_vectors, neg_ids[keep], neg_vectors[keep], TAU)
    torch.testing.assert_close(masked, without)
    unmasked = shared_negatives_loss(
        query, pos_ids, pos_vectors, torch.tensor([5, 6, 99, 8, 9, 10]), neg_vectors
    )
    # not masking would count the positive against itself: about log(2) more
    assert unmasked.item() == pytest.approx(masked.item() + math.log(2), abs=0.05)


def test_gradients_reach_query_and_both_item_sides():
    query = unit(P, D, seed=9).requires_grad_()
    pos_vectors = unit(P, D, seed=10).requires_grad_()
    neg_vectors = unit(R, D, seed=11).requires_grad_()
    loss = shared_negatives_loss(
        query, torch.arange(1, P + 1), pos_vectors, torch.arange(20, 20 + R), neg_vectors
    )
    loss.backward()
    for t in (query, pos_vectors, neg_vectors):
        assert t.grad is not None and t.grad.abs().sum() > 0


def test_from_logits_equals_per_position_loss():
    import torch

    from hstu_blair.models.losses import sampled_softmax_from_logits, sampled_softmax_loss

    g = torch.Generator().manual_seed(0)
    P, R, D = 7, 5, 4
    q = torch.nn.functional.normalize(torch.randn(P, D, generator=g), dim=-1)
    pos = torch.nn.functional.normalize(torch.randn(P, D, generator=g), dim=-1)
    pos_ids = torch.randint(1, 6, (P,), generator=g)
    neg_ids = torch.randint(1, 6, (P, R), generator=g)
    neg = torch.nn.functional.normalize(torch.randn(P, R, D, generator=g), dim=-1)
    dots = torch.einsum("pd,prd->pr", q, neg)
    a = sampled_softmax_from_logits(q, pos, pos_ids, dots, neg_ids)
    b = sampled_softmax_loss(q, pos_ids, pos, neg_ids, neg)
    assert torch.allclose(a, b, atol=1e-6)


def test_row_logits_gradients():
    g = torch.Generator().manual_seed(0)
    states = torch.randn(3, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    negatives = torch.randn(3, 6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    from hstu_blair.models.losses import row_logits

    torch.testing.assert_close(row_logits(states, negatives), torch.einsum("btd,brd->btr", states, negatives))
    assert torch.autograd.gradcheck(row_logits, (states, negatives))


def test_row_logits_under_bf16_autocast():
    """Forward and backward of the custom product under autocast (train.bf16)."""
    from hstu_blair.models.losses import row_logits

    g = torch.Generator().manual_seed(0)
    states = torch.randn(2, 3, 8, generator=g, requires_grad=True)
    negatives = torch.randn(2, 5, 8, generator=g, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = row_logits(states, negatives)
    out.float().sum().backward()
    assert states.grad.dtype == torch.float32 and negatives.grad.dtype == torch.float32
    torch.testing.assert_close(
        states.grad, negatives.sum(1, keepdim=True).expand(-1, 3, -1), atol=0.05, rtol=0.02
    )


def test_full_softmax_equals_shared_negatives_over_every_item_and_names_a_missing_target():
    g = torch.Generator().manual_seed(0)
    query = F.normalize(torch.randn(7, 8, generator=g), dim=-1)
    table = F.normalize(torch.randn(21, 8, generator=g), dim=-1)  # row i = item i (0 unused)
    pos_ids = torch.tensor([1, 5, 5, 9, 20, 3, 12])  # every one in each pool
    pools = (
        torch.arange(1, 21),
        torch.tensor([12, 1, 3, 9, 5, 20, 7]),
        torch.tensor([1, 12, 3, 9, 5, 20, 7]),
    )
    for item_ids in pools:  # the catalogue, a pool, a pool that starts at 1 and ends at its size
        full = full_softmax_loss(query, pos_ids, item_ids, table[item_ids], 0.1)
        shared = shared_negatives_loss(query, pos_ids, table[pos_ids], item_ids, table[item_ids], 0.1)
        torch.testing.assert_close(full, shared)
    with pytest.raises(ValueError, match=r"targets \[5\] are not among"):
        full_softmax_loss(query, pos_ids, torch.tensor([1, 3, 9, 12, 20]), table[[1, 3, 9, 12, 20]], 0.1)
