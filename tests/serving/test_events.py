"""Users' events: stored all or none, used at once by recommendations, forgotten without trace; the
same through the Python API, the HTTP routes and ``hstu-blair events import``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from hstu_blair.cli import main
from hstu_blair.errors import UnknownIdError
from hstu_blair.run.layout import STORE_FILE
from hstu_blair.run.store import EventRow, Store
from hstu_blair.serving.app import create_app
from hstu_blair.serving.recommender import Query, Recommender, ServingError
from tests.conftest import HashEncoder

KEY = "events-token"
AUTH = {"Authorization": f"Bearer {KEY}"}
LATER = 2_000_000_000  # after every training interaction


@pytest.fixture
def run(text_run, copy_run) -> Path:
    return copy_run(text_run)


def _ids(result) -> list[str]:
    return [r.item_id for r in result]


def _every_row(store: Store) -> list[str]:
    rows = []
    with store.engine.connect() as conn:
        for name in sa.inspect(conn).get_table_names():
            table = sa.Table(name, sa.MetaData(), autoload_with=conn)
            rows += [repr(tuple(r)) for r in conn.execute(sa.select(table))]
    return rows


def test_events_extend_a_users_history_in_time_order(run, store_location):
    rec = Recommender.load(run, encoder=HashEncoder(), store=store_location)
    ids, times, known = rec.user_history("u1")
    before = rec.recommend_user("u1", k=40)
    target = _ids(before)[0]
    assert rec.add_events([("u1", target, LATER), ("u1", "i2", LATER - 1), ("u2", "i3", LATER)]) == 3
    new_ids, new_times, _ = rec.user_history("u1")
    assert known and len(new_ids) == len(ids) + 2 and list(new_times) == sorted(new_times)
    assert new_times[-2:].tolist() == [LATER - 1, LATER]  # ordered by timestamp, not by arrival
    # the same history a client would send: the query is the training history plus the events
    history = [rec.run.data.item_ids[i] for i in new_ids]
    expected = rec.recommend(history, k=10, timestamps=new_times.tolist())
    assert _ids(rec.recommend_user("u1", k=10)) == _ids(expected)
    assert target not in _ids(rec.recommend_user("u1", k=40))  # seen now
    # /recommend with user_id gives the same
    assert _ids(rec.recommend_batch([Query(user_id="u1", k=10)])[0]) == _ids(expected)


def test_a_new_user_starts_empty_then_follows_their_events(run):
    rec = Recommender.load(run, encoder=HashEncoder())
    with pytest.raises(UnknownIdError, match="unknown user id: 'new'"):
        rec.recommend_user("new")
    popular = rec.recommend_user("new", k=5, new_user="popular")
    assert _ids(popular) == _ids(rec.popular(5)) and len(popular) == 5
    scores = [r.score for r in popular]
    assert scores == sorted(scores, reverse=True) and 0 < scores[0] < 1
    rec.add_events([("new", "i4", LATER)])
    assert _ids(rec.recommend_user("new", k=5)) == _ids(rec.recommend(["i4"], k=5, timestamps=[LATER]))
    assert rec.forget_user("new") == 1
    assert _ids(rec.recommend_user("new", k=5, new_user="popular")) == _ids(popular)


def test_a_user_deleted_while_being_ranked_gets_the_new_user_answer(run, monkeypatch):
    rec = Recommender.load(run, encoder=HashEncoder())
    popular = [r.item_id for r in rec.popular(3)]
    # the history read says "has events", but they are gone (DELETE /users/{id}) before ranking
    real, calls = rec.user_history, []

    def history_then_deleted(user, seen=True):  # the first read sees one event; every later read, none
        calls.append(user)
        return (np.array([1]), np.array([0]), None) if len(calls) == 1 else real(user, seen)

    monkeypatch.setattr(rec, "user_history", history_then_deleted)
    assert [r.item_id for r in rec.recommend_user("gone-user", k=3, new_user="popular")] == popular
    assert len(calls) >= 2  # ranking read the history again and found it gone
    with pytest.raises(UnknownIdError):
        rec.recommend_user("gone-user", k=3)  # new_user="error" still says so


def test_unknown_items_refuse_the_whole_batch(run):
    rec = Recommender.load(run, encoder=HashEncoder())
    with pytest.raises(UnknownIdError, match="'nope'.*'gone'") as err:
        rec.add_events([("u1", "i1", LATER), ("u1", "nope", LATER), ("u2", "gone", LATER), ("u3", "nope", 1)])
    assert err.value.ids == ["nope", "gone"] and rec.store.counts()["events"] == 0
    with pytest.raises(ServingError, match=r"events\[1\].timestamp"):
        rec.add_events([("u1", "i1", LATER), ("u1", "i1", "soon")])
    with pytest.raises(ServingError, match=r"events\[0\].user_id ' ' has surrounding whitespace"):
        rec.add_events([(" ", "i1", LATER)])
    with pytest.raises(ServingError, match=r"events\[1\].item_id: id 'i\\x001' holds U\+0000"):
        rec.add_events([("u1", "i1", LATER), ("u1", "i\x001", LATER)])  # new ids: canonical, as items'
    assert rec.store.counts()["events"] == 0
    rec.add_item("added", "a brand new item")
    assert rec.add_events([("u1", "added", LATER)]) == 1  # added items are in the catalogue


def test_http_events_routes(run):
    rec = Recommender.load(run, encoder=HashEncoder())
    with TestClient(create_app(rec, api_key=KEY)) as client:
        body = {"events": [{"user_id": "u1", "item_id": "i1", "timestamp": LATER}]}
        assert client.post("/events", json=body).status_code == 401
        assert client.delete("/users/u1").status_code == 401
        assert client.post("/events", json=body, headers=AUTH).json() == {"stored": 1, "duplicates": 0}
        bad = {"events": [*body["events"], {"user_id": "u2", "item_id": "nope", "timestamp": LATER}]}
        refused = client.post("/events", json=bad, headers=AUTH)
        assert refused.status_code == 422 and refused.json()["detail"][0]["ids"] == ["nope"]
        assert "unknown item id: 'nope'" in refused.json()["detail"][0]["msg"]
        assert rec.store.counts()["events"] == 1  # nothing of the refused batch
        assert client.post("/events", json={"events": []}, headers=AUTH).status_code == 422
        no_time = {"events": [{"user_id": "u1", "item_id": "i1"}]}
        assert client.post("/events", json=no_time, headers=AUTH).status_code == 422
        got = client.get("/users/u1/recommendations", params={"k": 4}, headers=AUTH)
        assert got.status_code == 200 and got.json()["user_id"] == "u1"
        assert [x["item_id"] for x in got.json()["items"]] == _ids(rec.recommend_user("u1", k=4))
        new = client.get("/users/someone-new/recommendations", params={"k": 3}, headers=AUTH).json()
        assert [x["item_id"] for x in new["items"]] == _ids(rec.popular(3))
        assert client.get("/users/u1/recommendations", params={"k": 5000}, headers=AUTH).status_code == 422
        assert client.delete("/users/u1", headers=AUTH).json() == {"user_id": "u1", "deleted_events": 1}
        assert "/events" in client.get("/openapi.json").json()["paths"]


def test_delete_leaves_no_trace_of_the_user_in_the_store(run, store_location):
    rec = Recommender.load(run, encoder=HashEncoder(), store=store_location)
    rec.add_events([("zed-the-user", f"i{j}", LATER + j) for j in range(5)] + [("u2", "i1", LATER)])
    assert any("zed-the-user" in r for r in _every_row(rec.store))
    with TestClient(create_app(rec)) as client:
        assert client.delete("/users/zed-the-user").json()["deleted_events"] == 5
    assert not any("zed-the-user" in r for r in _every_row(rec.store))
    assert rec.store.user_events("u2")[0] == ["i1"]
    path = rec.store.sqlite_path
    if path is not None:
        rec.store.close()
        assert not any(b"zed-the-user" in f.read_bytes() for f in path.parent.glob(path.name + "*"))


def test_events_import_csv_and_parquet(run, tmp_path, capsys):
    csv = tmp_path / "events.csv"
    csv.write_text("user_id,item_id,timestamp,extra\nu1,i1,2000000000,x\nnew,i2,2000000001,y\n")
    assert main(["events", "import", str(csv), str(run)]) == 0
    assert "stored 2 events" in capsys.readouterr().out
    parquet = tmp_path / "events.parquet"
    pl.DataFrame({"user_id": ["new"], "item_id": ["i3"], "timestamp": [2_000_000_002]}).write_parquet(parquet)
    assert main(["events", "import", str(parquet), str(run)]) == 0
    store = Store(run / STORE_FILE)
    assert store.user_events("new")[0] == ["i2", "i3"] and store.counts()["events"] == 3
    rec = Recommender.load(run, encoder=HashEncoder())
    assert len(rec.user_history("new")[0]) == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("user_id,item_id\nu1,i1\n", "missing columns ['timestamp']"),
        (
            "user_id,item_id,timestamp\nu1,i1,5\nu1,i2,soon\n",
            "events.csv:3 (field 'timestamp'): timestamp must be integer seconds or an ISO 8601 string",
        ),
        ("user_id,item_id,timestamp\nu1,i1,5\n,i2,6\n", "events.csv:3 (field 'user_id'): empty user_id"),
        (
            "user_id,item_id,timestamp\nu1,i1,5\nu1,nope,6\n",
            "events.csv:3 (field 'item_id'): item 'nope' is not",
        ),
        (  # ids are taken as written (HTTP refuses this one too), never stripped silently
            "user_id,item_id,timestamp\nu1,i1,5\n u2 ,i2,6\n",
            "events.csv:3 (field 'user_id'): user_id ' u2 ' has surrounding whitespace",
        ),
        ("user_id,item_id,timestamp\n..,i1,5\n", "events.csv:2 (field 'user_id'): user_id '..' cannot be"),
    ],
)
def test_events_import_errors_name_file_line_and_field(run, tmp_path, capsys, content, message):
    csv = tmp_path / "events.csv"
    csv.write_text(content)
    assert main(["events", "import", str(csv), str(run)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (run / STORE_FILE).exists() or Store(run / STORE_FILE).counts()["events"] == 0


def test_closing_a_recommender_releases_its_store(run):
    """``with Recommender.load(...)``: on leaving, the store's connections close (SQLite then
    checkpoints and removes its WAL file); a store passed in stays open for its owner."""
    wal = run / (STORE_FILE + "-wal")
    with Recommender.load(run, encoder=HashEncoder()) as rec:
        rec.add_events([("u1", "i2", LATER)])
        assert wal.exists()
    assert not wal.exists()
    shared = Store.for_run(run)
    try:
        with Recommender.load(run, encoder=HashEncoder(), store=shared) as rec:
            assert rec.add_events([("u1", "i3", LATER + 1)]) == 1
        ids, times = shared.user_events("u1")  # still open
        assert ids == ["i2", "i3"] and times.tolist() == [LATER, LATER + 1]
    finally:
        shared.close()


def test_a_retried_batch_is_stored_once_and_answered_the_same(run, store_location):
    rec = Recommender.load(run, encoder=HashEncoder(), store=store_location)
    with TestClient(create_app(rec, api_key=KEY)) as client:
        event = {"user_id": "u1", "item_id": "i1", "timestamp": LATER}
        body = {"events": [event, event, event, {**event, "item_id": "i2"}]}
        answers = [client.post("/events", json=body, headers=AUTH) for _ in range(3)]
        assert [a.status_code for a in answers] == [201] * 3
        assert [a.json() for a in answers] == [{"stored": 2, "duplicates": 2}] * 3
        assert rec.store.counts()["events"] == 2
        keyed = {"events": [{**event, "event_id": "e-1"}], "idempotency_key": "batch-1"}
        assert client.post("/events", json=keyed, headers=AUTH).json() == {"stored": 1, "duplicates": 0}
        assert client.delete("/users/u1", headers=AUTH).json()["deleted_events"] == 3
        again = client.post("/events", json=keyed, headers=AUTH)  # a late retry does not bring it back
        assert again.json() == {"stored": 1, "duplicates": 0} and rec.store.counts()["events"] == 0
        other = {**keyed, "events": [{**event, "timestamp": LATER + 1}]}
        conflict = client.post("/events", json=other, headers=AUTH)
        assert conflict.status_code == 409 and "idempotency_key 'batch-1'" in conflict.json()["detail"]
        moved = {"events": [{**event, "item_id": "i3", "event_id": "e-2"}]}
        assert client.post("/events", json=moved, headers=AUTH).status_code == 201
        moved["events"][0]["item_id"] = "i4"
        conflict = client.post("/events", json=moved, headers=AUTH)
        assert conflict.status_code == 409 and "event_id 'e-2' is stored for another event" in conflict.text
        bad_id = {"events": [{**event, "event_id": " e"}]}
        refused = client.post("/events", json=bad_id, headers=AUTH)
        assert refused.status_code == 422 and "events[0].event_id" in refused.text
        metrics = client.get("/metrics").text
        assert "hstu_blair_store_duplicate_events 11.0" in metrics  # 2 + 4 + 4, then 1 replayed


def test_events_import_stores_each_event_once(run, tmp_path, capsys):
    csv = tmp_path / "events.csv"
    csv.write_text("user_id,item_id,timestamp\nu1,i1,2000000000\nu1,i1,2000000000\nnew,i2,2000000001\n")
    assert main(["events", "import", str(csv), str(run)]) == 0
    out = capsys.readouterr().out
    assert "stored 2 events" in out and "1 exact duplicate rows of the file" in out
    assert main(["events", "import", str(csv), str(run)]) == 0
    out = capsys.readouterr().out
    assert "stored 0 events" in out and "2 events already in the store" in out
    assert Store(run / STORE_FILE).counts()["events"] == 2


def test_a_long_history_reads_only_the_events_the_model_uses(run, store_location, monkeypatch):
    rec = Recommender.load(run, encoder=HashEncoder(), store=store_location)
    early = [("long", f"i{j % 10}", LATER + j) for j in range(2 * rec.max_len)]  # seen, not read in order
    late = [("long", f"i{20 + j % 20}", LATER + 10_000 + j) for j in range(rec.max_len + 5)]
    rec.add_events(early + late)
    history = [i for _, i, _ in early + late]
    times = [t for _, _, t in early + late]
    reads = []
    real = rec.store.user_events
    monkeypatch.setattr(
        rec.store, "user_events", lambda u, limit=None: reads.append(real(u, limit)) or reads[-1]
    )
    for exclude_seen in (True, False):
        expected = rec.recommend(history, k=30, exclude_seen=exclude_seen, timestamps=times)
        got = rec.recommend_user("long", k=30, exclude_seen=exclude_seen)
        assert _ids(got) == _ids(expected) and [r.score for r in got] == pytest.approx(
            [r.score for r in expected]
        )
    assert reads and all(len(ids) == rec.max_len for ids, _ in reads)  # never the whole history
    assert not {f"i{j}" for j in range(10)} & set(_ids(rec.recommend_user("long", k=30)))


def test_a_long_history_reads_its_earlier_items_once_per_change_of_the_store(
    run, store_location, monkeypatch
):
    rec = Recommender.load(run, encoder=HashEncoder(), store=store_location)
    early = [("long", f"i{j % 10}", LATER + j) for j in range(2 * rec.max_len)]
    late = [("long", f"i{20 + j % 20}", LATER + 10_000 + j) for j in range(rec.max_len)]
    rec.add_events(early + late)
    calls = []
    real = rec.store.seen_items
    monkeypatch.setattr(rec.store, "seen_items", lambda u: calls.append(u) or real(u))
    first = _ids(rec.recommend_user("long", k=30))
    assert _ids(rec.recommend_user("long", k=30)) == first and calls == ["long"]  # cached
    target = first[0]
    other = Store(store_location)  # another process stores an earlier event of the user
    try:
        other.add_events([EventRow("long", target, LATER - 1)])
    finally:
        other.close()
    after = _ids(rec.recommend_user("long", k=30))
    assert calls == ["long", "long"] and target not in after  # read again: now seen, excluded
