"""The ledger: accounts, immutable transfers, two-phase holds, linked chains, audit."""

from payflow.ledger.audit import AuditReport, audit
from payflow.ledger.domain import (
    Account,
    AccountFlags,
    AccountResult,
    BalanceSnapshot,
    CloseResult,
    PendingStatus,
    Transfer,
    TransferFlags,
    TransferOutcome,
    TransferResult,
)
from payflow.ledger.queries import (
    Cursor,
    Page,
    get_account_balance_at,
    get_account_history,
    get_account_transfers,
    get_pending_status,
    lookup_accounts,
    lookup_transfers,
)
from payflow.ledger.service import (
    close_accounts,
    create_accounts,
    create_transfers,
    expire_pending_transfers,
    lock_accounts,
)

__all__ = [
    "Account",
    "AccountFlags",
    "AccountResult",
    "AuditReport",
    "BalanceSnapshot",
    "CloseResult",
    "Cursor",
    "Page",
    "PendingStatus",
    "Transfer",
    "TransferFlags",
    "TransferOutcome",
    "TransferResult",
    "audit",
    "close_accounts",
    "create_accounts",
    "create_transfers",
    "expire_pending_transfers",
    "get_account_balance_at",
    "get_account_history",
    "get_account_transfers",
    "get_pending_status",
    "lock_accounts",
    "lookup_accounts",
    "lookup_transfers",
]
