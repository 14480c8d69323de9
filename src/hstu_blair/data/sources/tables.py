"""Whole CSV/TSV/Parquet/JSONL tables, the format chosen by the file name (:func:`read_table`)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from hstu_blair.data.sources.bad_lines import BadLines
from hstu_blair.data.sources.json_lines import read_jsonl_table
from hstu_blair.data.sources.readers import LOC, Table, read_delimited, require_columns
from hstu_blair.errors import DataFormatError

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
        return read_jsonl_table(path, columns, bad)
    return read_delimited(path, "\t" if fmt == "tsv" else ",", bad, columns=columns)
