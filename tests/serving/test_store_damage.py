"""Damage to a run's store handled as promised (issue 25, finding 5): rows that cannot be read are
set aside and counted, never a 500; a store that cannot be opened is one line and exit 2; ``check``
runs SQLite's integrity check and says what the store lost since the model versions recorded it;
a store the run had is refused when missing or emptied, not recreated empty."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from hstu_blair.cli import main
from hstu_blair.errors import HstuBlairError
from hstu_blair.run.layout import STORE_FILE
from hstu_blair.run.store import Store, store_url
from hstu_blair.run.versions import commit_version, publish, staging_dir
from hstu_blair.serving.app import create_app
from hstu_blair.serving.recommender import Recommender
from tests.conftest import postgres_schema

PAGE = 4096
USERS = 300


def _user(n: int) -> str:
    return f"user-{n:04d}"


def _fill(run: Path, location: str | None = None, users: int = USERS, per_user: int = 20) -> list[str]:
    """Store ``per_user`` events of each of ``users`` new users, user by user; returns the item ids."""
    rec = Recommender.load(run, store=location)
    items = rec.catalogue.item_ids[1:]
    rows = [
        (_user(u), items[(u * 7 + k) % len(items)], 1000 + k) for u in range(users) for k in range(per_user)
    ]
    rec.add_events(rows)
    rec.close()
    return items


def _flip_events_page(path: Path, user_id: str) -> None:
    """Flip every bit of a leaf page of the events table holding ``user_id``'s rows (4 KiB)."""
    data = bytearray(path.read_bytes())
    needle = user_id.encode()
    pages = [
        n
        for n in range(1, len(data) // PAGE)
        if data[n * PAGE] == 0x0D and needle in data[n * PAGE : (n + 1) * PAGE]
    ]
    assert pages, "no table page holds the user's rows"
    start = pages[0] * PAGE
    data[start : start + PAGE] = bytes(b ^ 0xFF for b in data[start : start + PAGE])
    path.write_bytes(bytes(data))


def _one_line(err: str, *phrases: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err and "SELECT" not in err, err
    assert all(p in err for p in phrases), err


@pytest.fixture
def run(id_run, copy_run) -> Path:
    return copy_run(id_run)


def test_users_on_a_damaged_page_are_set_aside_never_a_500(run, capsys, caplog):
    _fill(run)
    path = run / STORE_FILE
    _flip_events_page(path, _user(150))
    rec = Recommender.load(run)  # the damage is in events: the server starts
    with TestClient(create_app(rec), raise_server_exceptions=False) as client:
        codes = {u: client.get(f"/users/{_user(u)}/recommendations?k=5").status_code for u in range(USERS)}
        assert set(codes.values()) == {200}, {u: c for u, c in codes.items() if c != 200}
        unreadable = rec.records_set_aside
        assert unreadable >= 1 and client.get("/healthz").json()["set_aside"] == unreadable
        assert f"hstu_blair_store_set_aside {float(unreadable)}" in client.get("/metrics").text
        assert caplog.text.count(f"set aside events of user '{_user(150)}'") == 1  # logged once
        got = client.post("/recommend", json={"user_id": _user(150), "k": 3})
        assert got.status_code == 422 and "unknown" in got.text  # a new user with nothing readable
        gone = client.delete(f"/users/{_user(150)}")
        assert gone.status_code == 503 and "damaged" in gone.json()["detail"], gone.text
        assert client.delete(f"/users/{_user(5)}").json()["deleted_events"] == 20  # others are served
        assert rec.records_set_aside == unreadable
    rec.close()
    assert main(["check", str(run)]) == 2
    out = capsys.readouterr().out
    assert ": damaged" in out and "integrity_check fails" in out and str(path) in out, out


def test_a_store_truncated_to_half_is_one_line_and_exit_2(run, capsys):
    _fill(run)
    path = run / STORE_FILE
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(HstuBlairError, match="damaged"):
        Recommender.load(run)
    assert main(["serve", str(run), "--port", "1"]) == 2
    _one_line(capsys.readouterr().err, str(path), "restore it from a backup")
    assert main(["check", str(run)]) == 2
    out = capsys.readouterr().out
    assert ": unusable" in out and "SELECT" not in out and str(path) in out, out


WRITER = """
import os, sys
from hstu_blair.run.store import Store
store = Store.for_run(sys.argv[1])
store.add_events([(f"late-{n}", sys.argv[2], 5000 + n) for n in range(int(sys.argv[3]))])
os._exit(0)  # killed: no checkpoint, the events are only in the WAL
"""


def _publish_version(run: Path, store_events: int, store_items: int = 0) -> None:
    """Version 1, as ``update`` would publish it after training on the store's events."""
    staged = staging_dir(run, 1)
    info = json.loads((run / "model.json").read_text())
    info.update(store_events=store_events, store_items=store_items)
    (staged / "model.json").write_text(json.dumps(info))
    shutil.copytree(run / "checkpoints", staged / "checkpoints")
    commit_version(run, staged, 1)
    publish(run, 1)


def test_a_deleted_wal_is_reported_by_check(run, capsys):
    items = _fill(run, users=10, per_user=5)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", WRITER, str(run), items[0], "80"], check=True, env=env)
    wal = run / (STORE_FILE + "-wal")
    assert wal.stat().st_size > 0
    _publish_version(run, store_events=50 + 80)  # update trained on them all
    assert main(["check", str(run)]) == 0, capsys.readouterr().out
    capsys.readouterr()
    wal.unlink()
    (run / (STORE_FILE + "-shm")).unlink(missing_ok=True)
    assert main(["check", str(run)]) == 2
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "missing" in line]
    assert len(lines) == 1 and "80 events missing" in lines[0] and "write-ahead log" in lines[0], out


def test_forgotten_users_are_not_missing_events(run, capsys):
    _fill(run, users=10, per_user=5)
    _publish_version(run, store_events=50)
    Recommender.load(run).forget_user(_user(3))
    assert main(["check", str(run)]) == 0, capsys.readouterr().out


@pytest.mark.parametrize("damage", ["deleted", "emptied"])
def test_a_missing_store_of_a_run_that_had_one_is_refused(run, capsys, damage):
    _fill(run, users=2, per_user=2)
    path = run / STORE_FILE
    if damage == "deleted":
        path.unlink()
    else:
        path.write_bytes(b"")
    with pytest.raises(HstuBlairError, match="restore it from a backup"):
        Recommender.load(run)
    assert main(["serve", str(run), "--port", "1"]) == 2
    _one_line(capsys.readouterr().err, str(path), "restore it from a backup", "store.json")
    assert main(["check", str(run)]) == 2
    assert str(path) in capsys.readouterr().out
    assert main(["update", str(run)]) == 2  # not trained as if nothing had been stored
    _one_line(capsys.readouterr().err, str(path), "restore it from a backup")
    assert path.exists() == (damage == "emptied") and path.stat().st_size == 0 if path.exists() else True
    (run / "store.json").write_text('{"stores": {}}')  # starting over, as the message says
    assert Recommender.load(run).describe()["set_aside"] == 0


def test_a_run_from_before_store_json_is_known_by_its_versions(run, capsys):
    _fill(run, users=2, per_user=2)
    _publish_version(run, store_events=4)
    (run / "store.json").unlink()
    (run / STORE_FILE).unlink()
    with pytest.raises(HstuBlairError, match="version 1 was trained on 4"):
        Recommender.load(run)


def test_postgresql_a_dropped_store_is_refused_and_lost_events_reported(run, capsys):
    with postgres_schema("damage") as url:
        _fill(run, url, users=4, per_user=5)
        _publish_version(run, store_events=20)
        engine = sa.create_engine(store_url(url))
        with engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM events WHERE user_id = 'user-0001'")
        assert main(["check", str(run), "--store", url]) == 2
        assert "5 events missing" in capsys.readouterr().out
        with engine.begin() as conn:
            for table in sa.inspect(conn).get_table_names():
                conn.exec_driver_sql(f"DROP TABLE {table} CASCADE")
        engine.dispose()
        with pytest.raises(HstuBlairError, match="is empty"):
            Recommender.load(run, store=url)
        store = Store(url, read_only=True)
        assert store.version == 0  # not recreated
        store.close()
