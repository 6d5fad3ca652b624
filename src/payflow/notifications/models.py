"""Notifications' tables: each user's inbox, and the e-mails waiting for the mailer."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    Uuid,
)

metadata = MetaData()

# One row per (user, event): `id` is derived from both, so a consumer retry inserts the
# same row and the unique index keeps it single. `created_at` is when the event happened.
inbox = Table(
    "notifications_inbox",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("user_id", Uuid, nullable=False),
    Column("event_id", Uuid, nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("title", String(200), nullable=False),
    Column("body", String(2000), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("read_at", BigInteger, nullable=True),
)
Index("notifications_inbox_user_event", inbox.c.user_id, inbox.c.event_id, unique=True)
# A user's inbox, newest first (the API's keyset pages over (created_at, id)).
Index("notifications_inbox_user_created", inbox.c.user_id, inbox.c.created_at, inbox.c.id)
# Unread counts and "unread only" pages touch only the unread rows.
Index(
    "notifications_inbox_unread",
    inbox.c.user_id,
    inbox.c.created_at,
    postgresql_where=inbox.c.read_at.is_(None),
    sqlite_where=inbox.c.read_at.is_(None),
)

# E-mails queued by the consumer and sent by the mailer, outside any transaction.
# `next_attempt_at` is when a queued e-mail is due; a mailer that claims one pushes it
# forward (a lease), so other mailers leave it alone while it is being sent.
emails = Table(
    "notifications_emails",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("user_id", Uuid, nullable=False),
    Column("event_id", Uuid, nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("to_address", String(254), nullable=False),
    Column("subject", String(200), nullable=False),
    Column("body", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", BigInteger, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("sent_at", BigInteger, nullable=True),
    CheckConstraint("status IN ('queued', 'sent', 'failed')", name="email_status_known"),
    CheckConstraint("attempts >= 0", name="email_attempts_not_negative"),
)
Index("notifications_emails_user_event", emails.c.user_id, emails.c.event_id, unique=True)
Index("notifications_emails_due", emails.c.status, emails.c.next_attempt_at)
