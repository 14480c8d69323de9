"""Log lines that cannot flood: a message of one kind is written at most once per interval.

A kind is the logger, the level, the first line of the message template (before its arguments
are filled in) and the exception's type and errno, so 280,000 "Too many open files" tracebacks
from the accept loop, or the same error on every request, are one line per interval. The next
line of a kind after its interval says how many were left out; every one left out is counted by
source (:data:`SOURCES`, a fixed set) and shown in ``/metrics`` as ``hstu_blair_log_suppressed``.

:class:`FloodFilter` sits on the handlers (:func:`install`), so it sees the records of every
logger, children included, that reach them; a record that passes several handlers is decided once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from hstu_blair.serving.limits import LOG_REPEAT_S

SOURCES = ("asyncio", "uvicorn", "hstu_blair", "other")
"""Where a suppressed line came from, by the first part of its logger's name (the metric's label)."""
MAX_KINDS = 1024
"""Kinds remembered at once; beyond it the kinds seen in the last interval share one."""
_DECIDED = "_hstu_blair_flood_pass"

Kind = tuple[str, int, str, str, object]


def source_of(logger_name: str) -> str:
    """The label of a logger: ``asyncio``, ``uvicorn``, ``hstu_blair`` or ``other``."""
    head = logger_name.split(".", 1)[0]
    return head if head in SOURCES else "other"


def kind_of(record: logging.LogRecord) -> Kind:
    """What makes two records the same kind of message (not their arguments)."""
    exc = record.exc_info[1] if record.exc_info else None
    first_line = str(record.msg).split("\n", 1)[0]
    return (record.name, record.levelno, first_line, type(exc).__name__, getattr(exc, "errno", None))


class FloodFilter(logging.Filter):
    """Passes the first record of a kind per ``interval_s`` seconds; counts the others.

    Args:
        interval_s: seconds within which a kind is written once.
        clock: monotonic seconds (tests give their own).
    """

    def __init__(self, interval_s: float = LOG_REPEAT_S, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval_s, self.clock = interval_s, clock
        self.suppressed = dict.fromkeys(SOURCES, 0)
        self._kinds: dict[Kind, list[float]] = {}  # kind -> [window start, suppressed in it]
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether ``record`` is written; decided once per record, whichever handler asks first."""
        decided = getattr(record, _DECIDED, None)
        if decided is None:
            decided = self._decide(record)
            setattr(record, _DECIDED, decided)
        return decided

    def _decide(self, record: logging.LogRecord) -> bool:
        now, kind = self.clock(), kind_of(record)
        with self._lock:
            if kind not in self._kinds and len(self._kinds) >= MAX_KINDS:
                self._forget(now)
                if len(self._kinds) >= MAX_KINDS:
                    kind = (record.name, record.levelno, "<too many kinds>", "", None)
            entry = self._kinds.get(kind)
            if entry is not None and now - entry[0] < self.interval_s:
                entry[1] += 1
                self.suppressed[source_of(record.name)] += 1
                return False
            self._kinds[kind] = [now, 0]
        if entry is not None and entry[1]:
            record.msg = (
                f"{record.msg} [{int(entry[1])} more like this left out in the last {now - entry[0]:.0f} s]"
            )
        return True

    def _forget(self, now: float) -> None:
        """Drop the kinds whose interval is over (their left-out count was already counted)."""
        for kind in [k for k, (start, _) in self._kinds.items() if now - start >= self.interval_s]:
            del self._kinds[kind]


def handlers() -> list[logging.Handler]:
    """The handlers the service's messages reach: the root logger's and uvicorn's (not the access
    log, one line per request by design), or Python's last-resort handler when root has none."""
    found = [*logging.getLogger().handlers, *logging.getLogger("uvicorn").handlers]
    if not logging.getLogger().handlers and logging.lastResort is not None:
        found.append(logging.lastResort)
    return list(dict.fromkeys(found))


def install(flood: FloodFilter) -> list[logging.Handler]:
    """Attach ``flood`` to :func:`handlers` (after uvicorn has configured logging); returns them."""
    found = handlers()
    for handler in found:
        handler.addFilter(flood)
    return found


def uninstall(flood: FloodFilter, found: list[logging.Handler]) -> None:
    """Take ``flood`` off the handlers :func:`install` returned."""
    for handler in found:
        handler.removeFilter(flood)


class SuppressedCollector(Collector):
    """``hstu_blair_log_suppressed_total{source}``: log lines a :class:`FloodFilter` left out."""

    def __init__(self, flood: FloodFilter) -> None:
        self.flood = flood

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "hstu_blair_log_suppressed",
            "log lines left out as repeats of one kind within the interval, by source",
            labels=["source"],
        )
        for source, n in self.flood.suppressed.items():
            family.add_metric([source], n)
        yield family
