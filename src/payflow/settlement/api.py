"""HTTP routes for settlements: a merchant's own, operators' view of all, and an
operator's run of the cycle now."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.api.deps import Caller, Conn, Operator, State, run_idempotent
from payflow.api.idempotency import Claim
from payflow.api.problems import responses
from payflow.api.replies import Reply
from payflow.api.schemas import Limit, money_moving, page, parse_cursor, parse_id
from payflow.errors import PayFlowError
from payflow.identity.domain import Principal, Role
from payflow.ids import parse_public_id
from payflow.merchants import service as merchants
from payflow.merchants.domain import Merchant
from payflow.settlement import queries, service
from payflow.settlement.domain import SettlementStatus
from payflow.settlement.runner import run_now
from payflow.settlement.schemas import (
    RunBody,
    RunOut,
    SettlementDetailOut,
    SettlementPage,
    StatusName,
)
from payflow.settlement.views import line_view, settlement_view

router = APIRouter(prefix="/v1", tags=["settlements"], responses=responses(401, 403, 429))
_After = Annotated[str | None, Query(max_length=100)]


async def _merchant_of(conn: AsyncConnection, principal: Principal) -> Merchant:
    if principal.role is not Role.MERCHANT:
        raise PayFlowError("forbidden", "settlements are a merchant's", http_status=403)
    merchant = await merchants.merchant_of_user(conn, principal.user_id)
    if merchant is None:
        raise PayFlowError(
            "merchant_not_found",
            "you have no merchant profile yet: POST /v1/merchants creates it",
            http_status=404,
        )
    return merchant


async def _page(
    conn: AsyncConnection,
    *,
    merchant_id: uuid.UUID | None,
    status: StatusName | None,
    after: str | None,
    limit: int,
) -> SettlementPage:
    found, cursor = await queries.list_settlements(
        conn,
        merchant_id=merchant_id,
        status=SettlementStatus(status) if status is not None else None,
        limit=limit,
        after=parse_cursor(after),
    )
    return SettlementPage.model_validate(page([settlement_view(s) for s in found], cursor))


@router.get("/settlements", responses=responses(404, 422))
async def list_settlements(
    principal: Caller,
    conn: Conn,
    status: Annotated[StatusName | None, Query()] = None,
    after: _After = None,
    limit: Annotated[Limit, Query()] = 50,
) -> SettlementPage:
    """The calling merchant's settlements (user token or API key), newest first,
    optionally only those with `status`."""
    merchant = await _merchant_of(conn, principal)
    return await _page(conn, merchant_id=merchant.id, status=status, after=after, limit=limit)


@router.get("/settlements/{settlement_id}", responses=responses(404))
async def get_settlement(settlement_id: str, principal: Caller, conn: Conn) -> SettlementDetailOut:
    """One settlement with its lines, each naming its payment: to its merchant and to
    operators."""
    parsed = parse_id("stl", settlement_id, not_found="settlement_not_found")
    settlement = await service.get_settlement(conn, parsed)
    if settlement is None or not (
        principal.is_operator or settlement.merchant_user_id == principal.user_id
    ):
        raise PayFlowError(
            "settlement_not_found", f"no such settlement {settlement_id!r}", http_status=404
        )
    lines = await queries.lines_of(conn, settlement.id)
    return SettlementDetailOut.model_validate(
        {**settlement_view(settlement), "lines": [line_view(line) for line in lines]}
    )


@router.get("/operator/settlements", responses=responses(422))
async def list_all_settlements(
    principal: Operator,
    conn: Conn,
    merchant: Annotated[str | None, Query(max_length=100)] = None,
    status: Annotated[StatusName | None, Query()] = None,
    after: _After = None,
    limit: Annotated[Limit, Query()] = 50,
) -> SettlementPage:
    """Every merchant's settlements (or one `merchant`'s), newest first."""
    merchant_id = parse_public_id("mer", merchant) if merchant is not None else None
    return await _page(conn, merchant_id=merchant_id, status=status, after=after, limit=limit)


@router.post("/operator/settlements/run", **money_moving(RunOut, 200))
async def run_settlements(
    body: RunBody, request: Request, principal: Operator, state: State
) -> Response:
    """Run the settlement cycle now, whatever the schedule says: for one `merchant`, or
    for every merchant with unsettled payments. It takes fees and starts payouts, so it
    needs an Idempotency-Key; a replay answers what the first run made."""

    async def write(conn: AsyncConnection, claim: Claim) -> Reply:
        merchant_id = None
        if body.merchant is not None:
            merchant_id = parse_id("mer", body.merchant, not_found="merchant_not_found")
            merchant = await merchants.get_merchant(conn, merchant_id)
            if merchant is None:
                raise merchants.merchant_not_found(body.merchant)
            if not merchant.is_active:
                raise PayFlowError(
                    "merchant_suspended", "a suspended merchant is not settled", http_status=409
                )
        made = await run_now(conn, state.settings, merchant_id=merchant_id)
        return Reply(200, {"data": [settlement_view(s) for s in made]})

    return await run_idempotent(request, state, principal, body, write)
