"""Transfers' rules: what a ledger result means to the person moving money."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Final

from payflow.errors import PayFlowError
from payflow.ledger import TransferResult as R

_ERRORS: Final[dict[R, tuple[str, str, int]]] = {
    R.EXCEEDS_CREDITS: ("insufficient_funds", "the wallet's available balance is too low", 422),
    R.DEBIT_ACCOUNT_CLOSED: ("wallet_closed", "the paying wallet is closed", 409),
    R.CREDIT_ACCOUNT_CLOSED: ("wallet_closed", "the receiving wallet is closed", 409),
    R.CURRENCY_MISMATCH: ("currency_mismatch", "the wallets hold different currencies", 422),
    R.PENDING_TRANSFER_EXPIRED: ("hold_expired", "the hold has expired", 409),
    R.PENDING_TRANSFER_ALREADY_POSTED: ("hold_not_held", "the hold was already captured", 409),
    R.PENDING_TRANSFER_ALREADY_VOIDED: ("hold_not_held", "the hold was already released", 409),
    R.PENDING_AMOUNT_EXCEEDED: ("capture_exceeds_hold", "capture more than the hold", 422),
    R.OVERFLOWS_CREDITS_POSTED: ("amount_too_large", "the balance would overflow", 422),
    R.OVERFLOWS_CREDITS: ("amount_too_large", "the balance would overflow", 422),
    R.OVERFLOWS_DEBITS_POSTED: ("amount_too_large", "the balance would overflow", 422),
    R.OVERFLOWS_DEBITS: ("amount_too_large", "the balance would overflow", 422),
    R.OVERFLOWS_DEBITS_PENDING: ("amount_too_large", "the balance would overflow", 422),
    R.OVERFLOWS_CREDITS_PENDING: ("amount_too_large", "the balance would overflow", 422),
}

SUCCEEDED: Final = "succeeded"


def ledger_error(code: R) -> PayFlowError:
    """The client-facing error for a ledger result other than ok/exists."""
    if code in _ERRORS:
        error_code, message, status = _ERRORS[code]
        return PayFlowError(error_code, message, http_status=status)
    # Anything else means PayFlow built a transfer the ledger refused: our bug, but the
    # ledger kept money safe, so say exactly what it said.
    return PayFlowError(
        "transfer_rejected", f"the ledger refused the transfer: {code}", http_status=422
    )


def succeeded(code: R) -> bool:
    # `exists` is the ledger confirming an identical earlier transfer (a retried batch).
    return code in (R.OK, R.EXISTS)


@dataclass(frozen=True, slots=True)
class TransferRecord:
    id: uuid.UUID
    kind: str
    status: str
    from_wallet_id: uuid.UUID | None
    to_wallet_id: uuid.UUID | None
    amount: int
    currency: str
    note: str | None
    hold_id: uuid.UUID | None
    initiated_by: uuid.UUID
    created_at: int


@dataclass(frozen=True, slots=True)
class Hold:
    id: uuid.UUID
    wallet_id: uuid.UUID
    amount: int
    currency: str
    note: str | None
    status: str
    captured_amount: int
    payee_wallet_id: uuid.UUID | None
    expires_at: int | None
    created_by: uuid.UUID
    created_at: int
    resolved_at: int | None

    def status_at(self, now_ns: int) -> str:
        """`expired` once past its expiry while still held (the sweeper voids it)."""
        if self.status == "held" and self.expires_at is not None and self.expires_at <= now_ns:
            return "expired"
        return self.status
