"""Whether a run should have a store: ``RUN_DIR/store.json`` records each store the run has had
(written when one is opened for the run and holds a schema), so that a store deleted or emptied
since is refused instead of silently recreated empty (:meth:`hstu_blair.run.store.Store.for_run`,
``hstu-blair check``).

    {"stores": {"store.sqlite": {"recorded_at": 1717000000.0},
                "postgresql+psycopg://hstu:***@db/hstu": {"recorded_at": 1717000100.0}}}

The default store is keyed ``store.sqlite`` (the run directory can move); another SQLite file by
its absolute path, a database by its URL without the password. A run directory from before this
record (no ``store.json``) is taken to have had its default store when one of its model versions
was trained on stored events or items (``store_events`` / ``store_items`` in its ``model.json``).
To start over with an empty store, write ``{"stores": {}}`` to ``store.json``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from hstu_blair.data.manifest import read_json_file, write_json_atomic
from hstu_blair.errors import HstuBlairError
from hstu_blair.run.layout import STORE_FILE, model_info_path, store_marker_path, store_path, version_dir
from hstu_blair.run.store_engine import StoreError, store_url
from hstu_blair.run.versions import list_versions


class StoreMissingError(StoreError):
    """The run had a store that is now missing or empty (it is not recreated)."""


RESET = '{"stores": {}}'
"""What ``store.json`` holds to start over with an empty store."""


def marker_key(run_dir: str | Path, location: str | Path | None) -> str:
    """How ``store.json`` names a store location of ``run_dir`` (see the module docstring)."""
    if location is None:
        return STORE_FILE
    url = store_url(location)
    if url.startswith("sqlite:///"):
        path = Path(url.split("///", 1)[1])
        return STORE_FILE if path == store_path(run_dir).resolve() else str(path)
    return sa.engine.make_url(url).render_as_string(hide_password=True)


def recorded_stores(run_dir: str | Path) -> dict[str, Any] | None:
    """The stores ``store.json`` records (None without the file).

    Raises:
        DataFormatError: ``store.json`` is not JSON or not ``{"stores": {...}}``.
    """
    path = store_marker_path(run_dir)
    if not path.exists():
        return None
    stores = read_json_file(path).get("stores")
    if not isinstance(stores, dict):
        raise HstuBlairError(f'{path}: expected {{"stores": {{...}}}}; to start over write {RESET}')
    return stores


def record_store(run_dir: str | Path, key: str) -> None:
    """Record that the run has the store ``key`` (nothing when it is recorded or the run directory
    cannot be written)."""
    stores = recorded_stores(run_dir) or {}
    if key in stores or not os.access(run_dir, os.W_OK):
        return
    stores[key] = {"recorded_at": time.time()}
    write_json_atomic(store_marker_path(run_dir), {"stores": stores})


def store_expected(run_dir: str | Path, key: str) -> str | None:
    """Why the run should already have the store ``key`` (None: nothing says so)."""
    stores = recorded_stores(run_dir)
    if stores is not None:
        return f"{store_marker_path(run_dir)} records it" if key in stores else None
    if key != STORE_FILE:
        return None
    for version in reversed(list_versions(Path(run_dir))):
        path = model_info_path(version_dir(run_dir, version))
        try:
            info = read_json_file(path)
        except HstuBlairError:
            continue  # a damaged model.json is check's and loading's to report
        events, items = info.get("store_events") or 0, info.get("store_items") or 0
        if events or items:
            return (
                f"version {version} was trained on {events} of its events and {items} of its items ({path})"
            )
    return None


def refuse_if_missing(
    run_dir: str | Path, location: str | Path, reason: str, probe: Callable[[str | Path], tuple[str, int]]
) -> None:
    """Refuse the store at ``location``, which the run had (``reason``), when it is missing or has
    no schema; creates nothing (``probe`` opens it read-only: its location and schema version).

    Raises:
        StoreMissingError: it is.
    """
    url = store_url(location)
    path = Path(url.split("///", 1)[1]) if url.startswith("sqlite:///") else None
    if path is not None and (not path.exists() or path.stat().st_size == 0):
        raise StoreMissingError(missing_store_message(str(path), reason, run_dir, path.exists()))
    where, version = probe(location)
    if version == 0:
        raise StoreMissingError(missing_store_message(where, reason, run_dir, True))


def has_store(run_dir: str | Path, location: str | Path | None) -> bool:
    """Whether the run has a store to read: ``location`` given, its default file, or one it had
    (which :meth:`~hstu_blair.run.store.Store.for_run` then refuses as missing)."""
    if location is not None or store_path(run_dir).exists():
        return True
    return store_expected(run_dir, STORE_FILE) is not None


def missing_store_message(where: str, reason: str, run_dir: str | Path, empty: bool) -> str:
    """The one line refusing a missing (or emptied) store the run had."""
    what = "is empty (no tables)" if empty else "is missing"
    return (
        f"the store {where} {what}, but this run had one ({reason}): restore it from a backup "
        f"(to start over with an empty store, write {RESET} to {store_marker_path(run_dir)})"
    )
