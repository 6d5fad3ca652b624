"""Payments' tables: what was asked and what became of it; the money is in the ledger.

The CHECK constraints repeat domain.py's state machine as a second guard: a terminal row
has what its state needs, refunds never exceed what was captured.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    Index,
    String,
    Table,
    Uuid,
)

# One MetaData for merchants and payments: one migration (0007_payments) builds both.
from payflow.merchants.models import metadata

# `id` is also the ledger transfer's id: the posted payment (automatic capture) or the
# pending authorization (manual capture). `idempotency_key` is the payer's key, unique
# per payer for as long as the payment exists (the API's own key store forgets it later).
payments = Table(
    "payments",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("merchant_id", Uuid, nullable=False),
    Column("merchant_user_id", Uuid, nullable=False),
    Column("merchant_wallet_id", Uuid, nullable=False),
    Column("payer_user_id", Uuid, nullable=False),
    Column("payer_wallet_id", Uuid, nullable=False),
    Column("idempotency_key", String(255), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("capture_method", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("failure_reason", String(32), nullable=True),
    Column("authorized_amount", BigInteger, nullable=True),
    Column("captured_amount", BigInteger, nullable=False),
    Column("refunded_amount", BigInteger, nullable=False),
    Column("description", String(500), nullable=True),
    Column("metadata", JSON, nullable=True),
    Column("authorization_expires_at", BigInteger, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("succeeded_at", BigInteger, nullable=True),
    Column("failed_at", BigInteger, nullable=True),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("capture_method IN ('automatic', 'manual')", name="capture_method_known"),
    CheckConstraint("authorized_amount IS NULL OR authorized_amount = amount", name="authorized"),
    CheckConstraint("captured_amount >= 0 AND captured_amount <= amount", name="captured_bound"),
    CheckConstraint(
        "refunded_amount >= 0 AND refunded_amount <= captured_amount", name="refunded_bound"
    ),
    CheckConstraint(
        "(status = 'INITIATED' AND failure_reason IS NULL AND succeeded_at IS NULL"
        " AND failed_at IS NULL AND captured_amount = 0 AND authorized_amount IS NOT NULL)"
        " OR (status = 'SUCCEEDED' AND failure_reason IS NULL AND succeeded_at IS NOT NULL"
        " AND failed_at IS NULL AND captured_amount > 0)"
        " OR (status = 'FAILED' AND failure_reason IS NOT NULL AND succeeded_at IS NULL"
        " AND failed_at IS NOT NULL AND captured_amount = 0 AND refunded_amount = 0)",
        name="state_complete",
    ),
)
Index("payments_payer_key", payments.c.payer_user_id, payments.c.idempotency_key, unique=True)
Index(
    "payments_merchant_status",
    payments.c.merchant_id,
    payments.c.status,
    payments.c.created_at,
)
Index("payments_merchant", payments.c.merchant_id, payments.c.created_at)
Index("payments_payer", payments.c.payer_user_id, payments.c.created_at)
Index("payments_created", payments.c.created_at)
# The expiry sweep's scan: authorizations still INITIATED, oldest expiry first.
Index("payments_authorization_expiry", payments.c.status, payments.c.authorization_expires_at)

# One row per refund; `id` is its ledger transfer's id (merchant wallet → customer wallet).
refunds = Table(
    "payment_refunds",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("payment_id", Uuid, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("reason", String(32), nullable=True),
    Column("created_by", Uuid, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    CheckConstraint("amount > 0", name="amount_positive"),
)
Index("payment_refunds_payment", refunds.c.payment_id, refunds.c.created_at)
