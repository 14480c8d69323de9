"""Typed output columns over a reader :class:`~hstu_blair.data.sources.readers.Table`: ids, numbers,
timestamps (s/ms/us/ns/ISO-8601) and ratings, with :func:`convert` reporting (or counting) every
record whose value does not parse, by file, line and field."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

import polars as pl

from hstu_blair.data.ids import normalize_ids
from hstu_blair.data.sources.bad_lines import BadLines, count_bad
from hstu_blair.data.sources.readers import LOC, Table
from hstu_blair.errors import DataFormatError, HstuBlairError


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass
class Column:
    """How one output column is made: ``expr`` over the table gives null where ``source`` is unusable."""

    source: str
    expr: pl.Expr
    expected: str


def convert(
    table: Table, columns: dict[str, Column], bad: BadLines, keep: list[str] | None = None
) -> pl.DataFrame:
    """Evaluate every :class:`Column`; a record where one gives null is reported or counted and dropped.

    Returns:
        The output columns in ``columns`` order, then the source columns ``keep`` unchanged;
        records in file order.
    """
    out = {name: f"__{name}" for name in columns}
    frame = table.frame.with_columns([c.expr.alias(out[name]) for name, c in columns.items()])
    failed = pl.any_horizontal([pl.col(o).is_null() for o in out.values()])
    n_bad = frame.select(failed.sum()).item()
    if n_bad:

        def error_of(row: dict[str, Any]) -> DataFormatError:
            spec = next(columns[name] for name in columns if row[out[name]] is None)
            value = row[spec.source]
            if value is None or (isinstance(value, str) and not value.strip()):
                message = f"missing value (expected {spec.expected})"
            else:
                message = f"expected {spec.expected}, found {_show(value)}"
            return table.error(row[LOC], message, field=spec.source)

        count_bad(bad, frame.filter(failed), error_of)
        frame = frame.filter(~failed)
    return frame.select([pl.col(o).alias(name) for name, o in out.items()] + list(keep or []))


def _no_nan(expr: pl.Expr) -> pl.Expr:
    return pl.when(expr.is_nan()).then(None).otherwise(expr)


def int_text(column: str) -> pl.Expr:
    """A text column of integer ids -> the integer text, without surrounding whitespace (the id rule of
    :mod:`hstu_blair.data.ids`), where it is an integer; else null."""
    text = pl.col(column).str.strip_chars()
    return pl.when(text.cast(pl.Int64, strict=False).is_not_null()).then(text)


def number(column: str, dtype: pl.DataType) -> pl.Expr:
    """A text column of numbers -> ``dtype`` (null where the text is not a number, or is NaN)."""
    return _no_nan(pl.col(column).cast(pl.Float64, strict=False)).cast(dtype)


def _type_error(table: Table, column: str, dtype: pl.DataType, expected: str) -> DataFormatError:
    return DataFormatError(
        table.path, f"column {column!r} has type {dtype}; expected {expected}", field=column
    )


def id_column(table: Table, column: str) -> Column:
    """External id column -> text (strings by :func:`~hstu_blair.data.ids.normalize_ids`, refused ids
    null; integers and integral floats as integer text)."""
    dtype = table.frame.schema[column]
    col = pl.col(column)
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
        expr = col.cast(pl.String).map_batches(normalize_ids, return_dtype=pl.String)
    elif dtype.is_integer():
        expr = col.cast(pl.String)
    elif dtype.is_float():
        whole = _no_nan(col).floor() == col
        expr = (
            pl.when(whole)
            .then(col.cast(pl.Int64, strict=False).cast(pl.String))
            .otherwise(col.cast(pl.String))
        )
    else:
        raise _type_error(table, column, dtype, "string or integer ids")
    return Column(column, expr, "an id (text without invisible or control characters, or an integer)")


_DIVISOR = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_UNIT_NAME = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}


def parse_iso(value: str) -> int | None:
    """Seconds since the epoch of an ISO-8601 date or datetime (UTC unless it has an offset); else None."""
    text = value.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return math.floor(moment.timestamp())


def _iso_seconds(values: pl.Series) -> pl.Series:
    unique = values.drop_nulls().unique()
    seconds = pl.Series([parse_iso(v) for v in unique.to_list()], dtype=pl.Int64)
    return values.replace_strict(unique, seconds, default=None, return_dtype=pl.Int64)


def timestamp_column(table: Table, column: str, unit: str) -> Column:
    """Timestamp column in ``unit`` (s/ms/us/ns/iso), or a date/datetime column -> int64 seconds."""
    dtype = table.frame.schema[column]
    col = pl.col(column)
    if dtype == pl.Date:
        return Column(column, col.cast(pl.Datetime("us")).dt.epoch("s"), "a date")
    if isinstance(dtype, pl.Datetime):  # naive datetimes are read as UTC
        return Column(column, col.dt.epoch("s"), "a datetime")
    if unit == "iso":
        if dtype != pl.String:
            raise _type_error(
                table, column, dtype, "ISO-8601 text (timestamp_unit='iso'); set timestamp_unit to s/ms/us/ns"
            )
        expr = col.map_batches(_iso_seconds, return_dtype=pl.Int64)
        return Column(column, expr, "an ISO-8601 date or datetime, e.g. 2017-12-17 or 2017-12-17T10:00:00Z")
    if unit not in _DIVISOR:
        raise HstuBlairError(f"timestamp_unit {unit!r} is not one of s, ms, us, ns, iso")
    expected = f"a number of {_UNIT_NAME[unit]} since the epoch (timestamp_unit={unit!r})"
    if dtype == pl.String:
        text = col.str.strip_chars()
        floored = _no_nan(text.cast(pl.Float64, strict=False)).floor().cast(pl.Int64, strict=False)
        value = pl.coalesce(text.cast(pl.Int64, strict=False), floored)
    elif dtype.is_integer():
        value = col.cast(pl.Int64)
    elif dtype.is_float():
        value = _no_nan(col).floor().cast(pl.Int64, strict=False)
    else:
        raise _type_error(table, column, dtype, expected)
    return Column(column, value // _DIVISOR[unit], expected)


def rating_column(table: Table, column: str) -> Column:
    """Rating column -> float32."""
    dtype = table.frame.schema[column]
    if dtype == pl.String:
        expr = _no_nan(pl.col(column).str.strip_chars().cast(pl.Float64, strict=False)).cast(pl.Float32)
    elif dtype.is_numeric():
        expr = _no_nan(pl.col(column).cast(pl.Float64)).cast(pl.Float32)
    else:
        raise _type_error(table, column, dtype, "numeric ratings")
    return Column(column, expr, "a number")
