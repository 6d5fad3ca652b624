"""Payments: merchants, merchant payments and their refunds.

Revision ID: 0007_payments
Revises: 0006_webhooks
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_payments"
down_revision = "0006_webhooks"
branch_labels = None
depends_on = None


def _merchants() -> None:
    op.create_table(
        "merchants",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("wallet_id", sa.Uuid(), nullable=False),
        sa.Column("business_name", sa.String(length=100), nullable=False),
        sa.Column("settlement_currency", sa.String(length=3), nullable=False),
        sa.Column("bank_code", sa.String(length=11), nullable=True),
        sa.Column("account_number", sa.String(length=18), nullable=True),
        sa.Column("vpa", sa.String(length=100), nullable=True),
        sa.Column("settlement_interval_s", sa.Integer(), nullable=False),
        sa.Column("fee_bps", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "(bank_code IS NOT NULL AND account_number IS NOT NULL AND vpa IS NULL)"
            " OR (bank_code IS NULL AND account_number IS NULL AND vpa IS NOT NULL)",
            name="one_destination",
        ),
        sa.CheckConstraint(
            "settlement_interval_s >= 60 AND settlement_interval_s <= 2592000",
            name="interval_in_range",
        ),
        sa.CheckConstraint("fee_bps >= 0 AND fee_bps <= 10000", name="fee_in_range"),
        sa.CheckConstraint("status IN ('active', 'suspended')", name="status_known"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_id"),
    )
    with op.batch_alter_table("merchants", schema=None) as batch_op:
        batch_op.create_index("merchants_created", ["created_at"], unique=False)


def _payments() -> None:
    op.create_table(
        "payments",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("merchant_id", sa.Uuid(), nullable=False),
        sa.Column("merchant_user_id", sa.Uuid(), nullable=False),
        sa.Column("merchant_wallet_id", sa.Uuid(), nullable=False),
        sa.Column("payer_user_id", sa.Uuid(), nullable=False),
        sa.Column("payer_wallet_id", sa.Uuid(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("capture_method", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("failure_reason", sa.String(length=32), nullable=True),
        sa.Column("authorized_amount", sa.BigInteger(), nullable=True),
        sa.Column("captured_amount", sa.BigInteger(), nullable=False),
        sa.Column("refunded_amount", sa.BigInteger(), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("authorization_expires_at", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("succeeded_at", sa.BigInteger(), nullable=True),
        sa.Column("failed_at", sa.BigInteger(), nullable=True),
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.CheckConstraint(
            "capture_method IN ('automatic', 'manual')", name="capture_method_known"
        ),
        sa.CheckConstraint(
            "authorized_amount IS NULL OR authorized_amount = amount", name="authorized"
        ),
        sa.CheckConstraint(
            "captured_amount >= 0 AND captured_amount <= amount", name="captured_bound"
        ),
        sa.CheckConstraint(
            "refunded_amount >= 0 AND refunded_amount <= captured_amount", name="refunded_bound"
        ),
        sa.CheckConstraint(
            "(status = 'INITIATED' AND failure_reason IS NULL AND succeeded_at IS NULL"
            " AND failed_at IS NULL AND captured_amount = 0 AND authorized_amount IS NOT NULL)"
            " OR (status = 'SUCCEEDED' AND failure_reason IS NULL AND succeeded_at IS NOT NULL"
            " AND failed_at IS NULL AND captured_amount > 0)"
            " OR (status = 'FAILED' AND failure_reason IS NOT NULL AND succeeded_at IS NULL"
            " AND failed_at IS NOT NULL AND captured_amount = 0 AND refunded_amount = 0)",
            name="state_complete",
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.create_index(
            "payments_payer_key", ["payer_user_id", "idempotency_key"], unique=True
        )
        batch_op.create_index(
            "payments_merchant_status", ["merchant_id", "status", "created_at"], unique=False
        )
        batch_op.create_index("payments_merchant", ["merchant_id", "created_at"], unique=False)
        batch_op.create_index("payments_payer", ["payer_user_id", "created_at"], unique=False)
        batch_op.create_index("payments_created", ["created_at"], unique=False)
        batch_op.create_index(
            "payments_authorization_expiry",
            ["status", "authorization_expires_at"],
            unique=False,
        )


def _refunds() -> None:
    op.create_table(
        "payment_refunds",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("created_by", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("payment_refunds", schema=None) as batch_op:
        batch_op.create_index("payment_refunds_payment", ["payment_id", "created_at"], unique=False)


def upgrade() -> None:
    _merchants()
    _payments()
    _refunds()


def downgrade() -> None:
    with op.batch_alter_table("payment_refunds", schema=None) as batch_op:
        batch_op.drop_index("payment_refunds_payment")
    op.drop_table("payment_refunds")
    with op.batch_alter_table("payments", schema=None) as batch_op:
        for name in (
            "payments_authorization_expiry",
            "payments_created",
            "payments_payer",
            "payments_merchant",
            "payments_merchant_status",
            "payments_payer_key",
        ):
            batch_op.drop_index(name)
    op.drop_table("payments")
    with op.batch_alter_table("merchants", schema=None) as batch_op:
        batch_op.drop_index("merchants_created")
    op.drop_table("merchants")
