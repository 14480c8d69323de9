"""Reasons: the history items whose removal lowers a recommendation's score most."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hstu_blair.serving.catalogue import Catalogue
from hstu_blair.serving.queries import PreparedQuery, Reason, Recommendations
from hstu_blair.serving.reasons import add_reasons, candidates
from hstu_blair.serving.recommender import Recommender
from hstu_blair.serving.scorer import Scorer


class BagModel(nn.Module):
    """A stand-in model: the query is the normalised sum of the history's item vectors."""

    def __init__(self, vectors: torch.Tensor) -> None:
        super().__init__()
        self.table = nn.Parameter(vectors, requires_grad=False)  # (N+1, D), row 0 padding
        self.items = nn.Module()
        self.items.num_items = vectors.shape[0] - 1

    def item_vectors(self) -> torch.Tensor:
        return F.normalize(self.table, dim=-1)

    def item_table(self) -> torch.Tensor:
        return self.table

    def query_vectors(self, ids, timestamps, lengths, table) -> torch.Tensor:
        return F.normalize(table[ids].sum(dim=1), dim=-1)  # (B, D); padding rows are zero


def _bag_scorer() -> tuple[Scorer, Catalogue]:
    e = torch.eye(4)
    vectors = torch.stack([torch.zeros(4), e[0], e[1], 0.9 * e[0] + 0.1 * e[2], e[3], e[1] + e[3]])
    catalogue = Catalogue(["A", "B", "nearA", "D", "nearB"], ["a", "b", "near a", "d", "near b"], [""] * 5)
    return Scorer(BagModel(vectors), max_len=10), catalogue


def _query(ids: list[int], k: int = 2) -> PreparedQuery:
    return PreparedQuery(np.array(ids, np.int64), np.arange(len(ids), dtype=np.int64) + 100, 200, True, k)


def _answer(scorer: Scorer, catalogue: Catalogue, prepared: list[PreparedQuery]) -> list[Recommendations]:
    values, indices = scorer.top_k(prepared)
    return [catalogue.results(v, i, p.k) for v, i, p in zip(values, indices, prepared)]


def test_the_item_that_drives_a_recommendation_is_named():
    scorer, catalogue = _bag_scorer()
    prepared = [_query([1, 2]), _query([2, 1])]  # A then B; B then A
    for result in add_reasons(scorer, catalogue, prepared, _answer(scorer, catalogue, prepared)):
        by_item = {r.item_id: r.reasons for r in result}
        assert set(by_item) == {"nearA", "nearB"}
        assert [r.item_id for r in by_item["nearA"]] == ["A"]  # removing B raises nearA's score
        assert [r.item_id for r in by_item["nearB"]] == ["B"]
        reason = by_item["nearA"][0]
        assert reason.title == "a" and reason.weight > 0


def test_a_history_of_one_item_names_it_with_the_score_as_weight():
    scorer, catalogue = _bag_scorer()
    prepared = [_query([1, 1, 1], k=3)]  # one distinct item: removing it leaves nothing (score 0)
    result = add_reasons(scorer, catalogue, prepared, _answer(scorer, catalogue, prepared))[0]
    assert len(result) == 3
    for r in result:
        assert r.reasons == (Reason("A", "a", pytest.approx(r.score, abs=1e-6)),)


def test_candidates_are_the_last_distinct_items_read():
    assert candidates(np.array([1, 2, 3, 2, 4, 4]), max_len=10, last=3) == [4, 2, 3]
    assert candidates(np.array([1, 2, 3, 2, 4, 4]), max_len=2, last=5) == [4]


@pytest.fixture(scope="module")
def rec(id_run) -> Recommender:
    return Recommender.load(id_run, persist=False)


def test_a_trained_model_with_one_item_names_it_first(rec):
    result = rec.recommend(["i7"], k=10, explain=True)
    assert len(result) == 10
    assert all(r.reasons and r.reasons[0].item_id == "i7" for r in result)
    assert rec.recommend(["i7"], k=10)[0].reasons == ()


def test_reasons_come_from_the_history_best_first(rec):
    history = ["i1", "i2", "i3", "i9", "i4", "i5", "i6"]
    result = rec.recommend(history, k=8, explain=True)
    plain = rec.recommend(history, k=8)
    assert [r.item_id for r in result] == [r.item_id for r in plain]
    named = {reason.item_id for r in result for reason in r.reasons}
    assert named and named <= {"i9", "i4", "i5", "i6", "i3"}  # the 5 most recent distinct items
    for r in result:
        weights = [reason.weight for reason in r.reasons]
        assert len(weights) <= 3 and all(w > 0 for w in weights) and weights == sorted(weights, reverse=True)


def test_batch_and_user_reasons_equal_single_calls(rec):
    single = [rec.recommend(h, k=4, explain=True) for h in (["i1", "i2"], ["i5"], ["i8", "i9", "i10"])]
    batch = rec.recommend_batch([["i1", "i2"], ["i5"], ["i8", "i9", "i10"]], k=4, explain=True)
    for s, b in zip(single, batch):
        assert [r.item_id for r in s] == [r.item_id for r in b]
        assert [[x.item_id for x in r.reasons] for r in s] == [[x.item_id for x in r.reasons] for r in b]
    user = rec.recommend_user("u3", k=4, explain=True)
    assert any(r.reasons for r in user)
