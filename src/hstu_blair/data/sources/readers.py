"""The reader toolkit every source uses: delimited text tables with the line of each record.

Every reader names the file and the 1-based line (Parquet: row), and the field where there is one,
in the :class:`~hstu_blair.errors.DataFormatError` it raises; with ``skip_bad_lines`` a
:class:`~.bad_lines.BadLines` counts the record instead (``bad_lines:<file name>``) and keeps every
skipped line's file, line, field and reason for the dataset's report.

- here: :class:`Table` (records with their line), :func:`utf8_bytes` + :func:`split_lines` (a whole
  file at once, as a table of lines), :func:`split_fields` (no quoting), :func:`read_delimited` (a
  header line; quoted CSV understood), :func:`read_headerless`, :func:`read_tsv`.
- :mod:`.files`: :func:`~.files.open_binary`, :func:`~.files.read_bytes` (a missing, empty or corrupt
  gzip file names itself), :func:`~.files.numbered_lines` (streamed), :func:`~.files.line_blocks` +
  :func:`~.files.decoded_lines` (blocks of whole lines, for worker processes).
- :mod:`.bad_lines`: :class:`~.bad_lines.BadLines` and :func:`~.bad_lines.count_bad`.
- :mod:`.json_lines`: :func:`~.json_lines.parse_json_line` (one object per line, streamed).
- :mod:`.tables`: :func:`~.tables.read_table` for whole CSV/TSV/Parquet/JSONL tables chosen by extension.

Typed columns over these tables (ids, timestamps, ratings) are in :mod:`.columns`.
"""

from __future__ import annotations

import codecs
import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import polars as pl

from hstu_blair.data.sources.bad_lines import BadLines, count_bad
from hstu_blair.data.sources.files import read_bytes
from hstu_blair.errors import DataFormatError

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

        def error_of(row: dict[str, Any]) -> DataFormatError:
            found = row["_n"]
            missing = names[found] if found < len(names) else None
            message = f"expected {len(names)} fields separated by {sep!r}, found {found}"
            return lines.error(row[LOC], message, field=missing)

        count_bad(bad, wrong, error_of)
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
