"""What every router of the service shares: the recommender, the limits, the token, the metrics,
the micro-batcher, the threads that run work off the event loop, and the fields of ``/healthz``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from hstu_blair.serving.http.auth import WriteAuth
from hstu_blair.serving.http.batcher import MicroBatcher
from hstu_blair.serving.http.metrics import Metrics
from hstu_blair.serving.limits import Limits
from hstu_blair.serving.recommender import PreparedQuery, Recommendations, Recommender

R = TypeVar("R")


@dataclass
class ServingContext:
    """Shared by the routers of one app (``create_app`` builds it; ``app.state.context`` holds it).

    Attributes:
        recommender: what is served.
        limits: request limits (checked by the routes and :class:`~.limits.RequestGuard`).
        auth: the write token; a write route declares ``dependencies=auth.dependencies``.
        metrics: the Prometheus registry (``metrics.registry``) a router registers its own in.
        batcher: gathers concurrent queries into one model call.
        health: extra ``/healthz`` fields, name -> function of no arguments (shown to everyone).
        private_health: ``/healthz`` fields shown only to requests carrying the token
            (filesystem paths and the like).
    """

    recommender: Recommender
    limits: Limits
    auth: WriteAuth
    metrics: Metrics
    batcher: MicroBatcher[PreparedQuery, Recommendations] = field(init=False)
    batch_window_s: float = 0.002
    max_batch: int = 64
    health: dict[str, Callable[[], Any]] = field(default_factory=dict)
    private_health: dict[str, Callable[[], Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.threads = anyio.CapacityLimiter(self.limits.workers)
        self.batcher = MicroBatcher(
            self.recommender.recommend_batch,
            self.batch_window_s,
            self.max_batch,
            self.metrics.batch_size.observe,
            offload=self.offload,
        )

    async def offload(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """``fn(*args, **kwargs)`` in one of the service's worker threads (``limits.workers`` of
        them, shared by every route), so the event loop keeps answering meanwhile."""
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), limiter=self.threads)
