"""HTTP routes for rewards: operators manage rules and fund the pool; users see their
cashback."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.api.deps import Caller, Conn, Operator, State, move_money
from payflow.api.idempotency import Claim
from payflow.api.ledger_batch import LedgerWork
from payflow.api.problems import responses
from payflow.api.schemas import Limit, money_moving, page, parse_cursor, parse_id
from payflow.db import read, run_in_transaction
from payflow.errors import PayFlowError
from payflow.ids import parse_public_id
from payflow.money import is_currency
from payflow.rewards import service
from payflow.rewards.schemas import (
    CashbackPage,
    FundingBody,
    FundingOut,
    PoolOut,
    RuleBody,
    RuleOut,
    RulePage,
    cashback_view,
    pool_view,
    rule_view,
)
from payflow.wallets.service import ensure_system_accounts

operator_router = APIRouter(
    prefix="/v1/operator/rewards", tags=["rewards"], responses=responses(401, 403, 429)
)
router = APIRouter(prefix="/v1/rewards", tags=["rewards"], responses=responses(401, 429))

After = Annotated[str | None, Query(max_length=100, description="`next_cursor` of the page before")]


@operator_router.post("/rules", status_code=201, responses=responses(400, 413, 422))
async def create_rule(body: RuleBody, principal: Operator, state: State) -> RuleOut:
    """A cashback rule: `rate_bp` of each qualifying payment, at most `cap_amount`, for
    payments of at least `minimum_amount`; at one merchant, or at all if no
    `merchant_id`. Logged as an operator action."""
    merchant_id = None
    if body.merchant_id is not None:
        try:
            merchant_id = parse_public_id("usr", body.merchant_id)
        except PayFlowError:
            raise PayFlowError(
                "merchant_invalid", f"{body.merchant_id!r} is not a user id", http_status=422
            ) from None

    async def work(conn: AsyncConnection) -> RuleOut:
        rule = await service.create_rule(
            conn,
            actor_id=principal.user_id,
            name=body.name,
            currency=body.currency,
            rate_bp=body.rate_bp,
            cap_amount=body.cap_amount,
            minimum_amount=body.minimum_amount,
            merchant_id=merchant_id,
            active=body.active,
        )
        return RuleOut.model_validate(rule_view(rule))

    return await run_in_transaction(state.engine, work)


@operator_router.get("/rules", responses=responses(422))
async def list_rules(
    principal: Operator, conn: Conn, after: After = None, limit: Annotated[Limit, Query()] = 50
) -> RulePage:
    """Every cashback rule, newest first."""
    found = await service.list_rules(conn, limit=limit, after=parse_cursor(after))
    return RulePage.model_validate(page([rule_view(r) for r in found.items], found.next_cursor))


@operator_router.get("/rules/{rule_id}", responses=responses(404))
async def get_rule(rule_id: str, principal: Operator, conn: Conn) -> RuleOut:
    """One cashback rule."""
    rule = await service.get_rule(conn, parse_id("rule", rule_id, not_found="rule_not_found"))
    if rule is None:
        raise PayFlowError("rule_not_found", f"no such rule {rule_id!r}", http_status=404)
    return RuleOut.model_validate(rule_view(rule))


async def _set_active(rule_id: str, principal: Operator, state: State, *, active: bool) -> RuleOut:
    parsed = parse_id("rule", rule_id, not_found="rule_not_found")

    async def work(conn: AsyncConnection) -> RuleOut:
        rule = await service.set_rule_active(
            conn, parsed, active=active, actor_id=principal.user_id
        )
        return RuleOut.model_validate(rule_view(rule))

    return await run_in_transaction(state.engine, work)


@operator_router.post("/rules/{rule_id}/deactivate", responses=responses(404))
async def deactivate_rule(rule_id: str, principal: Operator, state: State) -> RuleOut:
    """Stop the rule paying cashback on payments from now on (already paid cashback
    stays). Deactivating an inactive rule changes nothing."""
    return await _set_active(rule_id, principal, state, active=False)


@operator_router.post("/rules/{rule_id}/reactivate", responses=responses(404))
async def reactivate_rule(rule_id: str, principal: Operator, state: State) -> RuleOut:
    """Let a deactivated rule pay cashback again."""
    return await _set_active(rule_id, principal, state, active=True)


@operator_router.post("/pool/fundings", **money_moving(FundingOut))
async def fund_pool(
    body: FundingBody, request: Request, principal: Operator, state: State
) -> Response:
    """Put money into a currency's rewards pool, from the adjustments account: double
    entry, with a reason, in the operator log. Needs an Idempotency-Key."""
    if is_currency(body.currency):
        # Databases from before rewards have no pool in their older currencies yet.
        async with read(state.engine) as conn:
            missing = not await service.pool_exists(conn, body.currency)
        if missing:
            await run_in_transaction(
                state.engine, lambda conn: ensure_system_accounts(conn, body.currency)
            )

    async def plan(conn: AsyncConnection, claim: Claim) -> LedgerWork:
        return service.plan_pool_funding(
            claim,
            currency=body.currency,
            amount=body.amount,
            reason=body.reason,
            actor_id=principal.user_id,
        )

    return await move_money(request, state, principal, body, plan)


@operator_router.get("/pool")
async def pool(principal: Operator, conn: Conn) -> list[PoolOut]:
    """Each currency's rewards pool: what it can still pay out, and its ledger counters."""
    return [pool_view(account) for account in await service.pools(conn)]


@router.get("/cashbacks", responses=responses(422))
async def my_cashbacks(
    principal: Caller, conn: Conn, after: After = None, limit: Annotated[Limit, Query()] = 50
) -> CashbackPage:
    """The caller's cashbacks, newest first, with what refunds took back."""
    found = await service.list_cashbacks(
        conn, user_id=principal.user_id, limit=limit, after=parse_cursor(after)
    )
    return CashbackPage.model_validate(
        page([cashback_view(c) for c in found.items], found.next_cursor)
    )
