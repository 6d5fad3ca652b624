"""HTTP routes for wallets: list, open, one, statement, top-up."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.api.deps import Caller, Conn, State, move_money
from payflow.api.idempotency import Claim
from payflow.api.ledger_batch import LedgerWork
from payflow.api.problems import responses
from payflow.api.schemas import Limit, money_moving, page, parse_cursor, parse_id
from payflow.db import run_in_transaction
from payflow.errors import PayFlowError
from payflow.identity.domain import Principal
from payflow.transfers.schemas import TransferOut
from payflow.transfers.service import plan_topup
from payflow.wallets import service
from payflow.wallets.domain import Wallet
from payflow.wallets.schemas import OpenWalletBody, Statement, TopupBody, WalletOut
from payflow.wallets.statement import statement as wallet_statement

router = APIRouter(prefix="/v1", tags=["wallets"], responses=responses(401, 429))


def wallet_not_found(text: str) -> PayFlowError:
    return PayFlowError("wallet_not_found", f"no such wallet {text!r}", http_status=404)


async def visible_wallet(conn: AsyncConnection, principal: Principal, text: str) -> Wallet:
    """The wallet if the caller may see it (its owner, or an operator); else 404."""
    wallet_id = parse_id("wal", text, not_found="wallet_not_found")
    wallet = await service.get_wallet(conn, wallet_id)
    if wallet is None or (wallet.user_id != principal.user_id and not principal.is_operator):
        raise wallet_not_found(text)
    return wallet


async def _out(conn: AsyncConnection, wallets: list[Wallet]) -> list[WalletOut]:
    balances = await service.balances(conn, [w.id for w in wallets])
    return [WalletOut.of(w, balances[w.id]) for w in wallets]


@router.get("/wallets")
async def list_wallets(principal: Caller, conn: Conn) -> list[WalletOut]:
    """The caller's wallets with their balances."""
    return await _out(conn, await service.list_wallets(conn, user_id=principal.user_id))


@router.post("/wallets", status_code=201, responses=responses(400, 403, 409, 413, 422))
async def open_wallet(body: OpenWalletBody, principal: Caller, state: State) -> WalletOut:
    """Open a wallet in another currency (one per currency)."""

    async def work(conn: AsyncConnection) -> WalletOut:
        user_wallets = await service.list_wallets(conn, user_id=principal.user_id)
        handle = user_wallets[0].handle if user_wallets else None
        if handle is None:
            raise PayFlowError("forbidden", "this account cannot hold wallets", http_status=403)
        wallet = await service.open_wallet(
            conn, user_id=principal.user_id, handle=handle, currency=body.currency
        )
        [out] = await _out(conn, [wallet])
        return out

    # Concurrent opens (same user, or a currency's first system accounts) collide on a
    # unique index; the retry then sees the winner's rows: 409, or the accounts exist.
    return await run_in_transaction(state.engine, work)


@router.get("/wallets/{wallet_id}", responses=responses(404))
async def get_wallet(wallet_id: str, principal: Caller, conn: Conn) -> WalletOut:
    """One wallet with its balance: posted, pending (held) and available."""
    [out] = await _out(conn, [await visible_wallet(conn, principal, wallet_id)])
    return out


@router.get("/wallets/{wallet_id}/statement", responses=responses(404, 422))
async def get_statement(
    wallet_id: str,
    principal: Caller,
    conn: Conn,
    after: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[Limit, Query()] = 50,
) -> Statement:
    """Every movement of the wallet, oldest first, with the balance after each."""
    wallet = await visible_wallet(conn, principal, wallet_id)
    entries, cursor = await wallet_statement(conn, wallet, limit=limit, after=parse_cursor(after))
    return Statement.model_validate(page(entries, cursor))


@router.post("/wallets/{wallet_id}/topups", **money_moving(TransferOut))
async def topup(
    wallet_id: str, body: TopupBody, request: Request, principal: Caller, state: State
) -> Response:
    """Add money from the owner's linked (simulated) bank. Needs an Idempotency-Key."""

    async def plan(conn: AsyncConnection, claim: Claim) -> LedgerWork:
        wallet = await visible_wallet(conn, principal, wallet_id)
        if wallet.user_id != principal.user_id:
            raise wallet_not_found(wallet_id)
        return plan_topup(
            claim,
            wallet=wallet,
            amount=body.amount,
            topup_amount_max=state.settings.topup_amount_max,
            initiated_by=principal.user_id,
        )

    return await move_money(request, state, principal, body, plan)
