"""What one API process holds: engine, batchers, keys, limiter, metrics."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine

from payflow.api.batcher import MicroBatcher
from payflow.api.idempotency import IdempotencyStore
from payflow.api.ledger_batch import BatchResult, LedgerWork
from payflow.api.ratelimit import RateLimiter
from payflow.config import Settings
from payflow.identity.domain import Principal
from payflow.identity.tokens import SigningKeys
from payflow.ledger.audit import AuditReport

# API keys are checked against the database at most this often per key per process, so a
# revoked key stops working within this many seconds.
API_KEY_CACHE_TTL_S = 5.0
API_KEY_CACHE_MAX = 10_000


@dataclass
class AuditStatus:
    report: AuditReport | None = None
    checked_at_ns: int | None = None
    duration_ms: float | None = None
    error: str | None = None


@dataclass
class ApiKeyCache:
    entries: dict[str, tuple[float, Principal]] = field(default_factory=dict)

    def get(self, token: str) -> Principal | None:
        entry = self.entries.get(token)
        if entry is None or time.monotonic() - entry[0] > API_KEY_CACHE_TTL_S:
            return None
        return entry[1]

    def put(self, token: str, principal: Principal) -> None:
        if len(self.entries) >= API_KEY_CACHE_MAX:
            self.entries.clear()
        self.entries[token] = (time.monotonic(), principal)


@dataclass
class AppState:
    settings: Settings
    engine: AsyncEngine
    keys: SigningKeys
    ledger: MicroBatcher[LedgerWork, BatchResult]
    idempotency: IdempotencyStore
    limiter: RateLimiter
    api_keys: ApiKeyCache = field(default_factory=ApiKeyCache)
    audit: AuditStatus = field(default_factory=AuditStatus)
    responses: Counter[tuple[str, str, int]] = field(default_factory=Counter)
