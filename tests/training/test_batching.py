"""Batch construction: layout, windows, target placement, and length bucketing."""

from __future__ import annotations

import numpy as np
import pytest

from hstu_blair.data.dataset import SequenceData
from hstu_blair.training.batching import epoch_batches, eval_batch, query_batch, train_batch


def test_train_batch_layout(tiny_dataset):
    data = SequenceData.load(tiny_dataset)
    split = data.split("loo")
    users = np.array([0, 5])
    b = train_batch(data, users, split.train_len, max_len=4)
    for row, u in enumerate(users):
        prefix = data.user_items(u)[: split.train_len[u]][-5:]  # last max_len + 1 items
        times = data.user_times(u)[: split.train_len[u]][-5:]
        n = b.lengths[row].item()
        assert n == len(prefix) - 1
        assert b.ids[row, :n].tolist() == prefix[:-1].tolist() and (b.ids[row, n:] == 0).all()
        assert b.targets[row, :n].tolist() == prefix[1:].tolist()
        assert b.timestamps[row, : n + 1].tolist() == times.tolist()  # t[n] = time of the last target


def test_eval_batch_puts_the_target_time_after_the_history(tiny_dataset):
    data = SequenceData.load(tiny_dataset)
    test = data.split("loo").test
    b, targets = eval_batch(data, test.users[:3], test.positions[:3], max_len=6)
    for row in range(3):
        u, p = test.users[row], test.positions[row]
        seq, times = data.user_items(u), data.user_times(u)
        n = b.lengths[row].item()
        assert b.ids[row, :n].tolist() == seq[:p][-6:].tolist()
        assert targets[row].item() == seq[p]
        assert b.timestamps[row, n].item() == times[p]


def test_query_batch_exclusions():
    """``history`` excludes the whole known history (what the service does), ``window`` only what
    the model reads (the reference), ``none`` nothing; the model reads the last ``max_len`` items."""
    items = np.array([5, 6, 7, 8, 9, 1, 2])  # two histories: [5..9] and [1, 2]
    times = np.array([10, 20, 30, 40, 50, 60, 70])
    starts, ends, query = np.array([0, 5]), np.array([5, 7]), np.array([55, 75])
    h = query_batch(items, times, starts, ends, query, max_len=3, exclude="history")
    assert h.ids.tolist() == [[7, 8, 9], [1, 2, 0]] and h.lengths.tolist() == [3, 2]
    assert h.timestamps.tolist() == [[30, 40, 50, 55], [60, 70, 75, 0]]
    assert h.exclude.tolist() == [[5, 6, 7, 8, 9], [1, 2, 0, 0, 0]]
    w = query_batch(items, times, starts, ends, query, max_len=3, exclude="window")
    assert w.exclude.tolist() == [[7, 8, 9], [1, 2, 0]]
    assert query_batch(items, times, starts, ends, query, max_len=3, exclude="none").exclude is None
    with pytest.raises(ValueError, match="valid: history"):
        query_batch(items, times, starts, ends, query, max_len=3, exclude="seen")


def test_epoch_batches_cover_every_user_once_and_bucket_lengths():
    rng = np.random.default_rng(0)
    users = np.arange(1000)
    lengths = rng.integers(2, 200, size=1000)
    plain = epoch_batches(users, lengths, 32, np.random.default_rng(1), bucket_by_length=False)
    bucketed = epoch_batches(
        users, lengths, 32, np.random.default_rng(1), bucket_by_length=True, bucket_batches=8
    )
    for batches in (plain, bucketed):
        assert sorted(np.concatenate(batches).tolist()) == users.tolist()
    padded = lambda bs: sum(lengths[b].max() * b.size for b in bs)  # noqa: E731
    assert padded(bucketed) < 0.75 * padded(plain)
