"""Merchant profiles over HTTP on both backends: self-serve, operator onboarding and
control (audited), the service functions other contexts call; every refusal changes
nothing."""

from __future__ import annotations

import re
import uuid
from typing import Any

from payflow.ids import parse_public_id
from payflow.merchants import service
from payflow.merchants.domain import MerchantStatus
from tests.api.conftest import PASSWORD, Server, register, unique_handle
from tests.payments.support import BANK, assert_problem, customer, merchant, operator

DESTINATION_REFUSALS: list[tuple[dict[str, Any], int, str]] = [
    ({}, 422, "settlement_destination_invalid"),
    ({"bank_code": "HDFC0001234"}, 422, "settlement_destination_invalid"),
    ({"account_number": "123456789"}, 422, "settlement_destination_invalid"),
    ({**BANK, "vpa": "shop@okhdfc"}, 422, "settlement_destination_invalid"),
    ({**BANK, "bank_code": "HDFC1001234"}, 422, "bank_code_invalid"),
    ({**BANK, "bank_code": "hdfc0001234"}, 422, "bank_code_invalid"),
    ({**BANK, "bank_code": "HDF0001234"}, 422, "bank_code_invalid"),
    ({**BANK, "account_number": "12345"}, 422, "account_number_invalid"),
    ({**BANK, "account_number": "1" * 19}, 422, "account_number_invalid"),
    ({**BANK, "account_number": "12345a789"}, 422, "account_number_invalid"),
    ({"vpa": "shop"}, 422, "vpa_invalid"),
    ({"vpa": "shop@"}, 422, "vpa_invalid"),
    ({"vpa": "sh op@okhdfc"}, 422, "vpa_invalid"),
    ({"vpa": "shop@payflow"}, 422, "vpa_on_us"),
    ({"vpa": "Shop@PayFlow"}, 422, "vpa_on_us"),
    ({"vpa": 5}, 422, "validation_error"),
    ({"bank_code": "X" * 21, "account_number": "123456"}, 422, "validation_error"),
    ({"iban": "DE89"}, 422, "validation_error"),
]

PROFILE_REFUSALS: list[tuple[dict[str, Any], int, str]] = [
    ({"business_name": ""}, 422, "validation_error"),
    ({"business_name": "   "}, 422, "business_name_invalid"),
    ({"business_name": "bad\x07name"}, 422, "business_name_invalid"),
    ({"business_name": "x" * 101}, 422, "business_name_invalid"),
    ({"business_name": 7}, 422, "validation_error"),
    ({"settlement_currency": "inr"}, 422, "validation_error"),
    ({"settlement_currency": "XXY"}, 422, "currency_unknown"),
    ({"settlement_interval_s": 59}, 422, "settlement_interval_invalid"),
    ({"settlement_interval_s": 0}, 422, "settlement_interval_invalid"),
    ({"settlement_interval_s": 2**70}, 422, "settlement_interval_invalid"),
    ({"settlement_interval_s": 60.0}, 422, "validation_error"),
    ({"settlement_interval_s": "3600"}, 422, "validation_error"),
    ({"fee_bps": 10}, 422, "validation_error"),
    ({"settlement_destination": None}, 422, "validation_error"),
]


def profile(**fields: Any) -> dict[str, Any]:
    return {"business_name": "Dosa Hut", "settlement_destination": BANK, **fields}


class TestSelfServe:
    async def test_create_and_read_the_profile(self, api: Server) -> None:
        user = await register(api.client, role="merchant")
        response = await api.client.post(
            "/v1/merchants",
            json=profile(settlement_destination={"vpa": " DosaHut@OKHDFC "}),
            headers=user.auth,
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert re.fullmatch(r"mer_[0-9a-f]{32}", body["id"])
        assert body["object"] == "merchant"
        assert body["user_id"] == user.id
        assert body["wallet_id"] == user.wallet_id
        assert body["business_name"] == "Dosa Hut"
        assert body["status"] == "active"
        assert body["settlement_currency"] == "INR"
        assert body["settlement_destination"] == {
            "type": "vpa",
            "bank_code": None,
            "account_number": None,
            "vpa": "dosahut@okhdfc",
        }
        assert body["settlement_interval_s"] == 86_400
        assert body["fee_bps"] == 0
        me = await api.client.get("/v1/merchants/me", headers=user.auth)
        assert me.json() == body
        again = await api.client.post("/v1/merchants", json=profile(), headers=user.auth)
        assert_problem(again, 409, "merchant_exists")

    async def test_a_profile_in_another_currency_opens_its_wallet(self, api: Server) -> None:
        user = await register(api.client, role="merchant")
        response = await api.client.post(
            "/v1/merchants",
            json=profile(settlement_currency="USD", settlement_interval_s=60),
            headers=user.auth,
        )
        assert response.status_code == 201, response.text
        wallets = (await api.client.get("/v1/wallets", headers=user.auth)).json()
        [usd] = [w for w in wallets if w["currency"] == "USD"]
        assert response.json()["wallet_id"] == usd["id"]
        assert response.json()["settlement_interval_s"] == 60

    async def test_update_destination_and_interval(self, api: Server) -> None:
        shop = await merchant(api)
        response = await api.client.patch(
            "/v1/merchants/me",
            json={"settlement_destination": {"vpa": "chai@oksbi"}, "settlement_interval_s": 3600},
            headers=shop.auth,
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["settlement_destination"]["vpa"] == "chai@oksbi"
        assert body["settlement_destination"]["bank_code"] is None
        assert body["settlement_interval_s"] == 3600
        assert (await api.client.get("/v1/merchants/me", headers=shop.key_auth)).json() == body

    async def test_refused_creations_create_nothing(self, api: Server) -> None:
        user = await register(api.client, role="merchant")
        cases = [
            *[(profile(settlement_destination=d), s, c) for d, s, c in DESTINATION_REFUSALS],
            *[(profile(**change), s, c) for change, s, c in PROFILE_REFUSALS],
        ]
        for body, status, code in cases:
            response = await api.client.post("/v1/merchants", json=body, headers=user.auth)
            assert_problem(response, status, code, case=body)
        assert_problem(
            await api.client.get("/v1/merchants/me", headers=user.auth), 404, "merchant_not_found"
        )
        wallets = (await api.client.get("/v1/wallets", headers=user.auth)).json()
        assert [w["currency"] for w in wallets] == ["INR"]

    async def test_refused_updates_change_nothing(self, api: Server) -> None:
        shop = await merchant(api)
        before = (await api.client.get("/v1/merchants/me", headers=shop.auth)).json()
        cases: list[tuple[dict[str, Any], int, str]] = [
            *[({"settlement_destination": d}, s, c) for d, s, c in DESTINATION_REFUSALS],
            ({}, 422, "nothing_to_update"),
            ({"settlement_interval_s": 59}, 422, "settlement_interval_invalid"),
            ({"settlement_interval_s": True}, 422, "validation_error"),
            ({"fee_bps": 0}, 422, "validation_error"),
            ({"status": "suspended"}, 422, "validation_error"),
        ]
        for body, status, code in cases:
            response = await api.client.patch("/v1/merchants/me", json=body, headers=shop.auth)
            assert_problem(response, status, code, case=body)
        keyed = await api.client.patch(
            "/v1/merchants/me", json={"settlement_interval_s": 600}, headers=shop.key_auth
        )
        assert_problem(keyed, 403, "forbidden")
        assert (await api.client.get("/v1/merchants/me", headers=shop.auth)).json() == before

    async def test_only_merchants_have_profiles(self, api: Server) -> None:
        buyer = await customer(api, funds=0)
        for response in (
            await api.client.post("/v1/merchants", json=profile(), headers=buyer.auth),
            await api.client.get("/v1/merchants/me", headers=buyer.auth),
            await api.client.patch(
                "/v1/merchants/me", json={"settlement_interval_s": 60}, headers=buyer.auth
            ),
        ):
            assert_problem(response, 403, "forbidden")
        assert_problem(await api.client.get("/v1/merchants/me"), 401, "unauthenticated")
        fresh = await register(api.client, role="merchant")
        assert_problem(
            await api.client.get("/v1/merchants/me", headers=fresh.auth), 404, "merchant_not_found"
        )


class TestOperator:
    async def test_onboard_an_existing_user_and_a_new_one(self, api: Server) -> None:
        op = await operator(api)
        user = await register(api.client, role="merchant")
        existing = await api.client.post(
            "/v1/operator/merchants",
            json=profile(user_id=user.id, fee_bps=150),
            headers=op.auth,
        )
        assert existing.status_code == 201, existing.text
        assert existing.json()["user_id"] == user.id
        assert existing.json()["fee_bps"] == 150
        handle = unique_handle("shop")
        new_user = {
            "email": f"{handle}@example.com",
            "password": PASSWORD,
            "name": "New Shop",
            "handle": handle,
        }
        created = await api.client.post(
            "/v1/operator/merchants", json=profile(user=new_user), headers=op.auth
        )
        assert created.status_code == 201, created.text
        login = await api.client.post(
            "/v1/auth/login", json={"email": new_user["email"], "password": PASSWORD}
        )
        token = {"Authorization": f"Bearer {login.json()['access_token']}"}
        assert (await api.client.get("/v1/merchants/me", headers=token)).json() == created.json()
        actions = await api.client.get("/v1/operator/actions", headers=op.auth)
        logged = {
            (a["action"], a["target"]) for a in actions.json()["data"] if a["actor_id"] == op.id
        }
        assert ("merchant_onboarded", existing.json()["id"]) in logged
        assert ("merchant_onboarded", created.json()["id"]) in logged

    async def test_refused_onboardings_create_nothing(self, api: Server) -> None:
        op = await operator(api)
        buyer = await customer(api, funds=0)
        shop = await merchant(api)
        user = await register(api.client, role="merchant")
        cases: list[tuple[dict[str, Any], int, str]] = [
            (profile(), 422, "merchant_user_required"),
            (profile(user_id=user.id, user={}), 422, "validation_error"),
            (profile(user_id=buyer.id), 422, "user_not_merchant"),
            (profile(user_id=shop.user.id), 409, "merchant_exists"),
            (profile(user_id="usr_" + "0" * 32), 404, "user_not_found"),
            (profile(user_id="nonsense"), 404, "user_not_found"),
            (profile(user_id=user.id, fee_bps=10_001), 422, "fee_invalid"),
            (profile(user_id=user.id, fee_bps=-1), 422, "fee_invalid"),
            (profile(user_id=user.id, fee_bps=1.5), 422, "validation_error"),
            (
                profile(user_id=user.id, settlement_destination={"vpa": "xy@payflow"}),
                422,
                "vpa_on_us",
            ),
        ]
        for body, status, code in cases:
            response = await api.client.post("/v1/operator/merchants", json=body, headers=op.auth)
            assert_problem(response, status, code, case=body)
        assert_problem(
            await api.client.get("/v1/merchants/me", headers=user.auth), 404, "merchant_not_found"
        )
        for who in (buyer, user):
            denied = await api.client.post(
                "/v1/operator/merchants", json=profile(user_id=user.id), headers=who.auth
            )
            assert_problem(denied, 403, "forbidden")

    async def test_fee_and_status_are_set_and_logged(self, api: Server) -> None:
        op = await operator(api)
        shop = await merchant(api)
        path = f"/v1/operator/merchants/{shop.id}"
        response = await api.client.patch(
            path, json={"fee_bps": 250, "status": "suspended"}, headers=op.auth
        )
        assert response.status_code == 200, response.text
        assert (response.json()["fee_bps"], response.json()["status"]) == (250, "suspended")
        assert (await api.client.get(path, headers=op.auth)).json() == response.json()
        actions = (await api.client.get("/v1/operator/actions", headers=op.auth)).json()["data"]
        [logged] = [a for a in actions if a["target"] == shop.id]
        assert logged["action"] == "merchant_updated"
        assert logged["details"] == {
            "fee_bps": {"from": 0, "to": 250},
            "status": {"from": "active", "to": "suspended"},
        }
        before = response.json()
        for body, status, code in [
            ({}, 422, "nothing_to_update"),
            ({"fee_bps": 10_001}, 422, "fee_invalid"),
            ({"fee_bps": "5"}, 422, "validation_error"),
            ({"status": "closed"}, 422, "validation_error"),
        ]:
            refused = await api.client.patch(path, json=body, headers=op.auth)
            assert_problem(refused, status, code, case=body)
        for bad in ("mer_" + "0" * 32, "mer_zz", "x"):
            missing = await api.client.patch(
                f"/v1/operator/merchants/{bad}", json={"fee_bps": 1}, headers=op.auth
            )
            assert_problem(missing, 404, "merchant_not_found")
        denied = await api.client.patch(path, json={"fee_bps": 0}, headers=shop.auth)
        assert_problem(denied, 403, "forbidden")
        assert (await api.client.get(path, headers=op.auth)).json() == before

    async def test_list_filters_and_pages(self, api: Server) -> None:
        op = await operator(api)
        shops = [await merchant(api) for _ in range(3)]
        suspended = shops[1]
        await api.client.patch(
            f"/v1/operator/merchants/{suspended.id}", json={"status": "suspended"}, headers=op.auth
        )
        first = await api.client.get("/v1/operator/merchants", params={"limit": 2}, headers=op.auth)
        assert first.status_code == 200, first.text
        assert [m["id"] for m in first.json()["data"]] == [shops[2].id, shops[1].id]
        second = await api.client.get(
            "/v1/operator/merchants",
            params={"limit": 1, "after": first.json()["next_cursor"]},
            headers=op.auth,
        )
        assert [m["id"] for m in second.json()["data"]] == [shops[0].id]
        only = await api.client.get(
            "/v1/operator/merchants", params={"status": "suspended"}, headers=op.auth
        )
        assert suspended.id in [m["id"] for m in only.json()["data"]]
        assert {m["status"] for m in only.json()["data"]} == {"suspended"}
        for params in ({"status": "gone"}, {"limit": 0}, {"limit": 101}, {"after": "nope"}):
            refused = await api.client.get("/v1/operator/merchants", params=params, headers=op.auth)
            assert refused.status_code == 422, (params, refused.text)


class TestServiceFunctions:
    async def test_get_merchant_of_user_and_list(self, api: Server) -> None:
        shop = await merchant(api, settlement_destination={"vpa": "idli@okicici"})
        merchant_id = parse_public_id("mer", shop.id)
        user_id = parse_public_id("usr", shop.user.id)
        async with api.engine.connect() as conn:
            found = await service.get_merchant(conn, merchant_id)
            assert found is not None
            assert found == await service.merchant_of_user(conn, user_id)
            assert (found.user_id, found.vpa, found.bank_code) == (user_id, "idli@okicici", None)
            assert (found.settlement_currency, found.fee_bps) == ("INR", 0)
            assert found.status is MerchantStatus.ACTIVE
            assert found.settlement_interval_s == 86_400
            assert await service.get_merchant(conn, uuid.uuid4()) is None
            assert await service.merchant_of_user(conn, uuid.uuid4()) is None
            seen: list[uuid.UUID] = []
            after = None
            while True:
                batch = await service.list_merchants(conn, after=after, limit=50)
                seen += [m.id for m in batch]
                if len(batch) < 50:
                    break
                after = batch[-1].id
            assert merchant_id in seen
            assert seen == sorted(seen) and len(seen) == len(set(seen))
