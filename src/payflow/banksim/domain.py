"""The partner bank's rules, pure: address formats, outcomes, fault draws, discrepancies."""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final, Literal

CreditStatus = Literal["credited", "rejected", "processing"]
FaultKind = Literal["failure", "timeout", "lost_response", "unavailable"]
Operation = Literal["credit", "inquiry"]

# What each operation can suffer. An inquiry changes nothing, so it can only be slow or
# not served at all.
FAULTS_BY_OPERATION: Final[dict[str, tuple[str, ...]]] = {
    "credit": ("unavailable", "failure", "timeout", "lost_response"),
    "inquiry": ("unavailable", "timeout"),
}

REFERENCE_PATTERN: Final = r"^[A-Za-z0-9_-]{1,64}$"
BANK_CODE_PATTERN: Final = r"^[A-Z]{4}0[A-Z0-9]{6}$"
ACCOUNT_NUMBER_PATTERN: Final = r"^[0-9]{6,18}$"
VPA_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}@[A-Za-z][A-Za-z0-9]{1,31}$"
# VPAs at PayFlow itself are settled inside PayFlow, never through this bank.
OWN_VPA_DOMAIN: Final = "payflow"
NARRATIVE_LENGTH_MAX: Final = 140
_VPA_RE: Final = re.compile(VPA_PATTERN, re.ASCII)

# Rejection reasons (stable, part of the API).
REASON_ACCOUNT_NOT_FOUND: Final = "account_not_found"
REASON_ACCOUNT_CLOSED: Final = "account_closed"
REASON_CURRENCY_MISMATCH: Final = "currency_mismatch"
REASON_EXPIRED: Final = "expired"
REASON_BANK_DECLINED: Final = "bank_declined"


def is_other_bank_vpa(vpa: str) -> bool:
    """True for a well-formed VPA whose handle is not PayFlow's own."""
    if _VPA_RE.match(vpa) is None:
        return False
    return vpa.rsplit("@", 1)[1].lower() != OWN_VPA_DOMAIN


@dataclass(frozen=True, slots=True)
class Rates:
    """Probabilities of each fault, each in [0, 1], together at most 1."""

    failure: float = 0.0
    timeout: float = 0.0
    lost_response: float = 0.0
    unavailable: float = 0.0

    def total(self) -> float:
        return self.failure + self.timeout + self.lost_response + self.unavailable


def draw_fault(rng: random.Random, rates: Rates, operation: Operation) -> FaultKind | None:
    """One random fault (or none) for `operation`, drawn once from `rng`."""
    roll = rng.random()
    edge = 0.0
    for kind in FAULTS_BY_OPERATION[operation]:
        edge += getattr(rates, kind)
        if roll < edge:
            return kind  # type: ignore[return-value]
    return None


@dataclass(frozen=True, slots=True)
class Discrepancy:
    """What the statement does to one credited line: its fee, a late booking, an extra
    line nobody asked for (its amount, or 0 for none)."""

    fee: int
    booked_late: bool
    unexpected_amount: int


def discrepancy_for(
    *, seed: int, reference: str, amount: int, fee: int, missing_rate: float, unexpected_rate: float
) -> Discrepancy:
    """Deterministic from `seed` and `reference` alone, so the same credits give the same
    statement whatever order (or process) they were completed in."""
    rng = random.Random(f"{seed}:{reference}")
    booked_late = rng.random() < missing_rate
    unexpected = rng.random() < unexpected_rate
    unexpected_amount = rng.randint(1, max(1, amount)) if unexpected else 0
    return Discrepancy(fee=fee, booked_late=booked_late, unexpected_amount=unexpected_amount)


def utc_day(timestamp_ns: int) -> date:
    """The UTC calendar day of a Unix-nanosecond timestamp."""
    return datetime.fromtimestamp(timestamp_ns // 1_000_000_000, tz=UTC).date()


def next_day(day: date) -> date:
    """The day after `day`."""
    return day + timedelta(days=1)


def parse_day(text: str) -> date | None:
    """`YYYY-MM-DD` as a date, or None if it is not one."""
    if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text, re.ASCII) is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class CreditRequest:
    """A credit as PayFlow asked for it; `canonical()` is what a retry must repeat."""

    reference: str
    amount: int
    currency: str
    vpa: str | None
    bank_code: str | None
    account_number: str | None
    not_after: int
    narrative: str

    def canonical(self) -> str:
        """The request as one stable JSON text (sorted keys, no spaces)."""
        body = {
            "amount": self.amount,
            "currency": self.currency,
            "destination": {"vpa": self.vpa}
            if self.vpa is not None
            else {"account_number": self.account_number, "bank_code": self.bank_code},
            "narrative": self.narrative,
            "not_after": self.not_after,
            "reference": self.reference,
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Credit:
    """A credit the bank received, and what became of it."""

    reference: str
    status: CreditStatus
    reason: str | None
    bank_transaction_id: str | None
    amount: int
    currency: str
    received_at_ns: int
    completed_at_ns: int | None


@dataclass(frozen=True, slots=True)
class StatementLine:
    """One booked movement on the nostro account."""

    booked_on: date
    value_on: date
    kind: str
    direction: Literal["D", "C"]
    amount: int
    currency: str
    reference: str
    bank_transaction_id: str
    narrative: str


@dataclass(frozen=True, slots=True)
class Statement:
    """The nostro account's statement for one UTC day."""

    day: date
    bank_code: str
    account_number: str
    account_name: str
    currency: str
    opening_balance: int
    closing_balance: int
    lines: tuple[StatementLine, ...]

    @property
    def number(self) -> int:
        """The statement's sequence number: days since 1970-01-01, so it never repeats."""
        return (self.day - date(1970, 1, 1)).days

    @property
    def statement_id(self) -> str:
        """A 16-character id unique per account and day."""
        return f"STMT{self.day:%Y%m%d}{self.number % 10_000:04d}"


def signed(direction: str, amount: int) -> int:
    """The amount as a change of balance: debits negative."""
    return amount if direction == "C" else -amount


@dataclass(frozen=True, slots=True)
class Account:
    """An account at this bank (another bank, from PayFlow's point of view)."""

    id: int
    bank_code: str
    account_number: str
    vpa: str | None
    name: str
    currency: str
    closed: bool


@dataclass(frozen=True, slots=True)
class StatementPolicy:
    """How statements deviate from the credits, as configured when a credit completes."""

    seed: int
    fee_per_credit: int
    missing_line_rate: float
    unexpected_line_rate: float


def decide(
    request: CreditRequest, *, destination: Account | None, nostro_currency: str
) -> tuple[CreditStatus, str | None]:
    """Credit or reject: the bank's checks on the destination and the currency."""
    if destination is None:
        return "rejected", REASON_ACCOUNT_NOT_FOUND
    if destination.closed:
        return "rejected", REASON_ACCOUNT_CLOSED
    if request.currency != destination.currency or request.currency != nostro_currency:
        return "rejected", REASON_CURRENCY_MISMATCH
    return "credited", None
