"""HTTP routes for P2P transfers and holds."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.api.deps import Caller, Conn, Plan, State, move_money
from payflow.api.idempotency import Claim
from payflow.api.ledger_batch import LedgerWork
from payflow.api.problems import responses
from payflow.api.schemas import Limit, money_moving, page, parse_cursor, parse_id
from payflow.errors import PayFlowError
from payflow.identity.domain import Principal
from payflow.payouts.api import off_us_transfer
from payflow.payouts.domain import is_off_us
from payflow.payouts.schemas import PayoutOut
from payflow.timestamps import now_ns
from payflow.transfers import service
from payflow.transfers.domain import Hold
from payflow.transfers.schemas import (
    CaptureBody,
    CaptureOut,
    HoldBody,
    HoldOut,
    ReleaseBody,
    TransferBody,
    TransferOut,
    TransferPage,
)
from payflow.transfers.views import hold_view, transfer_view
from payflow.wallets import service as wallets
from payflow.wallets.service import resolve_recipient, wallet_of

router = APIRouter(prefix="/v1", tags=["transfers"], responses=responses(401, 429))


# To an address at another bank the route starts a payout and answers 202 with it.
_TRANSFER_ROUTE = money_moving(TransferOut)
_TRANSFER_ROUTE["responses"][202] = {
    "model": PayoutOut,
    "description": "The address is at another bank: a payout was started",
}


@router.post("/transfers", **_TRANSFER_ROUTE)
async def create_transfer(
    body: TransferBody, request: Request, principal: Caller, state: State
) -> Response:
    """Send money to another PayFlow wallet, atomically (201). To an address at another
    bank (`name@otherbank`) it starts a payout instead and answers 202 with the payout
    (see `POST /v1/payouts`). Needs an Idempotency-Key."""
    if is_off_us(body.to):
        return await off_us_transfer(
            request,
            state,
            principal,
            body,
            to=body.to,
            amount=body.amount,
            currency=body.currency,
            note=body.note,
        )

    return await move_money(request, state, principal, body, p2p_plan(principal, body))


def p2p_plan(principal: Principal, body: TransferBody) -> Plan:
    """The plan of an on-us transfer (also run by the lean path, `api.fast_path`)."""

    async def plan(conn: AsyncConnection, claim: Claim) -> LedgerWork:
        sender = await wallet_of(conn, user_id=principal.user_id, currency=body.currency)
        recipient = await resolve_recipient(conn, body.to, currency=body.currency)
        return service.plan_p2p(
            claim,
            sender=sender,
            recipient=recipient,
            amount=body.amount,
            note=body.note,
            initiated_by=principal.user_id,
        )

    return plan


async def _my_wallet_ids(conn: AsyncConnection, principal: Principal) -> list[Any]:
    return [w.id for w in await wallets.list_wallets(conn, user_id=principal.user_id)]


@router.get("/transfers/{transfer_id}", responses=responses(404))
async def get_transfer(transfer_id: str, principal: Caller, conn: Conn) -> TransferOut:
    """One transfer; visible to its two parties (and operators) only."""
    parsed = parse_id("txn", transfer_id, not_found="transfer_not_found")
    record = await service.get_transfer(conn, parsed)
    mine = set(await _my_wallet_ids(conn, principal))
    if record is None or not (
        principal.is_operator or {record.from_wallet_id, record.to_wallet_id} & mine
    ):
        raise PayFlowError(
            "transfer_not_found", f"no such transfer {transfer_id!r}", http_status=404
        )
    ids = [i for i in (record.from_wallet_id, record.to_wallet_id) if i is not None]
    return TransferOut.model_validate(transfer_view(record, await wallets.get_wallets(conn, ids)))


@router.get("/transfers", responses=responses(422))
async def list_transfers(
    principal: Caller,
    conn: Conn,
    after: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[Limit, Query()] = 50,
) -> TransferPage:
    """The caller's transfers (sent and received), newest first."""
    mine = await _my_wallet_ids(conn, principal)
    found = await service.list_transfers(conn, mine, limit=limit, after=parse_cursor(after))
    ids = {i for r in found.items for i in (r.from_wallet_id, r.to_wallet_id) if i is not None}
    known = await wallets.get_wallets(conn, list(ids))
    return TransferPage.model_validate(
        page([transfer_view(r, known) for r in found.items], found.next_cursor)
    )


@router.post("/holds", **money_moving(HoldOut))
async def create_hold(
    body: HoldBody, request: Request, principal: Caller, state: State
) -> Response:
    """Reserve money in the caller's wallet, optionally until `expires_in_s`. Needs an
    Idempotency-Key."""

    async def plan(conn: AsyncConnection, claim: Claim) -> LedgerWork:
        wallet = await wallet_of(conn, user_id=principal.user_id, currency=body.currency)
        return service.plan_hold(
            claim,
            wallet=wallet,
            amount=body.amount,
            expires_in_s=body.expires_in_s,
            note=body.note,
            created_by=principal.user_id,
        )

    return await move_money(request, state, principal, body, plan)


async def _own_hold(
    conn: AsyncConnection, principal: Principal, text: str, *, operator_may_read: bool = False
) -> Hold:
    """The caller's hold; operators may read any hold but move money only in their own."""
    hold = await service.get_hold(conn, parse_id("hold", text, not_found="hold_not_found"))
    visible = hold is not None and (
        hold.created_by == principal.user_id or (operator_may_read and principal.is_operator)
    )
    if hold is None or not visible:
        raise PayFlowError("hold_not_found", f"no such hold {text!r}", http_status=404)
    return hold


@router.get("/holds/{hold_id}", responses=responses(404))
async def get_hold(hold_id: str, principal: Caller, conn: Conn) -> HoldOut:
    """One hold and what became of it."""
    hold = await _own_hold(conn, principal, hold_id, operator_may_read=True)
    ids = [i for i in (hold.wallet_id, hold.payee_wallet_id) if i is not None]
    view = hold_view(hold, await wallets.get_wallets(conn, ids), now_ns=now_ns())
    return HoldOut.model_validate(view)


@router.post("/holds/{hold_id}/capture", **money_moving(CaptureOut, 200))
async def capture_hold(
    hold_id: str, body: CaptureBody, request: Request, principal: Caller, state: State
) -> Response:
    """Pay all or part of the hold to `to`; the rest goes back to the wallet. Needs an
    Idempotency-Key."""

    async def plan(conn: AsyncConnection, claim: Claim) -> LedgerWork:
        hold = await _own_hold(conn, principal, hold_id)
        payee = await resolve_recipient(conn, body.to, currency=hold.currency)
        known = await wallets.get_wallets(conn, [hold.wallet_id])
        return service.plan_capture(
            claim,
            hold=hold,
            wallets=known,
            payee=payee,
            amount=body.amount,
            initiated_by=principal.user_id,
        )

    return await move_money(request, state, principal, body, plan)


@router.post("/holds/{hold_id}/release", **money_moving(HoldOut, 200))
async def release_hold(
    hold_id: str,
    request: Request,
    principal: Caller,
    state: State,
    body: ReleaseBody | None = None,
) -> Response:
    """Give the held money back to the wallet. Needs an Idempotency-Key."""

    async def plan(conn: AsyncConnection, claim: Claim) -> LedgerWork:
        hold = await _own_hold(conn, principal, hold_id)
        known = await wallets.get_wallets(conn, [hold.wallet_id])
        return service.plan_release(claim, hold=hold, wallets=known)

    # The body has no fields: a release sent with `{}` and its retry sent without a body
    # are the same request, so both fingerprint as bodiless.
    return await move_money(request, state, principal, None, plan)
