"""Credits over HTTP: outcomes, idempotency by reference (also under concurrency),
rejections, faults (scripted and random), and recovery after a restart."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.banksim.conftest import (
    HOLD_S,
    LONG_HOLD_S,
    Bank,
    BankFactory,
    account_number,
    credit_body,
    reference,
)


async def _inquire(bank: Bank, ref: str) -> dict[str, Any]:
    response = await bank.http.get(f"/v1/credits/{ref}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _statement_csv(bank: Bank) -> str:
    day = time.strftime("%Y-%m-%d", time.gmtime())
    response = await bank.http.get(f"/v1/statements/{day}")
    assert response.status_code == 200
    return response.text


class TestCredit:
    async def test_credited_outcome(self, bank: Bank) -> None:
        body = credit_body(amount=700)
        response = await bank.credit(**body)
        assert response.status_code == 200
        outcome = response.json()
        assert outcome["status"] == "credited"
        assert outcome["reason"] is None
        assert len(outcome["bank_transaction_id"]) == 16
        assert (outcome["reference"], outcome["amount"], outcome["currency"]) == (
            body["reference"],
            700,
            "INR",
        )
        assert outcome["received_at"].endswith("Z") and outcome["completed_at"].endswith("Z")
        assert await _inquire(bank, body["reference"]) == outcome

    async def test_vpas_are_case_insensitive(self, bank: Bank) -> None:
        response = await bank.credit(destination={"vpa": "Ravi@OKBANK"})
        assert response.json()["status"] == "credited"

    async def test_unknown_and_closed_destinations_are_rejected(self, bank: Bank) -> None:
        cases = {
            "account_not_found": {"bank_code": "HDFC0001234", "account_number": "999999999"},
            "account_closed": {"bank_code": "SBIN0004321", "account_number": "30007654321"},
        }
        for reason, destination in cases.items():
            outcome = (await bank.credit(destination=destination)).json()
            assert (outcome["status"], outcome["reason"]) == ("rejected", reason)
            assert outcome["bank_transaction_id"] is None

    async def test_nostro_itself_is_not_a_destination(self, bank: Bank) -> None:
        destination = {"bank_code": "SIMB0000001", "account_number": "000100000001"}
        outcome = (await bank.credit(destination=destination)).json()
        assert outcome["reason"] == "account_not_found"

    async def test_currency_mismatch(self, bank: Bank) -> None:
        account = {
            "bank_code": "BARC0000001",
            "account_number": account_number(),
            "name": "Dollar account",
            "currency": "USD",
        }
        assert (await bank.http.post("/sim/accounts", json=account)).status_code == 201
        usd_destination = {k: account[k] for k in ("bank_code", "account_number")}
        for currency, destination in (
            ("USD", usd_destination),  # the account's currency, not the nostro's
            ("EUR", usd_destination),
            ("EUR", {"vpa": "asha@okbank"}),  # an INR account
        ):
            outcome = (await bank.credit(currency=currency, destination=destination)).json()
            assert (outcome["status"], outcome["reason"]) == ("rejected", "currency_mismatch")

    async def test_received_after_not_after_is_expired(self, bank: Bank) -> None:
        body = credit_body(not_after=int(time.time()) - 1)
        outcome = (await bank.credit(**body)).json()
        assert (outcome["status"], outcome["reason"]) == ("rejected", "expired")
        assert (await _inquire(bank, body["reference"]))["reason"] == "expired"
        assert body["reference"] not in await _statement_csv(bank)


class TestIdempotency:
    async def test_same_request_same_outcome_one_credit(self, bank: Bank) -> None:
        body = credit_body()
        first = (await bank.credit(**body)).json()
        for _ in range(3):
            assert (await bank.credit(**body)).json() == first
        statement = await _statement_csv(bank)
        assert statement.count(f",payment,D,12345,INR,{body['reference']},") == 1

    async def test_narrative_left_out_equals_empty(self, bank: Bank) -> None:
        body = credit_body(narrative="")
        first = (await bank.credit(**body)).json()
        del body["narrative"]
        assert (await bank.http.post("/v1/credits", json=body)).json() == first

    async def test_a_different_request_under_a_used_reference_is_refused(self, bank: Bank) -> None:
        body = credit_body()
        first = (await bank.credit(**body)).json()
        for change in (
            {"amount": 12_346},
            {"currency": "USD"},
            {"destination": {"vpa": "ravi@okbank"}},
            {"narrative": "other"},
            {"not_after": body["not_after"] + 1},
        ):
            response = await bank.credit(**{**body, **change})
            assert response.status_code == 409
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["code"] == "reference_reused"
        assert await _inquire(bank, body["reference"]) == first

    async def test_concurrent_identical_credits_credit_once(self, bank: Bank) -> None:
        body = credit_body()
        responses = await asyncio.gather(*(bank.credit(**body) for _ in range(12)))
        assert {r.status_code for r in responses} == {200}
        statuses = {r.json()["status"] for r in responses}
        assert statuses <= {"credited", "processing"} and "credited" in statuses
        ids = {r.json()["bank_transaction_id"] for r in responses} - {None}
        assert len(ids) == 1
        statement = await _statement_csv(bank)
        assert statement.count(f",{body['reference']},") == 1

    async def test_replay_of_a_rejected_credit_stays_rejected(self, bank: Bank) -> None:
        body = credit_body(destination={"vpa": "ghost@okbank"})
        first = (await bank.credit(**body)).json()
        assert first["status"] == "rejected"
        assert (await bank.credit(**body)).json() == first


class TestFaults:
    async def test_inquiry_during_a_timeout_answers_processing(self, bank: Bank) -> None:
        await bank.configure(timeout_hold_s=LONG_HOLD_S)
        await bank.fault("credit", "timeout")
        body = credit_body()
        started = time.monotonic()
        held = asyncio.create_task(bank.credit(**body))
        during = await bank.first_seen(body["reference"])
        assert time.monotonic() - started < LONG_HOLD_S, "the hold ended too early to look"
        assert during["status"] == "processing"
        assert during["completed_at"] is None and during["bank_transaction_id"] is None
        # A retry meanwhile is told the same, and starts nothing new.
        assert (await bank.credit(**body)).json()["status"] == "processing"
        response = await held
        assert response.json()["status"] == "credited"
        assert await _inquire(bank, body["reference"]) == response.json()

    async def test_unavailable_records_nothing(self, bank: Bank) -> None:
        await bank.fault("credit", "unavailable")
        body = credit_body()
        response = await bank.credit(**body)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert response.json()["code"] == "unavailable"
        assert (await bank.http.get(f"/v1/credits/{body['reference']}")).status_code == 404

    async def test_lost_response_is_a_502_without_an_outcome(self, bank: Bank) -> None:
        await bank.fault("credit", "lost_response")
        body = credit_body()
        response = await bank.credit(**body)
        assert response.status_code == 502
        assert response.json()["code"] == "bad_gateway"
        assert "bank_transaction_id" not in response.json()
        assert (await _inquire(bank, body["reference"]))["status"] == "credited"

    async def test_scripted_faults_are_used_in_order_and_by_prefix(self, bank: Bank) -> None:
        await bank.fault("credit", "unavailable", times=2, reference_prefix="only_")
        await bank.fault("credit", "failure")
        listed = (await bank.http.get("/sim/faults")).json()["items"]
        assert [(f["kind"], f["times"]) for f in listed] == [("unavailable", 2), ("failure", 1)]
        # Not matching the prefix: the next fault that matches (the failure) applies.
        other = (await bank.credit()).json()
        assert other["reason"] == "bank_declined"
        for _ in range(2):
            assert (await bank.credit(reference=reference("only"))).status_code == 503
        assert (await bank.credit(reference=reference("only"))).json()["status"] == "credited"
        assert (await bank.http.get("/sim/faults")).json()["items"] == []

    async def test_delete_forgets_scripted_faults(self, bank: Bank) -> None:
        await bank.fault("credit", "failure", times=5)
        assert (await bank.http.delete("/sim/faults")).status_code == 204
        assert (await bank.credit()).json()["status"] == "credited"

    async def test_random_faults_follow_the_rates_and_repeat_with_the_seed(
        self, bank: Bank
    ) -> None:
        async def run() -> list[int | str]:
            await bank.configure(
                seed=7, failure_rate=0.3, unavailable_rate=0.3, lost_response_rate=0.2
            )
            results: list[int | str] = []
            for _ in range(30):
                response = await bank.credit()
                results.append(
                    response.json()["reason"] or "ok"
                    if response.status_code == 200
                    else response.status_code
                )
            return results

        first, second = await run(), await run()
        assert first == second
        assert {"ok", "bank_declined", 503, 502} == set(first)

    async def test_inquiry_timeout_holds_then_answers(self, bank: Bank) -> None:
        body = credit_body()
        await bank.credit(**body)
        await bank.fault("inquiry", "timeout")
        started = time.monotonic()
        assert (await _inquire(bank, body["reference"]))["status"] == "credited"
        assert time.monotonic() - started >= HOLD_S

    async def test_latency_applies_to_v1_only(self, bank: Bank) -> None:
        await bank.configure(latency_ms=300)
        started = time.monotonic()
        await bank.http.get("/sim/config")
        assert time.monotonic() - started < 0.3
        await bank.http.get(f"/v1/credits/{reference()}")
        assert time.monotonic() - started >= 0.3


class TestRestart:
    async def test_a_credit_held_when_the_bank_stops_is_completed_at_start(
        self, new_bank: BankFactory, tmp_path: Any
    ) -> None:
        url = f"sqlite+aiosqlite:///{tmp_path / 'restart.db'}"
        body = credit_body()
        async with new_bank(database_url=url, timeout_hold_s=60) as bank:
            await bank.fault("credit", "timeout")
            held = asyncio.create_task(bank.credit(**body))
            assert (await bank.first_seen(body["reference"]))["status"] == "processing"
        held.cancel()
        async with new_bank(database_url=url) as bank:
            outcome = await _inquire(bank, body["reference"])
            assert outcome["status"] == "credited"
            # The demo accounts were not created twice.
            accounts = (await bank.http.get("/sim/accounts")).json()["items"]
            assert len(accounts) == len({a["account_number"] for a in accounts}) == 6
