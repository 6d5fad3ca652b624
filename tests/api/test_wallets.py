"""Wallets over HTTP on both backends: list, open, top up, statement; every refusal is a
problem document with a stable code and changes nothing.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.api.conftest import Server, User, balance, key, register, topup

TOPUP_AMOUNT_MAX = 10_000_000  # Settings.topup_amount_max's default
ZERO = {"posted": 0, "pending": 0, "available": 0}

OPEN_REFUSALS: list[tuple[dict[str, Any], str]] = [
    ({"currency": "XYZ"}, "currency_unknown"),
    ({"currency": "usd"}, "validation_error"),
    ({"currency": "US"}, "validation_error"),
    ({"currency": "USDT"}, "validation_error"),
    ({"currency": 840}, "validation_error"),
    ({"currency": None}, "validation_error"),
    ({}, "validation_error"),
    ({"currency": "USD", "extra": 1}, "validation_error"),
]
TOPUP_REFUSALS: list[tuple[dict[str, Any], str]] = [
    ({"amount": 10.5}, "validation_error"),
    ({"amount": 100.0}, "validation_error"),
    ({"amount": "100"}, "validation_error"),
    ({"amount": True}, "validation_error"),
    ({"amount": None}, "validation_error"),
    ({"amount": 0}, "validation_error"),
    ({"amount": -100}, "validation_error"),
    ({"amount": 2**63}, "validation_error"),
    ({"amount": 10**30}, "validation_error"),
    ({"amount": [100]}, "validation_error"),
    ({}, "validation_error"),
    ({"amount": 100, "currency": "INR"}, "validation_error"),
    ({"amount": TOPUP_AMOUNT_MAX + 1}, "topup_too_large"),
    ({"amount": 2**63 - 1}, "topup_too_large"),
]
NOT_OBJECTS: list[tuple[bytes, int, str]] = [
    (b"{not json", 400, "malformed_json"),
    (b"[100]", 422, "validation_error"),
    (b'"100"', 422, "validation_error"),
    (b"", 422, "validation_error"),
]
BAD_PAGING: list[tuple[dict[str, Any], str]] = [
    ({"after": "nonsense"}, "cursor_invalid"),
    ({"after": "123.xyz"}, "cursor_invalid"),
    ({"after": "1." + "0" * 31}, "cursor_invalid"),
    ({"after": "x" * 101}, "validation_error"),
    ({"limit": 0}, "validation_error"),
    ({"limit": 101}, "validation_error"),
    ({"limit": -1}, "validation_error"),
    ({"limit": "ten"}, "validation_error"),
]


def assert_problem(
    response: httpx.Response, status: int, code: str, *, case: object = None
) -> dict[str, Any]:
    assert response.status_code == status, (case, response.text)
    assert response.headers["content-type"].startswith("application/problem+json"), case
    body: dict[str, Any] = response.json()
    assert body["code"] == code, (case, body)
    assert body["status"] == status
    assert body["type"] == f"urn:payflow:problem:{code}"
    return body


async def wallets_of(client: httpx.AsyncClient, user: User) -> list[dict[str, Any]]:
    response = await client.get("/v1/wallets", headers=user.auth)
    assert response.status_code == 200, response.text
    result: list[dict[str, Any]] = response.json()
    return result


async def full_statement(client: httpx.AsyncClient, user: User, wallet_id: str) -> list[Any]:
    response = await client.get(
        f"/v1/wallets/{wallet_id}/statement", params={"limit": 100}, headers=user.auth
    )
    assert response.status_code == 200, response.text
    assert response.json()["next_cursor"] is None
    data: list[Any] = response.json()["data"]
    return data


async def snapshot(client: httpx.AsyncClient, user: User) -> tuple[Any, ...]:
    """Everything a refused request must leave as it was."""
    transfers = await client.get("/v1/transfers", params={"limit": 100}, headers=user.auth)
    assert transfers.status_code == 200, transfers.text
    return (
        await wallets_of(client, user),
        await full_statement(client, user, user.wallet_id),
        transfers.json(),
    )


class TestListAndGet:
    async def test_list_has_the_documented_shape(self, api: Server) -> None:
        user = await register(api.client)
        [wallet] = await wallets_of(api.client, user)
        assert wallet["id"].startswith("wal_") and len(wallet["id"]) == 4 + 32
        assert wallet["currency"] == "INR"
        assert wallet["address"] == f"{user.handle}@payflow"
        assert wallet["balance"] == ZERO
        one = await api.client.get(f"/v1/wallets/{wallet['id']}", headers=user.auth)
        assert one.status_code == 200
        assert one.json() == wallet

    async def test_needs_a_token(self, api: Server) -> None:
        assert_problem(await api.client.get("/v1/wallets"), 401, "unauthenticated")
        bad = {"Authorization": "Bearer not-a-token"}
        response = await api.client.get("/v1/wallets", headers=bad)
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("application/problem+json")

    async def test_unknown_or_malformed_wallet_is_404(self, api: Server) -> None:
        user = await register(api.client)
        for wallet_id in ("wal_nothex", "wal_" + "0" * 32, "x" * 40, "usr_" + "0" * 32):
            response = await api.client.get(f"/v1/wallets/{wallet_id}", headers=user.auth)
            assert_problem(response, 404, "wallet_not_found", case=wallet_id)

    async def test_another_users_wallet_is_404(self, api: Server) -> None:
        owner, other = await register(api.client), await register(api.client)
        for path in (f"/v1/wallets/{owner.wallet_id}", f"/v1/wallets/{owner.wallet_id}/statement"):
            assert_problem(await api.client.get(path, headers=other.auth), 404, "wallet_not_found")


class TestOpen:
    async def test_open_a_second_currency_once(self, api: Server) -> None:
        user = await register(api.client)
        response = await api.client.post("/v1/wallets", json={"currency": "USD"}, headers=user.auth)
        assert response.status_code == 201, response.text
        usd = response.json()
        assert usd["id"].startswith("wal_")
        assert usd["currency"] == "USD"
        assert usd["address"] == user.address
        assert usd["balance"] == ZERO
        assert [w["currency"] for w in await wallets_of(api.client, user)] == ["INR", "USD"]

        before = await wallets_of(api.client, user)
        again = await api.client.post("/v1/wallets", json={"currency": "USD"}, headers=user.auth)
        assert_problem(again, 409, "wallet_exists")
        assert await wallets_of(api.client, user) == before

    async def test_refusals_open_nothing(self, api: Server) -> None:
        user = await register(api.client)
        before = await wallets_of(api.client, user)
        for body, code in OPEN_REFUSALS:
            response = await api.client.post("/v1/wallets", json=body, headers=user.auth)
            assert_problem(response, 422, code, case=body)
        assert await wallets_of(api.client, user) == before

    async def test_concurrent_opens_give_one_wallet(self, api: Server) -> None:
        user = await register(api.client)
        responses = await asyncio.gather(
            *(
                api.client.post("/v1/wallets", json={"currency": "EUR"}, headers=user.auth)
                for _ in range(8)
            )
        )
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201] + [409] * 7, [r.text for r in responses]
        for response in responses:
            if response.status_code == 409:
                assert_problem(response, 409, "wallet_exists")
        assert [w["currency"] for w in await wallets_of(api.client, user)] == ["INR", "EUR"]

    async def test_many_users_open_a_new_currency_at_once(self, api: Server) -> None:
        """The first wallets in a currency also create its system accounts; concurrent
        first opens must all succeed and leave those accounts usable."""
        users = [await register(api.client) for _ in range(6)]
        responses = await asyncio.gather(
            *(
                api.client.post("/v1/wallets", json={"currency": "MNT"}, headers=u.auth)
                for u in users
            )
        )
        assert [r.status_code for r in responses] == [201] * 6, [r.text for r in responses]
        for user, response in zip(users, responses, strict=True):
            topped = await api.client.post(
                f"/v1/wallets/{response.json()['id']}/topups",
                json={"amount": 250},
                headers={**user.auth, **key()},
            )
            assert topped.status_code == 201, topped.text


class TestTopup:
    async def test_topup_credits_the_wallet(self, api: Server) -> None:
        user = await register(api.client)
        response = await topup(api.client, user, 12_345)
        body = response.json()
        assert body["id"].startswith("txn_")
        assert body["kind"] == "topup"
        assert body["status"] == "succeeded"
        assert body["amount"] == 12_345
        assert body["currency"] == "INR"
        assert body["from"] is None
        assert body["to"] == {"wallet_id": user.wallet_id, "address": user.address}
        assert await balance(api.client, user) == {
            "posted": 12_345,
            "pending": 0,
            "available": 12_345,
        }
        one = await api.client.get(f"/v1/transfers/{body['id']}", headers=user.auth)
        assert one.status_code == 200
        assert one.json() == body

    async def test_topup_of_a_second_currency_wallet(self, api: Server) -> None:
        user = await register(api.client)
        opened = await api.client.post("/v1/wallets", json={"currency": "JPY"}, headers=user.auth)
        jpy = opened.json()["id"]
        response = await api.client.post(
            f"/v1/wallets/{jpy}/topups", json={"amount": 500}, headers={**user.auth, **key()}
        )
        assert response.status_code == 201, response.text
        assert response.json()["currency"] == "JPY"
        by_currency = {w["currency"]: w["balance"] for w in await wallets_of(api.client, user)}
        assert by_currency == {"INR": ZERO, "JPY": {"posted": 500, "pending": 0, "available": 500}}

    async def test_topup_at_the_maximum_is_accepted(self, api: Server) -> None:
        user = await register(api.client)
        await topup(api.client, user, TOPUP_AMOUNT_MAX)
        assert (await balance(api.client, user))["available"] == TOPUP_AMOUNT_MAX

    async def test_bad_amounts_are_refused_and_change_nothing(self, api: Server) -> None:
        user = await register(api.client)
        await topup(api.client, user, 1_000)
        before = await snapshot(api.client, user)
        for body, code in TOPUP_REFUSALS:
            response = await api.client.post(
                f"/v1/wallets/{user.wallet_id}/topups", json=body, headers={**user.auth, **key()}
            )
            problem = assert_problem(response, 422, code, case=body)
            if code == "validation_error":
                assert problem["errors"], problem
        assert await snapshot(api.client, user) == before

    async def test_bodies_that_are_not_an_object_are_refused(self, api: Server) -> None:
        user = await register(api.client)
        before = await snapshot(api.client, user)
        for content, status, code in NOT_OBJECTS:
            response = await api.client.post(
                f"/v1/wallets/{user.wallet_id}/topups",
                content=content,
                headers={**user.auth, **key(), "Content-Type": "application/json"},
            )
            assert_problem(response, status, code, case=content)
        assert await snapshot(api.client, user) == before

    async def test_missing_idempotency_key_is_400(self, api: Server) -> None:
        user = await register(api.client)
        before = await snapshot(api.client, user)
        response = await api.client.post(
            f"/v1/wallets/{user.wallet_id}/topups", json={"amount": 100}, headers=user.auth
        )
        assert_problem(response, 400, "idempotency_key_missing")
        assert await snapshot(api.client, user) == before

    async def test_topup_of_someone_elses_wallet_is_404(self, api: Server) -> None:
        owner, other = await register(api.client), await register(api.client)
        before = await snapshot(api.client, owner)
        for wallet_id in (owner.wallet_id, "wal_" + "f" * 32, "wal_zz"):
            response = await api.client.post(
                f"/v1/wallets/{wallet_id}/topups",
                json={"amount": 100},
                headers={**other.auth, **key()},
            )
            assert_problem(response, 404, "wallet_not_found")
        assert await snapshot(api.client, owner) == before


async def post(client: httpx.AsyncClient, user: User, path: str, body: Any) -> dict[str, Any]:
    response = await client.post(path, json=body, headers={**user.auth, **key()})
    assert response.status_code in (200, 201), response.text
    result: dict[str, Any] = response.json()
    return result


def entry(
    kind: str, direction: str, amount: int, counterparty: str | None, posted: int, pending: int = 0
) -> dict[str, Any]:
    return {
        "kind": kind,
        "direction": direction,
        "amount": amount,
        "counterparty": counterparty,
        "balance": {"posted": posted, "pending": pending, "available": posted - pending},
    }


class TestStatement:
    async def test_entries_oldest_first_with_running_balance(self, api: Server) -> None:
        asha, ravi = await register(api.client), await register(api.client)
        await topup(api.client, asha, 10_000)
        await topup(api.client, ravi, 5_000)
        send = {"to": ravi.address, "amount": 2_500, "currency": "INR"}
        out = await post(api.client, asha, "/v1/transfers", send)
        back = {"to": asha.handle, "amount": 1_000, "currency": "INR"}
        incoming = await post(api.client, ravi, "/v1/transfers", back)
        released = await post(api.client, asha, "/v1/holds", {"amount": 3_000, "currency": "INR"})
        await post(api.client, asha, f"/v1/holds/{released['id']}/release", {})
        captured = await post(api.client, asha, "/v1/holds", {"amount": 2_000, "currency": "INR"})
        capture = await post(
            api.client,
            asha,
            f"/v1/holds/{captured['id']}/capture",
            {"to": ravi.address, "amount": 1_500},
        )

        entries = await full_statement(api.client, asha, asha.wallet_id)
        expected = [
            entry("topup", "credit", 10_000, "bank_clearing", 10_000),
            entry("p2p", "debit", 2_500, ravi.address, 7_500),
            entry("p2p", "credit", 1_000, ravi.address, 8_500),
            entry("hold", "debit", 3_000, "holds", 8_500, pending=3_000),
            entry("hold_released", "credit", 3_000, "holds", 8_500),
            entry("hold", "debit", 2_000, "holds", 8_500, pending=2_000),
            entry("hold_captured", "debit", 1_500, "holds", 7_000),
        ]
        assert [{k: e[k] for k in expected[0]} for e in entries] == expected
        ids = [e["transfer_id"] for e in entries]
        assert ids[1] == out["id"] and ids[2] == incoming["id"]
        assert ids[3] == released["id"].replace("hold_", "txn_")
        assert ids[5] == captured["id"].replace("hold_", "txn_")
        assert [e["created_at"] for e in entries] == sorted(e["created_at"] for e in entries)
        final = entries[-1]["balance"]
        assert (
            await balance(api.client, asha)
            == final
            == {
                "posted": 7_000,
                "pending": 0,
                "available": 7_000,
            }
        )

        ravi_entries = await full_statement(api.client, ravi, ravi.wallet_id)
        assert [(e["kind"], e["direction"], e["amount"]) for e in ravi_entries] == [
            ("topup", "credit", 5_000),
            ("p2p", "credit", 2_500),
            ("p2p", "debit", 1_000),
            ("capture", "credit", 1_500),
        ]
        assert ravi_entries[-1]["transfer_id"] == capture["transfer"]["id"]
        assert ravi_entries[-1]["counterparty"] == "holds"
        assert ravi_entries[-1]["balance"] == await balance(api.client, ravi)

    async def test_cursor_pagination_walks_every_entry_once(self, api: Server) -> None:
        user, other = await register(api.client), await register(api.client)
        for amount in (100, 200, 300, 400, 500):
            await topup(api.client, user, amount)
        for amount in (10, 20):
            await post(
                api.client,
                user,
                "/v1/transfers",
                {"to": other.handle, "amount": amount, "currency": "INR"},
            )
        everything = await full_statement(api.client, user, user.wallet_id)
        assert len(everything) == 7

        pages: list[list[Any]] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 2, **({"after": cursor} if cursor else {})}
            response = await api.client.get(
                f"/v1/wallets/{user.wallet_id}/statement", params=params, headers=user.auth
            )
            assert response.status_code == 200, response.text
            page = response.json()
            pages.append(page["data"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert [len(p) for p in pages] == [2, 2, 2, 1]
        assert [e for p in pages for e in p] == everything

    async def test_exact_multiple_of_the_page_size_ends_cleanly(self, api: Server) -> None:
        user = await register(api.client)
        for amount in (1, 2, 3, 4):
            await topup(api.client, user, amount)
        path = f"/v1/wallets/{user.wallet_id}/statement"
        first = (await api.client.get(path, params={"limit": 2}, headers=user.auth)).json()
        assert first["next_cursor"] is not None
        second = (
            await api.client.get(
                path, params={"limit": 2, "after": first["next_cursor"]}, headers=user.auth
            )
        ).json()
        assert [e["amount"] for e in first["data"] + second["data"]] == [1, 2, 3, 4]
        assert second["next_cursor"] is None

    async def test_an_empty_wallet_has_an_empty_statement(self, api: Server) -> None:
        user = await register(api.client)
        response = await api.client.get(
            f"/v1/wallets/{user.wallet_id}/statement", headers=user.auth
        )
        assert response.status_code == 200
        assert response.json() == {"data": [], "next_cursor": None}

    async def test_bad_paging_parameters_are_422(self, api: Server) -> None:
        user = await register(api.client)
        for params, code in BAD_PAGING:
            response = await api.client.get(
                f"/v1/wallets/{user.wallet_id}/statement", params=params, headers=user.auth
            )
            assert_problem(response, 422, code, case=params)
