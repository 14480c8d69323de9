"""Derived datasets: events appended in time order, new users and items, cuts at a time."""

from __future__ import annotations

import numpy as np
import polars as pl

from hstu_blair.data.dataset import SequenceData
from hstu_blair.data.derive import append_events, save_dataset, truncate_before


def test_append_events(tiny_dataset):
    data = SequenceData.load(tiny_dataset)
    user = data.sequences["user_id"][0]
    last = int(data.user_times(0)[-1])
    events = [
        (user, "i3", last + 10),
        (user, "i4", last),  # a tie with the last interaction: after it
        ("newcomer", "new-1", 5),
        ("newcomer", "i1", 4),
        ("someone", "missing", 1),
    ]
    new = pl.DataFrame({"item_id": ["new-1"], "title": ["N"], "text": ["new text"]})
    derived, report = append_events(data, events, new)
    assert (report.items, report.events, report.new_users, report.unknown_item_events) == (1, 4, 1, 1)
    assert derived.num_items == data.num_items + 1 and derived.item_ids[-1] == "new-1"
    assert derived.data_hash != data.data_hash
    items = derived.user_items(0)
    assert list(derived.item_ids[items[-2:]]) == ["i4", "i3"] and len(items) == len(data.user_items(0)) + 2
    assert np.all(np.diff(derived.user_times(0)) >= 0)
    u = derived.user_index("newcomer")
    assert list(derived.item_ids[derived.user_items(u)]) == ["i1", "new-1"]
    assert (derived.user_items(1) == data.user_items(1)).all()


def test_truncate_and_save(tiny_dataset, tmp_path):
    data = SequenceData.load(tiny_dataset)
    cutoff = int(np.quantile(data.time_seq, 0.5))
    cut, dropped = truncate_before(data, cutoff, "half")
    assert cut.time_seq.max() < cutoff and cut.num_items == data.num_items
    assert cut.num_interactions == int((data.time_seq < cutoff).sum())
    assert cut.num_users + dropped == data.num_users
    saved = save_dataset(cut, tmp_path / "half")
    assert saved.num_interactions == cut.num_interactions and saved.name == "half"
    assert (saved.item_seq == cut.item_seq).all()


def test_appended_events_that_repeat_an_interaction_are_left_out(tiny_dataset):
    data = SequenceData.load(tiny_dataset)
    user = data.sequences["user_id"][0]
    item, when = data.item_ids[data.user_items(0)[-1]], int(data.user_times(0)[-1])
    events = [(user, item, when), ("newcomer", "i1", 4), ("newcomer", "i1", 4), (user, item, when + 1)]
    derived, report = append_events(data, events)
    assert (report.events, report.duplicate_events) == (2, 2)
    assert len(derived.user_items(0)) == len(data.user_items(0)) + 1
    assert list(derived.item_ids[derived.user_items(derived.user_index("newcomer"))]) == ["i1"]
