"""In-process wake-ups: "new events were committed", so local readers need not wait
for their next poll. Only a hint; readers still poll, so a lost wake-up costs latency,
never an event.
"""

from __future__ import annotations

import asyncio

_waiters: set[asyncio.Event] = set()


def outbox_committed() -> None:
    """Call after committing a transaction that wrote events."""
    for waiter in list(_waiters):
        waiter.set()


async def wait_for_events(timeout_s: float) -> None:
    """Return when events are committed in this process, or after `timeout_s`."""
    waiter = asyncio.Event()
    _waiters.add(waiter)
    try:
        await asyncio.wait_for(waiter.wait(), timeout=timeout_s)
    except TimeoutError:
        pass
    finally:
        _waiters.discard(waiter)
