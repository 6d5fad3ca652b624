"""Running the simulator: `payflow bank-sim` (its own process) or `serve` (inside
another asyncio program, e.g. `payflow up`)."""

from __future__ import annotations

import asyncio

import uvicorn

from payflow.banksim.api import create_app
from payflow.banksim.config import BankSimConfig


def _uvicorn_config(config: BankSimConfig, *, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(config),
        host=config.host,
        port=config.port,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        # Held (timed-out) credits are cut short on shutdown; the next start finishes them.
        timeout_graceful_shutdown=1,
        # Idle connections are kept longer than clients keep them (httpx: 5 s, uvicorn's
        # default too), so a client never sends on a connection the bank is closing.
        timeout_keep_alive=60,
    )


async def serve(
    config: BankSimConfig,
    *,
    stop: asyncio.Event,
    started: asyncio.Event | None = None,
    log_level: str = "warning",
) -> None:
    """Serve until `stop` is set (then shut down gracefully); `started` is set once the
    simulator listens. Returns early (raising) if the server cannot start."""
    server = uvicorn.Server(_uvicorn_config(config, log_level=log_level))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            await serving
            raise RuntimeError(f"the bank simulator did not start on {config.host}:{config.port}")
        await asyncio.sleep(0.02)
    if started is not None:
        started.set()
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    server.should_exit = True
    await serving


def run_bank_sim(config: BankSimConfig) -> None:
    """Serve the simulator in this process until SIGINT/SIGTERM."""
    uvicorn.Server(_uvicorn_config(config, log_level="info")).run()
