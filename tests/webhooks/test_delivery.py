"""End to end: real PayFlow operations through the API produce events, the webhooks
consumer queues them, the dispatcher POSTs them, and an independent receiver verifies
every one with the standardwebhooks library: all arrive, at least once, and exactly once
after de-duplication on `webhook-id` — also when the receiver fails the first attempts.
"""

from __future__ import annotations

from tests.api.conftest import Server, key
from tests.webhooks.conftest import customer
from tests.webhooks.receiver import Answer, Receiver, free_port
from tests.webhooks.support import (
    create_endpoint,
    delivered,
    deliveries,
    eventually,
    msg_id,
    send_money,
    transfer_event,
)


async def test_money_moves_arrive_verified_once_each(hooks: Server, receiver: Receiver) -> None:
    asha, ravi = await customer(hooks), await customer(hooks)
    endpoint = await create_endpoint(hooks, ravi, receiver.url, ["transfer.completed"])
    receiver.secrets = [endpoint["secret"]]
    assert endpoint["secret"].startswith("whsec_")
    first = await send_money(hooks, asha, ravi, 1500)
    second = await send_money(hooks, asha, ravi, 700)
    wanted = {msg_id(endpoint, transfer_event(t)): t for t in (first, second)}
    await receiver.wait_for(lambda r: set(wanted) <= set(r.messages))

    assert receiver.unverified() == []
    # Only Ravi's transfers: Asha's top-ups do not name him.
    assert set(receiver.messages) == set(wanted)
    for webhook_id, transfer in wanted.items():
        message = receiver.messages[webhook_id]
        assert message["type"] == "transfer.completed"
        assert message["id"] == f"evt_{transfer_event(transfer).hex}"
        assert message["data"]["id"] == transfer["id"]
        assert message["data"]["amount"] == transfer["amount"]
        assert message["data"]["to"]["user_id"] == ravi.id
        assert message["timestamp"].endswith("Z")
    assert receiver.duplicates == 0

    async def all_delivered() -> list[dict[str, object]] | None:
        log = await deliveries(hooks, ravi, endpoint)
        return log if all(d["status"] == "delivered" for d in log) else None

    log = await eventually(all_delivered)
    assert {d["id"] for d in log} == set(wanted)
    assert all(d["attempt_count"] == 1 for d in log)


async def test_a_wildcard_endpoint_gets_every_event_naming_its_owner(
    hooks: Server, receiver: Receiver
) -> None:
    asha, ravi = await customer(hooks), await customer(hooks)
    endpoint = await create_endpoint(hooks, asha, receiver.url, ["*"])
    receiver.secrets = [endpoint["secret"]]
    sent = await send_money(hooks, asha, ravi, 900, topped_up=1200)
    held = await hooks.client.post(
        "/v1/holds", json={"amount": 300, "currency": "INR"}, headers={**asha.auth, **key()}
    )
    assert held.status_code == 201, held.text
    await receiver.wait_for(lambda r: len(r.messages) >= 3)
    types = sorted(m["type"] for m in receiver.messages.values())
    # Her top-up, her transfer to Ravi, her hold.
    assert types == ["hold.created", "transfer.completed", "transfer.completed"]
    ids = {m["data"]["id"] for m in receiver.messages.values()}
    assert sent["id"] in ids and held.json()["id"] in ids
    assert receiver.unverified() == [] and receiver.duplicates == 0


async def test_failed_first_attempts_are_retried_with_the_same_webhook_id(
    hooks: Server, receiver: Receiver
) -> None:
    asha, ravi = await customer(hooks), await customer(hooks)
    endpoint = await create_endpoint(hooks, ravi, receiver.url, ["transfer.completed"])
    receiver.secrets = [endpoint["secret"]]
    # A 500, then an answer after PayFlow's 2 s timeout (the receiver still processes
    # it, as a slow receiver would), then a 503: the fourth attempt gets through.
    receiver.plan(500, Answer(200, delay_s=2.6), 503)
    transfer = await send_money(hooks, asha, ravi, 1200)
    webhook_id = msg_id(endpoint, transfer_event(transfer))
    await receiver.wait_for(lambda r: len(r.requests) >= 4)

    assert [r.webhook_id for r in receiver.requests] == [webhook_id] * 4
    assert receiver.unverified() == []
    # Processed once after de-duplication, although the slow answer's message and the
    # last one both reached the receiver's code.
    assert list(receiver.messages) == [webhook_id]
    assert receiver.duplicates == 1
    detail = await delivered(hooks, ravi, endpoint, webhook_id)
    assert detail["attempt_count"] == 4
    attempts = list(reversed(detail["attempts"]))
    assert [a["status_code"] for a in attempts] == [500, None, 503, 200]
    assert "timed out" in attempts[1]["error"]
    assert attempts[0]["response_excerpt"] == "nope"
    assert detail["payload"] == receiver.messages[webhook_id]


async def test_connection_refused_then_the_receiver_comes_up(hooks: Server) -> None:
    asha, ravi = await customer(hooks), await customer(hooks)
    port = free_port()
    receiver = Receiver()
    receiver.port = port
    endpoint = await create_endpoint(hooks, ravi, receiver.url, ["transfer.completed"])
    receiver.secrets = [endpoint["secret"]]
    transfer = await send_money(hooks, asha, ravi, 400)
    webhook_id = msg_id(endpoint, transfer_event(transfer))

    async def refused_once() -> bool:
        log = await deliveries(hooks, ravi, endpoint)
        return bool(log) and log[0]["attempt_count"] >= 1

    await eventually(refused_once)
    await receiver.start(port)
    try:
        await receiver.wait_for(lambda r: webhook_id in r.messages)
    finally:
        await receiver.stop()
    detail = await delivered(hooks, ravi, endpoint, webhook_id)
    first = detail["attempts"][-1]
    assert first["status_code"] is None and "ConnectError" in first["error"]
    assert receiver.unverified() == [] and receiver.duplicates == 0
