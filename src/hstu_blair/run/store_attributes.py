"""Item attributes set at run time, in the store (``item_attributes`` table, schema version 4).

One row per item: its attribute values as JSON (merged over the prepared dataset's values; a null
removes one). Every change deletes the item's row and inserts it again, so its ``seq`` is the
highest: a reader that remembers the highest ``seq`` it read finds every later change with one
query, and :meth:`AttributeRows.attribute_head` (``max(seq)``) tells cheaply whether anything
changed. On PostgreSQL a writer locks the table, so ``seq`` order is commit order.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hstu_blair.run.store_schema import item_attributes

ATTRIBUTES_SINCE = 4
"""The schema version that added the ``item_attributes`` table."""


@dataclass(frozen=True)
class AttributeChange:
    """One item's stored attribute values after a change (``seq``: its place in change order)."""

    seq: int
    item_id: str
    values: dict[str, Any]


class AttributeRows:
    """The store's item attributes; :class:`hstu_blair.run.store.Store` inherits these methods."""

    version: int
    backend: str

    def _write(self) -> AbstractContextManager[Connection]:  # pragma: no cover - Store's
        raise NotImplementedError

    def _read(self) -> AbstractContextManager[Connection]:  # pragma: no cover - Store's
        raise NotImplementedError

    def _head(self, table: sa.Table) -> int:  # pragma: no cover - Store's
        raise NotImplementedError

    def failure(self, exc: sa.exc.SQLAlchemyError, doing: str) -> Exception:  # pragma: no cover
        raise NotImplementedError

    def attribute_head(self) -> int:
        """The highest attribute change ``seq`` (0: none, or a store older than version 4): as
        cheap as :meth:`Store.item_head`."""
        return self._head(item_attributes) if self.version >= ATTRIBUTES_SINCE else 0

    def update_attributes(self, item_id: str, values: Mapping[str, Any]) -> AttributeChange:
        """Merge ``values`` into the item's stored attribute values (None values are kept: they
        remove the dataset's value), durably; returns the stored change.

        Raises:
            StoreError: the store cannot be written.
        """
        try:
            with self._write() as conn:
                if self.backend == "postgresql":
                    conn.exec_driver_sql("LOCK TABLE item_attributes IN SHARE ROW EXCLUSIVE MODE")
                where = item_attributes.c.item_id == item_id
                old = conn.execute(sa.select(item_attributes.c.value).where(where)).scalar()
                merged = {**(json.loads(old) if old else {}), **values}
                conn.execute(item_attributes.delete().where(where))
                text = json.dumps(merged, ensure_ascii=False, sort_keys=True)
                row = {"item_id": item_id, "value": text, "changed_at": time.time()}
                seq = conn.execute(item_attributes.insert().values(**row)).inserted_primary_key[0]
        except sa.exc.SQLAlchemyError as exc:
            raise self.failure(exc, "write item attributes to") from None
        return AttributeChange(int(seq), item_id, merged)

    def attribute_changes(self, after: int = 0) -> list[AttributeChange]:
        """The items whose attributes changed after change ``after``, in change order (each with
        its stored values; a row whose value is not a JSON object is skipped)."""
        if self.version < ATTRIBUTES_SINCE:
            return []
        query = (
            sa.select(item_attributes.c.seq, item_attributes.c.item_id, item_attributes.c.value)
            .where(item_attributes.c.seq > after)
            .order_by(item_attributes.c.seq)
        )
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [AttributeChange(int(r[0]), str(r[1]), v) for r in rows for v in _values(r[2])]


def _values(text: str) -> Iterator[dict[str, Any]]:
    """The stored JSON object (nothing when the row is damaged)."""
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return
    if isinstance(value, dict):
        yield value
