"""SequentialModel: item embeddings + encoder, encode at lengths-1, one-call training forward."""

from __future__ import annotations

import pytest
import torch

from hstu_blair.models.hstu import HSTU
from hstu_blair.models.item_embedding import ItemEmbedding
from hstu_blair.models.sasrec import SASRec
from hstu_blair.models.sequential import SequentialModel

N_ITEMS, D = 20, 8


def make_model(encoder: str, fusion: str = "sum") -> SequentialModel:
    torch.manual_seed(0)
    text = torch.randn(N_ITEMS + 1, 12)
    items = ItemEmbedding(N_ITEMS, D, fusion, None if fusion == "id" else text)
    if encoder == "hstu":
        enc = HSTU(9, D, 2, 2, 4, 4)
    else:
        enc = SASRec(9, D, 2, 2, 16)
    return SequentialModel(items, enc).eval()


def make_batch():
    ids = torch.tensor([[4, 8, 15, 16], [13, 2, 0, 0]])  # (B, T)
    timestamps = torch.tensor([[10, 20, 30, 40, 50], [5, 900, 1000, 0, 0]])  # (B, T+1)
    return ids, timestamps, torch.tensor([4, 2])


@pytest.mark.parametrize("encoder", ["hstu", "sasrec"])
def test_encode_takes_the_last_real_position(encoder):
    model = make_model(encoder)
    ids, ts, lengths = make_batch()
    ids[1, 0] = 3
    with torch.no_grad():
        states = model(ids, ts, lengths)  # (B, T, D)
        query = model.query_vectors(ids, ts, lengths)  # (B, D)
    torch.testing.assert_close(query[0], states[0, 3])
    torch.testing.assert_close(query[1], states[1, 1])


@pytest.mark.parametrize("fusion", ["id", "sum", "gated"])
def test_item_vectors_are_unit_and_match_all_items(fusion):
    model = make_model("hstu", fusion)
    with torch.no_grad():
        everything = model.item_vectors()  # (n+1, D)
        some = model.item_vectors(torch.tensor([[3, 7]]))  # (1, 2, D)
    assert everything.shape == (N_ITEMS + 1, D)
    torch.testing.assert_close(everything[1:].norm(dim=-1), torch.ones(N_ITEMS))
    torch.testing.assert_close(some[0], everything[[3, 7]])


def test_forward_with_items_equals_separate_calls():
    model = make_model("hstu", "gated")
    ids, ts, lengths = make_batch()
    negatives = torch.tensor([1, 8, 20, 8])
    with torch.no_grad():
        states, neg_vectors, more = model.forward_with_items(ids, ts, lengths, negatives, ids[:, :2])
        torch.testing.assert_close(states, model(ids, ts, lengths))
        torch.testing.assert_close(neg_vectors, model.item_vectors(negatives))
        torch.testing.assert_close(more, model.item_vectors(ids[:, :2]))


def test_width_mismatch_raises():
    items = ItemEmbedding(N_ITEMS, D)
    with pytest.raises(ValueError, match="width"):
        SequentialModel(items, HSTU(9, 2 * D, 1, 1, 4, 4))


def test_length_groups_partition_rows_by_powers_of_two():
    from hstu_blair.models.sequential import length_groups

    lengths = torch.tensor([1, 30, 8, 9, 17, 3])
    groups = length_groups(lengths, min_width=8)
    assert [(sorted(rows.tolist()), width) for rows, width in groups] == [
        ([0, 2, 5], 8),
        ([3], 9),
        ([1, 4], 30),
    ]
    assert sorted(torch.cat([rows for rows, _ in groups]).tolist()) == list(range(6))


@pytest.mark.parametrize("encoder", ["hstu", "sasrec"])
def test_grouped_encoding_equals_one_encoder_call(encoder):
    torch.manual_seed(0)
    items = ItemEmbedding(N_ITEMS, D, "sum", torch.randn(N_ITEMS + 1, 12))
    if encoder == "hstu":
        enc = HSTU(20, D, 2, 2, 4, 4)
    else:
        enc = SASRec(20, D, 2, 2, 16)
    model = SequentialModel(items, enc).eval()
    lengths = torch.tensor([2, 12, 9, 5, 17])  # three groups: <= 8, 9..16, 17
    T = int(lengths.max())
    ids = torch.randint(1, N_ITEMS + 1, (5, T)) * (torch.arange(T)[None] < lengths[:, None])  # (B, T)
    ts = torch.cumsum(torch.randint(1, 10**6, (5, T + 1)), dim=1)  # (B, T+1)

    grads = []
    for run in (lambda: model(ids, ts, lengths), lambda: model.backbone(model.items(ids), ids, ts, lengths)):
        model.zero_grad()
        states = run()  # (B, T, D)
        (states * torch.linspace(-1, 1, D)).sum().backward()
        grads.append((states.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (grouped, g1), (single, g2) = grads
    torch.testing.assert_close(grouped, single)
    assert len(g1) == len(g2)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b)


def test_dropout_keeps_the_expected_share_and_scales():
    from hstu_blair.models.dropout import dropout

    torch.manual_seed(0)
    x = torch.ones(200_000)
    y = dropout(x, 0.3, training=True)
    assert abs((y == 0).float().mean().item() - 0.3) < 0.01
    torch.testing.assert_close(y[y != 0], torch.full_like(y[y != 0], 1 / 0.7))
    assert dropout(x, 0.3, training=False) is x and dropout(x, 0.0, training=True) is x
    assert dropout(x, 1.0, training=True).abs().sum() == 0


@pytest.mark.parametrize("encoder", ["hstu", "sasrec"])
def test_padding_row_of_the_id_table_gets_no_gradient_in_training(encoder):
    """``sum`` reads its whole ID table when a step touches most of the catalogue; the padding
    row then gets the padding vector's gradient, which the encoders' masking makes zero."""
    model = make_model(encoder).train()
    ids, ts, lengths = make_batch()
    negatives = torch.arange(1, N_ITEMS + 1)  # every item: the whole-table path
    states, neg_vectors = model.forward_with_items(ids, ts, lengths, negatives)
    (states.sum() + (states @ neg_vectors.T).logsumexp(-1).sum()).backward()
    grad = model.items.fusion.ids.weight.grad
    assert grad[0].abs().max() == 0.0
    assert grad[1:].abs().amax(1).gt(0).all()
