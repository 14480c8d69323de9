"""Every event stored once (duplicates, client event ids, idempotency keys), the migration from
schema version 2 that removes stored duplicates, and a user's latest events read without the rest;
on SQLite and PostgreSQL."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from hstu_blair.run import store_schema
from hstu_blair.run.store import EventConflictError, Store, store_url
from hstu_blair.run.store_schema import MIGRATIONS, store_meta


def test_a_repeated_event_or_batch_is_stored_once_and_answered_the_same(store_location):
    store = Store(store_location)
    batch = [("u", "i1", 5), ("u", "i1", 5), ("u", "i1", 5), ("u", "i2", 6)]
    first = store.add_events(batch)
    assert (first.received, first.stored, first.new, first.repeated) == (4, 2, 2, 2)
    retry = store.add_events(batch)
    assert retry.answer() == first.answer() == {"stored": 2, "duplicates": 2}
    assert retry.new == 0 and retry.already_stored == 2
    assert store.counts()["events"] == 2 and store.all_events() == [("u", "i1", 5), ("u", "i2", 6)]
    assert store.add_events([("u", "i1", 7)]).new == 1  # another time is another event


def test_client_event_ids_identify_events(store_location):
    store = Store(store_location)
    assert store.add_events([("u", "i1", 5, "e1"), ("u", "i1", 5, "e2")]).new == 2  # two events
    assert store.add_events([("u", "i1", 5, "e1")]).new == 0  # the same event again
    with pytest.raises(EventConflictError, match="event_id 'e1' is stored for another event"):
        store.add_events([("u", "i9", 1, "new"), ("u", "i2", 5, "e1")])
    with pytest.raises(EventConflictError, match=r"events\[1\].event_id 'x' is given to two different"):
        store.add_events([("u", "i1", 1, "x"), ("v", "i1", 1, "x")])
    assert store.counts()["events"] == 2  # nothing of a refused batch


def test_an_idempotency_key_replays_the_first_answer(store_location):
    store = Store(store_location)
    batch = [("u", "i1", 5), ("u", "i1", 5)]
    first = store.add_events(batch, key="k1")
    assert store.forget_user("u") == 1
    retry = store.add_events(batch, key="k1")  # after a DELETE too: a retry does not bring it back
    assert retry.replayed and retry.answer() == first.answer() and store.counts()["events"] == 0
    with pytest.raises(EventConflictError, match="idempotency_key 'k1' was used for another batch"):
        store.add_events([("u", "i2", 5)], key="k1")
    assert store.counts()["events"] == 0


def _v2_store(location: str, rows: list[tuple[str, str, int]]) -> None:
    """A store as schema version 2 wrote it, holding ``rows`` (duplicates included)."""
    engine = sa.create_engine(store_url(location))
    with engine.begin() as conn:
        store_schema.schema_version.create(conn)
        for version, migrate in enumerate(MIGRATIONS[:2], start=1):
            migrate(conn)
            conn.execute(store_schema.schema_version.insert().values(version=version, applied_at=time.time()))
        conn.execute(
            sa.text("INSERT INTO events (user_id, item_id, timestamp) VALUES (:u, :i, :t)"),
            [{"u": u, "i": i, "t": t} for u, i, t in rows],
        )
    engine.dispose()


def test_a_v2_store_is_migrated_and_its_duplicates_removed(store_location):
    _v2_store(
        store_location, [("u", "i1", 5), ("u", "i1", 5), ("v", "i1", 5), ("u", "i2", 4), ("u", "i1", 5)]
    )
    assert Store(store_location, read_only=True).version == 2  # reading does not migrate
    store = Store(store_location)
    assert store.version == 4
    assert store.all_events() == [("u", "i1", 5), ("v", "i1", 5), ("u", "i2", 4)]  # the first kept
    with store.engine.connect() as conn:
        removed = conn.execute(sa.select(store_meta.c.value).where(store_meta.c.key.like("v3_%"))).scalar()
    assert removed == "2"
    assert store.add_events([("u", "i1", 5), ("u", "i3", 6, "e")]).new == 1
    assert store.user_events("u")[0] == ["i2", "i1", "i3"]


def test_the_latest_events_are_read_without_the_rest(store_location):
    store = Store(store_location)
    rows = [("u", f"i{n % 7}", 1000 + n // 2) for n in range(300)]  # ties: two events per second
    store.add_events([*rows, ("other", "i1", 5000)])
    ids, times = store.user_events("u", limit=100)
    all_ids, all_times = store.user_events("u")
    assert ids == all_ids[-100:] and times.tolist() == all_times[-100:].tolist()
    assert len(all_ids) == 300 and store.user_events("u", limit=1000)[0] == all_ids
    assert store.seen_items("u") == sorted({f"i{n}" for n in range(7)}) and store.seen_items("x") == []


def _plan(store: Store, sql: str) -> str:
    explain = "EXPLAIN QUERY PLAN " if store.backend == "sqlite" else "EXPLAIN "
    with store.engine.connect() as conn:
        if store.backend == "postgresql":
            for plan in ("seqscan", "bitmapscan", "sort"):  # a tiny table: ask whether an index can serve
                conn.exec_driver_sql(f"SET enable_{plan} = off")
        return " ".join(str(r[-1]) for r in conn.exec_driver_sql(explain + sql))


def test_a_users_latest_events_come_from_an_index(store_location):
    store = Store(store_location)
    store.add_events([("u", "i1", n) for n in range(50)])
    sql = "SELECT item_id FROM events WHERE user_id = 'u' ORDER BY timestamp DESC, seq DESC LIMIT 5"
    latest = _plan(store, sql)
    assert "events_by_user_time" in latest and "TEMP B-TREE" not in latest and "Sort" not in latest
