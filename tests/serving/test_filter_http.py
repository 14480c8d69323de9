"""Filters over HTTP and the CLI, and attribute updates seen by other processes at once (SQLite
and PostgreSQL), durable across a restart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from hstu_blair.cli import main
from hstu_blair.serving.app import create_app
from hstu_blair.serving.recommender import Recommender
from tests.serving.test_item_filter import FILTERS, passing

IN_STOCK = {"where": {"in_stock": True}}


@pytest.fixture(scope="module")
def client(id_run):
    with TestClient(create_app(Recommender.load(id_run, persist=False))) as c:
        yield c


def _ids(body: dict) -> list[str]:
    return [item["item_id"] for item in body["items"]]


def test_filter_in_every_route(client):
    filt, rule = FILTERS["combined"]
    allowed = set(passing(rule))
    body = client.post("/recommend", json={"history": ["i4"], "k": 40, "filter": filt}).json()
    assert set(_ids(body)) == allowed - {"i4"}
    batch = {"requests": [{"history": ["i4"], "k": 3, "filter": filt}, {"history": ["i4"], "k": 3}]}
    results = client.post("/recommend/batch", json=batch).json()["results"]
    assert set(_ids(results[0])) <= allowed and len(_ids(results[0])) == 3 and len(_ids(results[1])) == 3
    params = {"k": 40, "filter": json.dumps(filt)}
    user = client.get("/users/u1/recommendations", params=params).json()
    assert set(_ids(user)) <= allowed and _ids(user)
    similar = client.get("/similar", params={"item_id": "i9", **params}).json()
    assert set(_ids(similar)) == allowed - {"i9"}


@pytest.mark.parametrize(
    ("route", "filt", "loc", "words"),
    [
        ("post", {"where": {"colour": "red"}}, ["body", "filter"], "unknown attribute"),
        ("post", {"where": {"category": {"min": 1}}}, ["body", "filter"], "range needs a number"),
        ("post", {"wher": {}}, ["body", "filter", "wher"], "Extra inputs"),
        ("post", {"allow": ["ghost"]}, ["body", "filter", "allow"], "unknown item id"),
        ("user", '{"where": {"in_stock": "yes"}}', ["query", "filter"], "expected a bool"),
        ("user", "{oops", ["query", "filter"], "not valid JSON"),
        ("similar", '{"where": {"colour": 1}}', ["query", "filter"], "known: category, price"),
    ],
)
def test_bad_filters_are_422_naming_the_field(client, route, filt, loc, words):
    if route == "post":
        got = client.post("/recommend", json={"history": ["i4"], "k": 3, "filter": filt})
    elif route == "user":
        got = client.get("/users/u1/recommendations", params={"filter": filt})
    else:
        got = client.get("/similar", params={"item_id": "i9", "filter": filt})
    assert got.status_code == 422, got.text
    detail = got.json()["detail"][0]
    assert detail["loc"][: len(loc)] == loc and words in detail["msg"], detail


def test_attributes_summary_and_patch(client):
    summary = client.get("/attributes").json()
    assert summary["price"] == {"kind": "number", "items": 40, "min": 0.0, "max": 39.0}
    assert summary["in_stock"] == {"kind": "bool", "items": 40, "true": 26, "false": 14}
    assert summary["category"]["kind"] == "string" and len(summary["category"]["values"]) == 5
    patched = client.patch("/items/i2", json={"attributes": {"brand": None, "on_sale": True}})
    assert patched.status_code == 200
    assert patched.json()["attributes"] == {"category": "g2", "price": 2.0, "in_stock": True, "on_sale": True}
    assert client.get("/items/i2").json()["attributes"]["on_sale"] is True
    assert client.get("/attributes").json()["on_sale"] == {"kind": "bool", "items": 1, "true": 1, "false": 0}
    assert client.patch("/items/ghost", json={"attributes": {"x": 1}}).status_code == 404
    bad = client.patch("/items/i2", json={"attributes": {"price": "cheap"}})
    assert bad.status_code == 422 and "expected a number" in bad.json()["detail"][0]["msg"]
    assert client.patch("/items/i2", json={"attributes": {"x": [1]}}).status_code == 422
    assert client.patch("/items/i2", json={"attrs": {}}).status_code == 422


def test_cli_filter(id_run, tmp_path, capsys):
    filt, rule = FILTERS["bool"]
    args = ["recommend", str(id_run), "--history", "i1,i2", "--json", "-k", "40"]
    assert main([*args, "--filter", json.dumps(filt)]) == 0
    ids = [x["item_id"] for x in json.loads(capsys.readouterr().out)["items"]]
    assert set(ids) == set(passing(rule, ["i1", "i2"]))
    (tmp_path / "f.json").write_text(json.dumps(FILTERS["one item"][0]))
    assert main([*args, "--filter", f"@{tmp_path / 'f.json'}"]) == 0
    assert [x["item_id"] for x in json.loads(capsys.readouterr().out)["items"]] == ["i31"]
    assert main([*args, "--filter", '{"where": {"colour": "red"}}']) == 2
    assert "filter.where.colour: unknown attribute; known: category" in capsys.readouterr().err
    assert main([*args, "--filter", f"@{tmp_path / 'missing.json'}"]) == 2
    assert "cannot read" in capsys.readouterr().err


OTHER_PROCESS = """
import json, sys
from hstu_blair.serving.recommender import Recommender
rec = Recommender.load(sys.argv[1], store=sys.argv[2])
if sys.argv[3] == "patch":
    print(json.dumps(rec.update_item_attributes(sys.argv[4], json.loads(sys.argv[5]))))
else:
    print(json.dumps([r.item_id for r in rec.recommend(["i4"], k=40, filter=json.loads(sys.argv[4]))]))
"""


def _other(run: Path, store: str, *argv: str) -> object:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run(
        [sys.executable, "-c", OTHER_PROCESS, str(run), store, *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_out_of_stock_in_one_process_is_filtered_in_another(id_run, copy_run, store_location):
    run = copy_run(id_run)
    rec = Recommender.load(run, store=store_location)
    with TestClient(create_app(rec)) as client:
        first = _ids(client.post("/recommend", json={"history": ["i4"], "k": 5, "filter": IN_STOCK}).json())
        target = first[0]
        # another process marks it out of stock: this server's next request no longer returns it
        assert _other(run, store_location, "patch", target, '{"in_stock": false}')["in_stock"] is False
        again = client.post("/recommend", json={"history": ["i4"], "k": 5, "filter": IN_STOCK}).json()
        assert target not in _ids(again) and len(_ids(again)) == 5
        assert client.get(f"/items/{target}").json()["attributes"]["in_stock"] is False
        # and the other way: PATCH here, the other process's next recommendation follows it
        back = client.patch(f"/items/{target}", json={"attributes": {"in_stock": True}})
        assert back.status_code == 200 and back.json()["attributes"]["in_stock"] is True
        gone = next(i for i in first[1:])
        assert client.patch(f"/items/{gone}", json={"attributes": {"in_stock": False}}).status_code == 200
        seen = _other(run, store_location, "recommend", json.dumps(IN_STOCK))
        assert target in seen and gone not in seen
    rec.close()
    restarted = Recommender.load(run, store=store_location)  # durable across a restart
    assert restarted.item(gone)["attributes"]["in_stock"] is False
    assert gone not in [r.item_id for r in restarted.recommend(["i4"], k=40, filter=IN_STOCK)]
    restarted.close()
