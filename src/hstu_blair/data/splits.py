"""Train / validation / test splits computed from the prepared sequences (no data is copied).

Three protocols:

- ``loo`` (ours, default): for a user with T interactions the last one is the test target
  (history s_1..s_{T-1}), the second-to-last the validation target (history s_1..s_{T-2}), and
  training uses s_1..s_{T-2}. Users with T < 3 have no validation/test target (counted).
- ``reference`` (SPEC §1.5): no validation; training uses s_1..s_{T-1} (its last item is the
  training target), the test target is s_T with history s_1..s_{T-1}. Users with T < 2 skipped.
- ``temporal``: a global time split. Training uses every interaction before the validation
  cutoff; validation targets lie in [validation cutoff, cutoff), test targets at or after the
  cutoff; the history of a target is everything the user did before it (including the
  validation period for test targets, which the model reads but never trained on). ``next``
  takes each user's first interaction of the period as the target, ``all`` every one of them.
  No interaction after a cutoff is ever trained on, so nothing from the future leaks into
  training. A target without any earlier interaction cannot be scored and is counted.

A split is always: a per-user training prefix length plus evaluation targets (user, position),
so every model, report and the cold-start protocol use all three protocols alike.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

import numpy as np

from hstu_blair.errors import ConfigError

Protocol = Literal["loo", "reference", "temporal"]
PROTOCOLS: tuple[str, ...] = ("loo", "reference", "temporal")
TemporalTargets = Literal["next", "all"]


@dataclass(frozen=True)
class EvalTargets:
    """Evaluation examples: for user ``users[i]`` the target is item ``positions[i]`` of its sequence,
    and its history is the items before it."""

    users: np.ndarray  # (E,) int64 user indices
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
    info: dict[str, object] | None = None  # e.g. the temporal cutoffs as seconds and dates

    def targets(self, split: Literal["valid", "test"]) -> EvalTargets:
        """The evaluation targets of ``split``.

        Raises:
            ConfigError: ``valid`` under a protocol without validation.
        """
        if split == "valid":
            if self.valid is None:
                raise ConfigError(f"the {self.protocol!r} protocol (as configured) has no validation split")
            return self.valid
        return self.test


def make_split(lengths: np.ndarray, protocol: str = "loo") -> Split:
    """A leave-one-out split (``loo`` or ``reference``) from per-user sequence lengths.

    Args:
        lengths: (U,) number of interactions of each user.
        protocol: ``loo`` or ``reference`` (see the module docstring); ``temporal`` needs times:
            :func:`make_temporal_split`.
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
        raise ConfigError(
            f"unknown split protocol {protocol!r} here; valid: loo, reference (temporal needs times)"
        )
    skipped["users_without_training_pairs"] = int((train_len < 2).sum())
    return Split(protocol, train_len, valid, test, skipped)


def refit_split(split: Split) -> Split:
    """The ``loo`` split a refit trains on: every interaction before each user's test target (the
    validation target included), no validation, the same test targets (``train.refit``).

    Raises:
        ConfigError: a protocol other than ``loo`` (only it has one validation item per user).
    """
    if split.protocol != "loo" or split.valid is None:
        raise ConfigError(
            f"train.refit needs the 'loo' protocol with validation; this run's is {split.protocol!r}"
        )
    train_len = split.train_len.copy()
    train_len[split.test.users] = np.maximum(train_len[split.test.users], split.test.positions)
    info = {**(split.info or {}), "refit": "trained on every interaction before the test target"}
    return Split(split.protocol, train_len, None, split.test, split.skipped, info)


def cutoff_seconds(value: str | float | int, times: np.ndarray, name: str = "data.cutoff") -> int:
    """A cutoff as unix seconds: a quantile in (0, 1) of ``times``, an ISO date or datetime (UTC
    unless it says otherwise), or seconds.

    Raises:
        ConfigError: a value that is none of these.
    """
    if isinstance(value, str):
        try:
            when = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise ConfigError(
                f"{name}={value!r}: expected an ISO date such as 2021-06-01, a quantile in (0, 1) or unix seconds"
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        return int(when.timestamp())
    value = float(value)
    if 0.0 < value < 1.0:
        if times.size == 0:
            raise ConfigError(f"{name}={value}: a quantile of no interactions")
        return int(np.quantile(times, value, method="higher"))
    if value >= 1.0:
        return int(value)
    raise ConfigError(f"{name}={value}: expected a quantile in (0, 1), unix seconds or an ISO date")


def _period_targets(
    offsets: np.ndarray, times: np.ndarray, start: int, end: int | None, targets: TemporalTargets
) -> tuple[EvalTargets, dict[str, int]]:
    """Targets with ``start <= t < end`` (``end`` None = no end); per user the first (``next``) or all."""
    n_users = offsets.shape[0] - 1
    in_period = times >= start
    if end is not None:
        in_period &= times < end
    user_of = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(offsets))  # (N,)
    position = np.arange(times.shape[0], dtype=np.int64) - offsets[user_of]  # (N,)
    idx = np.flatnonzero(in_period)
    if targets == "next":
        first = np.ones(idx.shape[0], dtype=bool)
        first[1:] = user_of[idx[1:]] != user_of[idx[:-1]]
        idx = idx[first]
    no_history = position[idx] == 0
    kept = idx[~no_history]
    counts = {"targets_without_history": int(no_history.sum())}
    return EvalTargets(user_of[kept], position[kept]), counts


def _valid_cutoff_seconds(
    valid_cutoff: str | float | int | None, times: np.ndarray, t_test: int
) -> int | None:
    """The start of the validation period (see :func:`make_temporal_split`), ``None`` for ``"none"``.

    Raises:
        ConfigError: the default period does not fit before the cutoff, or it does not come before it.
    """
    if isinstance(valid_cutoff, str) and valid_cutoff.lower() == "none":
        return None
    if valid_cutoff is None:
        q = float((times < t_test).mean()) if times.size else 0.0
        if 2 * q - 1 <= 0:
            raise ConfigError(
                f"data.cutoff leaves {1 - q:.0%} of the interactions after it: too many for a default "
                "validation period of the same size; set data.valid_cutoff (or 'none')"
            )
        t_valid = int(np.quantile(times, 2 * q - 1, method="higher"))
    else:
        t_valid = cutoff_seconds(valid_cutoff, times, "data.valid_cutoff")
    if t_valid >= t_test:
        raise ConfigError(f"data.valid_cutoff ({t_valid}) must come before data.cutoff ({t_test})")
    return t_valid


def make_temporal_split(
    offsets: np.ndarray,
    times: np.ndarray,
    cutoff: str | float | int,
    valid_cutoff: str | float | int | None = None,
    targets: TemporalTargets = "next",
) -> Split:
    """A global time split (see the module docstring).

    Args:
        offsets: (U+1,) CSR offsets of the users' chronological sequences.
        times: (N,) timestamps (seconds), chronological within each user.
        cutoff: the start of the test period (:func:`cutoff_seconds`).
        valid_cutoff: the start of the validation period; default: as many interactions before
            the cutoff as there are after it (the quantile 2q - 1 when the cutoff is the quantile q);
            ``"none"``: no validation, training runs up to the cutoff.
        targets: ``next`` (each user's first interaction of a period) or ``all``.

    Raises:
        ConfigError: cutoffs out of order, or a period without any target.
    """
    times = np.asarray(times, dtype=np.int64)
    t_test = cutoff_seconds(cutoff, times)
    t_valid = _valid_cutoff_seconds(valid_cutoff, times, t_test)
    train_end = t_test if t_valid is None else t_valid
    # sequences are chronological and never empty: the prefix before train_end is a count per user
    train_len = np.add.reduceat((times < train_end).astype(np.int64), offsets[:-1])  # (U,)
    test, test_counts = _period_targets(offsets, times, t_test, None, targets)
    skipped = {
        "test_targets_without_history": test_counts["targets_without_history"],
        "users_without_training_pairs": int((train_len < 2).sum()),
    }
    valid = None
    if t_valid is not None:
        valid, valid_counts = _period_targets(offsets, times, t_valid, t_test, targets)
        skipped["valid_targets_without_history"] = valid_counts["targets_without_history"]
    if len(test) == 0:
        raise ConfigError("no test target after data.cutoff: move the cutoff earlier")
    if valid is not None and len(valid) == 0:
        raise ConfigError("no validation target between data.valid_cutoff and data.cutoff")

    def iso(t: int) -> str:
        return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="seconds")

    info = {"cutoff": t_test, "cutoff_utc": iso(t_test), "targets": targets}
    if t_valid is not None:
        info.update(valid_cutoff=t_valid, valid_cutoff_utc=iso(t_valid))
    return Split("temporal", train_len, valid, test, skipped, info)
