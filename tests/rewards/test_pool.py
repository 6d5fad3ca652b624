"""The rewards pool on both backends: operators fund it (idempotent, audited, double
entry); when it runs dry, cashback waits in the dead-letter queue until it is funded and
replayed, and is then paid exactly once."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.events import dead_letters
from payflow.events.domain import Event
from payflow.rewards.handlers import CONSUMER
from tests.api.conftest import Server, User, create_operator, key
from tests.api.test_operator import (
    actions_since,
    assert_problem,
    system_accounts,
)
from tests.rewards import (  # noqa: F401 (fixtures)
    cashbacks,
    create_rule,
    fresh_currency,
    fund_pool,
    pay,
    pool_balance,
    rewards_api,
    rewards_server,
    run,
    shopper,
    transfer_event,
    wallet_balance,
)

FUNDINGS = "/v1/operator/rewards/pool/fundings"
REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"amount": 0}, "validation_error"),
    ({"amount": -5}, "validation_error"),
    ({"amount": 10.0}, "validation_error"),
    ({"amount": "100"}, "validation_error"),
    ({"amount": True}, "validation_error"),
    ({"amount": 2**63}, "validation_error"),
    ({"currency": "ZZZ"}, "currency_unknown"),
    ({"currency": "usd"}, "validation_error"),
    ({"reason": "ab"}, "validation_error"),
    ({"reason": "   "}, "validation_error"),
    ({"reason": None}, "validation_error"),
    ({"wallet_id": "wal_x"}, "validation_error"),
]


async def fund(api: Server, operator: User, body: dict[str, Any], **headers: str) -> Any:
    return await api.client.post(FUNDINGS, json=body, headers={**operator.auth, **headers})


class TestFunding:
    async def test_funding_is_idempotent_audited_and_double_entry(self, api: Server) -> None:
        operator = await create_operator(api)
        currency = fresh_currency(api)
        body = {"amount": 250_000, "currency": currency, "reason": "festival campaign"}
        idempotency = key()
        first = await fund(api, operator, body, **idempotency)
        assert first.status_code == 201, first.text
        made = first.json()
        assert made == {
            "id": made["id"],
            "object": "pool_funding",
            "amount": 250_000,
            "currency": currency,
            "reason": "festival campaign",
            "created_at": made["created_at"],
        }
        replayed = await fund(api, operator, body, **idempotency)
        assert replayed.json() == made
        assert replayed.headers["Idempotent-Replayed"] == "true"
        other_body = await fund(api, operator, {**body, "amount": 1}, **idempotency)
        assert_problem(other_body, 422, "idempotency_key_reused")
        assert_problem(await fund(api, operator, body), 400, "idempotency_key_missing")
        assert await pool_balance(api, operator, currency) == 250_000
        accounts = await system_accounts(api.client, operator)
        assert accounts["adjustments", currency]["debits_posted"] == 250_000
        assert accounts["rewards_pool", currency]["credits_posted"] == 250_000
        # Found by its target (this test's own currency), not by position: the log is
        # ordered by time, and a funding is stamped with its ledger transfer's time.
        recent = await actions_since(api.client, operator, None)
        [logged] = [a for a in recent if a["target"] == f"rewards_pool:{currency}"]
        assert logged["action"] == "rewards_pool_funding"
        assert logged["details"] == made

    async def test_refused_fundings_move_nothing(self, api: Server) -> None:
        operator = await create_operator(api)
        currency = fresh_currency(api)
        await fund_pool(api, operator, currency, 100)
        valid = {"amount": 500, "currency": currency, "reason": "top the pool up"}
        for change, code in REFUSED:
            response = await fund(api, operator, {**valid, **change}, **key())
            assert_problem(response, 422, code, case=change)
        assert await pool_balance(api, operator, currency) == 100

    async def test_a_currency_without_a_pool_gets_one(self, api: Server) -> None:
        """Databases from before rewards: the pool is created on first funding."""
        operator = await create_operator(api)
        currency = fresh_currency(api)
        listed = await api.client.get("/v1/operator/rewards/pool", headers=operator.auth)
        assert currency not in {p["currency"] for p in listed.json()}
        await fund_pool(api, operator, currency, 700)
        assert await pool_balance(api, operator, currency) == 700


async def parked_letter(conn: AsyncConnection, event: Event) -> dead_letters.DeadLetter:
    letters, _ = await dead_letters.list_dead_letters(
        conn, consumer=CONSUMER.name, status=dead_letters.PARKED, after=None, limit=100
    )
    [letter] = [letter for letter in letters if letter.event_id == event.id]
    return letter


class TestExhaustion:
    async def test_cashback_waits_for_funding_then_is_paid_once(self, api: Server) -> None:
        currency = fresh_currency(api)
        operator = await create_operator(api)
        customer = await shopper(api, currency, funds=100_000)
        merchant = await shopper(api, currency, role="merchant")
        await create_rule(api, operator, currency=currency, rate_bp=1_000, cap_amount=5_000)
        await fund_pool(api, operator, currency, 300)
        event = await transfer_event(api, await pay(api, customer, merchant, 40_000))

        # The pool holds 300 of the 4,000 due: the consumer gives up and the event is parked.
        failures = await run(api, [event])
        assert list(failures) == [event.id]
        assert failures[event.id].startswith("PoolExhausted: ")
        await dead_letters.park(
            api.engine,
            consumer=CONSUMER.name,
            body=event.encode(),
            event=event,
            error=failures[event.id],
            attempts=2,
        )
        assert await cashbacks(api, customer) == []
        assert await pool_balance(api, operator, currency) == 300

        # Funded, replayed (twice: a second replay of the same event changes nothing).
        await fund_pool(api, operator, currency, 10_000)
        async with api.engine.begin() as conn:
            letter = await parked_letter(conn, event)
            replaying = await dead_letters.request_replay(conn, letter.id)
        assert replaying.status == dead_letters.REPLAYING
        replayed = dead_letters.event_of(replaying)
        assert replayed == event
        for _ in range(2):
            assert await run(api, [replayed]) == {}
        async with api.engine.begin() as conn:
            await dead_letters.resolve(conn, replaying, error=None)
            resolved = await dead_letters.get_dead_letter(conn, letter.id)
        assert resolved is not None and resolved.status == dead_letters.REPLAYED

        [paid] = await cashbacks(api, customer)
        assert paid["amount"] == 4_000
        assert await wallet_balance(api.client, customer) == 100_000 - 40_000 + 4_000
        assert await pool_balance(api, operator, currency) == 10_300 - 4_000

    @pytest.mark.parametrize("pool", [0, 3_999])
    async def test_the_pool_never_pays_more_than_it_holds(self, api: Server, pool: int) -> None:
        currency = fresh_currency(api)
        operator = await create_operator(api)
        customer = await shopper(api, currency, funds=100_000)
        merchant = await shopper(api, currency, role="merchant")
        await create_rule(api, operator, currency=currency, rate_bp=1_000, cap_amount=5_000)
        if pool:
            await fund_pool(api, operator, currency, pool)
        event = await transfer_event(api, await pay(api, customer, merchant, 40_000))
        assert list(await run(api, [event])) == [event.id]
        assert await pool_balance(api, operator, currency) == pool
        assert await wallet_balance(api.client, customer) == 60_000
