"""Bounded connections: a cap on open connections and a deadline for each request head.

uvicorn alone accepts connections until the process runs out of file descriptors (each idle one
is kept until the client leaves: its keep-alive timeout starts only after a first response), and
``limit_concurrency`` answers 503 to every request, health probes included, once idle connections
fill it. :class:`ConnectionGuard` instead keeps at most ``max_connections`` open: a new connection
beyond it closes the least recently active idle connection (no request running), as nginx reuses
keep-alive connections when it runs out; when every connection is busy the new one is answered 503
and closed. A connection must send a complete request head within ``request_head_s`` of opening
or of its previous response (idle and slow-header clients), and uvicorn's keep-alive timeout
closes one idle after a response. So 20,000 idle connections cost at most ``max_connections``
descriptors and a health probe still gets in.

:func:`build_server` wires the guard into uvicorn by subclassing its HTTP protocol.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections import OrderedDict
from typing import Any

import uvicorn

from hstu_blair.serving.http.metrics import Metrics
from hstu_blair.serving.limits import FD_RESERVE, ConnectionLimits

log = logging.getLogger(__name__)
FULL = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b'content-length: 52\r\n\r\n{"detail":"too many connections: every one is busy"}'
)


def connection_cap(wanted: int) -> int:
    """``wanted``, lowered to the file limit (``ulimit -n``) less :data:`FD_RESERVE` (at least 1)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or wanted <= soft - FD_RESERVE:
        return wanted
    return max(1, soft - FD_RESERVE)


def is_idle(protocol: Any) -> bool:
    """Whether a uvicorn HTTP protocol has no request running (none yet, or its response sent)."""
    cycle = getattr(protocol, "cycle", None)
    return cycle is None or bool(cycle.response_complete)


class ConnectionGuard:
    """The open connections of one server, least recently active first, and the cap on them."""

    def __init__(self, max_connections: int, request_head_s: float, metrics: Metrics | None = None) -> None:
        self.max_connections, self.request_head_s, self.metrics = max_connections, request_head_s, metrics
        self.open: OrderedDict[Any, None] = OrderedDict()

    def admit(self, protocol: Any) -> bool:
        """Register a new connection; close idle ones beyond the cap, or this one if all are busy."""
        self.open[protocol] = None
        while len(self.open) > self.max_connections:
            victim = next((p for p in self.open if p is not protocol and is_idle(p)), None)
            if victim is None:
                protocol.transport.write(FULL)
                self.close(protocol, "full")
                return False
            self.close(victim, "evicted_idle")
        self._gauge()
        return True

    def touch(self, protocol: Any) -> None:
        """``protocol`` was active: it is the last to be closed for a new connection."""
        if protocol in self.open:
            self.open.move_to_end(protocol)

    def close(self, protocol: Any, reason: str) -> None:
        """Close ``protocol``'s connection to stay within the limits, counted by ``reason``."""
        self.discard(protocol)
        protocol.transport.close()
        if self.metrics is not None:
            self.metrics.connections_closed.labels(reason).inc()

    def discard(self, protocol: Any) -> None:
        self.open.pop(protocol, None)
        self._gauge()

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.connections.set(len(self.open))


def guarded(base: type[asyncio.Protocol], guard: ConnectionGuard) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol ``base`` (h11 or httptools) under ``guard``."""

    class Guarded(base):  # type: ignore[valid-type,misc]
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            if guard.admit(self):
                self._await_head()

        def connection_lost(self, exc: Exception | None) -> None:
            guard.discard(self)
            self._cancel_head_timer()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            guard.touch(self)
            super().data_received(data)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            guard.touch(self)
            if not self.transport.is_closing():
                self._await_head()

        def _await_head(self) -> None:
            """Close the connection if no new request has started ``request_head_s`` from now."""
            self._cancel_head_timer()
            cycle = self.cycle
            self._head_timer = self.loop.call_later(guard.request_head_s, self._head_deadline, cycle)

        def _head_deadline(self, cycle: object) -> None:
            self._head_timer = None
            if self.cycle is cycle and not self.transport.is_closing():
                guard.close(self, "head_timeout")

        def _cancel_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

    Guarded.__name__ = Guarded.__qualname__ = f"Guarded{base.__name__}"
    return Guarded


def build_server(
    app: Any, host: str, port: int, limits: ConnectionLimits, log_level: str = "info"
) -> uvicorn.Server:
    """A uvicorn server of ``app`` within ``limits`` (its metrics, if ``app.state.metrics``, count
    the connections); run it with ``server.run()`` (or ``server.run(sockets=[sock])``)."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        backlog=limits.backlog,
        timeout_keep_alive=limits.keep_alive_s,
    )
    config.load()
    cap = connection_cap(limits.max_connections)
    if cap < limits.max_connections:
        log.warning(
            "at most %d connections (not %d): the file limit (ulimit -n) is %d; raise it to allow more",
            cap,
            limits.max_connections,
            resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        )
    guard = ConnectionGuard(cap, limits.request_head_s, getattr(app.state, "metrics", None))
    config.http_protocol_class = guarded(config.http_protocol_class, guard)
    server = uvicorn.Server(config)
    server.guard = guard  # type: ignore[attr-defined]
    return server
