"""Added items are kept in the run's store: reloaded, shared between recommenders (and apps) on the
same store (SQLite and PostgreSQL), refused when the run directory is read-only."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from hstu_blair.run.layout import STORE_FILE
from hstu_blair.run.store import Store
from hstu_blair.serving.app import create_app
from hstu_blair.serving.recommender import DuplicateItemError, Recommender, StoreWriteError
from tests.conftest import HashEncoder


class NoEncoder:
    """An encoder that must not be called (a restart needs no encoder)."""

    def encode(self, texts: list[str], batch_size: int = 32):
        raise AssertionError("the text encoder was called")


def _ids(result) -> list[str]:
    return [r.item_id for r in result]


@pytest.fixture
def run(text_run, copy_run) -> Path:
    return copy_run(text_run)


def test_added_items_survive_a_reload_bit_for_bit(run):
    rec = Recommender.load(run, encoder=HashEncoder())
    rec.add_item("new1", "item number 7 in group 2", title="New one")
    rec.add_items(["new2", "new3", "new4"], ["a brand new thing", "another new thing", "group 3 again"])
    history = ["new1", "i3", "new2"]
    before = rec.recommend(history, k=10)
    assert Store(run / STORE_FILE).item_ids() == ["new1", "new2", "new3", "new4"]

    again = Recommender.load(run, encoder=NoEncoder())
    new = ["new1", "new2", "new3", "new4"]
    assert again.num_items == 44 and all(again.has_item(i) for i in new)
    assert [again.item(i) for i in new] == [rec.item(i) for i in new]
    assert torch.equal(again.item_vectors(new), rec.item_vectors(new))  # bit-identical
    after = again.recommend(history, k=10)
    assert _ids(after) == _ids(before) and [r.score for r in after] == [r.score for r in before]
    assert set(new) <= set(_ids(again.recommend(["i1"], k=1000)))
    assert again.search_items("new one") == [{"item_id": "new1", "title": "New one"}]
    described = again.describe()
    assert described["added_items"] == 4 and described["store"] == f"sqlite:///{run.resolve() / STORE_FILE}"
    assert described["set_aside"] == 0 and described["store_schema"] == 4


def test_two_recommenders_on_one_store_see_each_others_items(run, store_location):
    a = Recommender.load(run, encoder=HashEncoder(), store=store_location)
    b = Recommender.load(run, encoder=HashEncoder(), store=store_location)
    assert not b.stale() and b.sync() == 0
    a.add_item("from-a", "item number 1 in group 1")
    assert b.stale() and not b.has_item("from-a")
    assert b.sync() == 1 and b.has_item("from-a") and not b.stale()
    assert torch.equal(b.item_vectors(["from-a"]), a.item_vectors(["from-a"]))
    assert _ids(b.recommend(["from-a"], k=5)) == _ids(a.recommend(["from-a"], k=5))
    # b adds without having synced a: a's item was added first, so b's gets the next index
    b.add_item("from-b", "item number 2 in group 2")
    a.sync()
    assert a.search_items("from-") == b.search_items("from-")  # catalogue order = index order
    # an id another recommender took since our last sync is refused under the lock
    a.add_item("taken", "x y z")
    with pytest.raises(DuplicateItemError, match="already in the catalogue"):
        b.add_item("taken", "other text")
    assert b.has_item("taken") and b.num_items == a.num_items == 43


def test_concurrent_adds_get_distinct_indices_everyone_agrees_on(run, store_location):
    recs = [Recommender.load(run, encoder=HashEncoder(), store=store_location) for _ in range(2)]
    start = threading.Barrier(2)

    def add(r: int) -> None:
        start.wait()
        for i in range(8):
            recs[r].add_item(f"race-{r}-{i}", f"item number {i} in group {r}")

    threads = [threading.Thread(target=add, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for rec in recs:
        rec.sync()
    fresh = Recommender.load(run, encoder=NoEncoder(), store=store_location)
    orders = [[x["item_id"] for x in r.search_items("race-", limit=100)] for r in (*recs, fresh)]
    assert len(orders[0]) == 16 and orders[0] == orders[1] == orders[2]
    ids = orders[0]
    assert torch.equal(recs[0].item_vectors(ids), recs[1].item_vectors(ids))
    assert torch.equal(recs[0].item_vectors(ids), fresh.item_vectors(ids))


def test_an_item_added_through_one_app_is_served_by_another_on_its_next_request(run):
    a = TestClient(create_app(Recommender.load(run, encoder=HashEncoder())))
    b = TestClient(create_app(Recommender.load(run, encoder=HashEncoder())))
    with a, b:
        body = {"item_id": "shared", "text": "item number 9 in group 4", "title": "Shared"}
        assert a.post("/items", json=body).status_code == 201
        assert b.get("/items/shared").json() == {
            "item_id": "shared",
            "title": "Shared",
            "text": "item number 9 in group 4",
            "attributes": {},
        }
        assert b.post("/recommend", json={"history": ["shared", "i2"], "k": 5}).status_code == 200
        assert b.post("/items", json=body).status_code == 200  # a retry through b: the same item
        assert b.post("/items", json={**body, "text": "other words"}).status_code == 409
        health = b.get("/healthz").json()
        assert health["num_items"] == 41 and health["added_items"] == 1
        # b's next request sees a's item even when it is a recommendation
        a.post("/items", json={"item_id": "second", "text": "wholly new words"})
        everything = b.post("/recommend", json={"history": ["i1"], "k": 1000}).json()
        assert {"shared", "second"} <= {x["item_id"] for x in everything["items"]}


@pytest.fixture
def read_only(run, monkeypatch):
    """Make ``run`` read-only: chmod when not root, else refuse writes under it as a read-only mount does."""
    if os.geteuid() != 0:
        run.chmod(0o555)
        yield run
        run.chmod(0o755)
        return
    real_open, real_access = os.open, os.access
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND

    def inside(path) -> bool:
        return Path(path).resolve().is_relative_to(run.resolve())

    def fake_open(path, flags, *args, **kwargs):
        if flags & writing and inside(path):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args, **kwargs)

    def fake_access(path, mode, *args, **kwargs):
        if mode & os.W_OK and inside(path):
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(os, "access", fake_access)
    yield run


def test_a_read_only_run_directory_serves_but_refuses_adds(run, request):
    Recommender.load(run, encoder=HashEncoder()).add_item("kept", "added while writable")
    ro = request.getfixturevalue("read_only")
    encoder = HashEncoder()
    rec = Recommender.load(ro, encoder=encoder)
    assert rec.has_item("kept") and len(rec.recommend(["kept", "i1"], k=5)) == 5
    with pytest.raises(StoreWriteError, match="is not writable") as err:
        rec.add_item("new", "some text")
    assert "persist=False" in str(err.value) and encoder.calls == 0  # refused before encoding
    with TestClient(create_app(rec)) as client:
        refused = client.post("/items", json={"item_id": "new", "text": "some text"})
        assert refused.status_code == 503 and "not writable" in refused.json()["detail"]
        assert client.post("/recommend", json={"history": ["kept"]}).status_code == 200
    memory = Recommender.load(ro, encoder=encoder, persist=False)
    memory.add_item("new", "some text")
    assert memory.has_item("new") and not memory.has_item("kept")  # the store is neither read nor written


def test_persist_false_writes_nothing(run):
    rec = Recommender.load(run, encoder=HashEncoder(), persist=False)
    rec.add_item("mem", "only in memory")
    rec.add_events([("u1", "mem", 2_000_000_000)])
    assert rec.has_item("mem") and rec.describe()["store"] == "sqlite://"
    assert rec.user_history("u1")[1][-1] == 2_000_000_000
    assert not (run / STORE_FILE).exists()
    assert not Recommender.load(run).has_item("mem")


def test_a_read_only_run_directory_without_a_store_serves_and_refuses_writes(run, request):
    ro = request.getfixturevalue("read_only")
    rec = Recommender.load(ro, encoder=HashEncoder())
    assert len(rec.recommend(["i1"], k=5)) == 5 and not (ro / STORE_FILE).exists()
    with pytest.raises(StoreWriteError, match="not writable and has no store.sqlite"):
        rec.add_item("new", "some text")
    with pytest.raises(StoreWriteError, match="not writable"):
        rec.add_events([("u1", "i1", 5)])
