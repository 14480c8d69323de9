"""The values serving takes from outside: the canonical form of new ids, storable text, timestamps."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import Any

import numpy as np

from hstu_blair.serving.errors import ServingError

TIME_LIMIT = 2**40
"""Timestamps (seconds) must lie in [-TIME_LIMIT, TIME_LIMIT] so time differences cannot overflow."""


def check_new_id(value: str, what: str = "item id") -> str:
    """``value`` if it is in canonical form, the form every new id must have (a new item's id, and
    the id of a user first seen in events): a non-empty string without surrounding whitespace,
    without control characters (Unicode category Cc: newlines, tabs, NUL, DEL, ...) and other than
    ``.`` and ``..`` (which URLs cannot carry as a path segment). Such an id can be fetched as
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
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise ServingError(f"{what} {value!r} holds a control character (newline, tab, NUL, ...)")
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
    """``value`` as int seconds in [-TIME_LIMIT, TIME_LIMIT].

    Raises:
        ServingError: not an integer, or out of range (``name`` says which value).
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ServingError(f"{name} must be an integer number of seconds, got {value!r}")
    if not -TIME_LIMIT <= int(value) <= TIME_LIMIT:
        raise ServingError(f"{name}={value} is outside [-2**40, 2**40] seconds")
    return int(value)


def check_k(k: Any) -> int:
    """``k`` if it is a positive integer (a list length).

    Raises:
        ServingError: anything else.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ServingError(f"k must be a positive integer, got {k!r}")
    return k
