"""``explain`` over HTTP: reasons in POST /recommend, /recommend/batch and GET /users/ID/recommendations."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from hstu_blair.serving.app import create_app
from hstu_blair.serving.recommender import Recommender


@pytest.fixture(scope="module")
def rec(id_run) -> Recommender:
    return Recommender.load(id_run, persist=False)


@pytest.fixture(scope="module")
def client(rec):
    with TestClient(create_app(rec)) as c:
        yield c


def _reasons(items: list[dict]) -> list[list[str]]:
    return [[x["item_id"] for x in item["reasons"]] for item in items]


def test_recommend_with_and_without_explain(client, rec):
    body = client.post("/recommend", json={"history": ["i1", "i2", "i3"], "k": 4, "explain": True}).json()
    expected = rec.recommend(["i1", "i2", "i3"], k=4, explain=True)
    assert [i["item_id"] for i in body["items"]] == [r.item_id for r in expected]
    assert _reasons(body["items"]) == [[x.item_id for x in r.reasons] for r in expected]
    assert all(set(x) == {"item_id", "title", "weight"} for i in body["items"] for x in i["reasons"])
    plain = client.post("/recommend", json={"history": ["i1", "i2", "i3"], "k": 4}).json()
    assert all("reasons" not in item for item in plain["items"])


def test_batch_explains_the_entries_that_ask(client):
    requests = [{"history": ["i5"], "k": 3, "explain": True}, {"history": ["i5"], "k": 3}]
    explained, plain = client.post("/recommend/batch", json={"requests": requests}).json()["results"]
    assert _reasons(explained["items"]) == [["i5"]] * 3
    assert all("reasons" not in item for item in plain["items"])


def test_user_recommendations_explain(client, rec):
    body = client.get("/users/u2/recommendations", params={"k": 3, "explain": "true"}).json()
    expected = rec.recommend_user("u2", k=3, explain=True)
    assert _reasons(body["items"]) == [[x.item_id for x in r.reasons] for r in expected]
    plain = client.get("/users/u2/recommendations", params={"k": 3}).json()
    assert all("reasons" not in item for item in plain["items"])
    new = client.get("/users/nobody/recommendations", params={"k": 2, "explain": "true"}).json()
    assert [item["reasons"] for item in new["items"]] == [[], []]  # popular items: no history to name
