"""The notifications consumer on both backends, fed with the real events that API calls
wrote to the outbox: the right users get the right notices and e-mails, exactly once
however the events are redelivered, and a malformed event leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from sqlalchemy import select

from payflow.db import read
from payflow.events.consumers import process
from payflow.events.domain import Event, derived_event_id
from payflow.events.models import processed
from payflow.ids import parse_public_id
from payflow.notifications import CONSUMER, models
from payflow.timestamps import now_ns
from tests.api import conftest as api_fixtures
from tests.api.conftest import Server, User, create_operator, key, register, topup
from tests.notifications import apply, event_id, feed_events, rows_of

server = api_fixtures.server
api = api_fixtures.api


def uid(user: User) -> uuid.UUID:
    return parse_public_id("usr", user.id)


async def post(api: Server, user: User, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await api.client.post(path, json=body, headers={**user.auth, **key()})
    assert response.status_code in (200, 201), response.text
    result: dict[str, Any] = response.json()
    return result


async def scenario(api: Server) -> tuple[User, User, list[uuid.UUID]]:
    """Asha tops up, pays Ravi, captures part of a hold to him, releases another; an
    operator credits Ravi. Returns the two users and the ids of the events caused."""
    asha, ravi = await register(api.client), await register(api.client)
    operator = await create_operator(api)
    topped = (await topup(api.client, asha, 50_000)).json()
    sent = await post(
        api, asha, "/v1/transfers", {"to": ravi.handle, "amount": 12_500, "currency": "INR"}
    )
    held = await post(api, asha, "/v1/holds", {"amount": 3000, "currency": "INR"})
    captured = await post(
        api, asha, f"/v1/holds/{held['id']}/capture", {"to": ravi.address, "amount": 2000}
    )
    other = await post(api, asha, "/v1/holds", {"amount": 700, "currency": "INR", "note": "x"})
    await post(api, asha, f"/v1/holds/{other['id']}/release", {})
    adjusted = await post(
        api,
        operator,
        "/v1/operator/adjustments",
        {"wallet_id": ravi.wallet_id, "direction": "credit", "amount": 100, "reason": "goodwill"},
    )
    ids = [
        event_id("user.registered", asha.id),
        event_id("user.registered", ravi.id),
        event_id("transfer.completed", topped["id"]),
        event_id("transfer.completed", sent["id"]),
        event_id("hold.created", held["id"]),
        event_id("hold.captured", held["id"]),
        event_id("transfer.completed", captured["transfer"]["id"]),
        event_id("hold.created", other["id"]),
        event_id("hold.released", other["id"]),
        event_id("adjustment.posted", adjusted["id"]),
    ]
    return asha, ravi, ids


async def titles(api: Server, user: User) -> dict[str, list[str]]:
    rows = await rows_of(api.engine, [uid(user)])
    return {
        "inbox": sorted(r["title"] for r in rows["inbox"]),
        "emails": sorted(r["subject"] for r in rows["emails"]),
    }


async def test_each_party_is_told_once_whatever_the_delivery(api: Server) -> None:
    asha, ravi, ids = await scenario(api)
    events = await feed_events(api.engine, ids)
    await apply(api.engine, events, api.settings)

    assert await titles(api, asha) == {
        "inbox": sorted(
            [
                f"Welcome to PayFlow, {asha.handle.title()}",
                "You added ₹500.00 to your wallet",
                f"You sent ₹125.00 to @{ravi.handle}",
                "₹30.00 is on hold",
                "Your hold of ₹30.00 was captured",
                f"You paid ₹20.00 to @{ravi.handle}",
                "₹7.00 is on hold",
                "₹7.00 is available again",
            ]
        ),
        "emails": [f"Welcome to PayFlow, {asha.handle.title()}"],
    }
    assert await titles(api, ravi) == {
        "inbox": sorted(
            [
                f"Welcome to PayFlow, {ravi.handle.title()}",
                f"You received ₹125.00 from @{asha.handle}",
                f"You received ₹20.00 from @{asha.handle}",
                "₹1.00 was added to your wallet",
            ]
        ),
        "emails": sorted(
            [
                f"Welcome to PayFlow, {ravi.handle.title()}",
                f"You received ₹125.00 from @{asha.handle}",
                f"You received ₹20.00 from @{asha.handle}",
                "₹1.00 was added to your wallet",
            ]
        ),
    }
    rows = await rows_of(api.engine, [uid(asha), uid(ravi)])
    assert {e["to_address"] for e in rows["emails"]} == {asha.email, ravi.email}
    assert {e["status"] for e in rows["emails"]} == {"queued"}
    by_event = {r["event_id"]: r for r in rows["inbox"] if r["user_id"] == uid(asha)}
    assert by_event[ids[3]]["created_at"] == next(e for e in events if e.id == ids[3]).occurred_at

    # Redelivered: again, in reverse, each twice in one batch; and to a consumer that has
    # no record of them (as if its records were lost): the rows stay exactly as they are.
    forgetful = dataclasses.replace(CONSUMER, name="notifications_forgetful")
    for consumer, batch in [
        (CONSUMER, events),
        (CONSUMER, events[::-1]),
        (CONSUMER, [e for e in events for _ in range(2)]),
        (forgetful, [e for e in events[::-1] for _ in range(2)]),
    ]:
        assert await process(api.engine, consumer, batch, api.settings) == {}
        assert await rows_of(api.engine, [uid(asha), uid(ravi)]) == rows


async def test_a_malformed_event_fails_and_leaves_nothing(api: Server) -> None:
    asha, ravi = await register(api.client), await register(api.client)
    await topup(api.client, asha, 1000)
    sent = await post(
        api, asha, "/v1/transfers", {"to": ravi.handle, "amount": 5, "currency": "INR"}
    )
    [good] = await feed_events(api.engine, [event_id("transfer.completed", sent["id"])])
    broken = Event(
        id=derived_event_id(uuid.uuid4(), "transfer.completed"),
        type=good.type,
        aggregate_type=good.aggregate_type,
        aggregate_id=good.aggregate_id,
        occurred_at=now_ns(),
        data={k: v for k, v in good.data.items() if k != "amount"},
    )
    settings = api.settings.model_copy(
        update={"consumer_attempts_max": 2, "consumer_backoff_ms": 1}
    )

    failures = await process(api.engine, CONSUMER, [broken, good], settings)

    assert list(failures) == [broken.id]
    assert "amount" in failures[broken.id]
    async with read(api.engine) as conn:
        left = (
            await conn.execute(select(models.inbox).where(models.inbox.c.event_id == broken.id))
        ).all()
        recorded = (
            await conn.execute(
                select(processed).where(
                    processed.c.consumer == CONSUMER.name, processed.c.event_id == broken.id
                )
            )
        ).all()
    assert left == []
    assert recorded == []
    # The good event in the same batch was applied.
    assert (await titles(api, ravi))["inbox"] == [f"You received ₹0.05 from @{asha.handle}"]


async def test_cashback_events_tell_their_user(api: Server) -> None:
    asha = await register(api.client)
    events = [
        Event(
            id=derived_event_id(uuid.uuid4(), event_type),
            type=event_type,
            aggregate_type="cashback",
            aggregate_id="cb_1",
            occurred_at=now_ns(),
            data={"user_id": asha.id, "amount": 250, "currency": "INR", "transfer_id": "txn_1"},
        )
        for event_type in ("cashback.paid", "cashback.clawed_back")
    ]
    await apply(api.engine, events, api.settings)
    found = await titles(api, asha)
    assert (
        found["inbox"]
        == found["emails"]
        == ["You earned ₹2.50 cashback", "₹2.50 cashback was reversed"]
    )


async def test_an_unknown_event_version_is_ignored(api: Server) -> None:
    asha = await register(api.client)
    [welcome] = await feed_events(api.engine, [event_id("user.registered", asha.id)])
    newer = dataclasses.replace(welcome, id=uuid.uuid4(), version=2)
    await apply(api.engine, [newer], api.settings)
    assert await rows_of(api.engine, [uid(asha)]) == {"inbox": [], "emails": []}
