"""Cleaning of item metadata into one text per item (SPEC §1.4, with the reference's bugs as options).

Our default keeps non-ASCII characters (titles in other scripts, accents, symbols); the reference
replaces each of them with a space, available as ``ascii_only=True``.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping, Sequence

_TAG = re.compile(r"<[^>]*>")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def clean_text(value: str, ascii_only: bool = False) -> str:
    """HTML-unescape, strip tags, collapse whitespace; optionally map non-ASCII chars to spaces.

    The unescape, tag and ASCII passes only run when the text can need them (``&``, ``<``,
    non-ASCII characters), which makes cleaning millions of review texts several times faster.

    Args:
        value: raw metadata string.
        ascii_only: the reference behaviour (every non-ASCII character becomes a space).

    Returns:
        The cleaned string, stripped at both ends.
    """
    if "&" in value:
        value = html.unescape(value)
    if "<" in value:
        value = _TAG.sub(" ", value)
    if ascii_only and not value.isascii():
        value = _NON_ASCII.sub(" ", value)
    return " ".join(value.split())


def field_text(value: object, ascii_only: bool = False) -> str:
    """Text of one metadata field: strings cleaned, lists cleaned per element and joined with ", ".

    ``None``, NaN, empty strings and empty lists give ``""``; numbers give their ``str``.
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return clean_text(value, ascii_only)
    if isinstance(value, float) and value != value:  # NaN
        return ""
    if isinstance(value, Iterable) and not isinstance(value, (bytes, dict)):
        parts = [field_text(v, ascii_only) for v in value]
        return ", ".join(p for p in parts if p)
    if isinstance(value, dict):
        parts = [f"{k}: {field_text(v, ascii_only)}" for k, v in value.items()]
        return ", ".join(p for p in parts if not p.endswith(": "))
    return str(value)


def join_fields(parts: Iterable[str], sep: str = ". ") -> str:
    """Join the non-empty field texts of one item, avoiding doubled punctuation."""
    out = []
    for part in parts:
        part = part.strip()
        if not part:
            continue
        out.append(part[:-1] if sep.startswith(".") and part.endswith(".") else part)
    return sep.join(out)


def compose_item_text(
    fields: Mapping[str, object], text_columns: Sequence[str], ascii_only: bool = False
) -> str:
    """An item's text from its fields, as ``prepare`` makes it from an items table (generic source):
    the cleaned ``text_columns`` (lists joined with ", "), in that order, joined with ". ".

    Args:
        fields: the item's values by column name; absent, ``None`` and empty values are left out.
        text_columns: the columns joined into the text.
        ascii_only: replace non-ASCII characters with spaces (the reference's cleaning).
    """
    return join_fields(field_text(fields.get(c), ascii_only) for c in text_columns)


def compose_item_title(fields: Mapping[str, object], title_column: str | None) -> str:
    """An item's title from its fields, as ``prepare`` makes it: the cleaned ``title_column``
    (non-ASCII characters kept), ``""`` without one."""
    return field_text(fields.get(title_column)) if title_column else ""
