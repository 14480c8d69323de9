"""``POST /recommend`` and ``POST /recommend/batch`` (each query may carry a ``filter``). A query by ``user_id`` reveals the user's
history: with a token set, it needs the read key or the API key (401 otherwise); a query by a
history of item ids stays open.

Limits are checked first (in the event loop, cheap), then the queries are prepared (ids mapped)
in a worker thread, answered through the micro-batcher (model call in a worker thread), and a
batch's response is built and serialised in a worker thread too: nothing that grows with the size
of a request runs in the event loop."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, ValidationError

from hstu_blair.serving.http.context import ServingContext
from hstu_blair.serving.http.filters import checked_filter
from hstu_blair.serving.http.limits import check_batch, check_count, check_query, printable, unprocessable
from hstu_blair.serving.http.schemas import (
    BatchRequest,
    BatchResponse,
    Item,
    RecommendRequest,
    RecommendResponse,
)
from hstu_blair.serving.recommender import (
    PreparedQuery,
    Query,
    Recommendations,
    Recommender,
    ServingError,
    UnknownIdError,
)


def to_response(result: Recommendations, version: int) -> RecommendResponse:
    """The response body of one query answered by model ``version``."""
    return RecommendResponse(
        items=[Item(item_id=r.item_id, score=r.score, title=r.title) for r in result],
        skipped=result.skipped,
        version=version,
    )


def prepare(recommender: Recommender, body: RecommendRequest, loc: tuple[str | int, ...]) -> PreparedQuery:
    """The prepared query, or a 422 naming the field (unknown ids are listed)."""
    item_filter = checked_filter(recommender, body.filter, (*loc, "filter"))
    query = Query(
        body.history,
        body.user_id,
        body.timestamps,
        body.query_time,
        body.k,
        body.exclude_seen,
        body.skip_unknown,
        item_filter,
    )
    try:
        return recommender.build_query(query)
    except UnknownIdError as exc:
        field = "user_id" if exc.kind == "user" else "history"
        ids = [printable(i) for i in exc.ids[:100]]
        raise unprocessable((*loc, field), str(exc), "unknown_id", ids=ids) from None
    except ServingError as exc:
        raise unprocessable(loc, str(exc)) from None


def prepare_all(recommender: Recommender, bodies: Sequence[RecommendRequest]) -> list[PreparedQuery]:
    return [prepare(recommender, body, ("body", "requests", i)) for i, body in enumerate(bodies)]


def parse_batch(raw: bytes) -> BatchRequest:
    """The batch body, or the 422 FastAPI would give (locations under ``body``).

    Parsed query by query: pydantic holds the GIL for the whole of one call, so one call over a
    body of megabytes would stall the event loop thread meanwhile; many small calls do not."""
    try:
        outer = _OuterBatch.model_validate_json(raw)
        queries = []
        for i, query in enumerate(outer.requests):
            try:
                queries.append(RecommendRequest.model_validate(query))
            except ValidationError as exc:
                raise _located(exc, ("body", "requests", i)) from None
    except ValidationError as exc:
        raise _located(exc, ("body",)) from None
    return BatchRequest.model_construct(requests=queries)


class _OuterBatch(BaseModel):
    """The batch body's outer shape; each query is validated on its own (see :func:`parse_batch`)."""

    model_config = ConfigDict(extra="forbid")
    requests: list[Any]


def _located(exc: ValidationError, loc: tuple[str | int, ...]) -> RequestValidationError:
    return RequestValidationError([{**e, "loc": (*loc, *e["loc"])} for e in exc.errors(include_url=False)])


BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    k: v
                    for k, v in BatchRequest.model_json_schema(
                        ref_template="#/components/schemas/{model}"
                    ).items()
                    if k != "$defs"
                }
            }
        },
    }
}
"""The batch body in OpenAPI (the route parses it itself, off the event loop)."""


def batch_json(results: list[Recommendations], version: int) -> bytes:
    """The ``BatchResponse`` JSON, serialised one result at a time (small calls: see :func:`parse_batch`)."""
    parts = [to_response(r, version).model_dump_json().encode() for r in results]
    return b'{"results":[' + b",".join(parts) + b"]}"


def router(ctx: ServingContext) -> APIRouter:
    """The recommendation routes over ``ctx``."""
    api = APIRouter(tags=["recommend"])
    limits = ctx.limits

    @api.post("/recommend", response_model=RecommendResponse)
    async def recommend(body: RecommendRequest, request: Request) -> RecommendResponse:
        """The best ``k`` items after a history of item ids (or a known user's history: with
        ``user_id``, needs the read key or the API key if one is set)."""
        if body.user_id is not None:
            ctx.check_read(request)
        check_query(limits, body.k, body.history)
        rec = ctx.recommender  # one model version for the whole request
        prepared = await ctx.offload(prepare, rec, body, ("body",))
        return to_response(await ctx.batcher.submit((rec, prepared)), rec.version)

    @api.post("/recommend/batch", response_model=BatchResponse, openapi_extra=BATCH_BODY)
    async def recommend_batch(request: Request) -> Response:
        """Several queries in one body (``{"requests": [<as /recommend>, ...]}``); answered together,
        each as ``/recommend``. The body is parsed in a worker thread: it can be megabytes."""
        body = await ctx.offload(parse_batch, await request.body())
        queries = body.requests
        if any(q.user_id is not None for q in queries):
            ctx.check_read(request)
        check_count(limits, len(queries))
        for i, query in enumerate(queries):
            check_query(limits, query.k, query.history, ("body", "requests", i))
        check_batch(limits, [q.k for q in queries], [q.history for q in queries])
        rec = ctx.recommender  # one model version for the whole request
        prepared = await ctx.offload(prepare_all, rec, queries)
        results = await ctx.batcher.submit_many([(rec, p) for p in prepared])
        return Response(await ctx.offload(batch_json, results, rec.version), media_type="application/json")

    return api
