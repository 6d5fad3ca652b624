"""Wallets' types and the ledger codes PayFlow uses for its accounts and transfers."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Final

from payflow.ledger import Account, AccountFlags

ADDRESS_DOMAIN: Final = "payflow"


class AccountCode(IntEnum):
    """`code` of PayFlow's ledger accounts: what kind of account it is."""

    WALLET = 1
    # Money arriving from users' linked banks: goes negative as wallets are topped up.
    BANK_CLEARING = 10
    # Held money waiting to be captured or released.
    HOLDS = 11
    # The other side of operators' manual adjustments.
    ADJUSTMENTS = 12
    # The funded budget cashback is paid from (and clawbacks return to).
    REWARDS_POOL = 13
    # Money on its way out to other banks: payouts' pending debits land here, and are
    # posted once the partner bank confirmed the credit (or voided back to the wallet).
    PAYOUTS_TRANSIT = 14
    # PayFlow's revenue: merchant fees taken at settlement.
    FEES = 15


class TransferCode(IntEnum):
    """`code` of PayFlow's ledger transfers: why the money moved."""

    P2P = 1
    TOPUP = 2
    HOLD = 3
    CAPTURE = 4
    ADJUSTMENT = 5
    CASHBACK = 6
    CLAWBACK = 7
    POOL_FUNDING = 8
    PAYMENT = 9
    REFUND = 10
    PAYOUT = 11
    FEE = 12


class SystemAccount(StrEnum):
    BANK_CLEARING = "bank_clearing"
    HOLDS = "holds"
    ADJUSTMENTS = "adjustments"
    REWARDS_POOL = "rewards_pool"
    PAYOUTS_TRANSIT = "payouts_transit"
    FEES = "fees"


SYSTEM_ACCOUNT_CODES: Final = {
    SystemAccount.BANK_CLEARING: AccountCode.BANK_CLEARING,
    SystemAccount.HOLDS: AccountCode.HOLDS,
    SystemAccount.ADJUSTMENTS: AccountCode.ADJUSTMENTS,
    SystemAccount.REWARDS_POOL: AccountCode.REWARDS_POOL,
    SystemAccount.PAYOUTS_TRANSIT: AccountCode.PAYOUTS_TRANSIT,
    SystemAccount.FEES: AccountCode.FEES,
}
# The pool is a budget, not a clearing account: the ledger refuses to pay out more than
# was put in. The others may run negative (clearing goes negative as wallets top up).
SYSTEM_ACCOUNT_FLAGS: Final = {
    SystemAccount.REWARDS_POOL: AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
}


def address_of(handle: str) -> str:
    return f"{handle}@{ADDRESS_DOMAIN}"


@dataclass(frozen=True, slots=True)
class Balance:
    """`posted`: settled money; `pending`: held (on its way out); `available`: spendable."""

    posted: int
    pending: int
    available: int

    @classmethod
    def of(cls, account: Account) -> Balance:
        return cls(
            posted=account.balance, pending=account.debits_pending, available=account.available
        )


@dataclass(frozen=True, slots=True)
class Wallet:
    id: uuid.UUID
    user_id: uuid.UUID
    handle: str
    currency: str
    created_at: int

    @property
    def address(self) -> str:
        return address_of(self.handle)
