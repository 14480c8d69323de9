"""``ItemFilter``: which items a recommendation may contain (business rules: in stock only, one
category, a price range, an allow list, an exclude list).

The JSON form (the HTTP API, the CLI's ``--filter`` and the web page use it)::

    {"allow": ["id1", "id2"], "exclude": ["id3"],
     "where": {"category": "Books", "brand": ["A", "B"], "price": {"min": 1, "max": 20},
               "in_stock": true}}

Every key is optional. ``allow``: only these items (unknown ids are ignored, but at least one must
be known: else ``UnknownIdError``); ``exclude``: never these (unknown ids are ignored). ``where``: per
attribute, a scalar (equals), a list of scalars (any of them) or a range ``{"min", "max"}``
(inclusive, either bound optional; numbers only). An item without the attribute never matches a
``where`` condition. All conditions must hold.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from hstu_blair.errors import UnknownIdError
from hstu_blair.serving.catalogue import Catalogue
from hstu_blair.serving.errors import ServingError
from hstu_blair.serving.item_attributes import ItemAttributes, value_kind

Scalar = str | int | float | bool
MASKS_KEPT = 32
"""Filter masks cached per :class:`ItemAttributes` (least recently used dropped first)."""


@dataclass(frozen=True)
class Range:
    """``min <= value <= max`` (a bound of None is open)."""

    min: float | None = None
    max: float | None = None


Condition = Scalar | tuple[Scalar, ...] | Range
"""One ``where`` condition: equals a scalar, is one of a tuple of scalars, or lies in a range."""


@dataclass(frozen=True)
class ItemFilter:
    """Which items may be recommended (see the module docstring for the JSON form).

    Attributes:
        allow: only these item ids (None: every item).
        exclude: never these item ids.
        where: per attribute name, a :data:`Condition`.
    """

    allow: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    where: Mapping[str, Condition] = field(default_factory=dict)

    def __hash__(self) -> int:
        return hash(self.key)

    @cached_property
    def key(self) -> str:
        """A canonical JSON text of the filter (equal filters, equal keys)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def parse(cls, obj: ItemFilter | Mapping[str, Any] | str) -> ItemFilter:
        """A filter from its JSON form (a dict or a JSON text), or the filter itself.

        Raises:
            ServingError: malformed JSON, unknown keys, or a value of the wrong shape (the field
                and what was expected are named).
        """
        if isinstance(obj, ItemFilter):
            return obj
        if isinstance(obj, str):
            try:
                obj = json.loads(obj)
            except json.JSONDecodeError as exc:
                raise ServingError(f"filter: not valid JSON ({exc.msg} at position {exc.pos})") from None
        if not isinstance(obj, Mapping):
            raise ServingError(f"filter: expected an object with allow, exclude, where; got {_show(obj)}")
        unknown = sorted(set(obj) - {"allow", "exclude", "where"})
        if unknown:
            raise ServingError(f"filter: unknown keys {unknown}; expected allow, exclude, where")
        allow = obj.get("allow")
        where = obj.get("where") or {}
        if not isinstance(where, Mapping):
            raise ServingError(
                f"filter.where: expected an object of attribute conditions, got {_show(where)}"
            )
        return cls(
            allow=None if allow is None else _ids(allow, "filter.allow"),
            exclude=_ids(obj.get("exclude") or [], "filter.exclude"),
            where={str(name): _condition(value, f"filter.where.{name}") for name, value in where.items()},
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        out: dict[str, Any] = {}
        if self.allow is not None:
            out["allow"] = list(self.allow)
        if self.exclude:
            out["exclude"] = list(self.exclude)
        if self.where:
            out["where"] = {n: _condition_json(c) for n, c in self.where.items()}
        return out

    def check(self, attributes: ItemAttributes) -> None:
        """Refuse conditions on unknown attributes, and conditions of the wrong kind.

        Raises:
            ServingError: names the attribute, and lists the known ones or the kind expected.
        """
        for name, cond in self.where.items():
            field_name = f"filter.where.{name}"
            if name not in attributes.kinds:
                known = ", ".join(attributes.names) or "(none)"
                raise ServingError(f"{field_name}: unknown attribute; known: {known}")
            kind = attributes.kinds[name]
            if isinstance(cond, Range):
                if kind != "number":
                    raise ServingError(
                        f"{field_name}: a range needs a number attribute, {name!r} is a {kind}"
                    )
                continue
            for value in cond if isinstance(cond, tuple) else (cond,):
                if value_kind(value) != kind:
                    raise ServingError(f"{field_name}: expected a {kind} value, got {value!r}")

    def mask(self, catalogue: Catalogue, attributes: ItemAttributes) -> np.ndarray:
        """(N+1,) bool: the item indices this filter allows (index 0, padding, never); cached per
        (filter, ``attributes.version``, catalogue size).

        Raises:
            ServingError: see :meth:`check`; UnknownIdError: ``allow`` names no known item.
        """
        key = (self, attributes.version, len(catalogue))
        cached = attributes.masks.get(key)
        if cached is not None:
            attributes.masks.move_to_end(key)
            return cached
        self.check(attributes)
        mask = self._compute(catalogue, attributes)
        mask.flags.writeable = False
        attributes.masks[key] = mask
        while len(attributes.masks) > MASKS_KEPT:
            attributes.masks.popitem(last=False)
        return mask

    def _compute(self, catalogue: Catalogue, attributes: ItemAttributes) -> np.ndarray:
        n = len(catalogue) + 1
        mask = np.ones(n, dtype=bool)  # (N+1,)
        if self.allow is not None:
            known = [i for i in map(catalogue.index_of, self.allow) if i is not None]
            if not known:
                raise UnknownIdError("item", list(self.allow))
            mask[:] = False
            mask[known] = True
        excluded = [i for i in map(catalogue.index_of, self.exclude) if i is not None]
        mask[excluded] = False
        for name, cond in self.where.items():
            column = attributes.column(name)[:n]  # items added since the last catch-up have none
            mask[: column.shape[0]] &= _matches(column, cond)
            mask[column.shape[0] :] = False
        mask[0] = False
        return mask


FilterLike = ItemFilter | Mapping[str, Any] | str | None
"""What the serving API takes as a filter: an :class:`ItemFilter`, its JSON form (a dict or a JSON
text), or None (no filter)."""


def as_filter(obj: FilterLike) -> ItemFilter | None:
    """:meth:`ItemFilter.parse`, with None (and an empty filter) as None: no filter."""
    if obj is None:
        return None
    parsed = ItemFilter.parse(obj)
    return parsed if parsed.to_dict() else None


def _matches(column: np.ndarray, cond: Condition) -> np.ndarray:
    """(N+1,) bool: where an (N+1,) object column meets ``cond`` (None never does)."""
    if isinstance(cond, Range):
        values = np.array([np.nan if v is None else float(v) for v in column], dtype=np.float64)
        with np.errstate(invalid="ignore"):
            ok = ~np.isnan(values)
            if cond.min is not None:
                ok &= values >= cond.min
            if cond.max is not None:
                ok &= values <= cond.max
        return ok
    out = np.zeros(column.shape[0], dtype=bool)
    for value in cond if isinstance(cond, tuple) else (cond,):
        out |= np.asarray(column == value, dtype=bool)
    return out


def _ids(value: Any, field_name: str) -> tuple[str, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ServingError(f"{field_name}: expected a list of item ids, got {_show(value)}")
    bad = [v for v in value if isinstance(v, bool) or not isinstance(v, (str, int))]
    if bad:
        raise ServingError(f"{field_name}: expected item ids (strings), got {_show(bad[0])}")
    return tuple(str(v) for v in value)


def _condition(value: Any, field_name: str) -> Condition:
    """A ``where`` value -> a :data:`Condition`."""
    if isinstance(value, Mapping):
        extra = sorted(set(value) - {"min", "max"})
        if extra or not value:
            raise ServingError(f"{field_name}: a range takes min and/or max, got {_show(value)}")
        bounds = {b: value.get(b) for b in ("min", "max")}
        for b, x in bounds.items():
            if x is not None and value_kind(x) != "number":
                raise ServingError(f"{field_name}.{b}: expected a number, got {_show(x)}")
        return Range(bounds["min"], bounds["max"])
    if isinstance(value, (list, tuple)):
        if not value:
            raise ServingError(f"{field_name}: expected a non-empty list of values")
        return tuple(_scalar(v, field_name) for v in value)
    return _scalar(value, field_name)


def _scalar(value: Any, field_name: str) -> Scalar:
    if value_kind(value) is None:
        raise ServingError(
            f"{field_name}: expected a string, a number, a bool, a list of them or "
            f"{{'min': x, 'max': y}}, got {_show(value)}"
        )
    return value  # type: ignore[no-any-return]


def _condition_json(cond: Condition) -> Any:
    if isinstance(cond, Range):
        return {b: x for b, x in (("min", cond.min), ("max", cond.max)) if x is not None}
    return list(cond) if isinstance(cond, tuple) else cond


def _show(value: Any) -> str:
    text = (
        json.dumps(value, default=str) if not isinstance(value, float) or math.isfinite(value) else str(value)
    )
    return text if len(text) <= 80 else text[:77] + "..."
