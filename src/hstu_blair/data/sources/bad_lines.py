"""What a reader does with a malformed record: raise, or (``skip_bad_lines``) count and record it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from hstu_blair.errors import DataFormatError


class BadLines:
    """Raise on a malformed line, or (``skip=True``) count it under a reason, record it and go on.

    Args:
        skip: count bad lines instead of raising.
        removed: the counter that receives ``bad_lines:<file name>`` counts.

    Attributes:
        records: every skipped line, ``{"file", "line", "field", "reason"}`` (the dataset's
            ``bad_lines.jsonl``).
        first_error: the first error message per ``bad_lines:<file name>`` key.
    """

    def __init__(self, skip: bool, removed: Counter[str]) -> None:
        self.skip = skip
        self.removed = removed
        self.first_error: dict[str, str] = {}
        self.records: list[dict[str, object]] = []

    def __call__(self, error: DataFormatError) -> None:
        if not self.skip:
            raise error
        name = Path(error.path).name
        key = f"bad_lines:{name}"
        self.removed[key] += 1
        self.first_error.setdefault(key, str(error))
        self.records.append({"file": name, "line": error.line, "field": error.field, "reason": error.reason})


def count_bad(
    bad: BadLines, rows: pl.DataFrame, error_of: Callable[[dict[str, Any]], DataFormatError]
) -> None:
    """Raise the error of the first of ``rows`` (bad records of one file), or, when skipping, count
    and record each one (``error_of`` makes a record's error from its row)."""
    for row in rows.iter_rows(named=True):
        bad(error_of(row))
