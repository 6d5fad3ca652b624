"""Operator routes over HTTP on both backends: system accounts, adjustments (always
double-entry, always with a reason, always logged in the same transaction), the audit.
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.api.conftest import Server, User, balance, create_operator, key, register, topup

ADJUSTMENT_REFUSALS: list[tuple[dict[str, Any], int, str]] = [
    ({"direction": "debit", "amount": 1_001}, 422, "insufficient_funds"),
    ({"reason": "ab"}, 422, "validation_error"),
    ({"reason": ""}, 422, "validation_error"),
    ({"reason": "  \t \n "}, 422, "validation_error"),
    ({"reason": " ab "}, 422, "validation_error"),
    ({"reason": None}, 422, "validation_error"),
    ({"reason": "x" * 501}, 422, "validation_error"),
    ({"direction": "sideways"}, 422, "validation_error"),
    ({"amount": 0}, 422, "validation_error"),
    ({"amount": 2.5}, 422, "validation_error"),
    ({"amount": "5"}, 422, "validation_error"),
    ({"wallet_id": "wal_" + "0" * 32}, 404, "wallet_not_found"),
    ({"wallet_id": "wal_bogus"}, 404, "wallet_not_found"),
    ({"wallet_id": ""}, 422, "validation_error"),
    ({"note": "extra"}, 422, "validation_error"),
]


def assert_problem(
    response: httpx.Response, status: int, code: str, *, case: object = None
) -> dict[str, Any]:
    assert response.status_code == status, (case, response.text)
    assert response.headers["content-type"].startswith("application/problem+json"), case
    body: dict[str, Any] = response.json()
    assert body["code"] == code, (case, body)
    return body


def funds(posted: int) -> dict[str, int]:
    return {"posted": posted, "pending": 0, "available": posted}


async def adjust(client: httpx.AsyncClient, operator: User, body: dict[str, Any]) -> httpx.Response:
    return await client.post(
        "/v1/operator/adjustments", json=body, headers={**operator.auth, **key()}
    )


async def actions_since(
    client: httpx.AsyncClient, operator: User, newest_before: str | None
) -> list[dict[str, Any]]:
    """Operator actions logged after the action `newest_before` (newest first)."""
    response = await client.get(
        "/v1/operator/actions", params={"limit": 100}, headers=operator.auth
    )
    assert response.status_code == 200, response.text
    found = []
    for action in response.json()["data"]:
        if action["id"] == newest_before:
            break
        found.append(action)
    return found


async def newest_action(client: httpx.AsyncClient, operator: User) -> str | None:
    response = await client.get("/v1/operator/actions", params={"limit": 1}, headers=operator.auth)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    return data[0]["id"] if data else None


async def system_accounts(client: httpx.AsyncClient, operator: User) -> dict[str, Any]:
    response = await client.get("/v1/operator/system-accounts", headers=operator.auth)
    assert response.status_code == 200, response.text
    return {(a["name"], a["currency"]): a for a in response.json()}


class TestAccess:
    async def test_customers_and_strangers_are_refused(self, api: Server) -> None:
        customer = await register(api.client)
        calls = [
            ("GET", "/v1/operator/system-accounts", None),
            ("GET", "/v1/operator/actions", None),
            ("POST", "/v1/operator/audit", None),
            (
                "POST",
                "/v1/operator/adjustments",
                {
                    "wallet_id": customer.wallet_id,
                    "direction": "credit",
                    "amount": 1,
                    "reason": "free money",
                },
            ),
        ]
        for method, path, body in calls:
            response = await api.client.request(
                method, path, json=body, headers={**customer.auth, **key()}
            )
            assert_problem(response, 403, "forbidden")
            anonymous = await api.client.request(method, path, json=body, headers=key())
            assert_problem(anonymous, 401, "unauthenticated")
        assert await balance(api.client, customer) == funds(0)

    async def test_operators_read_any_wallet_and_transfer(self, api: Server) -> None:
        operator = await create_operator(api)
        customer = await register(api.client)
        made = (await topup(api.client, customer, 300)).json()
        wallet = await api.client.get(f"/v1/wallets/{customer.wallet_id}", headers=operator.auth)
        assert wallet.status_code == 200, wallet.text
        assert wallet.json()["balance"] == funds(300)
        statement = await api.client.get(
            f"/v1/wallets/{customer.wallet_id}/statement", headers=operator.auth
        )
        assert [e["amount"] for e in statement.json()["data"]] == [300]
        transfer = await api.client.get(f"/v1/transfers/{made['id']}", headers=operator.auth)
        assert transfer.json() == made
        # Reading is all: an operator's money moves are adjustments, with a reason.
        response = await api.client.post(
            f"/v1/wallets/{customer.wallet_id}/topups",
            json={"amount": 5},
            headers={**operator.auth, **key()},
        )
        assert_problem(response, 404, "wallet_not_found")
        assert await balance(api.client, customer) == funds(300)


class TestSystemAccounts:
    async def test_lists_the_platforms_accounts(self, api: Server) -> None:
        operator = await create_operator(api)
        customer = await register(api.client)
        before = await system_accounts(api.client, operator)
        assert {("bank_clearing", "INR"), ("holds", "INR"), ("adjustments", "INR")} <= set(before)
        for account in before.values():
            assert set(account) == {
                "name",
                "currency",
                "account_id",
                "debits_posted",
                "credits_posted",
                "debits_pending",
                "credits_pending",
            }
        await topup(api.client, customer, 700)
        after = await system_accounts(api.client, operator)
        clearing_before = before["bank_clearing", "INR"]
        clearing_after = after["bank_clearing", "INR"]
        assert clearing_after["debits_posted"] == clearing_before["debits_posted"] + 700
        assert clearing_after["credits_posted"] == clearing_before["credits_posted"]


class TestAdjustments:
    async def test_credit_then_debit(self, api: Server) -> None:
        operator = await create_operator(api)
        customer = await register(api.client)
        await topup(api.client, customer, 1_000)
        newest = await newest_action(api.client, operator)
        adjustments_before = (await system_accounts(api.client, operator))["adjustments", "INR"]

        credit = await adjust(
            api.client,
            operator,
            {
                "wallet_id": customer.wallet_id,
                "direction": "credit",
                "amount": 250,
                "reason": "goodwill for ticket 42",
            },
        )
        assert credit.status_code == 201, credit.text
        body = credit.json()
        assert body["id"].startswith("txn_")
        assert body["object"] == "adjustment"
        assert body["wallet_id"] == customer.wallet_id
        assert body["direction"] == "credit"
        assert body["amount"] == 250
        assert body["currency"] == "INR"
        assert body["reason"] == "goodwill for ticket 42"
        assert await balance(api.client, customer) == funds(1_250)

        debit = await adjust(
            api.client,
            operator,
            {
                "wallet_id": customer.wallet_id,
                "direction": "debit",
                "amount": 1_250,
                "reason": "reversal",
            },
        )
        assert debit.status_code == 201, debit.text
        assert await balance(api.client, customer) == funds(0)

        logged = await actions_since(api.client, operator, newest)
        assert [a["action"] for a in logged] == ["adjustment", "adjustment"]
        assert logged[0]["details"] == debit.json()
        assert logged[1]["details"] == body
        for action in logged:
            assert action["target"] == customer.wallet_id
            assert action["actor_id"] == operator.id
            assert action["id"].startswith("act_")
        # Double-entry: the other side is the adjustments account.
        adjustments_after = (await system_accounts(api.client, operator))["adjustments", "INR"]
        assert adjustments_after["debits_posted"] == adjustments_before["debits_posted"] + 250
        assert adjustments_after["credits_posted"] == adjustments_before["credits_posted"] + 1_250
        # The customer sees the movements on their statement.
        statement = await api.client.get(
            f"/v1/wallets/{customer.wallet_id}/statement", headers=customer.auth
        )
        kinds = [(e["kind"], e["direction"], e["amount"]) for e in statement.json()["data"]]
        assert kinds[1:] == [("adjustment", "credit", 250), ("adjustment", "debit", 1_250)]

    async def test_refusals_change_nothing_and_log_nothing(self, api: Server) -> None:
        operator = await create_operator(api)
        customer = await register(api.client)
        await topup(api.client, customer, 1_000)
        newest = await newest_action(api.client, operator)
        accounts = await system_accounts(api.client, operator)
        valid = {
            "wallet_id": customer.wallet_id,
            "direction": "credit",
            "amount": 100,
            "reason": "a valid reason",
        }
        for change, status, code in ADJUSTMENT_REFUSALS:
            response = await adjust(api.client, operator, {**valid, **change})
            assert_problem(response, status, code, case=change)
        for missing in valid:
            body = {k: v for k, v in valid.items() if k != missing}
            response = await adjust(api.client, operator, body)
            problem = assert_problem(response, 422, "validation_error", case=missing)
            assert [e["loc"][-1] for e in problem["errors"]] == [missing]
        assert await balance(api.client, customer) == funds(1_000)
        assert await actions_since(api.client, operator, newest) == []
        assert await system_accounts(api.client, operator) == accounts

    async def test_wallet_in_another_currency(self, api: Server) -> None:
        operator = await create_operator(api)
        customer = await register(api.client)
        opened = await api.client.post(
            "/v1/wallets", json={"currency": "EUR"}, headers=customer.auth
        )
        eur = opened.json()["id"]
        response = await adjust(
            api.client,
            operator,
            {"wallet_id": eur, "direction": "credit", "amount": 99, "reason": "eur bonus"},
        )
        assert response.status_code == 201, response.text
        assert response.json()["currency"] == "EUR"
        wallets = await api.client.get("/v1/wallets", headers=customer.auth)
        by_currency = {w["currency"]: w["balance"] for w in wallets.json()}
        assert by_currency == {"INR": funds(0), "EUR": funds(99)}


class TestAudit:
    async def test_audit_is_ok_and_logged(self, api: Server) -> None:
        operator = await create_operator(api)
        customer = await register(api.client)
        await topup(api.client, customer, 5_000)
        newest = await newest_action(api.client, operator)
        response = await api.client.post("/v1/operator/audit", headers=operator.auth)
        assert response.status_code == 200, response.text
        report = response.json()
        assert report["ok"] is True
        assert report["violations"] == []
        assert report["transfers_checked"] >= 1
        assert any(t["currency"] == "INR" for t in report["totals"])
        [logged] = await actions_since(api.client, operator, newest)
        assert logged["action"] == "ledger_audit"
        assert logged["details"] == {"ok": True, "violations": 0}
        assert logged["actor_id"] == operator.id


class TestActionLog:
    async def test_pages_newest_first(self, api: Server) -> None:
        operator = await create_operator(api)
        customer = await register(api.client)
        newest = await newest_action(api.client, operator)
        for amount in (1, 2, 3):
            response = await adjust(
                api.client,
                operator,
                {
                    "wallet_id": customer.wallet_id,
                    "direction": "credit",
                    "amount": amount,
                    "reason": f"round {amount}",
                },
            )
            assert response.status_code == 201, response.text
        first = await api.client.get(
            "/v1/operator/actions", params={"limit": 2}, headers=operator.auth
        )
        page = first.json()
        assert [a["details"]["amount"] for a in page["data"]] == [3, 2]
        assert page["next_cursor"] is not None
        second = await api.client.get(
            "/v1/operator/actions",
            params={"limit": 2, "after": page["next_cursor"]},
            headers=operator.auth,
        )
        assert second.status_code == 200, second.text
        assert second.json()["data"][0]["details"]["amount"] == 1
        if newest is not None:
            assert newest not in {a["id"] for a in page["data"]}
        bad = await api.client.get(
            "/v1/operator/actions", params={"after": "nope"}, headers=operator.auth
        )
        assert_problem(bad, 422, "cursor_invalid")
