"""The ledger's types: accounts, transfers, their flags and result codes. Pure, no I/O.

The model is TigerBeetle's: an account holds four counters in minor units, a transfer
debits one account and credits another, pending transfers reserve money until they are
posted, voided or expire.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag, StrEnum
from typing import Any, Final, NamedTuple

NIL_ID: Final = uuid.UUID(int=0)
CODE_MAX: Final = 65_535
TIMEOUT_S_MAX: Final = 2**31 - 1
METADATA_BYTES_MAX: Final = 4096
EXPIRY_NAMESPACE: Final = uuid.UUID("0195c0de-0000-7000-8000-00000e491e00")


class AccountFlags(IntFlag):
    NONE = 0
    DEBITS_MUST_NOT_EXCEED_CREDITS = 1
    CREDITS_MUST_NOT_EXCEED_DEBITS = 2
    HISTORY = 4
    CLOSED = 8


# A plain int: `~` of an IntFlag inverts only the defined bits, so `flags & ~mask` would
# let undefined bits (16, 2**40, -16) through.
ACCOUNT_FLAGS_CREATABLE: Final = int(
    AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
    | AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS
    | AccountFlags.HISTORY
)


class TransferFlags(IntFlag):
    NONE = 0
    LINKED = 1
    PENDING = 2
    POST_PENDING = 4
    VOID_PENDING = 8
    # Set only by the ledger's own expiry sweeper on the void that expires a pending transfer.
    EXPIRY = 16


TRANSFER_FLAGS_CLIENT: Final = (
    TransferFlags.LINKED
    | TransferFlags.PENDING
    | TransferFlags.POST_PENDING
    | TransferFlags.VOID_PENDING
)
TWO_PHASE_RESOLUTION: Final = TransferFlags.POST_PENDING | TransferFlags.VOID_PENDING


class PendingStatus(IntEnum):
    """What became of a pending transfer."""

    PENDING = 0
    POSTED = 1
    VOIDED = 2
    EXPIRED = 3


class AccountResult(StrEnum):
    OK = "ok"
    EXISTS = "exists"
    EXISTS_WITH_DIFFERENT_FLAGS = "exists_with_different_flags"
    EXISTS_WITH_DIFFERENT_CODE = "exists_with_different_code"
    EXISTS_WITH_DIFFERENT_CURRENCY = "exists_with_different_currency"
    EXISTS_WITH_DIFFERENT_METADATA = "exists_with_different_metadata"
    ID_INVALID = "id_invalid"
    ID_MUST_NOT_BE_ZERO = "id_must_not_be_zero"
    FLAGS_INVALID = "flags_invalid"
    FLAGS_ARE_MUTUALLY_EXCLUSIVE = "flags_are_mutually_exclusive"
    CURRENCY_UNKNOWN = "currency_unknown"
    CODE_INVALID = "code_invalid"
    METADATA_INVALID = "metadata_invalid"


class CloseResult(StrEnum):
    OK = "ok"
    ACCOUNT_NOT_FOUND = "account_not_found"
    ACCOUNT_ALREADY_CLOSED = "account_already_closed"
    ACCOUNT_HAS_PENDING_TRANSFERS = "account_has_pending_transfers"


class TransferResult(StrEnum):
    OK = "ok"
    EXISTS = "exists"
    EXISTS_WITH_DIFFERENT_FLAGS = "exists_with_different_flags"
    EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID = "exists_with_different_debit_account_id"
    EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID = "exists_with_different_credit_account_id"
    EXISTS_WITH_DIFFERENT_AMOUNT = "exists_with_different_amount"
    EXISTS_WITH_DIFFERENT_CURRENCY = "exists_with_different_currency"
    EXISTS_WITH_DIFFERENT_CODE = "exists_with_different_code"
    EXISTS_WITH_DIFFERENT_PENDING_ID = "exists_with_different_pending_id"
    EXISTS_WITH_DIFFERENT_TIMEOUT = "exists_with_different_timeout"
    LINKED_EVENT_FAILED = "linked_event_failed"
    LINKED_EVENT_CHAIN_OPEN = "linked_event_chain_open"
    ID_INVALID = "id_invalid"
    ID_MUST_NOT_BE_ZERO = "id_must_not_be_zero"
    FLAGS_INVALID = "flags_invalid"
    FLAGS_ARE_MUTUALLY_EXCLUSIVE = "flags_are_mutually_exclusive"
    DEBIT_ACCOUNT_ID_INVALID = "debit_account_id_invalid"
    CREDIT_ACCOUNT_ID_INVALID = "credit_account_id_invalid"
    DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO = "debit_account_id_must_not_be_zero"
    CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO = "credit_account_id_must_not_be_zero"
    ACCOUNTS_MUST_BE_DIFFERENT = "accounts_must_be_different"
    PENDING_ID_INVALID = "pending_id_invalid"
    PENDING_ID_MUST_BE_ZERO = "pending_id_must_be_zero"
    PENDING_ID_MUST_NOT_BE_ZERO = "pending_id_must_not_be_zero"
    PENDING_ID_MUST_BE_DIFFERENT = "pending_id_must_be_different"
    TIMEOUT_INVALID = "timeout_invalid"
    TIMEOUT_RESERVED_FOR_PENDING_TRANSFER = "timeout_reserved_for_pending_transfer"
    AMOUNT_MUST_BE_INTEGER = "amount_must_be_integer"
    AMOUNT_MUST_NOT_BE_ZERO = "amount_must_not_be_zero"
    AMOUNT_MUST_NOT_BE_NEGATIVE = "amount_must_not_be_negative"
    AMOUNT_MUST_NOT_EXCEED_MAX = "amount_must_not_exceed_max"
    CURRENCY_MUST_NOT_BE_EMPTY = "currency_must_not_be_empty"
    CURRENCY_UNKNOWN = "currency_unknown"
    CODE_INVALID = "code_invalid"
    DEBIT_ACCOUNT_NOT_FOUND = "debit_account_not_found"
    CREDIT_ACCOUNT_NOT_FOUND = "credit_account_not_found"
    DEBIT_ACCOUNT_CLOSED = "debit_account_closed"
    CREDIT_ACCOUNT_CLOSED = "credit_account_closed"
    CURRENCY_MISMATCH = "currency_mismatch"
    PENDING_TRANSFER_NOT_FOUND = "pending_transfer_not_found"
    PENDING_TRANSFER_NOT_PENDING = "pending_transfer_not_pending"
    PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID = (
        "pending_transfer_has_different_debit_account_id"
    )
    PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID = (
        "pending_transfer_has_different_credit_account_id"
    )
    PENDING_TRANSFER_HAS_DIFFERENT_CURRENCY = "pending_transfer_has_different_currency"
    PENDING_TRANSFER_HAS_DIFFERENT_CODE = "pending_transfer_has_different_code"
    PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT = "pending_transfer_has_different_amount"
    PENDING_AMOUNT_EXCEEDED = "pending_amount_exceeded"
    PENDING_TRANSFER_ALREADY_POSTED = "pending_transfer_already_posted"
    PENDING_TRANSFER_ALREADY_VOIDED = "pending_transfer_already_voided"
    PENDING_TRANSFER_EXPIRED = "pending_transfer_expired"
    EXCEEDS_CREDITS = "exceeds_credits"
    EXCEEDS_DEBITS = "exceeds_debits"
    OVERFLOWS_DEBITS_PENDING = "overflows_debits_pending"
    OVERFLOWS_CREDITS_PENDING = "overflows_credits_pending"
    OVERFLOWS_DEBITS_POSTED = "overflows_debits_posted"
    OVERFLOWS_CREDITS_POSTED = "overflows_credits_posted"
    OVERFLOWS_DEBITS = "overflows_debits"
    OVERFLOWS_CREDITS = "overflows_credits"
    OVERFLOWS_TIMEOUT = "overflows_timeout"


@dataclass(frozen=True, slots=True)
class Account:
    """An account as the client creates it, and as the ledger returns it with counters."""

    id: uuid.UUID
    currency: str
    code: int = 1
    flags: AccountFlags = AccountFlags.NONE
    metadata: dict[str, Any] | None = None
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0
    timestamp: int = 0

    @property
    def balance(self) -> int:
        """Posted credits minus posted debits: the balance of a credit-normal account."""
        return self.credits_posted - self.debits_posted

    @property
    def available(self) -> int:
        """What a credit-normal account can still spend: posted balance minus holds."""
        return self.credits_posted - self.debits_posted - self.debits_pending


@dataclass(slots=True)
class AccountState:
    """An account row locked for a batch; the batch engine changes its counters in place."""

    id: uuid.UUID
    currency: str
    flags: int
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int
    touched: bool = field(default=False)


class Transfer(NamedTuple):
    """A transfer request, and (with `timestamp` set) the immutable record the ledger keeps.

    For `post_pending`/`void_pending`, fields left as None are taken from the pending
    transfer; a post's `amount=None` posts the full pending amount. A named tuple, not a
    dataclass: the batch engine makes thousands per batch and a tuple is the cheapest
    immutable record Python has. `flags` is a plain int built from `TransferFlags`.
    """

    id: uuid.UUID
    debit_account_id: uuid.UUID | None = None
    credit_account_id: uuid.UUID | None = None
    amount: int | None = None
    currency: str | None = None
    code: int = 0
    flags: int = 0
    pending_id: uuid.UUID | None = None
    timeout_s: int = 0
    timestamp: int = 0

    @property
    def expires_at(self) -> int | None:
        """When a pending transfer with a timeout expires (Unix ns), else None."""
        if not self.flags & TransferFlags.PENDING or not self.timeout_s:
            return None
        return self.timestamp + self.timeout_s * 1_000_000_000


@dataclass(frozen=True, slots=True)
class TransferOutcome:
    """The result of one transfer of a batch: its code and, when it exists, its record."""

    code: TransferResult
    transfer: Transfer | None = None

    @property
    def ok(self) -> bool:
        return self.code is TransferResult.OK


@dataclass(frozen=True, slots=True)
class BalanceSnapshot:
    """An account's counters right after one transfer (kept for `history` accounts)."""

    account_id: uuid.UUID
    transfer_id: uuid.UUID
    timestamp: int
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int

    @property
    def balance(self) -> int:
        return self.credits_posted - self.debits_posted


def expiry_transfer_id(pending_id: uuid.UUID) -> uuid.UUID:
    """The id of the void that expires `pending_id`: derived, so expiry happens once."""
    return uuid.uuid5(EXPIRY_NAMESPACE, pending_id.hex)


def pending_status_of(resolution_flags: int | None) -> PendingStatus:
    """Map the flags of the transfer that resolved a pending transfer to its status."""
    if resolution_flags is None:
        return PendingStatus.PENDING
    if resolution_flags & TransferFlags.POST_PENDING:
        return PendingStatus.POSTED
    if resolution_flags & TransferFlags.EXPIRY:
        return PendingStatus.EXPIRED
    return PendingStatus.VOIDED
