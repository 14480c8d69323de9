"""What ``hstu-blair check`` finds wrong with a run's store beyond its rows: SQLite's own integrity
check, and whether the store still holds what the run's model versions were trained on.

Each model version written by ``update`` records in its ``model.json`` the number of stored events
and items it was trained on (``store_events``, ``store_items``). Events only leave the store when a
user is forgotten (counted in ``store_meta``: :data:`~hstu_blair.run.store_schema.FORGOTTEN_EVENTS`)
or when schema version 3 removed exact duplicates, and items only when set aside; fewer than that
means events or items were lost: typically a deleted or truncated write-ahead log
(``store.sqlite-wal``: committed but not yet checkpointed into the main file), or an older copy of
the store put back.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from hstu_blair.data.manifest import read_json_file
from hstu_blair.errors import HstuBlairError
from hstu_blair.run.layout import model_info_path, version_dir
from hstu_blair.run.store import Store
from hstu_blair.run.store_engine import why
from hstu_blair.run.store_schema import FORGOTTEN_EVENTS
from hstu_blair.run.versions import list_versions

QUICK_CHECK_BYTES = 1 << 30
"""SQLite files above this size get ``PRAGMA quick_check`` (linear time) instead of the full
``integrity_check`` (which also checks every index against its table)."""
SHOWN = 20
"""Problems an integrity check reports at most."""


def integrity_problems(store: Store) -> list[str]:
    """What SQLite's ``integrity_check`` (``quick_check`` for big files) finds, one line each;
    nothing for PostgreSQL (which checks its pages as it reads them) or a healthy file."""
    path = store.sqlite_path
    if path is None:
        return []
    pragma = "quick_check" if path.stat().st_size > QUICK_CHECK_BYTES else "integrity_check"
    try:
        with store.engine.connect() as conn:
            rows = [str(r[0]) for r in conn.exec_driver_sql(f"PRAGMA {pragma}({SHOWN})")]
    except sa.exc.SQLAlchemyError as exc:  # a page so damaged that the check itself stops
        rows = [why(exc)]
    if rows == ["ok"]:
        return []
    shown = "; ".join(rows[:3]) + (
        f"; ... ({len(rows)} problems shown of up to {SHOWN})" if len(rows) > 3 else ""
    )
    return [
        f"{path}: SQLite's {pragma} fails: {shown}. Users whose events are on damaged pages are served "
        "without them (set aside): restore the store from a backup"
    ]


def missing_from_versions(store: Store, run_dir: Path, counts: dict[str, int]) -> str | None:
    """One line saying what the store lacks of what a model version recorded it held (the version
    with the largest shortfall), None when it lacks nothing. ``counts``: :meth:`Store.counts`."""
    gone_events = store.meta_number(FORGOTTEN_EVENTS) + store.meta_number("v3_duplicate_events_removed")
    set_aside_items = sum(r["source"].startswith("items ") for r in store.set_aside_records())
    worst: tuple[int, str] | None = None
    for version in list_versions(run_dir):
        path = model_info_path(version_dir(run_dir, version))
        try:
            info = read_json_file(path)
        except HstuBlairError:
            continue  # reported with the model's checks
        events = int(info.get("store_events") or 0) - counts["events"] - gone_events
        items = int(info.get("store_items") or 0) - counts["items"] - set_aside_items
        if max(events, items) > 0 and (worst is None or events + items > worst[0]):
            lost = " and ".join(f"{n} {what}" for n, what in ((events, "events"), (items, "items")) if n > 0)
            worst = (
                events + items,
                f"{store.describe()}: {lost} missing: version {version} was trained on "
                f"{info.get('store_events', 0)} events and {info.get('store_items', 0)} items ({path}), "
                f"the store holds {counts['events']} events ({gone_events} more deleted by forgetting "
                f"users) and {counts['items']} items: {_cause(store)}; restore it from a backup",
            )
    return None if worst is None else worst[1]


def _cause(store: Store) -> str:
    """What usually loses rows of a store."""
    path = store.sqlite_path
    if path is None:
        return "rows deleted outside hstu-blair, or an older backup restored"
    return f"a deleted or truncated write-ahead log ({path.name}-wal), or an older copy of the store put back"
