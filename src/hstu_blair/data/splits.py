"""Leave-one-out splits computed from the prepared sequences (no data is copied).

Two protocols:

- ``loo`` (ours, default): for a user with T interactions the last one is the test target
  (history s_1..s_{T-1}), the second-to-last the validation target (history s_1..s_{T-2}), and
  training uses s_1..s_{T-2}. Users with T < 3 have no validation/test target (counted).
- ``reference`` (SPEC §1.5): no validation; training uses s_1..s_{T-1} (its last item is the
  training target), the test target is s_T with history s_1..s_{T-1}. Users with T < 2 skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Protocol = Literal["loo", "reference"]
PROTOCOLS: tuple[str, ...] = ("loo", "reference")


@dataclass(frozen=True)
class EvalTargets:
    """Evaluation examples: for user ``users[i]`` the target is item ``positions[i]`` of its sequence,
    and its history is the items before it."""

    users: np.ndarray  # (E,) int64 user ids
    positions: np.ndarray  # (E,) int64 index of the target within the user's sequence

    def __len__(self) -> int:
        return int(self.users.shape[0])


@dataclass(frozen=True)
class Split:
    """Training prefix lengths and evaluation targets of one protocol."""

    protocol: str
    train_len: np.ndarray  # (U,) int64: items of each user available to training (a prefix)
    valid: EvalTargets | None
    test: EvalTargets
    skipped: dict[str, int]

    def targets(self, split: Literal["valid", "test"]) -> EvalTargets:
        """The evaluation targets of ``split``; the reference protocol has no validation split."""
        if split == "valid":
            if self.valid is None:
                raise ValueError(f"the {self.protocol!r} protocol has no validation split")
            return self.valid
        return self.test


def make_split(lengths: np.ndarray, protocol: str = "loo") -> Split:
    """Compute a split from per-user sequence lengths.

    Args:
        lengths: (U,) number of interactions of each user.
        protocol: ``loo`` or ``reference`` (see module docstring).
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    users = np.arange(lengths.shape[0], dtype=np.int64)
    if protocol == "loo":
        ok = lengths >= 3
        train_len = np.maximum(lengths - 2, 0)
        valid = EvalTargets(users[ok], lengths[ok] - 2)
        test = EvalTargets(users[ok], lengths[ok] - 1)
        skipped = {"users_without_eval_targets": int((~ok).sum())}
    elif protocol == "reference":
        ok = lengths >= 2
        train_len = np.maximum(lengths - 1, 0)
        valid = None
        test = EvalTargets(users[ok], lengths[ok] - 1)
        skipped = {"users_without_eval_targets": int((~ok).sum())}
    else:
        raise ValueError(f"unknown split protocol {protocol!r}; valid: {', '.join(PROTOCOLS)}")
    skipped["users_without_training_pairs"] = int((train_len < 2).sum())
    return Split(protocol, train_len, valid, test, skipped)
