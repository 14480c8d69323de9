"""The negative sampler the training loop uses: uniform, seeded, one layout per mode, pools."""

from __future__ import annotations

import pytest
import torch

from hstu_blair.training.negatives import NegativeSampler


def test_uniform_over_real_items_and_seeded():
    draws = NegativeSampler("shared", 20_000, 5, generator=torch.Generator().manual_seed(0)).draw(1, 1).ids
    assert draws.dtype == torch.long and draws.min() == 1 and draws.max() == 5
    counts = torch.bincount(draws, minlength=6)[1:].float()
    assert (counts / 20_000 - 0.2).abs().max() < 0.02
    a = NegativeSampler("per-row", 4, 100, generator=torch.Generator().manual_seed(1)).draw(3, 10)
    b = NegativeSampler("per-row", 4, 100, generator=torch.Generator().manual_seed(1)).draw(3, 10)
    assert a.ids.shape == (3, 4) and torch.equal(a.ids, b.ids) and a.mode == "per-row"
    with pytest.raises(ValueError, match="num_items"):
        NegativeSampler("shared", 3, 0)
    with pytest.raises(ValueError, match="valid: per-row"):
        NegativeSampler("everywhere", 3, 10)


@pytest.mark.parametrize(
    ("mode", "shape"), [("shared", (8,)), ("per-row", (3, 8)), ("per-position", (17, 8))]
)
def test_layouts(mode, shape):
    assert NegativeSampler(mode, 8, 50).draw(3, 17).ids.shape == shape


def test_pool_restricts_draws():
    pool = torch.tensor([3, 7, 11])
    ids = NegativeSampler("per-position", 64, 20, pool=pool, generator=torch.Generator().manual_seed(0))
    drawn = ids.draw(2, 50).ids
    assert set(drawn.unique().tolist()) == {3, 7, 11}
    with pytest.raises(ValueError, match="empty"):
        NegativeSampler("shared", 3, 20, pool=torch.tensor([], dtype=torch.long))


def test_all_is_every_item_of_the_pool_without_a_draw():
    generator = torch.Generator().manual_seed(0)
    state = generator.get_state()
    sampler = NegativeSampler("all", 8, 50, generator=generator)
    assert torch.equal(sampler.draw(3, 17).ids, torch.arange(1, 51)) and sampler.shape(3, 17) == (50,)
    assert torch.equal(generator.get_state(), state)  # R is ignored and nothing is drawn
    pool = torch.tensor([3, 7, 11])
    assert torch.equal(NegativeSampler("all", 8, 50, pool=pool).draw(2, 5).ids, pool)
