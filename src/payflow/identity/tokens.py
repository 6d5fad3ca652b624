"""Access tokens (JWT, HS256, named key `kid`), refresh tokens and API key secrets.

Signing keys live in the database so every API process signs and verifies with the same
keys, and `payflow signing-keys rotate` can add a new one while tokens signed by the old
one keep working until they expire.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass, field

import jwt
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from payflow.db import lock_name, read
from payflow.errors import PayFlowError
from payflow.identity import models
from payflow.identity.domain import Principal, Role
from payflow.timestamps import now_ns

ISSUER = "payflow"
ALGORITHM = "HS256"
# Unknown `kid`s trigger a reload at most this often, so forged kids cannot hammer the db.
KEYS_RELOAD_INTERVAL_S = 1.0


def secret_hash(secret: str) -> str:
    """SHA-256 of a high-entropy secret. (Passwords use argon2id; these do not need it:
    they are 256 random bits, not guessable words.)
    """
    return hashlib.sha256(secret.encode()).hexdigest()


def secrets_equal(secret: str, expected_hash: str) -> bool:
    return hmac.compare_digest(secret_hash(secret), expected_hash)


@dataclass(frozen=True, slots=True)
class IssuedSecret:
    """`token` is shown once to the client; only `hash` is stored."""

    id: uuid.UUID
    token: str
    hash: str


def issue_secret(prefix: str, id_: uuid.UUID) -> IssuedSecret:
    """`<prefix>_<id hex>_<secret>`: the id finds the row, the secret proves possession."""
    secret = secrets.token_urlsafe(32)
    return IssuedSecret(id=id_, token=f"{prefix}_{id_.hex}_{secret}", hash=secret_hash(secret))


def parse_secret(prefix: str, token: str) -> tuple[uuid.UUID, str] | None:
    """The (id, secret) inside a token made by `issue_secret`, or None if malformed."""
    parts = token.split("_")
    if len(token) > 200 or len(parts) < 3 or parts[0] != prefix:
        return None
    try:
        return uuid.UUID(hex=parts[1]), "_".join(parts[2:])
    except ValueError:
        return None


@dataclass
class SigningKeys:
    """This process's copy of the signing keys."""

    secrets_by_kid: dict[str, str] = field(default_factory=dict)
    active_kid: str | None = None
    loaded_at: float = 0.0

    async def load(self, engine: AsyncEngine) -> None:
        async with read(engine) as conn:
            rows = (
                await conn.execute(
                    select(models.signing_keys).order_by(
                        models.signing_keys.c.created_at, models.signing_keys.c.kid
                    )
                )
            ).all()
        self.secrets_by_kid = {row.kid: row.secret for row in rows}
        active = [row.kid for row in rows if row.retired_at is None]
        self.active_kid = active[-1] if active else None
        self.loaded_at = time.monotonic()

    def needs_reload(self) -> bool:
        return time.monotonic() - self.loaded_at >= KEYS_RELOAD_INTERVAL_S


async def create_signing_key(conn: AsyncConnection) -> str:
    """Add a new signing key; it becomes the active one. Returns its kid."""
    kid = uuid.uuid4().hex[:16]
    await conn.execute(
        insert(models.signing_keys).values(
            kid=kid, secret=secrets.token_urlsafe(48), created_at=now_ns()
        )
    )
    return kid


async def ensure_signing_key(engine: AsyncEngine) -> None:
    """Create the first signing key if there is none (first start of a new database).

    API processes starting together take turns: each creating a key of its own, each
    would sign with a key the others might not have loaded."""
    async with engine.begin() as conn:
        await lock_name(conn, "signing-keys")
        existing = await conn.scalar(select(models.signing_keys.c.kid).limit(1))
        if existing is None:
            await create_signing_key(conn)


def encode_access_token(keys: SigningKeys, principal: Principal, *, ttl_s: int) -> str:
    assert keys.active_kid is not None, "signing keys not loaded"
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": str(principal.user_id),
        "role": principal.role.value,
        "iat": now,
        "exp": now + ttl_s,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(
        claims,
        keys.secrets_by_kid[keys.active_kid],
        algorithm=ALGORITHM,
        headers={"kid": keys.active_kid},
    )


def _unauthorized(message: str) -> PayFlowError:
    return PayFlowError("invalid_token", message, http_status=401)


# Verified tokens, so a client's next requests with the same token skip the signature
# check (a tenth of a transfer request's CPU): token → (principal, expiry in Unix seconds).
# Bounded; cleared whole when full. Only tokens that verified are kept.
_VERIFIED_MAX = 50_000
_verified: dict[str, tuple[Principal, int]] = {}


async def decode_access_token(keys: SigningKeys, engine: AsyncEngine, token: str) -> Principal:
    """The principal an access token names; 401 `invalid_token` for anything wrong."""
    known = _verified.get(token)
    if known is not None:
        if time.time() < known[1]:
            return known[0]
        del _verified[token]
    principal, expires_at = await _verify(keys, engine, token)
    if len(_verified) >= _VERIFIED_MAX:
        _verified.clear()
    _verified[token] = (principal, expires_at)
    return principal


async def _verify(keys: SigningKeys, engine: AsyncEngine, token: str) -> tuple[Principal, int]:
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError:
        raise _unauthorized("the access token is malformed") from None
    if not isinstance(kid, str):
        raise _unauthorized("the access token names no key")
    if kid not in keys.secrets_by_kid and keys.needs_reload():
        await keys.load(engine)
    secret = keys.secrets_by_kid.get(kid)
    if secret is None:
        raise _unauthorized("the access token's key is unknown")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "iss"]},
        )
        principal = Principal(user_id=uuid.UUID(claims["sub"]), role=Role(claims["role"]))
        return principal, int(claims["exp"])
    except jwt.ExpiredSignatureError:
        raise PayFlowError(
            "token_expired", "the access token has expired", http_status=401
        ) from None
    except (jwt.PyJWTError, ValueError, KeyError):
        raise _unauthorized("the access token is invalid") from None
