"""HTTP service over a :class:`Recommender`: validation, micro-batching, metrics, a small web page.

Endpoints (OpenAPI docs at ``/docs``)::

    POST /recommend         {history: [item ids] | user_id, k, exclude_seen, timestamps?, query_time?, skip_unknown?}
    POST /recommend/batch   {requests: [<as /recommend>, ...]}
    GET  /items?query=&limit=   title search;  GET /items/{item_id};  POST /items {item_id, text, title}
    GET  /similar?item_id=&k=   items with the closest vectors
    POST /events {events: [{user_id, item_id, timestamp}]};  GET /users/{user_id}/recommendations?k=
    DELETE /users/{user_id}   (see serving/events_routes.py)
    GET  /healthz, GET /metrics (Prometheus), GET / (web page)

Bad input is answered 4xx, never 5xx: unknown ids and limits (k, history length) give 422 naming
the field and the ids, malformed JSON 422 (FastAPI's ``json_invalid``).

Added items and events are committed to the run's store before ``POST /items`` / ``POST /events``
answer 201, and before each request the app catches up with items other server processes on the
same store added (one ``max(seq)`` query when nothing changed): an item added through one process
is served by every other from its next request on; events are read from the store per query.

Writes can require a token (``create_app(..., api_key=...)``, ``hstu-blair serve --api-key`` or
``HSTU_BLAIR_API_KEY``): ``POST /items`` then answers 401 unless the request carries
``Authorization: Bearer <token>`` (so do ``POST /events`` and ``DELETE /users/{id}``). Reads (recommend, items, similar, health, metrics, page) stay open.

Micro-batching: each ``/recommend`` request is validated in the event loop and queued; one worker
task takes the first queued request, gathers more for up to ``batch_window_ms`` (or until
``max_batch``), answers them with a single ``Recommender.recommend_batch`` call in a thread, and
resolves each request's future. Requests that arrive while the model runs form the next batch.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Generic, TypeVar

import torch
import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi import Query as QueryParam
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from hstu_blair.errors import HstuBlairError
from hstu_blair.serving.events_routes import events_router
from hstu_blair.serving.live import LiveRecommender
from hstu_blair.serving.recommender import (
    DuplicateItemError,
    ItemLogError,
    PreparedQuery,
    Query,
    Recommendations,
    Recommender,
    ServingError,
    UnknownIdError,
    fusions_for_new_items,
)

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
API_KEY_ENV = "HSTU_BLAIR_API_KEY"
"""Environment variable :func:`serve` reads the write token from when none is given."""
BEARER = HTTPBearer(auto_error=False, description="the server's API key (hstu-blair serve --api-key)")
"""Reads ``Authorization: Bearer <token>`` (module level: FastAPI resolves annotations in module globals)."""
T = TypeVar("T")
R = TypeVar("R")


# ---- request and response bodies -------------------------------------------------------------------
def _valid_unicode(text: str) -> str:
    """Reject lone surrogates (JSON allows ``"\\udc00"``): they cannot be written back as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text is not valid Unicode (it holds a lone surrogate)") from None
    return text


Text = Annotated[str, AfterValidator(_valid_unicode)]


class RecommendRequest(BaseModel):
    """One query: ``history`` (item ids, oldest first) or ``user_id``; numbers are taken as ids."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)
    history: list[Text] | None = Field(None, description="item ids, oldest first")
    user_id: Text | None = Field(None, description="a user of the training data (their full history)")
    k: int = Field(10, ge=1, description="number of items (at most max_k)")
    exclude_seen: bool = Field(True, description="never recommend an item of the history")
    timestamps: list[int] | None = Field(None, description="seconds, one per history item")
    query_time: int | None = Field(None, description="seconds (default: the last history timestamp)")
    skip_unknown: bool = Field(False, description="leave unknown ids out instead of answering 422")


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    requests: list[RecommendRequest]


class Item(BaseModel):
    item_id: str
    score: float
    title: str


class RecommendResponse(BaseModel):
    items: list[Item]
    skipped: list[str] = Field(description="unknown history ids left out (skip_unknown)")
    version: int = Field(0, description="the model version that answered (see hstu-blair update)")


class BatchResponse(BaseModel):
    results: list[RecommendResponse]


class NewItem(BaseModel):
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)
    item_id: Text = Field(min_length=1, max_length=256)
    text: Text = Field(min_length=1, max_length=100_000)
    title: Text = Field("", max_length=1000)


# ---- micro-batching ----------------------------------------------------------------------------------
class MicroBatcher(Generic[T, R]):
    """Gathers concurrent submissions into batches for one ``handle`` call each (in a thread).

    Args:
        handle: list of items -> list of results, same order.
        window_s: how long to wait for more items after the first (0 = take only what is queued).
        max_batch: largest batch (1 disables batching).
        observe: called with each batch's size (metrics).
    """

    POLL_S = 0.0005

    def __init__(
        self,
        handle: Callable[[list[T]], list[R]],
        window_s: float,
        max_batch: int,
        observe: Callable[[int], None] | None = None,
    ) -> None:
        if max_batch < 1 or window_s < 0:
            raise ValueError(f"max_batch must be >= 1 and window >= 0, got {max_batch} and {window_s}")
        self.handle, self.window_s, self.max_batch, self.observe = handle, window_s, max_batch, observe
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the worker on the running loop (done by the first ``submit`` if needed)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._task is None or self._task.done():
            self._loop, self._queue = loop, asyncio.Queue()
            self._task = loop.create_task(self._work())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def submit(self, item: T) -> R:
        """Queue ``item`` and wait for its result (exceptions of ``handle`` are re-raised)."""
        self.start()
        assert self._loop is not None and self._queue is not None
        future: asyncio.Future[R] = self._loop.create_future()
        self._queue.put_nowait((item, future))
        return await future

    async def _gather(self) -> list[tuple[T, asyncio.Future[R]]]:
        assert self._queue is not None and self._loop is not None
        batch = [await self._queue.get()]
        deadline = self._loop.time() + self.window_s
        while len(batch) < self.max_batch:
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            remaining = deadline - self._loop.time()
            if remaining <= 0 or len(batch) >= self.max_batch:
                break
            await asyncio.sleep(min(remaining, self.POLL_S))
        return batch

    async def _work(self) -> None:
        while True:
            batch = [(item, f) for item, f in await self._gather() if not f.done()]  # done = client gone
            if not batch:
                continue
            if self.observe is not None:
                self.observe(len(batch))
            try:
                results = await asyncio.to_thread(self.handle, [item for item, _ in batch])
            except Exception as exc:  # the batch fails as a whole; every caller gets the error
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results):
                if not future.done():
                    future.set_result(result)


# ---- metrics -----------------------------------------------------------------------------------------
class Metrics:
    """Prometheus metrics in a registry of their own (several apps may live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "hstu_blair_http_requests",
            "HTTP requests by route and status",
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


class MetricsMiddleware:
    """Counts and times every HTTP request by its route template (so ids do not become labels)."""

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
            path = getattr(scope.get("route"), "path", None)  # the template, e.g. /items/{item_id:path}
            if path is None:  # fixed routes (/docs) keep their path; the rest are not labelled one by one
                static = scope["path"].startswith("/static/")
                path = "/static" if static else scope["path"] if status != 404 else "other"
            self.metrics.requests.labels(scope["method"], path, str(status)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - start)


class CatchUpMiddleware:
    """Before each request: notice a new model version, and add the items other processes added
    to the run's store.

    The version check is one ``stat`` of the run's version pointer (a new version is loaded in the
    background, :class:`~hstu_blair.serving.live.LiveRecommender`); the store check one ``max(seq)``
    query in the event loop; only when it changed are the new items read, in a thread. Damaged
    items are set aside (logged once, counted in ``/healthz``)."""

    def __init__(self, app: Any, live: LiveRecommender) -> None:
        self.app, self.live = app, live

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http":
            self.live.check()
        recommender = self.live.current
        if scope["type"] == "http" and recommender.stale():
            try:
                added = await asyncio.to_thread(recommender.sync)
                if added:
                    log.info("caught up with %d items added by other processes", added)
            except (HstuBlairError, OSError) as exc:
                log.error("cannot read the store: %s", exc)
        await self.app(scope, receive, send)


# ---- the app -----------------------------------------------------------------------------------------
def _unprocessable(
    loc: Sequence[str | int], message: str, kind: str = "value_error", **extra: Any
) -> HTTPException:
    """A 422 whose body has FastAPI's validation-error shape: ``{"detail": [{loc, msg, type}]}``."""
    return HTTPException(422, detail=[{"loc": list(loc), "msg": _printable(message), "type": kind, **extra}])


def _printable(text: str) -> str:
    """``text`` with anything UTF-8 cannot encode escaped (so an echo can never fail to encode)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _response(result: Recommendations, version: int) -> RecommendResponse:
    return RecommendResponse(
        items=[Item(item_id=r.item_id, score=r.score, title=r.title) for r in result],
        skipped=result.skipped,
        version=version,
    )


def _run_batch(jobs: list[tuple[Recommender, PreparedQuery]]) -> list[Recommendations]:
    """Answer queued queries, each by the recommender (model version) that prepared it: one model
    call per version present (two only around a version switch)."""
    results: list[Recommendations | None] = [None] * len(jobs)
    groups: dict[int, tuple[Recommender, list[int]]] = {}
    for i, (rec, _) in enumerate(jobs):
        groups.setdefault(id(rec), (rec, []))[1].append(i)
    for rec, positions in groups.values():
        for i, result in zip(positions, rec.recommend_batch([jobs[i][1] for i in positions])):
            results[i] = result
    return results  # type: ignore[return-value]


def create_app(
    recommender: Recommender | LiveRecommender,
    max_k: int = 1000,
    max_history: int = 10_000,
    batch_window_ms: float = 2.0,
    max_batch: int = 64,
    max_queries: int = 1000,
    api_key: str | None = None,
) -> FastAPI:
    """The FastAPI app serving ``recommender``.

    Args:
        recommender: what to serve: a ``Recommender``, or a ``LiveRecommender`` to switch to new
            model versions without a restart (each request reads its current recommender once).
        max_k: largest ``k`` accepted (larger: 422).
        max_history: longest history accepted (longer: 422; the model reads the last ``max_len``).
        batch_window_ms: how long a queued request waits for others to share its model call.
        max_batch: most requests per model call (1 disables micro-batching).
        max_queries: most queries in one ``/recommend/batch`` body.
        api_key: token the write endpoints (``POST /items``) require as ``Authorization: Bearer
            <token>`` (compared in constant time; missing or wrong: 401). None: writes are open.
            Read endpoints never need it.

    Raises:
        ServingError: ``api_key`` is an empty string.
    """
    if api_key is not None and not api_key:
        raise ServingError("api_key is empty: give a token, or None to leave writes open")
    live = recommender if isinstance(recommender, LiveRecommender) else LiveRecommender(recommender)
    metrics = Metrics()
    metrics.items.set_function(lambda: live.current.num_items)
    metrics.set_aside.set_function(lambda: live.current.set_aside)
    batcher: MicroBatcher[tuple[Recommender, PreparedQuery], Recommendations] = MicroBatcher(
        _run_batch, batch_window_ms / 1000, max_batch, metrics.batch_size.observe
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(
        title="hstu-blair recommendations",
        version="1",
        description="Next-item recommendations from a trained HSTU / HSTU-BLaIR / SASRec run, in item ids.",
        lifespan=lifespan,
    )
    app.add_middleware(CatchUpMiddleware, live=live)
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: times the catch-up too

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        """FastAPI's 422 without echoing the input: the echo can be huge, or a NaN/inf float that JSON
        cannot encode (which turned a bad request into a 500)."""
        errors = [
            {
                "loc": [_printable(x) if isinstance(x, str) else x for x in e.get("loc", ())],
                "msg": _printable(str(e.get("msg", ""))),
                "type": str(e.get("type", "")),
            }
            for e in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)

    app.state.live, app.state.batcher, app.state.metrics = live, batcher, metrics
    app.state.recommender = live.current  # the first version (a LiveRecommender's current changes)
    expected = None if api_key is None else api_key.encode("utf-8")

    def require_api_key(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]) -> None:
        """401 unless the request carries ``Authorization: Bearer <api_key>``."""
        assert expected is not None
        if credentials is None:
            raise HTTPException(
                401,
                "this endpoint needs the server's API key as 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        given = credentials.credentials.encode("latin-1")  # the header's bytes, as sent
        if not hmac.compare_digest(given, expected):
            raise HTTPException(
                401, "wrong API key", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
            )

    writes = [] if api_key is None else [Depends(require_api_key)]
    app.include_router(events_router(live, writes, max_k=max_k))

    def prepare(
        recommender: Recommender, body: RecommendRequest, loc: tuple[str | int, ...]
    ) -> tuple[Recommender, PreparedQuery]:
        if body.k > max_k:
            raise _unprocessable((*loc, "k"), f"k={body.k} is above the limit of {max_k}")
        if body.history is not None and len(body.history) > max_history:
            raise _unprocessable(
                (*loc, "history"), f"history has {len(body.history)} items, above the limit of {max_history}"
            )
        query = Query(
            body.history,
            body.user_id,
            body.timestamps,
            body.query_time,
            body.k,
            body.exclude_seen,
            body.skip_unknown,
        )
        try:
            return recommender, recommender.prepare(query)
        except UnknownIdError as exc:
            field = "user_id" if exc.kind == "user" else "history"
            ids = [_printable(i) for i in exc.ids[:100]]
            raise _unprocessable((*loc, field), str(exc), "unknown_id", ids=ids) from None
        except ServingError as exc:
            raise _unprocessable(loc, str(exc)) from None

    @app.post("/recommend", response_model=RecommendResponse, tags=["recommend"])
    async def recommend(body: RecommendRequest) -> RecommendResponse:
        """The best ``k`` items after a history of item ids (or a known user's history)."""
        rec = live.current
        return _response(await batcher.submit(prepare(rec, body, ("body",))), rec.version)

    @app.post("/recommend/batch", response_model=BatchResponse, tags=["recommend"])
    async def recommend_batch(body: BatchRequest) -> BatchResponse:
        """Several queries in one body; answered together (each as ``/recommend``)."""
        if len(body.requests) > max_queries:
            raise _unprocessable(
                ("body", "requests"), f"{len(body.requests)} requests, above the limit of {max_queries}"
            )
        rec = live.current
        prepared = [prepare(rec, r, ("body", "requests", i)) for i, r in enumerate(body.requests)]
        results = await asyncio.gather(*(batcher.submit(p) for p in prepared))
        return BatchResponse(results=[_response(r, rec.version) for r in results])

    @app.get("/items", tags=["items"])
    async def search_items(
        query: str = QueryParam("", max_length=200), limit: int = QueryParam(20, ge=1, le=100)
    ) -> list[dict[str, str]]:
        """Items whose title (or item id) contains ``query``, case-insensitive."""
        return live.current.search_items(query, limit)

    @app.get("/items/{item_id:path}", tags=["items"])
    async def get_item(item_id: str) -> dict[str, str]:
        """One item: item id, title and text."""
        recommender = live.current
        if not recommender.has_item(item_id):
            raise HTTPException(404, detail=f"unknown item id: {item_id!r}")
        return recommender.item(item_id)

    @app.post("/items", status_code=201, tags=["items"], dependencies=writes)
    async def add_item(body: NewItem) -> dict[str, str]:
        """Add an item by its text; it is recommendable at once (text-fused runs only), and kept in
        the run directory (201 only once it is written durably). Needs the API key if one is set."""
        recommender = live.current
        if not recommender.can_add_items:
            raise HTTPException(
                400,
                detail=f"this run's model is ID-only (fusion {recommender.fusion!r}): items cannot be added "
                f"at run time; serve a run trained with model.fusion = {fusions_for_new_items()}",
            )
        if recommender.has_item(body.item_id):
            raise HTTPException(409, detail=f"item id {body.item_id!r} is already in the catalogue")
        try:
            return await run_in_threadpool(recommender.add_item, body.item_id, body.text, body.title)
        except DuplicateItemError:  # added by another process since the check above
            raise HTTPException(409, detail=f"item id {body.item_id!r} is already in the catalogue") from None
        except ItemLogError as exc:
            raise HTTPException(503, detail=str(exc)) from None
        except ServingError as exc:
            raise _unprocessable(("body",), str(exc)) from None
        except (HstuBlairError, ImportError, OSError) as exc:  # the encoder cannot be loaded here
            raise HTTPException(503, detail=f"the text encoder is not available: {exc}") from None

    @app.get("/similar", tags=["items"])
    async def similar(item_id: str, k: int = QueryParam(10, ge=1)) -> RecommendResponse:
        """Items whose vectors are closest (cosine) to ``item_id``'s."""
        if k > max_k:
            raise _unprocessable(("query", "k"), f"k={k} is above the limit of {max_k}")
        recommender = live.current
        if not recommender.has_item(item_id):
            raise _unprocessable(("query", "item_id"), f"unknown item id: {item_id!r}", "unknown_id")
        return _response(await run_in_threadpool(recommender.similar_items, item_id, k), recommender.version)

    @app.get("/healthz", tags=["service"])
    async def healthz() -> dict[str, Any]:
        """Liveness and what is served."""
        recommender = live.current
        return {
            "status": "ok",
            "model_calls": recommender.model_calls,
            "writes_need_api_key": api_key is not None,
            **recommender.describe(),
            "version_swaps": live.swaps,
            "failed_version_loads": live.failed_loads,
        }

    @app.get("/metrics", tags=["service"])
    async def prometheus() -> Response:
        """Prometheus metrics: requests, latencies, batch sizes, catalogue size."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


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
        f"(POST /items) and events (POST /events), which are kept in the run's store. Set {API_KEY_ENV} or pass --api-key, "
        "or bind 127.0.0.1 behind a proxy"
    )


def serve(
    run_dir: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    checkpoint: str = "best",
    device: str = "cpu",
    index: str = "exact",
    max_k: int = 1000,
    batch_window_ms: float = 2.0,
    max_batch: int = 64,
    log_level: str = "info",
    threads: int | None = None,
    api_key: str | None = None,
    store: str | None = None,
) -> None:
    """Load a run and serve it with uvicorn until interrupted.

    Binds loopback unless ``host`` says otherwise. ``api_key`` (default: the environment variable
    ``HSTU_BLAIR_API_KEY``, if set and not empty) is the token ``POST /items`` requires as
    ``Authorization: Bearer <token>``; reads stay open. Binding beyond loopback without one logs
    and prints a warning. Items added through any process serving ``run_dir`` are kept in it and
    served by all of them; ``store`` names the store (a SQLite path or PostgreSQL URL; default
    ``RUN_DIR/store.sqlite``). ``threads`` sets torch's intra-op threads (default: torch's choice; 1 is
    fastest when other processes share the cores). Other arguments: see :func:`create_app` and
    :meth:`Recommender.load`.

    Raises:
        ServingError: ``api_key`` is an empty string.
    """
    if api_key is None:
        api_key = os.environ.get(API_KEY_ENV) or None
    if api_key is not None and not api_key:
        raise ServingError(f"the API key is empty: give a token, or leave it out (and {API_KEY_ENV} unset)")
    if threads:
        torch.set_num_threads(threads)
    live = LiveRecommender.load(run_dir, checkpoint=checkpoint, device=device, index=index, store=store)
    recommender = live.current
    app = create_app(live, max_k=max_k, batch_window_ms=batch_window_ms, max_batch=max_batch, api_key=api_key)
    warning = exposure_warning(host, api_key)
    if warning is not None:
        log.warning(warning)
        print(f"WARNING: {warning}", file=sys.stderr)
    log.info(
        "serving %s (%d items, %d added at run time) on http://%s:%d; writes %s",
        run_dir,
        recommender.num_items,
        recommender.describe()["added_items"],
        host,
        port,
        "need the API key" if api_key else "are open",
    )
    uvicorn.run(app, host=host, port=port, log_level=log_level)
