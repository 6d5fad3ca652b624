"""The ledger's tables. Constraints repeat the batch engine's rules as a second guard."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Uuid,
    text,
)

metadata = MetaData()

_COUNTERS = ("debits_pending", "debits_posted", "credits_pending", "credits_posted")

accounts = Table(
    "ledger_accounts",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("currency", String(3), nullable=False),
    Column("code", Integer, nullable=False),
    Column("flags", Integer, nullable=False),
    *(Column(name, BigInteger, nullable=False, server_default="0") for name in _COUNTERS),
    Column("metadata", JSON, nullable=True),
    Column("timestamp", BigInteger, nullable=False),
    # Every transfer on this account has a later timestamp than the one before it, even
    # if clocks of different processes disagree: batches start past this value.
    Column("last_transfer_timestamp", BigInteger, nullable=False, server_default="0"),
    *(CheckConstraint(f"{name} >= 0", name=f"{name}_not_negative") for name in _COUNTERS),
    CheckConstraint("length(currency) = 3", name="currency_is_iso_4217"),
    CheckConstraint("code >= 0 AND code <= 65535", name="code_in_range"),
    CheckConstraint("(flags & 3) <> 3", name="limit_flags_exclusive"),
    CheckConstraint(
        "(flags & 1) = 0 OR debits_pending + debits_posted <= credits_posted",
        name="debits_must_not_exceed_credits",
    ),
    CheckConstraint(
        "(flags & 2) = 0 OR credits_pending + credits_posted <= debits_posted",
        name="credits_must_not_exceed_debits",
    ),
    # Room on each page for HOT updates: counters change on every transfer.
    postgresql_with={"fillfactor": 85},
)

transfers = Table(
    "ledger_transfers",
    metadata,
    Column("id", Uuid, primary_key=True),
    # No foreign keys to accounts: the batch engine finds both accounts under lock before
    # it writes, and a foreign-key check per row and side costs a third of the batch's
    # write time. `payflow audit` checks that every referenced account exists.
    Column("debit_account_id", Uuid, nullable=False),
    Column("credit_account_id", Uuid, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("code", Integer, nullable=False),
    Column("flags", Integer, nullable=False),
    Column("pending_id", Uuid, ForeignKey("ledger_transfers.id"), nullable=True),
    Column("timeout_s", Integer, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("debit_account_id <> credit_account_id", name="accounts_different"),
    CheckConstraint(
        "(pending_id IS NULL) = ((flags & 12) = 0)", name="pending_id_iff_post_or_void"
    ),
    CheckConstraint("timeout_s >= 0", name="timeout_not_negative"),
    # One resolution per pending transfer: never both posted and voided. Only resolutions
    # have a pending_id, and only they are in the index (migration 0011).
    Index(
        "ledger_transfers_pending_id_key",
        "pending_id",
        unique=True,
        postgresql_where=text("pending_id IS NOT NULL"),
        sqlite_where=text("pending_id IS NOT NULL"),
    ),
    Index("ledger_transfers_debit_account", "debit_account_id", "timestamp"),
    Index("ledger_transfers_credit_account", "credit_account_id", "timestamp"),
)

# Pending transfers with a timeout that are still pending; the expiry sweeper's queue.
pending_expiries = Table(
    "ledger_pending_expiries",
    metadata,
    Column("transfer_id", Uuid, ForeignKey("ledger_transfers.id"), primary_key=True),
    Column("expires_at", BigInteger, nullable=False),
    Index("ledger_pending_expiries_due", "expires_at"),
)

# Counters of `history` accounts after each of their transfers (statements, balance at t).
account_balances = Table(
    "ledger_account_balances",
    metadata,
    Column("account_id", Uuid, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Column("transfer_id", Uuid, nullable=False),
    *(Column(name, BigInteger, nullable=False) for name in _COUNTERS),
    PrimaryKeyConstraint("account_id", "timestamp", "transfer_id"),
)
