"""Payout routes over HTTP on both backends: what they accept, what they refuse (changing
nothing), who sees what, idempotency, and transfers to other banks becoming payouts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select

from payflow.payouts import models
from tests.api.conftest import create_operator, register
from tests.payouts.conftest import (
    CURRENCY,
    Payouts,
    balance,
    funded_user,
    key,
    start_payout,
    wait_until_ended,
)

VALID: dict[str, Any] = {
    "amount": 1_000,
    "currency": CURRENCY,
    "destination": {"vpa": "asha@okbank"},
}


async def payout_count(world: Payouts) -> int:
    async with world.api.engine.connect() as conn:
        return int(
            (await conn.execute(select(func.count()).select_from(models.payouts))).scalar_one()
        )


class TestRefused:
    @pytest.mark.parametrize(
        ("change", "status", "code"),
        [
            ({"amount": 10.5}, 422, "validation_error"),
            ({"amount": "1000"}, 422, "validation_error"),
            ({"amount": True}, 422, "validation_error"),
            ({"amount": 0}, 422, "validation_error"),
            ({"amount": -5}, 422, "validation_error"),
            ({"amount": 2**63}, 422, "validation_error"),
            ({"currency": "XYZ1"}, 422, "validation_error"),
            ({"destination": {"vpa": "asha@payflow"}}, 422, "destination_on_us"),
            ({"destination": {"vpa": "not an address"}}, 422, "destination_invalid"),
            ({"destination": {}}, 422, "destination_invalid"),
            ({"destination": {"bank_code": "OKBK0000001"}}, 422, "destination_invalid"),
            (
                {"destination": {"bank_code": "bad", "account_number": "100000000002"}},
                422,
                "destination_invalid",
            ),
            (
                {"destination": {"vpa": "asha@okbank", "bank_code": "OKBK0000001"}},
                422,
                "destination_invalid",
            ),
            ({"destination": {"vpa": "asha@okbank", "iban": "x"}}, 422, "validation_error"),
            ({"destination": "asha@okbank"}, 422, "validation_error"),
            ({"surprise": 1}, 422, "validation_error"),
            ({"description": ""}, 422, "validation_error"),
            ({"description": "x" * 141}, 422, "validation_error"),
        ],
    )
    async def test_bad_bodies(
        self, world: Payouts, change: dict[str, Any], status: int, code: str
    ) -> None:
        user = await funded_user(world.api, 5_000)
        before = await payout_count(world)
        body = {**VALID, **change}
        response = await world.api.client.post(
            "/v1/payouts", json=body, headers={**user.auth, **key()}
        )
        assert response.status_code == status, response.text
        assert response.json()["code"] == code
        assert response.headers["content-type"].startswith("application/problem+json")
        assert await payout_count(world) == before
        assert (await balance(world.api, user))["available"] == 5_000

    async def test_missing_fields(self, world: Payouts) -> None:
        user = await funded_user(world.api)
        for field in ("amount", "currency", "destination"):
            body = {k: v for k, v in VALID.items() if k != field}
            response = await world.api.client.post(
                "/v1/payouts", json=body, headers={**user.auth, **key()}
            )
            assert response.status_code == 422, response.text

    async def test_too_large(self, world: Payouts) -> None:
        user = await funded_user(world.api)
        limit = world.api.settings.payout_amount_max
        response = await world.api.client.post(
            "/v1/payouts", json={**VALID, "amount": limit + 1}, headers={**user.auth, **key()}
        )
        assert response.status_code == 422
        assert response.json()["code"] == "amount_too_large"

    async def test_an_idempotency_key_is_required(self, world: Payouts) -> None:
        user = await funded_user(world.api)
        before = await payout_count(world)
        response = await world.api.client.post("/v1/payouts", json=VALID, headers=user.auth)
        assert response.status_code == 400
        assert await payout_count(world) == before

    async def test_no_wallet_in_that_currency(self, world: Payouts) -> None:
        user = await funded_user(world.api)
        before = await payout_count(world)
        response = await world.api.client.post(
            "/v1/payouts", json={**VALID, "currency": "JPY"}, headers={**user.auth, **key()}
        )
        assert response.status_code == 404, response.text
        assert await payout_count(world) == before

    async def test_unauthenticated(self, world: Payouts) -> None:
        response = await world.api.client.post("/v1/payouts", json=VALID, headers=key())
        assert response.status_code == 401


class TestIdempotency:
    async def test_a_replay_returns_the_same_payout_and_moves_money_once(
        self, world: Payouts
    ) -> None:
        api = world.api
        user = await funded_user(api, 10_000)
        headers = {**user.auth, **key()}
        first = await api.client.post("/v1/payouts", json=VALID, headers=headers)
        again = await api.client.post("/v1/payouts", json=VALID, headers=headers)
        assert first.status_code == again.status_code == 202
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json()["id"] == first.json()["id"]
        await wait_until_ended(api, user, first.json()["id"])
        assert (await balance(api, user))["available"] == 9_000

    async def test_concurrent_identical_requests_start_one_payout(self, world: Payouts) -> None:
        api = world.api
        user = await funded_user(api, 10_000)
        headers = {**user.auth, **key()}
        before = await payout_count(world)
        responses = await asyncio.gather(
            *(api.client.post("/v1/payouts", json=VALID, headers=headers) for _ in range(8))
        )
        codes = sorted(r.status_code for r in responses)
        assert set(codes) <= {202, 409}, codes
        ids = {r.json()["id"] for r in responses if r.status_code == 202}
        assert len(ids) == 1
        assert await payout_count(world) == before + 1
        await wait_until_ended(api, user, ids.pop())
        assert (await balance(api, user))["available"] == 9_000

    async def test_same_key_other_body(self, world: Payouts) -> None:
        user = await funded_user(world.api)
        headers = {**user.auth, **key()}
        first = await world.api.client.post("/v1/payouts", json=VALID, headers=headers)
        assert first.status_code == 202
        other = await world.api.client.post(
            "/v1/payouts", json={**VALID, "amount": 999}, headers=headers
        )
        assert other.status_code == 422
        await wait_until_ended(world.api, user, first.json()["id"])


class TestReading:
    async def test_only_the_owner_and_operators_see_a_payout(self, world: Payouts) -> None:
        api = world.api
        owner = await funded_user(api)
        stranger = await register(api.client)
        operator = await create_operator(api)
        payout = await start_payout(api, owner, 100)
        ended = await wait_until_ended(api, owner, payout["id"])
        seen = await api.client.get(f"/v1/payouts/{payout['id']}", headers=operator.auth)
        assert seen.status_code == 200
        assert seen.json()["status"] == ended["status"]
        hidden = await api.client.get(f"/v1/payouts/{payout['id']}", headers=stranger.auth)
        assert hidden.status_code == 404
        assert hidden.json()["code"] == "payout_not_found"

    @pytest.mark.parametrize(
        "bad", ["po_nothex", "txn_" + "0" * 32, "po_80da717c77f740b4bd67a3b9f3acb5b8"]
    )
    async def test_unknown_ids(self, world: Payouts, bad: str) -> None:
        user = await register(world.api.client)
        response = await world.api.client.get(f"/v1/payouts/{bad}", headers=user.auth)
        assert response.status_code == 404
        assert response.json()["code"] == "payout_not_found"

    async def test_the_timeline_has_times_and_attempts(self, world: Payouts) -> None:
        user = await funded_user(world.api)
        payout = await start_payout(world.api, user, 100)
        ended = await wait_until_ended(world.api, user, payout["id"])
        times = [entry["at"] for entry in ended["timeline"]]
        assert times == sorted(times)
        [due] = [e for e in ended["timeline"] if e["step"] == "CREDIT_DUE"]
        [attempt] = due["attempts"]
        assert attempt["number"] == 1
        assert attempt["started_at"] <= attempt["finished_at"]

    async def test_lists_are_the_callers_own_newest_first(self, world: Payouts) -> None:
        api = world.api
        user = await funded_user(api)
        other = await funded_user(api)
        made = [await start_payout(api, user, amount) for amount in (100, 200, 300)]
        await start_payout(api, other, 400)
        first = await api.client.get("/v1/payouts?limit=2", headers=user.auth)
        assert first.status_code == 200
        page = first.json()
        assert [p["id"] for p in page["data"]] == [made[2]["id"], made[1]["id"]]
        rest = await api.client.get(
            f"/v1/payouts?limit=2&after={page['next_cursor']}", headers=user.auth
        )
        assert [p["id"] for p in rest.json()["data"]] == [made[0]["id"]]
        assert rest.json()["next_cursor"] is None
        for p in made:
            await wait_until_ended(api, user, p["id"])

    @pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=x", "after=garbage"])
    async def test_bad_list_queries(self, world: Payouts, query: str) -> None:
        user = await register(world.api.client)
        response = await world.api.client.get(f"/v1/payouts?{query}", headers=user.auth)
        assert response.status_code == 422


class TestOffUsTransfers:
    async def test_a_transfer_to_another_bank_becomes_a_payout(self, world: Payouts) -> None:
        api = world.api
        user = await funded_user(api, 5_000)
        response = await api.client.post(
            "/v1/transfers",
            json={"to": "ravi@okbank", "amount": 1_200, "currency": CURRENCY, "note": "rent"},
            headers={**user.auth, **key()},
        )
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["object"] == "payout"
        assert body["destination"] == {"vpa": "ravi@okbank"}
        assert body["description"] == "rent"
        ended = await wait_until_ended(api, user, body["id"])
        assert ended["status"] == "completed"
        assert (await balance(api, user))["available"] == 3_800

    async def test_a_malformed_off_us_address_is_refused(self, world: Payouts) -> None:
        user = await funded_user(world.api, 5_000)
        before = await payout_count(world)
        response = await world.api.client.post(
            "/v1/transfers",
            json={"to": "ra vi@ok.bank", "amount": 100, "currency": CURRENCY},
            headers={**user.auth, **key()},
        )
        assert response.status_code == 422
        assert response.json()["code"] == "destination_invalid"
        assert await payout_count(world) == before

    async def test_on_us_addresses_stay_transfers(self, world: Payouts) -> None:
        api = world.api
        payer = await funded_user(api, 5_000)
        payee = await register(api.client)
        response = await api.client.post(
            "/v1/transfers",
            json={"to": payee.address, "amount": 100, "currency": CURRENCY},
            headers={**payer.auth, **key()},
        )
        assert response.status_code == 201
        assert response.json()["object"] == "transfer"
