"""Item attributes in the store: merged per item, every change with a higher ``seq`` (SQLite and
PostgreSQL) and a cheap head."""

from __future__ import annotations

from hstu_blair.run.store import Store


def test_changes_merge_and_come_in_order(store_location):
    store = Store(store_location)
    assert store.attribute_head() == 0 and store.attribute_changes() == []
    first = store.update_attributes("a", {"in_stock": True, "price": 3})
    second = store.update_attributes("b", {"category": "Books"})
    third = store.update_attributes("a", {"in_stock": False, "price": None})
    assert third.values == {"in_stock": False, "price": None}  # merged; None kept (it removes)
    assert first.seq < second.seq < third.seq == store.attribute_head()
    changes = store.attribute_changes()
    assert [(c.item_id, c.seq) for c in changes] == [("b", second.seq), ("a", third.seq)]
    assert store.attribute_changes(second.seq) == [changes[1]]
    other = Store(store_location)  # another handle (process) sees the same
    assert other.attribute_head() == third.seq
    assert other.attribute_changes(0)[-1].values == {"in_stock": False, "price": None}


def test_a_deleted_last_change_does_not_reuse_its_seq(store_location):
    store = Store(store_location)
    a = store.update_attributes("a", {"x": 1})
    b = store.update_attributes("a", {"x": 2})  # deletes the row of seq a, the highest
    assert b.seq > a.seq
