"""The store's schema: its tables, the migrations between schema versions, and the checks of a
stored item row (:mod:`hstu_blair.run.store` opens and uses it).

- ``items``: ``seq`` (the order items were added; every process gives them indices in this order),
  ``item_id`` (unique), ``title``, ``text``, ``dim``, ``vector`` (``dim`` little-endian float32,
  so a restart needs no encoder), ``sha256`` (of the other fields), ``batch`` (items added by one
  call share it: their model vectors are computed together), ``added_at``.
- ``events``: ``seq``, ``user_id``, ``item_id``, ``timestamp`` (seconds), ``event_id`` (the
  client's id of the event, ``""`` when none was given). Each event is stored once: unique by
  ``event_id`` when one is given, else by ``(user_id, item_id, timestamp)``. Indexed by
  ``(user_id, timestamp, seq)`` (a user's latest events, newest first, without reading the rest)
  and by ``(user_id, item_id, timestamp, event_id)`` (the uniqueness, and the items a user saw).
- ``event_batches``: the idempotency keys of event batches, with the digest of the batch and the
  answer it got (a retry with the same key is answered the same, and stores nothing).
- ``item_attributes``: ``seq`` (grows with every change, by any process: a reader catches up with
  the rows of ``seq`` above the last it read), ``item_id`` (unique), ``value`` (JSON: the attribute
  values set at run time, merged over the dataset's; a null removes one), ``changed_at``.
- ``set_aside``: damaged records kept out of service (``source``, ``reason``, the raw ``record``).
- ``store_meta``: key/value facts (written by versions that imported an item log).
- ``schema_version``: the migrations applied (see :data:`MIGRATIONS`), applied in order at open.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

SCHEMA_VERSION = 4
"""The schema this code writes (the number of migrations)."""


def item_digest(item_id: str, title: str, text: str, vector: bytes) -> str:
    """sha256 of an item's fields (what the ``sha256`` column holds)."""
    head = json.dumps([item_id, title, text], ensure_ascii=True).encode("ascii")
    return hashlib.sha256(head + b"\0" + vector).hexdigest()


metadata = sa.MetaData()
SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite's rowid alias must be INTEGER
schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("applied_at", sa.Float, nullable=False),
)
store_meta = sa.Table(
    "store_meta",
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
items = sa.Table(
    "items",
    metadata,
    sa.Column("seq", SEQ, primary_key=True, autoincrement=True),
    sa.Column("item_id", sa.Text, nullable=False, unique=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("dim", sa.Integer, nullable=False),
    sa.Column("vector", sa.LargeBinary, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("batch", sa.String(64), nullable=False),
    sa.Column("added_at", sa.Float, nullable=False),
)
set_aside_table = sa.Table(
    "set_aside",
    metadata,
    sa.Column("seq", SEQ, primary_key=True, autoincrement=True),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("record", sa.LargeBinary, nullable=False),
    sa.Column("set_aside_at", sa.Float, nullable=False),
)
events = sa.Table(
    "events",
    metadata,
    sa.Column("seq", SEQ, primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("item_id", sa.Text, nullable=False),
    sa.Column("timestamp", sa.BigInteger, nullable=False),
    sa.Column("event_id", sa.Text, nullable=False, server_default=""),
)
EVENT_INDEXES = (
    sa.Index("events_by_user_time", events.c.user_id, events.c.timestamp, events.c.seq),
    sa.Index(
        "events_once", events.c.user_id, events.c.item_id, events.c.timestamp, events.c.event_id, unique=True
    ),
    sa.Index(
        "events_by_event_id",
        events.c.event_id,
        unique=True,
        sqlite_where=events.c.event_id != "",
        postgresql_where=events.c.event_id != "",
    ),
)
event_batches = sa.Table(
    "event_batches",
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("answer", sa.Text, nullable=False),
    sa.Column("stored_at", sa.Float, nullable=False),
)
item_attributes = sa.Table(
    "item_attributes",
    metadata,
    sa.Column("seq", SEQ, primary_key=True, autoincrement=True),
    sa.Column("item_id", sa.Text, nullable=False, unique=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("changed_at", sa.Float, nullable=False),
    sqlite_autoincrement=True,  # a seq is never reused, even after its row is deleted
)

_v2_metadata = sa.MetaData()
_events_v2 = sa.Table(  # the events table as version 2 created it (migrations never change)
    "events",
    _v2_metadata,
    sa.Column("seq", SEQ, primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("item_id", sa.Text, nullable=False),
    sa.Column("timestamp", sa.BigInteger, nullable=False),
    sa.Index("events_by_user", "user_id", "timestamp"),
)


def _v1(conn: Connection) -> None:
    """Items added at run time, the set-aside records, store facts."""
    for table in (store_meta, items, set_aside_table):
        table.create(conn)


def _v2(conn: Connection) -> None:
    """Users' events."""
    _events_v2.create(conn)


def _v3(conn: Connection) -> None:
    """Each event once: the client's ``event_id``, exact duplicates removed (the first stored is
    kept; how many in ``store_meta`` ``v3_duplicate_events_removed``), uniqueness, an index for a
    user's latest events, and the idempotency keys of event batches."""
    conn.exec_driver_sql("ALTER TABLE events ADD COLUMN event_id TEXT NOT NULL DEFAULT ''")
    first = sa.select(sa.func.min(events.c.seq)).group_by(
        events.c.user_id, events.c.item_id, events.c.timestamp
    )
    removed = conn.execute(events.delete().where(events.c.seq.not_in(first))).rowcount
    conn.execute(store_meta.insert().values(key="v3_duplicate_events_removed", value=str(int(removed or 0))))
    conn.exec_driver_sql("DROP INDEX events_by_user")
    for index in EVENT_INDEXES:
        index.create(conn)
    event_batches.create(conn)


def _v4(conn: Connection) -> None:
    """Item attributes set at run time."""
    item_attributes.create(conn)


MIGRATIONS: list[Callable[[Connection], None]] = [_v1, _v2, _v3, _v4]
"""Migration ``i`` takes the schema from version ``i`` to ``i + 1``; never edit one once released."""


def schema_version_of(conn: Connection, create: bool) -> int:
    """The schema version of the store (0: empty); ``create`` makes the version table if missing."""
    if not sa.inspect(conn).has_table("schema_version"):
        if create:
            schema_version.create(conn)
        return 0
    return int(conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0)


def item_problem(row: Any, dim: int) -> str | None:
    if row.dim != dim:
        return f"vector width {row.dim}, but the run's text vectors have {dim}"
    if len(row.vector) != 4 * dim:
        return f"vector has {len(row.vector)} bytes, expected {4 * dim}"
    if item_digest(row.item_id, row.title, row.text, row.vector) != row.sha256:
        return "checksum mismatch"
    if not np.isfinite(np.frombuffer(row.vector, dtype="<f4")).all():
        return "vector holds NaN or inf"
    return None


def row_record(row: Any) -> bytes:
    fields = {k: v for k, v in row._mapping.items() if k != "vector"}
    fields["vector_hex"] = bytes(row.vector).hex()
    return json.dumps(fields, ensure_ascii=False).encode("utf-8")


FORGOTTEN_EVENTS = "forgotten_events"
"""``store_meta`` key: events deleted by forgetting users, all told (``hstu-blair check`` tells them
from events lost)."""


def add_to_meta(conn: Connection, key: str, amount: int) -> None:
    """Add ``amount`` to the number kept in ``store_meta`` under ``key`` (in ``conn``'s transaction)."""
    value = conn.execute(sa.select(store_meta.c.value).where(store_meta.c.key == key)).scalar()
    if value is None:
        conn.execute(store_meta.insert().values(key=key, value=str(amount)))
    else:
        conn.execute(
            store_meta.update().where(store_meta.c.key == key).values(value=str(int(value) + amount))
        )
