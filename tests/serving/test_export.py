"""Batch export: every user's top k in a Parquet or CSV file, equal to ``recommend_user``."""

from __future__ import annotations

import sys

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from hstu_blair.run.store import Store
from hstu_blair.serving.export import ExportSummary, read_user_ids
from hstu_blair.serving.recommender import Recommender, ServingError


@pytest.fixture(scope="module")
def rec(id_run) -> Recommender:
    r = Recommender.load(id_run, persist=False)
    r.add_events([("only-events", "i3", 1_700_000_000), ("only-events", "i4", 1_700_000_100)])
    return r


def _by_user(table) -> dict[str, list[tuple[int, str, float, str]]]:
    out: dict[str, list[tuple[int, str, float, str]]] = {}
    for row in table.to_pylist():
        out.setdefault(str(row["user_id"]), []).append(
            (row["rank"], str(row["item_id"]), row["score"], row["title"])
        )
    return out


def _check_equal(rec: Recommender, users: dict, ids: list[str], k: int) -> None:
    for user_id in ids:
        expected = rec.recommend_user(user_id, k)
        got = users[user_id]
        assert [r[0] for r in got] == list(range(1, len(expected) + 1))
        assert [r[1] for r in got] == [e.item_id for e in expected]
        assert [r[3] for r in got] == [e.title for e in expected]
        assert [r[2] for r in got] == pytest.approx([e.score for e in expected], abs=1e-5)


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_every_user_equals_recommend_user(rec, tmp_path, suffix):
    path = tmp_path / f"recs{suffix}"
    summary = rec.export_recommendations(path, k=5, batch_size=7, progress=False)  # 65 users: 10 batches
    assert isinstance(summary, ExportSummary)
    assert summary.users == rec.run.data.num_users + 1 and summary.skipped == 0
    assert summary.rows == 5 * summary.users and summary.users_per_s > 0
    table = pq.read_table(path) if suffix == ".parquet" else pacsv.read_csv(path)
    users = _by_user(table)
    assert len(users) == summary.users and "only-events" in users
    _check_equal(rec, users, ["u0", "u6", "u7", "u13", "u63", "only-events"], 5)  # both sides of batch edges
    assert not list(tmp_path.glob("*.part"))


@pytest.mark.parametrize("batch_size", [1, 2, 3, 1024])
def test_batch_boundaries_do_not_change_the_file(rec, tmp_path, batch_size):
    users = [f"u{i}" for i in range(9)]
    rec.export_recommendations(
        tmp_path / "a.parquet", k=3, batch_size=batch_size, users=users, progress=False
    )
    rec.export_recommendations(tmp_path / "b.parquet", k=3, batch_size=4, users=users, progress=False)
    a, b = pq.read_table(tmp_path / "a.parquet"), pq.read_table(tmp_path / "b.parquet")
    assert a.column("user_id").to_pylist() == b.column("user_id").to_pylist()
    assert a.column("item_id").to_pylist() == b.column("item_id").to_pylist()
    assert a.column("user_id").to_pylist()[::3] == users


def test_freed_memory_is_released_after_each_batch(rec, tmp_path, monkeypatch):
    from hstu_blair.serving import export
    from hstu_blair.training.allocator import release_freed_memory

    assert release_freed_memory() is sys.platform.startswith("linux")  # glibc here; a no-op elsewhere
    calls = []
    monkeypatch.setattr(export, "release_freed_memory", lambda: calls.append(1))
    users = [f"u{i}" for i in range(9)]
    rec.export_recommendations(tmp_path / "a.parquet", k=3, batch_size=4, users=users, progress=False)
    assert len(calls) == 3  # 4 + 4 + 1 users


def test_a_heavy_history_splits_the_model_calls_of_its_batch():
    import numpy as np

    from hstu_blair.serving.export import HISTORY_CELLS, model_calls
    from hstu_blair.serving.queries import PreparedQuery

    def q(n: int) -> PreparedQuery:
        return PreparedQuery(np.ones(n, np.int64), np.ones(n, np.int64), 2, True, 3)

    light = [q(5)] * 8
    assert model_calls(light, 8) == [slice(0, 8)]
    heavy = 4 * HISTORY_CELLS  # 4 users' worth of cells: at most 2 users per call beside it
    calls = model_calls([q(5), q(5), q(heavy), q(5), q(5), q(5), q(5), q(5)], 8)
    assert calls == [slice(0, 2), slice(2, 4), slice(4, 8)]
    assert model_calls([q(100 * HISTORY_CELLS)], 1) == [slice(0, 1)] and model_calls([], 4) == []


def test_export_with_a_tiny_cell_budget_writes_the_same_file(rec, tmp_path, monkeypatch):
    from hstu_blair.serving import export

    users = [f"u{i}" for i in range(12)]
    rec.export_recommendations(tmp_path / "a.parquet", k=4, batch_size=6, users=users, progress=False)
    monkeypatch.setattr(export, "HISTORY_CELLS", 1)  # every user a model call of their own
    rec.export_recommendations(tmp_path / "b.parquet", k=4, batch_size=6, users=users, progress=False)
    a, b = pq.read_table(tmp_path / "a.parquet"), pq.read_table(tmp_path / "b.parquet")
    assert a.column("item_id").to_pylist() == b.column("item_id").to_pylist()
    assert a.column("score").to_pylist() == pytest.approx(b.column("score").to_pylist(), abs=1e-5)


def test_users_file_and_users_without_history(rec, tmp_path):
    listing = tmp_path / "users.txt"
    listing.write_text("u5\n\n  u2 \nnobody\nonly-events\n")
    ids = read_user_ids(listing)
    assert ids == ["u5", "u2", "nobody", "only-events"]
    summary = rec.export_recommendations(tmp_path / "r.csv", k=4, users=ids, progress=False)
    assert (summary.users, summary.skipped, summary.rows) == (3, 1, 12)
    users = _by_user(pacsv.read_csv(tmp_path / "r.csv"))
    assert list(users) == ["u5", "u2", "only-events"]
    _check_equal(rec, users, ["u5", "u2"], 4)


def test_include_seen(rec, tmp_path):
    rec.export_recommendations(tmp_path / "r.parquet", k=3, users=["u1"], exclude_seen=False, progress=False)
    got = [r[1] for r in _by_user(pq.read_table(tmp_path / "r.parquet"))["u1"]]
    assert got == [r.item_id for r in rec.recommend_user("u1", 3, exclude_seen=False)]


def test_bad_suffix_names_the_path(rec, tmp_path):
    path = tmp_path / "recs.xlsx"
    with pytest.raises(ServingError, match="recs.xlsx"):
        rec.export_recommendations(path, progress=False)
    assert not path.exists()


def test_filtered_export_keeps_only_allowed_items_and_k(rec, tmp_path):
    item_filter = {"where": {"in_stock": True, "price": {"min": 10}}, "exclude": ["i11"]}
    path = tmp_path / "filtered.parquet"
    summary = rec.export_recommendations(path, k=5, filter=item_filter, progress=False)
    users = _by_user(pq.read_table(path))
    assert summary.users == len(users) > 0
    price = {r: rec.item(r)["attributes"].get("price") for r in {x[1] for u in users.values() for x in u}}
    for user_id, rows in list(users.items())[:50]:
        expected = rec.recommend_user(user_id, 5, filter=item_filter)
        assert [r[1] for r in rows] == [e.item_id for e in expected]
        assert len(rows) == 5  # enough items pass: exactly k
    for item_id in price:
        attributes = rec.item(item_id)["attributes"]
        assert attributes["in_stock"] is True and attributes["price"] >= 10 and item_id != "i11"


def test_store_lists_the_users_of_its_events(store_location):
    store = Store(store_location)
    assert store.event_users() == []
    store.add_events([("b", "i1", 5), ("a", "i1", 6), ("b", "i2", 7)])
    assert sorted(store.event_users()) == ["a", "b"]
    store.forget_user("b")
    assert store.event_users() == ["a"]
    store.close()
