"""Operations routes: liveness with the last ledger audit, readiness, metrics."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field
from sqlalchemy import text

from payflow import __version__
from payflow.api.deps import State
from payflow.api.state import AppState
from payflow.db import read
from payflow.timestamps import to_rfc3339

router = APIRouter(tags=["operations"])


class LedgerAuditOut(BaseModel):
    """The last periodic ledger audit; all null until the first one has run."""

    ok: bool | None = Field(description="Every invariant held (null: not run yet)")
    checked_at: str | None
    duration_ms: float | None
    violations: int | None = Field(description="How many invariants were broken")
    error: str | None = Field(description="Why the last audit could not run, if it failed")


class HealthOut(BaseModel):
    status: Literal["ok"]
    version: str
    ledger_audit: LedgerAuditOut


def _audit(state: AppState) -> LedgerAuditOut:
    status = state.audit
    return LedgerAuditOut(
        ok=status.report.ok if status.report is not None else None,
        checked_at=to_rfc3339(status.checked_at_ns) if status.checked_at_ns else None,
        duration_ms=status.duration_ms,
        violations=len(status.report.violations) if status.report is not None else None,
        error=status.error,
    )


@router.get("/health")
async def health(state: State) -> HealthOut:
    """Alive, with the last periodic ledger audit (it runs in the background, never per
    request)."""
    return HealthOut(status="ok", version=__version__, ledger_audit=_audit(state))


@router.get(
    "/ready",
    response_class=PlainTextResponse,
    responses={
        200: {"description": "`ready`", "content": {"text/plain": {"example": "ready\n"}}},
        503: {
            "description": "The database is unreachable",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
    },
)
async def ready(state: State) -> PlainTextResponse:
    """Ready to serve: the database answers."""
    try:
        async with read(state.engine) as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as error:
        return PlainTextResponse(f"not ready: {type(error).__name__}\n", status_code=503)
    return PlainTextResponse("ready\n")


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(state: State) -> PlainTextResponse:
    """Prometheus text format."""
    lines = [
        "# TYPE payflow_http_responses_total counter",
        *(
            f'payflow_http_responses_total{{method="{m}",route="{r}",status="{s}"}} {n}'
            for (m, r, s), n in sorted(state.responses.items())
        ),
        "# TYPE payflow_ledger_batches_total counter",
        f"payflow_ledger_batches_total {state.ledger.stats.batches}",
        "# TYPE payflow_ledger_batched_requests_total counter",
        f"payflow_ledger_batched_requests_total {state.ledger.stats.items}",
        "# TYPE payflow_ledger_batch_size_max gauge",
        f"payflow_ledger_batch_size_max {state.ledger.stats.size_max_seen}",
        "# TYPE payflow_ledger_batch_concurrency gauge",
        f"payflow_ledger_batch_concurrency {state.ledger.concurrency}",
        "# TYPE payflow_overloaded_total counter",
        f"payflow_overloaded_total {state.ledger.stats.rejected}",
        "# TYPE payflow_ledger_audit_ok gauge",
    ]
    report = state.audit.report
    lines.append(f"payflow_ledger_audit_ok {int(report.ok) if report is not None else -1}")
    return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")
