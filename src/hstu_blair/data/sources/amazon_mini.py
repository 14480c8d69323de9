"""A third-party multi-category sample of Amazon Reviews 2023 (research, non-commercial) -> :class:`RawDataset`.

Published files: ``training.jsonl``, ``validation.jsonl``, ``test.jsonl`` (plain or ``.gz``), one JSON
object per line ``{user_id, category, history: [4 reviews], heldout: {review}}``; each review has
``parent_asin, rating, timestamp_ms, review_title, review_full, review_excerpt, product: {title,
brand, price, main_category}``.

Every line is one sequence of 5 interactions (the history, then the held-out review) of one user
in one category. The same ``user_id`` appears on several lines (different categories); each line
is kept as its own user ``<user_id>:<category>``, as the sample defines it (``info`` records the
number of distinct ``user_id``). All three files are read; the split is redone by ``prepare``'s
holdout. Timestamps: ``timestamp_ms`` floored to seconds (the milliseconds are kept in
``source_times``); ratings as given.

Item text: ``"<title>. Brand: <brand>. Category: <main_category>"`` (empty parts left out), from the
product object of the item's first review read; title = the product title. With ``with_reviews``
the reviews (``review_title. review_full``) form the reviews table.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl

from hstu_blair.data import schema
from hstu_blair.data.item_text import clean_text, field_text, join_fields
from hstu_blair.data.options import PrepareOptions
from hstu_blair.data.sources.base import BadLines, RawDataset, expand_inputs, read_bytes
from hstu_blair.errors import DataFormatError, HstuBlairError

FILES = ("training.jsonl", "validation.jsonl", "test.jsonl")
HISTORY = 4
"""Reviews in each line's ``history``."""


def _files(paths: list[Path], options: PrepareOptions) -> list[Path]:
    """The sample's JSONL files among ``paths`` (in the order of :data:`FILES`), or the one named."""
    if options.interactions_file is not None:
        return [Path(options.interactions_file)]
    found = {p.name.lower().removesuffix(".gz"): p for p in expand_inputs(paths)}
    files = [found[name] for name in FILES if name in found]
    if not files:
        where = ", ".join(map(str, paths)) or "(no inputs)"
        raise HstuBlairError(f"amazon2023-mini: none of {', '.join(FILES)} (plain or .gz) in {where}")
    return files


def _review(path: Path, loc: int, where: str, value: object) -> dict[str, object]:
    """Check one review object; raises naming the file, line and field (``history[2].timestamp_ms``)."""
    if not isinstance(value, dict):
        raise DataFormatError(
            path, f"expected a review object, found {type(value).__name__}", line=loc, field=where
        )
    asin = value.get("parent_asin")
    if not isinstance(asin, str) or not asin.strip():
        raise DataFormatError(
            path, f"expected a parent_asin string, found {asin!r}", line=loc, field=f"{where}.parent_asin"
        )
    stamp = value.get("timestamp_ms")
    if not isinstance(stamp, int) or isinstance(stamp, bool):
        raise DataFormatError(
            path, f"expected integer milliseconds, found {stamp!r}", line=loc, field=f"{where}.timestamp_ms"
        )
    rating = value.get("rating")
    if not isinstance(rating, (int, float)) or isinstance(rating, bool):
        raise DataFormatError(
            path, f"expected a numeric rating, found {rating!r}", line=loc, field=f"{where}.rating"
        )
    product = value.get("product")
    if product is not None and not isinstance(product, dict):
        raise DataFormatError(
            path,
            f"expected a product object, found {type(product).__name__}",
            line=loc,
            field=f"{where}.product",
        )
    return value


def _line_reviews(path: Path, loc: int, text: str) -> tuple[str, list[dict[str, object]]]:
    """(sequence user id, its 5 reviews) of one line."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataFormatError(path, f"invalid JSON ({exc.msg} at column {exc.colno})", line=loc) from None
    if not isinstance(record, dict):
        raise DataFormatError(path, f"expected a JSON object, found {type(record).__name__}", line=loc)
    user, category = record.get("user_id"), record.get("category")
    for name, value in (("user_id", user), ("category", category)):
        if not isinstance(value, str) or not value.strip():
            raise DataFormatError(path, f"expected a non-empty string, found {value!r}", line=loc, field=name)
    history = record.get("history")
    if not isinstance(history, list) or len(history) != HISTORY:
        raise DataFormatError(
            path, f"expected a list of {HISTORY} reviews, found {history!r:.60}", line=loc, field="history"
        )
    reviews = [_review(path, loc, f"history[{i}]", r) for i, r in enumerate(history)]
    reviews.append(_review(path, loc, "heldout", record.get("heldout")))
    return f"{user}:{category}", reviews


def product_text(product: dict[str, object], ascii_only: bool = False) -> str:
    """``"<title>. Brand: <brand>. Category: <main_category>"`` (empty parts left out)."""
    brand = field_text(product.get("brand"), ascii_only)
    category = field_text(product.get("main_category"), ascii_only)
    return join_fields(
        [
            field_text(product.get("title"), ascii_only),
            f"Brand: {brand}" if brand else "",
            f"Category: {category}" if category else "",
        ]
    )


def load_amazon_mini(paths: list[Path], options: PrepareOptions) -> RawDataset:
    """Read the multi-category sample (see the module docstring).

    Args:
        paths: the folder of the three files, or the files.
        options: ``interactions_file`` reads one file only; ``skip_bad_lines``, ``ascii_only``
            and ``with_reviews`` apply.

    Raises:
        DataFormatError: invalid JSON, or a missing or mistyped field, naming the file, line and field.
    """
    files = _files([Path(p) for p in paths], options)
    removed: Counter[str] = Counter()
    bad = BadLines(options.skip_bad_lines, removed)
    users: list[str] = []
    items: list[str] = []
    millis: list[int] = []
    ratings: list[float] = []
    review_texts: list[str] = []
    products: dict[str, tuple[str, str]] = {}
    seen: dict[str, str] = {}
    per_file: dict[str, int] = {}
    for path in files:
        lines = read_bytes(path).decode("utf-8", "replace").split("\n")
        count = 0
        for loc, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            try:
                user, reviews = _line_reviews(path, loc, text)
                if user in seen:
                    raise DataFormatError(
                        path, f"sequence {user!r} repeated (first in {seen[user]})", line=loc, field="user_id"
                    )
            except DataFormatError as exc:
                bad(exc)
                continue
            seen[user] = f"{path.name}:{loc}"
            count += 1
            for review in reviews:
                asin = str(review["parent_asin"]).strip()
                users.append(user)
                items.append(asin)
                millis.append(int(review["timestamp_ms"]))  # type: ignore[call-overload]
                ratings.append(float(review["rating"]))  # type: ignore[arg-type]
                review_texts.append(
                    join_fields(
                        [
                            clean_text(str(review.get("review_title") or "")),
                            clean_text(str(review.get("review_full") or "")),
                        ]
                    )
                )
                product = review.get("product")
                if asin not in products and isinstance(product, dict):
                    products[asin] = (
                        field_text(product.get("title"), options.ascii_only),
                        product_text(product, options.ascii_only),
                    )
        per_file[path.name] = count
    source_times = np.asarray(millis, dtype=np.int64)
    interactions = pl.DataFrame(
        {
            schema.USER_ID: pl.Series(users, dtype=pl.String),
            schema.ITEM_ID: pl.Series(items, dtype=pl.String),
            schema.TIMESTAMP: pl.Series(source_times // 1000, dtype=pl.Int64),
            schema.RATING: pl.Series(ratings, dtype=pl.Float32),
        }
    )
    catalogue = pl.DataFrame(
        {
            schema.ITEM_ID: list(products),
            schema.TITLE: [t for t, _ in products.values()],
            schema.TEXT: [x for _, x in products.values()],
        },
        schema={schema.ITEM_ID: pl.String, schema.TITLE: pl.String, schema.TEXT: pl.String},
    )
    reviews = None
    if options.with_reviews:
        reviews = interactions.select(schema.USER_ID, schema.ITEM_ID).with_columns(
            pl.Series(schema.TEXT, review_texts, dtype=pl.String)
        )
    info: dict[str, object] = {
        "sequence": "one line = one (user_id, category) sequence of 4 history reviews + the held-out one",
        "sequences_per_file": per_file,
        "distinct_user_ids": len({u.rsplit(":", 1)[0] for u in seen}),
        "timestamp_unit": "ms (floored to seconds; source_times keeps ms)",
    }
    return RawDataset(
        name="amazon2023-mini",
        source="amazon2023-mini",
        interactions=interactions,
        items=catalogue,
        reviews=reviews,
        files=files,
        removed=removed,
        info=info,
        source_times=source_times,
    )
