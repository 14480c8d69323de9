"""``ItemAttributes``: each item's attributes (category, brand, price, in_stock, ...) by item index,
what business filters (:mod:`hstu_blair.serving.item_filter`) select on.

Values are strings, numbers (int or float) or booleans; an item without a value holds ``None``.
Each attribute has a kind (``string``, ``number``, ``bool``) fixed by the prepared dataset's dtype or,
for an attribute first set at run time, by its first value; values of another kind are refused.
``version`` grows with every change, so a filter's mask can be cached per version.
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl

from hstu_blair.data import schema
from hstu_blair.data.dataset import SequenceData
from hstu_blair.serving.errors import ServingError

KINDS = ("string", "number", "bool")
_KIND_OF_DTYPE = {"string": "string", "int": "number", "float": "number", "bool": "bool"}
MAX_VALUES = 100
"""Distinct values of a string attribute listed by :meth:`ItemAttributes.summary`."""


def value_kind(value: Any) -> str | None:
    """``string``, ``number`` or ``bool`` of a scalar value (None: not an attribute value)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "number" if math.isfinite(value) else None
    if isinstance(value, str):
        return "string"
    return None


class ItemAttributes:
    """Attribute columns over item indices 0..N (index 0 = padding, always ``None``).

    Args:
        size: N, the number of items.
        columns: per attribute name, N values in item-index order (item i + 1).
        kinds: per attribute name, ``string``, ``number`` or ``bool`` (default: from the values).
    """

    def __init__(
        self,
        size: int,
        columns: Mapping[str, Any] | None = None,
        kinds: Mapping[str, str] | None = None,
    ) -> None:
        self.size = size
        self._columns: dict[str, np.ndarray] = {}
        self.kinds: dict[str, str] = {}
        for name, values in (columns or {}).items():
            col = np.empty(size + 1, dtype=object)  # (N+1,)
            col[1:] = list(values)
            self._columns[name] = col
            given = (kinds or {}).get(name)
            first = next((v for v in col[1:] if v is not None), None)
            self.kinds[name] = given or value_kind(first) or "string"
        self.version = 0
        """Grows with every change (:meth:`set`, :meth:`append`)."""
        self.masks: OrderedDict[Any, np.ndarray] = OrderedDict()
        """Filter masks by (filter, version, size), kept by :mod:`~hstu_blair.serving.item_filter`."""

    @classmethod
    def from_table(cls, table: pl.DataFrame | None, size: int, dtypes: Mapping[str, str]) -> ItemAttributes:
        """The attributes of a prepared dataset (``item_idx`` + one column per attribute; see
        :meth:`SequenceData.item_attributes`); ``dtypes`` from its manifest; None: no attributes."""
        if table is None:
            return cls(size)
        table = table.sort(schema.ITEM_IDX)
        names = [c for c in table.columns if c != schema.ITEM_IDX]
        kinds = {n: _KIND_OF_DTYPE.get(dtypes.get(n, ""), "") for n in names}
        return cls(size, {n: table[n].to_list() for n in names}, {n: k for n, k in kinds.items() if k})

    @classmethod
    def of_data(cls, data: SequenceData) -> ItemAttributes:
        """The attributes of a prepared dataset (none when it has none)."""
        dtypes = {a["name"]: a["dtype"] for a in data.manifest.get("item_attributes", [])}
        return cls.from_table(data.item_attributes(), data.num_items, dtypes)

    @property
    def names(self) -> list[str]:
        """Attribute names, in dataset order, then in the order first set."""
        return list(self._columns)

    def column(self, name: str) -> np.ndarray:
        """(N+1,) object array of one attribute (``None`` where missing); do not modify it.

        Raises:
            ServingError: unknown attribute (the known ones are listed).
        """
        if name not in self._columns:
            raise ServingError(f"unknown attribute {name!r}; known: {', '.join(self.names) or '(none)'}")
        return self._columns[name]

    def get(self, idx: int) -> dict[str, Any]:
        """The attributes item ``idx`` has (missing ones left out)."""
        if not 0 <= idx <= self.size:
            return {}
        return {n: _plain(c[idx]) for n, c in self._columns.items() if c[idx] is not None}

    def check(self, values: Mapping[str, Any]) -> None:
        """Refuse values that are not scalars of their attribute's kind (None: remove).

        Raises:
            ServingError: names the attribute and the kind expected.
        """
        for name, value in values.items():
            if not isinstance(name, str) or not name or name in (schema.ITEM_ID, schema.ITEM_IDX):
                raise ServingError(
                    f"attribute names must be non-empty strings other than item_id, got {name!r}"
                )
            kind = value_kind(value)
            if value is not None and kind is None:
                raise ServingError(
                    f"attribute {name!r}: expected a string, a finite number or a bool, got {value!r}"
                )
            if value is not None and name in self.kinds and kind != self.kinds[name]:
                raise ServingError(f"attribute {name!r}: expected a {self.kinds[name]}, got {value!r}")

    def set(self, idx: int, values: Mapping[str, Any]) -> None:
        """Merge ``values`` into item ``idx``'s attributes (a ``None`` value removes one).

        Raises:
            ServingError: a bad index or value (see :meth:`check`).
        """
        if not 1 <= idx <= self.size:
            raise ServingError(f"item index {idx} is out of range 1..{self.size}")
        self.check(values)
        for name, value in values.items():
            if name not in self._columns:
                if value is None:
                    continue
                self._columns[name] = np.full(self.size + 1, None, dtype=object)
                self.kinds[name] = value_kind(value) or "string"
            self._columns[name][idx] = value
        self.version += 1

    def append(self, n: int) -> None:
        """Room for ``n`` items added at run time (no attributes yet)."""
        if n <= 0:
            return
        for name, col in self._columns.items():
            self._columns[name] = np.concatenate([col, np.full(n, None, dtype=object)])
        self.size += n
        self.version += 1

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per attribute: ``kind``, ``items`` (with a value), and for strings ``values`` (the
        :data:`MAX_VALUES` most frequent, ``[{"value", "count"}]``), for numbers ``min``/``max``, for
        bools ``true``/``false`` counts (what a page builds filter controls from)."""
        out: dict[str, dict[str, Any]] = {}
        for name, col in self._columns.items():
            present = [v for v in col[1:] if v is not None]
            entry: dict[str, Any] = {"kind": self.kinds[name], "items": len(present)}
            if self.kinds[name] == "string":
                common = Counter(present).most_common(MAX_VALUES)
                entry["values"] = [{"value": v, "count": c} for v, c in common]
            elif self.kinds[name] == "number":
                entry["min"] = _plain(min(present)) if present else None
                entry["max"] = _plain(max(present)) if present else None
            else:
                entry["true"] = sum(1 for v in present if v)
                entry["false"] = sum(1 for v in present if not v)
            out[name] = entry
        return out


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value (JSON-ready)."""
    return value.item() if isinstance(value, np.generic) else value
