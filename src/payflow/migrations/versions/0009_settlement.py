"""Settlement: settleable payments, settlements and their lines, per-merchant schedules.

Revision ID: 0009_settlement
Revises: 0008_payouts
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_settlement"
down_revision = "0008_payouts"
branch_labels = None
depends_on = None


def _items() -> None:
    op.create_table(
        "settlement_items",
        sa.Column("payment_id", sa.Uuid(), nullable=False),
        sa.Column("merchant_id", sa.Uuid(), nullable=False),
        sa.Column("merchant_user_id", sa.Uuid(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("refunded_amount", sa.BigInteger(), nullable=False),
        sa.Column("succeeded_at", sa.BigInteger(), nullable=False),
        sa.Column("settlement_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.CheckConstraint(
            "refunded_amount >= 0 AND refunded_amount <= amount", name="refunded_bound"
        ),
        sa.PrimaryKeyConstraint("payment_id"),
    )
    with op.batch_alter_table("settlement_items", schema=None) as batch_op:
        batch_op.create_index(
            "settlement_items_pending",
            ["settlement_id", "merchant_id", "succeeded_at"],
            unique=False,
        )
    op.create_table(
        "settlement_refunds",
        sa.Column("refund_id", sa.Uuid(), nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.PrimaryKeyConstraint("refund_id"),
    )
    with op.batch_alter_table("settlement_refunds", schema=None) as batch_op:
        batch_op.create_index("settlement_refunds_payment", ["payment_id"], unique=False)


def _settlements() -> None:
    op.create_table(
        "settlements",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("merchant_id", sa.Uuid(), nullable=False),
        sa.Column("merchant_user_id", sa.Uuid(), nullable=False),
        sa.Column("wallet_id", sa.Uuid(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("period_start", sa.BigInteger(), nullable=False),
        sa.Column("period_end", sa.BigInteger(), nullable=False),
        sa.Column("line_count", sa.Integer(), nullable=False),
        sa.Column("gross_amount", sa.BigInteger(), nullable=False),
        sa.Column("refunded_amount", sa.BigInteger(), nullable=False),
        sa.Column("fee_amount", sa.BigInteger(), nullable=False),
        sa.Column("net_amount", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("failure_reason", sa.String(length=64), nullable=True),
        sa.Column("payout_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("line_count >= 1", name="has_lines"),
        sa.CheckConstraint(
            "refunded_amount >= 0 AND fee_amount >= 0 AND net_amount > 0", name="amounts_bound"
        ),
        sa.CheckConstraint(
            "net_amount = gross_amount - refunded_amount - fee_amount", name="net_is_the_rest"
        ),
        sa.CheckConstraint("period_start <= period_end", name="period_ordered"),
        sa.CheckConstraint("status IN ('processing', 'paid', 'failed')", name="status_known"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("payout_id"),
    )
    with op.batch_alter_table("settlements", schema=None) as batch_op:
        batch_op.create_index("settlements_merchant", ["merchant_id", "created_at"], unique=False)
        batch_op.create_index("settlements_created", ["created_at"], unique=False)
        batch_op.create_index("settlements_status", ["status", "created_at"], unique=False)
    op.create_table(
        "settlement_lines",
        sa.Column("settlement_id", sa.Uuid(), nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("refunded_amount", sa.BigInteger(), nullable=False),
        sa.Column("fee_amount", sa.BigInteger(), nullable=False),
        sa.Column("net_amount", sa.BigInteger(), nullable=False),
        sa.Column("succeeded_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.CheckConstraint(
            "refunded_amount >= 0 AND fee_amount >= 0 AND net_amount >= 0", name="amounts_bound"
        ),
        sa.CheckConstraint(
            "net_amount = amount - refunded_amount - fee_amount", name="net_is_the_rest"
        ),
        sa.PrimaryKeyConstraint("settlement_id", "payment_id"),
    )
    with op.batch_alter_table("settlement_lines", schema=None) as batch_op:
        batch_op.create_index("settlement_lines_payment", ["payment_id"], unique=False)


def upgrade() -> None:
    _items()
    _settlements()
    op.create_table(
        "settlement_schedules",
        sa.Column("merchant_id", sa.Uuid(), nullable=False),
        sa.Column("next_run_at", sa.BigInteger(), nullable=False),
        sa.Column("last_run_at", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("merchant_id"),
    )
    with op.batch_alter_table("settlement_schedules", schema=None) as batch_op:
        batch_op.create_index("settlement_schedules_due", ["next_run_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("settlement_schedules", schema=None) as batch_op:
        batch_op.drop_index("settlement_schedules_due")
    op.drop_table("settlement_schedules")
    with op.batch_alter_table("settlement_lines", schema=None) as batch_op:
        batch_op.drop_index("settlement_lines_payment")
    op.drop_table("settlement_lines")
    with op.batch_alter_table("settlements", schema=None) as batch_op:
        batch_op.drop_index("settlements_status")
        batch_op.drop_index("settlements_created")
        batch_op.drop_index("settlements_merchant")
    op.drop_table("settlements")
    with op.batch_alter_table("settlement_refunds", schema=None) as batch_op:
        batch_op.drop_index("settlement_refunds_payment")
    op.drop_table("settlement_refunds")
    with op.batch_alter_table("settlement_items", schema=None) as batch_op:
        batch_op.drop_index("settlement_items_pending")
    op.drop_table("settlement_items")
