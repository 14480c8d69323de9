"""Serving's errors: what a query, an added item or an event cannot be served for."""

from __future__ import annotations

from hstu_blair.errors import HstuBlairError, UnknownIdError


class ServingError(HstuBlairError, ValueError):
    """A query or an item the recommender cannot serve (empty history, bad timestamps, ...)."""


class DuplicateItemError(ServingError):
    """New item ids that are already in the catalogue (``ids``)."""

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids
        super().__init__(f"item ids must be new; already in the catalogue: {ids}")


class StoreWriteError(ServingError):
    """The store cannot be written (a read-only run directory, a full disk, an unreachable
    database server): the server's fault, not the request's."""


class EventConflict(ServingError):
    """An ``event_id`` or idempotency key already used for other events (nothing was stored)."""


__all__ = ["DuplicateItemError", "EventConflict", "ServingError", "StoreWriteError", "UnknownIdError"]
