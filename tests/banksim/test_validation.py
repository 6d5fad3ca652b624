"""Every bad input gets an RFC 9457 problem with a stable code, and changes nothing."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.banksim.conftest import Bank, account_number, credit_body, reference

PROBLEM = "application/problem+json"
_MISSING = object()

# (field, bad value) pairs for POST /v1/credits; _MISSING removes the field.
BAD_CREDITS: list[tuple[str, Any]] = [
    ("reference", _MISSING),
    ("reference", ""),
    ("reference", "x" * 65),
    ("reference", "has space"),
    ("reference", "slash/in"),
    ("reference", "ünïcode"),
    ("reference", 12345),
    ("reference", None),
    ("amount", _MISSING),
    ("amount", 0),
    ("amount", -1),
    ("amount", 2**63),
    ("amount", 10.0),
    ("amount", 10.5),
    ("amount", "100"),
    ("amount", True),
    ("amount", None),
    ("currency", _MISSING),
    ("currency", "inr"),
    ("currency", "XYZ"),
    ("currency", "RUPEE"),
    ("currency", 356),
    ("destination", _MISSING),
    ("destination", {}),
    ("destination", None),
    ("destination", "asha@okbank"),
    ("destination", {"vpa": "asha@okbank", "bank_code": "HDFC0001234"}),
    ("destination", {"vpa": "asha@okbank", "bank_code": "HDFC0001234", "account_number": "123456"}),
    ("destination", {"bank_code": "HDFC0001234"}),
    ("destination", {"account_number": "50100012345678"}),
    ("destination", {"vpa": "asha"}),
    ("destination", {"vpa": "@okbank"}),
    ("destination", {"vpa": "asha@"}),
    ("destination", {"vpa": "asha@payflow"}),
    ("destination", {"vpa": "asha@PayFlow"}),
    ("destination", {"vpa": "a b@okbank"}),
    ("destination", {"vpa": 7}),
    ("destination", {"bank_code": "hdfc0001234", "account_number": "50100012345678"}),
    ("destination", {"bank_code": "HDFC1001234", "account_number": "50100012345678"}),
    ("destination", {"bank_code": "HDFC000123", "account_number": "50100012345678"}),
    ("destination", {"bank_code": "HDFC0001234", "account_number": "12345"}),
    ("destination", {"bank_code": "HDFC0001234", "account_number": "1" * 19}),
    ("destination", {"bank_code": "HDFC0001234", "account_number": "12345x"}),
    ("destination", {"bank_code": "HDFC0001234", "account_number": 50100012345678}),
    ("destination", {"vpa": "asha@okbank", "extra": 1}),
    ("not_after", _MISSING),
    ("not_after", -1),
    ("not_after", 1.5),
    ("not_after", "1700000000"),
    ("not_after", False),
    ("not_after", 10**15),
    ("narrative", "x" * 141),
    ("narrative", 5),
    ("narrative", None),
    ("unknown_field", "surprise"),
]


def _body(field: str, value: Any) -> dict[str, Any]:
    body = credit_body()
    if value is _MISSING:
        del body[field]
    else:
        body[field] = value
    return body


def _assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    document: dict[str, Any] = response.json()
    assert document["code"] == code
    assert document["status"] == status
    assert document["type"] == f"urn:payflow:problem:{code}"
    assert document["title"] and document["detail"]
    return document


class TestCreditInput:
    @pytest.mark.parametrize(("field", "value"), BAD_CREDITS)
    async def test_refused_and_nothing_recorded(self, bank: Bank, field: str, value: Any) -> None:
        body = _body(field, value)
        response = await bank.http.post("/v1/credits", json=body)
        document = _assert_problem(response, 422, "validation_error")
        assert document["errors"], document
        ref = body.get("reference")
        if isinstance(ref, str) and ref.startswith("t_"):
            assert (await bank.http.get(f"/v1/credits/{ref}")).status_code == 404

    @pytest.mark.parametrize(
        "raw", [b"{", b"not json", b"", b"\xff\xfe", b"[1, 2]", b"null", b'"text"']
    )
    async def test_not_a_json_object(self, bank: Bank, raw: bytes) -> None:
        response = await bank.http.post(
            "/v1/credits", content=raw, headers={"content-type": "application/json"}
        )
        assert response.status_code in (400, 422)
        code = "malformed_json" if response.status_code == 400 else "validation_error"
        _assert_problem(response, response.status_code, code)

    async def test_bad_reference_on_inquiry(self, bank: Bank) -> None:
        for bad in ("x" * 65, "bad%20ref", "ünï"):
            _assert_problem(await bank.http.get(f"/v1/credits/{bad}"), 422, "validation_error")

    async def test_inquiry_of_an_unknown_reference(self, bank: Bank) -> None:
        _assert_problem(await bank.http.get(f"/v1/credits/{reference()}"), 404, "not_found")

    async def test_unknown_route_and_method(self, bank: Bank) -> None:
        _assert_problem(await bank.http.get("/v1/nothing"), 404, "route_not_found")
        _assert_problem(await bank.http.delete("/v1/credits"), 405, "method_not_allowed")


class TestStatementInput:
    @pytest.mark.parametrize(
        "day", ["2026-13-01", "2026-02-30", "20260101", "yesterday", "2026-1-1"]
    )
    async def test_bad_date(self, bank: Bank, day: str) -> None:
        _assert_problem(await bank.http.get(f"/v1/statements/{day}"), 422, "invalid_date")

    @pytest.mark.parametrize("fmt", ["pdf", "MT940", "", "csv2"])
    async def test_bad_format(self, bank: Bank, fmt: str) -> None:
        response = await bank.http.get("/v1/statements/2026-01-01", params={"format": fmt})
        _assert_problem(response, 422, "validation_error")


def _account(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "bank_code": "ICIC0000042",
        "account_number": account_number(),
        "name": "Test account",
        "currency": "INR",
    }
    body.update(overrides)
    return body


class TestAccountInput:
    async def test_create_and_list(self, bank: Bank) -> None:
        vpa = f"{reference('v')}@icici"
        response = await bank.http.post("/sim/accounts", json=_account(vpa=vpa.upper()))
        assert response.status_code == 201
        created = response.json()
        assert created["vpa"] == vpa.lower() and created["closed"] is False
        seen: list[dict[str, Any]] = []
        after = 0
        while True:
            page = (
                await bank.http.get("/sim/accounts", params={"after": after, "limit": 2})
            ).json()
            seen += page["items"]
            if page["next_after"] is None:
                break
            after = page["next_after"]
        assert created in seen
        assert all(a["bank_code"] != "SIMB0000001" for a in seen)  # the nostro is not listed

    @pytest.mark.parametrize(
        "overrides",
        [
            {"bank_code": "ICIC000004"},
            {"account_number": "12"},
            {"name": ""},
            {"name": "n" * 141},
            {"currency": "ABC"},
            {"vpa": "x@payflow"},
            {"vpa": "nohandle"},
            {"closed": "yes"},
            {"extra": True},
        ],
    )
    async def test_bad_account(self, bank: Bank, overrides: dict[str, Any]) -> None:
        body = _account(**overrides)
        _assert_problem(await bank.http.post("/sim/accounts", json=body), 422, "validation_error")
        listed = (await bank.http.get("/sim/accounts", params={"limit": 1000})).json()["items"]
        assert body["account_number"] not in {a["account_number"] for a in listed}

    async def test_taken_number_and_vpa(self, bank: Bank) -> None:
        first = _account(vpa=f"{reference('v')}@icici")
        assert (await bank.http.post("/sim/accounts", json=first)).status_code == 201
        same_number = {**first, "vpa": None}
        _assert_problem(
            await bank.http.post("/sim/accounts", json=same_number), 409, "account_exists"
        )
        same_vpa = _account(vpa=first["vpa"])
        _assert_problem(await bank.http.post("/sim/accounts", json=same_vpa), 409, "vpa_taken")

    @pytest.mark.parametrize(
        "params", [{"limit": 0}, {"limit": 1001}, {"after": -1}, {"limit": "x"}]
    )
    async def test_bad_page(self, bank: Bank, params: dict[str, Any]) -> None:
        _assert_problem(
            await bank.http.get("/sim/accounts", params=params), 422, "validation_error"
        )


class TestSimControls:
    @pytest.mark.parametrize(
        "body",
        [
            {"operation": "credit", "kind": "explode"},
            {"operation": "payout", "kind": "failure"},
            {"operation": "inquiry", "kind": "failure"},
            {"operation": "inquiry", "kind": "lost_response"},
            {"operation": "credit", "kind": "failure", "times": 0},
            {"operation": "credit", "kind": "failure", "times": 1001},
            {"operation": "credit", "kind": "failure", "times": "2"},
            {"operation": "credit", "kind": "failure", "reference_prefix": "bad prefix"},
            {"kind": "failure"},
        ],
    )
    async def test_bad_fault(self, bank: Bank, body: dict[str, Any]) -> None:
        _assert_problem(await bank.http.post("/sim/faults", json=body), 422, "validation_error")
        assert (await bank.http.get("/sim/faults")).json()["items"] == []

    @pytest.mark.parametrize(
        "body",
        [
            {"failure_rate": 1.5},
            {"timeout_rate": -0.1},
            {"latency_ms": -1},
            {"latency_ms": "10"},
            {"failure_rate": True},
            {"failure_rate": None},
            {"fee_per_credit": 1.5},
            {"fee_per_credit": -1},
            {"seed": "7"},
            {"missing_line_rate": 2},
            {"colour": "red"},
        ],
    )
    async def test_bad_config(self, bank: Bank, body: dict[str, Any]) -> None:
        before = (await bank.http.get("/sim/config")).json()
        _assert_problem(await bank.http.put("/sim/config", json=body), 422, "validation_error")
        assert (await bank.http.get("/sim/config")).json() == before

    async def test_rates_adding_up_past_one(self, bank: Bank) -> None:
        before = (await bank.http.get("/sim/config")).json()
        body = {"failure_rate": 0.6, "unavailable_rate": 0.5}
        _assert_problem(await bank.http.put("/sim/config", json=body), 422, "invalid_config")
        assert (await bank.http.get("/sim/config")).json() == before

    async def test_config_changes_only_what_is_given(self, bank: Bank) -> None:
        before = (await bank.http.get("/sim/config")).json()
        after = (await bank.http.put("/sim/config", json={"latency_ms": 5, "seed": 3})).json()
        assert after == {**before, "latency_ms": 5.0, "seed": 3}


async def test_the_openapi_document_lists_every_route(bank: Bank) -> None:
    document = (await bank.http.get("/openapi.json")).json()
    assert set(document["paths"]) == {
        "/v1/credits",
        "/v1/credits/{reference}",
        "/v1/statements/{day}",
        "/sim/accounts",
        "/sim/faults",
        "/sim/config",
    }
    # Every problem a route names is described.
    schemas = document["components"]["schemas"]
    assert "Problem" in schemas and "HTTPValidationError" not in schemas
    text = str(document)
    for name in set(re.findall(r"#/components/schemas/(\w+)", text)):
        assert name in schemas, name
