"""Payouts' tables: the saga's state, its timeline and every call made to the bank."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Uuid,
)

metadata = MetaData()

STEPS_SQL = (
    "'TRANSACTION_INITIATED', 'DEBIT_SUCCESS', 'DEBIT_FAILED', 'CREDIT_DUE', "
    "'CREDIT_SUCCESS', 'CREDIT_FAILED', 'REFUND_REQUESTED', 'REFUND_COMPLETED', "
    "'TRANSACTION_COMPLETED', 'TRANSACTION_FAILED'"
)

payouts = Table(
    "payouts",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("user_id", Uuid, nullable=False),
    Column("wallet_id", Uuid, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("destination", JSON, nullable=False),
    Column("description", String(140), nullable=True),
    # Who asked: `api` (a user), or another context (`settlement`) with its own id.
    Column("source", String(16), nullable=False),
    Column("source_id", String(64), nullable=True),
    Column("step", String(24), nullable=False),
    Column("failure_reason", String(64), nullable=True),
    Column("bank_transaction_id", String(64), nullable=True),
    Column("not_after", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", BigInteger, nullable=True),
    Column("inquire", Boolean, nullable=False, server_default="0"),
    # Set once, never both: the ledger posted the debit (money reached the bank) or
    # voided it (money back in the wallet).
    Column("credited_at", BigInteger, nullable=True),
    Column("refunded_at", BigInteger, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint(f"step IN ({STEPS_SQL})", name="step_known"),
    CheckConstraint("source IN ('api', 'settlement')", name="source_known"),
    CheckConstraint("credited_at IS NULL OR refunded_at IS NULL", name="credited_or_refunded"),
    CheckConstraint(
        "step <> 'TRANSACTION_COMPLETED' OR credited_at IS NOT NULL", name="completed_credited"
    ),
    CheckConstraint("attempts >= 0", name="attempts_not_negative"),
)

Index("payouts_user", payouts.c.user_id, payouts.c.created_at, payouts.c.id)
# The bank caller's queue: due credits and inquiries, oldest first.
Index("payouts_due", payouts.c.step, payouts.c.next_attempt_at)
# Sagas not yet ended, for the sweeper.
Index("payouts_open", payouts.c.step, payouts.c.updated_at)
# One payout per settlement (or other internal source).
Index("payouts_source", payouts.c.source, payouts.c.source_id, unique=True)

# The timeline: each step the saga took, once.
payout_steps = Table(
    "payout_steps",
    metadata,
    Column("payout_id", Uuid, ForeignKey("payouts.id"), primary_key=True),
    Column("step", String(24), primary_key=True),
    Column("at", BigInteger, nullable=False),
    Column("detail", String(200), nullable=True),
)

# Every call to the bank: credits and status inquiries, with what came back.
payout_attempts = Table(
    "payout_attempts",
    metadata,
    Column("payout_id", Uuid, ForeignKey("payouts.id"), primary_key=True),
    Column("number", Integer, primary_key=True),
    Column("operation", String(16), nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("finished_at", BigInteger, nullable=False),
    Column("outcome", String(24), nullable=False),
    Column("detail", String(200), nullable=True),
    CheckConstraint("operation IN ('credit', 'inquiry')", name="operation_known"),
)
