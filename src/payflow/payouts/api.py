"""HTTP routes for payouts: money out to an account at another bank."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.api.deps import Caller, Conn, State, run_idempotent
from payflow.api.idempotency import Claim
from payflow.api.problems import responses
from payflow.api.replies import Reply
from payflow.api.schemas import Limit, money_moving, page, parse_cursor, parse_id
from payflow.errors import PayFlowError
from payflow.identity.domain import Principal
from payflow.payouts import queries, service
from payflow.payouts.domain import Destination, parse_destination, parse_vpa
from payflow.payouts.schemas import PayoutBody, PayoutDetailOut, PayoutOut, PayoutPage
from payflow.payouts.views import payout_view
from payflow.wallets.service import wallet_of

router = APIRouter(prefix="/v1", tags=["payouts"], responses=responses(401, 429))


async def start_payout(
    request: Request,
    state: State,
    principal: Principal,
    body: object,
    *,
    amount: int,
    currency: str,
    destination: Destination,
    description: str | None,
) -> Response:
    """Start a payout saga under the request's Idempotency-Key: 202, status processing.

    Shared by `POST /v1/payouts` and `POST /v1/transfers` to an address at another bank.
    """
    settings = state.settings
    if amount > settings.payout_amount_max:
        raise PayFlowError(
            "amount_too_large",
            f"a payout may be at most {settings.payout_amount_max} minor units",
            http_status=422,
        )

    async def write(conn: AsyncConnection, claim: Claim) -> Reply:
        # A takeover of this claim after its lock ran out finds the payout already there.
        existing = await service.get_payout(conn, claim.resource_id)
        if existing is None:
            wallet = await wallet_of(conn, user_id=principal.user_id, currency=currency)
            existing = await service.initiate(
                conn,
                payout_id=claim.resource_id,
                wallet=wallet,
                amount=amount,
                destination=destination,
                description=description,
                deadline_s=settings.payout_deadline_s,
            )
        return Reply(202, payout_view(existing))

    return await run_idempotent(request, state, principal, body, write)  # type: ignore[arg-type]


@router.post("/payouts", **money_moving(PayoutOut, 202))
async def create_payout(
    body: PayoutBody, request: Request, principal: Caller, state: State
) -> Response:
    """Send money from the caller's wallet to an account at another bank. Answers 202:
    the saga runs in the background; follow it with `GET /v1/payouts/{id}` or webhooks.
    Needs an Idempotency-Key."""
    d = body.destination
    destination = parse_destination(
        vpa=d.vpa, bank_code=d.bank_code, account_number=d.account_number
    )
    return await start_payout(
        request,
        state,
        principal,
        body,
        amount=body.amount,
        currency=body.currency,
        destination=destination,
        description=body.description,
    )


async def off_us_transfer(
    request: Request,
    state: State,
    principal: Principal,
    body: object,
    *,
    to: str,
    amount: int,
    currency: str,
    note: str | None,
) -> Response:
    """`POST /v1/transfers` to `name@otherbank`: a payout to that address."""
    return await start_payout(
        request,
        state,
        principal,
        body,
        amount=amount,
        currency=currency,
        destination=parse_vpa(to),
        description=note,
    )


def _not_found(text: str) -> PayFlowError:
    return PayFlowError("payout_not_found", f"no such payout {text!r}", http_status=404)


@router.get("/payouts/{payout_id}", responses=responses(404))
async def get_payout(payout_id: str, principal: Caller, conn: Conn) -> PayoutDetailOut:
    """One payout with its timeline: every step of its saga, when, and each bank call."""
    parsed: uuid.UUID = parse_id("po", payout_id, not_found="payout_not_found")
    payout = await service.get_payout(conn, parsed)
    if payout is None or not (principal.is_operator or payout.user_id == principal.user_id):
        raise _not_found(payout_id)
    steps = await queries.timeline(conn, payout.id)
    return PayoutDetailOut.model_validate(queries.detail_view(payout, steps))


@router.get("/payouts", responses=responses(422))
async def list_payouts(
    principal: Caller,
    conn: Conn,
    after: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[Limit, Query()] = 50,
) -> PayoutPage:
    """The caller's payouts (an operator's: everyone's), newest first."""
    user_id = None if principal.is_operator else principal.user_id
    found, cursor = await queries.list_payouts(
        conn, user_id=user_id, limit=limit, after=parse_cursor(after)
    )
    return PayoutPage.model_validate(page([payout_view(p) for p in found], cursor))
