"""Unknown query parameters are refused with 422 on every route, naming them and the accepted ones;
parameters declared in a route's signature (later ones too) are accepted."""

from __future__ import annotations

import pytest
from fastapi import APIRouter
from fastapi import Query as QueryParam
from fastapi.testclient import TestClient

from hstu_blair.serving.app import add_routes, create_app
from hstu_blair.serving.recommender import Recommender


@pytest.fixture(scope="module")
def client(id_run):
    with TestClient(create_app(Recommender.load(id_run, persist=False))) as c:
        yield c


def test_unknown_query_parameter_is_422_naming_it(client):
    reply = client.get("/items", params={"q": "item"})
    assert reply.status_code == 422
    (error,) = reply.json()["detail"]
    assert error["loc"] == ["query", "q"] and error["type"] == "extra_forbidden"
    assert "'q'" in error["msg"] and "accepts: limit, query" in error["msg"]
    assert client.get("/items", params={"query": "item", "limit": 3}).status_code == 200


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", "/items/i1?verbose=1"),
        ("get", "/similar?item_id=i1&kk=3"),
        ("get", "/users/u1/recommendations?limit=3"),
        ("get", "/healthz?x"),
        ("get", "/metrics?debug=true"),
        ("post", "/recommend?k=3"),
        ("delete", "/users/u1?all=1"),
    ],
)
def test_every_route_refuses_unknown_parameters(client, method, url):
    kwargs = {"json": {"history": ["i1"]}} if method == "post" else {}
    reply = getattr(client, method)(url, **kwargs)
    assert reply.status_code == 422, reply.text
    assert reply.json()["detail"][0]["loc"][0] == "query"


def test_declared_parameters_and_the_page_are_accepted(client):
    assert client.get("/similar", params={"item_id": "i1", "k": 3}).status_code == 200
    assert client.get("/", params={"history": "i1,i2", "k": "5", "user": "u1"}).status_code == 200
    assert client.get("/openapi.json", params={"v": "1"}).status_code == 200  # not a FastAPI route


def test_a_parameter_added_to_a_signature_is_accepted(id_run):
    app = create_app(Recommender.load(id_run, persist=False))
    api = APIRouter()

    @api.get("/probe")
    async def probe(filter: str = QueryParam(""), explain: bool = False) -> dict[str, object]:
        return {"filter": filter, "explain": explain}

    add_routes(app, api)
    with TestClient(app) as c:
        assert c.get("/probe", params={"filter": "category=x", "explain": "true"}).json() == {
            "filter": "category=x",
            "explain": True,
        }
        assert "accepts: explain, filter" in c.get("/probe", params={"explain": 1, "why": 1}).text
