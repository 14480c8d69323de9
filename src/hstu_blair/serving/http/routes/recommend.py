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
    ReasonItem,
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


def to_items(result: Recommendations, explain: bool = False) -> list[Item]:
    """The response items; each with its ``reasons`` when ``explain`` (otherwise the field is left
    out of the JSON: the routes drop ``None`` fields)."""
    return [
        Item(
            item_id=r.item_id,
            score=r.score,
            title=r.title,
            reasons=[ReasonItem(item_id=x.item_id, title=x.title, weight=x.weight) for x in r.reasons]
            if explain
            else None,
        )
        for r in result
    ]


def to_response(result: Recommendations, version: int, explain: bool = False) -> RecommendResponse:
    """The response body of one query answered by model ``version``."""
    return RecommendResponse(items=to_items(result, explain), skipped=result.skipped, version=version)


def explain_some(
    rec: Recommender,
    prepared: Sequence[PreparedQuery],
    results: Sequence[Recommendations],
    explain: Sequence[bool],
) -> list[Recommendations]:
    """``results`` with reasons for the queries that asked (one model call for them all)."""
    asked = [i for i, e in enumerate(explain) if e]
    out = list(results)
    if asked:
        for i, result in zip(asked, rec.explain([prepared[i] for i in asked], [results[i] for i in asked])):
            out[i] = result
    return out


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


def batch_json(results: list[Recommendations], version: int, explain: Sequence[bool] = ()) -> bytes:
    """The ``BatchResponse`` JSON, serialised one result at a time (small calls: see :func:`parse_batch`)."""
    asked = list(explain) or [False] * len(results)
    parts = [
        to_response(r, version, e).model_dump_json(exclude_none=True).encode() for r, e in zip(results, asked)
    ]
    return b'{"results":[' + b",".join(parts) + b"]}"


def router(ctx: ServingContext) -> APIRouter:
    """The recommendation routes over ``ctx``."""
    api = APIRouter(tags=["recommend"])
    limits = ctx.limits

    @api.post("/recommend", response_model=RecommendResponse, response_model_exclude_none=True)
    async def recommend(body: RecommendRequest, request: Request) -> RecommendResponse:
        """The best ``k`` items after a history of item ids (or a known user's history: with
        ``user_id``, needs the read key or the API key if one is set)."""
        if body.user_id is not None:
            ctx.check_read(request)
        check_query(limits, body.k, body.history)
        rec = ctx.recommender  # one model version for the whole request
        prepared = await ctx.offload(prepare, rec, body, ("body",))
        result = await ctx.batcher.submit((rec, prepared))
        if body.explain:
            result = (await ctx.offload(rec.explain, [prepared], [result]))[0]
        return to_response(result, rec.version, body.explain)

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
        explain = [q.explain for q in queries]
        if any(explain):
            results = await ctx.offload(explain_some, rec, prepared, results, explain)
        body_json = await ctx.offload(batch_json, results, rec.version, explain)
        return Response(body_json, media_type="application/json")

    return api
