"""Amazon Reviews 2023 (McAuley Lab): 5-core rating CSVs, raw review JSONL, item metadata JSONL.

Published files, recognised by name (plain or ``.gz``):

- ``<Category>.csv``: the 5-core ``rating_only`` benchmark, header ``user_id,parent_asin,rating,timestamp``,
  timestamps in milliseconds. This is the paper's input.
- ``<Category>.jsonl``: raw reviews, one JSON object per line (``rating, title, text, images, asin,
  parent_asin, user_id, timestamp, helpful_vote, verified_purchase``).
- ``meta_<Category>.jsonl``: item metadata, one JSON object per line (``title, features[],
  description[], categories[], ..., parent_asin``).

Also read, detected by content (first object has ``history``): the third-party
"amazon2023-mini-multicategory-sample" (one object per user and category with ``history`` and
``heldout`` reviews that embed a ``product`` summary).

Interactions come from the rating CSV when there is one, else from the raw reviews; the review text
table (title + text) comes from the raw reviews when ``options.with_reviews``. Metadata lines are read
one at a time, and only items that occur in the interactions are parsed and cleaned.
"""

from __future__ import annotations

import csv
import html
import io
import json
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from hstu_blair.data import schema
from hstu_blair.data.ids import normalize_id, normalize_ids
from hstu_blair.data.item_text import field_text, join_fields
from hstu_blair.data.options import PrepareOptions
from hstu_blair.data.sources.bad_lines import BadLines
from hstu_blair.data.sources.base import RawDataset, expand_inputs
from hstu_blair.data.sources.files import first_line, numbered_lines, read_bytes
from hstu_blair.data.sources.json_lines import parse_json_line
from hstu_blair.errors import DataFormatError, HstuBlairError

log = logging.getLogger(__name__)

CSV_COLUMNS = ("user_id", "parent_asin", "rating", "timestamp")
"""Header of the 5-core ``rating_only`` CSV files."""

SAMPLE_NAME = "amazon2023-mini-sample"
_META_TEXT_FIELDS = ("title", "features", "categories", "description")
_ASIN_KEYS = (b'"parent_asin": "', b'"parent_asin":"')


# ---- small helpers ---------------------------------------------------------------------------


_CSV_SUFFIXES = (".csv", ".csv.gz")
_JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz")


def _is_csv(path: Path) -> bool:
    return path.name.lower().endswith(_CSV_SUFFIXES)


def _is_jsonl(path: Path) -> bool:
    return path.name.lower().endswith(_JSONL_SUFFIXES)


def _category(path: Path) -> str:
    """The category in a published file name: ``meta_Video_Games.jsonl.gz`` -> ``Video_Games``."""
    name = path.name
    for suffix in sorted(_CSV_SUFFIXES + _JSONL_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name[len("meta_") :] if name.lower().startswith("meta_") else name


def _is_sample(path: Path) -> bool:
    """True when the file's first object has ``history`` (the third-party mini sample)."""
    try:
        first = json.loads(first_line(path).decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(first, dict) and "history" in first


def _require_str(path: Path, number: int, obj: dict[str, Any], key: str, where: str = "") -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        found = "missing" if key not in obj else f"found {value!r}"
        raise DataFormatError(path, f"expected a non-empty string, {found}", line=number, field=where + key)
    return value


def _require_id(path: Path, number: int, obj: dict[str, Any], key: str, where: str = "") -> str:
    """A user or item id (:func:`~hstu_blair.data.ids.normalize_id`)."""
    value = _require_str(path, number, obj, key, where)
    return normalize_id(value, path=path, line=number, field=where + key)


def _require_number(path: Path, number: int, obj: dict[str, Any], key: str, where: str = "") -> float:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        found = "missing" if key not in obj else f"found {value!r}"
        raise DataFormatError(path, f"expected a number, {found}", line=number, field=where + key)
    return float(value)


def _require_ms(path: Path, number: int, obj: dict[str, Any], key: str, where: str = "") -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        found = "missing" if key not in obj else f"found {value!r}"
        raise DataFormatError(
            path, f"expected an integer Unix time in milliseconds, {found}", line=number, field=where + key
        )
    return value


class _Rows:
    """Rows gathered in Python lists and moved into polars every ``chunk`` rows (bounded memory)."""

    def __init__(self, columns: dict[str, pl.DataType], chunk: int = 200_000) -> None:
        self.schema = columns
        self.chunk = chunk
        self.columns: list[list[Any]] = [[] for _ in columns]
        self.frames: list[pl.DataFrame] = []

    def append(self, *values: Any) -> None:
        for column, value in zip(self.columns, values):
            column.append(value)
        if len(self.columns[0]) >= self.chunk:
            self._flush()

    def _flush(self) -> None:
        self.frames.append(pl.DataFrame(dict(zip(self.schema, self.columns)), schema=self.schema))
        self.columns = [[] for _ in self.schema]

    def frame(self) -> pl.DataFrame:
        self._flush()
        return pl.concat(self.frames, rechunk=True)


def _interaction_rows() -> _Rows:
    """Accumulator of ``(user, item, timestamp in ms, rating)``; see :func:`_to_seconds`."""
    return _Rows(schema.INTERACTIONS_SCHEMA)


def _to_seconds(interactions: pl.DataFrame) -> pl.DataFrame:
    return interactions.with_columns(pl.col(schema.TIMESTAMP) // 1000)  # ms -> s, floor


# ---- item text ---------------------------------------------------------------------------------


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


# ---- rating CSV ----------------------------------------------------------------------------------


def _csv_header(path: Path, data: bytes) -> list[str]:
    """The header names of line 1; undecodable bytes or a missing column raise naming it."""
    first = data.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        names = next(csv.reader([first.decode("utf-8-sig")]), [])
    except UnicodeDecodeError as exc:
        raise DataFormatError(
            path, f"header is not valid UTF-8 text ({exc.reason} at byte {exc.start})", line=1
        ) from None
    names = [n.strip() for n in names]
    for column in CSV_COLUMNS:
        if column not in names:
            raise DataFormatError(
                path,
                f"header lacks column {column!r}; expected {','.join(CSV_COLUMNS)}, found {','.join(names)!r}",
                line=1,
                field=column,
            )
    return names


def _parse_csv_row(path: Path, number: int, raw: bytes, header: list[str]) -> tuple[str, str, int, float]:
    """``(user, item, timestamp_ms, rating)`` of one data line; any problem names the line and field."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        cells = raw.decode("utf-8", errors="replace").split(",")
        where = next((name for name, cell in zip(header, cells) if "\ufffd" in cell), None)
        raise DataFormatError(
            path, f"not valid UTF-8 text ({exc.reason} at byte {exc.start})", number, where
        ) from None
    cells = next(csv.reader([line.rstrip("\r\n")]))
    if len(cells) != len(header):
        raise DataFormatError(
            path, f"expected {len(header)} comma-separated fields, found {len(cells)}", number
        )
    row = dict(zip(header, cells))
    user = normalize_id(row["user_id"], path=path, line=number, field="user_id")
    item = normalize_id(row["parent_asin"], path=path, line=number, field="parent_asin")
    try:
        rating = float(row["rating"])
    except ValueError:
        raise DataFormatError(path, f"expected a number, found {row['rating']!r}", number, "rating") from None
    try:
        stamp = int(row["timestamp"])
    except ValueError:
        msg = f"expected an integer Unix time in milliseconds, found {row['timestamp']!r}"
        raise DataFormatError(path, msg, number, "timestamp") from None
    return user, item, stamp, rating


def _scan_ratings_csv(path: Path, header: list[str], bad: BadLines) -> pl.DataFrame:
    """Line-by-line reading of a rating CSV: exact line numbers for every bad row (the slow path)."""
    rows = _interaction_rows()
    for number, raw in numbered_lines(path):
        if number == 1:
            continue
        try:
            rows.append(*_parse_csv_row(path, number, raw, header))
        except DataFormatError as error:
            bad(error)
    return rows.frame()


def read_ratings_csv(path: Path, bad: BadLines) -> pl.DataFrame:
    """Read a 5-core ``rating_only`` CSV into the raw interaction table (timestamps ms -> s).

    Raises:
        DataFormatError: missing header column, or a bad row (file, line, field) unless skipping.
    """
    return _to_seconds(read_ratings_csv_ms(path, bad))


def read_ratings_csv_ms(path: Path, bad: BadLines) -> pl.DataFrame:
    """Read a 5-core ``rating_only`` CSV into the raw interaction table, timestamps in milliseconds.

    Polars reads the file; if any row fails to parse or convert, the file is re-read line by line
    so that the error (or, with ``skip_bad_lines``, each counted row) names its exact line.

    Raises:
        DataFormatError: missing header column, or a bad row (file, line, field) unless skipping.
    """
    data = read_bytes(path)
    header = _csv_header(path, data)
    try:
        df = pl.read_csv(io.BytesIO(data), infer_schema=False, has_header=True, columns=list(CSV_COLUMNS))
    except pl.exceptions.PolarsError:
        return _scan_ratings_csv(path, header, bad)
    df = df.filter(~pl.all_horizontal(pl.all().is_null()))  # blank lines
    out = df.select(
        pl.col("user_id").map_batches(normalize_ids, return_dtype=pl.String).alias(schema.USER_ID),
        pl.col("parent_asin").map_batches(normalize_ids, return_dtype=pl.String).alias(schema.ITEM_ID),
        pl.col("timestamp").str.strip_chars().cast(pl.Int64, strict=False).alias(schema.TIMESTAMP),
        pl.col("rating").str.strip_chars().cast(pl.Float32, strict=False).alias(schema.RATING),
    )
    invalid = out.select(pl.any_horizontal(pl.all().is_null())).to_series()
    if invalid.any():
        return _scan_ratings_csv(path, header, bad)
    return out


# ---- raw reviews JSONL -----------------------------------------------------------------------------


def _parse_review(
    path: Path, number: int, line: bytes, with_event: bool
) -> tuple[dict[str, Any], str, str, tuple[int, float] | None]:
    """(the review object, user id, item id, and with ``with_event`` its (timestamp in ms, rating))."""
    obj = parse_json_line(path, number, line)
    user = _require_id(path, number, obj, "user_id")
    asin = _require_id(path, number, obj, "parent_asin")
    if not with_event:
        return obj, user, asin, None
    event = (_require_ms(path, number, obj, "timestamp"), _require_number(path, number, obj, "rating"))
    return obj, user, asin, event


def read_reviews_jsonl(
    path: Path,
    bad: BadLines,
    *,
    interactions: bool,
    reviews: bool,
    items: set[str] | None = None,
    ascii_only: bool = False,
) -> tuple[pl.DataFrame | None, pl.DataFrame | None, Counter[str]]:
    """Read a raw review file: interactions and/or the (user, item, title + text) review table.

    Args:
        path: ``<Category>.jsonl`` (plain or gzip).
        bad: raises on a bad line, or counts it.
        interactions: build the interaction table (user_id, parent_asin, rating, timestamp in ms).
        reviews: build the review text table.
        items: keep only reviews of these items (the interactions' items); ``None`` keeps all.
        ascii_only: replace non-ASCII characters in review text with spaces.

    Returns:
        ``(interactions or None, reviews or None, counts)``; ``counts`` has ``reviews_read`` and
        ``reviews_of_other_items``.
    """
    inter = _interaction_rows()
    texts = _Rows(schema.REVIEWS_SCHEMA)
    wanted = None if items is None else {asin.encode() for asin in items}
    counts: Counter[str] = Counter(reviews_read=0, reviews_of_other_items=0) if reviews else Counter()
    for number, line in numbered_lines(path):
        if not interactions and wanted is not None:
            peeked = _peek_asin(line)
            if peeked is not None and peeked not in wanted:
                counts["reviews_read"] += 1
                counts["reviews_of_other_items"] += 1
                continue
        try:
            obj, user, asin, event = _parse_review(path, number, line, interactions)
        except DataFormatError as error:
            bad(error)
            continue
        if event is not None:
            inter.append(user, asin, *event)
        if reviews:
            counts["reviews_read"] += 1
            if items is not None and asin not in items:
                counts["reviews_of_other_items"] += 1
                continue
            title, body = (
                field_text(obj.get("title"), ascii_only),
                field_text(obj.get("text"), ascii_only),
            )
            texts.append(user, asin, join_fields((title, body)))
    return (
        _to_seconds(inter.frame()) if interactions else None,
        texts.frame() if reviews else None,
        counts,
    )


# ---- metadata JSONL ------------------------------------------------------------------------------


def _peek_asin(line: bytes) -> bytes | None:
    """The top-level ``parent_asin`` value found by a byte search (last occurrence), or ``None``."""
    for key in _ASIN_KEYS:
        start = line.rfind(key)
        if start >= 0:
            start += len(key)
            end = line.find(b'"', start)
            return line[start:end] if end > start else None
    return None


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
        peeked = _peek_asin(line)
        if peeked is not None and peeked not in wanted:
            counts["meta_lines_skipped"] += 1
            continue
        try:
            obj = parse_json_line(path, number, line)
            asin = _require_id(path, number, obj, "parent_asin")
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


# ---- the third-party mini sample -------------------------------------------------------------------


def _sample_record(
    path: Path, number: int, obj: dict[str, Any]
) -> tuple[str, str, list[tuple[str, int, float, Any]]]:
    """``(user_id, category, [(parent_asin, timestamp_ms, rating, review), ...])``, held-out review last."""
    user_id = _require_id(path, number, obj, "user_id")
    category = _require_str(path, number, obj, "category")
    history, heldout = obj.get("history"), obj.get("heldout")
    if not isinstance(history, list) or not all(isinstance(r, dict) for r in history):
        raise DataFormatError(path, "expected a list of review objects", line=number, field="history")
    if not isinstance(heldout, dict):
        raise DataFormatError(path, "expected a review object", line=number, field="heldout")
    named = [(f"history[{i}].", review) for i, review in enumerate(history)] + [("heldout.", heldout)]
    reviews = [
        (
            _require_id(path, number, review, "parent_asin", where),
            _require_ms(path, number, review, "timestamp_ms", where),
            _require_number(path, number, review, "rating", where),
            review,
        )
        for where, review in named
    ]
    return user_id, category, reviews


def read_sample(
    paths: list[Path], options: PrepareOptions, bad: BadLines
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, dict[str, object]]:
    """Interactions, items and reviews of the third-party mini sample (``{training,validation,test}.jsonl.gz``).

    Each object is one user within one category: its ``history`` reviews then its ``heldout`` review
    become interactions of user ``"<user_id>/<category>"`` (the sample's unit: the same person may
    appear in several categories). Item text is the product's title, brand and main category (first
    occurrence; ``text_style`` does not apply); review text is ``review_title`` + ``review_full``.

    Returns:
        ``(interactions, items, reviews, info)``; ``info`` counts records, distinct ``user_id``,
        categories and the items seen in histories.
    """
    inter = _interaction_rows()
    texts = _Rows(schema.REVIEWS_SCHEMA)
    items: dict[str, tuple[str, str]] = {}
    records, user_ids, categories, history_items = 0, set(), set(), set()
    for path in paths:
        for number, line in numbered_lines(path):
            try:
                user_id, category, reviews = _sample_record(path, number, parse_json_line(path, number, line))
            except DataFormatError as error:
                bad(error)
                continue
            records += 1
            user_ids.add(user_id)
            categories.add(category)
            history_items.update(asin for asin, *_ in reviews[:-1])
            user = f"{user_id}/{category}"
            for asin, stamp, rating, review in reviews:
                inter.append(user, asin, stamp, rating)
                if asin not in items:
                    product = review.get("product") if isinstance(review.get("product"), dict) else {}
                    parts = [
                        field_text(product.get(k), options.ascii_only)
                        for k in ("title", "brand", "main_category")
                    ]
                    items[asin] = (parts[0], join_fields(parts))
                text = (
                    field_text(review.get(k), options.ascii_only) for k in ("review_title", "review_full")
                )
                texts.append(user, asin, join_fields(text))
    item_table = pl.DataFrame(
        {
            schema.ITEM_ID: list(items),
            schema.TITLE: [t for t, _ in items.values()],
            schema.TEXT: [x for _, x in items.values()],
        },
        schema=schema.ITEMS_SCHEMA,
    )
    info: dict[str, object] = {
        "records": records,
        "distinct_user_ids": len(user_ids),
        "categories": len(categories),
        "history_items": len(history_items),
        "user_key": "user_id/category",
    }
    return _to_seconds(inter.frame()), item_table, texts.frame(), info


# ---- file recognition and the loader --------------------------------------------------------------


@dataclass
class AmazonFiles:
    """The input files of one load, by role."""

    ratings: Path | None = None
    reviews: Path | None = None
    meta: Path | None = None
    sample: list[Path] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)


def _kind(path: Path) -> str:
    """``ratings``, ``meta``, ``sample``, ``reviews`` or ``ignored``, by published name then content."""
    if _is_csv(path):
        return "ratings"
    if not _is_jsonl(path):
        return "ignored"
    if path.name.lower().startswith("meta_"):
        return "meta"
    return "sample" if _is_sample(path) else "reviews"


def _sniff(path: Path) -> str:
    """``ratings``, ``sample`` or ``reviews`` of an interaction file named by the user, by content."""
    if not first_line(path).lstrip().startswith(b"{"):
        return "ratings"
    return "sample" if _is_sample(path) else "reviews"


def find_amazon_files(paths: list[Path], options: PrepareOptions) -> AmazonFiles:
    """Sort the inputs into roles; ``options.*_file`` override recognition by name.

    Raises:
        HstuBlairError: two files claim the same role (e.g. two categories' rating CSVs).
    """
    found: dict[str, list[Path]] = {"ratings": [], "reviews": [], "meta": [], "sample": [], "ignored": []}
    for path in expand_inputs(paths):
        found[_kind(path)].append(path)
    for role in ("ratings", "reviews", "meta"):
        if len(found[role]) > 1:
            names = ", ".join(p.name for p in found[role])
            raise HstuBlairError(
                f"several Amazon {role} files ({names}); pass one category's files or set options.interactions_file"
                " / items_file / reviews_file"
            )
    files = AmazonFiles(
        ratings=next(iter(found["ratings"]), None),
        reviews=next(iter(found["reviews"]), None),
        meta=next(iter(found["meta"]), None),
        sample=found["sample"],
        ignored=found["ignored"],
    )
    if options.interactions_file is not None:
        path = Path(options.interactions_file)
        kind = _sniff(path)
        if kind == "ratings":
            files.ratings = path
        elif kind == "sample":
            files.sample, files.ratings = [path], None
        else:
            files.reviews, files.ratings = path, None
    if options.items_file is not None:
        files.meta = Path(options.items_file)
    if options.reviews_file is not None:
        files.reviews = Path(options.reviews_file)
    return files


def _load_sample(
    files: AmazonFiles, options: PrepareOptions, bad: BadLines, info: dict[str, object]
) -> RawDataset:
    """The third-party mini sample (it cannot be mixed with the published files)."""
    if files.ratings or files.meta or files.reviews:
        raise HstuBlairError(
            "the mini sample cannot be mixed with published Amazon files; pass them separately"
        )
    interactions, items, reviews, sample_info = read_sample(files.sample, options, bad)
    info.update(variant="mini-sample", has_metadata=True, **sample_info)
    return RawDataset(
        name=options.name or SAMPLE_NAME,
        source="amazon2023",
        interactions=interactions,
        items=items,
        reviews=reviews if options.with_reviews else None,
        files=list(files.sample),
        removed=bad.removed,
        bad_lines=bad.records,
        info=info,
    )


def _read_interactions(
    files: AmazonFiles, options: PrepareOptions, bad: BadLines, info: dict[str, object]
) -> tuple[pl.DataFrame, pl.DataFrame | None, np.ndarray | None]:
    """(interactions in seconds, reviews read along or ``None``, the rating CSV's milliseconds or
    ``None``) from the rating CSV when there is one, else from the raw reviews."""
    if files.ratings is not None:
        interactions_ms = read_ratings_csv_ms(files.ratings, bad)
        if options.drop_first_data_row and interactions_ms.height:
            interactions_ms = interactions_ms.slice(1)  # the reference's read_csv(header=1) bug
            bad.removed["first_data_row"] += 1
        info["variant"] = "5core-rating-csv"
        return _to_seconds(interactions_ms), None, interactions_ms[schema.TIMESTAMP].to_numpy()
    if options.drop_first_data_row:
        log.warning("amazon2023: drop_first_data_row applies to a rating CSV only; nothing dropped")
    assert files.reviews is not None
    interactions, reviews, counts = read_reviews_jsonl(
        files.reviews, bad, interactions=True, reviews=options.with_reviews, ascii_only=options.ascii_only
    )
    assert interactions is not None
    info["variant"] = "raw-reviews"
    info.update(counts)
    return interactions, reviews, None


def _read_metadata(
    files: AmazonFiles, needed: set[str], options: PrepareOptions, bad: BadLines, info: dict[str, object]
) -> pl.DataFrame | None:
    """The items of ``needed`` from ``meta_<Category>.jsonl``, or ``None`` without that file."""
    info["has_metadata"] = files.meta is not None
    if files.meta is None:
        log.warning("amazon2023: no metadata file (meta_<Category>.jsonl) given; items have no text")
        return None
    items, counts = read_meta_jsonl(files.meta, needed, options, bad, bad.removed)
    info.update(counts)
    info["items_without_metadata"] = len(needed) - items.height
    return items


def load_amazon2023(paths: list[Path], options: PrepareOptions) -> RawDataset:
    """Read Amazon Reviews 2023 files into canonical raw tables (no filtering).

    Args:
        paths: files and/or directories holding ``<Category>.csv``, ``<Category>.jsonl``,
            ``meta_<Category>.jsonl`` (plain or ``.gz``), or the mini sample's files.
        options: ``skip_bad_lines``, ``text_style``, ``ascii_only``, ``with_reviews``, ``name``,
            ``drop_first_data_row`` and the ``*_file`` overrides are used here; filtering happens
            in ``prepare``.

    Returns:
        The raw dataset: timestamps in seconds (the files hold milliseconds; from a rating CSV,
        ``source_times`` keeps them), ``items`` from the metadata (``None`` without a metadata
        file), ``reviews`` when asked for and available. With ``drop_first_data_row`` the rating
        CSV's first data row is left out and counted as ``removed["first_data_row"]``.

    Raises:
        DataFormatError: a file does not match its published format (file, line, field).
        HstuBlairError: no interaction file among the inputs, or ambiguous inputs.
    """
    files = find_amazon_files(paths, options)
    bad = BadLines(options.skip_bad_lines, Counter())
    info: dict[str, object] = {"source_timestamp_unit": "ms", "text_style": options.text_style}
    if files.ignored:
        info["ignored_files"] = [p.name for p in files.ignored]
        log.info("amazon2023: ignoring unrecognised files %s", info["ignored_files"])
    if files.sample:
        return _load_sample(files, options, bad, info)
    source = files.ratings or files.reviews
    if source is None:
        given = ", ".join(p.name for p in expand_inputs(paths)) or "none"
        raise HstuBlairError(
            f"no Amazon Reviews 2023 interaction file among the inputs ({given}); expected <Category>.csv "
            "(5-core rating_only), <Category>.jsonl (raw reviews) or the mini sample"
        )
    interactions, reviews, source_times = _read_interactions(files, options, bad, info)
    read_files = [source]
    needed = set(interactions[schema.ITEM_ID].unique().to_list())
    if files.ratings is not None and files.reviews is not None and options.with_reviews:
        _, reviews, counts = read_reviews_jsonl(
            files.reviews, bad, interactions=False, reviews=True, items=needed, ascii_only=options.ascii_only
        )
        info.update(counts)
        read_files.append(files.reviews)
    items = _read_metadata(files, needed, options, bad, info)
    read_files += [files.meta] if files.meta is not None else []
    return RawDataset(
        name=options.name or _category(source),
        source="amazon2023",
        interactions=interactions,
        items=items,
        reviews=reviews,
        files=read_files,
        removed=bad.removed,
        bad_lines=bad.records,
        info=info,
        source_times=source_times,
    )
