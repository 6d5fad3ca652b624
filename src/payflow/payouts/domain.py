"""Payouts: money leaving PayFlow for an account at another bank, as a saga.

The saga's steps are the events that drive it, named as PayFlow's first design named
them. Each arrow is one transaction that moves the payout from one step to the next and
writes the next event to the outbox (docs/payouts.md has the picture):

    TRANSACTION_INITIATED → DEBIT_SUCCESS → (bank credit) → CREDIT_SUCCESS → TRANSACTION_COMPLETED
                          ↘ DEBIT_FAILED → TRANSACTION_FAILED
                                           (bank credit) → CREDIT_FAILED → REFUND_REQUESTED
                                                         → REFUND_COMPLETED → TRANSACTION_FAILED

The debit is a pending ledger transfer from the wallet into the payouts transit account:
CREDIT_SUCCESS posts it, REFUND_REQUESTED voids it. Only a definitive answer from the
bank leads to CREDIT_FAILED; an unknown outcome is settled by asking the bank.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from payflow.errors import PayFlowError
from payflow.wallets.domain import ADDRESS_DOMAIN


class Step(StrEnum):
    """Where a payout's saga is: the last event it wrote (or the bank call it waits on)."""

    INITIATED = "TRANSACTION_INITIATED"
    DEBITED = "DEBIT_SUCCESS"
    DEBIT_FAILED = "DEBIT_FAILED"
    # Debited, and the bank credit is due (or being retried / inquired about).
    CREDIT_DUE = "CREDIT_DUE"
    CREDITED = "CREDIT_SUCCESS"
    CREDIT_FAILED = "CREDIT_FAILED"
    REFUND_REQUESTED = "REFUND_REQUESTED"
    REFUNDED = "REFUND_COMPLETED"
    COMPLETED = "TRANSACTION_COMPLETED"
    FAILED = "TRANSACTION_FAILED"


# The event types of the saga, in the order the happy path writes them.
EVENT_TYPES: Final = frozenset(s.value for s in Step if s is not Step.CREDIT_DUE)
TERMINAL: Final = frozenset({Step.COMPLETED, Step.FAILED})


class Status(StrEnum):
    """What a client sees: a payout is processing until its saga ends."""

    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"


def status_of(step: Step) -> Status:
    if step is Step.COMPLETED:
        return Status.COMPLETED
    if step is Step.FAILED:
        return Status.FAILED
    return Status.PROCESSING


# What may follow each step; anything else is a stale or duplicated event.
NEXT: Final[dict[Step, frozenset[Step]]] = {
    Step.INITIATED: frozenset({Step.DEBITED, Step.DEBIT_FAILED}),
    Step.DEBITED: frozenset({Step.CREDIT_DUE}),
    Step.DEBIT_FAILED: frozenset({Step.FAILED}),
    Step.CREDIT_DUE: frozenset({Step.CREDITED, Step.CREDIT_FAILED}),
    Step.CREDITED: frozenset({Step.COMPLETED}),
    Step.CREDIT_FAILED: frozenset({Step.REFUND_REQUESTED}),
    Step.REFUND_REQUESTED: frozenset({Step.REFUNDED}),
    Step.REFUNDED: frozenset({Step.FAILED}),
    Step.COMPLETED: frozenset(),
    Step.FAILED: frozenset(),
}


def can_move(current: Step, to: Step) -> bool:
    return to in NEXT[current]


# What an account at another bank looks like, wherever PayFlow takes one (payouts,
# merchants' settlement destinations). Bank codes have the Indian Financial System
# Code's shape: four letters (the bank), a zero, six letters or digits (the branch).
BANK_CODE_PATTERN: Final = r"^[A-Z]{4}0[A-Z0-9]{6}$"
ACCOUNT_NUMBER_PATTERN: Final = r"^[0-9]{6,18}$"
# A UPI virtual payment address `name@bank`, lower-cased.
VPA_PATTERN: Final = r"^[a-z0-9][a-z0-9._-]{1,63}@[a-z][a-z0-9]{1,31}$"
_VPA = re.compile(VPA_PATTERN)
_BANK_CODE = re.compile(BANK_CODE_PATTERN)
_ACCOUNT_NUMBER = re.compile(ACCOUNT_NUMBER_PATTERN)


@dataclass(frozen=True, slots=True)
class Destination:
    """An account at another bank: a VPA (`name@bank`) or a bank code + account number."""

    vpa: str | None = None
    bank_code: str | None = None
    account_number: str | None = None

    def to_json(self) -> dict[str, str]:
        if self.vpa is not None:
            return {"vpa": self.vpa}
        assert self.bank_code is not None and self.account_number is not None
        return {"bank_code": self.bank_code, "account_number": self.account_number}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Destination:
        return cls(
            vpa=data.get("vpa"),
            bank_code=data.get("bank_code"),
            account_number=data.get("account_number"),
        )


def _invalid(message: str) -> PayFlowError:
    return PayFlowError("destination_invalid", message, http_status=422)


def is_off_us(address: str) -> bool:
    """True for `name@bank` addresses at a bank other than PayFlow."""
    _, at, domain = address.strip().lower().partition("@")
    return bool(at) and domain != ADDRESS_DOMAIN


def parse_vpa(text: str) -> Destination:
    vpa = text.strip().lower()
    if not _VPA.fullmatch(vpa):
        raise _invalid(f"{text!r} is not a payment address like name@bank")
    if vpa.endswith("@" + ADDRESS_DOMAIN):
        raise PayFlowError(
            "destination_on_us",
            f"{text!r} is a PayFlow wallet: send it money with POST /v1/transfers",
            http_status=422,
        )
    return Destination(vpa=vpa)


def parse_destination(
    *, vpa: str | None, bank_code: str | None, account_number: str | None
) -> Destination:
    """A destination from exactly one of its two forms; anything else is a 422."""
    if vpa is not None:
        if bank_code is not None or account_number is not None:
            raise _invalid("give either `vpa` or `bank_code` + `account_number`, not both")
        return parse_vpa(vpa)
    if bank_code is None or account_number is None:
        raise _invalid("give either `vpa` or both `bank_code` and `account_number`")
    if not _BANK_CODE.fullmatch(bank_code):
        raise _invalid(f"{bank_code!r} is not a bank code like ABCD0123456")
    if not _ACCOUNT_NUMBER.fullmatch(account_number):
        raise _invalid("`account_number` must be 6-18 digits")
    return Destination(bank_code=bank_code, account_number=account_number)


@dataclass(frozen=True, slots=True)
class Payout:
    """One payout as stored: the saga's state plus what the bank was asked."""

    id: uuid.UUID
    user_id: uuid.UUID
    wallet_id: uuid.UUID
    amount: int
    currency: str
    destination: Destination
    description: str | None
    source: str
    source_id: str | None
    step: Step
    failure_reason: str | None
    bank_transaction_id: str | None
    # The bank must not act on the credit after this (Unix s): past it, "never received"
    # is final, so the saga may refund without risking a late credit.
    not_after: int
    # The bank call: how many were made, when the next is due, and whether the last one's
    # outcome is unknown (then the next call is a status inquiry, not a credit).
    attempts: int
    next_attempt_at: int | None
    inquire: bool
    created_at: int
    updated_at: int

    @property
    def status(self) -> Status:
        return status_of(self.step)

    @property
    def reference(self) -> str:
        """The bank's idempotency key for this payout's credit."""
        return f"po_{self.id.hex}"


def debit_transfer_id(payout_id: uuid.UUID) -> uuid.UUID:
    """The pending ledger transfer that takes the money out of the wallet."""
    return uuid.uuid5(payout_id, "debit")


def post_transfer_id(payout_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(payout_id, "post")


def void_transfer_id(payout_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(payout_id, "void")


def backoff_s(attempt: int, *, base_s: float, cap_s: float, jitter: float) -> float:
    """Exponential back-off for the `attempt`-th bank call (1-based), `jitter` in [0, 1)."""
    assert attempt >= 1, attempt
    delay: float = min(cap_s, base_s * 2.0 ** (attempt - 1))
    return delay * (0.5 + jitter / 2)
