"""The payout saga end to end, on both backends: the API starts it, the `payouts` consumer
and the bank caller run it against a real bank simulator, and every way the bank can
answer (or not answer) ends in the right terminal state with the money where it belongs."""

from __future__ import annotations

from sqlalchemy import select

from payflow.events import models as events_models
from tests.payouts.conftest import (
    Payouts,
    balance,
    calls,
    funded_user,
    start_payout,
    steps,
    transit_balance,
    wait_until_ended,
)

COMPLETED = [
    "TRANSACTION_INITIATED",
    "DEBIT_SUCCESS",
    "CREDIT_DUE",
    "CREDIT_SUCCESS",
    "TRANSACTION_COMPLETED",
]
REFUNDED = [
    "TRANSACTION_INITIATED",
    "DEBIT_SUCCESS",
    "CREDIT_DUE",
    "CREDIT_FAILED",
    "REFUND_REQUESTED",
    "REFUND_COMPLETED",
    "TRANSACTION_FAILED",
]


async def saga_events(world: Payouts, payout_id: str) -> list[str]:
    table = events_models.outbox
    async with world.api.engine.connect() as conn:
        rows = await conn.execute(
            select(table.c.type).where(table.c.aggregate_id == payout_id).order_by(table.c.sequence)
        )
        return [row.type for row in rows]


class TestCompleted:
    async def test_money_reaches_the_other_bank(self, world: Payouts) -> None:
        api = world.api
        user = await funded_user(api, 50_000)
        transit_before = await transit_balance(api)
        payout = await start_payout(api, user, 12_345)
        ended = await wait_until_ended(api, user, payout["id"])

        assert ended["status"] == "completed"
        assert steps(ended) == COMPLETED
        assert calls(ended) == [("credit", "credited")]
        assert ended["bank_transaction_id"]
        assert await balance(api, user) == {"posted": 37_655, "pending": 0, "available": 37_655}
        transit = await transit_balance(api)
        assert transit["posted"] - transit_before["posted"] == 12_345
        assert transit["pending"] == transit_before["pending"]
        credit = await world.bank.credit(payout["id"])
        assert credit is not None and credit["status"] == "credited"
        assert credit["amount"] == 12_345
        # Every step travelled as an event, named as the seed names them, in order.
        assert await saga_events(world, payout["id"]) == [s for s in COMPLETED if s != "CREDIT_DUE"]

    async def test_a_bank_account_destination(self, world: Payouts) -> None:
        user = await funded_user(world.api)
        payout = await start_payout(
            world.api,
            user,
            500,
            {"bank_code": "OKBK0000001", "account_number": "100000000002"},
        )
        ended = await wait_until_ended(world.api, user, payout["id"])
        assert ended["status"] == "completed", ended
        assert ended["destination"] == {
            "vpa": None,
            "bank_code": "OKBK0000001",
            "account_number": "100000000002",
        }

    async def test_the_money_is_held_while_the_bank_works(self, world: Payouts) -> None:
        api = world.api
        user = await funded_user(api, 10_000)
        # The bank holds the credit past our timeout: the payout waits, debited.
        await world.bank.fault("credit", "timeout")
        payout = await start_payout(api, user, 4_000)
        seen_pending = False
        for _ in range(100):
            current = await balance(api, user)
            if current["pending"] == 4_000:
                seen_pending = True
                assert current["available"] == 6_000
                break
            await _sleep()
        assert seen_pending
        ended = await wait_until_ended(api, user, payout["id"])
        assert ended["status"] == "completed"


async def _sleep() -> None:
    import asyncio

    await asyncio.sleep(0.02)


class TestRefunded:
    async def test_a_rejected_credit_is_refunded(self, world: Payouts) -> None:
        api = world.api
        user = await funded_user(api, 20_000)
        payout = await start_payout(api, user, 7_000, {"vpa": "nobody@okbank"})
        ended = await wait_until_ended(api, user, payout["id"])

        assert ended["status"] == "failed"
        assert ended["failure_reason"] == "account_not_found"
        assert steps(ended) == REFUNDED
        assert await balance(api, user) == {"posted": 20_000, "pending": 0, "available": 20_000}
        assert await saga_events(world, payout["id"]) == [s for s in REFUNDED if s != "CREDIT_DUE"]

    async def test_a_declining_bank_is_refunded(self, world: Payouts) -> None:
        user = await funded_user(world.api, 20_000)
        await world.bank.fault("credit", "failure")
        payout = await start_payout(world.api, user, 3_000)
        ended = await wait_until_ended(world.api, user, payout["id"])
        assert ended["failure_reason"] == "bank_declined"
        assert steps(ended) == REFUNDED
        assert (await balance(world.api, user))["available"] == 20_000


class TestDebitFailed:
    async def test_insufficient_funds_fail_without_a_bank_call(self, world: Payouts) -> None:
        api = world.api
        user = await funded_user(api, 1_000)
        payout = await start_payout(api, user, 1_001)
        ended = await wait_until_ended(api, user, payout["id"])
        assert ended["status"] == "failed"
        assert ended["failure_reason"] == "insufficient_funds"
        assert steps(ended) == ["TRANSACTION_INITIATED", "DEBIT_FAILED", "TRANSACTION_FAILED"]
        assert calls(ended) == []
        assert await world.bank.credit(payout["id"]) is None
        assert (await balance(api, user))["available"] == 1_000


class TestUnknownOutcomes:
    async def test_a_timeout_is_resolved_by_inquiry_not_by_refund(self, world: Payouts) -> None:
        user = await funded_user(world.api, 10_000)
        await world.bank.fault("credit", "timeout")
        payout = await start_payout(world.api, user, 2_500)
        ended = await wait_until_ended(world.api, user, payout["id"])

        assert ended["status"] == "completed", ended
        made = calls(ended)
        assert made[0] == ("credit", "unknown")
        assert made[-1] == ("inquiry", "credited")
        # Only inquiries after the unknown outcome: the credit was never sent twice.
        assert all(operation == "inquiry" for operation, _ in made[1:])
        assert (await balance(world.api, user))["available"] == 7_500

    async def test_a_lost_response_is_credited_once(self, world: Payouts) -> None:
        user = await funded_user(world.api, 10_000)
        await world.bank.fault("credit", "lost_response")
        payout = await start_payout(world.api, user, 1_500)
        ended = await wait_until_ended(world.api, user, payout["id"])
        assert ended["status"] == "completed", ended
        assert calls(ended) == [("credit", "unknown"), ("inquiry", "credited")]
        assert (await balance(world.api, user))["available"] == 8_500

    async def test_an_unavailable_bank_gets_the_credit_again(self, world: Payouts) -> None:
        user = await funded_user(world.api, 10_000)
        await world.bank.fault("credit", "unavailable", times=2)
        payout = await start_payout(world.api, user, 1_000)
        ended = await wait_until_ended(world.api, user, payout["id"])
        assert ended["status"] == "completed", ended
        assert calls(ended) == [
            ("credit", "unavailable"),
            ("credit", "unavailable"),
            ("credit", "credited"),
        ]

    async def test_failing_inquiries_are_retried(self, world: Payouts) -> None:
        user = await funded_user(world.api, 10_000)
        await world.bank.fault("credit", "lost_response")
        await world.bank.fault("inquiry", "unavailable", times=2)
        payout = await start_payout(world.api, user, 900)
        ended = await wait_until_ended(world.api, user, payout["id"])
        assert ended["status"] == "completed", ended
        assert calls(ended) == [
            ("credit", "unknown"),
            ("inquiry", "unavailable"),
            ("inquiry", "unavailable"),
            ("inquiry", "credited"),
        ]
