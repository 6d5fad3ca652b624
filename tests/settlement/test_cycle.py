"""The settlement cycle end to end, on both backends: payments over HTTP, the `settlement`
consumer hearing them, a run of the cycle, the payout saga against the real bank
simulator, and the money on every side agreeing with the settlement's lines."""

from __future__ import annotations

import asyncio

from payflow.ids import parse_public_id
from payflow.timestamps import now_ns
from tests.api.conftest import key
from tests.payments.support import (
    assert_problem,
    authorized,
    customer,
    operator,
    paid,
    refund,
    wallet_funds,
)
from tests.settlement.conftest import World
from tests.settlement.support import (
    ended,
    events_of,
    eventually_listed,
    fees_from,
    heard,
    items,
    lines_by_payment,
    lines_per_payment,
    next_run_of,
    pay_all,
    run,
    set_next_run,
    shop,
)


class TestCycle:
    async def test_a_cycle_settles_exactly_the_succeeded_payments(self, world: World) -> None:
        api = world.api
        op = await operator(api)
        seller = await shop(world, op, fee_bps=250)
        other = await shop(world, op)
        buyer = await customer(api, funds=50_000)
        payments = await pay_all(world, buyer, seller, [10_000, 5_000, 2_001])
        refunded = await refund(api, seller.auth, payments[0], amount=1_000)
        assert refunded.status_code == 201, refunded.text
        # Neither an authorization not yet captured nor another merchant's payment is
        # this merchant's to settle.
        await authorized(api, buyer, seller, 700)
        elsewhere = await paid(api, buyer, other, 300)
        await heard(world, payments, refunded={payments[0]: 1_000})
        await heard(world, [elsewhere])
        assert await wallet_funds(api, seller.user) == {
            "posted": 16_001,
            "pending": 0,
            "available": 16_001,
        }

        [made] = await run(world, op, seller.id)

        assert made["status"] == "processing"
        assert (made["line_count"], made["gross_amount"], made["refunded_amount"]) == (
            3,
            17_001,
            1_000,
        )
        # 2.5 % of each payment, rounded down: 250 + 125 + 50.
        assert (made["fee_amount"], made["net_amount"]) == (425, 15_576)
        assert await fees_from(world, seller.wallet_id) == 425
        settlement = await ended(world, seller.auth, made["id"])
        assert settlement["status"] == "paid"
        lines = lines_by_payment(settlement)
        assert set(lines) == set(payments)
        assert [
            (lines[p]["amount"], lines[p]["refunded_amount"], lines[p]["fee_amount"])
            for p in payments
        ] == [(10_000, 1_000, 250), (5_000, 0, 125), (2_001, 0, 50)]
        assert sum(line["net_amount"] for line in lines.values()) == settlement["net_amount"]
        # The wallet paid the fee and the payout; the bank credited exactly the net.
        assert await wallet_funds(api, seller.user) == {"posted": 0, "pending": 0, "available": 0}
        credit = await world.bank.credit(settlement["payout_id"])
        assert credit is not None
        assert (credit["status"], credit["amount"], credit["currency"]) == (
            "credited",
            15_576,
            "INR",
        )
        events = await events_of(world, made["id"])
        assert [kind for kind, _ in events] == ["settlement.created", "settlement.paid"]
        assert all(data["merchant_user_id"] == seller.user.id for _, data in events)
        assert events[-1][1]["status"] == "paid"

    async def test_nothing_to_settle_makes_no_settlement(self, world: World) -> None:
        op = await operator(world.api)
        seller = await shop(world, op)
        assert await run(world, op, seller.id) == []
        assert await fees_from(world, seller.wallet_id) == 0


class TestOnce:
    async def test_running_again_settles_nothing_twice(self, world: World) -> None:
        op = await operator(world.api)
        seller = await shop(world, op, fee_bps=100)
        buyer = await customer(world.api, funds=20_000)
        first = await pay_all(world, buyer, seller, [4_000])
        [made] = await run(world, op, seller.id)
        assert await run(world, op, seller.id) == []
        # A payment made after the first settlement is the only one in the next.
        later = await pay_all(world, buyer, seller, [1_500])
        [again] = await run(world, op, seller.id)
        assert lines_by_payment(await ended(world, seller.auth, made["id"])).keys() == set(first)
        assert lines_by_payment(await ended(world, seller.auth, again["id"])).keys() == set(later)
        assert await lines_per_payment(world, first + later) == dict.fromkeys(first + later, 1)

    async def test_concurrent_runs_settle_each_payment_once(self, world: World) -> None:
        op = await operator(world.api)
        seller = await shop(world, op, fee_bps=50)
        buyer = await customer(world.api, funds=20_000)
        payments = await pay_all(world, buyer, seller, [1_000, 2_000, 3_000])

        results = await asyncio.gather(
            run(world, op, seller.id), run(world, op, seller.id), run(world, op, None)
        )

        made = [s for result in results for s in result if s["merchant_id"] == seller.id]
        assert len(made) == 1, made
        assert await lines_per_payment(world, payments) == dict.fromkeys(payments, 1)
        assert await fees_from(world, seller.wallet_id) == made[0]["fee_amount"] == 5 + 10 + 15
        assert (await ended(world, seller.auth, made[0]["id"]))["status"] == "paid"


class TestFailure:
    async def test_a_rejected_payout_fails_the_settlement_and_the_next_cycle_pays(
        self, world: World
    ) -> None:
        api = world.api
        op = await operator(api)
        # An address the bank does not know: its rejection concerns this payout alone
        # (a scripted fault would go to whichever credit reached the bank first).
        nowhere = {"vpa": "nobody@okbank"}
        seller = await shop(world, op, fee_bps=1_000, settlement_destination=nowhere)
        buyer = await customer(api, funds=20_000)
        payments = await pay_all(world, buyer, seller, [3_000, 2_000])
        [first] = await run(world, op, seller.id)
        failed = await ended(world, seller.auth, first["id"])

        assert failed["status"] == "failed"
        assert failed["failure_reason"] == "account_not_found"
        payout = await api.client.get(f"/v1/payouts/{failed['payout_id']}", headers=seller.auth)
        assert payout.json()["failure_reason"] == failed["failure_reason"]
        # The payout's money came back, and so did the fee: the wallet is whole again.
        assert await fees_from(world, seller.wallet_id) == 0
        assert (await wallet_funds(api, seller.user))["available"] == 5_000
        assert lines_by_payment(failed).keys() == set(payments)
        events = await events_of(world, first["id"])
        assert [kind for kind, _ in events] == ["settlement.created", "settlement.failed"]
        assert events[-1][1]["failure_reason"] == failed["failure_reason"]

        # The payments were released: once the merchant fixed its destination, the next
        # cycle settles them again, and pays.
        fixed = await api.client.patch(
            "/v1/merchants/me",
            json={"settlement_destination": {"vpa": "asha@okbank"}},
            headers=seller.auth,
        )
        assert fixed.status_code == 200, fixed.text
        [second] = await run(world, op, seller.id)
        paid_now = await ended(world, seller.auth, second["id"])
        assert paid_now["status"] == "paid"
        assert lines_by_payment(paid_now).keys() == set(payments)
        assert (paid_now["fee_amount"], paid_now["net_amount"]) == (500, 4_500)
        assert await fees_from(world, seller.wallet_id) == 500
        assert (await wallet_funds(api, seller.user))["available"] == 0
        assert await lines_per_payment(world, payments) == dict.fromkeys(payments, 1)
        credit = await world.bank.credit(paid_now["payout_id"])
        assert credit is not None and credit["amount"] == 4_500

    async def test_a_closed_bank_account_fails_until_the_merchant_fixes_it(
        self, world: World
    ) -> None:
        api = world.api
        op = await operator(api)
        closed = {"bank_code": "SBIN0004321", "account_number": "30007654321"}
        seller = await shop(world, op, settlement_destination=closed)
        buyer = await customer(api, funds=5_000)
        payments = await pay_all(world, buyer, seller, [1_234])
        [first] = await run(world, op, seller.id)
        assert (await ended(world, seller.auth, first["id"]))["failure_reason"] == "account_closed"

        fixed = await api.client.patch(
            "/v1/merchants/me",
            json={"settlement_destination": {"vpa": "asha@okbank"}},
            headers=seller.auth,
        )
        assert fixed.status_code == 200, fixed.text
        [second] = await run(world, op, seller.id)
        assert (await ended(world, seller.auth, second["id"]))["status"] == "paid"
        assert await lines_per_payment(world, payments) == {payments[0]: 1}


class TestSchedule:
    async def test_the_worker_settles_a_merchant_when_its_cycle_is_due(self, world: World) -> None:
        op = await operator(world.api)
        seller = await shop(world, op, settlement_interval_s=60)
        buyer = await customer(world.api, funds=5_000)
        payments = await pay_all(world, buyer, seller, [800])
        # Its first cycle is due a minute after its first payment: bring that forward.
        merchant_id = parse_public_id("mer", seller.id)
        await set_next_run(world, merchant_id, now_ns() - 1)

        listed = await eventually_listed(world, seller)

        assert lines_by_payment(await ended(world, seller.auth, listed["id"])).keys() == set(
            payments
        )
        next_run = await next_run_of(world, merchant_id)
        assert now_ns() + 50 * 10**9 < next_run <= now_ns() + 60 * 10**9

    async def test_a_suspended_merchant_is_not_settled(self, world: World) -> None:
        op = await operator(world.api)
        seller = await shop(world, op)
        buyer = await customer(world.api, funds=5_000)
        payments = await pay_all(world, buyer, seller, [900])
        suspended = await world.api.client.patch(
            f"/v1/operator/merchants/{seller.id}", json={"status": "suspended"}, headers=op.auth
        )
        assert suspended.status_code == 200, suspended.text

        response = await world.api.client.post(
            "/v1/operator/settlements/run",
            json={"merchant": seller.id},
            headers={**op.auth, **key()},
        )

        assert_problem(response, 409, "merchant_suspended")
        assert all(s["merchant_id"] != seller.id for s in await run(world, op, None))
        assert (await items(world, payments))[payments[0]]["settlement_id"] is None
