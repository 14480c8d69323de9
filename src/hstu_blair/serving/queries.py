"""What goes into a recommendation and what comes out: ``Query`` -> ``PreparedQuery`` ->
``Recommendations``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hstu_blair.serving.errors import ServingError
from hstu_blair.serving.ids import check_time


@dataclass(frozen=True)
class Reason:
    """A history item that raised a recommendation's score: ``weight`` = the score with the whole
    history minus the score without this item (see :mod:`hstu_blair.serving.reasons`)."""

    item_id: str
    title: str
    weight: float


@dataclass(frozen=True)
class Recommendation:
    """One recommended item: external id, score (cosine of query and item vector), title, and the
    history items that contributed most (``reasons``, best first; empty unless explain was asked)."""

    item_id: str
    score: float
    title: str
    reasons: tuple[Reason, ...] = ()


class Recommendations(list):
    """A best-first ``list[Recommendation]``; ``skipped`` holds the unknown history ids that
    ``skip_unknown=True`` left out (in input order)."""

    def __init__(self, items: Sequence[Recommendation] = (), skipped: Sequence[str] = ()) -> None:
        super().__init__(items)
        self.skipped: list[str] = list(skipped)


@dataclass(frozen=True)
class Query:
    """One recommendation request: a ``history`` of item ids (oldest first) or a known ``user_id``.

    ``timestamps``: seconds, one per history item (default: 1 s apart, ending now).
    ``query_time``: when the recommendation is for (default: the last history timestamp).
    ``skip_unknown``: leave unknown history ids out instead of raising ``UnknownIdError``.
    ``filter``: which items may be recommended (an ``ItemFilter``, its JSON form, or None: all).
    """

    history: Sequence[str] | None = None
    user_id: str | None = None
    timestamps: Sequence[int] | None = None
    query_time: int | None = None
    k: int = 10
    exclude_seen: bool = True
    skip_unknown: bool = False
    filter: Any = None


@dataclass(frozen=True)
class PreparedQuery:
    """A validated query in item indices, ready for a batch (see :meth:`Recommender.build_query`).

    The history is whole: the model reads its last ``max_len`` items, and with ``exclude_seen``
    none of its items is recommended (``batching.query_batch`` decides both, as in evaluation)."""

    ids: np.ndarray  # (L,) int64 item indices (item_idx), oldest first
    times: np.ndarray  # (L,) int64 seconds
    query_time: int
    exclude_seen: bool
    k: int
    skipped: tuple[str, ...] = ()
    allowed: np.ndarray | None = None  # (N+1,) bool: the items its filter allows (None: all)


def history_times(n: int, timestamps: Sequence[int] | None, kept: list[int]) -> np.ndarray:
    """(len(kept),) int64 times of the kept positions of a history of ``n`` items: the given
    ``timestamps``, or 1 s apart ending now.

    Raises:
        ServingError: not one timestamp per history item, or one out of range.
    """
    if timestamps is None:
        now = int(time.time())
        return now - np.arange(len(kept) - 1, -1, -1, dtype=np.int64)
    if isinstance(timestamps, (str, bytes)) or len(timestamps) != n:
        raise ServingError(f"got {len(timestamps)} timestamps for {n} history items")
    checked = [check_time(t, f"timestamps[{i}]") for i, t in enumerate(timestamps)]
    return np.asarray(checked, dtype=np.int64)[kept]
