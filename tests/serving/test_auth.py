"""Write endpoints behind a token (``api_key`` / ``--api-key`` / ``HSTU_BLAIR_API_KEY``), reads that
reveal a user's history behind it or the read token (``read_key`` / ``--read-key`` /
``HSTU_BLAIR_READ_KEY``), other reads open, and the warning for binding beyond loopback without one."""

from __future__ import annotations

import argparse
import logging

import pytest
from fastapi.testclient import TestClient

from hstu_blair.cli.serve import add_serve_parser
from hstu_blair.serving.app import API_KEY_ENV, READ_KEY_ENV, create_app, exposure_warning, is_loopback
from hstu_blair.serving.recommender import Recommender, ServingError
from tests.conftest import HashEncoder, stub_run_server

KEY = "s3cret-token"
READ = "read-only-token"


@pytest.fixture
def client(text_run, copy_run):
    rec = Recommender.load(copy_run(text_run), encoder=HashEncoder())
    with TestClient(create_app(rec, api_key=KEY, read_key=READ)) as c:
        yield c


def _bearer(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


def test_reading_a_users_history_needs_a_token(client):
    by_user = [
        lambda h: client.get("/users/u1/recommendations", params={"k": 3}, headers=h),
        lambda h: client.post("/recommend", json={"user_id": "u1", "k": 3}, headers=h),
        lambda h: client.post(
            "/recommend/batch", json={"requests": [{"history": ["i1"]}, {"user_id": "u1"}]}, headers=h
        ),
        lambda h: client.get("/users/nobody/recommendations", headers=h),  # not even whether one exists
    ]
    for ask in by_user:
        missing = ask({})
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        assert "read key or API key" in missing.json()["detail"]
        assert ask(_bearer(KEY + "x")).status_code == 401 and ask(_bearer("")).status_code == 401
        assert ask(_bearer(READ)).status_code == 200 and ask(_bearer(KEY)).status_code == 200
    assert 'hstu_blair_http_refused_total{reason="unauthorized"} 12.0' in client.get("/metrics").text
    assert client.get("/healthz").json()["user_reads_need_token"] is True
    schema = client.get("/openapi.json").json()
    assert "security" in schema["paths"]["/users/{user_id}/recommendations"]["get"]


def test_the_read_token_cannot_write(client):
    read = _bearer(READ)
    event = {"events": [{"user_id": "u1", "item_id": "i1", "timestamp": 2_000_000_000}]}
    assert client.post("/events", json=event, headers=read).status_code == 401
    assert client.post("/items", json={"item_id": "n", "text": "t"}, headers=read).status_code == 401
    assert client.delete("/users/u1", headers=read).status_code == 401
    assert "run_dir" not in client.get("/healthz", headers=read).json()  # paths: the API key only
    assert client.post("/events", json=event, headers=_bearer(KEY)).status_code == 201


def test_a_read_token_needs_a_distinct_write_token(id_run):
    rec = Recommender.load(id_run)
    for kwargs, message in [
        ({"read_key": READ}, "a read key needs an API key"),
        ({"api_key": KEY, "read_key": KEY}, "must differ from the API key"),
        ({"api_key": KEY, "read_key": ""}, "read_key is empty"),
    ]:
        with pytest.raises(ServingError, match=message):
            create_app(rec, **kwargs)
    with TestClient(create_app(rec, api_key=KEY)) as c:  # no read token: the write token reads
        assert c.get("/users/u1/recommendations").status_code == 401
        assert c.get("/users/u1/recommendations", headers=_bearer(KEY)).status_code == 200
    with TestClient(create_app(rec)) as c:  # no token at all: everything is open, as before
        assert c.get("/users/u1/recommendations").status_code == 200
        assert c.get("/healthz").json()["user_reads_need_token"] is False


def test_adding_items_needs_the_token(client):
    body = {"item_id": "new", "text": "item number 3 in group 3"}
    missing = client.post("/items", json=body)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in missing.json()["detail"]
    for header in (f"Bearer {KEY}x", "Bearer s3cret", f"Basic {KEY}", KEY, "Bearer "):
        wrong = client.post("/items", json=body, headers={"Authorization": header})
        assert wrong.status_code == 401, header
        assert wrong.headers["www-authenticate"].startswith("Bearer")
    # the token is checked before the body: no validation feedback without it
    assert client.post("/items", json={"item_id": ""}).status_code == 401
    assert client.get("/items/new").status_code == 404
    added = client.post("/items", json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert added.status_code == 201 and added.json()["item_id"] == "new"
    again = client.post("/items", json=body, headers={"authorization": f"bearer {KEY}"})
    assert again.status_code == 200  # the scheme is case-insensitive; then it is a retry of the add


def test_reads_that_reveal_no_user_stay_open(client):
    assert client.post("/recommend", json={"history": ["i1"], "k": 3}).status_code == 200
    assert client.post("/recommend/batch", json={"requests": [{"history": ["i1"]}]}).status_code == 200
    assert client.get("/items", params={"query": "i1"}).status_code == 200
    assert client.get("/items/i1").status_code == 200
    assert client.get("/similar", params={"item_id": "i1"}).status_code == 200
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["writes_need_api_key"] is True
    for path in ("/metrics", "/", "/docs", "/static/app.js"):
        assert client.get(path).status_code == 200, path
    schema = client.get("/openapi.json").json()
    assert "security" in schema["paths"]["/items"]["post"]
    assert "security" not in schema["paths"]["/recommend"]["post"]


def test_without_a_token_writes_are_open_and_an_empty_one_is_refused(id_run):
    rec = Recommender.load(id_run)
    with TestClient(create_app(rec)) as c:
        assert c.get("/healthz").json()["writes_need_api_key"] is False
        assert c.post("/items", json={"item_id": "n", "text": "t"}).status_code == 400  # ID-only, not 401
    with pytest.raises(ServingError, match="api_key is empty"):
        create_app(rec, api_key="")


def _serve(id_run, monkeypatch, *argv: str) -> dict:
    """Run ``serve`` through its CLI handler with the server stubbed; returns what it got."""
    seen = stub_run_server(monkeypatch)
    parser = argparse.ArgumentParser(prog="hstu-blair")
    sub = parser.add_subparsers(dest="command", required=True)
    add_serve_parser(sub)
    args = parser.parse_args(["serve", str(id_run), *argv])
    assert args.handler(args) == 0
    return seen


def _status_with(app, token: str | None) -> int:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    with TestClient(app) as c:
        return c.post("/items", json={"item_id": "n", "text": "t"}, headers=headers).status_code


def test_the_flag_wins_over_the_environment(id_run, monkeypatch):
    monkeypatch.setenv(API_KEY_ENV, "from-env")
    app = _serve(id_run, monkeypatch)["app"]
    assert _status_with(app, None) == 401 and _status_with(app, "from-env") == 400  # 400: ID-only run
    app = _serve(id_run, monkeypatch, "--api-key", "from-flag")["app"]
    assert _status_with(app, "from-env") == 401 and _status_with(app, "from-flag") == 400
    monkeypatch.setenv(READ_KEY_ENV, "reader-from-env")
    app = _serve(id_run, monkeypatch, "--api-key", "from-flag")["app"]
    with TestClient(app) as c:
        assert (
            c.get(
                "/users/u1/recommendations", headers={"Authorization": "Bearer reader-from-env"}
            ).status_code
            == 200
        )
    app = _serve(id_run, monkeypatch, "--api-key", "from-flag", "--read-key", "reader-from-flag")["app"]
    with TestClient(app) as c:
        assert (
            c.get(
                "/users/u1/recommendations", headers={"Authorization": "Bearer reader-from-env"}
            ).status_code
            == 401
        )
        assert (
            c.get(
                "/users/u1/recommendations", headers={"Authorization": "Bearer reader-from-flag"}
            ).status_code
            == 200
        )
    monkeypatch.delenv(READ_KEY_ENV)
    monkeypatch.setenv(API_KEY_ENV, "")  # set but empty: no token
    assert _status_with(_serve(id_run, monkeypatch)["app"], None) == 400
    with pytest.raises(ServingError, match="API key is empty"):
        _serve(id_run, monkeypatch, "--api-key", "")  # an empty flag is a mistake (an unset variable?)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.5", False),
        ("example.org", False),
    ],
)
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback
    assert (exposure_warning(host, None) is None) is loopback
    assert exposure_warning(host, KEY) is None


def test_binding_beyond_loopback_without_a_token_warns(id_run, monkeypatch, capsys, caplog):
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    with caplog.at_level(logging.WARNING, logger="hstu_blair.serving.app"):
        _serve(id_run, monkeypatch, "--host", "0.0.0.0")
    err = capsys.readouterr().err
    assert "WARNING: serving on 0.0.0.0 without an API key" in err and API_KEY_ENV in err
    assert "without an API key" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hstu_blair.serving.app"):
        _serve(id_run, monkeypatch, "--host", "0.0.0.0", "--api-key", KEY)
        _serve(id_run, monkeypatch)  # loopback
    assert "WARNING" not in capsys.readouterr().err and "without an API key" not in caplog.text


def test_serve_help_documents_the_token():
    parser = argparse.ArgumentParser(prog="hstu-blair")
    sub = parser.add_subparsers(dest="command")
    text = " ".join(add_serve_parser(sub).format_help().split())
    assert "--api-key TOKEN" in text and API_KEY_ENV in text and "Authorization: Bearer" in text
    assert "--read-key TOKEN" in text and READ_KEY_ENV in text and "idempotency_key" in text
    assert "RUN_DIR/store.sqlite" in text
