"""Micro-batching: concurrent submissions gathered into one ``handle`` call each, run off the loop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


async def _to_thread(fn: Callable[[list[T]], list[R]], items: list[T]) -> list[R]:
    return await asyncio.to_thread(fn, items)


class MicroBatcher(Generic[T, R]):
    """Gathers concurrent submissions into batches for one ``handle`` call each (in a thread).

    One worker task takes the first queued item, gathers more for up to ``window_s`` (or until
    ``max_batch``), runs ``handle`` on them off the event loop and resolves each item's future.
    Items that arrive while ``handle`` runs form the next batch, in arrival order.

    Args:
        handle: list of items -> list of results, same order.
        window_s: how long to wait for more items after the first (0 = take only what is queued).
        max_batch: largest batch (1 disables batching).
        observe: called with each batch's size (metrics).
        offload: how ``handle`` is run off the event loop (default: ``asyncio.to_thread``).
    """

    POLL_S = 0.0005

    def __init__(
        self,
        handle: Callable[[list[T]], list[R]],
        window_s: float,
        max_batch: int,
        observe: Callable[[int], None] | None = None,
        offload: Callable[[Callable[[list[T]], list[R]], list[T]], Awaitable[list[R]]] | None = None,
    ) -> None:
        if max_batch < 1 or window_s < 0:
            raise ValueError(f"max_batch must be >= 1 and window >= 0, got {max_batch} and {window_s}")
        self.handle, self.window_s, self.max_batch, self.observe = handle, window_s, max_batch, observe
        self.offload = offload or _to_thread
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

    async def submit_many(self, items: list[T]) -> list[R]:
        """Results of many items, submitted ``max_batch`` at a time: each chunk waits for the
        previous one, so requests queued meanwhile share the next model call instead of waiting
        for the whole list."""
        results: list[R] = []
        for start in range(0, len(items), self.max_batch):
            chunk = items[start : start + self.max_batch]
            results.extend(await asyncio.gather(*(self.submit(item) for item in chunk)))
        return results

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
                results = await self.offload(self.handle, [item for item, _ in batch])
            except Exception as exc:  # the batch fails as a whole; every caller gets the error
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results):
                if not future.done():
                    future.set_result(result)
