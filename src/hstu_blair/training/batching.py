"""Turning users' sequences into padded tensors, vectorised over the batch (no per-user Python loop).

Layout (SPEC §1.5): left-aligned positions (the oldest kept item at position 0), right padding
with id 0. Timestamps carry one more column than ids: ``timestamps[b, lengths[b]]`` is the time
of the event to predict (the reference scatters the target timestamp there; HSTU's relative
time bias of the last position uses it).
"""

from __future__ import annotations

from dataclasses import dataclass

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


def eval_batch(data: SequenceData, users: np.ndarray, positions: np.ndarray, max_len: int) -> Batch:
    """Evaluation batch: history = the ``max_len`` items before the target, target at ``positions``.

    The target's timestamp is placed at ``timestamps[b, lengths[b]]`` (visible to the model, as in
    the reference: the "when" of the next event, not the "what").
    """
    items, times, lengths = _windows(data, users, positions, max_len)
    b, w = items.shape
    flat_target = data.offsets[users] + positions
    ts = np.zeros((b, w + 1), dtype=np.int64)
    ts[:, :w] = times
    ts[np.arange(b), lengths] = data.time_seq[flat_target]
    return Batch(
        users=torch.from_numpy(users.astype(np.int64)),
        ids=torch.from_numpy(items.astype(np.int64)),
        timestamps=torch.from_numpy(ts),
        lengths=torch.from_numpy(lengths.astype(np.int64)),
        targets=torch.from_numpy(data.item_seq[flat_target].astype(np.int64)),
    )


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
