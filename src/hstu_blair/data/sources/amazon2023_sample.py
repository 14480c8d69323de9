"""The third-party "amazon2023-mini-multicategory-sample": one object per user and category with
``history`` and ``heldout`` reviews that embed a ``product`` summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from hstu_blair.data import schema
from hstu_blair.data.item_text import field_text, join_fields
from hstu_blair.data.options import PrepareOptions
from hstu_blair.data.sources.amazon2023_records import (
    Rows,
    interaction_rows,
    require_id,
    require_ms,
    require_number,
    require_str,
    to_seconds,
)
from hstu_blair.data.sources.bad_lines import BadLines
from hstu_blair.data.sources.files import numbered_lines
from hstu_blair.data.sources.json_lines import parse_json_line
from hstu_blair.errors import DataFormatError


def _sample_record(
    path: Path, number: int, obj: dict[str, Any]
) -> tuple[str, str, list[tuple[str, int, float, Any]]]:
    """``(user_id, category, [(parent_asin, timestamp_ms, rating, review), ...])``, held-out review last."""
    user_id = require_id(path, number, obj, "user_id")
    category = require_str(path, number, obj, "category")
    history, heldout = obj.get("history"), obj.get("heldout")
    if not isinstance(history, list) or not all(isinstance(r, dict) for r in history):
        raise DataFormatError(path, "expected a list of review objects", line=number, field="history")
    if not isinstance(heldout, dict):
        raise DataFormatError(path, "expected a review object", line=number, field="heldout")
    named = [(f"history[{i}].", review) for i, review in enumerate(history)] + [("heldout.", heldout)]
    reviews = [
        (
            require_id(path, number, review, "parent_asin", where),
            require_ms(path, number, review, "timestamp_ms", where),
            require_number(path, number, review, "rating", where),
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
    inter = interaction_rows()
    texts = Rows(schema.REVIEWS_SCHEMA)
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
    return to_seconds(inter.frame()), item_table, texts.frame(), info
