"""A bounded micro-batcher: concurrent callers' items are flushed together, each caller
still getting its own result.

Batches form by themselves under load: a flush starts as soon as a flusher is free and
takes what is queued, so while one batch commits the next one fills. With several
flushers each batch takes at most its flusher's share of the items in flight lately
(the peak over the last `PEAK_WINDOW_S` or two), so a burst is split between them and
one batch's work in Python overlaps another's time in the database, instead of one
flusher taking everything while the others idle. Under load, `wait_s_max` lets a
batch's first item wait a little longer for company, up to that share (the clients
just answered send their next requests); a batch after one that went alone does not
wait, so a request on an idle server is not held back.
Everything is bounded: batch size, flushes in flight, queue length (beyond it, callers
get 503 at once instead of queueing without end).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from payflow.errors import PayFlowError

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)

PEAK_WINDOW_S = 0.5


@dataclass
class BatcherStats:
    batches: int = 0
    items: int = 0
    size_max_seen: int = 0
    rejected: int = 0

    def record(self, size: int) -> None:
        self.batches += 1
        self.items += size
        self.size_max_seen = max(self.size_max_seen, size)


@dataclass
class MicroBatcher(Generic[T, R]):
    flush: Callable[[list[T]], Awaitable[list[R]]]
    size_max: int
    concurrency: int
    queue_max: int
    wait_s_max: float = 0.0
    name: str = "batcher"
    # Run once the last batch has finished (e.g. to give back what the flushes held).
    on_close: Callable[[], Awaitable[None]] | None = None
    stats: BatcherStats = field(default_factory=BatcherStats)

    def __post_init__(self) -> None:
        assert self.size_max >= 1 and self.concurrency >= 1 and self.queue_max >= 1
        self._queue: deque[tuple[T, asyncio.Future[R]]] = deque()
        self._ready = asyncio.Event()
        self._slots = asyncio.Semaphore(self.concurrency)
        self._flushes: set[asyncio.Task[None]] = set()
        self._closed = False
        # Whether the last batch had company (or there was none yet): only then does the
        # next one linger for `wait_s_max` (and only below its share).
        self._loaded = True
        # Items in the batches being flushed now; the most in flight (queued or being
        # flushed) in this window of PEAK_WINDOW_S and in the one before.
        self._flushing = 0
        self._peak_now = self._peak_before = 0
        self._window_started = 0.0
        self._dispatcher = asyncio.create_task(self._dispatch(), name=f"{self.name}-dispatch")

    @property
    def loaded(self) -> bool:
        """Whether more batches are likely soon: items are waiting, or the last batch had
        company."""
        return bool(self._queue) or self._loaded

    async def submit(self, item: T) -> R:
        """Queue `item` for the next batch and wait for its own result."""
        if self._closed:
            raise PayFlowError("shutting_down", "the server is shutting down", http_status=503)
        if len(self._queue) >= self.queue_max:
            self.stats.rejected += 1
            raise PayFlowError(
                "overloaded", "too many requests in flight; retry shortly", http_status=503
            )
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._ready.set()
        # A caller that goes away (client disconnect) must not cancel the item: it may
        # already be in a batch that commits. Shielding lets the batch finish regardless.
        return await asyncio.shield(future)

    async def _dispatch(self) -> None:
        while True:
            if not self._queue:
                if self._closed:
                    return
                self._ready.clear()
                await self._ready.wait()
                continue
            await self._slots.acquire()
            if self.wait_s_max > 0 and self._loaded and len(self._queue) < self._share():
                await asyncio.sleep(self.wait_s_max)
            batch = [self._queue.popleft() for _ in range(min(self._share(), len(self._queue)))]
            self._loaded = len(batch) > 1
            if not batch:
                self._slots.release()
                continue
            self._flushing += len(batch)
            task = asyncio.create_task(self._flush(batch), name=f"{self.name}-flush")
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)

    def _share(self) -> int:
        """The most the next batch takes: its flusher's share of the most items in flight
        (queued and being flushed) lately, within `size_max`."""
        now = asyncio.get_running_loop().time()
        elapsed = now - self._window_started
        if elapsed >= PEAK_WINDOW_S:
            # The window that just ended is remembered if it was the one before now.
            self._peak_before = self._peak_now if elapsed < 2 * PEAK_WINDOW_S else 0
            self._peak_now = 0
            self._window_started = now
        self._peak_now = max(self._peak_now, len(self._queue) + self._flushing)
        peak = max(self._peak_now, self._peak_before)
        return min(self.size_max, -(-peak // self.concurrency))

    async def _flush(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            self.stats.record(len(batch))
            results = await self.flush([item for item, _ in batch])
            assert len(results) == len(batch), "flush must return one result per item"
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
        except Exception as error:
            log.exception("%s: a batch of %d failed", self.name, len(batch))
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
        except BaseException:
            # Cancelled mid-flush: whether the batch committed is unknown, so its callers
            # are cancelled too (as if they had gone away) rather than left waiting forever.
            for _, future in batch:
                future.cancel()
            raise
        finally:
            self._flushing -= len(batch)
            self._slots.release()

    async def close(self) -> None:
        """Stop taking items; finish every queued and in-flight one."""
        self._closed = True
        self._ready.set()
        await self._dispatcher
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)
        if self.on_close is not None:
            await self.on_close()
