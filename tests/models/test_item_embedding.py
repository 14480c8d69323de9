"""Item embeddings: every fusion's shapes and padding, cold-start scoring, distinct-id projection."""

from __future__ import annotations

import pytest
import torch

from hstu_blair.models.item_embedding import FUSIONS, ItemEmbedding, pca_whitening

N_ITEMS, D, D_TEXT = 6, 8, 12


def make_text(seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    text = torch.randn(N_ITEMS + 1, D_TEXT, generator=gen) + 3.0  # (n+1, d_text), shared offset
    text[0] = 0.0
    return text


def make(fusion: str, seed: int = 0) -> ItemEmbedding:
    torch.manual_seed(seed)
    return ItemEmbedding(N_ITEMS, D, fusion, None if fusion == "id" else make_text())


@pytest.mark.parametrize("fusion", list(FUSIONS))
def test_shapes_and_properties(fusion):
    emb = make(fusion)
    ids = torch.tensor([[1, 2, 0], [6, 6, 3]])
    assert emb(ids).shape == (2, 3, D)
    assert emb(torch.tensor(4)).shape == (D,)
    assert emb.all_items().shape == (N_ITEMS + 1, D)
    assert (emb.num_items, emb.d_model) == (N_ITEMS, D)
    torch.testing.assert_close(emb(ids), emb.all_items()[ids])


@pytest.mark.parametrize("fusion", ["text", "gated"])
def test_padding_maps_to_zero(fusion):
    emb = make(fusion)
    out = emb(torch.tensor([[0, 1, 0]]))
    assert out[0, 0].abs().max() == 0.0 and out[0, 2].abs().max() == 0.0
    assert out[0, 1].abs().max() > 0.0
    assert emb.all_items()[0].abs().max() == 0.0


@pytest.mark.parametrize("fusion", ["id", "sum"])
def test_reference_padding_row_gets_no_gradient(fusion):
    emb = make(fusion)
    table = emb.fusion.ids.weight
    assert table[0].abs().max() > 0.0  # the reference init overwrites row 0 too
    emb(torch.tensor([0, 0, 2])).sum().backward()
    assert table.grad[0].abs().max() == 0.0
    assert table.grad[2].abs().max() > 0.0
    if fusion == "sum":  # reference: padding maps to ID[0] + b_t
        want = table[0] + emb.fusion.text_proj.bias
        torch.testing.assert_close(emb(torch.tensor(0)), want)


def test_sum_fusion_is_id_plus_projected_text():
    emb = make("sum")
    ids = torch.tensor([3, 5])
    proj = emb.fusion.text_proj
    want = emb.fusion.ids.weight[ids] + make_text()[ids] @ proj.weight.T + proj.bias
    torch.testing.assert_close(emb(ids), want)
    n_proj = sum(p.numel() for p in proj.parameters())
    assert n_proj == D_TEXT * D + D
    assert ItemEmbedding(3, 64, "sum", torch.zeros(4, 768)).fusion.text_proj.weight.numel() + 64 == 49_216


def test_text_fusion_scores_an_item_absent_from_training():
    """Item 4 never appears in training but has the text of item 1: the text-only fusion gives it
    item 1's trained vector; the id fusion leaves it at its random init."""
    text = make_text()
    text[4] = text[1]
    trained = {}
    for fusion in ["text", "id"]:
        torch.manual_seed(0)
        emb = ItemEmbedding(N_ITEMS, D, fusion, None if fusion == "id" else text)
        before = emb.all_items().detach().clone()
        opt = torch.optim.SGD(emb.parameters(), lr=0.5)
        target = torch.nn.functional.normalize(torch.randn(3, D), dim=-1)
        for _ in range(50):  # pull items 1..3 towards fixed targets
            opt.zero_grad()
            vec = torch.nn.functional.normalize(emb(torch.tensor([1, 2, 3])), dim=-1)
            (-(vec * target).sum()).backward()
            opt.step()
        trained[fusion] = (before, emb.all_items().detach(), target)
    before, after, target = trained["text"]
    torch.testing.assert_close(after[4], after[1])
    cold_score = torch.nn.functional.normalize(after[4], dim=-1) @ target[0]
    assert cold_score > 0.9  # the unseen item scores like item 1 for item 1's target
    before, after, _ = trained["id"]
    torch.testing.assert_close(after[4], before[4])  # no information reached item 4


@pytest.mark.parametrize("fusion", ["sum", "text", "gated"])
def test_distinct_id_projection_equals_naive(fusion):
    emb = make(fusion)
    ids = torch.tensor([[1, 1, 0, 5], [5, 2, 0, 0]])
    fast = emb(ids)
    flat = ids.reshape(-1)
    naive = emb.fusion(flat, emb.text[flat]).view(2, 4, D)
    torch.testing.assert_close(fast, naive)
    real = (ids != 0).unsqueeze(-1)  # padding positions masked, as the encoders do
    grad_fast = torch.autograd.grad((fast * real).square().sum(), list(emb.parameters()))
    grad_naive = torch.autograd.grad((naive * real).square().sum(), list(emb.parameters()))
    for a, b in zip(grad_fast, grad_naive, strict=True):
        torch.testing.assert_close(a, b)


def test_text_is_frozen_and_not_checkpointed():
    emb = make("gated")
    assert not emb.text.requires_grad
    assert all(p.data_ptr() != emb.text.data_ptr() for p in emb.parameters())
    state = emb.state_dict()
    assert "text" not in state
    assert "fusion.text_mean" in state  # standardisation statistics stay fixed across reloads
    restored = ItemEmbedding(N_ITEMS, D, "gated", make_text())
    restored.load_state_dict(state)
    torch.testing.assert_close(restored.all_items(), emb.all_items())


def mean_pairwise_cosine(vectors: torch.Tensor) -> float:
    v = torch.nn.functional.normalize(vectors, dim=-1)  # (n, D)
    cos = v @ v.T  # (n, n)
    off_diagonal = ~torch.eye(v.shape[0], dtype=torch.bool)
    return cos[off_diagonal].mean().item()


def test_gated_fusion_is_robust_to_a_shared_text_component():
    """Anisotropic text (a large component shared by all items) makes every ``sum`` item vector
    alike at init; the gated fusion standardises the text and keeps items apart."""
    gen = torch.Generator().manual_seed(0)
    n, d_text = 50, 64
    text = torch.randn(n + 1, d_text, generator=gen) + 10.0 * torch.randn(d_text, generator=gen)
    torch.manual_seed(0)
    summed = ItemEmbedding(n, 16, "sum", text).all_items()[1:].detach()
    gated = ItemEmbedding(n, 16, "gated", text).all_items()[1:].detach()
    assert mean_pairwise_cosine(summed) > 0.8
    assert abs(mean_pairwise_cosine(gated)) < 0.2


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="valid fusions: id, sum, text, gated"):
        ItemEmbedding(N_ITEMS, D, "concat", make_text())
    with pytest.raises(ValueError, match="needs a text matrix"):
        ItemEmbedding(N_ITEMS, D, "sum")
    with pytest.raises(ValueError, match=r"shape \(7, d_text\)"):
        ItemEmbedding(N_ITEMS, D, "sum", torch.zeros(N_ITEMS, D_TEXT))
    with pytest.raises(ValueError, match="floating point"):
        ItemEmbedding(N_ITEMS, D, "text", torch.zeros(N_ITEMS + 1, D_TEXT, dtype=torch.long))
    with pytest.raises(ValueError, match="does not use text"):
        ItemEmbedding(N_ITEMS, D, "id", make_text())


def test_pca_whitening_gives_unit_covariance_and_fixed_signs():
    gen = torch.Generator().manual_seed(0)
    rows = torch.randn(500, 12, generator=gen) @ torch.randn(12, 12, generator=gen) + 5.0
    mean, whitening = pca_whitening(rows, rank=4)
    z = (rows - mean) @ whitening  # (500, 4)
    torch.testing.assert_close(z.mean(0), torch.zeros(4), atol=1e-4, rtol=0)
    torch.testing.assert_close(torch.cov(z.T), torch.eye(4), atol=1e-4, rtol=0)
    assert whitening.shape == (12, 4)
    assert (whitening.gather(0, whitening.abs().argmax(0, keepdim=True)) > 0).all()
    assert pca_whitening(rows)[1].shape == (12, 12)  # rank 0: every direction
    with pytest.raises(ValueError, match="do not vary"):
        pca_whitening(torch.ones(5, 3))


def test_pca_without_whitening_keeps_the_relative_variances():
    gen = torch.Generator().manual_seed(0)
    rows = torch.randn(500, 12, generator=gen) @ torch.randn(12, 12, generator=gen) + 5.0
    mean, reduce = pca_whitening(rows, rank=4, whiten=False)
    z = (rows - mean) @ reduce  # (500, 4)
    cov = torch.cov(z.T)
    torch.testing.assert_close(cov - torch.diag(cov.diag()), torch.zeros(4, 4), atol=1e-4, rtol=0)
    variances = cov.diag()
    assert variances.mean().item() == pytest.approx(1.0, abs=1e-4)  # unit variance on average
    assert (variances[:-1] > variances[1:]).all()  # principal directions, largest first, unscaled
    _, whitened = pca_whitening(rows, rank=4)
    ratio = whitened / reduce  # the same directions: whitening only rescales each one
    torch.testing.assert_close(ratio, ratio[:1].expand_as(ratio), rtol=1e-3, atol=0)


def test_residual_fusion_starts_as_text_and_drops_ids_only_in_training():
    torch.manual_seed(0)
    emb = ItemEmbedding(N_ITEMS, D, "residual", make_text(), id_dropout=0.5, text_rank=4)
    assert emb.features.shape == (N_ITEMS + 1, 4) and emb.fusion.ids.weight.abs().max() == 0.0
    ids = torch.arange(1, N_ITEMS + 1)
    text_only = emb.fusion.text_proj(emb.features[ids])
    torch.testing.assert_close(emb.eval()(ids), text_only)  # zero IDs: the text alone
    assert emb(torch.tensor(0)).abs().max() == 0.0
    with torch.no_grad():
        emb.fusion.ids.weight[1:] = 1.0
    torch.testing.assert_close(emb.eval()(ids), text_only + 1.0)  # inference: the whole ID
    emb.train()
    kept = (emb(ids) - text_only).mean(-1)  # 1 where the ID was kept, 0 where dropped
    assert set(kept.round().tolist()) <= {0.0, 1.0}
    drops = torch.stack([(emb(ids) - text_only).mean(-1).round() for _ in range(200)])
    assert 0.4 < drops.mean().item() < 0.6  # id_dropout = 0.5
    # one draw per distinct item and step: all occurrences of an item agree
    same = emb(torch.tensor([2, 2, 2, 2]))
    assert torch.equal(same[0], same[1]) and torch.equal(same[0], same[3])


def test_residual_fusion_reload_and_added_items_use_the_saved_whitening():
    torch.manual_seed(0)
    emb = ItemEmbedding(N_ITEMS, D, "residual", make_text(), text_rank=4).eval()
    state = emb.state_dict()
    assert {"fusion.text_mean", "fusion.whitening"} <= set(state) and "_features" not in state
    other_text = make_text(seed=3)  # a machine whose decomposition came out differently
    restored = ItemEmbedding(N_ITEMS, D, "residual", other_text, text_rank=4).eval()
    restored.text = make_text()
    restored.load_state_dict(state)  # the features are recomputed with the saved whitening
    torch.testing.assert_close(restored.all_items(), emb.all_items())
    new_text = make_text(seed=5)[1:3]
    emb.add_text_items(new_text)
    assert emb.features.shape == (N_ITEMS + 3, 4) and emb.num_items == N_ITEMS + 2
    want = emb.fusion.text_proj(emb.fusion.features(new_text))  # text alone: the new IDs are 0
    torch.testing.assert_close(emb(torch.tensor([N_ITEMS + 1, N_ITEMS + 2])), want)


def test_whole_catalogue_path_equals_naive_with_rank_and_id_rules():
    """Most of the catalogue asked for: ``sum`` reads its ID table directly (``all_rows``); vectors
    and gradients are those of a row-by-row lookup; the padding row gets the padding vector's gradient
    (a lookup gives it none; the encoders mask padding, so in a model it is zero: test_models)."""
    torch.manual_seed(0)
    counts = torch.tensor([0, 5, 1, 5, 0, 5, 2])  # items 2, 4, 6 below the minimum count
    emb = ItemEmbedding(N_ITEMS, D, "sum", make_text(), counts, text_rank=3, id_min_count=3)
    ids = torch.tensor([[1, 2, 0, 5], [6, 3, 4, 0]])  # 7 of 7 ids: the whole-catalogue path
    fast = emb(ids)
    flat = ids.reshape(-1)
    naive = emb.fusion(flat, emb.features[flat]).view(2, 4, D)
    torch.testing.assert_close(fast, naive)
    real = (ids != 0).unsqueeze(-1)  # the loss of a model: padding positions masked
    grad_fast = torch.autograd.grad((fast * real).square().sum(), list(emb.parameters()))
    grad_naive = torch.autograd.grad((naive * real).square().sum(), list(emb.parameters()))
    for a, b in zip(grad_fast, grad_naive, strict=True):
        torch.testing.assert_close(a, b)
    assert grad_fast[0][0].abs().max() == 0.0  # the ID table's padding row
