"""The SQLAlchemy engine of a store location (:class:`hstu_blair.run.store.Store` opens through it):
its URL, SQLite's settings on every connection, and what counts as a damaged database.

SQLite runs in WAL mode with ``synchronous = FULL``: a commit returns once its pages are in the
write-ahead log (``store.sqlite-wal``) and fsync'd; a checkpoint later copies them into the main
file. Until then the committed data lives only in the WAL: a WAL that is deleted, truncated or not
copied with the main file loses those commits (``hstu-blair check`` compares the store with what
the run's model versions recorded and says what is missing).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from hstu_blair.errors import HstuBlairError

SQLITE_DAMAGE = {"SQLITE_CORRUPT", "SQLITE_NOTADB"}
"""SQLite's error names for a damaged file (``database disk image is malformed``, ``file is not a
database``)."""


class StoreError(HstuBlairError, ValueError):
    """The store cannot be opened, read or written (unreachable server, read-only file, newer schema)."""


class StoreDamagedError(StoreError):
    """The stored data is damaged (a malformed SQLite page, a file that is not a database, a
    PostgreSQL data or index corruption): what was asked cannot be read or written."""


def store_url(location: str | Path) -> str:
    """The SQLAlchemy URL of a store location: a PostgreSQL URL (driver psycopg), a SQLAlchemy URL,
    or a file path (SQLite)."""
    text = str(location)
    if text.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + text.split("://", 1)[1]
    if "://" in text:
        return text
    return f"sqlite:///{Path(text).resolve()}"


def is_memory(url: str) -> bool:
    """Whether ``url`` is an in-memory SQLite database (this process only)."""
    return url in ("sqlite://", "sqlite:///:memory:")


def is_damage(exc: BaseException) -> bool:
    """Whether a database error says the stored data is damaged (SQLite: a malformed page or a file
    that is not a database; PostgreSQL: SQLSTATE class XX001/XX002, data or index corrupted),
    rather than that the database cannot be reached or is busy."""
    original = getattr(exc, "orig", exc)
    if getattr(original, "sqlite_errorname", None) in SQLITE_DAMAGE:
        return True
    return getattr(original, "sqlstate", None) in ("XX001", "XX002")


def failure(exc: sa.exc.SQLAlchemyError, doing: str, where: str) -> StoreError:
    """The one-line error (no SQL) of a database error while ``doing`` (open, read, write ...) the
    store ``where``: :class:`StoreDamagedError`, with what to do, when the data is damaged."""
    if is_damage(exc):
        return StoreDamagedError(
            f"cannot {doing} the store {where}: it is damaged ({why(exc)}): restore it from a backup "
            "(docs/deploy.md; `hstu-blair check RUN_DIR` says what else is wrong)"
        )
    return StoreError(f"cannot {doing} the store {where}: {why(exc)}")


def why(exc: sa.exc.SQLAlchemyError) -> str:
    """The driver's first line of a database error (its message without the SQL)."""
    original = getattr(exc, "orig", None)
    return str(original if original is not None else exc).strip().splitlines()[0]


def _sqlite_pragmas(dbapi_conn: Any, _: Any) -> None:
    dbapi_conn.isolation_level = None  # transactions are begun explicitly (see _begin)
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA busy_timeout = 60000")
    mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
    if mode != "wal":
        with contextlib.suppress(Exception):  # a read-only file keeps its journal mode
            cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = FULL")  # a commit is fsync'd before it returns
    cursor.execute("PRAGMA secure_delete = ON")  # deleted rows are overwritten, not left in free pages
    cursor.close()


def _sqlite_readable(url: str) -> bool:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT count(*) FROM sqlite_master").scalar()
        return True
    except sa.exc.SQLAlchemyError:
        return False
    finally:
        engine.dispose()


def _begin(conn: Connection) -> None:
    """SQLite: writes take the write lock at BEGIN (no upgrade deadlocks), reads do not."""
    immediate = conn.get_execution_options().get("write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_engine(url: str, read_only: bool) -> Engine:
    """The engine of a store URL; SQLite gets its settings on every connection, and ``read_only``
    opens the file without writing (through its WAL when it can, else as an immutable file)."""
    if not url.startswith("sqlite"):
        return sa.create_engine(url, pool_pre_ping=True)
    memory = is_memory(url)
    if read_only and not memory:
        path = url.split("///", 1)[1]
        url = f"sqlite:///file:{path}?mode=ro&uri=true"  # sees the journal (WAL) of live writers
        if not _sqlite_readable(url):  # a read-only directory without -shm: nobody can write, read as is
            url = f"sqlite:///file:{path}?mode=ro&immutable=1&uri=true"
    kwargs: dict[str, Any] = {"poolclass": sa.pool.StaticPool} if memory else {}
    engine = sa.create_engine(url, connect_args={"check_same_thread": False}, **kwargs)
    sa.event.listen(engine, "connect", _sqlite_pragmas)
    sa.event.listen(engine, "begin", _begin)
    return engine
