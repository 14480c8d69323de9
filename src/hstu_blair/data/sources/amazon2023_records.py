"""Amazon Reviews 2023 record helpers shared by its readers: typed fields of a JSON object (errors
name the file, line and field), rows gathered in bounded memory, and milliseconds to seconds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from hstu_blair.data import schema
from hstu_blair.data.ids import normalize_id
from hstu_blair.errors import DataFormatError

_ASIN_KEYS = (b'"parent_asin": "', b'"parent_asin":"')


def require_str(path: Path, number: int, obj: dict[str, Any], key: str, where: str = "") -> str:
    """``obj[key]``, a non-empty string; else an error naming the line and ``where + key``."""
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        found = "missing" if key not in obj else f"found {value!r}"
        raise DataFormatError(path, f"expected a non-empty string, {found}", line=number, field=where + key)
    return value


def require_id(path: Path, number: int, obj: dict[str, Any], key: str, where: str = "") -> str:
    """A user or item id (:func:`~hstu_blair.data.ids.normalize_id`)."""
    value = require_str(path, number, obj, key, where)
    return normalize_id(value, path=path, line=number, field=where + key)


def require_number(path: Path, number: int, obj: dict[str, Any], key: str, where: str = "") -> float:
    """``obj[key]``, a number (not a bool) as a float; else an error naming the line and field."""
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        found = "missing" if key not in obj else f"found {value!r}"
        raise DataFormatError(path, f"expected a number, {found}", line=number, field=where + key)
    return float(value)


def require_ms(path: Path, number: int, obj: dict[str, Any], key: str, where: str = "") -> int:
    """``obj[key]``, an integer Unix time in milliseconds; else an error naming the line and field."""
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        found = "missing" if key not in obj else f"found {value!r}"
        raise DataFormatError(
            path, f"expected an integer Unix time in milliseconds, {found}", line=number, field=where + key
        )
    return value


class Rows:
    """Rows gathered in Python lists and moved into polars every ``chunk`` rows (bounded memory)."""

    def __init__(self, columns: dict[str, pl.DataType], chunk: int = 200_000) -> None:
        self.schema = columns
        self.chunk = chunk
        self.columns: list[list[Any]] = [[] for _ in columns]
        self.frames: list[pl.DataFrame] = []

    def append(self, *values: Any) -> None:
        """Add one row (one value per column, in schema order)."""
        for column, value in zip(self.columns, values):
            column.append(value)
        if len(self.columns[0]) >= self.chunk:
            self._flush()

    def _flush(self) -> None:
        self.frames.append(pl.DataFrame(dict(zip(self.schema, self.columns)), schema=self.schema))
        self.columns = [[] for _ in self.schema]

    def frame(self) -> pl.DataFrame:
        """Every row appended so far, as one frame."""
        self._flush()
        return pl.concat(self.frames, rechunk=True)


def interaction_rows() -> Rows:
    """Accumulator of ``(user, item, timestamp in ms, rating)``; see :func:`to_seconds`."""
    return Rows(schema.INTERACTIONS_SCHEMA)


def to_seconds(interactions: pl.DataFrame) -> pl.DataFrame:
    """The interactions with ``timestamp`` in seconds (milliseconds floored)."""
    return interactions.with_columns(pl.col(schema.TIMESTAMP) // 1000)  # ms -> s, floor


def peek_asin(line: bytes) -> bytes | None:
    """The top-level ``parent_asin`` value found by a byte search (last occurrence), or ``None``."""
    for key in _ASIN_KEYS:
        start = line.rfind(key)
        if start >= 0:
            start += len(key)
            end = line.find(b'"', start)
            return line[start:end] if end > start else None
    return None
