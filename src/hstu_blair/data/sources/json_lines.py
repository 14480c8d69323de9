"""JSON lines: one object per line, streamed (:func:`parse_json_line`) or as a whole table
(:func:`read_jsonl_table`); errors name the file, line and field."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from hstu_blair.data.sources.bad_lines import BadLines
from hstu_blair.data.sources.files import read_bytes
from hstu_blair.data.sources.readers import LOC, Table, require_columns, split_lines, utf8_bytes
from hstu_blair.errors import DataFormatError

try:  # orjson is several times faster on the 0.4-2 GB metadata files; json is the fallback
    import orjson

    _loads_json: Callable[[bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover - exercised only where orjson is absent
    _loads_json = json.loads


def _bad_utf8_field(line: bytes) -> str | None:
    """Top-level JSON key whose value holds the undecodable bytes, when the line still parses."""
    try:
        obj = json.loads(line.decode("utf-8", errors="replace"))
    except ValueError:
        return None
    if isinstance(obj, dict):
        for key, value in obj.items():
            if "\ufffd" in json.dumps(value, ensure_ascii=False) or "\ufffd" in key:
                return key
    return None


def parse_json_line(path: Path, number: int, line: bytes) -> dict[str, Any]:
    """One JSON object from one line; encoding and syntax errors name the file, line (and field)."""
    try:
        obj = _loads_json(line)
    except ValueError:
        try:
            text = line.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as exc:
            raise DataFormatError(
                path,
                f"not valid UTF-8 text ({exc.reason} at byte {exc.start})",
                line=number,
                field=_bad_utf8_field(line),
            ) from None
        try:  # json also accepts NaN / Infinity, which Python-written files may hold
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            msg = f"malformed JSON at column {exc.colno} ({exc.msg}); expected one JSON object per line"
            raise DataFormatError(path, msg, line=number) from None
    if not isinstance(obj, dict):
        raise DataFormatError(path, f"expected a JSON object, found {type(obj).__name__}", line=number)
    return obj


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


def read_jsonl_table(path: Path, columns: list[str], bad: BadLines) -> Table:
    """``columns`` of a JSON-lines file; polars reads it, or (a bad line) each line is checked."""
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
