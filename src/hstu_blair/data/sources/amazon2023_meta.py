"""Amazon Reviews 2023 item metadata (``meta_<Category>.jsonl``): the item text, ours and the
reference's, and the reader of the items that occur in the interactions."""

from __future__ import annotations

import html
import re
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl

from hstu_blair.data import schema
from hstu_blair.data.item_text import field_text, join_fields
from hstu_blair.data.options import PrepareOptions
from hstu_blair.data.sources.amazon2023_records import peek_asin, require_id
from hstu_blair.data.sources.bad_lines import BadLines
from hstu_blair.data.sources.files import numbered_lines
from hstu_blair.data.sources.json_lines import parse_json_line
from hstu_blair.errors import DataFormatError

_META_TEXT_FIELDS = ("title", "features", "categories", "description")


def clean_item_text(meta: dict[str, Any], ascii_only: bool = False) -> str:
    """Our item text: ``title. feature, feature. category, category. description`` (cleaned fields).

    Args:
        meta: one metadata object.
        ascii_only: replace non-ASCII characters with spaces (the reference's cleaning).

    Returns:
        The non-empty cleaned fields joined with ``". "``; ``""`` when all are empty.
    """
    return join_fields(field_text(meta.get(key), ascii_only) for key in _META_TEXT_FIELDS)


_REF_TAG = re.compile(r"<[^>]+>")  # the reference's pattern: spans newlines, leaves "<>"
_REF_SPACES = re.compile(r" {2,}")
_REF_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def _reference_clean(value: str | list[Any], ascii_only: bool) -> str:
    """The reference's ``clean_text`` (SPEC §1.4): join lists, unescape, strip, drop tags, collapse spaces."""
    text = ", ".join(str(v) for v in value) if isinstance(value, list) else value
    text = _REF_TAG.sub("", html.unescape(text).strip())
    text = _REF_SPACES.sub(" ", text.replace("\n", " ").replace("\t", " "))
    return _REF_NON_ASCII.sub(" ", text) if ascii_only else text  # after collapsing: doubles can remain


def _reference_field(value: Any, ascii_only: bool) -> str:
    """The reference's ``feature_process`` of one field (SPEC §1.4), trailing spaces included."""
    if isinstance(value, str):
        return _reference_clean(value, ascii_only) + " "
    if isinstance(value, list):
        if not value:
            return _reference_clean(value, ascii_only) + " "  # "" + " "
        return ", ".join(_reference_clean(str(v), ascii_only) for v in value) + ". "
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value) + ". "  # NaN -> "nan. "
    return " "  # None: not covered by the SPEC; treated like an empty string


def reference_item_text(meta: dict[str, Any], ascii_only: bool = True) -> str:
    """The reference's exact item text (``utils.clean_metadata``, SPEC §1.4).

    Concatenates ``feature_process`` of ``title, features, categories, description``: strings get a
    trailing space, non-empty lists become ``"a, b. "``, floats ``str(x) + ". "``, empty lists ``" "``.
    Differs from :func:`clean_item_text` (our default) in spacing, in keeping empty fields and in
    that tags are removed rather than replaced by a space.

    Args:
        meta: one metadata object.
        ascii_only: replace each non-ASCII character with a space, as the reference does
            (``PrepareOptions.reference()`` sets it).
    """
    return "".join(_reference_field(meta.get(key), ascii_only) for key in _META_TEXT_FIELDS)


def read_meta_jsonl(
    path: Path,
    needed: set[str],
    options: PrepareOptions,
    bad: BadLines,
    removed: Counter[str],
) -> tuple[pl.DataFrame, Counter[str]]:
    """Item table (``raw_item_id, title, text``) of the ``needed`` items from a metadata file.

    Lines are read one at a time. A line whose ``parent_asin`` (found by a byte search, without
    parsing) is not needed is skipped unparsed, so malformed lines of unused items go unreported;
    every needed line is parsed and validated. Repeated ``parent_asin`` keep the first line and are
    counted in ``removed["duplicate_meta_items"]``.

    Returns:
        ``(items, counts)``; ``counts`` has ``meta_lines``, ``meta_lines_skipped`` (items without
        interactions) and ``meta_items``.

    Raises:
        DataFormatError: malformed JSON or a line without ``parent_asin`` (file, line, field).
    """
    make_text = reference_item_text if options.text_style == "reference" else clean_item_text
    wanted = {asin.encode() for asin in needed}
    seen: set[str] = set()
    rows: dict[str, list[str]] = {schema.ITEM_ID: [], schema.TITLE: [], schema.TEXT: []}
    counts: Counter[str] = Counter(meta_lines=0, meta_lines_skipped=0)
    for number, line in numbered_lines(path):
        counts["meta_lines"] += 1
        peeked = peek_asin(line)
        if peeked is not None and peeked not in wanted:
            counts["meta_lines_skipped"] += 1
            continue
        try:
            obj = parse_json_line(path, number, line)
            asin = require_id(path, number, obj, "parent_asin")
        except DataFormatError as error:
            bad(error)
            continue
        if asin not in needed:
            counts["meta_lines_skipped"] += 1
            continue
        if asin in seen:
            removed["duplicate_meta_items"] += 1
            continue
        seen.add(asin)
        rows[schema.ITEM_ID].append(asin)
        rows[schema.TITLE].append(field_text(obj.get("title"), options.ascii_only))
        rows[schema.TEXT].append(make_text(obj, options.ascii_only))
    counts["meta_items"] = len(seen)
    return pl.DataFrame(rows, schema=schema.ITEMS_SCHEMA), counts
