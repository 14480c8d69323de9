"""Users' events in the store: each stored once, batches made idempotent by a key, and a user's
latest events read without the rest (:class:`hstu_blair.run.store.Store` calls these inside its
transactions).

An event's identity is its client ``event_id`` when it has one, else ``(user_id, item_id,
timestamp)``: a second event with the same identity is a duplicate and is not stored again. A batch
with an idempotency key is recorded with its answer; the same key with the same batch is answered
as the first time and stores nothing, the same key with another batch is refused.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from hstu_blair.errors import HstuBlairError
from hstu_blair.run.store_schema import event_batches, events

CHUNK = 500
"""Ids per ``IN (...)`` query."""


class EventConflictError(HstuBlairError, ValueError):
    """An ``event_id`` or idempotency key already used for other content (nothing was stored)."""


@dataclass(frozen=True)
class EventRow:
    """One event as stored: ``event_id`` is the client's id (``""``: none given)."""

    user_id: str
    item_id: str
    timestamp: int
    event_id: str = ""

    @property
    def identity(self) -> tuple[Any, ...]:
        """What makes two events the same one."""
        if self.event_id:
            return ("event_id", self.event_id)
        return ("row", self.user_id, self.item_id, self.timestamp)


@dataclass(frozen=True)
class EventsWritten:
    """The outcome of storing a batch of events.

    ``received``: events in the batch; ``stored``: distinct events of the batch, each in the store
    now (once); ``new``: of those, the ones this call stored (the others were stored before: a
    retry); ``replayed``: answered from the batch's idempotency key (nothing written). ``received``
    and ``stored`` depend on the batch alone, so a retry gets the same answer.
    """

    received: int
    stored: int
    new: int
    replayed: bool = False

    @property
    def repeated(self) -> int:
        """Events of the batch that repeat another event of the same batch."""
        return self.received - self.stored

    @property
    def already_stored(self) -> int:
        """Distinct events of the batch that were in the store before this call."""
        return self.stored - self.new

    def answer(self) -> dict[str, int]:
        """What a client is told (the same for a retry): ``stored`` and ``duplicates``."""
        return {"stored": self.stored, "duplicates": self.repeated}


def batch_digest(rows: Sequence[EventRow]) -> str:
    """sha256 of a batch's events, in order (what an idempotency key is checked against)."""
    text = json.dumps([[r.user_id, r.item_id, r.timestamp, r.event_id] for r in rows], ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def distinct_events(rows: Sequence[EventRow]) -> list[EventRow]:
    """The batch's events without repeats, in first-seen order.

    Raises:
        EventConflictError: one ``event_id`` given to two different events of the batch.
    """
    seen: dict[tuple[Any, ...], EventRow] = {}
    for n, row in enumerate(rows):
        first = seen.setdefault(row.identity, row)
        if first != row:
            raise EventConflictError(
                f"events[{n}].event_id {row.event_id!r} is given to two different events of the batch"
            )
    return list(seen.values())


def write_events(conn: Connection, rows: Sequence[EventRow], key: str | None) -> EventsWritten:
    """Store the events of ``rows`` not stored yet, in ``conn``'s transaction (see the module doc).

    Raises:
        EventConflictError: ``key`` was used for another batch, or an ``event_id`` is stored
            with another user, item or timestamp (nothing is stored).
    """
    digest = batch_digest(rows) if key is not None else ""
    if key is not None:
        recorded = conn.execute(sa.select(event_batches).where(event_batches.c.key == key)).first()
        if recorded is not None:
            if recorded.digest != digest:
                raise EventConflictError(
                    f"idempotency_key {key!r} was used for another batch of events; use a new key "
                    "for a new batch"
                )
            return EventsWritten(**json.loads(recorded.answer), new=0, replayed=True)
    distinct = distinct_events(rows)
    _check_event_ids(conn, [r for r in distinct if r.event_id])
    new = _insert_new(conn, distinct)
    result = EventsWritten(received=len(rows), stored=len(distinct), new=new)
    if key is not None:
        answer = json.dumps({"received": result.received, "stored": result.stored})
        conn.execute(
            event_batches.insert().values(key=key, digest=digest, answer=answer, stored_at=time.time())
        )
    return result


def _check_event_ids(conn: Connection, rows: Sequence[EventRow]) -> None:
    """Raise :class:`EventConflictError` if an ``event_id`` of ``rows`` is stored with other content."""
    wanted = {r.event_id: r for r in rows}
    ids = list(wanted)
    for start in range(0, len(ids), CHUNK):
        query = sa.select(events.c.event_id, events.c.user_id, events.c.item_id, events.c.timestamp).where(
            events.c.event_id.in_(ids[start : start + CHUNK])
        )
        for event_id, user_id, item_id, timestamp in conn.execute(query):
            if wanted[event_id] != EventRow(user_id, item_id, int(timestamp), event_id):
                raise EventConflictError(
                    f"event_id {event_id!r} is stored for another event (user_id {user_id!r}, item_id "
                    f"{item_id!r}, timestamp {timestamp}); nothing of the batch was stored"
                )


def _insert_new(conn: Connection, rows: Sequence[EventRow]) -> int:
    """Insert ``rows``, skipping those already stored (``ON CONFLICT DO NOTHING``); returns how
    many were inserted."""
    if not rows:
        return 0
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    statement = dialect.insert(events).on_conflict_do_nothing().returning(events.c.seq)
    values = [
        {"user_id": r.user_id, "item_id": r.item_id, "timestamp": r.timestamp, "event_id": r.event_id}
        for r in rows
    ]
    return len(conn.execute(statement, values).all())


def latest_events(conn: Connection, user_id: str, limit: int | None) -> list[tuple[str, int]]:
    """A user's last ``limit`` events (all: None) as ``(item_id, timestamp)``, oldest first (ties
    in the order stored); read newest first through the ``(user_id, timestamp, seq)`` index."""
    query = (
        sa.select(events.c.item_id, events.c.timestamp)
        .where(events.c.user_id == user_id)
        .order_by(events.c.timestamp.desc(), events.c.seq.desc())
    )
    if limit is not None:
        query = query.limit(limit)
    return [(str(i), int(t)) for i, t in reversed(conn.execute(query).all())]


SEEN_ITEMS = sa.text(
    """
    WITH RECURSIVE seen(item_id) AS (
        SELECT min(item_id) FROM events WHERE user_id = :user_id
        UNION ALL
        SELECT (SELECT e.item_id FROM events e WHERE e.user_id = :user_id AND e.item_id > seen.item_id
                ORDER BY e.item_id LIMIT 1)
        FROM seen WHERE seen.item_id IS NOT NULL
    )
    SELECT item_id FROM seen WHERE item_id IS NOT NULL
    """
)
"""The distinct items of a user's events, one index seek each (a loose scan of ``events_once``):
the work grows with the items the user saw, not with their events."""


def seen_items(conn: Connection, user_id: str) -> list[str]:
    """The distinct item ids of a user's stored events."""
    return [str(i) for i in conn.execute(SEEN_ITEMS, {"user_id": user_id}).scalars()]
