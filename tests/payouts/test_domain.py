"""Payouts' pure rules: destinations, the saga's transitions, back-off."""

from __future__ import annotations

import pytest

from payflow.errors import PayFlowError
from payflow.payouts.domain import (
    EVENT_TYPES,
    NEXT,
    TERMINAL,
    Status,
    Step,
    backoff_s,
    can_move,
    is_off_us,
    parse_destination,
    status_of,
)


class TestDestination:
    @pytest.mark.parametrize("vpa", ["asha@okbank", "ravi.k-1@upi", "A9@OKBANK"])
    def test_a_payment_address_at_another_bank(self, vpa: str) -> None:
        parsed = parse_destination(vpa=vpa, bank_code=None, account_number=None)
        assert parsed.vpa == vpa.lower()
        assert parsed.to_json() == {"vpa": vpa.lower()}

    def test_a_bank_account(self) -> None:
        parsed = parse_destination(vpa=None, bank_code="OKBK0000001", account_number="12345678")
        assert parsed.to_json() == {"bank_code": "OKBK0000001", "account_number": "12345678"}

    @pytest.mark.parametrize(
        ("vpa", "bank_code", "account_number", "code"),
        [
            ("asha@payflow", None, None, "destination_on_us"),
            ("asha", None, None, "destination_invalid"),
            ("@okbank", None, None, "destination_invalid"),
            ("asha@", None, None, "destination_invalid"),
            ("as ha@okbank", None, None, "destination_invalid"),
            ("asha@ok.bank", None, None, "destination_invalid"),
            ("a" * 65 + "@okbank", None, None, "destination_invalid"),
            ("asha@okbank", "OKBK0000001", None, "destination_invalid"),
            (None, None, None, "destination_invalid"),
            (None, "OKBK0000001", None, "destination_invalid"),
            (None, None, "12345678", "destination_invalid"),
            (None, "okbk0000001", "12345678", "destination_invalid"),
            (None, "OKBK1000001", "12345678", "destination_invalid"),
            (None, "OKBK000001", "12345678", "destination_invalid"),
            (None, "OKBK0000001", "12345", "destination_invalid"),
            (None, "OKBK0000001", "1234567890123456789", "destination_invalid"),
            (None, "OKBK0000001", "12345a78", "destination_invalid"),
        ],
    )
    def test_anything_else_is_refused(
        self, vpa: str | None, bank_code: str | None, account_number: str | None, code: str
    ) -> None:
        with pytest.raises(PayFlowError) as raised:
            parse_destination(vpa=vpa, bank_code=bank_code, account_number=account_number)
        assert raised.value.code == code
        assert raised.value.http_status == 422

    @pytest.mark.parametrize(
        ("address", "off_us"),
        [("asha@okbank", True), ("asha@payflow", False), ("asha", False), ("ASHA@PayFlow", False)],
    )
    def test_off_us_addresses(self, address: str, off_us: bool) -> None:
        assert is_off_us(address) is off_us


class TestSaga:
    def test_the_event_types_are_the_seed_names(self) -> None:
        assert {
            "TRANSACTION_INITIATED",
            "DEBIT_SUCCESS",
            "DEBIT_FAILED",
            "CREDIT_SUCCESS",
            "CREDIT_FAILED",
            "REFUND_REQUESTED",
            "REFUND_COMPLETED",
            "TRANSACTION_COMPLETED",
            "TRANSACTION_FAILED",
        } == EVENT_TYPES

    def test_terminal_steps_go_nowhere(self) -> None:
        for step in TERMINAL:
            assert NEXT[step] == frozenset()
            assert not any(can_move(step, to) for to in Step)

    def test_every_path_ends_in_a_terminal_step(self) -> None:
        def ends(step: Step, seen: frozenset[Step]) -> set[Step]:
            assert step not in seen, f"a cycle through {step}"
            if not NEXT[step]:
                return {step}
            return set().union(*(ends(n, seen | {step}) for n in NEXT[step]))

        assert ends(Step.INITIATED, frozenset()) == {Step.COMPLETED, Step.FAILED}

    def test_a_credit_is_never_both_completed_and_refunded(self) -> None:
        # Refunding is only reachable through CREDIT_FAILED, completing only through
        # CREDIT_SUCCESS, and CREDIT_DUE leads to exactly one of them.
        assert NEXT[Step.CREDIT_DUE] == {Step.CREDITED, Step.CREDIT_FAILED}
        assert not can_move(Step.CREDITED, Step.REFUND_REQUESTED)
        assert not can_move(Step.CREDIT_FAILED, Step.COMPLETED)
        assert not can_move(Step.INITIATED, Step.CREDITED)

    def test_status_follows_the_step(self) -> None:
        assert status_of(Step.COMPLETED) is Status.COMPLETED
        assert status_of(Step.FAILED) is Status.FAILED
        assert {status_of(s) for s in Step if s not in TERMINAL} == {Status.PROCESSING}


class TestBackoff:
    def test_doubles_up_to_the_cap_with_jitter(self) -> None:
        assert backoff_s(1, base_s=1, cap_s=30, jitter=0.0) == 0.5
        assert backoff_s(1, base_s=1, cap_s=30, jitter=0.999) == pytest.approx(1.0, abs=1e-3)
        assert backoff_s(3, base_s=1, cap_s=30, jitter=1.0) == 4.0
        assert backoff_s(20, base_s=1, cap_s=30, jitter=1.0) == 30.0

    def test_attempts_start_at_one(self) -> None:
        with pytest.raises(AssertionError):
            backoff_s(0, base_s=1, cap_s=30, jitter=0.5)
