"""Building queries: a ``Query`` (external ids) -> a ``PreparedQuery`` (item indices), checked.

The :class:`~hstu_blair.serving.recommender.Recommender` catches up with the store first and then
calls :func:`build_query`; callers that prepare many queries at once (the export) catch up once and
call it directly."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from hstu_blair.errors import UnknownIdError
from hstu_blair.serving.catalogue import Catalogue
from hstu_blair.serving.errors import ServingError
from hstu_blair.serving.ids import check_k, check_time
from hstu_blair.serving.queries import PreparedQuery, Query, history_times

UserHistory = Callable[[str, bool], tuple[np.ndarray, np.ndarray, bool]]
"""``(user_id, seen) -> (L,) item indices, (L,) timestamps, known to training`` (see
:meth:`~hstu_blair.serving.events.UserEvents.history`)."""

AnyQuery = Query | PreparedQuery | Sequence[str]
"""What the batch methods take: a ``Query``, a ``PreparedQuery`` or a plain history of item ids."""


def build_query(
    query: Query, catalogue: Catalogue, user_history: UserHistory, allowed: np.ndarray | None = None
) -> PreparedQuery:
    """Validate ``query`` and turn it into item indices (cheap; no model call); ``allowed`` is the
    (N+1,) mask of its filter (None: every item).

    Raises:
        UnknownIdError: unknown item ids (unless ``skip_unknown``) or an unknown user id.
        ServingError: neither or both of history and user_id, an empty history, timestamps of
            the wrong length or range, or ``k < 1``.
    """
    if (query.history is None) == (query.user_id is None):
        raise ServingError("give exactly one of history (item ids) or user_id")
    check_k(query.k)
    skipped: list[str] = []
    if query.user_id is not None:
        ids, times, known_user = user_history(str(query.user_id), bool(query.exclude_seen))
        if not known_user and ids.size == 0:
            raise UnknownIdError("user", [str(query.user_id)])
    else:
        if isinstance(query.history, str):
            raise ServingError("history must be a list of item ids, not one string")
        history = list(query.history)
        known, positions, skipped = catalogue.indices(history, query.skip_unknown)
        ids = np.asarray(known, dtype=np.int64)  # (L,)
        times = history_times(len(history), query.timestamps, positions)  # (L,)
    if ids.size == 0:
        what = "all its item ids are unknown" if skipped else "it is empty"
        raise ServingError(f"cannot recommend from this history: {what}")
    query_time = int(times[-1]) if query.query_time is None else check_time(query.query_time, "query_time")
    return PreparedQuery(
        ids, times, query_time, bool(query.exclude_seen), query.k, tuple(skipped), allowed=allowed
    )


def as_query(q: AnyQuery, k: int, exclude_seen: bool, skip_unknown: bool) -> Query | PreparedQuery:
    """A plain history as a ``Query`` with these settings; a ``Query`` or ``PreparedQuery`` as is."""
    if isinstance(q, (Query, PreparedQuery)):
        return q
    return Query(history=q, k=k, exclude_seen=exclude_seen, skip_unknown=skip_unknown)
