"""The training objective: the text-fused fast path computes the same loss and gradients as the
paper's formula evaluated row by row, for every negatives layout."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hstu_blair.models import item_embedding
from hstu_blair.models.build import Architecture, build_model
from hstu_blair.models.item_embedding import unique_items
from hstu_blair.models.losses import COLLISION_LOGIT
from hstu_blair.training.negatives import NegativeSampler
from hstu_blair.training.objective import NextItemLoss

N_ITEMS, D_TEXT, MAX_LEN = 300, 48, 12


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    B, T = 6, MAX_LEN
    lengths = torch.tensor([12, 9, 5, 3, 1, 12])
    ids = torch.randint(1, N_ITEMS + 1, (B, T), generator=g)
    ids[torch.arange(T)[None, :] >= lengths[:, None]] = 0
    targets = torch.randint(1, N_ITEMS + 1, (B, T), generator=g)
    targets[torch.arange(T)[None, :] >= lengths[:, None]] = 0
    timestamps = torch.cumsum(torch.randint(1, 10_000, (B, T + 1), generator=g), 1)
    return ids, timestamps, lengths, targets


def _model(fusion: str = "sum"):
    torch.manual_seed(0)
    text = torch.randn(N_ITEMS + 1, D_TEXT)
    text[0] = 0
    arch = Architecture("hstu", fusion, N_ITEMS, MAX_LEN, MAX_LEN + 11, 16, 2, 2, 8, 8, 16, 0.0, 0.0, D_TEXT)
    return build_model(arch, text).eval()


def _paper_loss(model, ids, timestamps, lengths, targets, negatives, tau=0.05):
    """The sum fusion as the paper writes it, per occurrence: ID[i] + W text[i] + b, L2-normalised,
    no deduplication, no table; logits per position; collisions masked."""
    fusion = model.items.fusion

    def embed(x):
        return fusion.ids(x) + F.linear(model.items.text[x], fusion.text_proj.weight, fusion.text_proj.bias)

    states = model.backbone(embed(ids), ids, timestamps, lengths)  # (B, T, D)
    valid = torch.arange(ids.shape[1])[None, :] < lengths[:, None]
    q, pos_ids = states[valid], targets[valid]  # (P, D), (P,)
    pos = F.normalize(embed(pos_ids), dim=-1, eps=1e-6)
    if negatives.mode == "per-row":
        neg_ids = negatives.ids[valid.nonzero()[:, 0]]  # (P, R)
    elif negatives.mode in ("shared", "all"):
        neg_ids = negatives.ids[None, :].expand(q.shape[0], -1)
    else:
        neg_ids = negatives.ids
    neg = F.normalize(embed(neg_ids), dim=-1, eps=1e-6)  # (P, R, D)
    pos_logit = (q * pos).sum(-1) / tau
    neg_logit = torch.einsum("pd,prd->pr", q, neg) / tau
    neg_logit = neg_logit.masked_fill(neg_ids == pos_ids[:, None], COLLISION_LOGIT)
    return -F.log_softmax(torch.cat([pos_logit[:, None], neg_logit], 1), 1)[:, 0].mean()


def _loss_and_grads(model, fn):
    model.zero_grad()
    loss = fn()
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("mode", ["per-row", "per-position", "shared", "all"])
def test_sum_fusion_fast_path_equals_the_paper_formula(mode, monkeypatch):
    model = _model("sum")
    ids, ts, lengths, targets = _batch()
    negatives = NegativeSampler(mode, 64, N_ITEMS, generator=torch.Generator().manual_seed(1)).draw(
        6, int(lengths.sum())
    )
    objective = NextItemLoss(model)
    # the fast path: the whole catalogue projected by one matrix product, rows picked after
    monkeypatch.setattr(item_embedding, "FULL_TABLE_SHARE", 0.0)
    fast, fast_grads = _loss_and_grads(model, lambda: objective(ids, ts, lengths, targets, negatives))
    # the gather path (each distinct item's 768-d row gathered, then projected): today's other branch
    monkeypatch.setattr(item_embedding, "FULL_TABLE_SHARE", float("inf"))
    gather, gather_grads = _loss_and_grads(model, lambda: objective(ids, ts, lengths, targets, negatives))
    paper, paper_grads = _loss_and_grads(
        model, lambda: _paper_loss(model, ids, ts, lengths, targets, negatives)
    )
    torch.testing.assert_close(fast, paper, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gather, paper, rtol=1e-5, atol=1e-6)
    assert fast_grads.keys() == paper_grads.keys() == gather_grads.keys()
    for name in paper_grads:
        atol = 1e-6
        if (
            mode == "all"
        ):  # float32 sums over all n items: the same tolerance relative to the gradient's scale
            atol *= max(1.0, paper_grads[name].abs().max().item())
        torch.testing.assert_close(fast_grads[name], paper_grads[name], rtol=1e-4, atol=atol, msg=name)
        torch.testing.assert_close(gather_grads[name], paper_grads[name], rtol=1e-4, atol=atol, msg=name)


def test_all_negatives_is_the_full_softmax():
    """``negatives = "all"``: the loss is the cross-entropy of each target over the whole catalogue."""
    model = _model("sum")
    ids, ts, lengths, targets = _batch()
    negatives = NegativeSampler("all", 1, N_ITEMS).draw(6, int(lengths.sum()))
    loss = NextItemLoss(model, temperature=0.05)(ids, ts, lengths, targets, negatives)
    states = model(ids, ts, lengths)  # (B, T, D)
    valid = torch.arange(ids.shape[1])[None, :] < lengths[:, None]
    fusion = model.items.fusion
    table = fusion.ids.weight + F.linear(model.items.text, fusion.text_proj.weight, fusion.text_proj.bias)
    table = F.normalize(table, dim=-1, eps=1e-6)[1:]  # (n, D) every real item
    logits = F.normalize(states[valid], dim=-1, eps=1e-6) @ table.T / 0.05  # (P, n)
    torch.testing.assert_close(loss, F.cross_entropy(logits, targets[valid] - 1), rtol=1e-5, atol=1e-6)


def test_unique_items_equals_torch_unique():
    g = torch.Generator().manual_seed(0)
    for shape in [(1,), (37,), (5, 9), (1000,)]:
        ids = torch.randint(0, 50, shape, generator=g)
        expected = torch.unique(ids, return_inverse=True)
        got = unique_items(ids, 49)
        assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
