"""Notifications: in-app inbox and queued e-mails.

Revision ID: 0004_notifications
Revises: 0003_events
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_notifications"
down_revision = "0003_events"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notifications_emails",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("to_address", sa.String(length=254), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.BigInteger(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("sent_at", sa.BigInteger(), nullable=True),
        sa.CheckConstraint("status IN ('queued', 'sent', 'failed')", name="email_status_known"),
        sa.CheckConstraint("attempts >= 0", name="email_attempts_not_negative"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("notifications_emails", schema=None) as batch_op:
        batch_op.create_index(
            "notifications_emails_due", ["status", "next_attempt_at"], unique=False
        )
        batch_op.create_index(
            "notifications_emails_user_event", ["user_id", "event_id"], unique=True
        )

    op.create_table(
        "notifications_inbox",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("body", sa.String(length=2000), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("read_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("notifications_inbox", schema=None) as batch_op:
        batch_op.create_index(
            "notifications_inbox_unread",
            ["user_id", "created_at"],
            unique=False,
            postgresql_where=sa.text("read_at IS NULL"),
            sqlite_where=sa.text("read_at IS NULL"),
        )
        batch_op.create_index(
            "notifications_inbox_user_created", ["user_id", "created_at", "id"], unique=False
        )
        batch_op.create_index(
            "notifications_inbox_user_event", ["user_id", "event_id"], unique=True
        )


def downgrade() -> None:
    with op.batch_alter_table("notifications_inbox", schema=None) as batch_op:
        batch_op.drop_index("notifications_inbox_user_event")
        batch_op.drop_index("notifications_inbox_user_created")
        batch_op.drop_index(
            "notifications_inbox_unread",
            postgresql_where=sa.text("read_at IS NULL"),
            sqlite_where=sa.text("read_at IS NULL"),
        )

    op.drop_table("notifications_inbox")
    with op.batch_alter_table("notifications_emails", schema=None) as batch_op:
        batch_op.drop_index("notifications_emails_user_event")
        batch_op.drop_index("notifications_emails_due")

    op.drop_table("notifications_emails")
