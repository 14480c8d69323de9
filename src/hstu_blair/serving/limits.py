"""What one request to the service may ask for (:class:`Limits`), with the defaults ``serve``
documents. Plain values, no HTTP here: :mod:`hstu_blair.serving.http.limits` enforces them.

Defaults: ``k`` <= 1,000; history <= 10,000 items per query; 1,000 queries per batch; 200,000
history items and 100,000 results (the sum of ``k``) per request, so the work of a batch, which
grows as queries x history length and queries x k, stays bounded; 10,000 events per
``POST /events``; bodies up to 1 MiB on ``/recommend`` and ``POST /items``, 8 MiB on
``/recommend/batch`` and ``POST /events``, and 64 KiB on any other route.

What connections may hold (:class:`ConnectionLimits`, enforced by
:mod:`hstu_blair.serving.http.connections`): 1,000 open connections (above it the least recently
active idle one is closed), 10 s to send a request's head, 5 s idle between requests, a listen
backlog of 2,048, and one log line per kind of message per 10 s.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

KIB, MIB = 1024, 1024 * 1024

HOST = "127.0.0.1"
"""Where ``serve`` binds by default (loopback)."""
PORT = 8000
BATCH_WINDOW_MS = 2.0
"""How long a request waits for concurrent ones to share its model call."""
MAX_BATCH = 64
"""Most queries in one model call."""
BODY_BYTES: Mapping[str, int] = MappingProxyType(
    {"/recommend": 1 * MIB, "/recommend/batch": 8 * MIB, "/items": 1 * MIB, "/events": 8 * MIB}
)
"""Default body limits by route path; any other route gets ``Limits.default_body_bytes``."""


MAX_CONNECTIONS = 1000
"""Most open connections; the file limit (``ulimit -n``) less :data:`FD_RESERVE` lowers it."""
FD_RESERVE = 128
"""File descriptors kept for the store, model files and logs when the file limit lowers the cap."""
REQUEST_HEAD_S = 10.0
"""Seconds a connection has, from its start or its previous response, to send a request's head."""
KEEP_ALIVE_S = 5
"""Seconds an idle keep-alive connection stays open after a response (uvicorn's ``timeout_keep_alive``)."""
BACKLOG = 2048
"""Connections the kernel queues before they are accepted (uvicorn's ``backlog``; capped by somaxconn)."""
LOG_REPEAT_S = 10.0
"""Seconds within which a log message of one kind is written once (the rest counted)."""


@dataclass(frozen=True)
class ConnectionLimits:
    """What the server's connections may hold; every value is in seconds or a count.

    Attributes:
        max_connections: most open connections. A connection beyond it closes the least recently
            active idle one (no request running), as nginx reuses keep-alive connections; when
            none is idle the new one is answered 503 and closed. Bounds the file descriptors.
        request_head_s: a connection that has not sent a complete request head this long after it
            opened, or after its previous response, is closed (idle and slow-header connections).
        keep_alive_s: an idle connection is closed this long after its last response.
        backlog: connections queued by the kernel before they are accepted.
        log_repeat_s: a log message of one kind is written at most once per this many seconds,
            with the count of those left out; all are counted in ``/metrics``.

    Raises:
        ValueError: a value that is not positive.
    """

    max_connections: int = MAX_CONNECTIONS
    request_head_s: float = REQUEST_HEAD_S
    keep_alive_s: int = KEEP_ALIVE_S
    backlog: int = BACKLOG
    log_repeat_s: float = LOG_REPEAT_S

    def __post_init__(self) -> None:
        bad = {
            k: v
            for k, v in self.__dict__.items()
            if isinstance(v, bool) or not isinstance(v, int | float) or not v > 0
        }
        if bad:
            raise ValueError(f"connection limits must be positive, got {bad}")


@dataclass(frozen=True)
class Limits:
    """What one request may ask for. Every limit answers 4xx naming itself; none is a 5xx.

    Attributes:
        max_k: largest ``k`` of a query (422).
        max_history: longest history of a query (422; the model reads its last ``max_len``
            items, the whole history is excluded from the results).
        max_queries: most queries in one ``/recommend/batch`` body (422).
        max_batch_history: most history items summed over the queries of one request (422).
        max_batch_results: most results (``k``) summed over the queries of one request (422).
        max_events: most events in one ``POST /events`` body (422).
        body_bytes: body limit in bytes by route path (413); routes not listed get
            ``default_body_bytes``.
        default_body_bytes: body limit of every other route (413).
        workers: threads that run preparation and scoring off the event loop (shared by all routes).

    Raises:
        ValueError: a limit that is not a positive integer.
    """

    max_k: int = 1000
    max_history: int = 10_000
    max_queries: int = 1000
    max_batch_history: int = 200_000
    max_batch_results: int = 100_000
    max_events: int = 10_000
    body_bytes: Mapping[str, int] = field(default_factory=lambda: dict(BODY_BYTES))
    default_body_bytes: int = 64 * KIB
    workers: int = 4

    def __post_init__(self) -> None:
        numbers = {k: v for k, v in self.__dict__.items() if k != "body_bytes"}
        values = {**numbers, **self.body_bytes}
        bad = {k: v for k, v in values.items() if isinstance(v, bool) or not isinstance(v, int) or v < 1}
        if bad:
            raise ValueError(f"limits must be positive integers, got {bad}")

    def body_limit(self, path: str | None) -> int:
        """The body limit of the route with this path template."""
        return self.body_bytes.get(path or "", self.default_body_bytes)


_SIZE = re.compile(r"^\s*(\d+)\s*(|b|k|kb|kib|m|mb|mib)\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes from ``"65536"``, ``"64KiB"``, ``"8MiB"`` (k and m are binary: 1024, 1024**2).

    Raises:
        ValueError: not a size.
    """
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"not a size: {text!r} (expected e.g. 65536, 64KiB or 8MiB)")
    unit = match.group(2).lower()[:1]
    return int(match.group(1)) * {"": 1, "b": 1, "k": KIB, "m": MIB}[unit]
