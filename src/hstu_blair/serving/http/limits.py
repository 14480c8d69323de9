"""Limits checked before any work: body size per route, the write token, and the work of a request.

- **Body size** (413): :class:`RequestGuard`, a pure ASGI middleware, answers 413 when the
  ``Content-Length`` of a request is above its route's limit, before reading a byte of it, and
  stops reading a body sent without a length (chunked) as soon as the bytes received pass it.
- **Write token** (401): checked by the same middleware before the body is read, for the routes
  declared with ``WriteAuth.dependencies`` (so a huge or malformed body without the token is 401).
- **Work** (422 naming the limit): ``k``, history length and queries per request, and for a whole
  request the history items and the results summed over its queries (the work of a batch grows as
  queries x history length and queries x k): :meth:`Limits.check_query`, :meth:`Limits.check_batch`.

Defaults (see :class:`Limits`): ``k`` <= 1,000; history <= 10,000 items; 1,000 queries per batch;
200,000 history items and 100,000 results per request; bodies up to 1 MiB on ``/recommend`` and
``POST /items``, 8 MiB on ``/recommend/batch``, 64 KiB on any other route.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from fastapi import HTTPException
from starlette.routing import Match

from hstu_blair.serving.http.auth import MISSING, WriteAuth
from hstu_blair.serving.http.metrics import Metrics

KIB, MIB = 1024, 1024 * 1024
BODY_BYTES: Mapping[str, int] = MappingProxyType(
    {"/recommend": 1 * MIB, "/recommend/batch": 8 * MIB, "/items": 1 * MIB}
)
"""Default body limits by route path; any other route gets ``Limits.default_body_bytes``."""


@dataclass(frozen=True)
class Limits:
    """What one request may ask for. Every limit answers 4xx naming itself; none is a 5xx.

    Attributes:
        max_k: largest ``k`` of a query.
        max_history: longest history of a query (the model reads its last ``max_len`` items; the
            whole history is excluded from the results).
        max_queries: most queries in one ``/recommend/batch`` body.
        max_batch_history: most history items summed over the queries of one request.
        max_batch_results: most results (``k``) summed over the queries of one request.
        body_bytes: body limit (bytes) by route path; routes not listed get ``default_body_bytes``.
        default_body_bytes: body limit of every other route.
        workers: threads that run preparation and scoring off the event loop (shared by all routes).
    """

    max_k: int = 1000
    max_history: int = 10_000
    max_queries: int = 1000
    max_batch_history: int = 200_000
    max_batch_results: int = 100_000
    body_bytes: Mapping[str, int] = field(default_factory=lambda: dict(BODY_BYTES))
    default_body_bytes: int = 64 * KIB
    workers: int = 4

    def __post_init__(self) -> None:
        numbers = {k: v for k, v in self.__dict__.items() if k != "body_bytes"}
        bad = {k: v for k, v in {**numbers, **self.body_bytes}.items() if not isinstance(v, int) or v < 1}
        if bad:
            raise ValueError(f"limits must be positive integers, got {bad}")

    def body_limit(self, path: str | None) -> int:
        """The body limit of the route with this path template."""
        return self.body_bytes.get(path or "", self.default_body_bytes)

    def check_query(
        self, k: int, history: Sequence[Any] | None, loc: tuple[str | int, ...] = ("body",)
    ) -> None:
        """422 when one query's ``k`` or history length is above its limit."""
        if k > self.max_k:
            raise unprocessable((*loc, "k"), f"k={k} is above the limit of {self.max_k} (max_k)")
        if history is not None and len(history) > self.max_history:
            raise unprocessable(
                (*loc, "history"),
                f"history has {len(history)} items, above the limit of {self.max_history} (max_history)",
            )

    def check_count(self, queries: int) -> None:
        """422 when a request holds more queries than ``max_queries``."""
        if queries > self.max_queries:
            raise unprocessable(
                ("body", "requests"),
                f"{queries} requests, above the limit of {self.max_queries} (max_queries)",
            )

    def check_batch(self, ks: Sequence[int], histories: Sequence[Sequence[Any] | None]) -> None:
        """422 when a request's queries, history items or results (sum of k) are above their limits."""
        self.check_count(len(ks))
        loc = ("body", "requests")
        total = sum(len(h) for h in histories if h is not None)
        if total > self.max_batch_history:
            raise unprocessable(
                loc,
                f"{total} history items in all, above the limit of {self.max_batch_history} "
                "per request (max_batch_history): split the batch",
            )
        results = sum(ks)
        if results > self.max_batch_results:
            raise unprocessable(
                loc,
                f"{results} results in all (the sum of k), above the limit of {self.max_batch_results} "
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


_SIZE = re.compile(r"^\s*(\d+)\s*(|b|k|kb|kib|m|mb|mib)\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes from ``"65536"``, ``"64KiB"``, ``"8MiB"`` (k/m are binary: 1024, 1024**2).

    Raises:
        ValueError: not a size.
    """
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"not a size: {text!r} (expected e.g. 65536, 64KiB or 8MiB)")
    unit = match.group(2).lower()[:1]
    return int(match.group(1)) * {"": 1, "b": 1, "k": KIB, "m": MIB}[unit]


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
        route = _route_of(scope)
        headers = {k.lower(): v for k, v in scope.get("headers", ()) if k.lower() in _HEADERS}
        if route is not None and self.auth.protects(route):
            authorization = headers.get(b"authorization")
            problem = self.auth.problem(None if authorization is None else authorization.decode("latin-1"))
            if problem is not None:
                self.metrics.refused.labels("unauthorized").inc()
                challenge = "Bearer" if problem == MISSING else 'Bearer error="invalid_token"'
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


def _route_of(scope: dict) -> Any:
    """The app's route that fully matches ``scope`` (method and path), or None."""
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
