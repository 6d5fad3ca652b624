"""Helpers for the rewards tests: a real API server, shoppers with wallets in a currency
of the test's own, rules and pool funding over HTTP, and the rewards consumer run on real
outbox events.

Each test pays in a currency no other test uses, so rules, pools and balances from other
tests (Schemathesis creates INR rules at random) never change what it sees.

Test modules import the fixtures as `rewards_server` and `rewards_api`; pytest knows them
by their names, `server` and `api`, as in tests/api.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import delete

from payflow.events import models as event_models
from payflow.events.consumers import process
from payflow.events.domain import Event, derived_event_id
from payflow.events.feed import get_event
from payflow.events.outbox import emit
from payflow.ids import format_public_id, parse_public_id
from payflow.money import CURRENCY_EXPONENTS
from payflow.rewards.domain import cashback_id_for
from payflow.rewards.events import CASHBACK_PAID, PAYMENT_REFUNDED
from payflow.rewards.handlers import CONSUMER
from payflow.timestamps import now_ns
from payflow.transfers.events import TRANSFER_COMPLETED
from tests.api.conftest import Server, User, key, register, settings_for, start_server
from tests.conftest import assert_audit_passes
from tests.services import ensure_redis

# Currencies other tests leave alone, late in the alphabet first (generated inputs favour
# early letters); each database (backend) hands them out once.
_CURRENCIES = sorted(set(CURRENCY_EXPONENTS) - {"INR", "USD", "EUR", "GBP", "JPY"}, reverse=True)
_unused: dict[str, Iterator[str]] = {}


@pytest.fixture(scope="module", name="server")
async def rewards_server(database_url: str, backend: str) -> AsyncIterator[Server]:
    """The API on this backend (PostgreSQL + Redis, or SQLite), for one test module."""
    if backend == "postgresql":
        ensure_redis()
    running, stop = await start_server(settings_for(database_url, backend), backend)
    yield running
    await stop()


@pytest.fixture(name="api")
async def rewards_api(server: Server) -> AsyncIterator[Server]:
    """The server for one test; the ledger audit must pass when the test is done."""
    yield server
    await assert_audit_passes(server.engine)


def fresh_currency(api: Server) -> str:
    """A currency no other test has used in `api`'s database."""
    return next(_unused.setdefault(api.settings.database_url, iter(_CURRENCIES)))


@dataclass
class Shopper:
    """A registered user and their wallet in the test's currency."""

    user: User
    wallet_id: str
    currency: str

    @property
    def auth(self) -> dict[str, str]:
        return self.user.auth


async def open_wallet(api: Server, user: User, currency: str, *, funds: int = 0) -> Shopper:
    opened = await api.client.post("/v1/wallets", json={"currency": currency}, headers=user.auth)
    assert opened.status_code == 201, opened.text
    wallet_id = opened.json()["id"]
    if funds:
        topped = await api.client.post(
            f"/v1/wallets/{wallet_id}/topups",
            json={"amount": funds},
            headers={**user.auth, **key()},
        )
        assert topped.status_code == 201, topped.text
    return Shopper(user, wallet_id, currency)


async def shopper(api: Server, currency: str, *, role: str = "customer", funds: int = 0) -> Shopper:
    return await open_wallet(api, await register(api.client, role=role), currency, funds=funds)


async def pay(api: Server, payer: Shopper, payee: Shopper, amount: int) -> dict[str, Any]:
    """A P2P transfer over HTTP; the transfer as the API returned it."""
    response = await api.client.post(
        "/v1/transfers",
        json={"to": payee.wallet_id, "amount": amount, "currency": payer.currency},
        headers={**payer.auth, **key()},
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def create_rule(api: Server, operator: User, **fields: Any) -> dict[str, Any]:
    body = {"rate_bp": 500, "cap_amount": 10_000, **fields}
    response = await api.client.post("/v1/operator/rewards/rules", json=body, headers=operator.auth)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def fund_pool(api: Server, operator: User, currency: str, amount: int) -> dict[str, Any]:
    response = await api.client.post(
        "/v1/operator/rewards/pool/fundings",
        json={"amount": amount, "currency": currency, "reason": "campaign budget"},
        headers={**operator.auth, **key()},
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def pool_balance(api: Server, operator: User, currency: str) -> int:
    response = await api.client.get("/v1/operator/rewards/pool", headers=operator.auth)
    assert response.status_code == 200, response.text
    [pool] = [p for p in response.json() if p["currency"] == currency]
    return int(pool["balance"])


async def wallet_balance(client: httpx.AsyncClient, owner: Shopper) -> int:
    response = await client.get(f"/v1/wallets/{owner.wallet_id}", headers=owner.auth)
    assert response.status_code == 200, response.text
    return int(response.json()["balance"]["posted"])


async def cashbacks(api: Server, owner: Shopper | User) -> list[dict[str, Any]]:
    response = await api.client.get(
        "/v1/rewards/cashbacks", params={"limit": 100}, headers=owner.auth
    )
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


async def transfer_event(api: Server, transfer: dict[str, Any]) -> Event:
    """The `transfer.completed` event the API wrote for `transfer`, read from the outbox."""
    event_id = derived_event_id(parse_public_id("txn", transfer["id"]), TRANSFER_COMPLETED)
    return await stored_event(api, event_id)


async def stored_event(api: Server, event_id: uuid.UUID) -> Event:
    async with api.engine.connect() as conn:
        found = await get_event(conn, event_id)
    assert found is not None, f"no event {event_id}"
    return found[1]


async def cashback_paid_event(api: Server, triggering: Event) -> Event | None:
    cashback_id = cashback_id_for(triggering.id)
    async with api.engine.connect() as conn:
        found = await get_event(conn, derived_event_id(cashback_id, CASHBACK_PAID))
    return found[1] if found else None


async def run(api: Server, events: list[Event]) -> dict[object, str]:
    """The rewards consumer over `events`, with short retries; the events still failing."""
    settings = api.settings.model_copy(
        update={"consumer_attempts_max": 2, "consumer_backoff_ms": 0}
    )
    return await process(api.engine, CONSUMER, events, settings)


async def forget_processed(api: Server, event: Event) -> None:
    """Lose the consumer's record of `event`, as if it had never been written."""
    table = event_models.processed
    async with api.engine.begin() as conn:
        await conn.execute(
            delete(table).where(table.c.consumer == CONSUMER.name, table.c.event_id == event.id)
        )


async def publish(api: Server, event: Event) -> Event:
    """Write `event` to the outbox the way its producer will, and read it back."""
    async with api.engine.begin() as conn:
        await emit(conn, [event])
    return await stored_event(api, event.id)


def refund_event(
    source_id: str, *, amount: int, payment_amount: int, currency: str, source: str = "payment_id"
) -> Event:
    """A `payment.refunded` event as the payments context will emit it."""
    refund_id = format_public_id("re", uuid.uuid4())
    return Event(
        id=uuid.uuid4(),
        type=PAYMENT_REFUNDED,
        aggregate_type="payment",
        aggregate_id=source_id,
        occurred_at=now_ns(),
        data={
            "refund_id": refund_id,
            source: source_id,
            "amount": amount,
            "payment_amount": payment_amount,
            "currency": currency,
        },
    )
