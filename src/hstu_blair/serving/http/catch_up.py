"""Before each request: add the items other server processes appended to the run's item log."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from hstu_blair.errors import HstuBlairError
from hstu_blair.serving.recommender import Recommender

log = logging.getLogger("hstu_blair.serving.app")


class CatchUpMiddleware:
    """Before each request: add the items other processes appended to the run's item log.

    The check is one ``os.stat`` in the event loop; only when the log changed is it read, in a
    thread. A corrupt record is logged (once per change of the file) and the catalogue served as
    it is; ``POST /items`` then answers 503 naming the record."""

    def __init__(self, app: Any, recommender: Recommender) -> None:
        self.app, self.recommender = app, recommender

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and self.recommender.stale():
            try:
                added = await asyncio.to_thread(self.recommender.sync)
                if added:
                    log.info("caught up with %d items added by other processes", added)
            except (HstuBlairError, OSError) as exc:
                log.error("cannot read the item log: %s", exc)
        await self.app(scope, receive, send)
