"""HTTP routes for operators: system accounts, adjustments, the ledger audit, the log."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.api.deps import Conn, Operator, State, move_money
from payflow.api.idempotency import Claim
from payflow.api.ledger_batch import LedgerWork
from payflow.api.problems import responses
from payflow.api.schemas import (
    Amount,
    Limit,
    StrictModel,
    money_moving,
    page,
    parse_cursor,
    parse_id,
)
from payflow.errors import PayFlowError
from payflow.ledger import audit
from payflow.ledger.audit import AuditReport
from payflow.operators import service
from payflow.timestamps import now_ns, to_rfc3339
from payflow.wallets import service as wallets

router = APIRouter(prefix="/v1/operator", tags=["operator"], responses=responses(401, 403, 429))


class SystemAccountOut(BaseModel):
    name: str
    currency: str
    account_id: str
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int


class AdjustmentBody(StrictModel):
    wallet_id: Annotated[str, Field(min_length=1, max_length=40)]
    direction: Literal["credit", "debit"]
    amount: Amount
    # A reason of blanks is no reason: surrounding whitespace does not count.
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=500)]


class AdjustmentOut(BaseModel):
    id: str
    object: Literal["adjustment"]
    wallet_id: str
    direction: Literal["credit", "debit"]
    amount: int
    currency: str
    reason: str
    created_at: str


class AuditOut(BaseModel):
    ok: bool
    checked_at: str
    transfers_checked: int
    totals: list[dict[str, Any]]
    violations: list[str]


class ActionPage(BaseModel):
    data: list[dict[str, Any]]
    next_cursor: str | None


def audit_totals(report: AuditReport) -> list[dict[str, Any]]:
    return [dataclasses.asdict(t) for t in report.totals]


@router.get("/system-accounts")
async def system_accounts(principal: Operator, conn: Conn) -> list[SystemAccountOut]:
    """PayFlow's own ledger accounts (bank clearing, holds, adjustments) per currency."""
    return [
        SystemAccountOut(
            name=name,
            currency=a.currency,
            account_id=str(a.id),
            debits_posted=a.debits_posted,
            credits_posted=a.credits_posted,
            debits_pending=a.debits_pending,
            credits_pending=a.credits_pending,
        )
        for name, a in await wallets.list_system_accounts(conn)
    ]


@router.post("/adjustments", **money_moving(AdjustmentOut))
async def adjust(
    body: AdjustmentBody, request: Request, principal: Operator, state: State
) -> Response:
    """Credit or debit a wallet by hand: always double-entry (against the adjustments
    account), always with a reason, always in the operator log. Needs an Idempotency-Key."""

    async def plan(conn: AsyncConnection, claim: Claim) -> LedgerWork:
        wallet_id = parse_id("wal", body.wallet_id, not_found="wallet_not_found")
        wallet = await wallets.get_wallet(conn, wallet_id)
        if wallet is None:
            raise PayFlowError(
                "wallet_not_found", f"no such wallet {body.wallet_id!r}", http_status=404
            )
        return service.plan_adjustment(
            claim,
            wallet=wallet,
            direction=body.direction,
            amount=body.amount,
            reason=body.reason,
            actor_id=principal.user_id,
        )

    return await move_money(request, state, principal, body, plan)


@router.post("/audit", responses=responses(413))
async def run_audit(principal: Operator, state: State) -> AuditOut:
    """Check the ledger's invariants now (a full scan) and log who asked."""
    async with state.engine.begin() as conn:
        report = await audit(conn)
        await service.log_action(
            conn,
            actor_id=principal.user_id,
            action="ledger_audit",
            target=None,
            details={"ok": report.ok, "violations": len(report.violations)},
        )
    return AuditOut(
        ok=report.ok,
        checked_at=to_rfc3339(now_ns()),
        transfers_checked=report.transfers,
        totals=audit_totals(report),
        violations=report.violations,
    )


@router.get("/actions", responses=responses(422))
async def actions(
    principal: Operator,
    conn: Conn,
    after: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[Limit, Query()] = 50,
) -> ActionPage:
    """Every operator action, newest first."""
    found = await service.list_actions(conn, limit=limit, after=parse_cursor(after))
    return ActionPage.model_validate(page(found.items, found.next_cursor))
