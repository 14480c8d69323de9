"""The store on its own, on SQLite and PostgreSQL: items bit-exact and in order, duplicates refused,
events, forgetting a user, migrations, damaged rows, several handles on one database."""

from __future__ import annotations

import time

import numpy as np
import pytest
import sqlalchemy as sa

from hstu_blair.run import store as store_module
from hstu_blair.run.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    DuplicateIdsError,
    ItemRecord,
    Store,
    StoreError,
    item_digest,
    items,
    store_url,
)

DIM = 4


def _records(ids: list[str], seed: int = 0) -> list[ItemRecord]:
    vectors = np.random.default_rng(seed).standard_normal((len(ids), DIM)).astype(np.float32)  # (m, DIM)
    return [ItemRecord(i, f"Title {i}", f"text of {i}", vectors[n]) for n, i in enumerate(ids)]


def _every_row(store: Store) -> list[str]:
    """Every row of every table of the store, as text."""
    rows = []
    with store.engine.connect() as conn:
        for name in sa.inspect(conn).get_table_names():
            table = sa.Table(name, sa.MetaData(), autoload_with=conn)
            rows += [repr(tuple(r)) for r in conn.execute(sa.select(table))]
    return rows


def test_items_round_trip_bit_exact_in_order_and_batches(store_location):
    store = Store(store_location)
    assert store.version == SCHEMA_VERSION and store.item_head() == 0
    first, second = _records(["a"]), _records(["b", "c"], seed=1)
    store.add_items(first)
    store.add_items(second)
    got, damaged = store.read_items(0, DIM)
    assert damaged == [] and [r.item_id for r in got] == ["a", "b", "c"]
    assert [r.seq for r in got] == sorted(r.seq for r in got) and store.item_head() == got[-1].seq
    assert (
        np.stack([r.vector for r in got]).tobytes() == np.stack([r.vector for r in first + second]).tobytes()
    )
    assert got[1].batch == got[2].batch != got[0].batch  # one call, one batch
    assert [(r.title, r.text) for r in got] == [
        ("Title a", "text of a"),
        ("Title b", "text of b"),
        ("Title c", "text of c"),
    ]
    assert [r.item_id for r in store.read_items(got[0].seq, DIM)[0]] == ["b", "c"]
    assert store.item_ids() == ["a", "b", "c"]


def test_duplicate_ids_are_refused_whole(store_location):
    store = Store(store_location)
    store.add_items(_records(["a", "b"]))
    with pytest.raises(DuplicateIdsError) as err:
        store.add_items(_records(["x", "b"]))
    assert err.value.ids == ["b"] and store.item_ids() == ["a", "b"]  # nothing of the batch stored


def test_two_handles_on_one_store_see_each_others_writes(store_location):
    a, b = Store(store_location), Store(store_location)
    head = b.item_head()
    a.add_items(_records(["from-a"]))
    assert b.item_head() != head and [r.item_id for r in b.read_items(head, DIM)[0]] == ["from-a"]
    b.add_events([("u", "from-a", 5)])
    assert a.user_events("u")[0] == ["from-a"]


def test_events_are_ordered_by_time_then_arrival_and_forgotten_without_trace(store_location):
    store = Store(store_location)
    store.add_events([("alice", "i3", 30), ("bob", "i1", 10), ("alice", "i1", 10), ("alice", "i2", 30)])
    ids, times = store.user_events("alice")
    assert ids == ["i1", "i3", "i2"] and times.tolist() == [10, 30, 30] and times.dtype == np.int64
    assert store.counts() == {"items": 0, "events": 4, "users": 2, "set_aside": 0}
    assert store.forget_user("alice") == 3 and store.forget_user("alice") == 0
    assert store.user_events("alice")[0] == [] and store.user_events("bob")[0] == ["i1"]
    rows = _every_row(store)
    assert rows and not any("alice" in r for r in rows)
    if store.sqlite_path is not None:  # no copy in the database files either (secure_delete, checkpoint)
        store.close()
        files = store.sqlite_path.parent.glob(store.sqlite_path.name + "*")
        assert not any(b"alice" in f.read_bytes() for f in files)


def test_a_v1_store_is_migrated_keeping_its_items(store_location):
    engine = sa.create_engine(store_url(store_location))
    with engine.begin() as conn:  # a store written by the first schema version
        store_module.schema_version.create(conn)
        MIGRATIONS[0](conn)
        conn.execute(store_module.schema_version.insert().values(version=1, applied_at=time.time()))
        vector = np.ones(DIM, "<f4").tobytes()
        conn.execute(
            items.insert().values(
                item_id="old",
                title="",
                text="t",
                dim=DIM,
                vector=vector,
                sha256=item_digest("old", "", "t", vector),
                batch="b",
                added_at=0.0,
            )
        )
        assert not sa.inspect(conn).has_table("events")
    engine.dispose()
    assert Store(store_location, read_only=True).version == 1  # reading does not migrate
    store = Store(store_location)
    assert store.version == SCHEMA_VERSION == 4
    assert [r.item_id for r in store.read_items(0, DIM)[0]] == ["old"]
    store.add_events([("u", "old", 1)])
    assert store.user_events("u")[0] == ["old"]
    assert Store(store_location).version == 4  # opening again applies nothing


def test_a_newer_schema_is_refused(store_location):
    store = Store(store_location)
    with store.engine.begin() as conn:
        conn.execute(store_module.schema_version.insert().values(version=SCHEMA_VERSION + 1, applied_at=0.0))
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}.*upgrade hstu-blair"):
        Store(store_location)


def test_damaged_rows_are_reported_and_moved_aside(store_location):
    store = Store(store_location)
    store.add_items(_records(["good1", "short", "flipped", "good2"]))
    with store.engine.begin() as conn:
        conn.execute(items.update().where(items.c.item_id == "short").values(vector=b"\0" * 7))
        conn.execute(items.update().where(items.c.item_id == "flipped").values(title="Tittle"))
    good, damaged = store.read_items(0, DIM)
    assert [r.item_id for r in good] == ["good1", "good2"]
    assert [r.reason for _, r in damaged] == [f"vector has 7 bytes, expected {4 * DIM}", "checksum mismatch"]
    store.move_items_aside(damaged)
    store.move_items_aside(damaged)  # twice (two processes at once): moved once
    assert [r["reason"] for r in store.set_aside_records()] == [r.reason for _, r in damaged]
    assert store.item_ids() == ["good1", "good2"] and store.read_items(0, DIM)[1] == []
    assert store.counts()["set_aside"] == 2


def test_a_read_only_sqlite_store_reads_and_refuses_writes(tmp_path):
    path = tmp_path / "store.sqlite"
    Store(path).add_items(_records(["a"]))
    ro = Store(path, read_only=True)
    assert ro.item_ids() == ["a"]
    with pytest.raises(StoreError, match="read-only"):
        ro.add_events([("u", "a", 1)])


def test_an_unreachable_postgres_is_one_clear_error():
    with pytest.raises(
        StoreError, match="cannot open the store postgresql\\+psycopg://u:\\*\\*\\*@127.0.0.1:1/x"
    ):
        Store("postgresql://u:secret@127.0.0.1:1/x")
