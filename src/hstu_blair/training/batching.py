"""Turning users' sequences into padded tensors, vectorised over the batch (no per-user Python loop).

Layout (SPEC §1.5): left-aligned positions (the oldest kept item at position 0), right padding
with index 0. Timestamps carry one more column than ids: ``timestamps[b, lengths[b]]`` is the
time of the event to predict (the reference scatters the target timestamp there; HSTU's relative
time bias of the last position uses it): the query time.

:func:`query_batch` is the one place that turns histories into ranking queries, for evaluation
and for the serving API alike: it keeps the most recent ``max_len`` items, puts the query time
after them, and lists the items that may not be recommended (:data:`EXCLUDE_MODES`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from hstu_blair.data.dataset import SequenceData


@dataclass
class Batch:
    """A padded batch. ``targets`` is set for training (next item at every position) and for
    evaluation (the single target, shape (B,))."""

    users: torch.Tensor  # (B,) long
    ids: torch.Tensor  # (B, T) long, 0 = padding
    timestamps: torch.Tensor  # (B, T+1) long, seconds
    lengths: torch.Tensor  # (B,) long, number of real positions
    targets: torch.Tensor  # (B, T) next-item ids (training) or (B,) target ids (evaluation)

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            *(
                t.to(device, non_blocking=True)
                for t in (self.users, self.ids, self.timestamps, self.lengths, self.targets)
            )
        )


def _windows(data: SequenceData, users: np.ndarray, ends: np.ndarray, width: int) -> tuple[np.ndarray, ...]:
    """The last ``width`` items (and times) before position ``ends`` of each user, left-aligned.

    Returns (items (B, W), times (B, W), lengths (B,)) with W = max length in the batch.
    """
    lengths = np.minimum(ends, width)  # (B,)
    starts = data.offsets[users] + ends - lengths  # (B,) flat index of the first kept item
    w = int(lengths.max()) if lengths.size else 0
    cols = np.arange(w)  # (W,)
    valid = cols[None, :] < lengths[:, None]  # (B, W)
    flat = np.where(valid, starts[:, None] + cols[None, :], 0)
    items = np.where(valid, data.item_seq[flat], 0)
    times = np.where(valid, data.time_seq[flat], 0)
    return items, times, lengths


def train_batch(data: SequenceData, users: np.ndarray, train_len: np.ndarray, max_len: int) -> Batch:
    """Training batch: each user's training prefix, last ``max_len + 1`` items; position i predicts i+1.

    Args:
        data: the dataset.
        users: (B,) user ids; each must have ``train_len >= 2``.
        train_len: (U,) training prefix length of every user (from the split).
        max_len: history length L_max.
    """
    items, times, n = _windows(data, users, train_len[users], max_len + 1)  # n = L_b + 1
    lengths = n - 1
    inputs = items[:, :-1]  # (B, T) all but the last kept item
    ids = np.where(np.arange(inputs.shape[1])[None, :] < lengths[:, None], inputs, 0)  # drop the final target
    targets = items[:, 1:]  # (B, T) next item of each position, 0 past the end
    return Batch(
        users=torch.from_numpy(users.astype(np.int64)),
        ids=torch.from_numpy(ids.astype(np.int64)),
        timestamps=torch.from_numpy(times.astype(np.int64)),  # (B, T+1): t[L_b] = time of the last target
        lengths=torch.from_numpy(lengths.astype(np.int64)),
        targets=torch.from_numpy(targets.astype(np.int64)),
    )


Exclude = Literal["history", "window", "none"]
EXCLUDE_MODES: tuple[str, ...] = ("history", "window", "none")
"""What a query may not be recommended: ``history`` = every item of the user's known history (what
the service does, our default), ``window`` = only the (at most ``max_len``) items the model reads
(the reference's evaluation rule, SPEC §5), ``none`` = nothing."""


@dataclass
class QueryBatch:
    """Ranking queries, padded: the model reads ``ids``/``timestamps``/``lengths``; ``exclude`` lists
    the item indices never ranked for each row (0 = nothing; None = exclude nothing)."""

    ids: torch.Tensor  # (B, T) long, the most recent items of each history, 0 = padding
    timestamps: torch.Tensor  # (B, T+1) long; timestamps[b, lengths[b]] = the query time
    lengths: torch.Tensor  # (B,) long
    exclude: torch.Tensor | None  # (B, W) long item indices, 0 = nothing

    def to(self, device: torch.device | str) -> QueryBatch:
        return QueryBatch(
            self.ids.to(device),
            self.timestamps.to(device),
            self.lengths.to(device),
            None if self.exclude is None else self.exclude.to(device),
        )


def query_batch(
    item_seq: np.ndarray,
    time_seq: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    query_times: np.ndarray,
    max_len: int,
    exclude: Exclude = "history",
) -> QueryBatch:
    """Queries from histories held flat: row b's history is ``item_seq[starts[b]:ends[b]]`` (oldest
    first, at least one item) with times ``time_seq[starts[b]:ends[b]]``.

    The model reads the last ``max_len`` items of each history and ``query_times[b]`` as the time of
    the event to predict.

    Args:
        item_seq: (N,) item indices of all histories, concatenated.
        time_seq: (N,) their timestamps (seconds).
        starts, ends: (B,) each row's slice of ``item_seq``; ``ends > starts``.
        query_times: (B,) the time of the recommendation (evaluation: the target's timestamp).
        max_len: history length L_max the model reads.
        exclude: see :data:`EXCLUDE_MODES`.
    """
    if exclude not in EXCLUDE_MODES:
        raise ValueError(f"exclude={exclude!r}; valid: {', '.join(EXCLUDE_MODES)}")
    starts, ends = np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)
    full = ends - starts  # (B,) whole history lengths
    lengths = np.minimum(full, max_len)  # (B,)
    first = ends - lengths  # (B,) flat index of the first item the model reads
    b, w = lengths.shape[0], int(lengths.max()) if lengths.size else 0
    cols = np.arange(w)  # (W,)
    valid = cols[None, :] < lengths[:, None]  # (B, W)
    flat = np.where(valid, first[:, None] + cols[None, :], 0)
    ids = np.where(valid, item_seq[flat], 0).astype(np.int64)  # (B, W)
    ts = np.zeros((b, w + 1), dtype=np.int64)
    ts[:, :w] = np.where(valid, time_seq[flat], 0)
    ts[np.arange(b), lengths] = query_times
    excluded = None
    if exclude == "window":
        excluded = torch.from_numpy(ids)
    elif exclude == "history":
        h = int(full.max()) if full.size else 0
        hcols = np.arange(h)  # (H,)
        in_history = hcols[None, :] < full[:, None]  # (B, H)
        hflat = np.where(in_history, starts[:, None] + hcols[None, :], 0)
        excluded = torch.from_numpy(np.where(in_history, item_seq[hflat], 0).astype(np.int64))  # (B, H)
    return QueryBatch(
        torch.from_numpy(ids), torch.from_numpy(ts), torch.from_numpy(lengths.astype(np.int64)), excluded
    )


def eval_batch(
    data: SequenceData, users: np.ndarray, positions: np.ndarray, max_len: int, exclude: Exclude = "history"
) -> tuple[QueryBatch, torch.Tensor]:
    """Evaluation queries: the history is everything before position ``positions[b]`` of user
    ``users[b]`` and the query time is that target's timestamp (visible to the model, as in the
    reference: the "when" of the next event, not the "what").

    Returns:
        The queries and the (B,) target item indices.
    """
    starts = data.offsets[users]
    flat_target = starts + positions
    batch = query_batch(
        data.item_seq, data.time_seq, starts, flat_target, data.time_seq[flat_target], max_len, exclude
    )
    return batch, torch.from_numpy(data.item_seq[flat_target].astype(np.int64))


def epoch_batches(
    users: np.ndarray,
    lengths: np.ndarray,
    batch_size: int,
    rng: np.random.Generator,
    bucket_by_length: bool = True,
    bucket_batches: int = 32,
) -> list[np.ndarray]:
    """Split an epoch's users into batches.

    Without bucketing: a random permutation cut into consecutive batches (the reference).
    With bucketing: the permutation is cut into windows of ``bucket_batches`` batches, each window
    is sorted by sequence length and cut into batches, and the batch order is shuffled. Each user
    still appears exactly once per epoch, but a batch holds users of similar length, so the padded
    width T (and the O(T^2) attention cost) shrinks for all but the longest users.

    Args:
        users: ids of the users to train on this epoch.
        lengths: (len(users),) effective length of each (e.g. ``min(train_len, max_len + 1)``).
        batch_size: users per batch.
        rng: the epoch's generator.
        bucket_by_length: group users of similar length.
        bucket_batches: batches per sorting window.
    """
    order = rng.permutation(users.size)
    if not bucket_by_length:
        return [users[order[i : i + batch_size]] for i in range(0, users.size, batch_size)]
    window = batch_size * bucket_batches
    batches = []
    for start in range(0, users.size, window):
        chunk = order[start : start + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(users[chunk[i : i + batch_size]] for i in range(0, chunk.size, batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]
