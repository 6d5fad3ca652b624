"""Settlement's tables. Constraints repeat domain.py's arithmetic as a second guard.

Settlement keeps its own record of what it may settle (`settlement_items`, built from
payments' events): a context never reads another's tables.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Uuid,
)

metadata = MetaData()

# One row per succeeded payment heard. `settlement_id` points at the one live settlement
# that pays it (null while unsettled, and again after that settlement failed): a single
# pointer, so a payment can never be in two live settlements.
items = Table(
    "settlement_items",
    metadata,
    Column("payment_id", Uuid, primary_key=True),
    Column("merchant_id", Uuid, nullable=False),
    Column("merchant_user_id", Uuid, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("refunded_amount", BigInteger, nullable=False),
    Column("succeeded_at", BigInteger, nullable=False),
    Column("settlement_id", Uuid, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("refunded_amount >= 0 AND refunded_amount <= amount", name="refunded_bound"),
)
# Serves the cycle (a merchant's unsettled items, oldest first), "which merchants have
# unsettled items", and releasing a failed settlement's items.
Index(
    "settlement_items_pending",
    items.c.settlement_id,
    items.c.merchant_id,
    items.c.succeeded_at,
)

# One row per refund heard: a refund counts once even if its event arrives twice, and a
# refund heard before its payment's success is still counted when the payment arrives.
refunds = Table(
    "settlement_refunds",
    metadata,
    Column("refund_id", Uuid, primary_key=True),
    Column("payment_id", Uuid, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    CheckConstraint("amount > 0", name="amount_positive"),
)
Index("settlement_refunds_payment", refunds.c.payment_id)

settlements = Table(
    "settlements",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("merchant_id", Uuid, nullable=False),
    Column("merchant_user_id", Uuid, nullable=False),
    Column("wallet_id", Uuid, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("period_start", BigInteger, nullable=False),
    Column("period_end", BigInteger, nullable=False),
    Column("line_count", Integer, nullable=False),
    Column("gross_amount", BigInteger, nullable=False),
    Column("refunded_amount", BigInteger, nullable=False),
    Column("fee_amount", BigInteger, nullable=False),
    Column("net_amount", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("failure_reason", String(64), nullable=True),
    Column("payout_id", Uuid, nullable=False, unique=True),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    CheckConstraint("line_count >= 1", name="has_lines"),
    CheckConstraint(
        "refunded_amount >= 0 AND fee_amount >= 0 AND net_amount > 0", name="amounts_bound"
    ),
    CheckConstraint(
        "net_amount = gross_amount - refunded_amount - fee_amount", name="net_is_the_rest"
    ),
    CheckConstraint("period_start <= period_end", name="period_ordered"),
    CheckConstraint("status IN ('processing', 'paid', 'failed')", name="status_known"),
)
Index("settlements_merchant", settlements.c.merchant_id, settlements.c.created_at)
Index("settlements_created", settlements.c.created_at)
Index("settlements_status", settlements.c.status, settlements.c.created_at)

lines = Table(
    "settlement_lines",
    metadata,
    Column("settlement_id", Uuid, nullable=False),
    Column("payment_id", Uuid, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("refunded_amount", BigInteger, nullable=False),
    Column("fee_amount", BigInteger, nullable=False),
    Column("net_amount", BigInteger, nullable=False),
    Column("succeeded_at", BigInteger, nullable=False),
    PrimaryKeyConstraint("settlement_id", "payment_id"),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint(
        "refunded_amount >= 0 AND fee_amount >= 0 AND net_amount >= 0", name="amounts_bound"
    ),
    CheckConstraint("net_amount = amount - refunded_amount - fee_amount", name="net_is_the_rest"),
)
# Which settlements a payment was in (a failed one and the one that paid it).
Index("settlement_lines_payment", lines.c.payment_id)

# When each merchant is next settled; the row is the lock two workers contend for.
schedules = Table(
    "settlement_schedules",
    metadata,
    Column("merchant_id", Uuid, primary_key=True),
    Column("next_run_at", BigInteger, nullable=False),
    Column("last_run_at", BigInteger, nullable=True),
    Column("updated_at", BigInteger, nullable=False),
)
Index("settlement_schedules_due", schedules.c.next_run_at)
