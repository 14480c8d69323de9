"""Prometheus metrics of the service, and the middleware that counts and times every request.

Labels come from fixed sets only, so no client can grow ``/metrics``: the method is one of
:data:`METHODS` (anything else counts as ``other``), the route is the template of the route that
answered (``/items/{item_id:path}``), ``/static`` for files, and ``other`` for everything else.

A router counts its own things by registering them in ``Metrics.registry``, e.g.
``Counter("hstu_blair_events", "events received", registry=ctx.metrics.registry)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""HTTP methods that are labels as they are; any other method is counted as ``other``."""


class Metrics:
    """Prometheus metrics in a registry of their own (several apps may live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "hstu_blair_http_requests",
            "HTTP requests by method, route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "hstu_blair_http_request_seconds",
            "HTTP request latency by route",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "hstu_blair_batch_size",
            "queries answered per model call",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 1024),
            registry=self.registry,
        )
        self.items = Gauge(
            "hstu_blair_catalogue_items", "items that can be recommended", registry=self.registry
        )
        self.set_aside = Gauge(
            "hstu_blair_store_set_aside", "damaged stored records kept out of service", registry=self.registry
        )
        self.duplicate_events = Gauge(
            "hstu_blair_store_duplicate_events",
            "events received since start and not stored again (repeats, retries)",
            registry=self.registry,
        )
        self.refused = Counter(
            "hstu_blair_http_refused",
            "requests refused before any work: body too large (413), no or wrong token (401)",
            ["reason"],
            registry=self.registry,
        )
        self.connections = Gauge(
            "hstu_blair_http_connections", "open HTTP connections", registry=self.registry
        )
        self.connections_closed = Counter(
            "hstu_blair_http_connections_closed",
            "connections the server closed to stay within its limits: idle one closed for a new one "
            "(evicted_idle), new one refused with 503 (full), no request head in time (head_timeout)",
            ["reason"],
            registry=self.registry,
        )


def route_label(scope: dict[str, Any]) -> str:
    """The route template that answered ``scope`` (``/items/{item_id:path}``), the path of one of
    the app's fixed routes (``/docs``), ``/static`` for files, else ``other``."""
    path = getattr(scope.get("route"), "path", None)  # set by FastAPI's routes
    if isinstance(path, str) and path:
        return path
    path = scope.get("path", "")
    if path.startswith("/static/"):
        return "/static"
    fixed = {getattr(r, "path", None) for r in getattr(scope.get("app"), "routes", ())}
    return path if path in fixed and "{" not in path else "other"


def method_label(method: str) -> str:
    return method if method in METHODS else "other"


class MetricsMiddleware:
    """Counts and times every HTTP request by method, route template and status (pure ASGI)."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def send_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = route_label(scope)
            self.metrics.requests.labels(method_label(scope["method"]), route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)
