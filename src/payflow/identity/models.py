"""Identity's tables. Secrets are stored only as hashes."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Index,
    MetaData,
    String,
    Table,
    Uuid,
)

metadata = MetaData()

users = Table(
    "identity_users",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("email", String(254), nullable=False, unique=True),
    Column("name", String(100), nullable=False),
    Column("handle", String(32), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("password_hash", String(200), nullable=False),
    Column("disabled", Boolean, nullable=False, server_default="0"),
    Column("created_at", BigInteger, nullable=False),
    CheckConstraint("role IN ('customer', 'merchant', 'operator')", name="role_known"),
)

# One row per refresh token ever issued. A family is one login's chain of rotations:
# presenting a spent token revokes the family (RFC 9700 §4.14.2, refresh token reuse).
refresh_tokens = Table(
    "identity_refresh_tokens",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("family_id", Uuid, nullable=False),
    Column("user_id", Uuid, nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("spent_at", BigInteger, nullable=True),
    Column("revoked_at", BigInteger, nullable=True),
    Index("identity_refresh_tokens_family", "family_id"),
)

api_keys = Table(
    "identity_api_keys",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("user_id", Uuid, nullable=False),
    Column("name", String(100), nullable=False),
    # The first characters of the key, to tell keys apart in lists; never enough to use.
    Column("prefix", String(16), nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger, nullable=True),
    Index("identity_api_keys_user", "user_id"),
)

# Keys that sign access tokens. Tokens name their key (`kid`), so a new key can start
# signing while tokens signed by the old one stay valid until they expire.
signing_keys = Table(
    "identity_signing_keys",
    metadata,
    Column("kid", String(32), primary_key=True),
    Column("secret", String(128), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("retired_at", BigInteger, nullable=True),
)
