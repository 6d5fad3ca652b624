"""Helpers for webhook tests: endpoints, money moves that cause events, the delivery log."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from sqlalchemy import select

from payflow.db import read
from payflow.events import models as events_models
from payflow.events.domain import Event, derived_event_id
from payflow.events.feed import get_event
from payflow.ids import parse_public_id
from payflow.webhooks import models
from payflow.webhooks.domain import message_id
from tests.api.conftest import Server, User, key, topup


async def create_endpoint(
    server: Server, user: User, url: str, event_types: list[str] | None = None, **extra: Any
) -> dict[str, Any]:
    body = {"url": url, "event_types": event_types or ["*"], **extra}
    response = await server.client.post("/v1/webhook-endpoints", json=body, headers=user.auth)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def send_money(
    server: Server, payer: User, payee: User, amount: int, *, topped_up: int | None = None
) -> dict[str, Any]:
    """A P2P transfer through the API (topping the payer up first, by `amount` unless
    told otherwise)."""
    await topup(server.client, payer, topped_up or amount)
    response = await server.client.post(
        "/v1/transfers",
        json={"to": payee.handle, "amount": amount, "currency": "INR"},
        headers={**payer.auth, **key()},
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def transfer_event(transfer: dict[str, Any]) -> uuid.UUID:
    """The id of the `transfer.completed` event of a transfer the API answered with."""
    return derived_event_id(parse_public_id("txn", str(transfer["id"])), "transfer.completed")


def msg_id(endpoint: dict[str, Any], event_id: uuid.UUID) -> str:
    """The `webhook-id` PayFlow sends for `event_id` to `endpoint`."""
    return f"msg_{message_id(parse_public_id('we', endpoint['id']), event_id).hex}"


async def deliveries(server: Server, user: User, endpoint: dict[str, Any]) -> list[dict[str, Any]]:
    response = await server.client.get(
        f"/v1/webhook-endpoints/{endpoint['id']}/deliveries", headers=user.auth
    )
    assert response.status_code == 200, response.text
    result: list[dict[str, Any]] = response.json()["data"]
    return result


async def delivery(
    server: Server, user: User, endpoint: dict[str, Any], delivery_id: str
) -> dict[str, Any]:
    response = await server.client.get(
        f"/v1/webhook-endpoints/{endpoint['id']}/deliveries/{delivery_id}", headers=user.auth
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def delivered(
    server: Server, user: User, endpoint: dict[str, Any], delivery_id: str
) -> dict[str, Any]:
    """The delivery's detail once the dispatcher has recorded it delivered."""

    async def check() -> dict[str, Any] | None:
        found = await delivery(server, user, endpoint, delivery_id)
        return found if found["status"] == "delivered" else None

    result: dict[str, Any] = await eventually(check)
    return result


async def get_endpoint(server: Server, user: User, endpoint_id: str) -> dict[str, Any]:
    response = await server.client.get(f"/v1/webhook-endpoints/{endpoint_id}", headers=user.auth)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def eventually(check: Any, timeout_s: float = 15.0) -> Any:
    """Poll the async `check()` until it returns something truthy."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not so after {timeout_s} s: {result!r}")
        await asyncio.sleep(0.03)


async def events_of(server: Server, event_type: str, aggregate_id: str) -> list[Event]:
    """The outbox's events of `event_type` about `aggregate_id`."""
    table = events_models.outbox
    async with read(server.engine) as conn:
        ids = (
            await conn.execute(
                select(table.c.id).where(
                    table.c.type == event_type, table.c.aggregate_id == aggregate_id
                )
            )
        ).scalars()
        found = [await get_event(conn, event_id) for event_id in list(ids)]
    return [item[1] for item in found if item is not None]


async def delivery_rows(server: Server, endpoint: dict[str, Any]) -> list[dict[str, Any]]:
    table = models.deliveries
    endpoint_id = parse_public_id("we", endpoint["id"])
    async with read(server.engine) as conn:
        rows = await conn.execute(select(table).where(table.c.endpoint_id == endpoint_id))
        return [dict(row._mapping) for row in rows]


async def current_secret(server: Server, endpoint_id: str) -> str:
    table = models.endpoints
    async with read(server.engine) as conn:
        secret: str = (
            await conn.execute(
                select(table.c.secret).where(table.c.id == parse_public_id("we", endpoint_id))
            )
        ).scalar_one()
    return secret


async def consumed(server: Server, event_id: uuid.UUID) -> bool:
    """True once the webhooks consumer has processed the event (queued what it queues)."""
    table = events_models.processed
    async with read(server.engine) as conn:
        found = await conn.execute(
            select(table.c.event_id).where(
                table.c.consumer == "webhooks", table.c.event_id == event_id
            )
        )
        return found.first() is not None
