"""Steam's lines: one Python dict literal each (Python 2's ``str(dict)``, not JSON), read exactly by
a fast path or :func:`ast.literal_eval`, or as the reference reads them (:func:`reference_parse`)."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from hstu_blair.errors import DataFormatError

# ---- Python-literal lines ------------------------------------------------------------------------
# The escapes the fast path decodes itself; any other backslash sequence (octal, \N{...}, invalid
# ones that Python keeps with a warning) sends the line to ast.literal_eval.
_ESCAPE = r"\\(?:[\\'\"abfnrtv]|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8})"
_WS = r"[ \t]*"
_NUMBER = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?"
_CONSTANT = r"True|False|None"


def _string(capture: bool) -> str:
    """Regex of a ``u'..'``, ``'..'``, ``u".."`` or ``".."`` literal; ``capture`` groups the bodies."""
    open_, close = ("(", ")") if capture else ("(?:", ")")
    # raw CR, LF and NUL cannot appear inside a Python string literal: lines holding them fall back
    single = rf"'{open_}[^'\\\r\n\x00]*(?:{_ESCAPE}[^'\\\r\n\x00]*)*{close}'"
    double = rf'"{open_}[^"\\\r\n\x00]*(?:{_ESCAPE}[^"\\\r\n\x00]*)*{close}"'
    return rf"[uU]?(?:{single}|{double})"


_STR = _string(capture=False)
_LIST = rf"\[{_WS}(?:{_STR}(?:{_WS},{_WS}{_STR})*(?:{_WS},)?)?{_WS}\]"
_VALUE = rf"(?:{_STR}|{_LIST}|{_NUMBER}|{_CONSTANT})"
# A line is read pair by pair, each match anchored where the previous one ended, so together they
# cover the whole line: "{" first pair, then ", " pair ..., then the closing "}" (a trailing comma
# is allowed, as in Python). Groups: key body (single-quoted, double-quoted), value token.
_FIRST_PAIR = re.compile(rf"{_WS}\{{{_WS}{_string(True)}{_WS}:{_WS}({_VALUE})")
_NEXT_PAIR = re.compile(rf"{_WS},{_WS}{_string(True)}{_WS}:{_WS}({_VALUE})")
_END = re.compile(rf"{_WS}(?:,{_WS})?\}}{_WS}")
_EMPTY = re.compile(rf"{_WS}\{{{_WS}\}}{_WS}")
_ITEM = re.compile(_string(capture=True))
_KEY = re.compile(rf"[{{,]{_WS}{_string(True)}{_WS}:")
_CONSTANTS = {"True": True, "False": False, "None": None}


def _unescape(body: str) -> str:
    """Decode the body of a string literal whose escapes ``_ESCAPE`` accepted, as Python would."""
    if "\\" not in body:
        return body
    # raw_unicode_escape writes characters above U+00FF as \u/\U escapes and leaves the rest
    # (backslashes included) as latin-1 bytes, which unicode_escape then decodes back
    return body.encode("raw_unicode_escape").decode("unicode_escape")


def _value(token: str) -> object:
    """The Python value of one token that ``_VALUE`` matched."""
    first = token[0]
    if first in "uU'\"":
        return _unescape(token[2:-1] if first in "uU" else token[1:-1])
    if first == "[":
        return [_unescape(single or double) for single, double in _ITEM.findall(token)]
    if first in "TFN":
        return _CONSTANTS[token]
    if "." in token or "e" in token or "E" in token:
        return float(token)
    return int(token)


def parse_literal_fast(line: str, keys: frozenset[str] | None = None) -> dict[str, object] | None:
    """Parse one dict-literal line without ``eval``, or return ``None`` when unsure.

    Args:
        line: one line, e.g. ``{u'id': u'761140', u'tags': [u'Indie'], u'price': 4.99}``.
        keys: decode only these keys (the others are still checked); ``None`` = all.

    Returns:
        The dict ``ast.literal_eval(line)`` gives (restricted to ``keys``), or ``None`` when the
        line is outside the fast grammar (the caller then uses ``ast.literal_eval``).
    """
    record: dict[str, object] = {}
    match = _FIRST_PAIR.match(line)
    if match is None:
        return record if _EMPTY.fullmatch(line) else None
    next_pair = _NEXT_PAIR.match  # this loop runs ~10 times per line, 7.8M lines
    try:
        while match is not None:
            key_single, key_double, token = match.groups()
            key = key_double if key_single is None else key_single
            if "\\" in key:
                key = _unescape(key)
            if keys is None or key in keys:
                record[key] = _value(token)
            end = match.end()
            match = next_pair(line, end)
    except (ValueError, UnicodeError):  # e.g. a \U escape beyond U+10FFFF, an int of over 4300 digits
        return None
    return record if _END.fullmatch(line, end) else None


class BadRecord(ValueError):
    """A line that is not a valid record; ``field`` names the last key read before the problem."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def _literal(line: str, keys: frozenset[str] | None) -> dict[str, object]:
    """The dict of one line (fast path, else ``ast.literal_eval``); raises :class:`BadRecord`."""
    record = parse_literal_fast(line, keys)
    if record is not None:
        return record
    try:
        value = ast.literal_eval(line)
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError) as exc:
        column = getattr(exc, "offset", None) or len(line)
        reason = getattr(exc, "msg", None) or str(exc)
        keys_before = [_unescape(m[2] if m[1] is None else m[1]) for m in _KEY.finditer(line, 0, column)]
        raise BadRecord(
            f"not a Python dict literal ({reason}, near column {column}); "
            "expected one {u'key': value, ...} per line",
            keys_before[-1] if keys_before else None,
        ) from None
    if not isinstance(value, dict):
        raise BadRecord(f"expected a dict literal {{u'key': value, ...}}, got a {type(value).__name__}")
    if keys is not None:
        value = {k: v for k, v in value.items() if k in keys}
    return value


def parse_literal(
    line: str, path: Path | str, number: int, keys: frozenset[str] | None = None
) -> dict[str, object]:
    """Parse one dict-literal line: the fast path, else :func:`ast.literal_eval`.

    Args:
        line: the line's text.
        path, number: file and 1-based line number, for the error message.
        keys: keep only these keys; ``None`` = all.

    Raises:
        DataFormatError: the line is not a Python dict literal (names file, line, and the last
            key read before the error when there is one).
    """
    try:
        return _literal(line, keys)
    except BadRecord as exc:
        raise DataFormatError(path, str(exc), line=number, field=exc.field) from None


def reference_parse(line: str) -> object | None:
    """The value the reference's "fix" gives for one line, or ``None`` when it drops the line.

    The reference (SPEC §1.3 Steam, §7.2 item 6) replaces ``u'`` with ``'``, then every ``'`` with
    ``"``, ``False``/``True`` with ``false``/``true`` (inside strings too), and calls ``json.loads``;
    lines that then fail are silently dropped. So any string holding an apostrophe, a ``\\x..`` or
    ``\\U........`` escape is lost with its line, a string ending in ``u`` loses that ``u`` (its
    closing ``u'`` is replaced), and ``True``/``False`` inside a string become lower case.
    """
    fixed = line.replace("u'", "'").replace("'", '"').replace("False", "false").replace("True", "true")
    try:
        return json.loads(fixed)
    except json.JSONDecodeError:
        return None


def read_record(line: str, keys: frozenset[str], reference: bool) -> dict[str, object] | None:
    """The record of one line (``keys`` only): exactly (:func:`_literal`), or as the reference reads
    it (:func:`reference_parse`; ``None`` when the reference drops the line). Raises :class:`BadRecord`."""
    if not reference:
        return _literal(line, keys)
    value = reference_parse(line)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadRecord(f"expected a dict literal {{u'key': value, ...}}, got a {type(value).__name__}")
    return {k: v for k, v in value.items() if k in keys}


UNPARSEABLE = "reference_unparseable_lines"
"""``removed`` key prefix (``<prefix>:<file name>``) of the lines ``steam_parse="reference"`` drops."""


def id_text(value: object) -> str | None:
    """An id given as a string or an integer, as a string; ``None`` for anything else."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None
