"""Dispatchers running side by side (the test's rounds and the runtime's own) claim each
due delivery once: every message is sent once and recorded once."""

from __future__ import annotations

import asyncio

from payflow.events.domain import Event
from payflow.ids import uuid7
from payflow.timestamps import now_ns
from payflow.webhooks import dispatch_due
from payflow.webhooks.dispatcher import new_client
from payflow.webhooks.handlers import handle
from tests.api.conftest import Server
from tests.webhooks.conftest import customer
from tests.webhooks.receiver import Receiver
from tests.webhooks.support import create_endpoint, deliveries, eventually


async def test_concurrent_rounds_send_each_delivery_once(hooks: Server, receiver: Receiver) -> None:
    user = await customer(hooks)
    endpoint = await create_endpoint(hooks, user, receiver.url, ["wallet.opened"])
    receiver.secrets = [endpoint["secret"]]
    events = [
        Event(
            id=uuid7(),
            type="wallet.opened",
            aggregate_type="wallet",
            aggregate_id=f"wal_{uuid7().hex}",
            occurred_at=now_ns(),
            data={"user_id": user.id, "currency": "INR", "n": n},
        )
        for n in range(30)
    ]
    # Queued as the consumer queues them, in one transaction, so all are due at once.
    async with hooks.engine.begin() as conn:
        for event in events:
            await handle(conn, event)
    async with new_client(hooks.settings) as client:
        await asyncio.gather(
            *(dispatch_due(hooks.engine, hooks.settings, client) for _ in range(3))
        )

    async def all_delivered() -> bool:
        log = await deliveries(hooks, user, endpoint)
        return len(log) == 30 and all(d["status"] == "delivered" for d in log)

    await eventually(all_delivered)
    log = await deliveries(hooks, user, endpoint)
    assert all(d["attempt_count"] == 1 for d in log)
    assert len(receiver.requests) == 30 and receiver.duplicates == 0
    assert sorted(m["data"]["n"] for m in receiver.messages.values()) == list(range(30))
