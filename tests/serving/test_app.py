"""The HTTP service: raw ids over JSON, 4xx for bad input, micro-batching, metrics, a real server."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from hstu_blair.serving import growth
from hstu_blair.serving.app import MicroBatcher, create_app
from hstu_blair.serving.recommender import Recommender
from tests.conftest import running_server


@pytest.fixture(scope="module")
def rec(id_run) -> Recommender:
    return Recommender.load(id_run)


@pytest.fixture(scope="module")
def client(rec):
    with TestClient(create_app(rec, max_k=50, max_history=100)) as c:
        yield c


def _ids(body: dict) -> list[str]:
    return [item["item_id"] for item in body["items"]]


def test_recommend_in_raw_ids(client, rec):
    response = client.post("/recommend", json={"history": ["i1", "i2", "i3"], "k": 5})
    assert response.status_code == 200
    body = response.json()
    assert _ids(body) == [r.item_id for r in rec.recommend(["i1", "i2", "i3"], k=5)]
    assert body["skipped"] == [] and all(set(item) == {"item_id", "score", "title"} for item in body["items"])
    user = client.post("/recommend", json={"user_id": "u3", "k": 4, "exclude_seen": False}).json()
    assert _ids(user) == [r.item_id for r in rec.recommend_user("u3", k=4, exclude_seen=False)]
    # numbers are taken as (string) ids
    assert client.post("/recommend", json={"history": [1, "i1"]}).json()["detail"][0]["ids"] == ["1"]


def test_unknown_ids_are_422_naming_them(client):
    response = client.post("/recommend", json={"history": ["i1", "ghost", "nope"]})
    assert response.status_code == 422
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["body", "history"] and detail["ids"] == ["ghost", "nope"]
    assert "'ghost'" in detail["msg"] and "'nope'" in detail["msg"]
    skipped = client.post(
        "/recommend", json={"history": ["i1", "ghost"], "k": 3, "skip_unknown": True}
    ).json()
    assert skipped["skipped"] == ["ghost"] and len(skipped["items"]) == 3
    user = client.post("/recommend", json={"user_id": "nobody"})
    assert user.status_code == 422 and user.json()["detail"][0]["loc"] == ["body", "user_id"]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"history": ["i1"], "k": 51}, "k"),  # above max_k
        ({"history": ["i1"], "k": 10**30}, "k"),
        ({"history": ["i1"], "k": 0}, "k"),
        ({"history": [f"i{i % 40}" for i in range(101)]}, "history"),  # above max_history
        ({"history": "i1"}, "history"),
        ({"history": ["i1"], "timestamps": [1, 2]}, None),
        ({"history": ["i1"], "timestamps": [2**70]}, None),
        ({"history": ["i1"], "user_id": "u1"}, None),
        ({}, None),
        ({"history": []}, None),
        ({"history": ["i1"], "surprise": 1}, "surprise"),
        ({"history": [None]}, "history"),
    ],
)
def test_bad_requests_are_422(client, body, where):
    response = client.post("/recommend", json=body)
    assert response.status_code == 422, response.text
    if where is not None:
        assert where in response.json()["detail"][0]["loc"]


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"",
        b"[1, 2]",
        b'"text"',
        b"null",
        b"[" * 50_000,
        '{"history": ["\u00e9\u2603"]}'.encode(),
        b'{"history": ["\\udc7b"]}',  # a lone surrogate: valid JSON, not encodable as UTF-8
        b'{"history": ["i1"], "\\ud800": 1}',
        b'{"history": ["i1"], "k": 1e999}',
        b'{"history": ["i1"], "k": NaN}',
    ],
)
def test_malformed_bodies_are_4xx(client, raw):
    response = client.post("/recommend", content=raw, headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500, response.text
    assert client.get("/healthz").status_code == 200


def test_batch_endpoint_equals_single_calls(client):
    requests = [
        {"history": ["i1", "i2"], "k": 3},
        {"user_id": "u5", "k": 2},
        {"history": ["i9"], "exclude_seen": False},
    ]
    batch = client.post("/recommend/batch", json={"requests": requests}).json()["results"]
    singles = [client.post("/recommend", json=r).json() for r in requests]
    assert [_ids(b) for b in batch] == [_ids(s) for s in singles]
    bad = client.post("/recommend/batch", json={"requests": [requests[0], {"history": ["zz"]}]})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "requests", 1, "history"]


def test_items_endpoints(client):
    assert client.get("/items/i7").json() == {
        "item_id": "i7",
        "title": "i7",
        "text": "item number 7 in group 2",
        "attributes": {"category": "g2", "price": 7.0, "in_stock": True},
    }
    assert client.get("/items/ghost").status_code == 404
    found = client.get("/items", params={"query": "I1", "limit": 3}).json()
    assert [f["item_id"] for f in found] == ["i1", "i10", "i11"]
    assert client.get("/items", params={"limit": 1000}).status_code == 422
    similar = client.get("/similar", params={"item_id": "i7", "k": 3}).json()
    assert len(similar["items"]) == 3 and "i7" not in _ids(similar)
    assert client.get("/similar", params={"item_id": "ghost"}).status_code == 422
    added = client.post("/items", json={"item_id": "n1", "text": "a new item"})
    assert added.status_code == 400 and "ID-only" in added.json()["detail"]


def test_add_item_over_http(text_run, hash_encoder):
    rec = Recommender.load(text_run, encoder=hash_encoder, persist=False)
    with TestClient(create_app(rec)) as client:
        body = {"item_id": "fresh", "text": "item number 3 in group 3", "title": "Fresh"}
        assert client.post("/items", json=body).status_code == 201
        assert client.post("/items", json=body).status_code == 200  # a retry: the same item
        assert client.post("/items", json={**body, "text": "other"}).status_code == 409
        assert client.post("/items", json={"item_id": "x", "text": ""}).status_code == 422
        lone = b'{"item_id": "y", "text": "t", "title": "\\udc00"}'
        assert (
            client.post("/items", content=lone, headers={"content-type": "application/json"}).status_code
            == 422
        )
        assert client.get("/items/fresh").json()["title"] == "Fresh"
        everything = client.post("/recommend", json={"history": ["i1"], "k": 1000}).json()
        assert "fresh" in _ids(everything) and len(everything["items"]) == 40
        assert client.post("/recommend", json={"history": ["fresh"]}).status_code == 200


def test_health_docs_page_and_metrics(client):
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["num_items"] == 40 and health["fusion"] == "id"
    assert client.get("/docs").status_code == 200
    assert {"/recommend", "/recommend/batch", "/items", "/healthz"} <= set(
        client.get("/openapi.json").json()["paths"]
    )
    page = client.get("/")
    assert page.status_code == 200 and "app.js" in page.text
    assert client.get("/static/app.js").status_code == 200
    client.post("/recommend", json={"history": ["i1"]})
    client.post("/recommend", json={"history": ["ghost"]})
    text = client.get("/metrics").text
    assert 'hstu_blair_http_requests_total{method="POST",route="/recommend",status="200"}' in text
    assert 'hstu_blair_http_requests_total{method="POST",route="/recommend",status="422"}' in text
    assert 'hstu_blair_http_request_seconds_bucket{le="0.005",route="/recommend"}' in text
    assert "hstu_blair_batch_size_count" in text and "hstu_blair_catalogue_items 40.0" in text


def test_micro_batcher_gathers_concurrent_submissions():
    calls: list[list[int]] = []

    def handle(items: list[int]) -> list[int]:
        calls.append(items)
        time.sleep(0.01)
        return [i * 10 for i in items]

    async def main(window_s: float, max_batch: int) -> list[int]:
        batcher = MicroBatcher(handle, window_s, max_batch)
        try:
            return await asyncio.gather(*(batcher.submit(i) for i in range(40)))
        finally:
            await batcher.stop()

    assert asyncio.run(main(0.005, 16)) == [i * 10 for i in range(40)]
    assert len(calls) == 3 and max(len(c) for c in calls) == 16  # 40 = 16 + 16 + 8
    calls.clear()
    assert asyncio.run(main(0.0, 1)) == [i * 10 for i in range(40)]
    assert len(calls) == 40


def test_micro_batcher_passes_errors_to_every_caller():
    def handle(items: list[int]) -> list[int]:
        raise RuntimeError("boom")

    async def main() -> list:
        batcher = MicroBatcher(handle, 0.002, 8)
        try:
            return await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
        finally:
            await batcher.stop()

    assert all(isinstance(r, RuntimeError) for r in asyncio.run(main()))


@pytest.mark.parametrize(("window_ms", "max_batch"), [(20.0, 64), (0.0, 1)])
def test_concurrent_http_requests_share_model_calls(rec, window_ms, max_batch):
    """32 concurrent requests over a real server: batched into a few model calls (or one each)."""
    app = create_app(rec, batch_window_ms=window_ms, max_batch=max_batch)
    histories = [[f"i{(3 * j + s) % 40}" for s in range(1 + j % 5)] for j in range(32)]
    expected = [[r.item_id for r in rec.recommend(h, k=5)] for h in histories]

    async def fire(url: str) -> list[list[str]]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            responses = await asyncio.gather(
                *(http.post("/recommend", json={"history": h, "k": 5}) for h in histories)
            )
        return [_ids(r.json()) for r in responses]

    with running_server(app) as url:
        before = rec.model_calls
        got = asyncio.run(fire(url))
        calls = rec.model_calls - before
        metrics = httpx.get(f"{url}/metrics").text
    assert got == expected
    if max_batch == 1:
        assert calls == 32
    else:
        assert calls < 16, f"{calls} model calls for 32 concurrent requests"
    assert f"hstu_blair_batch_size_count {float(calls)}" in metrics


def test_fuzzed_bodies_never_5xx_on_a_real_server(rec):
    rng = random.Random(0)
    atoms = [
        None,
        True,
        -1,
        0,
        10**40,
        1.5,
        float("nan"),
        "i1",
        "\u2603\U0001f600",
        "\udc00",
        "",
        "x" * 5000,
        [],
        {},
    ]

    def value(depth: int = 0):
        pick = rng.random()
        if depth < 3 and pick < 0.2:
            return [value(depth + 1) for _ in range(rng.randrange(4))]
        if depth < 3 and pick < 0.35:
            return {
                rng.choice(["history", "k", "user_id", "timestamps", "x"]): value(depth + 1) for _ in range(3)
            }
        return rng.choice(atoms)

    bodies = [json.dumps(value()).encode() for _ in range(150)]
    bodies += [
        json.dumps({"history": ["i1"], "k": value(), "timestamps": value(), "exclude_seen": value()}).encode()
        for _ in range(100)
    ]
    bodies += [b"{", b"\xff\xfe", b'{"history": ["i1"', b"[" * 10_000 + b"]" * 10_000, b"1e999999"]
    statuses = []
    with (
        running_server(create_app(rec, max_k=100, max_history=50)) as url,
        httpx.Client(base_url=url) as http,
    ):
        for body in bodies:
            for path in ("/recommend", "/recommend/batch", "/items"):
                statuses.append(
                    http.post(path, content=body, headers={"content-type": "application/json"}).status_code
                )
        alive = http.post("/recommend", json={"history": ["i1"]}).status_code
    assert max(statuses) < 500, sorted(set(statuses))
    assert alive == 200


def test_server_is_thread_safe_with_concurrent_adds(text_run, hash_encoder):
    """Adding items while requests are served: every response is well-formed, every item arrives."""
    rec = Recommender.load(text_run, encoder=hash_encoder, persist=False)
    with TestClient(create_app(rec)) as client:
        errors: list[int] = []

        def ask() -> None:
            for _ in range(20):
                r = client.post("/recommend", json={"history": ["i1", "i2"], "k": 50})
                if r.status_code != 200:
                    errors.append(r.status_code)

        threads = [threading.Thread(target=ask) for _ in range(3)]
        for t in threads:
            t.start()
        for i in range(10):
            client.post("/items", json={"item_id": f"add{i}", "text": f"item number {i} in group 9"})
        for t in threads:
            t.join()
        assert errors == [] and rec.num_items == 50


def test_the_text_encoder_is_built_at_start_not_on_the_first_added_item(text_run, id_run, monkeypatch):
    built = []
    monkeypatch.setattr(growth, "build_run_encoder", lambda store, device: built.append(store) or object())
    rec = Recommender.load(text_run)
    assert rec.growth.encoder is None
    with TestClient(create_app(rec)):
        assert rec.growth.encoder is not None and len(built) == 1
    id_only = Recommender.load(id_run)
    with TestClient(create_app(id_only)):
        assert id_only.growth.encoder is None and len(built) == 1  # nothing to add items with


def test_an_encoder_that_cannot_be_built_does_not_stop_the_server(text_run):
    rec = Recommender.load(text_run)  # its test store names an encoder no registry knows
    with TestClient(create_app(rec)) as client:
        assert client.get("/healthz").status_code == 200
    assert rec.growth.encoder is None
