"""The bank's HTTP API: `/v1` (what PayFlow calls) and the app that carries it together
with the `/sim` controls."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from payflow.api.problems import PROBLEM_CONTENT_TYPE, Problem, problem, responses
from payflow.banksim import admin
from payflow.banksim.accounts import ensure_accounts, ensure_schema
from payflow.banksim.config import BankSimConfig
from payflow.banksim.domain import REFERENCE_PATTERN, Credit, FaultKind, parse_day
from payflow.banksim.faults import FaultPlan
from payflow.banksim.schemas import CreditIn, CreditOut
from payflow.banksim.service import (
    complete_credit,
    find_credit,
    processing_references,
    receive_credit,
)
from payflow.banksim.state import SimState, get_state
from payflow.banksim.statements import WRITERS
from payflow.banksim.statements.book import load_statement
from payflow.db import create_engine, read, run_in_transaction
from payflow.errors import PayFlowError
from payflow.timestamps import now_ns, to_rfc3339

log = logging.getLogger(__name__)

RECOVERY_BATCH = 1000
State = Annotated[SimState, Depends(get_state)]
Reference = Annotated[str, Path(pattern=REFERENCE_PATTERN)]


async def _latency(state: SimState) -> None:
    if state.config.latency_ms > 0:
        await asyncio.sleep(state.config.latency_ms / 1000)


def _unavailable() -> PayFlowError:
    return PayFlowError(
        "unavailable", "the bank is not taking requests; nothing was recorded", http_status=503
    )


def _outcome(credit: Credit) -> CreditOut:
    return CreditOut(
        reference=credit.reference,
        status=credit.status,
        reason=credit.reason,
        bank_transaction_id=credit.bank_transaction_id,
        amount=credit.amount,
        currency=credit.currency,
        received_at=to_rfc3339(credit.received_at_ns),
        completed_at=None if credit.completed_at_ns is None else to_rfc3339(credit.completed_at_ns),
    )


async def _complete(state: SimState, reference: str, *, declined: bool, hold: bool) -> Credit:
    if hold:
        await asyncio.sleep(state.config.timeout_hold_s)
    policy = state.statement_policy()
    return await run_in_transaction(
        state.engine,
        lambda conn: complete_credit(
            conn, reference, declined=declined, policy=policy, now_ns=now_ns()
        ),
    )


async def _process(state: SimState, reference: str, fault: FaultKind | None) -> Credit:
    task: asyncio.Task[Credit] = asyncio.create_task(
        _complete(state, reference, declined=fault == "failure", hold=fault == "timeout")
    )
    state.in_flight.add(task)
    task.add_done_callback(state.in_flight.discard)
    return await asyncio.shield(task)


v1 = APIRouter(prefix="/v1", tags=["bank"])


@v1.post(
    "/credits",
    response_model=CreditOut,
    responses=responses(409, 422, 502, 503),
    summary="Credit an account at another bank from PayFlow's account",
)
async def post_credit(body: CreditIn, state: State) -> Any:
    """Idempotent by `reference`: the same request again returns the same outcome and
    never credits twice; another request under a used reference is `reference_reused`.
    The credit is recorded as `processing` (committed) before any processing, so an
    inquiry never says `not_found` for a credit the bank has."""
    await _latency(state)
    request = body.to_domain()
    fault = state.faults.next("credit", request.reference)
    if fault == "unavailable":
        raise _unavailable()
    credit, new = await run_in_transaction(
        state.engine, lambda conn: receive_credit(conn, request, now_ns=now_ns())
    )
    if new and credit.status == "processing":
        credit = await _process(state, request.reference, fault)
    elif fault == "timeout":
        await asyncio.sleep(state.config.timeout_hold_s)
    if fault == "lost_response":
        # What a reverse proxy in front of the bank answers when the bank's connection
        # drops after the bank acted: 502, and no outcome.
        raise PayFlowError(
            "bad_gateway", "the bank's answer was lost; inquire for the outcome", http_status=502
        )
    return _outcome(credit)


@v1.get(
    "/credits/{reference}",
    response_model=CreditOut,
    responses=responses(404, 422, 503),
    summary="Status inquiry",
)
async def get_credit(reference: Reference, state: State) -> Any:
    """The outcome of a credit; 404 `not_found` only if the bank never received it."""
    await _latency(state)
    fault = state.faults.next("inquiry", reference)
    if fault == "unavailable":
        raise _unavailable()
    if fault == "timeout":
        await asyncio.sleep(state.config.timeout_hold_s)
    async with read(state.engine) as conn:
        credit = await find_credit(conn, reference)
    if credit is None:
        raise PayFlowError("not_found", f"no credit {reference} was received", http_status=404)
    return _outcome(credit)


@v1.get(
    "/statements/{day}",
    responses={
        200: {"content": {"text/csv": {}, "text/plain": {}, "application/xml": {}}},
        **responses(422),
    },
    response_class=Response,
    summary="The nostro account's statement for one UTC day",
)
async def get_statement(
    day: Annotated[str, Path(description="YYYY-MM-DD (UTC)")],
    state: State,
    format: Annotated[Literal["csv", "mt940", "camt053"], Query()] = "csv",
) -> Response:
    """Lines booked that day (credits paid, fees, lines nobody asked for), between the
    opening and closing balances."""
    await _latency(state)
    parsed = parse_day(day)
    if parsed is None:
        raise PayFlowError("invalid_date", f"{day!r} is not a date (YYYY-MM-DD)", http_status=422)
    async with read(state.engine) as conn:
        statement = await load_statement(conn, day=parsed)
    write, media_type = WRITERS[format]
    return Response(write(statement), media_type=media_type)


def _problem_response(code: str, detail: str, status: int, **extra: Any) -> JSONResponse:
    return JSONResponse(
        problem(code, detail, status, **extra), status_code=status, media_type=PROBLEM_CONTENT_TYPE
    )


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(PayFlowError)
    async def payflow_error(request: Request, error: PayFlowError) -> JSONResponse:
        response = _problem_response(error.code, error.message, error.http_status)
        if error.http_status == 503:
            response.headers["Retry-After"] = "1"
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
            for e in error.errors()
        ]
        if any(e["type"] == "json_invalid" for e in errors):
            return _problem_response("malformed_json", "the body is not valid JSON", 400)
        return _problem_response(
            "validation_error", "the request is invalid; see `errors`", 422, errors=errors
        )

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        codes = {400: "malformed_json", 404: "route_not_found", 405: "method_not_allowed"}
        code = codes.get(error.status_code, f"http_{error.status_code}")
        return _problem_response(code, str(error.detail), error.status_code)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _problem_response("internal_error", "something went wrong at the bank", 500)


async def _recover(state: SimState) -> None:
    # Credits left `processing` by a stopped process (e.g. during a timeout hold) are
    # completed now: the bank had accepted them, so it finishes them.
    while True:
        async with read(state.engine) as conn:
            references = await processing_references(conn, limit=RECOVERY_BATCH)
        for reference in references:
            await _complete(state, reference, declined=False, hold=False)
        if len(references) < RECOVERY_BATCH:
            return


def create_app(config: BankSimConfig) -> FastAPI:
    """The simulator's ASGI app; its lifespan opens the store, creates the tables and
    accounts, and finishes credits a previous process left processing."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(config.database_url)
        state = SimState(
            config=config, engine=engine, faults=FaultPlan(config.rates(), seed=config.seed)
        )
        try:
            await ensure_schema(engine)
            async with engine.begin() as conn:
                await ensure_accounts(
                    conn,
                    currency=config.currency,
                    demo=config.seed_demo_accounts,
                    now_ns=now_ns(),
                )
            await _recover(state)
            app.state.banksim = state
            yield
        finally:
            for task in list(state.in_flight):
                task.cancel()
            await asyncio.gather(*state.in_flight, return_exceptions=True)
            await engine.dispose()

    app = FastAPI(
        title="PayFlow bank simulator",
        description="A partner bank for PayFlow's payouts: credits, inquiries, statements.",
        lifespan=lifespan,
    )
    _install_error_handlers(app)
    app.include_router(v1)
    app.include_router(admin.router)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    # The routes name their errors as `Problem`s; the schema itself is added here, and
    # FastAPI's own validation error shape is replaced by it (our handler answers so).
    if app.openapi_schema is None:
        document = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        problem_schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(problem_schema.pop("$defs", {}))
        schemas["Problem"] = problem_schema
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        for operations in document["paths"].values():
            for operation in operations.values():
                if "422" in operation["responses"]:
                    operation["responses"]["422"] = responses(422)[422]
        app.openapi_schema = document
    return app.openapi_schema
