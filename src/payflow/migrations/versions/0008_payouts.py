"""Payouts: the saga's state, its timeline and its calls to the bank.

Revision ID: 0008_payouts
Revises: 0007_payments
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_payouts"
down_revision = "0007_payments"
branch_labels = None
depends_on = None

STEPS_SQL = (
    "'TRANSACTION_INITIATED', 'DEBIT_SUCCESS', 'DEBIT_FAILED', 'CREDIT_DUE', "
    "'CREDIT_SUCCESS', 'CREDIT_FAILED', 'REFUND_REQUESTED', 'REFUND_COMPLETED', "
    "'TRANSACTION_COMPLETED', 'TRANSACTION_FAILED'"
)


def upgrade() -> None:
    op.create_table(
        "payouts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("wallet_id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("destination", sa.JSON(), nullable=False),
        sa.Column("description", sa.String(length=140), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=True),
        sa.Column("step", sa.String(length=24), nullable=False),
        sa.Column("failure_reason", sa.String(length=64), nullable=True),
        sa.Column("bank_transaction_id", sa.String(length=64), nullable=True),
        sa.Column("not_after", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.BigInteger(), nullable=True),
        sa.Column("inquire", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("credited_at", sa.BigInteger(), nullable=True),
        sa.Column("refunded_at", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.CheckConstraint(f"step IN ({STEPS_SQL})", name="step_known"),
        sa.CheckConstraint("source IN ('api', 'settlement')", name="source_known"),
        sa.CheckConstraint(
            "credited_at IS NULL OR refunded_at IS NULL", name="credited_or_refunded"
        ),
        sa.CheckConstraint(
            "step <> 'TRANSACTION_COMPLETED' OR credited_at IS NOT NULL",
            name="completed_credited",
        ),
        sa.CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("payouts", schema=None) as batch_op:
        batch_op.create_index("payouts_user", ["user_id", "created_at", "id"], unique=False)
        batch_op.create_index("payouts_due", ["step", "next_attempt_at"], unique=False)
        batch_op.create_index("payouts_open", ["step", "updated_at"], unique=False)
        batch_op.create_index("payouts_source", ["source", "source_id"], unique=True)

    op.create_table(
        "payout_steps",
        sa.Column("payout_id", sa.Uuid(), nullable=False),
        sa.Column("step", sa.String(length=24), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("detail", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["payout_id"], ["payouts.id"]),
        sa.PrimaryKeyConstraint("payout_id", "step"),
    )
    op.create_table(
        "payout_attempts",
        sa.Column("payout_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("operation", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("finished_at", sa.BigInteger(), nullable=False),
        sa.Column("outcome", sa.String(length=24), nullable=False),
        sa.Column("detail", sa.String(length=200), nullable=True),
        sa.CheckConstraint("operation IN ('credit', 'inquiry')", name="operation_known"),
        sa.ForeignKeyConstraint(["payout_id"], ["payouts.id"]),
        sa.PrimaryKeyConstraint("payout_id", "number"),
    )


def downgrade() -> None:
    op.drop_table("payout_attempts")
    op.drop_table("payout_steps")
    with op.batch_alter_table("payouts", schema=None) as batch_op:
        batch_op.drop_index("payouts_source")
        batch_op.drop_index("payouts_open")
        batch_op.drop_index("payouts_due")
        batch_op.drop_index("payouts_user")
    op.drop_table("payouts")
