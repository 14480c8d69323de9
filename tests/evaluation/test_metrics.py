"""Metrics against a deliberately plain per-user loop over the definitions, plus hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hstu_blair.evaluation.metrics import (
    DEFAULT_HR_KS,
    DEFAULT_KS,
    DEFAULT_NDCG_KS,
    REFERENCE_MISS_RANK,
    add_sums,
    means_from_sums,
    metric_names,
    metric_sums,
    metrics_from_ranks,
    per_user_metrics,
)


def loop_metrics(ranks, hr_ks, ndcg_ks, miss_rank=None):
    """The definitions, one user at a time, with no vectorisation."""
    totals = {f"hr@{k}": 0.0 for k in hr_ks} | {f"ndcg@{k}": 0.0 for k in ndcg_ks} | {"mrr": 0.0}
    for rank in ranks:
        rank = float(rank)
        if miss_rank is not None and rank > miss_rank:
            rank = float(miss_rank)
        for k in hr_ks:
            if rank <= k:
                totals[f"hr@{k}"] += 1.0
        for k in ndcg_ks:
            if rank <= k:
                totals[f"ndcg@{k}"] += 1.0 / math.log2(rank + 1.0)
        if rank != math.inf:
            totals["mrr"] += 1.0 / rank
    return {key: value / len(ranks) for key, value in totals.items()}


def random_ranks(rng: np.random.Generator, n: int, high: int, miss_fraction: float = 0.2) -> np.ndarray:
    ranks = rng.integers(1, high + 1, size=n).astype(np.float64)
    ranks[rng.random(n) < miss_fraction] = np.inf
    return ranks


def test_default_keys_are_spelled_once_and_ordered():
    assert DEFAULT_KS == {"hr": (1, 5, 10, 50, 200), "ndcg": (10, 50, 200)}
    expected = ["hr@1", "hr@5", "hr@10", "hr@50", "hr@200", "ndcg@10", "ndcg@50", "ndcg@200", "mrr"]
    assert metric_names() == expected
    assert list(metrics_from_ranks(np.array([1.0, 7.0]))) == expected


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_means_match_loop_definition(seed):
    ranks = random_ranks(np.random.default_rng(seed), 500, high=300)
    got = metrics_from_ranks(ranks)
    want = loop_metrics(ranks, DEFAULT_HR_KS, DEFAULT_NDCG_KS)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-6), key


def test_reference_miss_rank_matches_loop_definition():
    rng = np.random.default_rng(3)
    ranks = random_ranks(rng, 400, high=4000)  # many ranks beyond 2500 as well as inf
    hr_ks, ndcg_ks = (1, 10, 50, 100, 200, 500, 1000), (1, 10, 50, 100, 200)  # the reference's cut-offs
    got = metrics_from_ranks(ranks, hr_ks, ndcg_ks, miss_rank=REFERENCE_MISS_RANK)
    want = loop_metrics(ranks, hr_ks, ndcg_ks, miss_rank=2501)
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-6), key
    # HR/NDCG are unaffected by the cap; only MRR changes.
    plain = metrics_from_ranks(ranks, hr_ks, ndcg_ks)
    for key in want:
        if key != "mrr":
            assert got[key] == plain[key]
    deep = ranks[ranks > 2500]  # each moves from 1/rank (0 for inf) to 1/2501
    assert got["mrr"] - plain["mrr"] == pytest.approx((1 / 2501 - 1 / deep).sum() / len(ranks), abs=1e-12)


def test_hand_computed_values():
    got = metrics_from_ranks(np.array([1.0, 3.0, np.inf]), hr_ks=(1, 5), ndcg_ks=(2, 10))
    assert got["hr@1"] == pytest.approx(1 / 3)
    assert got["hr@5"] == pytest.approx(2 / 3)
    assert got["ndcg@2"] == pytest.approx(1 / 3)  # rank 3 is outside @2
    assert got["ndcg@10"] == pytest.approx((1 + 0.5) / 3)  # 1/log2(4) = 0.5
    assert got["mrr"] == pytest.approx((1 + 1 / 3) / 3)
    capped = metrics_from_ranks(np.array([1.0, np.inf, 3000.0]), hr_ks=(200,), ndcg_ks=(), miss_rank=2501)
    assert capped == pytest.approx({"hr@200": 1 / 3, "mrr": (1 + 2 / 2501) / 3})


def test_cut_off_larger_than_any_rank_and_batch_of_one():
    # A catalogue of 7 items: every finite rank is <= 7, so hr@200 is the fraction of non-misses.
    ranks = np.array([7.0, 2.0, np.inf, 1.0])
    got = metrics_from_ranks(ranks)
    assert got["hr@200"] == pytest.approx(0.75)
    assert got["hr@50"] == got["hr@200"]
    assert got["ndcg@200"] == pytest.approx((1 / 3 + 1 / math.log2(3) + 1) / 4)
    one = metrics_from_ranks(np.array([4.0]))
    assert one == pytest.approx(loop_metrics([4.0], DEFAULT_HR_KS, DEFAULT_NDCG_KS))
    assert one["hr@1"] == 0.0 and one["hr@5"] == 1.0 and one["mrr"] == 0.25


def test_per_user_arrays():
    ranks = np.array([1.0, 11.0, np.inf])
    per_user = per_user_metrics(ranks, hr_ks=(10,), ndcg_ks=(50,))
    assert set(per_user) == {"hr@10", "ndcg@50", "mrr"}
    np.testing.assert_array_equal(per_user["hr@10"], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(per_user["ndcg@50"], [1.0, 1 / math.log2(12), 0.0])
    np.testing.assert_allclose(per_user["mrr"], [1.0, 1 / 11, 0.0])
    assert all(v.dtype == np.float64 and v.shape == (3,) for v in per_user.values())


def test_streamed_sums_equal_one_pass_and_count_misses():
    ranks = random_ranks(np.random.default_rng(4), 1000, high=3000)
    total: dict[str, float] = {}
    for batch in np.array_split(ranks, 7):
        total = add_sums(total, metric_sums(batch, miss_rank=2501))
    total = add_sums(total, metric_sums(np.array([]), miss_rank=2501))  # an empty batch adds nothing
    assert total["n_users"] == 1000
    assert total["n_misses"] == int((ranks > 2500).sum())
    streamed = means_from_sums(total)
    direct = metrics_from_ranks(ranks, miss_rank=2501)
    assert streamed.keys() == direct.keys()
    for key in direct:
        assert streamed[key] == pytest.approx(direct[key], abs=1e-12)


def test_torch_input_equals_numpy_input():
    ranks = random_ranks(np.random.default_rng(5), 64, high=100)
    assert metrics_from_ranks(torch.from_numpy(ranks)) == metrics_from_ranks(ranks)
    assert metrics_from_ranks(torch.from_numpy(ranks).float()) == metrics_from_ranks(ranks)


@pytest.mark.parametrize(
    ("ranks", "message"),
    [
        (np.array([1.0, np.nan]), "NaN"),
        (np.array([0.0, 2.0]), "1-based"),
        (np.array([1.5]), "whole numbers"),
        (np.ones((2, 2)), "1-D"),
    ],
)
def test_bad_ranks_raise(ranks, message):
    with pytest.raises(ValueError, match=message):
        metrics_from_ranks(ranks)


def test_bad_cut_offs_and_empty_input_raise():
    with pytest.raises(ValueError, match="cut-off 2501 >= miss_rank"):
        metrics_from_ranks(np.array([1.0]), hr_ks=(2501,), miss_rank=2501)
    with pytest.raises(ValueError, match="positive integers"):
        metrics_from_ranks(np.array([1.0]), hr_ks=(0,))
    with pytest.raises(ValueError, match="no users"):
        metrics_from_ranks(np.array([]))
    with pytest.raises(ValueError, match="cannot add"):
        add_sums(metric_sums(np.array([1.0])), metric_sums(np.array([1.0]), hr_ks=(3,)))
