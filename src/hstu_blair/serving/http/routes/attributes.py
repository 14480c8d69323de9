"""``GET /attributes`` (what filters can select on) and ``PATCH /items/{item_id}`` (an item's
attributes; needs the token if one is set)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from hstu_blair.serving.http.context import ServingContext
from hstu_blair.serving.http.limits import unprocessable
from hstu_blair.serving.http.schemas import AttributesUpdate
from hstu_blair.serving.recommender import ServingError, StoreWriteError, UnknownIdError


def router(ctx: ServingContext) -> APIRouter:
    """The item-attribute routes over ``ctx``."""
    api = APIRouter(tags=["items"])

    @api.get("/attributes")
    async def attributes() -> dict[str, dict[str, Any]]:
        """Per item attribute: its ``kind`` (string, number, bool), how many ``items`` have it, and
        for strings the distinct ``values`` (up to 100, most frequent first, with counts), for
        numbers ``min`` and ``max``, for bools the ``true`` and ``false`` counts."""
        rec = ctx.recommender
        await ctx.offload(rec.sync)
        return await ctx.offload(rec.attributes.summary)

    @api.patch("/items/{item_id:path}", dependencies=ctx.auth.dependencies)
    async def update_attributes(item_id: str, body: AttributesUpdate) -> dict[str, Any]:
        """Merge attribute values into an item's (``{"attributes": {"in_stock": false}}``; null
        removes one), durably: every server process on the run's store filters by them from its
        next request. Answers the item as ``GET /items/{item_id}``. Needs the API key if one is set."""
        rec = ctx.recommender
        try:
            await ctx.offload(rec.update_item_attributes, item_id, body.attributes)
        except UnknownIdError:
            raise HTTPException(404, detail=f"unknown item id: {item_id!r}") from None
        except StoreWriteError as exc:
            raise HTTPException(503, detail=str(exc)) from None
        except ServingError as exc:
            raise unprocessable(("body", "attributes"), str(exc)) from None
        return rec.item(item_id)

    return api
