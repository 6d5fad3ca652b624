"""HTTP routes for identity: register, login, refresh, logout, me, API keys."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from payflow.api.deps import Caller, Conn, State, remember_rate_limit
from payflow.api.problems import responses
from payflow.api.ratelimit import Policy
from payflow.api.schemas import parse_id
from payflow.api.state import AppState
from payflow.db import read
from payflow.errors import PayFlowError
from payflow.identity import service
from payflow.identity.domain import Principal, Role, normalize_email
from payflow.identity.passwords import hash_password
from payflow.identity.schemas import (
    ApiKeyBody,
    ApiKeyCreated,
    ApiKeyOut,
    LoginBody,
    RefreshBody,
    RegisterBody,
    TokenPair,
    UserOut,
)
from payflow.identity.service import ApiKey
from payflow.identity.tokens import encode_access_token
from payflow.ids import format_public_id
from payflow.timestamps import to_rfc3339
from payflow.wallets.service import open_wallet

router = APIRouter(prefix="/v1", tags=["identity"], responses=responses(429))
# A JSON body: malformed (400), too large (413) or invalid (422).
_BODY = (400, 413, 422)


async def _limit_by_address(request: Request, state: AppState) -> None:
    """Unauthenticated routes are limited per client address."""
    settings = state.settings
    policy = Policy("auth", settings.rate_limit_auth_requests, settings.rate_limit_window_s)
    client = request.client.host if request.client else "unknown"
    route = getattr(request.scope.get("route"), "path", request.url.path)
    remember_rate_limit(request, await state.limiter.hit(f"ip:{client}:{route}", policy))


def _login_policy(state: AppState) -> Policy:
    settings = state.settings
    return Policy("login-failures", settings.login_failures_max, settings.login_lockout_s)


async def _token_pair(state: AppState, principal: Principal, refresh: str) -> TokenPair:
    ttl_s = state.settings.access_token_ttl_s
    if state.keys.active_kid is None:
        await state.keys.load(state.engine)
    return TokenPair(
        access_token=encode_access_token(state.keys, principal, ttl_s=ttl_s),
        refresh_token=refresh,
        expires_in=ttl_s,
    )


@router.post("/auth/register", status_code=201, responses=responses(*_BODY, 409))
async def register(body: RegisterBody, request: Request, state: State) -> UserOut:
    """Create a customer (or merchant) account and its wallet in the default currency."""
    await _limit_by_address(request, state)
    # argon2id takes tens of milliseconds by design: hash before the transaction, so no
    # lock (SQLite's one write lock) is held while it runs.
    password_hash = await hash_password(body.password)
    async with state.engine.begin() as conn:
        user = await service.create_user(
            conn,
            email=body.email,
            password_hash=password_hash,
            name=body.name,
            handle=body.handle,
            role=Role(body.role),
        )
        await open_wallet(
            conn, user_id=user.id, handle=user.handle, currency=state.settings.default_currency
        )
    return UserOut.of(user)


@router.post("/auth/login", responses=responses(*_BODY, 401))
async def login(body: LoginBody, request: Request, state: State) -> TokenPair:
    """Exchange e-mail and password for an access token and a refresh token.

    After `login_failures_max` failures for one e-mail, it is locked out (429) for
    `login_lockout_s`, however right the next password is.
    """
    await _limit_by_address(request, state)
    policy = _login_policy(state)
    lock_key = f"login:{normalize_email(body.email)}"
    # Every attempt is counted before the password is checked, and a success forgets the
    # count: counting only after a failure would let concurrent guesses all pass the check.
    attempt = await state.limiter.hit(lock_key, policy)
    if not attempt.allowed:
        request.state.rate_limit_headers = attempt.headers()
        raise PayFlowError(
            "login_locked",
            f"too many failed logins for this e-mail; retry in {attempt.reset_s} s",
            http_status=429,
        )
    async with read(state.engine) as conn:
        candidate = await service.login_candidate(conn, email=body.email)
    user = await service.check_password(candidate, body.password)
    if user is None:
        raise PayFlowError("invalid_credentials", "wrong e-mail or password", http_status=401)
    await state.limiter.reset(lock_key, policy)
    async with state.engine.begin() as tx:
        refresh = await service.issue_refresh_token(
            tx, user_id=user.id, ttl_s=state.settings.refresh_token_ttl_s
        )
    return await _token_pair(state, Principal(user.id, user.role), refresh.token)


@router.post("/auth/refresh", responses=responses(*_BODY, 401))
async def refresh(body: RefreshBody, request: Request, state: State) -> TokenPair:
    """A new token pair; the refresh token presented is spent. Presenting a spent one
    again revokes every token of that login (reuse detection)."""
    await _limit_by_address(request, state)
    async with state.engine.begin() as tx:
        rotation = await service.rotate_refresh_token(
            tx, body.refresh_token, ttl_s=state.settings.refresh_token_ttl_s
        )
    if rotation.error is not None:
        raise rotation.error
    assert rotation.user is not None and rotation.token is not None
    principal = Principal(rotation.user.id, rotation.user.role)
    return await _token_pair(state, principal, rotation.token.token)


@router.post(
    "/auth/logout", status_code=204, response_class=Response, responses=responses(*_BODY, 401)
)
async def logout(body: RefreshBody, request: Request, state: State) -> Response:
    """Revoke the refresh token and every token rotated from the same login."""
    await _limit_by_address(request, state)
    async with state.engine.begin() as conn:
        if not await service.revoke_refresh_token(conn, body.refresh_token):
            raise PayFlowError(
                "invalid_refresh_token", "the refresh token is invalid", http_status=401
            )
    return Response(status_code=204)


@router.get("/me", responses=responses(401))
async def me(principal: Caller, conn: Conn) -> UserOut:
    """The calling user."""
    user = await service.get_user(conn, principal.user_id)
    if user is None:
        raise PayFlowError("invalid_token", "the user no longer exists", http_status=401)
    return UserOut.of(user)


def _key_out(key: ApiKey) -> ApiKeyOut:
    return ApiKeyOut(
        id=format_public_id("key", key.id),
        name=key.name,
        prefix=key.prefix,
        created_at=to_rfc3339(key.created_at),
        revoked_at=to_rfc3339(key.revoked_at) if key.revoked_at is not None else None,
    )


def _merchant_session(principal: Principal) -> None:
    if principal.role is not Role.MERCHANT:
        raise PayFlowError("forbidden", "API keys belong to merchants", http_status=403)
    if principal.api_key_id is not None:
        raise PayFlowError(
            "forbidden", "manage API keys from a logged-in session, not with a key", http_status=403
        )


@router.post("/api-keys", status_code=201, responses=responses(*_BODY, 401, 403, 409))
async def create_api_key(body: ApiKeyBody, principal: Caller, state: State) -> ApiKeyCreated:
    """A new merchant API key. The secret is in this response only; PayFlow keeps a hash."""
    _merchant_session(principal)
    async with state.engine.begin() as conn:
        key, secret = await service.create_api_key(conn, user_id=principal.user_id, name=body.name)
    return ApiKeyCreated(**_key_out(key).model_dump(), key=secret)


@router.get("/api-keys", responses=responses(401, 403))
async def list_api_keys(principal: Caller, conn: Conn) -> list[ApiKeyOut]:
    """The merchant's API keys (never their secrets)."""
    _merchant_session(principal)
    return [_key_out(k) for k in await service.list_api_keys(conn, user_id=principal.user_id)]


@router.delete("/api-keys/{key_id}", responses=responses(401, 403, 404))
async def revoke_api_key(key_id: str, principal: Caller, state: State) -> ApiKeyOut:
    """Revoke a key; requests with it fail within seconds (each process re-checks keys
    at most every 5 s)."""
    _merchant_session(principal)
    parsed = parse_id("key", key_id, not_found="api_key_not_found")
    async with state.engine.begin() as conn:
        key = await service.revoke_api_key(conn, user_id=principal.user_id, key_id=parsed)
    state.api_keys.entries.clear()
    return _key_out(key)
