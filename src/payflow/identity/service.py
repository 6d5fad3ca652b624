"""Identity's use cases. Each takes the caller's connection and never commits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.errors import PayFlowError
from payflow.events.outbox import emit
from payflow.identity import models, tokens
from payflow.identity.domain import (
    Role,
    User,
    check_email,
    check_handle,
    check_name,
    is_email,
    normalize_email,
)
from payflow.identity.events import user_registered
from payflow.identity.passwords import verify_password
from payflow.ids import uuid7
from payflow.timestamps import now_ns

REFRESH_PREFIX = "rt"
API_KEY_PREFIX = "pfk"
API_KEYS_PER_USER_MAX = 20


def _user(row: object) -> User:
    return User(
        id=row.id,  # type: ignore[attr-defined]
        email=row.email,  # type: ignore[attr-defined]
        name=row.name,  # type: ignore[attr-defined]
        handle=row.handle,  # type: ignore[attr-defined]
        role=Role(row.role),  # type: ignore[attr-defined]
        disabled=bool(row.disabled),  # type: ignore[attr-defined]
        created_at=row.created_at,  # type: ignore[attr-defined]
    )


async def create_user(
    conn: AsyncConnection, *, email: str, password_hash: str, name: str, handle: str, role: Role
) -> User:
    """A new user; 409 `email_taken` / `handle_taken` if either is in use."""
    email = normalize_email(email)
    check_email(email)
    check_handle(handle)
    check_name(name)
    table = models.users
    await _check_unclaimed(conn, email=email, handle=handle)
    user = User(
        id=uuid7(),
        email=email,
        name=name,
        handle=handle,
        role=role,
        disabled=False,
        created_at=now_ns(),
    )
    try:
        async with conn.begin_nested():
            await conn.execute(
                insert(table).values(
                    id=user.id,
                    email=email,
                    name=name,
                    handle=handle,
                    role=role.value,
                    password_hash=password_hash,
                    disabled=False,
                    created_at=user.created_at,
                )
            )
        await emit(conn, [user_registered(user)])
    except IntegrityError:
        # A concurrent registration took the e-mail or handle between check and insert;
        # it has committed (the unique index waited for it), so the check now names which.
        await _check_unclaimed(conn, email=email, handle=handle)
        raise PayFlowError(
            "email_or_handle_taken", "that e-mail or handle was just taken", http_status=409
        ) from None
    return user


async def _check_unclaimed(conn: AsyncConnection, *, email: str, handle: str) -> None:
    """409 `email_taken` or `handle_taken` if a user already has either."""
    table = models.users
    clash = (
        await conn.execute(
            select(table.c.email, table.c.handle).where(
                or_(table.c.email == email, table.c.handle == handle)
            )
        )
    ).first()
    if clash is None:
        return
    if clash.email == email:
        raise PayFlowError("email_taken", "that e-mail is already registered", http_status=409)
    raise PayFlowError("handle_taken", f"the handle {handle!r} is taken", http_status=409)


async def get_user(conn: AsyncConnection, user_id: uuid.UUID) -> User | None:
    row = (await conn.execute(select(models.users).where(models.users.c.id == user_id))).first()
    return _user(row) if row is not None else None


async def get_users(conn: AsyncConnection, user_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, User]:
    """The users among `user_ids` (one query), by id; unknown ids are left out."""
    if not user_ids:
        return {}
    table = models.users
    rows = (await conn.execute(select(table).where(table.c.id.in_(set(user_ids))))).all()
    return {row.id: _user(row) for row in rows}


@dataclass(frozen=True, slots=True)
class LoginCandidate:
    user: User
    password_hash: str


async def login_candidate(conn: AsyncConnection, *, email: str) -> LoginCandidate | None:
    """The user an e-mail names, with the hash to check a password against."""
    email = normalize_email(email)
    # Not an address (NUL and other control characters among them) cannot be anybody's,
    # and PostgreSQL would refuse the query.
    if not is_email(email):
        return None
    row = (await conn.execute(select(models.users).where(models.users.c.email == email))).first()
    return LoginCandidate(_user(row), row.password_hash) if row is not None else None


async def check_password(candidate: LoginCandidate | None, password: str) -> User | None:
    """The user if the password matches and the user is enabled; else None, after the same
    time (no candidate still costs one argon2id verification). Needs no connection: the
    slow hash never holds one."""
    matched = await verify_password(candidate.password_hash if candidate else None, password)
    if candidate is None or not matched or candidate.user.disabled:
        return None
    return candidate.user


@dataclass(frozen=True, slots=True)
class RefreshToken:
    token: str
    family_id: uuid.UUID
    expires_at: int


async def issue_refresh_token(
    conn: AsyncConnection, *, user_id: uuid.UUID, ttl_s: int, family_id: uuid.UUID | None = None
) -> RefreshToken:
    issued = tokens.issue_secret(REFRESH_PREFIX, uuid7())
    now = now_ns()
    family_id = family_id or issued.id
    expires_at = now + ttl_s * 1_000_000_000
    await conn.execute(
        insert(models.refresh_tokens).values(
            id=issued.id,
            family_id=family_id,
            user_id=user_id,
            secret_hash=issued.hash,
            created_at=now,
            expires_at=expires_at,
        )
    )
    return RefreshToken(token=issued.token, family_id=family_id, expires_at=expires_at)


@dataclass(frozen=True, slots=True)
class Rotation:
    """The outcome of presenting a refresh token: a new one, or the reason it failed."""

    user: User | None
    token: RefreshToken | None
    error: PayFlowError | None


def _invalid_refresh() -> PayFlowError:
    return PayFlowError(
        "invalid_refresh_token", "the refresh token is invalid or expired", http_status=401
    )


async def _revoke_family(conn: AsyncConnection, family_id: uuid.UUID) -> None:
    table = models.refresh_tokens
    await conn.execute(
        update(table)
        .where(table.c.family_id == family_id, table.c.revoked_at.is_(None))
        .values(revoked_at=now_ns())
    )


async def rotate_refresh_token(conn: AsyncConnection, token: str, *, ttl_s: int) -> Rotation:
    """Spend `token` and issue its successor in the same family.

    Presenting an already spent token means it leaked (or a client raced itself): the
    whole family is revoked and the error returned, so the caller must commit either way.
    """
    parsed = tokens.parse_secret(REFRESH_PREFIX, token)
    if parsed is None:
        return Rotation(None, None, _invalid_refresh())
    token_id, secret = parsed
    table = models.refresh_tokens
    query = select(table).where(table.c.id == token_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    if row is None or not tokens.secrets_equal(secret, row.secret_hash):
        return Rotation(None, None, _invalid_refresh())
    if row.spent_at is not None and row.revoked_at is None:
        await _revoke_family(conn, row.family_id)
        return Rotation(
            None,
            None,
            PayFlowError(
                "refresh_token_reused",
                "this refresh token was already used; every token of its login is revoked",
                http_status=401,
            ),
        )
    user = await get_user(conn, row.user_id)
    if row.revoked_at is not None or row.expires_at <= now_ns() or user is None or user.disabled:
        return Rotation(None, None, _invalid_refresh())
    await conn.execute(update(table).where(table.c.id == token_id).values(spent_at=now_ns()))
    successor = await issue_refresh_token(
        conn, user_id=row.user_id, ttl_s=ttl_s, family_id=row.family_id
    )
    return Rotation(user, successor, None)


async def revoke_refresh_token(conn: AsyncConnection, token: str) -> bool:
    """Log out: revoke the token's whole family. False if the token is not ours."""
    parsed = tokens.parse_secret(REFRESH_PREFIX, token)
    if parsed is None:
        return False
    row = (
        await conn.execute(
            select(models.refresh_tokens).where(models.refresh_tokens.c.id == parsed[0])
        )
    ).first()
    if row is None or not tokens.secrets_equal(parsed[1], row.secret_hash):
        return False
    await _revoke_family(conn, row.family_id)
    return True


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: uuid.UUID
    name: str
    prefix: str
    created_at: int
    revoked_at: int | None


def _api_key(row: object) -> ApiKey:
    return ApiKey(
        id=row.id,  # type: ignore[attr-defined]
        name=row.name,  # type: ignore[attr-defined]
        prefix=row.prefix,  # type: ignore[attr-defined]
        created_at=row.created_at,  # type: ignore[attr-defined]
        revoked_at=row.revoked_at,  # type: ignore[attr-defined]
    )


async def create_api_key(
    conn: AsyncConnection, *, user_id: uuid.UUID, name: str
) -> tuple[ApiKey, str]:
    """A new API key and its secret token, which is never shown again."""
    check_name(name, what="key name")
    table = models.api_keys
    if conn.dialect.name == "postgresql":
        # Concurrent creations for one user queue here, so none counts past the limit.
        # (SQLite's writers are serialized by BEGIN IMMEDIATE already.)
        users = models.users
        await conn.execute(select(users.c.id).where(users.c.id == user_id).with_for_update())
    active = await conn.scalar(
        select(func.count())
        .select_from(table)
        .where(table.c.user_id == user_id, table.c.revoked_at.is_(None))
    )
    if (active or 0) >= API_KEYS_PER_USER_MAX:
        raise PayFlowError(
            "api_key_limit",
            f"at most {API_KEYS_PER_USER_MAX} active API keys; revoke one first",
            http_status=409,
        )
    issued = tokens.issue_secret(API_KEY_PREFIX, uuid7())
    key = ApiKey(
        id=issued.id, name=name, prefix=issued.token[:12], created_at=now_ns(), revoked_at=None
    )
    await conn.execute(
        insert(table).values(
            id=key.id,
            user_id=user_id,
            name=name,
            prefix=key.prefix,
            secret_hash=issued.hash,
            created_at=key.created_at,
        )
    )
    return key, issued.token


async def list_api_keys(conn: AsyncConnection, *, user_id: uuid.UUID) -> list[ApiKey]:
    table = models.api_keys
    rows = await conn.execute(
        select(table).where(table.c.user_id == user_id).order_by(table.c.created_at.desc())
    )
    return [_api_key(row) for row in rows]


async def revoke_api_key(conn: AsyncConnection, *, user_id: uuid.UUID, key_id: uuid.UUID) -> ApiKey:
    """Revoke one of the user's keys (idempotent); 404 if it is not theirs."""
    table = models.api_keys
    row = (
        await conn.execute(select(table).where(table.c.id == key_id, table.c.user_id == user_id))
    ).first()
    if row is None:
        raise PayFlowError("api_key_not_found", "no such API key", http_status=404)
    if row.revoked_at is None:
        await conn.execute(update(table).where(table.c.id == key_id).values(revoked_at=now_ns()))
    return _api_key((await conn.execute(select(table).where(table.c.id == key_id))).one())


async def authenticate_api_key(conn: AsyncConnection, token: str) -> User | None:
    """The merchant an API key belongs to, if the key is valid and not revoked."""
    parsed = tokens.parse_secret(API_KEY_PREFIX, token)
    if parsed is None:
        return None
    table = models.api_keys
    row = (await conn.execute(select(table).where(table.c.id == parsed[0]))).first()
    if row is None or row.revoked_at is not None:
        return None
    if not tokens.secrets_equal(parsed[1], row.secret_hash):
        return None
    user = await get_user(conn, row.user_id)
    if user is None or user.disabled or user.role is not Role.MERCHANT:
        return None
    return user
