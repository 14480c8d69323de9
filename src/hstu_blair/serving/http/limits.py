"""Limits checked before any work: body size per route, the write token, and the work of a request.

- **Body size** (413): :class:`RequestGuard`, a pure ASGI middleware, answers 413 when the
  ``Content-Length`` of a request is above its route's limit, before reading a byte of it, and
  stops reading a body sent without a length (chunked) as soon as the bytes received pass it.
- **Tokens** (401): checked by the same middleware before the body is read, for the routes
  declared with ``WriteAuth.dependencies`` (the write token) or ``read_dependencies`` (the read
  or write token), so a huge or malformed body without the token is 401.
- **Work** (422 naming the limit): ``k``, history length and queries per request, and for a whole
  request the history items and the results summed over its queries (the work of a batch grows as
  queries x history length and queries x k): :func:`check_query`, :func:`check_batch`.

The limits and their defaults: :class:`hstu_blair.serving.limits.Limits`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import HTTPException
from starlette.routing import Match

from hstu_blair.serving.http.auth import MISSING, MISSING_READ, WriteAuth
from hstu_blair.serving.http.metrics import Metrics
from hstu_blair.serving.limits import Limits


def check_k(limits: Limits, k: int, loc: tuple[str | int, ...] = ("body",)) -> None:
    """422 when ``k`` is above ``max_k`` (``loc``: where the request holds it)."""
    if k > limits.max_k:
        raise unprocessable((*loc, "k"), f"k={k} is above the limit of {limits.max_k} (max_k)")


def check_query(
    limits: Limits, k: int, history: Sequence[Any] | None, loc: tuple[str | int, ...] = ("body",)
) -> None:
    """422 when one query's ``k`` or history length is above its limit."""
    check_k(limits, k, loc)
    if history is not None and len(history) > limits.max_history:
        raise unprocessable(
            (*loc, "history"),
            f"history has {len(history)} items, above the limit of {limits.max_history} (max_history)",
        )


def check_count(limits: Limits, queries: int) -> None:
    """422 when a request holds more queries than ``max_queries``."""
    if queries > limits.max_queries:
        raise unprocessable(
            ("body", "requests"), f"{queries} requests, above the limit of {limits.max_queries} (max_queries)"
        )


def check_batch(limits: Limits, ks: Sequence[int], histories: Sequence[Sequence[Any] | None]) -> None:
    """422 when a request's queries, history items or results (sum of k) are above their limits."""
    check_count(limits, len(ks))
    total = sum(len(h) for h in histories if h is not None)
    if total > limits.max_batch_history:
        raise unprocessable(
            ("body", "requests"),
            f"{total} history items in all, above the limit of {limits.max_batch_history} "
            "per request (max_batch_history): split the batch",
        )
    results = sum(ks)
    if results > limits.max_batch_results:
        raise unprocessable(
            ("body", "requests"),
            f"{results} results in all (the sum of k), above the limit of {limits.max_batch_results} "
            "per request (max_batch_results): split the batch or lower k",
        )


def unprocessable(
    loc: Sequence[str | int], message: str, kind: str = "value_error", **extra: Any
) -> HTTPException:
    """A 422 whose body has FastAPI's validation-error shape: ``{"detail": [{loc, msg, type}]}``."""
    return HTTPException(422, detail=[{"loc": list(loc), "msg": printable(message), "type": kind, **extra}])


def printable(text: str) -> str:
    """``text`` with anything UTF-8 cannot encode escaped (so an echo can never fail to encode)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class BodyTooLarge(HTTPException):
    """413: the body passed its route's limit while being read."""

    def __init__(self, limit: int, method: str, path: str) -> None:
        super().__init__(413, body_message(limit, method, path))


def body_message(limit: int, method: str, path: str) -> str:
    return f"the body is larger than the limit of {limit} bytes for {method} {path} (max body size)"


class RequestGuard:
    """Pure ASGI middleware: the write token and the body limit, both before the body is read.

    Args:
        app: the wrapped ASGI app.
        limits: body limits by route.
        auth: which routes need the token, and the token.
        metrics: counts refusals by reason (``hstu_blair_http_refused_total``).
    """

    def __init__(self, app: Any, limits: Limits, auth: WriteAuth, metrics: Metrics) -> None:
        self.app, self.limits, self.auth, self.metrics = app, limits, auth, metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = route_of(scope)
        if route is not None:
            scope.setdefault("route", route)  # the metrics label refusals by route
        headers = {k.lower(): v for k, v in scope.get("headers", ()) if k.lower() in _HEADERS}
        level = None if route is None else self.auth.level_of(route)
        if level is not None:
            authorization = headers.get(b"authorization")
            header = None if authorization is None else authorization.decode("latin-1")
            problem = self.auth.problem(header, level)
            if problem is not None:
                self.metrics.refused.labels("unauthorized").inc()
                challenge = "Bearer" if problem in (MISSING, MISSING_READ) else 'Bearer error="invalid_token"'
                await _reply(send, 401, problem, [(b"www-authenticate", challenge.encode())])
                return
        path = getattr(route, "path", None)
        limit = self.limits.body_limit(path)
        shown = path or scope.get("path", "")
        length = headers.get(b"content-length")
        if length is not None and length.strip().isdigit() and int(length) > limit:
            self.metrics.refused.labels("body_too_large").inc()
            await _reply(send, 413, body_message(limit, scope["method"], shown), [(b"connection", b"close")])
            return
        received, started = 0, False

        async def limited_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    self.metrics.refused.labels("body_too_large").inc()
                    raise BodyTooLarge(limit, scope["method"], shown)
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge as exc:  # raised where no exception handler turned it into the 413
            if started:
                raise
            await _reply(send, 413, str(exc.detail), [(b"connection", b"close")])


_HEADERS = frozenset({b"authorization", b"content-length"})


def route_of(scope: dict) -> Any:
    """The app's route that fully matches ``scope`` (method and path), or None (the one
    :class:`RequestGuard` found, when it ran)."""
    if scope.get("route") is not None:
        return scope["route"]
    for route in getattr(getattr(scope.get("app"), "router", None), "routes", ()):
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return route
    return None


async def _reply(send: Callable, status: int, detail: str, headers: list[tuple[bytes, bytes]]) -> None:
    body = json.dumps({"detail": detail}).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})
