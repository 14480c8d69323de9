"""The one rule for external ids (users and items), in every source and, later, in serving.

:func:`normalize_id`: surrounding whitespace is removed and the text is put in Unicode NFC (so
``"Cafe\\u0301"`` and ``"Caf\\u00e9"`` are one id); an id that is then empty, or that holds an
invisible or control character (Unicode categories ``Cf`` and ``Cc``: zero-width characters such
as U+200B-U+200D and U+FEFF, the bidirectional marks and embeddings U+200E/F, U+202A-U+202E,
U+2066-U+2069, a tab or a newline inside the id...), is refused: two ids that print the same must
be the same id, and an id must print as what it is.

:func:`normalize_ids` applies the same rule to a whole polars column (plain printable ASCII ids, the
usual case, are checked without leaving polars).
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

import polars as pl

from hstu_blair.errors import DataFormatError, HstuBlairError

_REFUSED_CATEGORIES = ("Cf", "Cc")
_PLAIN_ASCII = r"^[!-~](?:[ -~]*[!-~])?$"
"""Printable ASCII without surrounding spaces: such an id is already normalized."""


class InvalidIdError(HstuBlairError, ValueError):
    """An external id that :func:`normalize_id` refuses (empty, or with an invisible/control character)."""


def id_problem(value: str) -> str | None:
    """Why ``value`` (already stripped and NFC) is not a valid id, or ``None`` when it is."""
    if not value:
        return "empty id"
    for position, char in enumerate(value):
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
            name = unicodedata.name(char, "control character")
            return f"id {value!r} holds U+{ord(char):04X} ({name}) at position {position}: invisible or control characters are not allowed in ids"
    return None


def check_id(value: str) -> tuple[str, str | None]:
    """``(normalized id, None)``, or ``(id, why it is refused)``: :func:`normalize_id` without raising,
    for loops over millions of records (plain printable ASCII takes the fast path)."""
    text = value.strip()
    if text and text.isascii() and text.isprintable():
        return text, None
    text = unicodedata.normalize("NFC", text)
    return text, id_problem(text)


def normalize_id(
    value: str,
    *,
    path: str | Path | None = None,
    line: int | None = None,
    field: str | None = None,
) -> str:
    """The id ``value`` stripped of surrounding whitespace and in Unicode NFC.

    Args:
        value: an external user or item id as read.
        path, line, field: where it was read; named in the error.

    Returns:
        The normalized id.

    Raises:
        DataFormatError: (``path`` given) the id is empty or holds an invisible or control
            character; the message names the file, line and field.
        InvalidIdError: the same, when no ``path`` is given (ids from an API call).
    """
    text, problem = check_id(value)
    if problem is None:
        return text
    if path is not None:
        raise DataFormatError(path, problem, line=line, field=field)
    raise InvalidIdError(problem)


def _normalize_or_none(value: str) -> str | None:
    text, problem = check_id(value)
    return None if problem else text


def normalize_ids(values: pl.Series) -> pl.Series:
    """:func:`normalize_id` over a string column: null where an id is refused (or was null).

    Plain printable ASCII ids are kept as they are; the others (surrounding spaces, non-ASCII,
    control characters: rare) go through :func:`normalize_id` once per distinct value.
    """
    plain = values.str.contains(_PLAIN_ASCII).fill_null(True)
    if plain.all():
        return values
    odd = values.filter(~plain).unique().drop_nulls()
    fixed = pl.Series([_normalize_or_none(v) for v in odd.to_list()], dtype=pl.String)
    return (
        pl.DataFrame({"v": values, "plain": plain})
        .select(
            pl.when(pl.col("plain"))
            .then(pl.col("v"))
            .otherwise(pl.col("v").replace_strict(odd, fixed, default=None, return_dtype=pl.String))
        )
        .to_series()
        .alias(values.name)
    )
