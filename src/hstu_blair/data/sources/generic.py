"""Any interaction table (CSV, TSV, Parquet, JSON Lines) -> :class:`RawDataset`; plus the table helpers
that the other text-table loaders (MovieLens) share.

The interactions table needs a user, an item and a timestamp column (names in :class:`PrepareOptions`),
and optionally a rating column (``rating_column=None`` gives every interaction rating 1.0). An optional
items table gives each item a text (``text_columns`` joined with ". ") and a title (``title_column``).
Format is chosen by extension: ``.csv``, ``.tsv``, ``.parquet``, ``.jsonl`` / ``.ndjson``; the text
formats may be gzip-compressed (``.gz``).

Ids are kept as text: integer ids become their decimal text, integral floats (ids a pandas frame
turned into floats) their integer text. Timestamps are converted to integer seconds from
``timestamp_unit`` (``s``, ``ms``, ``us``, ``ns``: floored; ``iso``: ISO-8601 dates or datetimes, read
as UTC unless they carry an offset); Parquet date/datetime columns are converted whatever the unit.

Every problem names the file, the 1-based line (row, for Parquet) and the field. With
``skip_bad_lines`` bad records are counted under ``bad_lines:<file name>`` instead.

Helpers for other loaders: every reader returns a :class:`Table` (string columns plus ``_loc``, the
line of each record), and :func:`convert` turns its columns into typed output columns, reporting or
counting the records whose value does not parse.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import polars as pl

from hstu_blair.data import schema
from hstu_blair.data.item_text import field_text, join_fields
from hstu_blair.data.options import PrepareOptions
from hstu_blair.data.sources.base import BadLines, RawDataset, read_bytes
from hstu_blair.errors import DataFormatError, HstuBlairError

LOC = "_loc"
"""Column of every :class:`Table`: the 1-based line (or Parquet row) each record came from."""
_TEXT = "_text"
_LINE_SPLIT = "\x1f"  # a byte that never appears in our text formats; polars splits lines at it


# ---- tables with locations -------------------------------------------------------------------
@dataclass
class Table:
    """Records read from one file: the requested columns plus :data:`LOC`.

    Attributes:
        path: the file.
        frame: requested columns (strings for text formats, stored types for Parquet/JSONL) and ``_loc``.
        unit: what ``_loc`` counts: ``line`` (text files) or ``row`` (Parquet).
        columns: every column the file has (for "missing column" messages).
    """

    path: Path
    frame: pl.DataFrame
    unit: Literal["line", "row"] = "line"
    columns: list[str] = field(default_factory=list)

    def error(self, loc: int | None, message: str, field: str | None = None) -> DataFormatError:
        """A :class:`DataFormatError` at record ``loc`` of this file."""
        if self.unit == "row" and loc is not None:
            return DataFormatError(self.path, f"row {loc}: {message}", field=field)
        return DataFormatError(self.path, message, line=loc, field=field)


def count_bad(bad: BadLines, error: DataFormatError, n: int) -> None:
    """Raise ``error`` (the first of ``n`` bad records of one file), or count all ``n`` when skipping."""
    bad(error)  # raises unless skipping; counts one
    bad.removed[f"bad_lines:{Path(error.path).name}"] += n - 1


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def require_columns(table: Table, wanted: list[str], line: int | None = None) -> None:
    """Raise a :class:`DataFormatError` listing the available columns when one of ``wanted`` is absent."""
    missing = [c for c in wanted if c not in table.columns]
    if missing:
        raise DataFormatError(
            table.path,
            f"missing column(s) {', '.join(map(repr, missing))}; available columns: {', '.join(table.columns)}",
            line=line,
            field=missing[0],
        )


# ---- text files: decoding, lines, fields ------------------------------------------------------
def _field_at(line: bytes, offset: int, sep: str, names: list[str], quoted: bool) -> str | None:
    """Name of the field that byte ``offset`` of ``line`` falls in."""
    prefix = line[:offset].decode("utf-8", "replace")
    if quoted:
        index = max(0, len(next(csv.reader([prefix], delimiter=sep), [""])) - 1)
    else:
        index = prefix.count(sep)
    return names[index] if index < len(names) else None


def utf8_bytes(
    path: Path,
    data: bytes,
    bad: BadLines,
    encoding: str = "utf-8",
    sep: str | None = None,
    names: list[str] | None = None,
    quoted: bool = False,
) -> bytes:
    """The file's content ``data`` (decompressed) as UTF-8 bytes, checked to decode as ``encoding``.

    A line holding bytes that are not valid ``encoding`` is an error naming the line and, when
    ``sep`` is given, the field (``names``, or the file's first line, give the field names); when
    skipping, such a line is counted and blanked, so line numbers stay right. A UTF-8 BOM is removed.
    """
    if encoding == "utf-8" and data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        pass
    else:
        return data if encoding == "utf-8" else text.encode("utf-8")
    lines = data.split(b"\n")
    if sep is not None and names is None:
        names = [n.strip() for n in lines[0].decode(encoding, "replace").rstrip("\r").split(sep)]
    for number, line in enumerate(lines, start=1):
        try:
            line.decode(encoding)
        except UnicodeDecodeError as exc:
            where = _field_at(line, exc.start, sep, names or [], quoted) if sep else None
            found = line[exc.start : exc.start + 1]
            message = (
                f"not valid {encoding} text: byte {found!r} at column {exc.start + 1} (wrong file encoding?)"
            )
            bad(DataFormatError(path, message, line=number, field=where))
            lines[number - 1] = b""
    return b"\n".join(lines)


def split_lines(path: Path, data: bytes) -> Table:
    """Non-blank lines of UTF-8 ``data`` as a table (``_loc`` = 1-based line number, ``_text``)."""
    if _LINE_SPLIT.encode() in data:
        texts = pl.Series(_TEXT, data.decode("utf-8").split("\n")).str.strip_chars_end("\r")
    else:  # polars' CSV reader with a separator that never occurs: one row per line, fast
        texts = pl.read_csv(
            data, has_header=False, separator=_LINE_SPLIT, quote_char=None, schema={_TEXT: pl.String}
        )[_TEXT]
    frame = (
        pl.DataFrame(texts.alias(_TEXT))
        .with_row_index(LOC, offset=1)
        .with_columns(pl.col(LOC).cast(pl.Int64))
        .filter(pl.col(_TEXT).str.strip_chars() != "")
    )
    return Table(path, frame)


def _csv_fields(data: bytes, sep: str, names: list[str], locs: pl.Series) -> pl.DataFrame:
    """Fast path of :func:`split_fields` when every line has the right field count: polars' CSV
    reader splits all lines of ``data``; only the records at ``locs`` are kept."""
    frame = pl.read_csv(
        data,
        has_header=False,
        separator=sep,
        quote_char=None,
        schema=dict.fromkeys(names, pl.String),
        empty_string_is_null=False,
    )
    frame = frame.with_row_index(LOC, offset=1).with_columns(pl.col(LOC).cast(pl.Int64))
    return frame.filter(pl.col(LOC).is_in(locs.implode()))


def split_fields(lines: Table, sep: str, names: list[str], bad: BadLines, data: bytes | None = None) -> Table:
    """Split each line of ``lines`` at ``sep`` (no quoting) into the string columns ``names``.

    A line with another number of fields is an error naming the line (and the first missing field).
    ``data`` (the bytes ``lines`` came from) lets polars' CSV reader do the split when no line is bad.
    """
    n_fields = pl.col(_TEXT).str.count_matches(sep, literal=True) + 1
    frame = lines.frame.with_columns(n_fields.alias("_n"))
    wrong = frame.filter(pl.col("_n") != len(names))
    if wrong.height:
        row = wrong.row(0, named=True)
        found = row["_n"]
        missing = names[found] if found < len(names) else None
        message = f"expected {len(names)} fields separated by {sep!r}, found {found}"
        count_bad(bad, lines.error(row[LOC], message, field=missing), wrong.height)
        frame = frame.filter(pl.col("_n") == len(names))
    if data is not None and not wrong.height and len(sep.encode()) == 1 and b'"' not in data:
        fields = _csv_fields(data, sep, names, frame[LOC])
    elif len(names) == 1:
        fields = frame.select(LOC, pl.col(_TEXT).alias(names[0]))
    else:
        parts = pl.col(_TEXT).str.split_exact(sep, len(names) - 1)
        fields = frame.select(LOC, *[parts.struct.field(f"field_{i}").alias(n) for i, n in enumerate(names)])
    return Table(lines.path, fields, columns=list(names))


def take_header(lines: Table, sep: str, expected: list[str] | None = None) -> tuple[Table, int]:
    """Use the first line as the header; return the remaining lines (with ``columns`` set) and its line.

    Raises:
        DataFormatError: no lines, or (``expected`` given) a header other than ``expected``.
    """
    if lines.frame.height == 0:
        raise DataFormatError(lines.path, "no header line")
    loc, text = lines.frame.row(0)
    header = [h.strip() for h in text.split(sep)]
    if expected is not None and header != expected:
        raise DataFormatError(
            lines.path, f"expected the header {sep.join(expected)!r}, found {text!r}", line=loc
        )
    return Table(lines.path, lines.frame.slice(1), columns=header), loc


def read_csv_records(path: Path, data: bytes, sep: str, bad: BadLines) -> tuple[Table, int]:
    """Parse quoted CSV/TSV ``data`` with the ``csv`` module; return (records, header line).

    Every record has the header's field count (else it is a bad line); ``_loc`` is its first line,
    also for records whose quoted fields span lines.
    """
    reader = csv.reader(io.StringIO(data.decode("utf-8"), newline=""), delimiter=sep, strict=True)
    header: list[str] | None = None
    header_line = 0
    rows: list[list[str]] = []
    locs: list[int] = []
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            bad(DataFormatError(path, f"malformed CSV ({exc})", line=start))
            start = reader.line_num + 1
            continue
        line, start = start, reader.line_num + 1
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # blank line
        if header is None:
            header, header_line = [h.strip() for h in row], line
        elif len(row) != len(header):
            missing = header[len(row)] if len(row) < len(header) else None
            message = f"expected {len(header)} fields separated by {sep!r}, found {len(row)}"
            bad(DataFormatError(path, message, line=line, field=missing))
        else:
            rows.append(row)
            locs.append(line)
    if header is None:
        raise DataFormatError(path, "no header line")
    columns = {name: [r[i] for r in rows] for i, name in enumerate(header) if name not in header[:i]}
    frame = pl.DataFrame(
        {LOC: pl.Series(locs, dtype=pl.Int64), **columns}, schema_overrides=dict.fromkeys(columns, pl.String)
    )
    return Table(path, frame, columns=header), header_line


def read_delimited(
    path: Path,
    sep: str,
    bad: BadLines,
    *,
    columns: list[str] | None = None,
    expected_header: list[str] | None = None,
    encoding: str = "utf-8",
    data: bytes | None = None,
) -> Table:
    """A delimited text file with a header line -> string columns ``columns`` (default: all).

    Files without a double quote are split by polars (fast); files with one go through the ``csv``
    module, which understands quoting. Both give the same records and line numbers. ``data``: the
    file's content when it was read elsewhere (a member of a zip archive named by ``path``).

    Raises:
        DataFormatError: undecodable bytes, a wrong field count, a header other than
            ``expected_header``, or a missing column (listing the available ones).
    """
    data = read_bytes(path) if data is None else data
    quoted = sep in (",", "\t") and b'"' in data
    data = utf8_bytes(path, data, bad, encoding, sep=sep, names=expected_header, quoted=quoted)
    if quoted:
        table, header_line = read_csv_records(path, data, sep, bad)
        if expected_header is not None and table.columns != expected_header:
            message = f"expected the header {sep.join(expected_header)!r}, found {sep.join(table.columns)!r}"
            raise DataFormatError(path, message, line=header_line)
    else:
        lines, header_line = take_header(split_lines(path, data), sep, expected_header)
        table = split_fields(lines, sep, lines.columns, bad, data)
    wanted = columns if columns is not None else list(dict.fromkeys(table.columns))
    require_columns(table, wanted, line=header_line)
    return Table(path, table.frame.select(LOC, *wanted), columns=table.columns)


def read_headerless(path: Path, sep: str, names: list[str], bad: BadLines, encoding: str = "utf-8") -> Table:
    """A file of ``sep``-separated lines without header or quoting (``u.data``, ``ratings.dat``)."""
    data = utf8_bytes(path, read_bytes(path), bad, encoding, sep=sep, names=names)
    return split_fields(split_lines(path, data), sep, names, bad, data)


def read_tsv(path: Path, header: list[str], bad: BadLines) -> tuple[Table, str]:
    """A tab-separated file with the header ``header`` and no quoting (``"`` is a plain character)
    -> (string columns, encoding read: UTF-8 when the whole file decodes so, else latin-1)."""
    data = read_bytes(path)
    try:
        data.decode("utf-8")
        encoding = "utf-8"
    except UnicodeDecodeError:
        encoding = "latin-1"
    data = utf8_bytes(path, data, bad, encoding, sep="\t", names=header)
    lines, _ = take_header(split_lines(path, data), "\t", header)
    return split_fields(lines, "\t", header, bad, data), encoding


# ---- typed output columns ---------------------------------------------------------------------
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
        row = frame.filter(failed).row(0, named=True)
        spec = next(columns[name] for name in columns if row[out[name]] is None)
        value = row[spec.source]
        if value is None or (isinstance(value, str) and not value.strip()):
            message = f"missing value (expected {spec.expected})"
        else:
            message = f"expected {spec.expected}, found {_show(value)}"
        count_bad(bad, table.error(row[LOC], message, field=spec.source), n_bad)
        frame = frame.filter(~failed)
    return frame.select([pl.col(o).alias(name) for name, o in out.items()] + list(keep or []))


def _no_nan(expr: pl.Expr) -> pl.Expr:
    return pl.when(expr.is_nan()).then(None).otherwise(expr)


def int_text(column: str) -> pl.Expr:
    """A text column of integer ids -> the same text where it is an integer, else null."""
    return pl.when(pl.col(column).cast(pl.Int64, strict=False).is_not_null()).then(pl.col(column))


def number(column: str, dtype: pl.DataType) -> pl.Expr:
    """A text column of numbers -> ``dtype`` (null where the text is not a number, or is NaN)."""
    return _no_nan(pl.col(column).cast(pl.Float64, strict=False)).cast(dtype)


def _type_error(table: Table, column: str, dtype: pl.DataType, expected: str) -> DataFormatError:
    return DataFormatError(
        table.path, f"column {column!r} has type {dtype}; expected {expected}", field=column
    )


def id_column(table: Table, column: str) -> Column:
    """External id column -> text (strings stripped; integers and integral floats as integer text)."""
    dtype = table.frame.schema[column]
    col = pl.col(column)
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
        text = col.cast(pl.String).str.strip_chars()
        expr = pl.when(text != "").then(text)
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
    return Column(column, expr, "an id (text or integer)")


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


# ---- the generic formats ----------------------------------------------------------------------
_FORMATS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def table_format(path: Path) -> str:
    """``csv``, ``tsv``, ``parquet`` or ``jsonl`` from the file name (``.gz`` allowed for text formats)."""
    suffixes = [s.lower() for s in path.suffixes]
    compressed = suffixes[-1:] == [".gz"]
    ext = suffixes[-2] if compressed and len(suffixes) > 1 else (suffixes[-1] if suffixes else "")
    fmt = _FORMATS.get(ext)
    if fmt is None or (compressed and fmt == "parquet"):
        raise DataFormatError(
            path, "unknown table format: expected .csv, .tsv, .jsonl or .ndjson (optionally .gz), or .parquet"
        )
    return fmt


def _read_parquet(path: Path, columns: list[str]) -> Table:
    if not path.exists():
        raise DataFormatError(path, "file not found")
    try:
        available = list(pl.read_parquet_schema(path))
    except Exception as exc:  # polars raises several types for a file that is not Parquet
        raise DataFormatError(path, f"not a readable Parquet file ({exc})") from None
    table = Table(path, pl.DataFrame(), unit="row", columns=available)
    require_columns(table, columns)
    frame = pl.read_parquet(path, columns=columns).with_row_index(LOC, offset=1)
    table.frame = frame.with_columns(pl.col(LOC).cast(pl.Int64))
    return table


def _json_records(lines: Table, columns: list[str], bad: BadLines) -> tuple[pl.DataFrame, list[str]]:
    """Slow path: check each line is a JSON object; keep only ``columns`` of the good ones."""
    kept: list[str] = []
    locs: list[int] = []
    seen: dict[str, None] = {}
    for loc, text in lines.frame.iter_rows():
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            bad(lines.error(loc, f"invalid JSON ({exc.msg} at column {exc.colno})"))
            continue
        if not isinstance(record, dict):
            bad(lines.error(loc, f"expected a JSON object, found {type(record).__name__}"))
            continue
        seen.update(dict.fromkeys(record))
        kept.append(json.dumps({c: record[c] for c in columns if c in record}))
        locs.append(loc)
    if not kept:
        return pl.DataFrame({LOC: pl.Series([], dtype=pl.Int64)}), list(seen)
    try:
        frame = pl.read_ndjson(io.BytesIO("\n".join(kept).encode()), infer_schema_length=None)
    except pl.exceptions.PolarsError as exc:
        raise DataFormatError(
            lines.path, f"columns {columns} hold values of incompatible types ({exc})"
        ) from None
    return frame.with_columns(pl.Series(LOC, locs, dtype=pl.Int64)), list(seen)


def _read_jsonl(path: Path, columns: list[str], bad: BadLines) -> Table:
    data = utf8_bytes(path, read_bytes(path), bad)
    lines = split_lines(path, data)
    try:
        frame = pl.read_ndjson(io.BytesIO(data), infer_schema_length=None)
        ok = frame.height == lines.frame.height
    except pl.exceptions.PolarsError:
        ok = False
    if ok:
        table = Table(path, frame.with_columns(lines.frame[LOC]), columns=frame.columns)
    else:
        frame, seen = _json_records(lines, columns, bad)
        table = Table(path, frame, columns=seen)
    require_columns(table, columns)
    table.frame = table.frame.select(LOC, *columns)
    return table


def read_table(path: Path, columns: list[str], bad: BadLines) -> Table:
    """Read ``columns`` of a CSV/TSV/Parquet/JSONL table (format by extension).

    Raises:
        DataFormatError: unknown extension, unreadable content, or a missing column (listing the
            available ones).
    """
    fmt = table_format(path)
    columns = list(dict.fromkeys(columns))
    if fmt == "parquet":
        return _read_parquet(path, columns)
    if fmt == "jsonl":
        return _read_jsonl(path, columns, bad)
    return read_delimited(path, "\t" if fmt == "tsv" else ",", bad, columns=columns)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in reversed(path.suffixes):
        name = name[: -len(suffix)]
    return name or path.name


def _input_files(paths: list[Path], options: PrepareOptions) -> tuple[Path, Path | None]:
    """(interactions table, items table or None) from the options, else from the order of ``paths``."""
    explicit = [p for p in (options.interactions_file, options.items_file) if p is not None]
    rest = [p for p in paths if p not in explicit]
    for p in rest:
        if p.is_dir():
            raise HstuBlairError(
                f"generic: {p} is a directory; give the interactions table (and items table) as files"
            )
    interactions = options.interactions_file or (rest.pop(0) if rest else None)
    if interactions is None:
        raise HstuBlairError("generic: no interactions table given (an input path or interactions_file)")
    items = options.items_file or (rest.pop(0) if rest else None)
    if rest:
        raise HstuBlairError(
            f"generic: unexpected extra input(s) {', '.join(map(str, rest))}; "
            "expected an interactions table and optionally an items table"
        )
    return Path(interactions), (Path(items) if items is not None else None)


def read_items(path: Path, options: PrepareOptions, bad: BadLines, removed: Counter[str]) -> pl.DataFrame:
    """Items table -> ``raw_item_id``, ``title``, ``text``; repeated ids keep their first row (counted).

    ``text`` joins the cleaned ``text_columns`` (lists joined with ", ") with ". "; ``title`` is the
    cleaned ``title_column``, or empty when that is not set.
    """
    id_col = options.item_id_column or options.item_column
    title_col = options.title_column
    text_cols = list(dict.fromkeys(options.text_columns + ([title_col] if title_col else [])))
    table = read_table(path, [id_col, *text_cols], bad)
    rows = convert(table, {schema.ITEM_ID: id_column(table, id_col)}, bad, keep=text_cols)
    texts, titles = [], []
    for row in rows.iter_rows(named=True):
        texts.append(join_fields(field_text(row[c], options.ascii_only) for c in options.text_columns))
        titles.append(field_text(row[title_col]) if title_col else "")
    items = rows.select(
        schema.ITEM_ID,
        pl.Series(schema.TITLE, titles, dtype=pl.String),
        pl.Series(schema.TEXT, texts, dtype=pl.String),
    )
    return dedupe_items(items, path, removed)


def dedupe_items(items: pl.DataFrame, path: Path, removed: Counter[str]) -> pl.DataFrame:
    """Keep the first row of each item id; count the others under ``duplicate_item_rows:<file>``."""
    unique = items.unique(subset=[schema.ITEM_ID], keep="first", maintain_order=True)
    if unique.height < items.height:
        removed[f"duplicate_item_rows:{path.name}"] += items.height - unique.height
    return unique


def load_generic(paths: list[Path], options: PrepareOptions) -> RawDataset:
    """Read an interactions table, and optionally an items table, named by the options' columns.

    Args:
        paths: the interactions table, then optionally the items table (unless ``interactions_file``
            / ``items_file`` name them).
        options: column names (``user_column``, ``item_column``, ``timestamp_column``,
            ``rating_column``, ``item_id_column``, ``text_columns``, ``title_column``),
            ``timestamp_unit``, ``skip_bad_lines``, ``ascii_only``.

    Returns:
        The raw dataset, interactions in file order.

    Raises:
        DataFormatError: unknown format, missing column (the available ones are listed), an empty or
            unparsable value (file, line or row, and field named).
    """
    interactions_path, items_path = _input_files(paths, options)
    removed: Counter[str] = Counter()
    bad = BadLines(options.skip_bad_lines, removed)
    wanted = [options.user_column, options.item_column, options.timestamp_column]
    if options.rating_column:
        wanted.append(options.rating_column)
    table = read_table(interactions_path, wanted, bad)
    columns = {
        schema.USER_ID: id_column(table, options.user_column),
        schema.ITEM_ID: id_column(table, options.item_column),
        schema.TIMESTAMP: timestamp_column(table, options.timestamp_column, options.timestamp_unit),
    }
    if options.rating_column:
        columns[schema.RATING] = rating_column(table, options.rating_column)
    interactions = convert(table, columns, bad)
    if not options.rating_column:
        interactions = interactions.with_columns(pl.lit(1.0, pl.Float32).alias(schema.RATING))

    items = read_items(items_path, options, bad, removed) if items_path is not None else None
    files = [interactions_path] + ([items_path] if items_path is not None else [])
    info: dict[str, object] = {
        "format": table_format(interactions_path),
        "timestamp_unit": options.timestamp_unit,
        "rating": options.rating_column or "constant 1.0",
    }
    if items_path is not None:
        info["items_format"] = table_format(items_path)
    return RawDataset(
        name=_stem(interactions_path),
        source="generic",
        interactions=interactions,
        items=items,
        files=files,
        removed=removed,
        info=info,
    )
