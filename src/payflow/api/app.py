"""The ASGI application: routes, error shapes, middleware, and the background sweeps."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp

from payflow import __version__
from payflow.api import ops
from payflow.api.fast_path import TransferFastPath
from payflow.api.idempotency import IdempotencyStore, sweep_expired
from payflow.api.ledger_batch import create_ledger_batcher, create_ledger_engine
from payflow.api.middleware import BodyLimit, ResponseHeaders
from payflow.api.problems import PROBLEM_CONTENT_TYPE, Problem, problem, responses
from payflow.api.ratelimit import create_rate_limiter
from payflow.api.state import AppState
from payflow.config import Settings, get_settings
from payflow.db import create_engine, read
from payflow.errors import PayFlowError
from payflow.events import api as events_api
from payflow.identity import api as identity_api
from payflow.identity.tokens import SigningKeys, ensure_signing_key
from payflow.ledger import audit, expire_pending_transfers
from payflow.merchants import api as merchants_api
from payflow.notifications import api as notifications_api
from payflow.operators import api as operators_api
from payflow.payments import api as payments_api
from payflow.payments.sweep import sweep_expired_authorizations
from payflow.payouts import api as payouts_api
from payflow.rewards import api as rewards_api
from payflow.settlement import api as settlement_api
from payflow.timestamps import now_ns
from payflow.transfers import api as transfers_api
from payflow.wallets import api as wallets_api
from payflow.wallets.service import ensure_system_accounts
from payflow.webhooks import api as webhooks_api

log = logging.getLogger(__name__)

KEYS_RELOAD_INTERVAL_S = 60.0
IDEMPOTENCY_SWEEP_BATCH = 1000

# Response headers, documented once under `components/headers`.
HEADERS: dict[str, Any] = {
    "RateLimit-Policy": {
        "description": 'The quota counted against: `"<policy>";q=<requests>;w=<window s>`',
        "schema": {"type": "string"},
    },
    "RateLimit": {
        "description": 'What is left of it: `"<policy>";r=<remaining>;t=<seconds to reset>`',
        "schema": {"type": "string"},
    },
    "Retry-After": {
        "description": "Seconds to wait before retrying",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
    "Idempotent-Replayed": {
        "description": "`true` when this is the stored response to an earlier request with "
        "the same Idempotency-Key",
        "schema": {"type": "string", "enum": ["true"]},
    },
}
# What a money-moving request stores and replays: its success, or the problem its checks
# or the ledger answered with.
_REPLAYABLE = ("200", "201", "404", "409", "422")


class PayFlowAPI(FastAPI):
    # The largest body the lean path for transfers reads (create_app sets it).
    lean_bytes_max = 0

    def build_middleware_stack(self) -> ASGIApp:
        """Starlette's stack (its error middleware outermost) inside the lean path for
        `POST /v1/transfers`: that path talks to the server's own `send` (so it can write
        a response in one piece) and answers its own unexpected errors."""
        return TransferFastPath(super().build_middleware_stack(), bytes_max=self.lean_bytes_max)

    def openapi(self) -> dict[str, Any]:
        """The generated document plus what the routes alone cannot say: the `Problem`
        schema (also for FastAPI's own 422s), rate-limit and `Retry-After` headers, and
        idempotent replays."""
        if self.openapi_schema is None:
            document = get_openapi(
                title=self.title,
                version=self.version,
                description=self.description,
                routes=self.routes,
            )
            components = document.setdefault("components", {})
            schemas = components.setdefault("schemas", {})
            problem_schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(problem_schema.pop("$defs", {}))
            schemas["Problem"] = problem_schema
            # FastAPI lists its own validation error shape; our handler answers with a
            # Problem (`validation_error`, its `errors` naming the fields).
            for name in ("HTTPValidationError", "ValidationError"):
                schemas.pop(name, None)
            components["headers"] = HEADERS
            for path, operations in document["paths"].items():
                for operation in operations.values():
                    if "422" in operation["responses"]:
                        operation["responses"]["422"] = responses(422)[422]
                    _document_headers(path, operation)
            self.openapi_schema = document
        return self.openapi_schema


def _document_headers(path: str, operation: dict[str, Any]) -> None:
    parameters = operation.get("parameters", [])
    idempotent = any(p.get("name") == "Idempotency-Key" for p in parameters)
    for status, response in operation["responses"].items():
        names = []
        # Every /v1 request is counted (per principal, or per address before login); one
        # refused before it is counted (e.g. for a bad token) has no such headers.
        if path.startswith("/v1/"):
            names += ["RateLimit-Policy", "RateLimit"]
        if status == "429" or (
            status == "503" and PROBLEM_CONTENT_TYPE in response.get("content", {})
        ):
            names.append("Retry-After")
        if idempotent and status in _REPLAYABLE:
            names.append("Idempotent-Replayed")
        if names:
            response["headers"] = {name: {"$ref": f"#/components/headers/{name}"} for name in names}


def _problem_response(code: str, detail: str, status: int, **extra: Any) -> JSONResponse:
    return JSONResponse(
        problem(code, detail, status, **extra), status_code=status, media_type=PROBLEM_CONTENT_TYPE
    )


def _validation_errors(error: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {
            "loc": list(e.get("loc", ())),
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in error.errors()
    ]


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(PayFlowError)
    async def payflow_error(request: Request, error: PayFlowError) -> JSONResponse:
        headers = (
            getattr(request.state, "rate_limit_headers", None) if error.http_status == 429 else None
        )
        response = _problem_response(error.code, error.message, error.http_status)
        if error.http_status == 503:
            response.headers["Retry-After"] = "1"
        if headers:
            response.headers.update(headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        errors = _validation_errors(error)
        if any(e["type"] == "json_invalid" for e in errors):
            return _problem_response("malformed_json", "the body is not valid JSON", 400)
        return _problem_response(
            "validation_error", "the request is invalid; see `errors`", 422, errors=errors
        )

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        # 400: Starlette could not read the body (e.g. it is not UTF-8).
        codes = {400: "malformed_json", 404: "route_not_found", 405: "method_not_allowed"}
        code = codes.get(error.status_code, f"http_{error.status_code}")
        response = _problem_response(code, str(error.detail), error.status_code)
        for name, value in (error.headers or {}).items():
            response.headers[name] = value
        return response

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        # Starlette answers this outside the middleware that counts responses.
        state = getattr(request.app.state, "payflow", None)
        if state is not None:
            route = getattr(request.scope.get("route"), "path", "unmatched")
            state.responses[(request.method, route, 500)] += 1
        return _problem_response("internal_error", "something went wrong on our side", 500)


async def _every(interval_s: float, name: str, work: Any) -> None:
    while True:
        try:
            await work()
        except Exception:
            log.exception("background %s failed; retrying in %.1f s", name, interval_s)
        await asyncio.sleep(interval_s)


def _background(state: AppState) -> list[asyncio.Task[None]]:
    settings = state.settings

    async def sweep() -> None:
        while True:
            async with state.engine.begin() as conn:
                expired = await expire_pending_transfers(conn)
            if expired < settings.ledger_expiry_batch_size:
                break
        await sweep_expired_authorizations(
            state.engine, batch_size=settings.payment_sweep_batch_size
        )
        async with state.engine.begin() as conn:
            await sweep_expired(conn, limit=IDEMPOTENCY_SWEEP_BATCH)
        if (
            state.keys.needs_reload()
            and time.monotonic() - state.keys.loaded_at > KEYS_RELOAD_INTERVAL_S
        ):
            await state.keys.load(state.engine)

    async def run_audit() -> None:
        started = time.perf_counter()
        try:
            async with read(state.engine) as conn:
                state.audit.report = await audit(conn)
            state.audit.error = None
        except Exception as error:
            state.audit.error = f"{type(error).__name__}: {error}"
            raise
        finally:
            state.audit.checked_at_ns = now_ns()
            state.audit.duration_ms = round((time.perf_counter() - started) * 1000, 1)

    tasks = [asyncio.create_task(_every(settings.sweep_interval_s, "sweep", sweep))]
    if settings.audit_interval_s > 0:
        tasks.append(asyncio.create_task(_every(settings.audit_interval_s, "audit", run_audit)))
    return tasks


def create_app(settings: Settings | None = None) -> FastAPI:
    """PayFlow's HTTP API. The lifespan opens the database, batchers and sweeps."""
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings=settings)
        await ensure_signing_key(engine)
        keys = SigningKeys()
        await keys.load(engine)
        async with engine.begin() as conn:
            await ensure_system_accounts(conn, settings.default_currency)
        idempotency = IdempotencyStore(engine, settings)
        ledger_engine = create_ledger_engine(engine, settings)
        state = AppState(
            settings=settings,
            engine=engine,
            keys=keys,
            ledger=create_ledger_batcher(ledger_engine, settings, idempotency),
            idempotency=idempotency,
            limiter=create_rate_limiter(settings.redis_url),
        )
        app.state.payflow = state
        tasks = _background(state) if settings.background_tasks else []
        try:
            yield
        finally:
            # Requests have finished (the server drains them first); let queued batches
            # commit, then stop the sweeps and close connections.
            await state.ledger.close()
            if ledger_engine is not engine:
                await ledger_engine.dispose()
            await state.idempotency.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await state.limiter.close()
            await engine.dispose()

    app = PayFlowAPI(
        title="PayFlow API",
        version=__version__,
        description="Wallets, P2P transfers and holds on a double-entry ledger. "
        "Amounts are integer minor units. Money-moving POSTs need an Idempotency-Key.",
        lifespan=lifespan,
        telemetry={
            "tracing": settings.api_opentelemetry,
            "metrics": settings.api_opentelemetry,
            "logs": settings.api_opentelemetry,
        },
    )
    _install_error_handlers(app)
    for router in (
        identity_api.router,
        wallets_api.router,
        transfers_api.router,
        merchants_api.router,
        payments_api.router,
        payouts_api.router,
        settlement_api.router,
        operators_api.router,
        rewards_api.operator_router,
        rewards_api.router,
        notifications_api.router,
        webhooks_api.router,
        events_api.router,
        ops.router,
    ):
        app.include_router(router)
    app.add_middleware(ResponseHeaders)
    app.add_middleware(BodyLimit, bytes_max=settings.api_body_bytes_max)
    app.lean_bytes_max = settings.api_body_bytes_max
    return app
