"""The fusion registry and the options every fusion with an ID table shares (``id_min_count``,
``id_dropout``), ``sum``'s ``text_rank``, and items without an ID part (added or dropped rows)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from hstu_blair.errors import ConfigError
from hstu_blair.models.build import Architecture, architecture_options
from hstu_blair.models.fusions import FUSIONS, FusionSpec, get_fusion, register_fusion
from hstu_blair.models.fusions.common import INIT_STD, pca_whitening
from hstu_blair.models.item_embedding import ItemEmbedding

N_ITEMS, D, D_TEXT = 8, 8, 12
ID_FUSIONS = ["sum", "gated", "residual"]


def make_text(seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    text = torch.randn(N_ITEMS + 1, D_TEXT, generator=gen) + 3.0  # (n+1, d_text)
    text[0] = 0.0
    return text


def make(fusion: str, counts: torch.Tensor | None = None, **options: object) -> ItemEmbedding:
    torch.manual_seed(0)
    emb = ItemEmbedding(N_ITEMS, D, fusion, make_text(), counts, **options)
    if fusion == "residual":  # its ID table starts at zero: give it a visible ID part
        with torch.no_grad():
            emb.fusion.ids.weight.normal_()
    return emb.eval()


def test_builtin_fusions_declare_what_they_can_do():
    assert list(FUSIONS)[:5] == ["id", "sum", "text", "gated", "residual"]
    assert not get_fusion("id").uses_text and not get_fusion("text").has_id_table
    defaults = {name: FUSIONS[name].ranks_without_id_row(FUSIONS[name].make_options()) for name in FUSIONS}
    assert defaults["id"] is False and defaults["sum"] is False  # the paper's sum never trains without IDs
    assert defaults["text"] and defaults["gated"] and defaults["residual"]
    sum_spec = get_fusion("sum")
    assert sum_spec.ranks_without_id_row(sum_spec.make_options({"id_min_count": 5}))
    assert sum_spec.ranks_without_id_row(sum_spec.make_options({"id_dropout": 0.1}))
    assert architecture_options("residual") == {
        "id_min_count": 0,
        "id_dropout": 0.1,
        "text_rank": 64,
        "text_whiten": True,
    }


def test_registering_another_fusion_of_the_same_name_is_an_error():
    @dataclass(frozen=True)
    class Opts:
        width: int = 3

    with pytest.raises(ValueError, match="already registered"):
        register_fusion(FusionSpec(name="sum", module=torch.nn.Identity))
    with pytest.raises(ValueError, match="needs a default"):

        @dataclass(frozen=True)
        class NoDefault:
            width: int

        register_fusion(FusionSpec(name="no-default-test", module=torch.nn.Identity, options=NoDefault))
    assert "no-default-test" not in FUSIONS
    with pytest.raises(
        ConfigError, match="unknown fusion 'nope'; valid fusions: id, sum, text, gated, residual"
    ):
        get_fusion("nope")


def test_item_embedding_rejects_unknown_options_and_bad_values():
    valid = "valid: id_min_count, id_dropout, text_rank, text_whiten, text_scale$"
    with pytest.raises(ValueError, match=valid):
        ItemEmbedding(N_ITEMS, D, "gated", make_text(), not_an_option=True)
    with pytest.raises(ValueError, match="text_scale must be > 0, got 0.0"):
        ItemEmbedding(N_ITEMS, D, "sum", make_text(), text_rank=3, text_scale=0.0)
    with pytest.raises(ValueError, match="id_min_count must be >= 0"):
        ItemEmbedding(N_ITEMS, D, "sum", make_text(), id_min_count=-1)
    with pytest.raises(ValueError, match=r"item_counts must have shape \(9,\)"):
        ItemEmbedding(N_ITEMS, D, "sum", make_text(), torch.zeros(3), id_min_count=2)


@pytest.mark.parametrize("fusion", ID_FUSIONS)
def test_defaults_keep_the_state_dict_and_min_count_adds_the_counts(fusion):
    plain = make(fusion)
    explicit = make(fusion, **architecture_options(fusion))
    assert plain.state_dict().keys() == explicit.state_dict().keys()
    assert "fusion.train_counts" not in plain.state_dict()
    torch.testing.assert_close(plain.all_items(), explicit.all_items(), rtol=0, atol=0)
    counts = torch.arange(N_ITEMS + 1)
    with_rule = make(fusion, counts, id_min_count=3)
    assert torch.equal(with_rule.state_dict()["fusion.train_counts"], counts)
    restored = ItemEmbedding(N_ITEMS, D, fusion, make_text(), None, id_min_count=3)  # serving: no counts
    restored.load_state_dict(with_rule.state_dict())
    torch.testing.assert_close(restored.eval().all_items(), with_rule.all_items(), rtol=0, atol=0)


@pytest.mark.parametrize("fusion", ID_FUSIONS)
def test_items_below_the_minimum_count_have_no_id_part(fusion):
    counts = torch.tensor([0, 0, 1, 2, 3, 4, 5, 6, 7])  # items 1..3 have fewer than 3
    emb = make(fusion, counts, id_min_count=3)
    no_ids = make(fusion, counts, id_min_count=3)
    no_ids.drop_id_rows(torch.arange(1, N_ITEMS + 1))  # every item without its ID part
    full = make(fusion)  # same init, no rule
    got, text_only, with_ids = emb.all_items(), no_ids.all_items(), full.all_items()
    torch.testing.assert_close(got[1:4], text_only[1:4], rtol=0, atol=1e-6)
    torch.testing.assert_close(got[4:], with_ids[4:], rtol=0, atol=1e-6)
    assert (got[1:4] - with_ids[1:4]).abs().max() > 1e-3
    ids = torch.tensor([[2, 5, 2]])
    torch.testing.assert_close(emb(ids), got[ids])


@pytest.mark.parametrize("fusion", ID_FUSIONS)
def test_a_dropped_row_scores_like_the_same_text_added_at_run_time(fusion):
    """The cold-start protocol's held-out items (rows dropped) get exactly the vectors serving gives
    items added by text."""
    emb = make(fusion)
    emb.drop_id_rows(torch.tensor([2, 5]))
    emb.add_text_items(emb.text[[2, 5]].clone())
    vectors = emb.all_items()
    torch.testing.assert_close(vectors[[2, 5]], vectors[[N_ITEMS + 1, N_ITEMS + 2]], rtol=0, atol=1e-6)
    assert (vectors[[2, 5]] - make(fusion).all_items()[[2, 5]]).abs().max() > 1e-3


@pytest.mark.parametrize("fusion", ["sum", "gated"])
def test_id_dropout_drops_whole_items_in_training_only(fusion):
    emb = make(fusion, id_dropout=0.5)
    ids = torch.arange(1, N_ITEMS + 1)
    with_ids = emb.eval()(ids).detach()
    no_ids = make(fusion)
    no_ids.drop_id_rows(ids)
    without = no_ids(ids).detach()
    emb.train()
    dropped = []
    for _ in range(100):
        out = emb(ids).detach()
        kept = (out - with_ids).abs().amax(-1) < 1e-6
        gone = (out - without).abs().amax(-1) < 1e-6
        assert torch.all(kept ^ gone)  # each item has its whole ID part or none
        dropped.append(gone.float().mean())
    assert 0.4 < torch.stack(dropped).mean() < 0.6
    same = emb(torch.tensor([3, 3, 3]))
    assert torch.equal(same[0], same[1]) and torch.equal(same[0], same[2])  # one draw per item


def test_sum_text_rank_projects_whitened_top_directions():
    emb = make("sum", text_rank=4)
    proj = emb.fusion.text_proj
    assert proj.weight.shape == (D, 4) and emb.features.shape == (N_ITEMS + 1, 4)
    assert proj.weight.abs().max() <= 2 * INIT_STD / 4**0.5 + 1e-7
    mean, whitening = pca_whitening(make_text()[1:], 4)
    ids = torch.tensor([1, 4, 7])
    want = emb.fusion.ids.weight[ids] + ((make_text()[ids] - mean) @ whitening) @ proj.weight.T + proj.bias
    torch.testing.assert_close(emb(ids), want)
    assert {"fusion.text_mean", "fusion.whitening"} <= set(emb.state_dict())
    emb.add_text_items(make_text(seed=4)[1:3])
    assert emb.features.shape == (N_ITEMS + 3, 4)
    raw = make("sum")
    assert raw.fusion.text_proj.weight.shape == (D, D_TEXT) and "fusion.whitening" not in raw.state_dict()


def test_gated_text_rank_gates_whitened_top_directions():
    emb = make("gated", text_rank=4)
    f = emb.fusion
    assert f.text_proj.weight.shape == (D, 4) and emb.features.shape == (N_ITEMS + 1, 4)
    mean, whitening = pca_whitening(make_text()[1:], 4)
    ids = torch.tensor([1, 4, 7])
    e = f.ids.weight[ids]
    t = f.text_proj((make_text()[ids] - mean) @ whitening)
    g = torch.sigmoid(f.gate(torch.cat([e, t], -1)))
    torch.testing.assert_close(emb(ids), e + g * t)
    assert {"fusion.text_mean", "fusion.whitening"} <= set(emb.state_dict())
    assert "fusion.text_std" not in emb.state_dict()
    raw = make("gated")
    assert raw.fusion.text_proj.weight.shape == (D, D_TEXT) and "fusion.whitening" not in raw.state_dict()


def test_old_model_json_architectures_still_load():
    base = dict(name="hstu", num_items=5, max_len=10, attn_len=21)
    old = {**base, "fusion": "residual", "id_dropout": 0.2, "text_rank": 32, "text_whiten": False}
    arch = Architecture.from_dict(old)
    assert arch.fusion_options == {"id_dropout": 0.2, "text_rank": 32, "text_whiten": False}
    gated = Architecture.from_dict({**base, "fusion": "gated", "id_dropout": 0.1, "text_rank": 64})
    assert gated.fusion_options == {}  # the old gated ignored them
    assert Architecture.from_dict(arch.to_dict()) == arch
    with pytest.raises(ConfigError, match="unknown architecture key"):
        Architecture.from_dict({**base, "fusion": "id", "colour": 1})


@pytest.mark.parametrize("fusion", ["sum", "gated"])
def test_text_scale_starts_from_the_same_vectors_and_speeds_up_the_text_part(fusion):
    text = make_text()
    torch.manual_seed(0)
    plain = ItemEmbedding(N_ITEMS, D, fusion, text, text_rank=3)
    torch.manual_seed(0)
    scaled = ItemEmbedding(N_ITEMS, D, fusion, text, text_rank=3, text_scale=0.25)
    norm = lambda m: m.fusion.features(text[1:]).norm(dim=1)  # noqa: E731
    torch.testing.assert_close(norm(scaled), 0.25 * norm(plain))
    torch.testing.assert_close(scaled.all_items(), plain.all_items())  # same vectors at the start
    # one Adam step on the projection alone moves the text part 4x less (Adam's step is
    # the same size in weight space, the input 4x smaller)
    moves = []
    for emb in (plain, scaled):
        before = emb.all_items().detach()
        opt = torch.optim.Adam([emb.fusion.text_proj.weight], lr=1e-3)
        emb.all_items().sum().backward()
        opt.step()
        moves.append((emb.all_items().detach() - before).norm())
    torch.testing.assert_close(moves[1], 0.25 * moves[0], rtol=1e-3, atol=0)


def test_sum_reads_the_top_directions_whitened_or_at_one_scale():
    text = make_text()
    whitened = ItemEmbedding(N_ITEMS, D, "sum", text, text_rank=3).fusion
    one_scale = ItemEmbedding(N_ITEMS, D, "sum", text, text_rank=3, text_whiten=False).fusion
    var_w = ((text[1:] - whitened.text_mean) @ whitened.whitening).var(0)
    var_s = ((text[1:] - one_scale.text_mean) @ one_scale.whitening).var(0)
    assert torch.allclose(var_w, torch.ones(3), atol=1e-3)  # each direction at unit variance
    assert var_s[0] > var_s[2] and torch.isclose(var_s.mean(), torch.tensor(1.0), atol=1e-3)
