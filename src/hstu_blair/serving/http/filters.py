"""A request's item filter (a body's ``filter`` object, or a query parameter holding its JSON)
checked against the served attributes: a bad one is a 422 naming the field."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hstu_blair.serving.http.limits import printable, unprocessable
from hstu_blair.serving.http.schemas import FilterBody
from hstu_blair.serving.item_filter import ItemFilter, as_filter
from hstu_blair.serving.recommender import Recommender, ServingError, UnknownIdError

FILTER_PARAM = (
    'an item filter as JSON, e.g. {"where": {"in_stock": true, "price": {"max": 20}}, "exclude": ["id3"]}'
)
"""The description of a ``filter`` query parameter."""


def checked_filter(
    rec: Recommender, raw: FilterBody | str | None, loc: Sequence[str | int]
) -> ItemFilter | None:
    """The filter of a request, checked against ``rec``'s attributes (None: no filter).

    Raises:
        HTTPException: 422 at ``loc`` for a malformed filter, an unknown attribute, a condition of
            the wrong kind, or an ``allow`` list of unknown ids only.
    """
    source: Any = raw.as_json() if isinstance(raw, FilterBody) else raw
    try:
        parsed = as_filter(source)
        if parsed is not None:
            parsed.mask(rec.catalogue, rec.attributes)  # checks it, and caches the mask
        return parsed
    except UnknownIdError as exc:
        ids = [printable(i) for i in exc.ids[:100]]
        raise unprocessable((*loc, "allow"), f"filter.allow: {exc}", "unknown_id", ids=ids) from None
    except ServingError as exc:
        raise unprocessable(loc, str(exc)) from None
