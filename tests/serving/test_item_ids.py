"""Item ids in one canonical form, idempotent adds, and /healthz without filesystem paths.

Issue 17: ``" 1"`` was accepted beside ``1``, an id with ``\\n`` could be added but not fetched, a
client retrying an add after a lost reply got 409 although its item was there, and the open
``/healthz`` showed absolute paths."""

from __future__ import annotations

import json
from urllib.parse import quote

import httpx
import pytest
from fastapi.testclient import TestClient

from hstu_blair.serving.app import create_app
from hstu_blair.serving.recommender import Recommender, ServingError, check_new_id
from tests.conftest import HashEncoder, running_server

KEY = "ids-token"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def served(text_run, copy_run):
    run = copy_run(text_run)
    rec = Recommender.load(run, encoder=HashEncoder())
    with TestClient(create_app(rec, api_key=KEY)) as client:
        yield client, run


@pytest.mark.parametrize("item_id", [" 1", "1 ", "\t1", "a\nb", "a\x00b", "a\x7fb", "\u0085x", ".", "..", ""])
def test_ids_outside_the_canonical_form_are_422(served, item_id):
    client, _ = served
    response = client.post("/items", json={"item_id": item_id, "text": "some words"}, headers=AUTH)
    assert response.status_code == 422, response.text
    with pytest.raises(ServingError):
        check_new_id(item_id)


def test_every_accepted_id_can_be_fetched(text_run, copy_run):
    """Over a real server (TestClient decodes percent-escapes twice): percent-encoded, every id
    ``POST /items`` accepts comes back from ``GET /items/{id}``."""
    rec = Recommender.load(copy_run(text_run), encoder=HashEncoder())
    odd = ["a/b", "a?b#c", "100%", "é ☃ 🎬", "a b", "/lead", "x//y", "..a", "%2F", "1"]
    with running_server(create_app(rec, api_key=KEY)) as url, httpx.Client(base_url=url) as http:
        for i, item_id in enumerate(odd):
            body = {"item_id": item_id, "text": f"item words {i}", "title": f"T{i}"}
            added = http.post("/items", json=body, headers=AUTH)
            assert added.status_code == 201, (item_id, added.text)
            fetched = http.get(f"/items/{quote(item_id, safe='')}")
            assert fetched.status_code == 200, item_id
            assert fetched.json() == {
                "item_id": item_id,
                "title": f"T{i}",
                "text": f"item words {i}",
                "attributes": {},
            }


def test_a_repeated_add_is_200_and_another_text_409(served):
    client, run = served
    body = {"item_id": "retry-me", "text": "words of the item", "title": "Retry"}
    first = client.post("/items", json=body, headers=AUTH)
    again = client.post("/items", json=body, headers=AUTH)
    assert first.status_code == 201 and again.status_code == 200
    assert (
        again.json()
        == first.json()
        == {
            "item_id": "retry-me",
            "title": "Retry",
            "text": "words of the item",
            "attributes": {},
        }
    )
    for change in ({"text": "other words"}, {"title": "Other"}):
        conflict = client.post("/items", json={**body, **change}, headers=AUTH)
        assert conflict.status_code == 409 and "another text or title" in conflict.json()["detail"]
    untitled = {"item_id": "plain", "text": "plain words"}
    assert [client.post("/items", json=untitled, headers=AUTH).status_code for _ in range(2)] == [201, 200]
    assert Recommender.load(run, encoder=HashEncoder()).num_items == 42  # each added once


def test_a_retry_through_another_process_is_200(text_run, copy_run):
    """The first add was committed to the store through one server process (its reply lost); the
    retry reaches another process serving the same store: 200 with the item, not 409, added once."""
    run = copy_run(text_run)
    a = TestClient(create_app(Recommender.load(run, encoder=HashEncoder()), api_key=KEY))
    b_rec = Recommender.load(run, encoder=HashEncoder())
    b = TestClient(create_app(b_rec, api_key=KEY))
    body = {"item_id": "sent-twice", "text": "words of the item", "title": "Twice"}
    assert a.post("/items", json=body, headers=AUTH).status_code == 201
    again = b.post("/items", json=body, headers=AUTH)
    assert again.status_code == 200 and again.json() == {
        "item_id": "sent-twice",
        "title": "Twice",
        "text": body["text"],
        "attributes": {},
    }
    assert b.post("/items", json={**body, "text": "other"}, headers=AUTH).status_code == 409
    assert b_rec.store.counts()["items"] == 1
    b_rec.add_events([("new-user", "sent-twice", 2_000_000_000)])  # the same canonical id in events
    assert b.get("/users/new-user/recommendations", params={"k": 3}, headers=AUTH).status_code == 200


def test_healthz_shows_paths_only_with_the_token(served, id_run):
    client, run = served
    open_health = client.get("/healthz")
    assert open_health.status_code == 200
    assert "run_dir" not in open_health.json() and "store" not in open_health.json()
    assert str(run) not in open_health.text and "/tmp" not in open_health.text
    wrong = client.get("/healthz", headers={"Authorization": "Bearer nope"}).json()
    assert "run_dir" not in wrong
    trusted = client.get("/healthz", headers=AUTH).json()
    assert trusted["run_dir"] == str(run) and trusted["store"].endswith(f"{run}/store.sqlite")
    with TestClient(create_app(Recommender.load(id_run))) as open_app:  # no token set: never
        text = open_app.get("/healthz").text
        assert "run_dir" not in json.loads(text) and str(id_run) not in text
