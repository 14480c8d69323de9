"""HTTP service over a :class:`Recommender`: validation, micro-batching, metrics, a small web page.

Endpoints (OpenAPI docs at ``/docs`` and ``/redoc``, their scripts served by the app itself from
the ``fastapi-offline`` package under ``/docs/static``: no internet needed)::

    POST /recommend         {history: [item ids] | user_id, k, exclude_seen, timestamps?, query_time?, skip_unknown?}
    POST /recommend/batch   {requests: [<as /recommend>, ...]}
    GET  /items?query=&limit=   title search;  GET /items/{item_id};  POST /items {item_id, text | fields, title}
    GET  /similar?item_id=&k=   items with the closest vectors
    POST /events {events: [{user_id, item_id, timestamp}]};  GET /users/{user_id}/recommendations?k=
    DELETE /users/{user_id}
    GET  /healthz, GET /metrics (Prometheus), GET / (web page)

Bad input is answered 4xx, never 5xx: unknown ids and limits (k, history length) give 422 naming
the field and the ids, malformed JSON 422 (FastAPI's ``json_invalid``), a query parameter the route
does not declare 422 naming it and the accepted ones.

Added items and events are committed to the run's store before ``POST /items`` / ``POST /events``
answer 201, and before each request the app catches up (in a thread) with items other server
processes on the same store added (one ``max(seq)`` query when nothing changed): an item added
through one process is served by every other from its next request on; events are read from the
store per query. The served model version switches without a restart when ``hstu-blair update``
(or ``rollback``) moves the run's version pointer; every answer carries the ``version`` that
computed it (:class:`~hstu_blair.serving.live.LiveRecommender`).

Writes can require a token (``create_app(..., api_key=...)``, ``hstu-blair serve --api-key`` or
``HSTU_BLAIR_API_KEY``): ``POST /items``, ``POST /events`` and ``DELETE /users/{id}`` then answer
401 unless the request carries ``Authorization: Bearer <token>``. A user's recommendations reveal
their history, so with a token ``GET /users/{id}/recommendations`` and ``/recommend`` by
``user_id`` need it or the read token (``read_key``, ``--read-key``, ``HSTU_BLAIR_READ_KEY``:
reads, no writes). Reads that reveal no user (recommend by a history, items, similar, health,
metrics, page) stay open.

Micro-batching: concurrent ``/recommend`` queries are gathered into one
``Recommender.recommend_batch`` call (``batch_window_ms``, ``max_batch``); see
:mod:`hstu_blair.serving.http.batcher`.

The parts live in :mod:`hstu_blair.serving.http` (schemas, limits, auth, metrics, batcher,
routes); this module assembles them (:func:`create_app`) and launches uvicorn (:func:`serve`).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import torch
from fastapi import APIRouter, FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from hstu_blair.errors import ConfigError
from hstu_blair.serving.http.auth import WriteAuth
from hstu_blair.serving.http.batcher import MicroBatcher
from hstu_blair.serving.http.catch_up import CatchUpMiddleware
from hstu_blair.serving.http.connections import build_server
from hstu_blair.serving.http.context import ServingContext
from hstu_blair.serving.http.limits import RequestGuard
from hstu_blair.serving.http.log_flood import FloodFilter, SuppressedCollector, install, uninstall
from hstu_blair.serving.http.metrics import Metrics, MetricsMiddleware
from hstu_blair.serving.http.query_params import QueryParamGuard
from hstu_blair.serving.http.routes import attributes, events, items, recommend, service
from hstu_blair.serving.http.schemas import validation_error_response
from hstu_blair.serving.limits import BATCH_WINDOW_MS, HOST, MAX_BATCH, PORT, ConnectionLimits, Limits
from hstu_blair.serving.live import LiveRecommender
from hstu_blair.serving.recommender import Recommender, ServingError
from hstu_blair.text.encoders import EncoderError

__all__ = [
    "API_KEY_ENV",
    "ConnectionLimits",
    "READ_KEY_ENV",
    "Limits",
    "MicroBatcher",
    "create_app",
    "exposure_warning",
    "is_loopback",
    "serve",
]

log = logging.getLogger(__name__)
STATIC = service.STATIC
DOCS_ASSETS = "/docs/static"
"""Where the API docs' scripts, styles and icon are served (from the ``fastapi-offline`` package)."""
API_KEY_ENV = "HSTU_BLAIR_API_KEY"
"""Environment variable :func:`serve` reads the write token from when none is given."""
READ_KEY_ENV = "HSTU_BLAIR_READ_KEY"
"""Environment variable :func:`serve` reads the read token from when none is given."""


def _load_encoder(recommender: Recommender) -> None:
    """Build the run's text encoder at start; one that cannot be built is reported and left for
    the first added item, whose request then gets the encoder's error."""
    try:
        recommender.growth.load_encoder()
    except (ConfigError, EncoderError) as exc:
        log.warning("text encoder not loaded at start (adding items will fail): %s", exc)


def create_app(
    recommender: Recommender | LiveRecommender,
    batch_window_ms: float = BATCH_WINDOW_MS,
    max_batch: int = MAX_BATCH,
    api_key: str | None = None,
    limits: Limits | None = None,
    read_key: str | None = None,
    log_flood: FloodFilter | None = None,
    **limit_values: Any,
) -> FastAPI:
    """The FastAPI app serving ``recommender``.

    Args:
        recommender: what to serve: a ``Recommender``, or a ``LiveRecommender`` to switch to new
            model versions without a restart (each request reads its current recommender once).
        batch_window_ms: how long a queued request waits for others to share its model call.
        max_batch: most queries per model call (1 disables micro-batching).
        api_key: token the write endpoints (``POST /items``, ``POST /events``, ``DELETE
            /users/{id}``) require as ``Authorization: Bearer
            <token>`` (compared in constant time; missing or wrong: 401). None: every route is
            open. With it, reads that reveal a user's history (``GET /users/{id}/recommendations``,
            ``/recommend`` by ``user_id``) need it or ``read_key``; other reads stay open.
        limits: request limits (default :class:`Limits`: see its fields for the defaults).
        read_key: a token that allows those reads and no write (needs ``api_key``; must differ).
        log_flood: the filter keeping repeated log lines out (:func:`serve` installs one), whose
            left-out lines ``/metrics`` counts; None: a new one, not installed.
        **limit_values: single :class:`Limits` fields over ``limits`` (``max_k=50``, ``max_history=100``).

    Raises:
        ServingError: an empty token, ``read_key`` without ``api_key`` or equal to it, or a limit
            that is not a positive integer.

    Adding a router: write ``def router(ctx: ServingContext) -> APIRouter`` in a module of
    :mod:`hstu_blair.serving.http.routes` and add it below with :func:`add_routes`. ``ctx`` gives what the service
    shares: ``ctx.auth.dependencies`` for a write route (the token is then checked before the body
    is read), ``ctx.offload(fn, *args)`` to run work in the service's worker threads,
    ``ctx.limits.body_bytes`` (a route not listed there gets ``default_body_bytes``),
    ``ctx.metrics.registry`` to count things in ``/metrics``, and ``ctx.health`` /
    ``ctx.private_health`` for fields of ``/healthz`` (the latter only shown with the token).
    Declare every query parameter in the route's signature: others are refused with 422
    (:mod:`~hstu_blair.serving.http.query_params`).

    Longer than 60 lines with this docstring, which tells how to add a router; the body only wires
    the service's parts together.
    """
    try:
        auth = WriteAuth(api_key, read_key)
        limits = dataclasses.replace(limits or Limits(), **limit_values)
    except ValueError as exc:
        raise ServingError(str(exc)) from None
    live = recommender if isinstance(recommender, LiveRecommender) else LiveRecommender(recommender)
    metrics = Metrics()
    metrics.items.set_function(lambda: live.current.num_items)
    metrics.set_aside.set_function(lambda: live.current.records_set_aside)
    metrics.duplicate_events.set_function(lambda: live.current.store.duplicate_events)
    metrics.registry.register(SuppressedCollector(log_flood or FloodFilter()))
    ctx = ServingContext(live, limits, auth, metrics, batch_window_ms / 1000, max_batch)
    ctx.health.update(version_swaps=lambda: live.swaps, failed_version_loads=lambda: live.failed_loads)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await ctx.offload(_load_encoder, live.current)  # not on the first POST /items
        ctx.batcher.start()
        yield
        await ctx.batcher.stop()

    app = FastAPIOffline(  # /docs and /redoc with their scripts served from the package: no CDN
        static_url=DOCS_ASSETS,
        title="hstu-blair recommendations",
        version="1",
        description="Next-item recommendations from a trained HSTU / HSTU-BLaIR / SASRec run, in item ids.\n\n"
        + describe_limits(limits),
        lifespan=lifespan,
    )
    app.add_middleware(CatchUpMiddleware, live=live)
    app.add_middleware(QueryParamGuard)  # unknown query parameters: 422 before any work
    app.add_middleware(RequestGuard, limits=limits, auth=auth, metrics=metrics)  # before any work
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: counts refusals too
    app.add_exception_handler(RequestValidationError, validation_error_response)
    for module in (recommend, items, attributes, events, service):
        add_routes(app, module.router(ctx))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.state.context = ctx
    app.state.live, app.state.batcher, app.state.metrics = live, ctx.batcher, metrics
    return app


def describe_limits(limits: Limits) -> str:
    """The limits as the API docs (``/docs``) show them."""
    bodies = ", ".join(f"`{path}` {n:,} bytes" for path, n in limits.body_bytes.items())
    return (
        "**Limits** (checked before any work; `hstu-blair serve --help` sets them): "
        f"k <= {limits.max_k:,}; history <= {limits.max_history:,} items per query; "
        f"{limits.max_queries:,} queries per batch; {limits.max_batch_history:,} history items and "
        f"{limits.max_batch_results:,} results (sum of k) per request; {limits.max_events:,} events "
        "per POST /events (above: 422 naming the limit); "
        f"request bodies: {bodies}, any other route {limits.default_body_bytes:,} bytes (above: 413, "
        "the body is not read). Write routes check the token before reading the body (401). "
        "New item ids: no surrounding whitespace, no control characters; repeating an add with "
        "the same id, text and title answers 200."
    )


def add_routes(app: FastAPI, router: APIRouter) -> None:
    """Add ``router``'s routes to ``app`` one by one (no prefix; declare dependencies per route).

    Not ``include_router``: FastAPI includes a router lazily, as one opaque route, and
    :class:`~hstu_blair.serving.http.limits.RequestGuard` must find the matching route (its body
    limit, whether it needs the token) before the body is read."""
    app.router.routes.extend(router.routes)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (127.0.0.0/8, ::1) or ``localhost``."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, api_key: str | None) -> str | None:
    """The warning for binding beyond loopback with open writes (None when there is nothing to say)."""
    if api_key is not None or is_loopback(host):
        return None
    return (
        f"serving on {host} without an API key: anyone who can reach this address can add items "
        f"(POST /items) and events (POST /events), which are kept in the run's store. Set {API_KEY_ENV} "
        "or pass --api-key, "
        "or bind 127.0.0.1 behind a proxy"
    )


def serve(
    run_dir: str | Path,
    host: str = HOST,
    port: int = PORT,
    checkpoint: str = "best",
    device: str = "cpu",
    index: str = "exact",
    max_k: int | None = None,
    batch_window_ms: float = BATCH_WINDOW_MS,
    max_batch: int = MAX_BATCH,
    log_level: str = "info",
    threads: int | None = None,
    api_key: str | None = None,
    limits: Limits | None = None,
    store: str | None = None,
    read_key: str | None = None,
    connections: ConnectionLimits | None = None,
) -> None:
    """Load a run and serve it with uvicorn until interrupted.

    Binds loopback unless ``host`` says otherwise. ``api_key`` (default: the environment variable
    ``HSTU_BLAIR_API_KEY``, if set and not empty) is the token ``POST /items`` requires as
    ``Authorization: Bearer <token>`` on the write routes and on reads that reveal a user's history;
    ``read_key`` (default: ``HSTU_BLAIR_READ_KEY``) allows those reads only. Binding beyond loopback
    without one logs and prints a warning. Items and events added through any process serving
    ``run_dir`` are kept in its store and served by all of them; ``store`` names the store (a
    SQLite path or PostgreSQL URL; default ``RUN_DIR/store.sqlite``). The run's current model
    version is served, and a new one (``hstu-blair update``) switched to without a restart.
    ``threads`` sets torch's intra-op threads (default: torch's choice; 1 is
    fastest when other processes share the cores). ``limits``: what one request may ask for
    (default :class:`Limits`; ``max_k``, if given, overrides its ``max_k``). ``connections``: what
    connections may hold and how often a log line repeats (default :class:`ConnectionLimits`; see
    :mod:`hstu_blair.serving.http.connections`). Other arguments: see :func:`create_app` and
    :meth:`Recommender.load`.

    Raises:
        ServingError: ``api_key`` is an empty string.

    Longer than 60 lines with this docstring and its 15 arguments (the ``serve`` CLI flags); the body
    only loads, builds the app and runs it.
    """
    if api_key is None:
        api_key = os.environ.get(API_KEY_ENV) or None
    if api_key is not None and not api_key:
        raise ServingError(f"the API key is empty: give a token, or leave it out (and {API_KEY_ENV} unset)")
    if read_key is None:
        read_key = os.environ.get(READ_KEY_ENV) or None
    if threads:
        torch.set_num_threads(threads)
    live = LiveRecommender.load(run_dir, checkpoint=checkpoint, device=device, index=index, store=store)
    recommender = live.current
    connections = connections or ConnectionLimits()
    flood = FloodFilter(connections.log_repeat_s)
    app = create_app(
        live,
        batch_window_ms=batch_window_ms,
        max_batch=max_batch,
        api_key=api_key,
        limits=limits,
        read_key=read_key,
        log_flood=flood,
        **({} if max_k is None else {"max_k": max_k}),
    )
    warning = exposure_warning(host, api_key)
    if warning is not None:
        log.warning(warning)
        print(f"WARNING: {warning}", file=sys.stderr)
    log.info(
        "serving %s (%d items, %d added at run time) on http://%s:%d; writes %s %s",
        run_dir,
        recommender.num_items,
        recommender.describe()["added_items"],
        host,
        port,
        "need the API key" if api_key else "are open",
        "with a read key" if read_key else "",
    )
    run_server(app, host, port, connections, log_level, flood)


def run_server(
    app: FastAPI, host: str, port: int, connections: ConnectionLimits, log_level: str, flood: FloodFilter
) -> None:
    """Run ``app`` with uvicorn within ``connections`` and ``flood`` on the log, until interrupted."""
    server = build_server(app, host, port, connections, log_level)  # configures logging
    installed = install(flood)
    try:
        server.run()
    finally:
        uninstall(flood, installed)
