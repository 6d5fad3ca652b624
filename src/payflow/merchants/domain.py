"""Merchants' rules: what a merchant profile is and what a valid settlement destination
is. Pure, no I/O."""

from __future__ import annotations

import re
import unicodedata
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from payflow.errors import PayFlowError
from payflow.payouts.domain import ACCOUNT_NUMBER_PATTERN, BANK_CODE_PATTERN, VPA_PATTERN
from payflow.wallets.domain import ADDRESS_DOMAIN

# Settlement is paid out through the payout saga: its destination rules are payouts'.
ON_US_DOMAIN: Final = ADDRESS_DOMAIN
BUSINESS_NAME_LENGTH_MAX: Final = 100
SETTLEMENT_INTERVAL_S_DEFAULT: Final = 86_400
SETTLEMENT_INTERVAL_S_MIN: Final = 60
SETTLEMENT_INTERVAL_S_MAX: Final = 30 * 86_400
FEE_BPS_MAX: Final = 10_000


class MerchantStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


@dataclass(frozen=True, slots=True)
class Destination:
    """Where settlement pays a merchant at another bank: a bank account or a UPI address."""

    bank_code: str | None = None
    account_number: str | None = None
    vpa: str | None = None


@dataclass(frozen=True, slots=True)
class Merchant:
    """A merchant profile. The destination is flat (`bank_code` + `account_number`, or
    `vpa`) so that callers such as settlement read it without unpacking."""

    id: uuid.UUID
    user_id: uuid.UUID
    wallet_id: uuid.UUID
    business_name: str
    settlement_currency: str
    bank_code: str | None
    account_number: str | None
    vpa: str | None
    settlement_interval_s: int
    fee_bps: int
    status: MerchantStatus
    created_at: int
    updated_at: int

    @property
    def destination(self) -> Destination:
        return Destination(self.bank_code, self.account_number, self.vpa)

    @property
    def is_active(self) -> bool:
        return self.status is MerchantStatus.ACTIVE


def _invalid(code: str, message: str) -> PayFlowError:
    return PayFlowError(code, message, http_status=422)


def check_destination(destination: Destination) -> Destination:
    """The destination, normalized (VPAs are case-insensitive); 422 if it is not exactly
    one well-formed bank account or off-us UPI address."""
    bank = destination.bank_code is not None or destination.account_number is not None
    if bank and destination.vpa is not None:
        raise _invalid(
            "settlement_destination_invalid",
            "give either bank_code and account_number, or vpa, not both",
        )
    if destination.vpa is not None:
        vpa = destination.vpa.strip().lower()
        if len(vpa) > 100 or not re.fullmatch(VPA_PATTERN, vpa):
            raise _invalid("vpa_invalid", f"{destination.vpa!r} is not a UPI address name@bank")
        if vpa.endswith("@" + ON_US_DOMAIN):
            raise _invalid(
                "vpa_on_us", "settlement goes to another bank: an @payflow address is a wallet"
            )
        return Destination(vpa=vpa)
    if destination.bank_code is None or destination.account_number is None:
        raise _invalid(
            "settlement_destination_invalid",
            "give bank_code and account_number together, or vpa",
        )
    if not re.fullmatch(BANK_CODE_PATTERN, destination.bank_code):
        raise _invalid(
            "bank_code_invalid", f"{destination.bank_code!r} is not a bank code like HDFC0001234"
        )
    if not re.fullmatch(ACCOUNT_NUMBER_PATTERN, destination.account_number):
        raise _invalid("account_number_invalid", "an account number is 6-18 digits")
    return destination


def check_business_name(name: str) -> str:
    """The name, trimmed: visible text without control characters, at most 100 long."""
    name = name.strip()
    if (
        not name
        or len(name) > BUSINESS_NAME_LENGTH_MAX
        or any(unicodedata.category(c) == "Cc" for c in name)
    ):
        raise _invalid(
            "business_name_invalid",
            f"a business name is 1-{BUSINESS_NAME_LENGTH_MAX} visible characters",
        )
    return name


def check_interval(interval_s: int) -> int:
    if not SETTLEMENT_INTERVAL_S_MIN <= interval_s <= SETTLEMENT_INTERVAL_S_MAX:
        raise _invalid(
            "settlement_interval_invalid",
            f"settlement_interval_s is {SETTLEMENT_INTERVAL_S_MIN}-{SETTLEMENT_INTERVAL_S_MAX}",
        )
    return interval_s


def check_fee(fee_bps: int) -> int:
    if not 0 <= fee_bps <= FEE_BPS_MAX:
        raise _invalid("fee_invalid", f"fee_bps is 0-{FEE_BPS_MAX} (basis points)")
    return fee_bps
