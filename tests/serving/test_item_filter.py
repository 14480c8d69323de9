"""Business filters (``ItemFilter``) on every serving path, exact and FAISS: exactly k items when
at least k pass, never one that fails, fewer only when fewer pass; history exclusion still holds.

The tiny dataset's attributes (conftest ``tiny_attributes``): item ``i{n}`` has category
``g{n % 5}``, price ``n``, ``in_stock`` when ``n % 3 != 0``, brand A (even n) / B (odd n), none
when ``n % 7 == 0``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hstu_blair.errors import UnknownIdError
from hstu_blair.serving import index as index_module
from hstu_blair.serving.errors import ServingError
from hstu_blair.serving.item_filter import ItemFilter, Range
from hstu_blair.serving.queries import Query
from hstu_blair.serving.recommender import Recommender

N = 40
HISTORY = ["i4", "i5", "i6"]


def attrs(n: int) -> dict:
    out = {"category": f"g{n % 5}", "price": float(n), "in_stock": n % 3 != 0}
    if n % 7:
        out["brand"] = "AB"[n % 2]
    return out


ALLOW = ["i1", "i2", "i3", "i5", "i8", "i13", "i21", "i34", "ghost"]
FILTERS = {
    "allow": ({"allow": ALLOW}, lambda n: f"i{n}" in ALLOW),
    "exclude": ({"exclude": [f"i{n}" for n in range(0, N, 2)] + ["ghost"]}, lambda n: n % 2 == 1),
    "equals": ({"where": {"category": "g2"}}, lambda n: n % 5 == 2),
    "in": (
        {"where": {"category": ["g1", "g3"], "brand": ["A"]}},
        lambda n: n % 5 in (1, 3) and n % 7 and n % 2 == 0,
    ),
    "range": ({"where": {"price": {"min": 10, "max": 25.5}}}, lambda n: 10 <= n <= 25.5),
    "open range": ({"where": {"price": {"min": 33}}}, lambda n: n >= 33),
    "bool": ({"where": {"in_stock": False}}, lambda n: n % 3 == 0),
    "combined": (
        {
            "allow": [f"i{n}" for n in range(0, 30)],
            "exclude": ["i1", "i2"],
            "where": {"in_stock": True, "price": {"max": 28}, "category": ["g0", "g1", "g2"]},
        },
        lambda n: n < 30 and n not in (1, 2) and n % 3 != 0 and n <= 28 and n % 5 in (0, 1, 2),
    ),
    "very selective": ({"where": {"price": {"min": 17, "max": 18}}}, lambda n: n in (17, 18)),
    "one item": ({"where": {"price": 31}}, lambda n: n == 31),
}
INDEXES = ["exact", "faiss", "faiss-hnsw", "faiss-ivf-bitmap", "faiss-hnsw-bitmap"]


@pytest.fixture(scope="module", params=INDEXES)
def rec(request, id_run):
    """A recommender per index; ``-bitmap``: FAISS searches through its ID selector (no exact
    scoring of the allowed subset up front)."""
    name = request.param.removesuffix("-bitmap").replace("faiss-ivf", "faiss")
    with pytest.MonkeyPatch.context() as mp:
        if request.param.endswith("-bitmap"):
            mp.setattr(index_module, "SUBSET_EXACT", 0)
        recommender = Recommender.load(id_run, index=name, persist=False)
        recommender.kind = request.param
        yield recommender


def passing(rule, exclude=()) -> list[str]:
    return [f"i{n}" for n in range(N) if rule(n) and f"i{n}" not in exclude]


def seen(rec, user: str) -> list[str]:
    return [rec.catalogue.item_ids[i] for i in rec.user_history(user)[0]]


def check(result, allowed: list[str], k: int) -> list[str]:
    ids = [r.item_id for r in result]
    assert len(ids) == min(k, len(allowed)), (ids, allowed)
    assert set(ids) <= set(allowed) and len(set(ids)) == len(ids)
    return ids


@pytest.mark.parametrize("name", list(FILTERS))
def test_each_filter_kind_gives_exactly_k_allowed_items(rec, name):
    filt, rule = FILTERS[name]
    allowed = passing(rule, exclude=HISTORY)
    for k in (1, 5, 10, 40):
        ids = check(rec.recommend(HISTORY, k=k, filter=filt), allowed, k)
        if rec.kind in ("exact", "faiss", "faiss-ivf-bitmap"):  # exhaustive here: the exact order
            everything = [r.item_id for r in rec.recommend(HISTORY, k=N)]
            assert ids == [i for i in everything if i in allowed][:k]
    seen = rec.recommend(HISTORY, k=N, exclude_seen=False, filter=filt)
    check(seen, passing(rule), N)  # without history exclusion, the history's allowed items come back


@pytest.mark.parametrize("name", ["combined", "very selective", "bool"])
def test_user_batch_similar_and_popular_filter(rec, name):
    filt, rule = FILTERS[name]
    check(rec.recommend_user("u1", k=10, filter=filt), passing(rule, seen(rec, "u1")), 10)
    check(rec.recommend_user("nobody", k=10, new_user="popular", filter=filt), passing(rule), 10)
    check(rec.popular(5, filter=filt), passing(rule), 5)
    check(rec.similar_items("i9", k=10, filter=filt), passing(rule, ["i9"]), 10)
    other, other_rule = FILTERS["equals"]
    own = Query(history=HISTORY, k=10, filter=other)  # its own filter wins over the batch's
    results = rec.recommend_batch([HISTORY, own, Query(history=["i1"], k=3)], ["u2"], k=10, filter=filt)
    check(results[0], passing(rule, HISTORY), 10)
    check(results[1], passing(other_rule, HISTORY), 10)
    check(results[2], passing(rule, ["i1"]), 3)
    check(results[3], passing(rule, seen(rec, "u2")), 10)
    mixed = rec.recommend_batch([Query(history=HISTORY, k=10, filter=filt), HISTORY], k=10)
    check(mixed[0], passing(rule, HISTORY), 10)
    check(mixed[1], passing(lambda n: True, HISTORY), 10)


def test_filter_forms_are_the_same_filter(rec):
    as_dict = {"where": {"in_stock": True, "price": {"max": 20}}, "exclude": ["i1"]}
    parsed = ItemFilter.parse(json.dumps(as_dict))
    assert parsed == ItemFilter.parse(as_dict) == ItemFilter.parse(parsed)
    assert parsed.where == {"in_stock": True, "price": Range(None, 20)} and parsed.to_dict() == as_dict
    results = [[r.item_id for r in rec.recommend(HISTORY, k=8, filter=f)] for f in (as_dict, parsed)]
    assert results[0] == results[1]
    mask = parsed.mask(rec.catalogue, rec.attributes)
    assert mask is parsed.mask(rec.catalogue, rec.attributes)  # cached
    assert (
        mask.shape == (N + 1,)
        and not mask[0]
        and mask.sum() == len(passing(lambda n: n % 3 != 0 and n <= 20 and n != 1))
    )


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ({"wher": {}}, ["unknown keys", "wher"]),
        (
            {"where": {"colour": "red"}},
            ["filter.where.colour", "unknown attribute", "category, price, in_stock, brand"],
        ),
        ({"where": {"category": {"min": 1}}}, ["filter.where.category", "range needs a number"]),
        ({"where": {"in_stock": "yes"}}, ["filter.where.in_stock", "expected a bool"]),
        ({"where": {"price": {"min": "1"}}}, ["filter.where.price.min", "expected a number"]),
        ({"where": {"price": {"low": 1}}}, ["filter.where.price", "min and/or max"]),
        ({"where": {"brand": []}}, ["filter.where.brand", "non-empty list"]),
        ({"where": {"brand": [{"a": 1}]}}, ["filter.where.brand", "expected a string"]),
        ({"allow": "i1"}, ["filter.allow", "list of item ids"]),
        ("{not json", ["not valid JSON"]),
        ([1, 2], ["expected an object"]),
    ],
)
def test_bad_filters_name_the_field(rec, bad, words):
    with pytest.raises(ServingError) as err:
        rec.recommend(HISTORY, k=5, filter=bad)
    assert all(w in str(err.value) for w in words), str(err.value)


def test_unknown_ids_allow_and_exclude(rec):
    with pytest.raises(UnknownIdError):
        rec.recommend(HISTORY, k=5, filter={"allow": ["ghost", "nobody"]})
    got = rec.recommend(HISTORY, k=5, filter={"allow": ["ghost", "i9"], "exclude": ["ghost"]})
    assert [r.item_id for r in got] == ["i9"]
    assert rec.recommend(HISTORY, k=5, filter={}) == rec.recommend(HISTORY, k=5)  # empty: no filter


def test_updates_change_the_mask_and_new_items_fail_where(text_run, copy_run, hash_encoder):
    rec = Recommender.load(copy_run(text_run), encoder=hash_encoder, persist=False)
    in_stock = {"where": {"in_stock": True}}
    before = rec.allowed(in_stock)
    assert rec.update_item_attributes("i1", {"in_stock": False, "colour": "red", "price": None}) == {
        "category": "g1",
        "in_stock": False,
        "brand": "B",
        "colour": "red",
    }
    after = rec.allowed(in_stock)
    i1 = rec.catalogue.index_of("i1")
    assert before[i1] and not after[i1] and after is not before
    assert [r.item_id for r in rec.recommend(["i2"], k=5, filter={"where": {"colour": "red"}})] == ["i1"]
    assert "i1" not in [r.item_id for r in rec.recommend(["i2"], k=N, filter=in_stock)]
    rec.add_item("new-1", "item number 1 in group 1")
    assert rec.item("new-1")["attributes"] == {}
    assert "new-1" not in [r.item_id for r in rec.recommend(["i2"], k=N + 1, filter=in_stock)]
    rec.update_item_attributes("new-1", {"in_stock": True})
    assert "new-1" in [r.item_id for r in rec.recommend(["i2"], k=N + 1, filter=in_stock)]
    with pytest.raises(UnknownIdError):
        rec.update_item_attributes("ghost", {"in_stock": True})
    with pytest.raises(ServingError, match="in_stock.*expected a bool"):
        rec.update_item_attributes("i2", {"in_stock": "no"})
    with pytest.raises(ServingError, match="finite number"):
        rec.update_item_attributes("i2", {"price": float("nan")})
    summary = rec.attributes.summary()
    assert summary["in_stock"]["kind"] == "bool" and summary["price"] == {
        "kind": "number",
        "items": 39,
        "min": 0.0,
        "max": 39.0,
    }
    assert summary["category"]["values"][0] == {"value": "g0", "count": 8}
    assert np.asarray(rec.attributes.column("colour")).shape == (N + 2,)
