"""`/sim`: the simulator's controls (accounts, scripted faults, runtime configuration).
Not part of any real bank's API; no latency or faults apply here."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from payflow.api.problems import responses
from payflow.banksim.accounts import create_account, list_accounts
from payflow.banksim.faults import ScriptedFault
from payflow.banksim.schemas import (
    AccountIn,
    AccountList,
    AccountOut,
    FaultIn,
    FaultList,
    FaultOut,
    SimConfigIn,
    SimConfigOut,
)
from payflow.banksim.state import SimState, get_state
from payflow.db import read
from payflow.errors import PayFlowError
from payflow.timestamps import now_ns

router = APIRouter(prefix="/sim", tags=["simulator"])
State = Annotated[SimState, Depends(get_state)]


@router.post("/accounts", status_code=201, response_model=AccountOut, responses=responses(409, 422))
async def post_account(body: AccountIn, state: State) -> Any:
    """Open an account credits can be sent to (`closed: true` for one that refuses them)."""
    async with state.engine.begin() as conn:
        account = await create_account(
            conn,
            bank_code=body.bank_code,
            account_number=body.account_number,
            name=body.name,
            currency=body.currency,
            vpa=body.vpa,
            closed=body.closed,
            now_ns=now_ns(),
        )
    return AccountOut(**dataclasses.asdict(account))


@router.get("/accounts", response_model=AccountList, responses=responses(422))
async def get_accounts(
    state: State,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Any:
    """Accounts by id, a page at a time (`after` = the last id seen)."""
    async with read(state.engine) as conn:
        accounts = await list_accounts(conn, after=after, limit=limit)
    items = [AccountOut(**dataclasses.asdict(account)) for account in accounts]
    return AccountList(items=items, next_after=items[-1].id if len(items) == limit else None)


def _faults(state: SimState) -> FaultList:
    return FaultList(
        items=[
            FaultOut(
                operation=f.operation,
                kind=f.kind,
                times=f.times,
                reference_prefix=f.reference_prefix,
            )
            for f in state.faults.scripted
        ]
    )


@router.post("/faults", status_code=201, response_model=FaultList, responses=responses(422))
async def post_fault(body: FaultIn, state: State) -> Any:
    """Queue a fault for the next `times` matching requests (after those queued)."""
    try:
        state.faults.add(
            ScriptedFault(
                operation=body.operation,
                kind=body.kind,
                times=body.times,
                reference_prefix=body.reference_prefix,
            )
        )
    except OverflowError as error:
        raise PayFlowError("too_many_faults", str(error), http_status=422) from None
    return _faults(state)


@router.get("/faults", response_model=FaultList)
async def get_faults(state: State) -> Any:
    """The scripted faults still to come, in order."""
    return _faults(state)


@router.delete("/faults", status_code=204)
async def delete_faults(state: State) -> Response:
    """Forget every scripted fault."""
    state.faults.clear()
    return Response(status_code=204)


def _config_out(state: SimState) -> SimConfigOut:
    fields = SimConfigOut.model_fields
    return SimConfigOut(**{name: getattr(state.config, name) for name in fields})


@router.get("/config", response_model=SimConfigOut)
async def get_config(state: State) -> Any:
    """Latency, fault rates, seed and statement discrepancies in force."""
    return _config_out(state)


@router.put("/config", response_model=SimConfigOut, responses=responses(422))
async def put_config(body: SimConfigIn, state: State) -> Any:
    """Change the given knobs; the rest keep their values. A seed restarts the fault
    draws and sets the statement discrepancies' seed."""
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    config = dataclasses.replace(state.config, **changes)
    try:
        config.check()
    except ValueError as error:
        raise PayFlowError("invalid_config", str(error), http_status=422) from None
    state.config = config
    state.faults.rates = config.rates()
    if "seed" in changes:
        state.faults.reseed(config.seed)
    return _config_out(state)
