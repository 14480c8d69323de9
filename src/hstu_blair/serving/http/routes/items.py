"""``GET /items``, ``GET /items/{item_id}``, ``POST /items`` (needs the token if one is set) and
``GET /similar`` (item attributes: :mod:`.attributes`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi import Query as QueryParam
from fastapi.responses import JSONResponse

from hstu_blair.errors import HstuBlairError
from hstu_blair.serving.http.context import ServingContext
from hstu_blair.serving.http.filters import FILTER_PARAM, checked_filter
from hstu_blair.serving.http.limits import check_k, unprocessable
from hstu_blair.serving.http.routes.recommend import to_response
from hstu_blair.serving.http.schemas import NewItem, RecommendResponse
from hstu_blair.serving.recommender import (
    DuplicateItemError,
    Recommender,
    ServingError,
    StoreWriteError,
    fusions_for_new_items,
)


def _existing(rec: Recommender, body: NewItem) -> JSONResponse:
    """200 with the item when it is there with the same text and title (a retried add), else 409."""
    text, title = body.text, body.title
    if body.fields is not None:
        try:
            text, composed_title = rec.compose_item(body.fields)
        except ServingError as exc:
            raise unprocessable(("body", "fields"), str(exc)) from None
        title = title or composed_title
    assert text is not None
    if not rec.is_same_item(body.item_id, text, title):
        raise HTTPException(
            409, detail=f"item id {body.item_id!r} is already in the catalogue with another text or title"
        )
    return JSONResponse(rec.item(body.item_id), status_code=200)


def _refuse_id_only(rec: Recommender) -> None:
    """400 for an add to a run without a text path."""
    if not rec.can_add_items:
        raise HTTPException(
            400,
            detail=f"this run's model is ID-only (fusion {rec.fusion!r}): items cannot be added "
            f"at run time; serve a run trained with model.fusion = {fusions_for_new_items()}",
        )


def router(ctx: ServingContext) -> APIRouter:
    """The item routes over ``ctx``."""
    api = APIRouter(tags=["items"])

    @api.get("/items")
    async def search_items(
        query: str = QueryParam("", max_length=200), limit: int = QueryParam(20, ge=1, le=100)
    ) -> list[dict[str, str]]:
        """Items whose title (or item id) contains ``query``, case- and accent-insensitive
        (``creme brulee`` finds ``Crème brûlée``)."""
        return await ctx.offload(ctx.recommender.search_items, query, limit)

    @api.get("/items/{item_id:path}")
    async def get_item(item_id: str) -> dict[str, Any]:
        """One item: item id, title, text and attributes."""
        rec = ctx.recommender
        if not rec.has_item(item_id):
            raise HTTPException(404, detail=f"unknown item id: {item_id!r}")
        return rec.item(item_id)

    @api.post(
        "/items",
        status_code=201,
        dependencies=ctx.auth.dependencies,
        responses={200: {"description": "the same item (id, text, title) was added before: a retry"}},
    )
    async def add_item(body: NewItem) -> Any:
        """Add an item by its text, or by its ``fields`` (the catalogue's columns, composed into the
        text as ``prepare`` did: runs prepared from a generic items table); it is recommendable at
        once (text-fused runs only), and kept in
        the run directory (201 only once it is written durably). Repeating an add with the same id,
        text and title answers 200 with the item; the same id with another text 409. The id must
        be in canonical form (no surrounding whitespace, no control characters). Needs the API key
        if one is set."""
        rec = ctx.recommender
        _refuse_id_only(rec)
        if rec.has_item(body.item_id):
            return _existing(rec, body)
        try:
            return await ctx.offload(rec.add_item, body.item_id, body.text, body.title, body.fields)
        except DuplicateItemError:  # added by another process since the check above (now caught up)
            return _existing(rec, body)
        except StoreWriteError as exc:
            raise HTTPException(503, detail=str(exc)) from None
        except ServingError as exc:
            raise unprocessable(("body",), str(exc)) from None
        except (HstuBlairError, ImportError, OSError) as exc:  # the encoder cannot be loaded here
            raise HTTPException(503, detail=f"the text encoder is not available: {exc}") from None

    @api.get("/similar")
    async def similar(
        item_id: str,
        k: int = QueryParam(10, ge=1),
        filter: str | None = QueryParam(None, max_length=100_000, description=FILTER_PARAM),
    ) -> RecommendResponse:
        """Items whose vectors are closest (cosine) to ``item_id``'s (only items ``filter`` allows)."""
        check_k(ctx.limits, k, ("query",))
        rec = ctx.recommender
        if not rec.has_item(item_id):
            raise unprocessable(("query", "item_id"), f"unknown item id: {item_id!r}", "unknown_id")
        item_filter = await ctx.offload(checked_filter, rec, filter, ("query", "filter"))
        return to_response(await ctx.offload(rec.similar_items, item_id, k, item_filter), rec.version)

    return api
