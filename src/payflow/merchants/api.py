"""HTTP routes for merchants: self-serve profiles and operators' onboarding and control."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.api.deps import Caller, Conn, Operator, State
from payflow.api.problems import responses
from payflow.api.schemas import Limit, page, parse_cursor, parse_id
from payflow.errors import PayFlowError
from payflow.identity import service as identity
from payflow.identity.domain import Principal, Role, User
from payflow.identity.passwords import hash_password
from payflow.ids import format_public_id
from payflow.merchants import service
from payflow.merchants.domain import Merchant, MerchantStatus, check_fee
from payflow.merchants.schemas import (
    MerchantBody,
    MerchantOut,
    MerchantPage,
    MerchantPatch,
    NewMerchantUser,
    OnboardBody,
    OperatorPatch,
    merchant_view,
)
from payflow.operators.service import log_action

router = APIRouter(prefix="/v1", tags=["merchants"], responses=responses(401, 403, 429))
# A JSON body: malformed (400), too large (413) or invalid (422).
_BODY = (400, 413, 422)


def _out(merchant: Merchant) -> MerchantOut:
    return MerchantOut.model_validate(merchant_view(merchant))


def _merchant_role(principal: Principal) -> None:
    if principal.role is not Role.MERCHANT:
        raise PayFlowError("forbidden", "this needs the merchant role", http_status=403)


async def _mine(conn: AsyncConnection, principal: Principal) -> Merchant:
    _merchant_role(principal)
    merchant = await service.merchant_of_user(conn, principal.user_id)
    if merchant is None:
        raise PayFlowError(
            "merchant_not_found",
            "you have no merchant profile yet: POST /v1/merchants creates it",
            http_status=404,
        )
    return merchant


@router.post("/merchants", status_code=201, responses=responses(*_BODY, 409))
async def create_merchant(body: MerchantBody, principal: Caller, state: State) -> MerchantOut:
    """Create the calling merchant user's profile, and its wallet in the settlement
    currency if it has none."""
    _merchant_role(principal)
    async with state.engine.begin() as conn:
        user = await identity.get_user(conn, principal.user_id)
        assert user is not None
        merchant = await service.create_merchant(
            conn,
            user=user,
            business_name=body.business_name,
            settlement_currency=body.settlement_currency or state.settings.default_currency,
            destination=body.settlement_destination.destination(),
            settlement_interval_s=body.settlement_interval_s,
        )
    return _out(merchant)


@router.get("/merchants/me", responses=responses(404))
async def get_my_merchant(principal: Caller, conn: Conn) -> MerchantOut:
    """The calling merchant's profile (with a user token or an API key)."""
    return _out(await _mine(conn, principal))


@router.patch("/merchants/me", responses=responses(*_BODY, 404))
async def update_my_merchant(body: MerchantPatch, principal: Caller, state: State) -> MerchantOut:
    """Change where and how often settlement pays the merchant. Only from a logged-in
    session: a leaked API key must not be able to redirect the merchant's money."""
    if principal.api_key_id is not None:
        raise PayFlowError(
            "forbidden", "change settlement details from a logged-in session", http_status=403
        )
    if body.settlement_destination is None and body.settlement_interval_s is None:
        raise PayFlowError(
            "nothing_to_update",
            "send settlement_destination and/or settlement_interval_s",
            http_status=422,
        )
    async with state.engine.begin() as conn:
        merchant = await service.update_settlement(
            conn,
            await _mine(conn, principal),
            destination=(
                body.settlement_destination.destination() if body.settlement_destination else None
            ),
            settlement_interval_s=body.settlement_interval_s,
        )
    return _out(merchant)


async def _onboarded_user(conn: AsyncConnection, body: OnboardBody, new: str | None) -> User:
    """The existing user `body.user_id`, or the user `body.user` created now (`new` is its
    password hash)."""
    if body.user is not None:
        assert new is not None
        return await _create_user(conn, body.user, new)
    assert body.user_id is not None
    user_id = parse_id("usr", body.user_id, not_found="user_not_found")
    user = await identity.get_user(conn, user_id)
    if user is None:
        raise PayFlowError("user_not_found", f"no such user {body.user_id!r}", http_status=404)
    return user


async def _create_user(conn: AsyncConnection, new: NewMerchantUser, password_hash: str) -> User:
    return await identity.create_user(
        conn,
        email=new.email,
        password_hash=password_hash,
        name=new.name,
        handle=new.handle,
        role=Role.MERCHANT,
    )


@router.post("/operator/merchants", status_code=201, responses=responses(*_BODY, 404, 409))
async def onboard_merchant(body: OnboardBody, principal: Operator, state: State) -> MerchantOut:
    """Onboard a merchant: an existing merchant user (`user_id`) or a new one (`user`:
    e-mail, password, name, handle). Logged as an operator action."""
    if (body.user_id is None) == (body.user is None):
        raise PayFlowError(
            "merchant_user_required", "send exactly one of user_id and user", http_status=422
        )
    if body.fee_bps is not None:
        check_fee(body.fee_bps)
    # argon2id is slow by design: hash before the transaction takes its locks.
    password_hash = await hash_password(body.user.password) if body.user is not None else None
    async with state.engine.begin() as conn:
        user = await _onboarded_user(conn, body, password_hash)
        merchant = await service.create_merchant(
            conn,
            user=user,
            business_name=body.business_name,
            settlement_currency=body.settlement_currency or state.settings.default_currency,
            destination=body.settlement_destination.destination(),
            settlement_interval_s=body.settlement_interval_s,
        )
        if body.fee_bps:
            merchant = await service.update_by_operator(
                conn, merchant, fee_bps=body.fee_bps, status=None, actor_id=principal.user_id
            )
        await log_action(
            conn,
            actor_id=principal.user_id,
            action="merchant_onboarded",
            target=format_public_id("mer", merchant.id),
            details={
                "user_id": format_public_id("usr", user.id),
                "new_user": body.user is not None,
            },
        )
    return _out(merchant)


@router.get("/operator/merchants", responses=responses(422))
async def list_merchants(
    principal: Operator,
    conn: Conn,
    status: Annotated[MerchantStatus | None, Query()] = None,
    after: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[Limit, Query()] = 50,
) -> MerchantPage:
    """Every merchant, newest first, optionally only those with `status`."""
    found = await service.page_merchants(
        conn, status=status, after=parse_cursor(after), limit=limit
    )
    return MerchantPage.model_validate(
        page([merchant_view(m) for m in found.items], found.next_cursor)
    )


async def _merchant(conn: AsyncConnection, text: str) -> Merchant:
    merchant = await service.get_merchant(
        conn, parse_id("mer", text, not_found="merchant_not_found")
    )
    if merchant is None:
        raise service.merchant_not_found(text)
    return merchant


@router.get("/operator/merchants/{merchant_id}", responses=responses(404))
async def get_merchant(merchant_id: str, principal: Operator, conn: Conn) -> MerchantOut:
    """One merchant."""
    return _out(await _merchant(conn, merchant_id))


@router.patch("/operator/merchants/{merchant_id}", responses=responses(*_BODY, 404))
async def update_merchant(
    merchant_id: str, body: OperatorPatch, principal: Operator, state: State
) -> MerchantOut:
    """Set a merchant's fee (basis points) or suspend / reactivate it. Logged as an
    operator action. A suspended merchant's new payments fail (`merchant_suspended`)."""
    if body.fee_bps is None and body.status is None:
        raise PayFlowError("nothing_to_update", "send fee_bps and/or status", http_status=422)
    async with state.engine.begin() as conn:
        merchant = await service.update_by_operator(
            conn,
            await _merchant(conn, merchant_id),
            fee_bps=body.fee_bps,
            status=MerchantStatus(body.status) if body.status is not None else None,
            actor_id=principal.user_id,
        )
    return _out(merchant)
