"""Secret rotation, disabling (410 Gone at once; sustained failure, with the owner told in
the inbox), replay of one delivery and of a time range, and the consumer's idempotence."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import update

from payflow.db import read
from payflow.events.consumers import process
from payflow.events.feed import get_event
from payflow.ids import parse_public_id
from payflow.notifications import CONSUMER as NOTIFICATIONS
from payflow.timestamps import now_ns
from payflow.webhooks import CONSUMER, models
from payflow.webhooks.handlers import handle
from tests.api.conftest import Server, User
from tests.webhooks.conftest import customer
from tests.webhooks.receiver import Receiver
from tests.webhooks.support import (
    consumed,
    create_endpoint,
    delivered,
    deliveries,
    delivery_rows,
    events_of,
    eventually,
    get_endpoint,
    send_money,
    transfer_event,
)


async def rotate(server: Server, user: User, endpoint_id: str, **body: object) -> dict[str, Any]:
    response = await server.client.post(
        f"/v1/webhook-endpoints/{endpoint_id}/secret/rotate",
        json=body or None,
        headers=user.auth,
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_rotation_signs_with_both_secrets_during_the_overlap_only(
    hooks: Server, receiver: Receiver
) -> None:
    asha, ravi = await customer(hooks), await customer(hooks)
    endpoint = await create_endpoint(hooks, ravi, receiver.url, ["transfer.completed"])
    old = endpoint["secret"]
    rotated = await rotate(hooks, ravi, endpoint["id"], overlap_s=3600)
    new = rotated["secret"]
    assert new != old and new.startswith("whsec_")
    assert rotated["previous_secret_expires_at"] is not None
    receiver.secrets = [old, new]
    await send_money(hooks, asha, ravi, 100)
    await receiver.wait_for(lambda r: len(r.requests) == 1)
    during = receiver.requests[0]
    # Two `v1,` signatures; each secret alone verifies the delivery.
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    assert during.verified_by == [0, 1]
    assert receiver.verifies(during, old) and receiver.verifies(during, new)

    # The window ends (its end moved to the past rather than waited for).
    async with hooks.engine.begin() as conn:
        await conn.execute(
            update(models.endpoints)
            .where(models.endpoints.c.id == parse_public_id("we", endpoint["id"]))
            .values(previous_secret_expires_at=now_ns() - 1)
        )
    await send_money(hooks, asha, ravi, 100)
    await receiver.wait_for(lambda r: len(r.requests) == 2)
    after = receiver.requests[1]
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    assert after.verified_by == [1]
    assert (await get_endpoint(hooks, ravi, endpoint["id"]))["previous_secret_expires_at"] is None

    # Rotating without an overlap retires the current secret at once.
    newest = (await rotate(hooks, ravi, endpoint["id"], overlap_s=0))["secret"]
    receiver.secrets = [old, new, newest]
    await send_money(hooks, asha, ravi, 100)
    await receiver.wait_for(lambda r: len(r.requests) == 3)
    assert receiver.requests[2].verified_by == [2]
    assert receiver.unverified() == []


async def test_rotation_without_a_body_keeps_the_old_secret_for_a_day(
    hooks: Server, receiver: Receiver
) -> None:
    ravi = await customer(hooks)
    endpoint = await create_endpoint(hooks, ravi, receiver.url)
    rotated = await rotate(hooks, ravi, endpoint["id"])
    expires = datetime.fromisoformat(rotated["previous_secret_expires_at"])
    assert timedelta(hours=23) < expires - datetime.now(UTC) <= timedelta(days=1)


async def notified_titles(server: Server, user: User) -> list[str]:
    response = await server.client.get("/v1/notifications", headers=user.auth)
    assert response.status_code == 200, response.text
    return [n["title"] for n in response.json()["data"]]


async def tell_owner(server: Server, endpoint_id: str) -> None:
    """Apply the real notifications consumer to the endpoint's disabled event."""
    (event,) = await events_of(server, "webhook_endpoint.disabled", endpoint_id)
    failures = await process(server.engine, NOTIFICATIONS, [event], server.settings)
    assert failures == {}


async def test_410_gone_disables_at_once_and_the_owner_hears_of_it(
    hooks: Server, receiver: Receiver
) -> None:
    asha, ravi = await customer(hooks), await customer(hooks)
    gone = await create_endpoint(hooks, ravi, receiver.url, ["transfer.completed"])
    # Another endpoint of Ravi's hears of the disabling as a webhook too.
    watcher = await create_endpoint(hooks, ravi, receiver.url, ["webhook_endpoint.disabled"])
    receiver.secrets = [gone["secret"], watcher["secret"]]
    receiver.plan(410)
    await send_money(hooks, asha, ravi, 100)

    async def disabled() -> dict[str, Any] | None:
        found = await get_endpoint(hooks, ravi, gone["id"])
        return found if found["status"] == "disabled" else None

    found = await eventually(disabled)
    assert found["disabled_reason"] == "gone"
    (failed,) = await deliveries(hooks, ravi, gone)
    assert failed["status"] == "failed" and failed["attempt_count"] == 1
    await receiver.wait_for(
        lambda r: any(m["type"] == "webhook_endpoint.disabled" for m in r.messages.values())
    )
    notice = next(m for m in receiver.messages.values() if m["type"] == "webhook_endpoint.disabled")
    assert notice["data"]["id"] == gone["id"] and notice["data"]["reason"] == "gone"
    assert notice["data"]["user_id"] == ravi.id
    await tell_owner(hooks, gone["id"])
    assert "A webhook endpoint was disabled" in await notified_titles(hooks, ravi)

    # Nothing more goes to a disabled endpoint, and replays wait for it to be enabled.
    later = await send_money(hooks, asha, ravi, 100)
    await eventually(lambda: consumed(hooks, transfer_event(later)))
    assert len(await deliveries(hooks, ravi, gone)) == 1
    replay = await hooks.client.post(
        f"/v1/webhook-endpoints/{gone['id']}/deliveries/{failed['id']}/replay", headers=ravi.auth
    )
    assert replay.status_code == 409 and replay.json()["code"] == "endpoint_disabled"

    enabled = await hooks.client.patch(
        f"/v1/webhook-endpoints/{gone['id']}", json={"enabled": True}, headers=ravi.auth
    )
    assert enabled.status_code == 200 and enabled.json()["status"] == "enabled"
    assert enabled.json()["disabled_reason"] is None
    replay = await hooks.client.post(
        f"/v1/webhook-endpoints/{gone['id']}/deliveries/{failed['id']}/replay", headers=ravi.auth
    )
    assert replay.status_code == 202, replay.text
    await delivered(hooks, ravi, gone, failed["id"])
    assert failed["id"] in receiver.messages and receiver.unverified() == []


async def test_sustained_failure_disables_and_tells_the_owner(
    hooks: Server, receiver: Receiver
) -> None:
    asha, ravi = await customer(hooks), await customer(hooks)
    endpoint = await create_endpoint(hooks, ravi, receiver.url, ["transfer.completed"])
    receiver.secrets = [endpoint["secret"]]
    receiver.plan(*[500] * 12)
    # Two deliveries given up on in a row (the test setting) disable the endpoint.
    await send_money(hooks, asha, ravi, 100)
    await send_money(hooks, asha, ravi, 100)

    async def disabled() -> dict[str, Any] | None:
        found = await get_endpoint(hooks, ravi, endpoint["id"])
        return found if found["status"] == "disabled" else None

    found = await eventually(disabled)
    assert found["disabled_reason"] == "failing"
    log = await deliveries(hooks, ravi, endpoint)
    assert [d["status"] for d in log] == ["failed", "failed"]
    assert all(d["attempt_count"] == 6 and d["last_status_code"] == 500 for d in log)
    assert len(receiver.requests) == 12 and receiver.messages == {}
    await tell_owner(hooks, endpoint["id"])
    assert "A webhook endpoint was disabled" in await notified_titles(hooks, ravi)


async def test_replay_of_one_and_of_a_range_resends_with_the_same_ids(
    hooks: Server, receiver: Receiver
) -> None:
    asha, ravi = await customer(hooks), await customer(hooks)
    endpoint = await create_endpoint(hooks, ravi, receiver.url, ["transfer.completed"])
    receiver.secrets = [endpoint["secret"]]
    start = datetime.now(UTC) - timedelta(seconds=1)
    for amount in (100, 200, 300):
        await send_money(hooks, asha, ravi, amount)
    await receiver.wait_for(lambda r: len(r.messages) == 3)
    log = await deliveries(hooks, ravi, endpoint)
    for item in log:
        await delivered(hooks, ravi, endpoint, item["id"])
    first = receiver.requests[0].webhook_id

    one = await hooks.client.post(
        f"/v1/webhook-endpoints/{endpoint['id']}/deliveries/{first}/replay", headers=ravi.auth
    )
    assert one.status_code == 202 and one.json()["status"] == "pending"
    await receiver.wait_for(lambda r: len(r.requests) == 4)
    assert receiver.requests[3].webhook_id == first and receiver.duplicates == 1
    detail = await delivered(hooks, ravi, endpoint, first)
    assert detail["attempt_count"] == 2 and len(detail["attempts"]) == 2

    until = datetime.now(UTC) + timedelta(seconds=1)
    body = {"since": start.isoformat(), "until": until.isoformat()}
    ranged = await hooks.client.post(
        f"/v1/webhook-endpoints/{endpoint['id']}/replay", json=body, headers=ravi.auth
    )
    assert ranged.status_code == 202 and ranged.json() == {"replayed": 3}
    await receiver.wait_for(lambda r: len(r.requests) == 7)
    assert sorted(r.webhook_id for r in receiver.requests[4:]) == sorted(d["id"] for d in log)
    assert len(receiver.messages) == 3 and receiver.duplicates == 4
    assert receiver.unverified() == []

    # A range holding nothing replays nothing.
    empty = {"since": "2001-01-01T00:00:00Z", "until": "2001-01-02T00:00:00Z"}
    nothing = await hooks.client.post(
        f"/v1/webhook-endpoints/{endpoint['id']}/replay", json=empty, headers=ravi.auth
    )
    assert nothing.status_code == 202 and nothing.json() == {"replayed": 0}


async def test_a_range_larger_than_the_bound_is_refused_and_changes_nothing(
    hooks: Server, receiver: Receiver
) -> None:
    asha, ravi = await customer(hooks), await customer(hooks)
    endpoint = await create_endpoint(hooks, ravi, receiver.url, ["transfer.completed"])
    receiver.secrets = [endpoint["secret"]]
    start = datetime.now(UTC) - timedelta(seconds=1)
    for _ in range(6):  # the test bound is 5
        await send_money(hooks, asha, ravi, 50)
    await receiver.wait_for(lambda r: len(r.messages) == 6)
    for item in await deliveries(hooks, ravi, endpoint):
        await delivered(hooks, ravi, endpoint, item["id"])
    before = await delivery_rows(hooks, endpoint)
    body = {"since": start.isoformat(), "until": (datetime.now(UTC) + timedelta(1)).isoformat()}
    refused = await hooks.client.post(
        f"/v1/webhook-endpoints/{endpoint['id']}/replay", json=body, headers=ravi.auth
    )
    assert refused.status_code == 422 and refused.json()["code"] == "replay_range_too_large"
    assert await delivery_rows(hooks, endpoint) == before


async def test_an_event_handled_twice_makes_one_delivery(hooks: Server, receiver: Receiver) -> None:
    asha, ravi = await customer(hooks), await customer(hooks)
    endpoint = await create_endpoint(hooks, ravi, receiver.url, ["transfer.completed"])
    receiver.secrets = [endpoint["secret"]]
    transfer = await send_money(hooks, asha, ravi, 100)
    await receiver.wait_for(lambda r: len(r.messages) == 1)
    async with read(hooks.engine) as conn:
        found = await get_event(conn, transfer_event(transfer))
    assert found is not None
    event = found[1]
    # As if the consumer's processed record were lost: the handler runs again, twice.
    for _ in range(2):
        async with hooks.engine.begin() as conn:
            await handle(conn, event)
    assert await process(hooks.engine, CONSUMER, [event], hooks.settings) == {}
    rows = await delivery_rows(hooks, endpoint)
    assert len(rows) == 1 and rows[0]["event_id"] == event.id
    assert rows[0]["endpoint_id"] == parse_public_id("we", endpoint["id"])
    await asyncio.sleep(0.2)
    assert len(receiver.requests) == 1
