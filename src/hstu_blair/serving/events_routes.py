"""HTTP routes for users' events (an ``APIRouter`` the app includes)::

    POST   /events                          {events: [{user_id, item_id, timestamp}, ...]}  (write token)
    GET    /users/{user_id}/recommendations?k=&exclude_seen=
    DELETE /users/{user_id}                 forget the user's stored events  (write token)

``POST /events`` answers 201 only once the whole batch is committed to the store; an event naming
an item not in the catalogue answers 422 naming every such id, and nothing of the batch is stored.
Recommendations for a user rank after their training history plus their stored events (ordered
by timestamp); a user with neither gets the most popular training items.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi import Query as QueryParam
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from hstu_blair.serving.live import LiveRecommender
from hstu_blair.serving.recommender import (
    Recommendations,
    Recommender,
    ServingError,
    StoreWriteError,
    UnknownIdError,
)


class Event(BaseModel):
    """One thing a user did: interacted with ``item_id`` at ``timestamp`` (seconds)."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)
    user_id: str = Field(min_length=1, max_length=256)
    item_id: str = Field(min_length=1, max_length=256)
    timestamp: int = Field(description="seconds since the epoch")


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: list[Event] = Field(min_length=1)


def events_router(
    live: LiveRecommender, writes: list[Any], max_k: int = 1000, max_events: int = 10_000
) -> APIRouter:
    """The events routes over ``live``'s current recommender (read once per request).

    Args:
        writes: dependencies of the write routes (the API-key check, or none).
        max_k: largest ``k`` accepted.
        max_events: most events in one ``POST /events`` body (more: 422).
    """
    router = APIRouter(tags=["events"])

    @router.post("/events", status_code=201, dependencies=writes)
    async def add_events(body: EventBatch) -> dict[str, int]:
        """Store a batch of events (201 once committed); unknown items: 422, nothing stored."""
        if len(body.events) > max_events:
            raise _unprocessable(
                ["body", "events"], f"{len(body.events)} events, above the limit of {max_events}"
            )
        rows = [(e.user_id, e.item_id, e.timestamp) for e in body.events]
        try:
            stored = await run_in_threadpool(live.current.add_events, rows)
        except UnknownIdError as exc:
            raise _unprocessable(["body", "events"], str(exc), "unknown_id", ids=exc.ids[:100]) from None
        except StoreWriteError as exc:
            raise HTTPException(503, detail=str(exc)) from None
        except ServingError as exc:
            raise _unprocessable(["body", "events"], str(exc)) from None
        return {"stored": stored}

    @router.get("/users/{user_id}/recommendations")
    async def user_recommendations(
        user_id: str, k: int = QueryParam(10, ge=1), exclude_seen: bool = True
    ) -> dict[str, Any]:
        """The best ``k`` items after the user's training history plus stored events."""
        if k > max_k:
            raise _unprocessable(["query", "k"], f"k={k} is above the limit of {max_k}")
        recommender: Recommender = live.current
        result: Recommendations = await run_in_threadpool(
            recommender.recommend_user, user_id, k, exclude_seen, "popular"
        )
        items = [{"item_id": r.item_id, "score": r.score, "title": r.title} for r in result]
        return {"user_id": user_id, "items": items, "version": recommender.version}

    @router.delete("/users/{user_id}", dependencies=writes)
    async def forget_user(user_id: str) -> dict[str, Any]:
        """Delete the user's stored events (their training history is part of the model)."""
        try:
            deleted = await run_in_threadpool(live.current.forget_user, user_id)
        except StoreWriteError as exc:
            raise HTTPException(503, detail=str(exc)) from None
        return {"user_id": user_id, "deleted_events": deleted}

    return router


def _unprocessable(loc: list[str], message: str, kind: str = "value_error", **extra: Any) -> HTTPException:
    text = message.encode("utf-8", "backslashreplace").decode("utf-8")
    return HTTPException(422, detail=[{"loc": loc, "msg": text, "type": kind, **extra}])
