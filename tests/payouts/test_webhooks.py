"""Every step of every payout reaches its owner's webhook endpoint: verified by an
independent receiver (the `standardwebhooks` library), at least once, and exactly once
after de-duplicating on `webhook-id` — also when the receiver fails at first."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.api.conftest import User
from tests.payments.support import authorized, cancel, customer, merchant, paid, refund
from tests.payouts.conftest import Payouts, funded_user, start_payout, wait_until_ended
from tests.webhooks.receiver import Receiver
from tests.webhooks.support import create_endpoint

COMPLETED = [
    "TRANSACTION_INITIATED",
    "DEBIT_SUCCESS",
    "CREDIT_SUCCESS",
    "TRANSACTION_COMPLETED",
]
REFUNDED = [
    "TRANSACTION_INITIATED",
    "DEBIT_SUCCESS",
    "CREDIT_FAILED",
    "REFUND_REQUESTED",
    "REFUND_COMPLETED",
    "TRANSACTION_FAILED",
]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    running = Receiver(secrets=[])
    await running.start()
    yield running
    await running.stop()


def _steps_of(receiver: Receiver, payout_id: str) -> list[str]:
    bodies: list[dict[str, Any]] = list(receiver.messages.values())
    return [b["type"] for b in bodies if b["data"].get("id") == payout_id]


async def _endpoint(world: Payouts, user: User, receiver: Receiver) -> None:
    endpoint = await create_endpoint(world.api, user, receiver.url)
    receiver.secrets.append(endpoint["secret"])


async def test_each_step_arrives_verified_exactly_once(world: Payouts, receiver: Receiver) -> None:
    user = await funded_user(world.api, 20_000)
    await _endpoint(world, user, receiver)
    # The receiver fails the first attempts; the bank loses the first credit's answer.
    receiver.plan(500, 503, 500)
    await world.bank.fault("credit", "lost_response")
    done = await start_payout(world.api, user, 1_000)
    refused = await start_payout(world.api, user, 2_000, {"vpa": "nobody@okbank"})
    for payout in (done, refused):
        await wait_until_ended(world.api, user, payout["id"])

    def complete(r: Receiver) -> bool:
        return len(_steps_of(r, done["id"])) == len(COMPLETED) and len(
            _steps_of(r, refused["id"])
        ) == len(REFUNDED)

    await receiver.wait_for(complete)
    assert sorted(_steps_of(receiver, done["id"])) == sorted(COMPLETED)
    assert sorted(_steps_of(receiver, refused["id"])) == sorted(REFUNDED)
    assert receiver.unverified() == []
    # Every accepted message carries the owner and the payout as the API shows it.
    for body in receiver.messages.values():
        if body["data"].get("object") == "payout":
            assert body["data"]["user_id"] == user.id
    # The failed first attempts were retried under the same webhook-id.
    failed_ids = {r.webhook_id for r in receiver.requests if r.status >= 500}
    assert failed_ids and failed_ids <= set(receiver.messages)


async def test_other_users_hear_nothing_of_it(world: Payouts, receiver: Receiver) -> None:
    owner = await funded_user(world.api, 5_000)
    stranger = await funded_user(world.api, 5_000)
    await _endpoint(world, stranger, receiver)
    payout = await start_payout(world.api, owner, 700)
    await wait_until_ended(world.api, owner, payout["id"])
    # The stranger's own top-up may arrive; nothing about the owner's payout does.
    mine = await start_payout(world.api, stranger, 100)
    await wait_until_ended(world.api, stranger, mine["id"])
    await receiver.wait_for(lambda r: len(_steps_of(r, mine["id"])) == len(COMPLETED))
    assert _steps_of(receiver, payout["id"]) == []


def _payment_events(receiver: Receiver, payment_id: str) -> list[str]:
    bodies: list[dict[str, Any]] = list(receiver.messages.values())
    return [b["type"] for b in bodies if b["data"].get("payment_id") == payment_id]


async def test_each_payment_state_change_reaches_customer_and_merchant(
    world: Payouts, receiver: Receiver
) -> None:
    api = world.api
    shop = await merchant(api)
    payer = await customer(api, 50_000)
    shop_hooks, payer_hooks = Receiver(secrets=[]), receiver
    await shop_hooks.start()
    try:
        await _endpoint(world, shop.user, shop_hooks)
        await _endpoint(world, payer, payer_hooks)
        payer_hooks.plan(500, 500)  # the customer's receiver fails at first
        kept = await paid(api, payer, shop, 10_000)
        assert (await refund(api, shop.key_auth, kept, amount=2_500)).status_code == 201
        held = await authorized(api, payer, shop, 4_000)
        assert (await cancel(api, shop.key_auth, held)).status_code == 200
        expected = {
            kept: ["payment.succeeded", "payment.refunded"],
            held: ["payment.initiated", "payment.failed"],
        }

        def complete(r: Receiver) -> bool:
            return all(len(_payment_events(r, p)) == len(e) for p, e in expected.items())

        for hooks in (shop_hooks, payer_hooks):
            await hooks.wait_for(complete)
            for payment_id, types in expected.items():
                assert sorted(_payment_events(hooks, payment_id)) == sorted(types)
            assert hooks.unverified() == []
    finally:
        await shop_hooks.stop()
