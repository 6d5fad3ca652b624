"""Request dependencies: who is calling, may they, how often, and money-moving requests."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.api.idempotency import Claim, KeyRequest, check_key, complete_claims, fingerprint
from payflow.api.ledger_batch import BatchResult, LedgerWork, Replayed
from payflow.api.problems import PROBLEM_CONTENT_TYPE
from payflow.api.ratelimit import Decision, Policy
from payflow.api.replies import Completion, Reply
from payflow.api.state import AppState
from payflow.db import read, read_lazily, run_in_transaction
from payflow.errors import PayFlowError
from payflow.events.signals import outbox_committed
from payflow.identity import service as identity
from payflow.identity.domain import Principal, Role
from payflow.identity.service import API_KEY_PREFIX
from payflow.identity.tokens import decode_access_token
from payflow.ids import uuid7

bearer = HTTPBearer(auto_error=False, description="An access token, or a merchant API key")


async def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.payflow
    return state


State = Annotated[AppState, Depends(app_state)]


async def connection(state: State) -> AsyncIterator[AsyncConnection]:
    """A connection for reads; each statement sees committed data."""
    async with read(state.engine) as conn:
        yield conn


Conn = Annotated[AsyncConnection, Depends(connection)]


def remember_rate_limit(request: Request, decision: Decision) -> None:
    """Headers for the response (added by the middleware); 429 if refused."""
    request.state.rate_limit_headers = decision.headers()
    if not decision.allowed:
        raise PayFlowError(
            "rate_limited",
            f"too many requests; retry in {decision.reset_s} s",
            http_status=429,
        )


async def authenticate(state: AppState, token: str) -> Principal:
    """The principal an access token or merchant API key names; 401 if none."""
    if token.startswith(API_KEY_PREFIX + "_"):
        cached = state.api_keys.get(token)
        if cached is not None:
            return cached
        async with read(state.engine) as conn:
            user = await identity.authenticate_api_key(conn, token)
        if user is None:
            raise PayFlowError(
                "invalid_api_key", "the API key is invalid or revoked", http_status=401
            )
        principal = Principal(user_id=user.id, role=user.role, api_key_id=_key_id(token))
        state.api_keys.put(token, principal)
        return principal
    return await decode_access_token(state.keys, state.engine, token)


def _key_id(token: str) -> Any:
    from payflow.identity.tokens import parse_secret

    parsed = parse_secret(API_KEY_PREFIX, token)
    assert parsed is not None
    return parsed[0]


async def authenticated(
    request: Request,
    state: State,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The caller, rate limited per principal and route."""
    if credentials is None:
        raise PayFlowError(
            "unauthenticated", "send Authorization: Bearer <token or API key>", http_status=401
        )
    principal = await authenticate(state, credentials.credentials)
    route = request.scope.get("route")
    path = getattr(route, "path", request.url.path)
    remember_rate_limit(request, await hit_route_limit(state, principal, request.method, path))
    return principal


async def hit_route_limit(
    state: AppState, principal: Principal, method: str, route: str
) -> Decision:
    """Count a request against the principal's quota for the route (its path template)."""
    policy = _route_policy(state.settings.rate_limit_requests, state.settings.rate_limit_window_s)
    return await state.limiter.hit(f"{principal.scope}:{method} {route}", policy)


@functools.cache
def _route_policy(limit: int, window_s: int) -> Policy:
    return Policy("default", limit, window_s)


Caller = Annotated[Principal, Depends(authenticated)]


def role_required(*roles: Role) -> Callable[[Principal], Awaitable[Principal]]:
    async def check(principal: Caller) -> Principal:
        if principal.role not in roles:
            raise PayFlowError(
                "forbidden",
                f"this needs the {' or '.join(r.value for r in roles)} role",
                http_status=403,
            )
        return principal

    return check


Operator = Annotated[Principal, Depends(role_required(Role.OPERATOR))]


def reply_response(reply: Reply, *, replayed: bool = False) -> Response:
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    media_type = PROBLEM_CONTENT_TYPE if reply.status >= 400 else "application/json"
    return JSONResponse(
        reply.body, status_code=reply.status, headers=headers, media_type=media_type
    )


Plan = Callable[[AsyncConnection, Claim], Awaitable[LedgerWork]]


async def _under_key(
    request: Request,
    state: AppState,
    principal: Principal,
    body: BaseModel | None,
    effect: Callable[[Claim], Awaitable[Reply]],
) -> Response:
    """Claim the request's Idempotency-Key, run `effect` once for the claim (or replay the
    stored reply), remember the reply, and release the key."""
    key = check_key(request.headers.get("Idempotency-Key"))
    payload = body.model_dump(mode="json") if body is not None else None
    digest = fingerprint(request.method, request.url.path, payload)
    begun = await state.idempotency.begin(principal.scope, key, digest)
    if isinstance(begun, Reply):
        return reply_response(begun, replayed=True)
    try:
        reply = await effect(begun)
        await state.idempotency.remember(principal.scope, key, digest, reply)
        return reply_response(reply)
    except asyncio.CancelledError:
        # The effect may still commit and store the reply; the claim must stay (its lock
        # expires if it does not).
        raise
    except Exception:
        # Only a claim still in flight is dropped: a committed reply is never deleted.
        await state.idempotency.abandon(begun)
        raise
    finally:
        state.idempotency.release_local(principal.scope, key)


async def _planned(state: AppState, plan: Plan, claim: Claim) -> LedgerWork:
    """The request's ledger work, or (for a refusal by its checks) work that only stores
    the refusal as the key's reply."""
    try:
        async with read_lazily(state.engine) as conn:
            return await plan(conn, claim)
    except PayFlowError as error:
        reply = Reply.error(error)
        return LedgerWork(transfers=(), complete=lambda _: Completion(reply), claim=claim)


async def move_money(
    request: Request, state: AppState, principal: Principal, body: BaseModel | None, plan: Plan
) -> Response:
    """Run a money-moving request under its Idempotency-Key (see `settle`)."""
    key = check_key(request.headers.get("Idempotency-Key"))
    payload = body.model_dump(mode="json") if body is not None else None
    reply, replayed = await settle(
        state, principal, key, fingerprint(request.method, request.url.path, payload), plan
    )
    return reply_response(reply, replayed=replayed)


async def settle(
    state: AppState, principal: Principal, key: str, digest: str, plan: Plan
) -> tuple[Reply, bool]:
    """The reply to a money-moving request, and whether it is a replay.

    `plan` does the reads and checks (raising PayFlowError for the client's mistakes) and
    returns the ledger work; the micro-batcher claims the key, applies the work and
    stores the reply in one transaction. Plans run before the key is claimed, with a
    provisional claim: a key used before gets its stored reply whatever the plan said.
    Raises the key's 409/422 and the batcher's 503.
    """
    keys = state.idempotency
    cached = await keys.cached_reply(principal.scope, key, digest)
    if cached is not None:
        return cached, True
    keys.hold_local(principal.scope, key)
    try:
        provisional = Claim(uuid7(), uuid7())
        work = await _planned(state, plan, provisional)
        asked = KeyRequest(principal.scope, key, digest, provisional.resource_id)
        result = await state.ledger.submit(replace(work, key=asked))
        if isinstance(result, Claim):
            result = await _after_takeover(state, plan, result)
        if isinstance(result, PayFlowError):
            raise result
        if isinstance(result, Replayed):
            return result.reply, True
        assert isinstance(result, Reply), "work with a held claim gets a reply"
        await keys.remember(principal.scope, key, digest, result)
        return result, False
    finally:
        keys.release_local(principal.scope, key)


async def _after_takeover(state: AppState, plan: Plan, claim: Claim) -> BatchResult:
    """Run the request again under a stale claim it took over (its resource id, so the
    ledger refuses a second effect if the first attempt's did commit)."""
    try:
        return await state.ledger.submit(await _planned(state, plan, claim))
    except asyncio.CancelledError:
        # The batch may still commit and store the reply; the claim must stay (its lock
        # expires if it does not).
        raise
    except Exception:
        # Only a claim still in flight is dropped: a committed reply is never deleted.
        await state.idempotency.abandon(claim)
        raise


Write = Callable[[AsyncConnection, Claim], Awaitable[Reply]]


async def run_idempotent(
    request: Request, state: AppState, principal: Principal, body: BaseModel | None, write: Write
) -> Response:
    """Like `move_money`, for requests whose effect is rows and events, not a ledger batch
    (starting a payout saga): `write` runs in its own transaction with the stored reply.

    `write` must be safe to run again for the same claim (a takeover after its lock ran
    out): derive ids from `claim.resource_id` and return the existing row if it is there.
    """

    async def effect(claim: Claim) -> Reply:
        async def transaction(conn: AsyncConnection) -> Reply:
            try:
                async with conn.begin_nested():
                    reply = await write(conn, claim)
            except PayFlowError as error:
                reply = Reply.error(error)
            await complete_claims(conn, [(claim, reply)])
            return reply

        reply = await run_in_transaction(state.engine, transaction)
        outbox_committed()
        return reply

    return await _under_key(request, state, principal, body, effect)
