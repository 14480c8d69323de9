"""What every router of the service shares: the served model version, the limits, the token, the
metrics, the micro-batcher, the threads that run work off the event loop, and the fields of
``/healthz``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from fastapi import HTTPException
from starlette.requests import HTTPConnection

from hstu_blair.serving.http.auth import WriteAuth
from hstu_blair.serving.http.batcher import MicroBatcher
from hstu_blair.serving.http.metrics import Metrics
from hstu_blair.serving.limits import BATCH_WINDOW_MS, MAX_BATCH, Limits
from hstu_blair.serving.live import LiveRecommender
from hstu_blair.serving.recommender import PreparedQuery, Recommendations, Recommender

R = TypeVar("R")


@dataclass
class ServingContext:
    """Shared by the routers of one app (``create_app`` builds it; ``app.state.context`` holds it).

    Attributes:
        live: what is served: ``live.current`` is the recommender of the model version served now
            (it changes when ``hstu-blair update`` moves the run's version pointer). A route reads
            :attr:`recommender` once and uses that object for the whole request, so an answer
            never mixes two versions.
        limits: request limits (checked by the routes and :class:`~.limits.RequestGuard`).
        auth: the tokens; a write route declares ``dependencies=auth.dependencies``, a route
            revealing a user's history ``auth.read_dependencies`` (or calls :meth:`check_read`).
        metrics: the Prometheus registry (``metrics.registry``) a router registers its own in.
        batcher: gathers concurrent queries into one model call (per model version: submit
            ``(recommender, prepared query)``).
        health: extra ``/healthz`` fields, name -> function of no arguments (shown to everyone).
        private_health: ``/healthz`` fields shown only to requests carrying the token
            (filesystem paths and the like).
    """

    live: LiveRecommender
    limits: Limits
    auth: WriteAuth
    metrics: Metrics
    batcher: MicroBatcher[tuple[Recommender, PreparedQuery], Recommendations] = field(init=False)
    batch_window_s: float = BATCH_WINDOW_MS / 1000
    max_batch: int = MAX_BATCH
    health: dict[str, Callable[[], Any]] = field(default_factory=dict)
    private_health: dict[str, Callable[[], Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.threads = anyio.CapacityLimiter(self.limits.workers)
        self.batcher = MicroBatcher(
            run_batch,
            self.batch_window_s,
            self.max_batch,
            self.metrics.batch_size.observe,
            offload=self.offload,
        )

    def check_read(self, request: HTTPConnection) -> None:
        """401 (counted as refused) unless ``request`` may see users' histories: it carries the
        read or the write token, or no token is set."""
        try:
            self.auth.check(request.headers.get("authorization"), "read")
        except HTTPException:
            self.metrics.refused.labels("unauthorized").inc()
            raise

    @property
    def recommender(self) -> Recommender:
        """The recommender of the version served now (read it once per request)."""
        return self.live.current

    async def offload(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """``fn(*args, **kwargs)`` in one of the service's worker threads (``limits.workers`` of
        them, shared by every route), so the event loop keeps answering meanwhile."""
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), limiter=self.threads)


def run_batch(jobs: list[tuple[Recommender, PreparedQuery]]) -> list[Recommendations]:
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
