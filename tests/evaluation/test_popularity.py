"""The most-popular baseline against a brute-force ranking, and its place in a training run."""

from __future__ import annotations

import json

import numpy as np

from hstu_blair.data.dataset import SequenceData
from hstu_blair.data.splits import make_split
from hstu_blair.evaluation.evaluate import EvalOptions
from hstu_blair.evaluation.metrics import metrics_from_ranks
from hstu_blair.evaluation.popularity import evaluate_popularity, popularity_scores


def test_scores_order_by_count_then_index():
    scores = popularity_scores(np.array([0, 3, 5, 3, 0, 5]))
    order = np.argsort(-scores.numpy(), kind="stable").tolist()
    assert order == [2, 5, 1, 3, 0, 4]
    assert len(set(scores.tolist())) == 6  # no ties: exact ranks


def _brute_force_ranks(data: SequenceData, users, positions, counts) -> np.ndarray:
    order = sorted(range(1, data.num_items + 1), key=lambda i: (-counts[i], i))
    ranks = []
    for u, p in zip(users, positions):
        seq = data.user_items(u)
        seen = set(seq[:p].tolist())
        target = int(seq[p])
        if target in seen:
            ranks.append(np.inf)
            continue
        listed = [i for i in order if i not in seen]
        ranks.append(listed.index(target) + 1)
    return np.array(ranks, dtype=np.float64)


def test_matches_brute_force(tiny_dataset):
    data = SequenceData.load(tiny_dataset)
    split = make_split(np.diff(data.offsets))
    counts = np.zeros(data.num_items + 1, np.int64)
    for u in range(data.num_users):
        np.add.at(counts, data.user_items(u)[: split.train_len[u]], 1)
    got = evaluate_popularity(data, split.test, counts, max_len=200, options=EvalOptions(batch_size=7))
    want = metrics_from_ranks(_brute_force_ranks(data, split.test.users, split.test.positions, counts))
    for key, value in want.items():
        assert abs(got[key] - value) < 1e-12, key
    assert got["n_users"] == len(split.test)


def test_train_reports_the_baseline(id_run):
    final = json.loads((id_run / "final_metrics.json").read_text())
    popular = final["baselines"]["most_popular"]
    assert set(popular) == {"valid", "test"}
    assert popular["test"]["n_users"] == final["metrics"]["n_users"]
    # the tiny data is a learnable cycle: the model is far above the counts, and says so
    assert final["metrics"]["ndcg@10"] > popular["test"]["ndcg@10"]
    assert final["below_most_popular"] is False
