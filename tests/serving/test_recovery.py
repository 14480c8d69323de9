"""Damaged records never stop serving and never cost other records: damaged store rows are set
aside (counted in /healthz and /metrics, logged once), and ``hstu-blair check`` reports it all
with its exit status."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from hstu_blair.cli import main
from hstu_blair.run.layout import STORE_FILE
from hstu_blair.run.store import Store, items
from hstu_blair.serving.app import create_app
from hstu_blair.serving.recommender import Recommender
from tests.conftest import HashEncoder


@pytest.fixture
def run(text_run, copy_run) -> Path:
    return copy_run(text_run)


def _check(run: Path, capsys) -> tuple[int, str]:
    code = main(["check", str(run)])
    return code, capsys.readouterr().out


def test_a_damaged_row_in_the_store_is_set_aside_and_the_rest_served(run, capsys, caplog):
    Recommender.load(run, encoder=HashEncoder()).add_items(["s1", "s2", "s3"], ["one", "two", "three"])
    store = Store(run / STORE_FILE)
    with store.engine.begin() as conn:
        conn.execute(items.update().where(items.c.item_id == "s2").values(vector=b"\0" * 5))
    code, out = _check(run, capsys)
    assert code == 1 and "vector has 5 bytes" in out and "set aside on the next serve" in out
    rec = Recommender.load(run, encoder=HashEncoder())
    assert rec.has_item("s1") and rec.has_item("s3") and not rec.has_item("s2")
    assert rec.describe()["set_aside"] == 1 and store.item_ids() == ["s1", "s3"]
    assert caplog.text.count("set aside items seq 2") == 1  # logged once
    with TestClient(create_app(rec)) as client:  # the id is free again: it can be added anew
        assert client.get("/healthz").json()["set_aside"] == 1
        assert "hstu_blair_store_set_aside 1.0" in client.get("/metrics").text
        got = client.post("/recommend", json={"history": ["s3", "i1"], "k": 5})
        assert got.status_code == 200 and len(got.json()["items"]) == 5
        assert client.post("/items", json={"item_id": "s2", "text": "two"}).status_code == 201
    code, out = _check(run, capsys)
    assert code == 1 and "set aside: items seq" in out


def test_check_a_healthy_run(run, capsys):
    code, out = _check(run, capsys)
    assert code == 0 and ": ok" in out and "none yet" in out
    rec = Recommender.load(run, encoder=HashEncoder())
    rec.add_item("n1", "new")
    rec.add_events([("u1", "n1", 5), ("u9", "i1", 7)])
    code, out = _check(run, capsys)
    assert code == 0 and "schema version     4" in out
    assert "items              1" in out and "events             2" in out and "users              2" in out


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda run: (run / "model.json").write_text("{not json"), "model.json:1: is not JSON"),
        (lambda run: (run / "model.json").write_text("{}"), "model.json: lacks the key 'architecture'"),
        (
            lambda run: _truncate(run / "checkpoints/best.safetensors"),
            "best.safetensors: is truncated: its tensors end at byte",
        ),
        (
            lambda run: (run / "checkpoints/best.safetensors").write_bytes(b""),
            "best.safetensors: is empty (0 bytes)",
        ),
        (
            lambda run: _header_length(run / "checkpoints/best.safetensors", 2**40),
            "declares a header of 1099511627776 bytes",
        ),
        (lambda run: (run / STORE_FILE).write_bytes(b"not a database at all" * 100), "cannot open the store"),
    ],
)
def test_check_an_unusable_run(run, capsys, damage, message):
    damage(run)
    code, out = _check(run, capsys)
    assert code == 2 and "unusable" in out and message in out


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-10])


def _header_length(path: Path, length: int) -> None:
    data = path.read_bytes()
    path.write_bytes(length.to_bytes(8, "little") + data[8:])


def test_check_without_writing(run, capsys):
    rec = Recommender.load(run, encoder=HashEncoder())  # kept alive: its close would checkpoint the WAL
    rec.add_item("n1", "new")
    before = {p.name: p.read_bytes() for p in run.glob(STORE_FILE + "*")}
    _check(run, capsys)
    assert {p.name: p.read_bytes() for p in run.glob(STORE_FILE + "*")} == before
    del rec
    engine = sa.create_engine(f"sqlite:///{run / STORE_FILE}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM items").scalar() == 1


def test_check_an_empty_store_file_is_a_store_to_create(run, capsys):
    (run / STORE_FILE).write_bytes(b"")  # SQLite reads zero bytes as an empty database: no tables yet
    code, out = _check(run, capsys)
    assert code == 0 and "migration" in out and "Traceback" not in out
