"""Unknown query parameters are refused (422), on every route: ``GET /items?q=x`` names ``q`` and
the parameters ``GET /items`` accepts (``query``, ``limit``) instead of silently ignoring it.

A route's accepted query parameters are read from its FastAPI dependant (its signature and its
dependencies'), so a new query parameter only needs to be declared in the route's signature
(``name: str = Query(...)``); one read from ``request.query_params`` by hand would be refused.
Routes that are not FastAPI routes (``/openapi.json``, mounted static files) are not checked.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import parse_qsl

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from hstu_blair.serving.http.limits import printable, route_of


def accepted_query_params(route: APIRoute) -> frozenset[str]:
    """The query parameter names ``route`` declares (aliases as sent), dependencies included."""
    names: set[str] = set()
    todo: list[Dependant] = [route.dependant]
    while todo:
        dependant = todo.pop()
        names.update(f.alias for f in dependant.query_params)
        todo.extend(dependant.dependencies)
    return frozenset(names)


class QueryParamGuard:
    """Pure ASGI middleware: 422 for a request whose query string names a parameter its route
    does not declare (each unknown one named, with the accepted ones)."""

    def __init__(self, app: Callable) -> None:
        self.app = app
        self._accepted: dict[int, frozenset[str]] = {}  # by id(route)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        route = route_of(scope) if scope["type"] == "http" and scope.get("query_string") else None
        if isinstance(route, APIRoute):
            accepted = self._accepted.get(id(route))
            if accepted is None:
                accepted = self._accepted[id(route)] = accepted_query_params(route)
            sent = [k for k, _ in parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)]
            unknown = sorted(set(sent) - accepted)
            if unknown:
                await _refuse(send, unknown, accepted)
                return
        await self.app(scope, receive, send)


async def _refuse(send: Callable, unknown: list[str], accepted: frozenset[str]) -> None:
    """The 422 in FastAPI's validation-error shape, one entry per unknown parameter."""
    allowed = ", ".join(sorted(accepted)) or "none"
    detail = [
        {
            "loc": ["query", printable(name)],
            "msg": printable(f"unknown query parameter {name!r}; this route accepts: {allowed}"),
            "type": "extra_forbidden",
        }
        for name in unknown
    ]
    body = json.dumps({"detail": detail}).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 422, "headers": head})
    await send({"type": "http.response.body", "body": body})
