"""The micro-batcher's coalescing logic, with a fake flush (pure asyncio, no database).

The flush is the process boundary here: a fake that records its batches and can be held
open shows exactly how items coalesce, how the bounds hold, and who gets which result.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from payflow.api.batcher import MicroBatcher
from payflow.errors import PayFlowError


class FakeFlush:
    """Records every batch; holds each flush open until the test releases it."""

    def __init__(self, *, fail_if: Callable[[list[int]], bool] = lambda batch: False) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.in_flight = 0
        self.in_flight_max = 0
        self.fail_if = fail_if

    def hold(self) -> None:
        self.gate.clear()

    def release(self) -> None:
        self.gate.set()

    async def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        self.in_flight += 1
        self.in_flight_max = max(self.in_flight_max, self.in_flight)
        try:
            await self.gate.wait()
            await asyncio.sleep(0)
            if self.fail_if(items):
                raise RuntimeError(f"flush of {items} failed")
            return [item * 10 for item in items]
        finally:
            self.in_flight -= 1

    @property
    def flushed(self) -> list[int]:
        return [item for batch in self.batches for item in batch]


@asynccontextmanager
async def batcher(
    flush: FakeFlush, *, size_max: int = 100, concurrency: int = 1, queue_max: int = 1000
) -> AsyncIterator[MicroBatcher[int, int]]:
    running = MicroBatcher(
        flush=flush, size_max=size_max, concurrency=concurrency, queue_max=queue_max
    )
    try:
        yield running
    finally:
        flush.release()
        await running.close()


async def settle() -> None:
    """Let every ready task run until nothing changes (the dispatcher, the flushes)."""
    for _ in range(20):
        await asyncio.sleep(0)


def submit_all(
    running: MicroBatcher[int, int], items: range | list[int]
) -> list[asyncio.Task[int]]:
    return [asyncio.create_task(running.submit(item)) for item in items]


async def test_each_caller_gets_its_own_result() -> None:
    flush = FakeFlush()
    async with batcher(flush) as running:
        results = await asyncio.gather(*(running.submit(i) for i in range(25)))
    assert results == [i * 10 for i in range(25)]
    assert sorted(flush.flushed) == list(range(25))


async def test_submits_coalesce_while_a_flush_is_in_progress() -> None:
    flush = FakeFlush()
    flush.hold()
    async with batcher(flush) as running:
        first = asyncio.create_task(running.submit(0))
        await settle()
        assert flush.batches == [[0]]
        later = submit_all(running, range(1, 8))
        await settle()
        # The one flusher is busy: the seven wait together for the next batch.
        assert flush.batches == [[0]]
        flush.release()
        assert await first == 0
        assert await asyncio.gather(*later) == [i * 10 for i in range(1, 8)]
    assert flush.batches == [[0], [1, 2, 3, 4, 5, 6, 7]]
    assert running.stats.batches == 2
    assert running.stats.items == 8
    assert running.stats.size_max_seen == 7


async def test_batches_never_exceed_size_max() -> None:
    flush = FakeFlush()
    flush.hold()
    async with batcher(flush, size_max=3) as running:
        tasks = submit_all(running, range(11))
        await settle()
        flush.release()
        assert await asyncio.gather(*tasks) == [i * 10 for i in range(11)]
    assert all(1 <= len(batch) <= 3 for batch in flush.batches)
    assert flush.flushed == list(range(11))
    assert running.stats.size_max_seen == 3


async def test_flushes_in_flight_never_exceed_concurrency() -> None:
    flush = FakeFlush()
    flush.hold()
    async with batcher(flush, size_max=2, concurrency=3) as running:
        tasks = submit_all(running, range(20))
        await settle()
        # Three flushes started and are held open; the rest of the items wait.
        assert flush.in_flight == 3
        assert len(flush.batches) == 3
        flush.release()
        assert await asyncio.gather(*tasks) == [i * 10 for i in range(20)]
    assert flush.in_flight_max == 3
    assert sorted(flush.flushed) == list(range(20))


async def test_a_full_queue_refuses_at_once_with_503() -> None:
    flush = FakeFlush()
    flush.hold()
    async with batcher(flush, queue_max=3) as running:
        in_flush = asyncio.create_task(running.submit(0))
        await settle()
        queued = submit_all(running, [1, 2, 3])
        await settle()
        with pytest.raises(PayFlowError) as refused:
            await running.submit(4)
        assert refused.value.code == "overloaded"
        assert refused.value.http_status == 503
        assert running.stats.rejected == 1
        flush.release()
        assert await in_flush == 0
        assert await asyncio.gather(*queued) == [10, 20, 30]
        # Room again once the queue drained.
        assert await running.submit(5) == 50
    assert 4 not in flush.flushed


async def test_a_failing_flush_fails_only_its_own_batch() -> None:
    flush = FakeFlush(fail_if=lambda batch: 13 in batch)
    flush.hold()
    async with batcher(flush, size_max=2) as running:
        tasks = submit_all(running, [11, 12, 13, 14, 15])
        await settle()
        flush.release()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    batch_of_13 = next(batch for batch in flush.batches if 13 in batch)
    for item, result in zip([11, 12, 13, 14, 15], results, strict=True):
        if item in batch_of_13:
            assert isinstance(result, RuntimeError)
        else:
            assert result == item * 10
    assert len(batch_of_13) == 2


async def test_close_drains_queued_items_then_refuses_new_ones() -> None:
    flush = FakeFlush()
    flush.hold()
    running = MicroBatcher(flush=flush, size_max=2, concurrency=1, queue_max=100)
    tasks = submit_all(running, range(7))
    await settle()
    closing = asyncio.create_task(running.close())
    await settle()
    assert not closing.done()
    with pytest.raises(PayFlowError) as refused:
        await running.submit(99)
    assert refused.value.code == "shutting_down"
    assert refused.value.http_status == 503
    flush.release()
    await closing
    assert await asyncio.gather(*tasks) == [i * 10 for i in range(7)]
    assert flush.flushed == list(range(7))
    with pytest.raises(PayFlowError, match="shutting down"):
        await running.submit(100)


async def test_on_close_runs_once_after_the_last_batch() -> None:
    flush = FakeFlush()
    flush.hold()
    order: list[str] = []

    async def on_close() -> None:
        order.append(f"closed after {len(flush.flushed)} items, {flush.in_flight} in flight")

    running = MicroBatcher(flush=flush, size_max=2, concurrency=1, queue_max=100, on_close=on_close)
    tasks = submit_all(running, range(5))
    await settle()
    closing = asyncio.create_task(running.close())
    await settle()
    assert order == []
    flush.release()
    await closing
    await asyncio.gather(*tasks)
    assert order == ["closed after 5 items, 0 in flight"]


async def test_a_cancelled_caller_does_not_cancel_its_item() -> None:
    flush = FakeFlush()
    flush.hold()
    async with batcher(flush) as running:
        first = asyncio.create_task(running.submit(1))
        await settle()
        # Item 2 waits in the queue; its caller goes away (a client disconnect).
        gone = asyncio.create_task(running.submit(2))
        await settle()
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        # Item 3's caller goes away while its item is inside a flush.
        flush.release()
        assert await first == 10
        flush.hold()
        third = asyncio.create_task(running.submit(3))
        await settle()
        assert [3] in flush.batches
        third.cancel()
        with pytest.raises(asyncio.CancelledError):
            await third
        flush.release()
        assert await running.submit(4) == 40
    assert flush.flushed == [1, 2, 3, 4]


async def test_a_cancelled_flush_cancels_its_callers_instead_of_stranding_them() -> None:
    class Interrupted(FakeFlush):
        async def __call__(self, items: list[int]) -> list[int]:
            if 1 in items:
                raise asyncio.CancelledError
            return await super().__call__(items)

    flush = Interrupted()
    async with batcher(flush) as running:
        stranded = asyncio.create_task(running.submit(1))
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(stranded, timeout=1)
        # The batcher itself carries on.
        assert await running.submit(2) == 20


async def test_wait_s_max_lets_a_batch_gather_company() -> None:
    flush = FakeFlush()
    running = MicroBatcher(flush=flush, size_max=10, concurrency=1, queue_max=100, wait_s_max=0.5)
    try:
        # Two at once: the server is under load.
        assert await asyncio.gather(*submit_all(running, [1, 2])) == [10, 20]
        first = asyncio.create_task(running.submit(3))
        await settle()
        # The next item's flusher waits for company instead of flushing alone.
        assert flush.batches == [[1, 2]]
        later = submit_all(running, [4, 5])
        assert await asyncio.gather(first, *later) == [30, 40, 50]
    finally:
        await running.close()
    assert flush.batches == [[1, 2], [3, 4, 5]]


async def test_after_a_lone_batch_the_next_item_does_not_wait() -> None:
    """The linger is for load: on an idle server a request is not held back."""
    flush = FakeFlush()
    running = MicroBatcher(flush=flush, size_max=10, concurrency=1, queue_max=100, wait_s_max=0.5)
    loop = asyncio.get_running_loop()
    try:
        # The first item is alone in flight: it does not linger.
        assert await running.submit(1) == 10
        started = loop.time()
        assert await running.submit(2) == 20
        assert loop.time() - started < 0.25, "a lone item after a lone batch must not wait"
        # A batch with company makes the next one linger again.
        assert await asyncio.gather(*submit_all(running, [3, 4])) == [30, 40]
        third = asyncio.create_task(running.submit(5))
        await settle()
        assert flush.batches[-1] == [3, 4], "the next batch waits for company"
        later = submit_all(running, [6])
        assert await asyncio.gather(third, *later) == [50, 60]
    finally:
        await running.close()
    assert flush.batches == [[1], [2], [3, 4], [5, 6]]


async def test_each_flusher_takes_its_share_of_the_items_in_flight() -> None:
    """Two flushers split a burst instead of one taking it all while the other idles:
    each batch's Python work then overlaps the other's time in the database."""
    flush = FakeFlush()
    flush.hold()
    async with batcher(flush, concurrency=2) as running:
        tasks = submit_all(running, range(20))
        await settle()
        assert flush.batches == [list(range(10)), list(range(10, 20))]
        flush.release()
        assert await asyncio.gather(*tasks) == [i * 10 for i in range(20)]


async def test_the_share_follows_the_recent_peak_in_flight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Between bursts fewer items are in flight than there are clients (the others are
    on their way back): the share is taken of the most in flight lately, and it forgets
    a peak two windows old."""
    monkeypatch.setattr("payflow.api.batcher.PEAK_WINDOW_S", 0.05)
    flush = FakeFlush()
    async with batcher(flush, concurrency=2) as running:
        flush.hold()
        first = submit_all(running, range(20))
        await settle()
        flush.release()
        await asyncio.gather(*first)
        # 20 were in flight a moment ago: the share is still 10.
        flush.hold()
        second = submit_all(running, range(100, 116))
        await settle()
        assert flush.batches[2:] == [list(range(100, 110)), list(range(110, 116))]
        flush.release()
        await asyncio.gather(*second)
        await asyncio.sleep(0.12)
        flush.hold()
        third = submit_all(running, range(200, 216))
        await settle()
        assert flush.batches[4:] == [list(range(200, 208)), list(range(208, 216))]
        flush.release()
        assert await asyncio.gather(*third) == [i * 10 for i in range(200, 216)]
