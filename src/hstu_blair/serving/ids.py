"""The values serving takes from outside: the canonical form of new ids, storable text, timestamps.

Ids follow the one rule of :mod:`hstu_blair.data.ids` (Unicode NFC; no empty ids, no invisible,
bidirectional or control characters), so that an id prepared from a file and the same id sent to
the service are one id. Timestamps are integer seconds or ISO 8601 strings everywhere."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import Any

import numpy as np

from hstu_blair.data.ids import id_problem
from hstu_blair.data.sources.columns import parse_iso
from hstu_blair.serving.errors import ServingError

TIME_LIMIT = 2**40
"""Timestamps (seconds) must lie in [0, TIME_LIMIT] so time differences cannot overflow."""


def same_id(value: str) -> str:
    """``value`` in Unicode NFC: the form ids are stored and looked up in (``"Cafe\u0301"`` and
    ``"Caf\u00e9"`` are one id)."""
    return value if value.isascii() else unicodedata.normalize("NFC", value)


def check_new_id(value: str, what: str = "item id") -> str:
    """``value`` in Unicode NFC if it is in canonical form, the form every new id must have (a new
    item's id, and the id of a user first seen in events): a non-empty string without surrounding
    whitespace, without invisible, bidirectional or control characters (Unicode categories Cf and
    Cc, the rule of :func:`hstu_blair.data.ids.normalize_id`) and other than ``.`` and ``..``
    (which URLs cannot carry as a path segment). Such an id can be fetched as
    ``GET /items/{id}`` (``/users/{id}/recommendations``), percent-encoded.

    Args:
        value: the id.
        what: how messages name it (``item id``, ``events[3].user_id``).

    Raises:
        ServingError: not in canonical form (the message says why).
    """
    if not isinstance(value, str) or not value:
        raise ServingError(f"{what}: must be a non-empty string, got {value!r}")
    if value != value.strip():
        raise ServingError(f"{what} {value!r} has surrounding whitespace; send it without")
    value = same_id(value)
    problem = id_problem(value)
    if problem is not None:
        raise ServingError(f"{what}: {problem}")
    if value in (".", ".."):
        raise ServingError(f"{what} {value!r} cannot be a URL path segment")
    return value


def check_unicode(what: str, values: Sequence[str]) -> None:
    """Reject strings UTF-8 cannot encode (lone surrogates): they cannot be stored."""
    for value in values:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ServingError(f"{what} {value!r} is not valid Unicode (a lone surrogate)") from None


def check_time(value: Any, name: str) -> int:
    """``value`` as int seconds in [0, TIME_LIMIT]: an integer, or an ISO 8601 date or datetime
    string (UTC unless it carries an offset).

    Raises:
        ServingError: a boolean, a number in a string, another type, an unreadable date, or out of
            range (``name`` says which value).
    """
    if isinstance(value, str):
        seconds = parse_iso(value) if value.strip() and not value.strip().lstrip("+-").isdigit() else None
        if seconds is None:
            raise ServingError(
                f"{name} must be integer seconds or an ISO 8601 string such as 2024-05-01T12:00:00Z, "
                f"got the string {value!r}"
                + (" (send numbers unquoted)" if value.strip().lstrip("+-").isdigit() else "")
            )
        value = seconds
    elif isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ServingError(
            f"{name} must be integer seconds or an ISO 8601 string, got {type(value).__name__} {value!r}"
        )
    if not 0 <= int(value) <= TIME_LIMIT:
        raise ServingError(f"{name}={value} is outside [0, 2**40] seconds (negative times are refused)")
    return int(value)


def check_k(k: Any) -> int:
    """``k`` if it is a positive integer (a list length).

    Raises:
        ServingError: anything else.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ServingError(f"k must be a positive integer, got {k!r}")
    return k
