"""PayFlow's bank client against a real simulator: outcomes, and one exception per way a
call can fail, so the payout saga knows whether to retry, inquire or give up."""

from __future__ import annotations

import asyncio
import time

import pytest

from payflow.banksim.client import (
    BankClient,
    BankOutcomeUnknown,
    BankRequestRefused,
    BankUnavailable,
    CreditOutcome,
    Destination,
)
from tests.banksim.conftest import FAR_FUTURE, HOLD_S, LONG_HOLD_S, Bank, reference
from tests.services import free_port

ASHA = Destination(vpa="asha@okbank")


async def _credit(client: BankClient, ref: str, **overrides: object) -> CreditOutcome:
    values: dict[str, object] = {
        "reference": ref,
        "amount": 5_000,
        "currency": "INR",
        "destination": ASHA,
        "not_after": FAR_FUTURE,
    }
    values.update(overrides)
    return await client.credit(**values)  # type: ignore[arg-type]


class TestDestination:
    def test_json_is_the_vpa_or_the_account(self) -> None:
        assert ASHA.to_json() == {"vpa": "asha@okbank"}
        by_account = Destination(bank_code="HDFC0001234", account_number="50100012345678")
        assert by_account.to_json() == {
            "bank_code": "HDFC0001234",
            "account_number": "50100012345678",
        }

    async def test_an_ambiguous_or_empty_destination_is_refused(self, bank: Bank) -> None:
        assert Destination().to_json() == {}
        both = Destination(vpa="asha@okbank", bank_code="HDFC0001234", account_number="123456")
        assert len(both.to_json()) == 3
        async with BankClient(bank.url) as client:
            for destination in (Destination(), both):
                with pytest.raises(BankRequestRefused) as refused:
                    await _credit(client, reference(), destination=destination)
                assert refused.value.code == "validation_error"


class TestOutcomes:
    async def test_credit_then_inquiry_agree(self, bank: Bank) -> None:
        ref = reference()
        async with BankClient(bank.url) as client:
            outcome = await _credit(client, ref)
            assert outcome.status == "credited"
            assert outcome.reason is None
            assert outcome.bank_transaction_id is not None
            assert (outcome.reference, outcome.amount, outcome.currency) == (ref, 5_000, "INR")
            assert await client.inquire(ref) == outcome
            # Sending it again is safe: the same outcome, no second credit.
            assert await _credit(client, ref) == outcome

    async def test_by_bank_account(self, bank: Bank) -> None:
        destination = Destination(bank_code="HDFC0001234", account_number="50100012345678")
        async with BankClient(bank.url) as client:
            outcome = await _credit(client, reference(), destination=destination, narrative="x")
        assert outcome.status == "credited"

    async def test_rejection_is_an_outcome_not_an_exception(self, bank: Bank) -> None:
        async with BankClient(bank.url) as client:
            outcome = await _credit(
                client, reference(), destination=Destination(vpa="nobody@okbank")
            )
        assert (outcome.status, outcome.reason) == ("rejected", "account_not_found")
        assert outcome.bank_transaction_id is None

    async def test_never_received_is_none(self, bank: Bank) -> None:
        async with BankClient(bank.url) as client:
            assert await client.inquire(reference()) is None


class TestFaults:
    async def test_failure_is_a_definitive_rejection(self, bank: Bank) -> None:
        await bank.fault("credit", "failure")
        ref = reference()
        async with BankClient(bank.url) as client:
            outcome = await _credit(client, ref)
            assert (outcome.status, outcome.reason) == ("rejected", "bank_declined")
            # Definitive: sending it again does not turn it into a credit.
            assert await _credit(client, ref) == outcome

    async def test_unavailable_is_safe_to_retry(self, bank: Bank) -> None:
        await bank.fault("credit", "unavailable")
        ref = reference()
        async with BankClient(bank.url) as client:
            with pytest.raises(BankUnavailable):
                await _credit(client, ref)
            assert await client.inquire(ref) is None  # nothing was recorded
            assert (await _credit(client, ref)).status == "credited"

    async def test_timeout_is_unknown_and_the_inquiry_says_processing(self, bank: Bank) -> None:
        await bank.configure(timeout_hold_s=LONG_HOLD_S)
        await bank.fault("credit", "timeout")
        ref = reference()
        started = time.monotonic()
        async with BankClient(bank.url, timeout_s=0.1) as client:
            with pytest.raises(BankOutcomeUnknown):
                await _credit(client, ref)
        during = await bank.first_seen(ref)
        assert time.monotonic() - started < LONG_HOLD_S, "the hold ended too early to look"
        assert during["status"] == "processing"
        async with BankClient(bank.url) as client:
            await asyncio.sleep(LONG_HOLD_S - (time.monotonic() - started) + 0.3)
            after = await client.inquire(ref)
        assert after is not None and after.status == "credited"

    async def test_lost_response_is_unknown_but_the_bank_credited(self, bank: Bank) -> None:
        await bank.fault("credit", "lost_response")
        ref = reference()
        async with BankClient(bank.url) as client:
            with pytest.raises(BankOutcomeUnknown):
                await _credit(client, ref)
            outcome = await client.inquire(ref)
        assert outcome is not None and outcome.status == "credited"

    async def test_reference_reused_is_refused(self, bank: Bank) -> None:
        ref = reference()
        async with BankClient(bank.url) as client:
            await _credit(client, ref)
            with pytest.raises(BankRequestRefused) as refused:
                await _credit(client, ref, amount=5_001)
        assert (refused.value.status, refused.value.code) == (409, "reference_reused")

    async def test_invalid_request_is_refused(self, bank: Bank) -> None:
        async with BankClient(bank.url) as client:
            with pytest.raises(BankRequestRefused) as refused:
                await _credit(client, "not a reference")
        assert (refused.value.status, refused.value.code) == (422, "validation_error")

    async def test_inquiry_faults(self, bank: Bank) -> None:
        await bank.fault("inquiry", "unavailable")
        await bank.fault("inquiry", "timeout")
        async with BankClient(bank.url, timeout_s=HOLD_S / 4) as client:
            with pytest.raises(BankUnavailable):
                await client.inquire(reference())
            with pytest.raises(BankOutcomeUnknown):
                await client.inquire(reference())

    async def test_nothing_listening_is_unavailable(self) -> None:
        async with BankClient(f"http://127.0.0.1:{free_port()}") as client:
            with pytest.raises(BankUnavailable):
                await client.inquire(reference())
            with pytest.raises(BankUnavailable):
                await _credit(client, reference())

    async def test_a_wrong_base_url_is_refused_not_none(self, bank: Bank) -> None:
        # A 404 from a route that does not exist is not "never received".
        async with BankClient(bank.url + "/nowhere") as client:
            with pytest.raises(BankRequestRefused) as refused:
                await client.inquire(reference())
        assert refused.value.code == "route_not_found"

    async def test_latency_within_the_timeout_is_only_slower(self, bank: Bank) -> None:
        await bank.configure(latency_ms=150)
        async with BankClient(bank.url) as client:
            started = time.monotonic()
            outcome = await _credit(client, reference())
        assert outcome.status == "credited"
        assert time.monotonic() - started >= 0.15
