"""The store of a run: items added at run time, users' events, and records set aside.

A thin layer over SQLAlchemy Core. The default is one SQLite file per run directory
(``RUN_DIR/store.sqlite``, :func:`hstu_blair.run.layout.store_location`: WAL journal,
``synchronous=FULL``, so a commit is on disk when it returns); any other path, or a PostgreSQL URL
(``postgresql://user:pass@host/db``, driver psycopg) with the same schema
(:mod:`hstu_blair.run.store_schema`), can be named instead.

Several processes share one store: writes are transactions (SQLite serialises them; PostgreSQL
item inserts take a table lock so ``seq`` order is commit order), and a reader learns of other
processes' items by comparing ``max(seq)`` with what it read (:meth:`Store.item_head`); item
attributes set at run time likewise (:mod:`hstu_blair.run.store_attributes`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hstu_blair.run.layout import store_location
from hstu_blair.run.store_attributes import AttributeChange as AttributeChange
from hstu_blair.run.store_attributes import AttributeRows
from hstu_blair.run.store_engine import StoreDamagedError as StoreDamagedError
from hstu_blair.run.store_engine import StoreError as StoreError
from hstu_blair.run.store_engine import failure, is_memory, make_engine
from hstu_blair.run.store_engine import store_url as store_url
from hstu_blair.run.store_events import (
    EventConflictError as EventConflictError,
)
from hstu_blair.run.store_events import (
    EventRow,
    EventsWritten,
    latest_events,
    seen_items,
    write_events,
)
from hstu_blair.run.store_marker import StoreMissingError as StoreMissingError
from hstu_blair.run.store_marker import marker_key, record_store, refuse_if_missing, store_expected
from hstu_blair.run.store_schema import (
    FORGOTTEN_EVENTS,
    MIGRATIONS,
    SCHEMA_VERSION,
    add_to_meta,
    events,
    item_digest,
    item_problem,
    items,
    row_record,
    schema_version,
    schema_version_of,
    set_aside_table,
    store_meta,
)

log = logging.getLogger(__name__)


class DuplicateIdsError(StoreError):
    """Item ids that are already in the store (``ids``)."""

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids
        super().__init__(f"item ids already in the store: {ids}")


@dataclass(frozen=True)
class ItemRecord:
    """One added item: what restores it without the text encoder.

    ``vector`` is the (d_text,) float32 text vector; ``seq`` its row in the store (None before it
    is stored); ``batch`` groups the items added by one call."""

    item_id: str
    title: str
    text: str
    vector: np.ndarray  # (d_text,) float32
    seq: int | None = None
    batch: str = ""


@dataclass(frozen=True)
class DamagedRecord:
    """A damaged record kept out of service: where it came from, why, and its raw content."""

    source: str
    reason: str
    record: bytes


class Store(AttributeRows):
    """One store (a database), shared by every process that opens the same location.

    Args:
        location: a SQLite file path, ``sqlite://`` (in memory, this process only) or a
            PostgreSQL URL.
        read_only: open without writing (no migration: ``version`` says what the store holds, and
            only a store of the current version can be read beyond its ``items``).

    Raises:
        StoreError: the database cannot be opened, or its schema is newer than this code.
    """

    def __init__(self, location: str | Path, read_only: bool = False) -> None:
        self.location = str(location)
        self.url = store_url(location)
        self.read_only = read_only
        self.engine = make_engine(self.url, read_only)
        memory = is_memory(self.url)
        self._pollers = threading.local()  # item_head's driver connection per thread
        self._poll_conns: list[Any] = []
        self._mutex_shared = memory
        self._mutex: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if memory else contextlib.nullcontext()
        )
        self.backend = self.engine.dialect.name
        self.duplicate_events = 0
        """Events given to :meth:`add_events` through this handle and not stored again."""
        try:
            self.version = self._migrate()
        except sa.exc.SQLAlchemyError as exc:
            self.engine.dispose()
            raise self.failure(exc, "open") from None
        except StoreError:
            self.engine.dispose()
            raise

    @classmethod
    def for_run(cls, run_dir: str | Path, location: str | Path | None = None) -> Store:
        """The store of a run directory: ``location``, else ``RUN_DIR/store.sqlite``. A SQLite file
        in a directory that cannot be written is opened read-only. A store the run had
        (:mod:`hstu_blair.run.store_marker`) that is missing or empty is refused; one opened with
        its schema is recorded in ``RUN_DIR/store.json``.

        Raises:
            StoreMissingError: the run had this store, and it is missing or empty.
            StoreError: it cannot be opened (see :class:`Store`).
        """
        key = marker_key(run_dir, location)
        location = store_location(run_dir, location)
        reason = store_expected(run_dir, key)
        if reason is not None:
            refuse_if_missing(run_dir, location, reason, cls._probe)
        store = cls._open_for_run(location)
        if not store.read_only:
            record_store(run_dir, key)
        return store

    @classmethod
    def _probe(cls, location: str | Path) -> tuple[str, int]:
        """The location and schema version of a store, opened read-only (nothing created)."""
        probe = cls(location, read_only=True)
        probe.close()
        return probe.describe(), probe.version

    @classmethod
    def _open_for_run(cls, location: str | Path) -> Store:
        """Open ``location``; a SQLite file in a directory that cannot be written read-only."""
        url = store_url(location)
        if url.startswith("sqlite:///"):
            path = Path(url.split("///", 1)[1])
            if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
                if not path.exists():
                    raise StoreError(
                        f"{path.parent} is not writable and holds no {path.name}: nothing to read"
                    )
                store = cls(location, read_only=True)
                if store.version != SCHEMA_VERSION:
                    store.close()
                    raise StoreError(
                        f"{path} has schema version {store.version}, this hstu-blair needs "
                        f"{SCHEMA_VERSION}, and its directory is not writable: open it once from a "
                        "writable place to migrate it"
                    )
                return store
        return cls(location)

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite file (None for PostgreSQL or an in-memory store)."""
        if not self.url.startswith("sqlite:///") or self.url.endswith(":memory:"):
            return None
        return Path(self.url.split("///", 1)[1])

    def describe(self) -> str:
        """The location without a password."""
        return sa.engine.make_url(self.url).render_as_string(hide_password=True)

    def close(self) -> None:
        for conn in self._poll_conns:
            conn.close()
        self._poll_conns.clear()
        self._pollers = threading.local()
        self.engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        if self.read_only:
            raise StoreError(f"the store {self.describe()} is read-only (its directory is not writable)")
        with self._connect() as conn, conn.execution_options(write=True).begin():
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A read transaction; a database error inside it is a :class:`StoreError` (damage:
        :class:`StoreDamagedError`) naming the store, without SQL."""
        try:
            with self._connect() as conn, conn.begin():
                yield conn
        except sa.exc.SQLAlchemyError as exc:
            raise self.failure(exc, "read") from None

    def failure(self, exc: sa.exc.SQLAlchemyError, doing: str) -> StoreError:
        """The one-line error of a database error while ``doing`` (open, read, ...) the store."""
        return failure(exc, doing, str(self.sqlite_path or self.describe()))

    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        """A connection; the in-memory store's single connection is used by one thread at a time."""
        with self._mutex, self.engine.connect() as conn:
            yield conn

    def _migrate(self) -> int:
        if self.read_only:
            with self._connect() as conn, conn.begin():  # errors: "cannot open" (see __init__)
                version = schema_version_of(conn, create=False)
        else:
            with self._write() as conn:
                if self.backend == "postgresql":  # one process migrates; the others wait and see it done
                    conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7263141)")
                version = schema_version_of(conn, create=True)
                if version > SCHEMA_VERSION:
                    raise StoreError(
                        f"the store {self.describe()} has schema version {version}; this hstu-blair knows "
                        f"up to {SCHEMA_VERSION}: upgrade hstu-blair"
                    )
                for target in range(version + 1, SCHEMA_VERSION + 1):
                    MIGRATIONS[target - 1](conn)
                    conn.execute(schema_version.insert().values(version=target, applied_at=time.time()))
                    log.info("store %s: migrated to schema version %d", self.describe(), target)
                    version = target
        if version != SCHEMA_VERSION and not (self.read_only and version < SCHEMA_VERSION):
            raise StoreError(
                f"the store {self.describe()} has schema version {version}, this hstu-blair needs "
                f"{SCHEMA_VERSION}: open it once from a writable place to migrate it"
            )
        return version

    # ---- facts ---------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Rows per table: items, events, users (with events), set_aside."""
        with self._read() as conn:

            def count(what: Any) -> int:
                return int(conn.execute(sa.select(sa.func.count()).select_from(what)).scalar() or 0)

            return {
                "items": count(items),
                "events": count(events),
                "users": count(sa.select(events.c.user_id).distinct().subquery()),
                "set_aside": count(set_aside_table),
            }

    # ---- items ---------------------------------------------------------------------------------
    def item_head(self) -> int:
        """The highest item ``seq`` (0 when there are none): a cheap "did anything change".

        Servers ask before every request, so this bypasses SQLAlchemy and its pool: a plain
        autocommit driver connection per thread answers it (SQLite: about 12 us instead of 320;
        PostgreSQL on loopback: one round trip)."""
        return self._head(items)

    def event_head(self) -> int:
        """The highest event ``seq`` (0 when there are none): grows with every event stored, by
        any process (as cheap as :meth:`item_head`)."""
        return self._head(events)

    def _head(self, table: sa.Table) -> int:
        if self._mutex_shared:  # the in-memory store's single connection
            with self._connect() as conn:
                return int(conn.execute(sa.select(sa.func.max(table.c.seq))).scalar() or 0)
        conn = getattr(self._pollers, "conn", None)
        try:
            if conn is None:
                conn = self._poll_connection()
                self._pollers.conn = conn
                self._poll_conns.append(conn)
            cursor = conn.cursor()
            try:
                cursor.execute(f"SELECT max(seq) FROM {table.name}")
                return int(cursor.fetchone()[0] or 0)
            finally:
                cursor.close()
        except Exception as exc:  # the driver's own errors (a restarted server, a locked file)
            # drop this thread's connection: the next poll opens a fresh one instead of failing forever
            self._pollers.conn = None
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
                with contextlib.suppress(ValueError):
                    self._poll_conns.remove(conn)
            raise StoreError(f"cannot poll the store {self.location}: {exc}") from exc

    def _poll_connection(self) -> Any:
        """A driver connection outside the pool, in autocommit mode, for :meth:`item_head`."""
        cargs, cparams = self.engine.dialect.create_connect_args(self.engine.url)
        conn = self.engine.dialect.loaded_dbapi.connect(*cargs, **cparams)
        if self.backend == "sqlite":
            conn.isolation_level = None
            conn.execute("PRAGMA busy_timeout = 60000")
        else:
            conn.autocommit = True
        return conn

    def item_ids(self) -> list[str]:
        """Every stored item id, in ``seq`` order."""
        with self._read() as conn:
            return list(conn.execute(sa.select(items.c.item_id).order_by(items.c.seq)).scalars())

    def read_items(self, after: int, dim: int) -> tuple[list[ItemRecord], list[tuple[int, DamagedRecord]]]:
        """The items with ``seq > after``, in order, and the damaged ones (``(seq, why)``): a vector
        of the wrong width or size, or a checksum mismatch."""
        good: list[ItemRecord] = []
        bad: list[tuple[int, DamagedRecord]] = []
        with self._read() as conn:
            rows = conn.execute(sa.select(items).where(items.c.seq > after).order_by(items.c.seq))
            for row in rows:
                problem = item_problem(row, dim)
                if problem is None:
                    vector = np.frombuffer(row.vector, dtype="<f4").astype(np.float32)  # (dim,)
                    good.append(ItemRecord(row.item_id, row.title, row.text, vector, row.seq, row.batch))
                else:
                    bad.append((row.seq, DamagedRecord(f"items seq {row.seq}", problem, row_record(row))))
        return good, bad

    def add_items(self, records: Sequence[ItemRecord]) -> None:
        """Insert items as one batch, durably (committed when this returns).

        Raises:
            DuplicateIdsError: an id is already in the store (nothing is inserted).
            StoreError: the store cannot be written.
        """
        batch = uuid.uuid4().hex
        now = time.time()
        rows = []
        for r in records:
            vector = np.ascontiguousarray(r.vector, dtype="<f4").tobytes()
            digest = item_digest(r.item_id, r.title, r.text, vector)
            rows.append(
                {
                    "item_id": r.item_id,
                    "title": r.title,
                    "text": r.text,
                    "dim": len(vector) // 4,
                    "vector": vector,
                    "sha256": digest,
                    "batch": r.batch or batch,
                    "added_at": now,
                }
            )
        try:
            with self._write() as conn:
                self._lock_items(conn)
                ids = [r["item_id"] for r in rows]
                taken = conn.execute(sa.select(items.c.item_id).where(items.c.item_id.in_(ids))).scalars()
                taken_ids = sorted(set(taken))
                if taken_ids:
                    raise DuplicateIdsError(taken_ids)
                conn.execute(items.insert(), rows)
        except sa.exc.SQLAlchemyError as exc:
            raise self.failure(exc, "write items to") from None

    def _lock_items(self, conn: Connection) -> None:
        """PostgreSQL: one item writer at a time, so ``seq`` order is commit order (readers that
        remember the highest ``seq`` seen never miss a row committed later with a lower one)."""
        if self.backend == "postgresql":
            conn.exec_driver_sql("LOCK TABLE items IN SHARE ROW EXCLUSIVE MODE")

    def move_items_aside(self, damaged: Sequence[tuple[int, DamagedRecord]]) -> None:
        """Move damaged item rows to ``set_aside`` (one transaction)."""
        if not damaged:
            return
        with self._write() as conn:
            self._lock_items(conn)
            present = set(
                conn.execute(
                    sa.select(items.c.seq).where(items.c.seq.in_([seq for seq, _ in damaged]))
                ).scalars()
            )
            moved = [r for seq, r in damaged if seq in present]  # another process may have moved it
            if moved:
                conn.execute(set_aside_table.insert(), [_aside_row(r) for r in moved])
                conn.execute(items.delete().where(items.c.seq.in_(present)))

    def set_aside_records(self) -> list[dict[str, Any]]:
        """Every set-aside record: ``{"source", "reason", "set_aside_at"}``, oldest first."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(
                    set_aside_table.c.source, set_aside_table.c.reason, set_aside_table.c.set_aside_at
                ).order_by(set_aside_table.c.seq)
            )
            return [dict(r._mapping) for r in rows]

    # ---- events --------------------------------------------------------------------------------
    def add_events(
        self,
        rows: Sequence[tuple[str, str, int] | tuple[str, str, int, str] | EventRow],
        key: str | None = None,
    ) -> EventsWritten:
        """Store ``(user_id, item_id, timestamp[, event_id])`` rows in one transaction, durably, each
        event once (:mod:`hstu_blair.run.store_events`: duplicates of the batch or of stored events
        are skipped and counted; a batch with an idempotency ``key`` seen before is answered as then).

        Raises:
            EventConflictError: ``key`` used for another batch, or an ``event_id`` for another event.
            StoreError: the store cannot be written (nothing is stored).
        """
        events_in = [r if isinstance(r, EventRow) else EventRow(*r) for r in rows]
        if not events_in:
            return EventsWritten(0, 0, 0)
        for attempt in range(3):
            try:
                with self._write() as conn:
                    written = write_events(conn, events_in, key)
                self.duplicate_events += written.received - written.new
                return written
            except sa.exc.IntegrityError:  # PostgreSQL: a concurrent writer stored the same key first
                if attempt == 2:
                    raise StoreError(
                        f"cannot write events to the store {self.describe()}: conflicts"
                    ) from None
            except sa.exc.SQLAlchemyError as exc:
                raise self.failure(exc, "write events to") from None
        raise AssertionError("unreachable")

    def user_events(self, user_id: str, limit: int | None = None) -> tuple[list[str], np.ndarray]:
        """A user's stored events, oldest first (ties in the order stored): item ids and (n,) int64
        timestamps; only the last ``limit`` (None: all), read without the others."""
        with self._read() as conn:
            rows = latest_events(conn, user_id, limit)
        return [r[0] for r in rows], np.array([r[1] for r in rows], dtype=np.int64)

    def seen_items(self, user_id: str) -> list[str]:
        """The distinct item ids of a user's stored events (one index seek per item)."""
        with self._read() as conn:
            return seen_items(conn, user_id)

    def event_users(self) -> list[str]:
        """The distinct user ids of the stored events (in no particular order)."""
        with self._read() as conn:
            return [str(r[0]) for r in conn.execute(sa.select(events.c.user_id).distinct())]

    def all_events(self) -> list[tuple[str, str, int]]:
        """Every stored event as ``(user_id, item_id, timestamp)``, in the order stored (what
        ``hstu-blair update`` trains on)."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(events.c.user_id, events.c.item_id, events.c.timestamp).order_by(events.c.seq)
            ).all()
        return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]

    def forget_user(self, user_id: str) -> int:
        """Delete a user's events; returns how many. SQLite overwrites the deleted rows
        (``secure_delete``) and checkpoints the journal so no copy stays in the files."""
        try:
            with self._write() as conn:
                deleted = int(conn.execute(events.delete().where(events.c.user_id == user_id)).rowcount)
                if deleted:
                    add_to_meta(conn, FORGOTTEN_EVENTS, deleted)
            if self.backend == "sqlite" and deleted:
                with self._connect() as conn:
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        except sa.exc.SQLAlchemyError as exc:
            raise self.failure(exc, "delete events from") from None
        return deleted

    def meta_number(self, key: str) -> int:
        """A number kept in ``store_meta`` (0 when absent): e.g. :data:`FORGOTTEN_EVENTS`."""
        with self._read() as conn:
            value = conn.execute(sa.select(store_meta.c.value).where(store_meta.c.key == key)).scalar()
        return int(value or 0)


def _aside_row(r: DamagedRecord) -> dict[str, Any]:
    return {"source": r.source, "reason": r.reason, "record": r.record, "set_aside_at": time.time()}
