"""Running the API: `payflow api` (any number of processes) and `payflow up` (everything
in one process on the embedded default, optionally with demo data)."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket

import uvicorn
from fastapi import FastAPI
from rich.console import Console
from uvicorn.supervisors import Multiprocess

from payflow.config import Settings, get_settings
from payflow.migrate import upgrade

log = logging.getLogger("uvicorn.error")


def app_factory() -> FastAPI:
    """For uvicorn's `--factory` (each worker process builds its own app)."""
    from payflow.api.app import create_app

    app = create_app()
    tune_gc(get_settings())
    return app


def tune_gc(settings: Settings) -> None:
    """Collect the young generation every `api_gc_threshold` allocations instead of
    every 700, and leave what exists now (modules, the app) out of later collections.

    A request allocates thousands of short-lived objects that reference counting frees;
    at Python's default the collector keeps scanning them under load. Raising the
    threshold gave 6-9 % more transfers/s in the bench's 1-process cell, 0-7 % with 2
    (docs/benchmarks.md).
    """
    if settings.api_gc_threshold:
        gc.collect()
        gc.freeze()
        gc.set_threshold(settings.api_gc_threshold, 20, 20)


def _config(
    settings: Settings, *, host: str, port: int, workers: int, access_log: bool
) -> uvicorn.Config:
    return uvicorn.Config(
        "payflow.api.server:app_factory",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        access_log=access_log,
        log_level="info",
        # Graceful shutdown: stop accepting, let in-flight requests finish this long,
        # then the lifespan drains the micro-batchers before closing the database.
        timeout_graceful_shutdown=int(settings.api_shutdown_timeout_s),
        # Bounded: beyond this many open connections new ones are refused with 503.
        limit_concurrency=settings.api_connections_max,
    )


def run_api(*, host: str, port: int, workers: int, access_log: bool) -> None:
    """Migrate, then serve the API with `workers` processes."""
    settings = get_settings()
    upgrade(settings.database_url)
    config = _config(settings, host=host, port=port, workers=workers, access_log=access_log)
    if workers > 1:
        # Fail now, not in every worker, when something else holds the port.
        _listening_socket(host, port, reuse_port=False).close()
        # The workers read their settings from this environment: each takes its share
        # of the server's ledger batches in flight (more, smaller batches cost more CPU
        # per transfer and queue on each other's account locks).
        share = max(1, settings.api_batch_concurrency // workers)
        os.environ["PAYFLOW_API_BATCH_CONCURRENCY"] = str(share)
        log.info("PayFlow API on http://%s:%d with %d processes", host, port, workers)
        BalancedMultiprocess(config).run()
        return
    uvicorn.Server(config).run()


def _listening_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class BalancedMultiprocess(Multiprocess):
    """uvicorn's supervisor (restarts, signals, health checks), but every worker process
    listens on a socket of its own bound with SO_REUSEPORT, so the kernel spreads new
    connections over the workers by their addresses.

    With one shared socket the worker that wakes first accepts a whole burst: a client
    that opens its keep-alive connections together (a pool, a load balancer) gets them
    all on one worker, and the others stay idle. Each socket is handed to its worker when
    the worker starts; the supervisor closes its own copy on its next round, so a worker
    that dies takes its socket (and its share of new connections) with it.
    """

    def __init__(self, config: uvicorn.Config) -> None:
        self._handed: list[socket.socket] = []
        super().__init__(config, sockets=[])

    @property
    def sockets(self) -> list[socket.socket]:
        """A new socket for each worker the supervisor starts (uvicorn reads this once
        per `Process` it creates)."""
        sock = _listening_socket(self.config.host, self.config.port, reuse_port=True)
        self._handed.append(sock)
        return [sock]

    @sockets.setter
    def sockets(self, value: list[socket.socket]) -> None:
        assert not value, "each worker binds its own socket"

    def keep_subprocess_alive(self) -> None:
        # Started workers hold their sockets (passed at start): drop the supervisor's.
        while self._handed:
            self._handed.pop().close()
        super().keep_subprocess_alive()


async def _start_bank(settings: Settings) -> tuple[asyncio.Event, asyncio.Task[None], str]:
    """The partner-bank simulator at PAYFLOW_BANK_URL's port, in this process."""
    from urllib.parse import urlsplit

    from payflow.banksim.config import BankSimConfig
    from payflow.banksim.server import serve

    address = urlsplit(settings.bank_url)
    config = BankSimConfig.from_settings(
        settings, host=address.hostname or "127.0.0.1", port=address.port or 80
    )
    stop, started = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(serve(config, stop=stop, started=started))
    waiting = asyncio.create_task(started.wait())
    await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    if task.done():
        await task
    return stop, task, settings.bank_url


async def _serve_up(console: Console, *, host: str, port: int, demo: bool, bank_sim: bool) -> None:
    settings = get_settings()
    # The bank first: the payouts workers call it, and the API (started last) then owns
    # Ctrl-C; uvicorn hands the signal on to the bank's server when the API has stopped.
    bank = await _start_bank(settings) if bank_sim else None
    server = uvicorn.Server(_config(settings, host=host, port=port, workers=1, access_log=False))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            await serving
            return
        await asyncio.sleep(0.05)
    from payflow.events.registry import all_consumers
    from payflow.events.runtime import start_runtime

    # The event backbone in this process: consumers (and the relay, with a broker).
    events = await start_runtime(settings, consumers=all_consumers(), relay=True)
    base = f"http://{host}:{port}"
    if demo:
        from payflow.api.demo import load_demo

        await load_demo(console, base)
    console.print(f"[bold green]PayFlow is up[/bold green] on {settings.database_url}")
    console.print(f"  API          {base}/v1")
    console.print(f"  API docs     {base}/docs   (OpenAPI: {base}/openapi.json)")
    console.print(f"  Health       {base}/health")
    console.print("  Dashboard    not built yet: use the API docs page above")
    console.print(f"  Events       {events.broker.name} delivery; feed at {base}/v1/events")
    if bank is not None:
        console.print(f"  Bank sim     {bank[2]}   (payouts and settlements are paid here)")
    else:
        console.print(f"  Bank         {settings.bank_url}   (not started here)")
    console.print("Ctrl-C stops it (in-flight requests finish first).")
    try:
        await serving
    finally:
        await events.close()
        await events.engine.dispose()
        if bank is not None:
            bank[0].set()
            await bank[1]


def run_up(console: Console, *, host: str, port: int, demo: bool, bank_sim: bool = True) -> None:
    """Migrate the embedded database and run everything in this one process."""
    upgrade(get_settings().database_url)
    asyncio.run(_serve_up(console, host=host, port=port, demo=demo, bank_sim=bank_sim))
