"""A :class:`Query` -> a :class:`PreparedQuery`: ids mapped to item indices, the user's history
read, timestamps checked (what :meth:`Recommender.build_query` does after catching up)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hstu_blair.errors import UnknownIdError
from hstu_blair.serving.catalogue import Catalogue
from hstu_blair.serving.errors import ServingError
from hstu_blair.serving.ids import check_k, check_time
from hstu_blair.serving.queries import PreparedQuery, Query, history_times

UserHistory = Callable[[str, bool], tuple[np.ndarray, np.ndarray, bool]]
"""A user's (item indices, timestamps, known to training) (see :meth:`UserEvents.history`)."""


def build_prepared(
    query: Query, catalogue: Catalogue, user_history: UserHistory, allowed: np.ndarray | None
) -> PreparedQuery:
    """Validate ``query`` and turn it into item indices; ``allowed`` is its filter's mask.

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
