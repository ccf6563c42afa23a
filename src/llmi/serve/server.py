"""Run one image server process (uvicorn) until it is told to stop.

SIGINT/SIGTERM start a graceful shutdown: uvicorn stops accepting connections and waits up to
``shutdown_grace`` seconds for open requests, then the worker drains or cancels what is left.
A pipeline that fails to load stops the process with exit code 1, so a launcher sees it.
"""

from __future__ import annotations

import asyncio
import logging

from ..errors import MissingDependency
from .app import ServerConfig, create_app

__all__ = ["run_server"]

log = logging.getLogger("llmi.serve")


def run_server(
    config: ServerConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
    access_log: bool = True,
) -> int:
    """Serve ``config`` on ``host:port``; returns the process exit code."""
    uvicorn = MissingDependency.require("uvicorn", "serve")

    app = create_app(config)
    worker = app.state.worker
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=log_level,
            access_log=access_log,
            timeout_graceful_shutdown=max(1, int(config.shutdown_grace)),
        )
    )

    async def stop_if_load_fails() -> None:
        while not server.should_exit:
            if worker.load_error is not None:
                log.error("pipeline failed to load (%s); stopping", worker.load_error)
                server.should_exit = True
                return
            if worker.ready.is_set():
                return
            await asyncio.sleep(0.2)

    async def main() -> None:
        watcher = asyncio.ensure_future(stop_if_load_fails())
        try:
            await server.serve()
        finally:
            watcher.cancel()

    asyncio.run(main())
    if worker.load_error is not None:
        return 1
    return 0 if server.started else 1
