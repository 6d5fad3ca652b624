"""The one settings object. Nothing else in PayFlow reads the environment."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DATABASE_URL_DEFAULT = "sqlite+aiosqlite:///./payflow.db"


def normalize_database_url(url: str) -> str:
    """Map the URLs people write (`postgresql://`, `sqlite:///`) to PayFlow's async drivers.

    asyncpg was chosen for PostgreSQL by measurement (docs/decisions.md).
    """
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    return url


class Settings(BaseSettings):
    """PayFlow's configuration, read from `PAYFLOW_*` environment variables."""

    model_config = SettingsConfigDict(env_prefix="PAYFLOW_", extra="ignore")

    database_url: str = DATABASE_URL_DEFAULT
    broker_url: str | None = None
    redis_url: str | None = None
    default_currency: str = "INR"
    # Connections per process; a ledger batch holds one for a few milliseconds.
    # Connections kept open per process (plus a quarter again under bursts). Sized for an
    # API process's concurrency: connections beyond the pool are opened and closed per
    # use, and that churn cost PostgreSQL more CPU than the transfers themselves.
    database_pool_size: int = Field(default=30, ge=1, le=200)
    # TigerBeetle's batch is 8,190 transfers; ours is bounded the same way.
    ledger_batch_size_max: int = Field(default=8190, ge=1, le=100_000)
    ledger_retries_max: int = Field(default=8, ge=0, le=100)
    # A batch that locks more accounts than this first takes one ledger-wide lock on
    # PostgreSQL (see docs/decisions.md, "lock escalation").
    ledger_lock_escalation_accounts: int = Field(default=256, ge=1, le=1_000_000)
    ledger_expiry_batch_size: int = Field(default=1000, ge=1, le=100_000)

    # HTTP API (docs/api.md, docs/configuration.md).
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    # Open connections per API process; beyond it new ones get 503 at once.
    api_connections_max: int = Field(default=1000, ge=1, le=100_000)
    api_body_bytes_max: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    api_page_size_max: int = Field(default=100, ge=1, le=1000)
    # The micro-batcher: concurrent money-moving requests share one ledger batch.
    api_batch_size_max: int = Field(default=512, ge=1, le=4095)
    # Under load (the last batch had company), how long a batch's first request may wait
    # for more; 0 = flush as soon as a flusher is free (batches then grow only while
    # earlier ones are committing). A request on an idle server never waits.
    api_batch_wait_ms_max: float = Field(default=1.0, ge=0, le=100)
    # Batches in flight at once per server (SQLite always uses one), split among
    # `payflow api --workers N` (at least one each). Two: while one batch waits for the
    # database, the next one's Python work runs; more, smaller batches cost more CPU
    # per transfer and lock the same accounts (measured in docs/benchmarks.md).
    api_batch_concurrency: int = Field(default=2, ge=1, le=64)
    # Object allocations between the interpreter's youngest garbage collections in an
    # API process (Python's own default is 700; 0 keeps it). A request allocates
    # thousands of short-lived objects, nearly all freed by reference counting.
    api_gc_threshold: int = Field(default=50_000, ge=0, le=10_000_000)
    # Requests waiting for a batch; beyond this the API answers 503 at once.
    api_batch_queue_max: int = Field(default=10_000, ge=1, le=1_000_000)
    # Graceful shutdown: how long in-flight requests get to finish.
    api_shutdown_timeout_s: float = Field(default=15.0, ge=0, le=600)
    # FastAPI's OpenTelemetry instrumentation (spans, metrics and logs per request, sent to
    # the globally configured providers). Off by default: it asks for the providers on
    # every request, about 8 % of a transfer's CPU even with none configured; PayFlow's own
    # figures are at /metrics.
    api_opentelemetry: bool = False

    # Identity.
    access_token_ttl_s: int = Field(default=900, ge=30, le=86_400)
    refresh_token_ttl_s: int = Field(default=30 * 86_400, ge=60, le=365 * 86_400)
    # argon2id cost (RFC 9106's second recommended option by default); lower only in tests.
    password_hash_time_cost: int = Field(default=3, ge=1, le=20)
    password_hash_memory_kib: int = Field(default=65_536, ge=8, le=4 * 1024 * 1024)
    password_hash_parallelism: int = Field(default=4, ge=1, le=64)

    # Idempotency keys are kept at least this long (IETF draft: clients retry for a day).
    idempotency_ttl_s: int = Field(default=86_400, ge=86_400, le=30 * 86_400)
    # An in-flight key whose process died is taken over after this long.
    idempotency_lock_s: float = Field(default=60.0, ge=1, le=3600)

    # Rate limits: requests per window per principal and route.
    rate_limit_requests: int = Field(default=600, ge=1, le=10_000_000)
    rate_limit_window_s: int = Field(default=60, ge=1, le=86_400)
    # Unauthenticated auth routes, per client address.
    rate_limit_auth_requests: int = Field(default=60, ge=1, le=10_000_000)
    # Login brute-force protection: failed logins per e-mail before it is locked out.
    login_failures_max: int = Field(default=5, ge=1, le=1000)
    login_lockout_s: int = Field(default=900, ge=1, le=86_400)

    # Wallet top-ups from the user's linked (simulated) bank: the largest single top-up.
    topup_amount_max: int = Field(default=10_000_000, ge=1)
    # Background sweeps run by `payflow api` / `payflow up`.
    sweep_interval_s: float = Field(default=1.0, gt=0, le=3600)
    # The periodic ledger audit whose last result /health shows; 0 turns it off.
    audit_interval_s: float = Field(default=300.0, ge=0, le=86_400)
    # Tests that drive sweeps themselves turn the background tasks off.
    background_tasks: bool = True

    # Events (docs/events.md). Broker names (exchange, stream, queues) start with this, so
    # several PayFlow installations (or test runs) can share one broker.
    broker_namespace: str = Field(default="payflow", pattern=r"^[a-z][a-z0-9_]{0,31}$")
    # Redis Streams: the stream is trimmed to about this many entries (bounds memory;
    # entries are trimmed oldest first, after every group has read far past them).
    broker_stream_length_max: int = Field(default=1_000_000, ge=10_000, le=100_000_000)
    # RabbitMQ queue type. `classic`: durable, persistent, survives restarts — right for one
    # node. `quorum`: replicated across a cluster; on RabbitMQ before 3.13 a single node's
    # quorum queues can stay leaderless after a crash (docs/events.md), so pick it for
    # clusters on RabbitMQ 3.13 or later. Changing it needs new queues (a new namespace).
    broker_rabbitmq_queue_type: Literal["classic", "quorum"] = "classic"
    # Events the relay moves per round (one query, one confirmed publish, one update).
    relay_batch_size_max: int = Field(default=500, ge=1, le=10_000)
    # How often an idle relay or embedded-log consumer looks for new events.
    events_poll_interval_ms: float = Field(default=50.0, ge=1, le=60_000)
    # A relay partition or embedded-log position is owned by one process at a time, for
    # this long unless renewed: a crashed owner is replaced after at most this.
    events_lease_s: float = Field(default=10.0, ge=0.5, le=3600)
    # Deliveries a consumer handles in one transaction.
    consumer_batch_size_max: int = Field(default=200, ge=1, le=10_000)
    # Attempts per delivery before it is parked in the dead-letter queue, and the first
    # back-off between attempts (doubling each time, with jitter, up to 30 s).
    consumer_attempts_max: int = Field(default=5, ge=1, le=100)
    consumer_backoff_ms: float = Field(default=100.0, ge=0, le=60_000)
    # A delivery not acknowledged within this long is handed to another worker
    # (JetStream's ack wait, Redis Streams' reclaim); longer than a batch's retries.
    consumer_ack_wait_s: float = Field(default=30.0, ge=1, le=86_400)
    # Published events (and consumers' records of them) are kept this long for the
    # feed and for de-duplication, then deleted in rounds of at most the batch.
    events_retention_s: int = Field(default=7 * 86_400, ge=3600, le=365 * 86_400)
    events_cleanup_batch_max: int = Field(default=10_000, ge=1, le=1_000_000)
    events_cleanup_interval_s: float = Field(default=60.0, gt=0, le=86_400)

    # Partner-bank simulator (docs/banksim.md): `payflow bank-sim`, and the one `payflow up`
    # runs. Its own store, never PayFlow's database. Fault rates are probabilities per
    # request (together at most 1); a seed makes faults and statement discrepancies
    # repeatable. Fees are minor units of the nostro account's currency per credit.
    banksim_host: str = "127.0.0.1"
    banksim_port: int = Field(default=8081, ge=1, le=65535)
    banksim_database_url: str = "sqlite+aiosqlite:///./payflow-banksim.db"
    banksim_latency_ms: float = Field(default=0.0, ge=0, le=60_000)
    banksim_failure_rate: float = Field(default=0.0, ge=0, le=1)
    banksim_timeout_rate: float = Field(default=0.0, ge=0, le=1)
    banksim_lost_response_rate: float = Field(default=0.0, ge=0, le=1)
    banksim_unavailable_rate: float = Field(default=0.0, ge=0, le=1)
    # How long a "timed out" credit is held before the bank processes it anyway.
    banksim_timeout_hold_s: float = Field(default=10.0, ge=0, le=600)
    banksim_seed: int | None = None
    banksim_fee_per_credit: int = Field(default=0, ge=0, le=2**62)
    banksim_missing_line_rate: float = Field(default=0.0, ge=0, le=1)
    banksim_unexpected_line_rate: float = Field(default=0.0, ge=0, le=1)

    # Payouts (docs/payouts.md): money out to other banks through the partner bank's API
    # (`payflow bank-sim` here; `payflow up` runs one in-process at this address).
    bank_url: str = Field(default="http://127.0.0.1:8081", pattern=r"^https?://[^\s]+$")
    # One call to the bank; past it the outcome is unknown and the payout asks again.
    bank_timeout_s: float = Field(default=5.0, gt=0, le=300)
    # A saga still running this long after its last step is swept: its pending step is
    # taken without waiting for its event, and the bank is asked about its credit. The
    # bank is told not to act on a credit past this deadline, which makes "never
    # received" a final answer after it.
    payout_deadline_s: float = Field(default=60.0, ge=1, le=7 * 86_400)
    # Back-off between bank calls for one payout: doubling from the base, with jitter.
    payout_retry_base_s: float = Field(default=1.0, gt=0, le=3600)
    payout_retry_cap_s: float = Field(default=30.0, gt=0, le=86_400)
    # Bank calls a worker makes at once, and payouts a sweep round moves at most.
    payout_batch_size_max: int = Field(default=50, ge=1, le=1000)
    # How often an idle bank caller looks for due calls, and how often the sweeper runs.
    payout_poll_interval_ms: float = Field(default=200.0, ge=1, le=60_000)
    payout_sweep_interval_s: float = Field(default=5.0, gt=0, le=3600)
    # The largest single payout, in minor units.
    payout_amount_max: int = Field(default=100_000_000, ge=1)

    # Settlement (docs/settlement.md): each merchant is paid its succeeded payments, less
    # refunds and fees, in one batch per cycle (the merchant's `settlement_interval_s`,
    # daily by default) through the payouts saga. A worker running the `settlement`
    # consumer looks for merchants whose cycle is due this often.
    settlement_poll_interval_s: float = Field(default=10.0, gt=0, le=3600)
    # Payments in one settlement at most: a merchant with more waits for the next
    # settlement, which the cycle then runs at once rather than a whole interval later.
    settlement_items_max: int = Field(default=1000, ge=1, le=10_000)
    # Merchants one round of the loop (or one operator run of all merchants) settles.
    settlement_merchants_max: int = Field(default=100, ge=1, le=10_000)

    # Merchant payments (docs/payments.md). A manual-capture payment's authorization (a
    # pending ledger transfer) expires after this long: the ledger voids it and the sweep
    # marks the payment FAILED `authorization_expired`, in rounds of at most the batch.
    payment_authorization_expiry_s: int = Field(default=7 * 86_400, ge=1, le=30 * 86_400)
    payment_sweep_batch_size: int = Field(default=500, ge=1, le=100_000)

    # Notifications (docs/notifications.md). E-mails are always queued; a mailer sends them
    # only where an SMTP server is set: `smtp://host:1025`, `smtps://user:pass@host:465`.
    smtp_url: str | None = Field(default=None, pattern=r"^smtps?://[^\s]+$")
    # One address, with or without a display name; no line breaks (it becomes a header).
    smtp_from: str = Field(
        default="PayFlow <no-reply@payflow.local>",
        pattern=r"^([^<>\r\n]*<[^<>@\s]+@[^<>@\s]+>|[^<>@\s]+@[^<>@\s]+)$",
    )
    # The whole exchange for one e-mail (connect, TLS, commands); past it the attempt
    # counts as failed, so a slow mail server never holds a mailer up for long.
    smtp_timeout_s: float = Field(default=10.0, gt=0, le=300)
    # Attempts per e-mail before it is marked failed, and the first back-off between
    # attempts (doubling each time, with jitter, up to an hour).
    mail_attempts_max: int = Field(default=8, ge=1, le=100)
    mail_backoff_s: float = Field(default=30.0, gt=0, le=86_400)
    # E-mails a mailer claims per round and sends at once (one connection each).
    mail_batch_size_max: int = Field(default=10, ge=1, le=1000)
    # How often an idle mailer looks for due e-mails.
    mail_poll_interval_s: float = Field(default=1.0, gt=0, le=3600)

    # Webhooks (docs/webhooks.md). A delivery is tried at once, then again after each wait
    # of the retry schedule in turn (its last wait repeats), each wait with ±20 % jitter,
    # up to `webhook_attempts_max` attempts; then it is given up. The default spreads 8
    # attempts over about 27 hours. A list: JSON in the environment (`[5, 300, 1800]`).
    webhook_retry_schedule_s: list[float] = Field(
        default_factory=lambda: [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0],
        min_length=1,
        max_length=50,
    )
    webhook_attempts_max: int = Field(default=8, ge=1, le=50)
    # One attempt, from connecting to reading the answer; past it the attempt has failed.
    webhook_timeout_s: float = Field(default=15.0, gt=0, le=120)
    # An endpoint is disabled (and its owner told) when all its attempts have failed for
    # this long, or when this many of its deliveries in a row were given up on.
    webhook_disable_after_s: float = Field(default=5 * 86_400, gt=0, le=365 * 86_400)
    webhook_disable_after_failed_deliveries: int = Field(default=50, ge=1, le=100_000)
    # Endpoint URLs on private, loopback, link-local or otherwise non-public addresses are
    # refused, at creation and at every delivery, unless allow-listed here by host name
    # (`hooks.internal`) or network (`10.1.0.0/16`, `127.0.0.1/32`, `::1/128`).
    webhook_allowed_private: list[str] = Field(default_factory=list, max_length=100)
    webhook_endpoints_per_owner_max: int = Field(default=20, ge=1, le=1000)
    # Deliveries a dispatcher claims per round and sends at once (one connection each).
    webhook_batch_size_max: int = Field(default=50, ge=1, le=1000)
    # How often an idle dispatcher looks for due deliveries.
    webhook_poll_interval_s: float = Field(default=1.0, gt=0, le=3600)
    # The most deliveries one range replay may re-send (a larger range is refused).
    webhook_replay_max: int = Field(default=1000, ge=1, le=100_000)

    @field_validator("webhook_retry_schedule_s")
    @classmethod
    def _retry_waits(cls, value: list[float]) -> list[float]:
        if any(not 0 <= wait <= 7 * 86_400 for wait in value):
            raise ValueError("each retry wait is 0 to 604800 seconds")
        return value

    @field_validator("webhook_allowed_private")
    @classmethod
    def _allowed_private(cls, value: list[str]) -> list[str]:
        from payflow.webhooks.network import parse_allowed

        parse_allowed(value)
        return value

    @field_validator("database_url")
    @classmethod
    def _normalize(cls, value: str) -> str:
        return normalize_database_url(value)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
