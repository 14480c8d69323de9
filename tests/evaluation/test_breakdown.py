"""Metrics by target popularity: bins, shares, and metrics that add up to the overall ones."""

from __future__ import annotations

import numpy as np
import pytest

from hstu_blair.evaluation.breakdown import bin_labels, metrics_by_target_popularity
from hstu_blair.evaluation.metrics import metrics_from_ranks


def test_bin_labels():
    assert bin_labels() == ["0", "1-4", "5-19", "20-99", "100-499", "500+"]
    assert bin_labels([1, 2, 10]) == ["0", "1", "2-9", "10+"]


def test_each_target_in_its_bin_and_metrics_per_bin():
    counts = np.array([0, 0, 3, 7, 250, 1000])  # item 1 never trained on, item 5 in the head
    items = np.array([1, 2, 2, 3, 5, 5, 5])
    ranks = np.array([1, 2, np.inf, 40, 1, 3, 11], dtype=np.float64)
    rows = metrics_by_target_popularity(ranks, items, counts)
    by_bin = {r["bin"]: r for r in rows}
    assert [r["n_targets"] for r in rows] == [1, 2, 1, 0, 0, 3]
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    assert by_bin["1-4"]["hr@10"] == pytest.approx(0.5)  # rank 2 and a miss
    assert by_bin["500+"]["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 11) / 3)
    assert "hr@10" not in by_bin["20-99"]  # an empty bin keeps its row, without metrics
    overall = metrics_from_ranks(ranks)
    for key in ("hr@10", "ndcg@10", "mrr"):
        weighted = sum(r["share"] * r[key] for r in rows if r["n_targets"])
        assert weighted == pytest.approx(overall[key])


@pytest.mark.parametrize("edges", [[], [0, 5], [5, 5], [20, 5], [1.5]])
def test_bad_edges(edges):
    with pytest.raises(ValueError, match="edges"):
        metrics_by_target_popularity(np.array([1.0]), np.array([1]), np.array([0, 1]), edges)


def test_lengths_must_match():
    with pytest.raises(ValueError, match="same shape"):
        metrics_by_target_popularity(np.array([1.0, 2.0]), np.array([1]), np.array([0, 1]))
