"""Events: the outbox (and embedded event log), consumers' records, dead letters, leases.

Revision ID: 0003_events
Revises: 0002_api
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_events"
down_revision = "0002_api"
branch_labels = None
depends_on = None


def _txid_default() -> sa.TextClause:
    # The writing transaction's id on PostgreSQL, for the event feed's commit-order
    # frontier; SQLite's single writer commits in sequence order and needs none.
    if op.get_bind().dialect.name == "postgresql":
        return sa.text("(pg_current_xact_id()::text::bigint)")
    return sa.text("0")


def upgrade() -> None:
    op.create_table(
        "events_dead_letters",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("consumer", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("parked_at", sa.BigInteger(), nullable=False),
        sa.Column("replay_requested_at", sa.BigInteger(), nullable=True),
        sa.Column("resolved_at", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "status IN ('parked', 'replaying', 'replayed')", name="dead_letter_status_known"
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("events_dead_letters", schema=None) as batch_op:
        batch_op.create_index(
            "events_dead_letters_consumer_event", ["consumer", "event_id"], unique=True
        )
        batch_op.create_index("events_dead_letters_status", ["status", "id"], unique=False)

    op.create_table(
        "events_leases",
        sa.Column("name", sa.String(length=96), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "events_offsets",
        sa.Column("consumer", sa.String(length=64), nullable=False),
        sa.Column("txid", sa.BigInteger(), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("consumer"),
    )
    op.create_table(
        "events_outbox",
        sa.Column("sequence", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("txid", sa.BigInteger(), server_default=_txid_default(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("version", sa.SmallInteger(), nullable=False),
        sa.Column("aggregate_type", sa.String(length=64), nullable=False),
        sa.Column("aggregate_id", sa.String(length=64), nullable=False),
        sa.Column("partition", sa.SmallInteger(), nullable=False),
        sa.Column("occurred_at", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("published_at", sa.BigInteger(), nullable=True),
        sa.CheckConstraint("version >= 1", name="version_positive"),
        sa.PrimaryKeyConstraint("sequence"),
        sa.UniqueConstraint("id"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("events_outbox", schema=None) as batch_op:
        batch_op.create_index("events_outbox_feed", ["txid", "sequence"], unique=False)
        batch_op.create_index("events_outbox_occurred", ["occurred_at"], unique=False)
        batch_op.create_index(
            "events_outbox_unpublished",
            ["partition", "sequence"],
            unique=False,
            postgresql_where=sa.text("published_at IS NULL"),
            sqlite_where=sa.text("published_at IS NULL"),
        )

    op.create_table(
        "events_processed",
        sa.Column("consumer", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("processed_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_id", name="events_processed_pkey"),
    )
    with op.batch_alter_table("events_processed", schema=None) as batch_op:
        batch_op.create_index("events_processed_at", ["processed_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("events_processed", schema=None) as batch_op:
        batch_op.drop_index("events_processed_at")

    op.drop_table("events_processed")
    with op.batch_alter_table("events_outbox", schema=None) as batch_op:
        batch_op.drop_index(
            "events_outbox_unpublished",
            postgresql_where=sa.text("published_at IS NULL"),
            sqlite_where=sa.text("published_at IS NULL"),
        )
        batch_op.drop_index("events_outbox_occurred")
        batch_op.drop_index("events_outbox_feed")

    op.drop_table("events_outbox")
    op.drop_table("events_offsets")
    op.drop_table("events_leases")
    with op.batch_alter_table("events_dead_letters", schema=None) as batch_op:
        batch_op.drop_index("events_dead_letters_status")
        batch_op.drop_index("events_dead_letters_consumer_event")

    op.drop_table("events_dead_letters")
