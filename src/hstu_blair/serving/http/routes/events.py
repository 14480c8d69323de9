"""Users' events::

    POST   /events                          {events: [{user_id, item_id, timestamp, event_id?}, ...],
                                             idempotency_key?}  (write token)
    GET    /users/{user_id}/recommendations?k=&exclude_seen=&filter=   (read or write token)
    DELETE /users/{user_id}                 forget the user's stored events  (write token)

``POST /events`` answers 201 only once the whole batch is committed to the store; an event naming
an item not in the catalogue answers 422 naming every such id, and nothing of the batch is stored.
Each event is stored once: an event with the ``event_id`` of a stored one, or without an
``event_id`` the same user, item and timestamp, is a duplicate and skipped. The answer
``{"stored": distinct events of the batch, now in the store, "duplicates": events repeating another
of the batch}`` depends on the batch alone, so a retry is answered as the first time was. A batch
with an ``idempotency_key`` seen before stores nothing (even after ``DELETE /users/{id}``); the key
or an ``event_id`` used for other events is 409.
Ids of users and items the model does not know must be in canonical form
(:func:`~hstu_blair.serving.ids.check_new_id`), so that every stored user can be asked
for as ``/users/{user_id}``. Recommendations for a user rank after their training history plus
their stored events (ordered by timestamp); a user with neither gets the most popular training
items. Limits: ``max_events`` per body, ``max_k``, and the body limit of ``/events``
(:class:`~hstu_blair.serving.limits.Limits`).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi import Query as QueryParam
from pydantic import BaseModel, ConfigDict, Field

from hstu_blair.serving.errors import EventConflict
from hstu_blair.serving.http.context import ServingContext
from hstu_blair.serving.http.filters import FILTER_PARAM, checked_filter
from hstu_blair.serving.http.limits import check_k, printable, unprocessable
from hstu_blair.serving.http.routes.recommend import to_items
from hstu_blair.serving.http.schemas import Item, Text, Time
from hstu_blair.serving.recommender import ServingError, StoreWriteError, UnknownIdError


class Event(BaseModel):
    """One thing a user did: interacted with ``item_id`` at ``timestamp`` (seconds)."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)
    user_id: Text = Field(min_length=1, max_length=256)
    item_id: Text = Field(min_length=1, max_length=256)
    timestamp: Time = Field(
        description="seconds since the epoch (an integer, not negative) or an ISO 8601 string such as "
        "2024-05-01T12:00:00Z (UTC unless it has an offset)"
    )
    event_id: Text | None = Field(
        None,
        min_length=1,
        max_length=256,
        description="the client's id of the event: a second event with this id is not stored again",
    )


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: list[Event] = Field(min_length=1)
    idempotency_key: Text | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="a retry of the batch with this key stores nothing and gets the first answer",
    )


class UserRecommendations(BaseModel):
    user_id: str
    items: list[Item]
    version: int = Field(0, description="the model version that answered (see hstu-blair update)")


def router(ctx: ServingContext) -> APIRouter:
    """The events routes over ``ctx`` (the recommender of the served version, read once per request)."""
    api = APIRouter(tags=["events"])
    limits = ctx.limits

    @api.post("/events", status_code=201, dependencies=ctx.auth.dependencies)
    async def add_events(body: EventBatch) -> dict[str, int]:
        """Store a batch of events (201 once committed), each event once; unknown items: 422,
        an ``event_id`` or ``idempotency_key`` used for other events: 409, nothing stored. Needs
        the API key if one is set."""
        if len(body.events) > limits.max_events:
            raise unprocessable(
                ("body", "events"),
                f"{len(body.events)} events, above the limit of {limits.max_events} (max_events)",
            )
        rows = [(e.user_id, e.item_id, e.timestamp, e.event_id) for e in body.events]
        try:
            stored = await ctx.offload(ctx.recommender.add_events, rows, body.idempotency_key)
        except EventConflict as exc:
            raise HTTPException(409, detail=str(exc)) from None
        except UnknownIdError as exc:
            ids = [printable(i) for i in exc.ids[:100]]
            raise unprocessable(("body", "events"), str(exc), "unknown_id", ids=ids) from None
        except StoreWriteError as exc:
            raise HTTPException(503, detail=str(exc)) from None
        except ServingError as exc:
            raise unprocessable(("body", "events"), str(exc)) from None
        return {"stored": stored, "duplicates": len(rows) - stored}

    @api.get(
        "/users/{user_id}/recommendations",
        dependencies=ctx.auth.read_dependencies,
        response_model_exclude_none=True,
    )
    async def user_recommendations(
        user_id: str,
        k: int = QueryParam(10, ge=1),
        exclude_seen: bool = True,
        filter: str | None = QueryParam(None, max_length=100_000, description=FILTER_PARAM),
        explain: bool = False,
    ) -> UserRecommendations:
        """The best ``k`` items after the user's training history plus stored events (only items
        ``filter`` allows; ``explain``: each with the history items that contributed most). They
        reveal the history: needs the read key or the API key if one is set."""
        check_k(limits, k, ("query",))
        rec = ctx.recommender  # one model version for the whole request
        item_filter = await ctx.offload(checked_filter, rec, filter, ("query", "filter"))
        result = await ctx.offload(
            partial(
                rec.recommend_user, user_id, k, exclude_seen, "popular", filter=item_filter, explain=explain
            )
        )
        return UserRecommendations(user_id=user_id, items=to_items(result, explain), version=rec.version)

    @api.delete("/users/{user_id}", dependencies=ctx.auth.dependencies)
    async def forget_user(user_id: str) -> dict[str, Any]:
        """Delete the user's stored events (their training history is part of the model). Needs
        the API key if one is set."""
        try:
            deleted = await ctx.offload(ctx.recommender.forget_user, user_id)
        except StoreWriteError as exc:
            raise HTTPException(503, detail=str(exc)) from None
        return {"user_id": user_id, "deleted_events": deleted}

    return api
