"""Engines for PostgreSQL (asyncpg) and SQLite (aiosqlite, WAL, `BEGIN IMMEDIATE`).

Entrypoints own transactions: `engine.begin()` opens one, and `run_in_transaction`
also retries the work when the database reports a conflict that a retry resolves
(deadlock, serialization failure, a concurrent insert of the same idempotency key).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from payflow.config import Settings, get_settings, normalize_database_url

T = TypeVar("T")

# SQLSTATEs a retry resolves: serialization_failure, deadlock_detected, unique_violation
# (two transactions inserted the same client-chosen id; the retry reports "exists").
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01", "23505"})
SQLITE_BUSY_TIMEOUT_MS = 30_000
READ_ONLY_OPTION = "payflow_read_only"


class Conflict(Exception):
    """Raised inside a transaction when it must be rolled back and run again."""


def is_postgresql(conn: AsyncConnection | AsyncEngine) -> bool:
    """True when the connection or engine talks to PostgreSQL."""
    return conn.dialect.name == "postgresql"


def create_engine(
    url: str | None = None,
    *,
    settings: Settings | None = None,
    server_settings: dict[str, str] | None = None,
) -> AsyncEngine:
    """An async engine for `url` (default: the configured database); `server_settings`
    are PostgreSQL settings for its sessions."""
    settings = settings or get_settings()
    url = normalize_database_url(url or settings.database_url)
    if url.startswith("sqlite"):
        engine = create_async_engine(
            url,
            pool_size=settings.database_pool_size,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        )
        _configure_sqlite(engine)
        return engine
    return create_async_engine(
        url,
        pool_size=settings.database_pool_size,
        max_overflow=max(1, settings.database_pool_size // 4),
        pool_pre_ping=False,
        connect_args={
            "server_settings": {"application_name": "payflow", **(server_settings or {})}
        },
    )


def _configure_sqlite(engine: AsyncEngine) -> None:
    # The Python sqlite3 module's own transaction handling is switched off so that every
    # transaction begins with BEGIN IMMEDIATE: a writer takes the write lock up front and
    # never fails half-way with SQLITE_BUSY on lock upgrade.
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Reads (see `read`) begin deferred: a snapshot, no write lock, so a request
        # holding a read connection never blocks a writer (or itself) on the one lock.
        deferred = conn.get_execution_options().get(READ_ONLY_OPTION, False)
        conn.exec_driver_sql("BEGIN" if deferred else "BEGIN IMMEDIATE")


@contextlib.asynccontextmanager
async def read(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection for reads only. On SQLite it takes no write lock."""
    async with engine.connect() as conn:
        yield await conn.execution_options(**{READ_ONLY_OPTION: True})


class _LazyRead:
    """A read connection checked out of the pool on its first statement: a request whose
    reads all hit a process cache (wallets) never takes a connection."""

    _DELEGATED = frozenset({"execute", "scalar", "scalars", "exec_driver_sql", "stream"})

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect
        self._conn: AsyncConnection | None = None
        self._opened: contextlib.AbstractAsyncContextManager[AsyncConnection] | None = None

    async def connection(self) -> AsyncConnection:
        if self._conn is None:
            self._opened = read(self.engine)
            self._conn = await self._opened.__aenter__()
        return self._conn

    def __getattr__(self, name: str) -> Any:
        if name not in self._DELEGATED:
            raise AttributeError(f"a lazy read connection has no {name!r}")

        async def delegated(*args: Any, **kwargs: Any) -> Any:
            return await getattr(await self.connection(), name)(*args, **kwargs)

        return delegated

    async def close(self, *exc_info: Any) -> None:
        if self._opened is not None:
            await self._opened.__aexit__(*exc_info)


@contextlib.asynccontextmanager
async def read_lazily(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """Like `read`, but the connection is only taken from the pool when a statement
    needs it. Offers `engine`, `dialect` and the statement methods (execute, scalar,
    scalars, exec_driver_sql, stream)."""
    lazy = _LazyRead(engine)
    try:
        yield lazy  # type: ignore[misc]
    except BaseException as error:
        await lazy.close(type(error), error, error.__traceback__)
        raise
    await lazy.close(None, None, None)


async def driver_connection(conn: AsyncConnection) -> Any:
    """The asyncpg connection under `conn`, inside `conn`'s transaction.

    The ledger's batch statements go to the driver directly: SQLAlchemy's result layer
    costs more per row than the rest of the batch. SQLAlchemy begins its asyncpg
    transaction lazily on the first statement, so it is begun here if it has not been
    yet; everything then commits or rolls back with `conn`. (This uses the adapter's
    `_transaction`/`_start_transaction`; tests/test_db.py pins that behaviour.)
    """
    assert is_postgresql(conn), "driver_connection is for PostgreSQL"
    if not conn.in_transaction():
        # Autobegin, as SQLAlchemy would on its own next statement: otherwise a later
        # `conn.rollback()` would not know there is a transaction to roll back.
        await conn.begin()
    # The pooled connection is already checked out: reach it synchronously rather than
    # through `get_raw_connection()`, which costs a greenlet round trip per call.
    sync = conn.sync_connection
    assert sync is not None, "connection is closed"
    fairy = sync.connection
    adapter = fairy.dbapi_connection
    assert adapter is not None
    if adapter._transaction is None:
        await adapter._start_transaction()
    return fairy.driver_connection


async def lock_name(conn: AsyncConnection, name: str) -> None:
    """Hold a lock on `name` until `conn`'s transaction ends (PostgreSQL's advisory
    transaction lock on a key derived from it). SQLite's one writer serializes
    transactions already: there it does nothing."""
    if is_postgresql(conn):
        digest = hashlib.sha256(name.encode()).digest()
        key = int.from_bytes(digest[:8], "big", signed=True)
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def is_retryable(error: BaseException) -> bool:
    """True for errors that mean "run the whole transaction again"."""
    if isinstance(error, Conflict):
        return True
    # The ledger's hot path talks to asyncpg directly (`driver_connection`), so its errors
    # arrive unwrapped, with the SQLSTATE on the error itself.
    cause = error.orig if isinstance(error, DBAPIError) else error
    sqlstate = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    return sqlstate in _RETRYABLE_SQLSTATES


async def run_in_transaction(
    engine: AsyncEngine,
    work: Callable[[AsyncConnection], Awaitable[T]],
    *,
    retries_max: int | None = None,
) -> T:
    """Run `work(conn)` in a transaction; retry it on conflicts, with jittered backoff."""

    async def attempt() -> T:
        async with engine.begin() as conn:
            return await work(conn)

    return await _retrying(attempt, retries_max)


async def _retrying(attempt: Callable[[], Awaitable[T]], retries_max: int | None) -> T:
    if retries_max is None:
        retries_max = get_settings().ledger_retries_max
    retries = 0
    while True:
        try:
            return await attempt()
        except Exception as error:
            if not is_retryable(error) or retries >= retries_max:
                raise
            retries += 1
            await asyncio.sleep(random.uniform(0, 0.002 * 2**retries))


class HeldConnections:
    """Connections of `engine` kept checked out between transactions, for a caller that
    runs short transactions back to back (the API's ledger batches): a pool checkout and
    return cost more CPU than a small batch's own statements.

    With `begin_ahead` (PostgreSQL), the transactions are begun and ended on the driver
    (SQLAlchemy's connection is in autocommit and sends neither): when `begin_ahead()`
    says another transaction follows soon, a commit sends `COMMIT; BEGIN` in one round
    trip, and the next transaction starts with its first statement. A connection left
    idle in such an empty transaction (it has no snapshot and no transaction id yet) has
    it rolled back after `BEGUN_IDLE_S`.

    A connection goes back to the pool (and is discarded there if it is broken) when a
    transaction on it fails for good or is cancelled, and all of them on `close`; one
    whose transaction on the driver could not be ended is discarded, never pooled.
    """

    def __init__(self, engine: AsyncEngine, *, begin_ahead: Callable[[], bool] | None = None):
        self.engine = engine
        self._idle: list[AsyncConnection] = []
        self._begin_ahead = begin_ahead if is_postgresql(engine) else None
        self._ending: set[asyncio.Task[None]] = set()

    async def _connect(self) -> AsyncConnection:
        conn = await self.engine.connect()
        if self._begin_ahead is not None:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
        return conn

    async def run(
        self,
        work: Callable[[AsyncConnection], Awaitable[T]],
        *,
        retries_max: int | None = None,
        keep_on: tuple[type[Exception], ...] = (),
    ) -> T:
        """`run_in_transaction` on a held connection. `keep_on`: errors of the work itself
        (raised after its transaction was rolled back) that leave the connection sound."""
        conn = self._idle.pop() if self._idle else await self._connect()

        async def attempt() -> T:
            async with conn.begin():
                return await work(conn)

        try:
            result = await _retrying(
                attempt if self._begin_ahead is None else lambda: self._on_driver(conn, work),
                retries_max,
            )
        except keep_on:
            self._idle.append(conn)
            raise
        except BaseException:
            await self._discard(conn)
            raise
        self._idle.append(conn)
        return result

    async def _on_driver(
        self, conn: AsyncConnection, work: Callable[[AsyncConnection], Awaitable[T]]
    ) -> T:
        assert self._begin_ahead is not None
        driver = _driver_of(conn)
        if not driver.is_in_transaction():
            await driver.execute("BEGIN")
        try:
            # SQLAlchemy's transaction only marks the work's bounds (ledger statements ask
            # whether they are the first of theirs); in autocommit it sends nothing.
            async with conn.begin():
                result = await work(conn)
        except Exception:
            await driver.execute("ROLLBACK")
            raise
        if self._begin_ahead():
            await driver.execute("COMMIT; BEGIN")
            loop = asyncio.get_running_loop()
            conn.info[_BEGUN_AHEAD_AT] = loop.time()
            loop.call_later(BEGUN_IDLE_S, self._end_if_idle, conn)
        else:
            await driver.execute("COMMIT")
        return result

    def _end_if_idle(self, conn: AsyncConnection) -> None:
        """Roll back the empty transaction of a connection nobody took since it was begun."""
        if conn not in self._idle or not _driver_of(conn).is_in_transaction():
            return
        idle_s = asyncio.get_running_loop().time() - conn.info.get(_BEGUN_AHEAD_AT, 0.0)
        if idle_s < BEGUN_IDLE_S * 0.9:
            return  # taken and begun ahead again since: that commit's own timer ends it
        self._idle.remove(conn)

        async def end() -> None:
            try:
                await _driver_of(conn).execute("ROLLBACK")
            except BaseException:
                await self._discard(conn)
                raise
            self._idle.append(conn)

        task = asyncio.create_task(end())
        self._ending.add(task)
        task.add_done_callback(self._ending.discard)

    async def _discard(self, conn: AsyncConnection) -> None:
        if self._begin_ahead is not None and not conn.closed:
            try:
                driver = _driver_of(conn)
                in_transaction = not driver.is_closed() and driver.is_in_transaction()
            except Exception:
                in_transaction = True  # unknown: never pool it
            if in_transaction:
                # The pool's reset would not end a transaction begun on the driver.
                with contextlib.suppress(Exception):
                    await conn.invalidate()
        await conn.close()

    @property
    def held(self) -> int:
        """Connections held between transactions now."""
        return len(self._idle)

    async def close(self) -> None:
        if self._ending:
            await asyncio.gather(*self._ending, return_exceptions=True)
        idle, self._idle = self._idle, []
        for conn in idle:
            if self._begin_ahead is not None and _driver_of(conn).is_in_transaction():
                try:
                    await _driver_of(conn).execute("ROLLBACK")
                except Exception:
                    await self._discard(conn)
                    continue
            await conn.close()


# How long a held connection may sit in a transaction begun ahead before it is ended.
BEGUN_IDLE_S = 1.0
_BEGUN_AHEAD_AT = "payflow_begun_ahead_at"


def _driver_of(conn: AsyncConnection) -> Any:
    """The asyncpg connection under a connected `conn` (no transaction is begun)."""
    sync = conn.sync_connection
    assert sync is not None, "connection is closed"
    return sync.connection.driver_connection
