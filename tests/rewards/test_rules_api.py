"""Cashback rules over HTTP on both backends: operators create, read, list, deactivate and
reactivate them, every change in the operator log; bad input is a clear 422 that changes
nothing; nobody else may touch them."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import (
    Server,
    User,
    create_operator,
    key,
    register,
)
from tests.api.test_operator import actions_since, assert_problem, newest_action
from tests.rewards import (  # noqa: F401 (fixtures)
    create_rule,
    fresh_currency,
    rewards_api,
    rewards_server,
)

RULES = "/v1/operator/rewards/rules"
VALID: dict[str, Any] = {"currency": "INR", "rate_bp": 150, "cap_amount": 5_000}

INVALID: list[tuple[dict[str, Any], str]] = [
    ({"rate_bp": 0}, "validation_error"),
    ({"rate_bp": 10_001}, "validation_error"),
    ({"rate_bp": -5}, "validation_error"),
    ({"rate_bp": 1.5}, "validation_error"),
    ({"rate_bp": "150"}, "validation_error"),
    ({"rate_bp": True}, "validation_error"),
    ({"rate_bp": None}, "validation_error"),
    ({"cap_amount": 0}, "validation_error"),
    ({"cap_amount": -100}, "validation_error"),
    ({"cap_amount": 50.0}, "validation_error"),
    ({"cap_amount": "5000"}, "validation_error"),
    ({"cap_amount": 2**63}, "validation_error"),
    ({"minimum_amount": -1}, "validation_error"),
    ({"minimum_amount": 99.5}, "validation_error"),
    ({"minimum_amount": "100"}, "validation_error"),
    ({"currency": "inr"}, "validation_error"),
    ({"currency": "RUPEE"}, "validation_error"),
    ({"currency": "ZZZ"}, "currency_unknown"),
    ({"currency": "XXX"}, "currency_unknown"),
    ({"name": ""}, "validation_error"),
    ({"name": "x" * 101}, "validation_error"),
    ({"name": "   "}, "name_invalid"),
    ({"name": "tab\there"}, "name_invalid"),
    ({"name": "nul\u0000"}, "validation_error"),
    ({"active": "yes"}, "validation_error"),
    ({"active": 1}, "validation_error"),
    ({"merchant_id": "bogus"}, "merchant_invalid"),
    ({"merchant_id": "usr_" + "0" * 32}, "merchant_invalid"),
    ({"merchant_id": ""}, "validation_error"),
    ({"percent": 5}, "validation_error"),
    ({"rate_bp": 100, "extra": None}, "validation_error"),
]
MISSING = ["currency", "rate_bp", "cap_amount"]


async def rule_ids(api: Server, operator: Any) -> list[str]:
    response = await api.client.get(RULES, params={"limit": 100}, headers=operator.auth)
    assert response.status_code == 200, response.text
    return [r["id"] for r in response.json()["data"]]


class TestCreate:
    async def test_a_global_and_a_merchant_rule(self, api: Server) -> None:
        operator = await create_operator(api)
        merchant = await register(api.client, role="merchant")
        currency = fresh_currency(api)
        everywhere = await create_rule(
            api, operator, **{**VALID, "currency": currency}, name="Diwali 1.5 %"
        )
        assert everywhere == {
            "id": everywhere["id"],
            "object": "cashback_rule",
            "name": "Diwali 1.5 %",
            "currency": currency,
            "rate_bp": 150,
            "cap_amount": 5_000,
            "minimum_amount": 0,
            "merchant_id": None,
            "active": True,
            "created_by": operator.id,
            "created_at": everywhere["created_at"],
            "updated_at": everywhere["created_at"],
        }
        assert everywhere["id"].startswith("rule_")
        own = await create_rule(
            api,
            operator,
            currency=currency,
            rate_bp=10_000,
            cap_amount=1,
            minimum_amount=100_000,
            merchant_id=merchant.id,
            active=False,
        )
        assert (own["merchant_id"], own["active"], own["rate_bp"]) == (merchant.id, False, 10_000)
        fetched = await api.client.get(f"{RULES}/{own['id']}", headers=operator.auth)
        assert fetched.json() == own
        logged = await actions_about(api, operator, {own["id"], everywhere["id"]})
        assert [(a["action"], a["target"]) for a in logged] == [
            ("rewards_rule_created", own["id"]),
            ("rewards_rule_created", everywhere["id"]),
        ]
        assert logged[1]["details"]["rate_bp"] == 150

    async def test_invalid_rules_are_refused_and_change_nothing(self, api: Server) -> None:
        operator = await create_operator(api)
        customer = await register(api.client)
        rules_before = await rule_ids(api, operator)
        action_before = await newest_action(api.client, operator)
        cases = [({**VALID, **change}, code) for change, code in INVALID]
        cases += [({**VALID, "merchant_id": customer.id}, "merchant_invalid")]
        cases += [({**VALID, "merchant_id": operator.id}, "merchant_invalid")]
        cases += [
            ({k: v for k, v in VALID.items() if k != name}, "validation_error") for name in MISSING
        ]
        for body, code in cases:
            response = await api.client.post(RULES, json=body, headers=operator.auth)
            assert_problem(response, 422, code, case=body)
        not_json = await api.client.post(
            RULES, content=b"{", headers={**operator.auth, "Content-Type": "application/json"}
        )
        assert_problem(not_json, 400, "malformed_json")
        assert await rule_ids(api, operator) == rules_before
        assert await actions_since(api.client, operator, action_before) == []


async def actions_about(api: Server, operator: User, targets: set[str]) -> list[dict[str, Any]]:
    """The latest operator actions on `targets`, newest first. Found by target, not by
    position after an earlier action: other tests' actions share the log, and those
    stamped with a ledger transfer's time may sort after later ones."""
    recent = await actions_since(api.client, operator, None)
    return [a for a in recent if a["target"] in targets]


class TestChange:
    async def test_deactivate_and_reactivate_are_logged_once(self, api: Server) -> None:
        operator = await create_operator(api)
        made = await create_rule(api, operator, currency=fresh_currency(api))
        path = f"{RULES}/{made['id']}"
        off = await api.client.post(f"{path}/deactivate", headers=operator.auth)
        assert off.status_code == 200, off.text
        assert off.json()["active"] is False
        assert off.json()["updated_at"] >= made["updated_at"]
        again = await api.client.post(f"{path}/deactivate", headers=operator.auth)
        assert again.json() == off.json()
        on = await api.client.post(f"{path}/reactivate", headers=operator.auth)
        assert on.json()["active"] is True
        assert (await api.client.get(path, headers=operator.auth)).json() == on.json()
        logged = await actions_about(api, operator, {made["id"]})
        assert [a["action"] for a in logged] == [
            "rewards_rule_reactivated",
            "rewards_rule_deactivated",
            "rewards_rule_created",
        ]
        assert {a["target"] for a in logged} == {made["id"]}

    @pytest.mark.parametrize("rule_id", ["rule_" + "0" * 32, "bogus", "rule_"])
    async def test_unknown_rules_are_404(self, api: Server, rule_id: str) -> None:
        operator = await create_operator(api)
        for method, suffix in (("GET", ""), ("POST", "/deactivate"), ("POST", "/reactivate")):
            response = await api.client.request(
                method, f"{RULES}/{rule_id}{suffix}", headers=operator.auth
            )
            assert_problem(response, 404, "rule_not_found", case=(method, suffix))


class TestList:
    async def test_newest_first_with_a_cursor(self, api: Server) -> None:
        operator = await create_operator(api)
        made = [await create_rule(api, operator, currency=fresh_currency(api)) for _ in range(3)]
        first = await api.client.get(RULES, params={"limit": 2}, headers=operator.auth)
        assert first.status_code == 200, first.text
        page = first.json()
        assert [r["id"] for r in page["data"]] == [made[2]["id"], made[1]["id"]]
        rest = await api.client.get(
            RULES, params={"limit": 1, "after": page["next_cursor"]}, headers=operator.auth
        )
        assert [r["id"] for r in rest.json()["data"]] == [made[0]["id"]]
        bad = await api.client.get(RULES, params={"after": "nope"}, headers=operator.auth)
        assert_problem(bad, 422, "cursor_invalid")
        for limit in (0, 101, "x"):
            response = await api.client.get(RULES, params={"limit": limit}, headers=operator.auth)
            assert_problem(response, 422, "validation_error", case=limit)


class TestAccess:
    async def test_only_operators_use_operator_routes(self, api: Server) -> None:
        operator = await create_operator(api)
        made = await create_rule(api, operator, currency=fresh_currency(api))
        customer = await register(api.client)
        merchant = await register(api.client, role="merchant")
        funding = {"amount": 100, "currency": "INR", "reason": "free money"}
        calls: list[tuple[str, str, dict[str, Any] | None]] = [
            ("POST", RULES, VALID),
            ("GET", RULES, None),
            ("GET", f"{RULES}/{made['id']}", None),
            ("POST", f"{RULES}/{made['id']}/deactivate", None),
            ("POST", f"{RULES}/{made['id']}/reactivate", None),
            ("POST", "/v1/operator/rewards/pool/fundings", funding),
            ("GET", "/v1/operator/rewards/pool", None),
        ]
        rules_before = await rule_ids(api, operator)
        for method, path, body in calls:
            for caller in (customer, merchant):
                response = await api.client.request(
                    method, path, json=body, headers={**caller.auth, **key()}
                )
                assert_problem(response, 403, "forbidden", case=(caller.role, method, path))
            anonymous = await api.client.request(method, path, json=body, headers=key())
            assert_problem(anonymous, 401, "unauthenticated", case=(method, path))
        assert await rule_ids(api, operator) == rules_before
        fetched = await api.client.get(f"{RULES}/{made['id']}", headers=operator.auth)
        assert fetched.json()["active"] is True
        mine = await api.client.get("/v1/rewards/cashbacks")
        assert_problem(mine, 401, "unauthenticated")
