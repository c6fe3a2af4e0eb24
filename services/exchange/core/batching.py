"""Group commit: one statement for the items many concurrent requests submit at about once.

`Coalescer.submit(item)` waits for the result of `flush(batch)`, where `batch` holds the items
submitted while earlier flushes were running (at most `max_weight` of them, by `weight`). An idle
coalescer flushes on the next turn of the event loop, so a lone request waits for nothing; under
load each statement carries many requests, which is what lets Postgres and the client do a
fraction of the per-statement work (parse, plan, round trip, WAL record, pool checkout) per
request. `max_concurrent` flushes run at once, each on its own pooled connection.

Items with the same `key` never share a batch nor run in two batches at once: an item whose key
is busy waits for the next flush (callers rely on that to keep row-level upserts free of
"cannot affect row a second time" and to serialise one key's claims within a process).

`flush` returns one result per item, in order; a result that is an exception instance is raised
to that item's caller alone. When `flush` itself raises, every item of the batch gets the error.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    """Batches concurrent `submit()` calls into calls of `flush(items) -> results`."""

    def __init__(
        self,
        flush: Callable[[list[T]], Awaitable[list[R | BaseException]]],
        *,
        max_weight: int = 256,
        max_concurrent: int = 2,
        weight: Callable[[T], int] | None = None,
        key: Callable[[T], Hashable] | None = None,
        observe: Callable[[int], object] | None = None,
    ) -> None:
        if max_weight < 1 or max_concurrent < 1:
            raise ValueError("max_weight and max_concurrent must be at least 1")
        self._flush = flush
        self.max_weight = max_weight
        self.max_concurrent = max_concurrent
        self._weight = weight or (lambda _item: 1)
        self._key = key
        self.observe = observe  # called with each batch's item count (a histogram's observe)
        self._pending: deque[tuple[T, asyncio.Future[R]]] = deque()
        self._busy_keys: set[Hashable] = set()
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()  # the loop keeps only weak references
        self.batches = 0  # flushes so far, and the items they carried (for tests and metrics)
        self.items = 0

    async def submit(self, item: T) -> R:
        """The result of `item` once the flush that carried it is done (or its error)."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._maybe_start()
        return await future

    def _maybe_start(self) -> None:
        if self._running < self.max_concurrent and self._pending:
            self._running += 1
            asyncio.get_running_loop().call_soon(self._start)

    def _start(self) -> None:
        batch = self._take()
        if not batch:
            self._running -= 1
            return
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _take(self) -> list[tuple[T, asyncio.Future[R]]]:
        """The oldest submitted items whose keys are free, up to `max_weight` (at least one)."""
        batch: list[tuple[T, asyncio.Future[R]]] = []
        skipped: list[tuple[T, asyncio.Future[R]]] = []
        weight = 0
        while self._pending:
            item, future = self._pending.popleft()
            if future.done():  # its caller went away before the flush
                continue
            key = self._key(item) if self._key is not None else None
            if key is not None and key in self._busy_keys:
                skipped.append((item, future))
                continue
            w = self._weight(item)
            if batch and weight + w > self.max_weight:
                self._pending.appendleft((item, future))
                break
            if key is not None:
                self._busy_keys.add(key)
            batch.append((item, future))
            weight += w
        self._pending.extendleft(reversed(skipped))
        return batch

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        items = [item for item, _ in batch]
        if self.observe is not None:
            self.observe(len(items))
        try:
            results = await self._flush(items)
            if len(results) != len(items):
                raise RuntimeError(f"flush returned {len(results)} results for {len(items)} items")
        except BaseException as exc:  # every caller of the batch sees the failure
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
        finally:
            self.batches += 1
            self.items += len(batch)
            if self._key is not None:
                for item in items:
                    self._busy_keys.discard(self._key(item))
            self._running -= 1
            self._maybe_start()
