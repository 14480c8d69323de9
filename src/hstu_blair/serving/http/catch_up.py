"""Before each request: switch to a new model version, and add the items other server processes
committed to the run's store."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from hstu_blair.errors import HstuBlairError
from hstu_blair.serving.live import LiveRecommender

log = logging.getLogger("hstu_blair.serving.app")


class CatchUpMiddleware:
    """Before each request: notice a new model version, and add the items other processes added
    to the run's store.

    Both checks run in a thread, never in the event loop: the version check is one ``stat`` of
    the run's version pointer (a new version is then loaded in the background and swapped in,
    :class:`~hstu_blair.serving.live.LiveRecommender`), the store check one ``max(seq)`` query
    (a network round trip on PostgreSQL); only when it changed are the new items read. Concurrent
    requests share one poll in flight. Damaged items are set aside (logged once, counted in
    ``/healthz``); a store that cannot be read is logged and the catalogue served as it is."""

    def __init__(self, app: Any, live: LiveRecommender) -> None:
        self.app, self.live = app, live
        self._poll: asyncio.Future[None] | None = None

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http":
            poll = self._poll
            if poll is None or poll.done():
                poll = self._poll = asyncio.ensure_future(asyncio.to_thread(self._catch_up))
            await asyncio.shield(poll)  # a client that leaves does not cancel the others' poll
        await self.app(scope, receive, send)

    def _catch_up(self) -> None:
        try:
            self.live.check()
            added = self.live.current.sync()  # one max(seq) query when nothing changed
            if added:
                log.info("caught up with %d items added by other processes", added)
        except (HstuBlairError, OSError) as exc:
            log.error("cannot read the store: %s", exc)
        except Exception:  # noqa: BLE001 - a failed poll must not fail the request it precedes
            log.exception("catching up with the store failed; serving what is loaded")
