"""Start TIC: build the app, start the scheduler, serve with Hypercorn (one worker) until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config as HypercornConfig
from quart import Quart

from backend.app import create_app
from backend.config import load_config
from backend.tasks.scheduler import build_scheduler

log = logging.getLogger("tic")


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%SZ",
        stream=sys.stderr,
    )
    logging.Formatter.converter = __import__("time").gmtime
    # Hypercorn's own access log would print raw paths (with stream keys); ours redacts them.
    logging.getLogger("hypercorn.access").disabled = True
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


async def serve_app(app: Quart) -> None:
    """Serve until a signal arrives; the scheduler starts once the app is ready."""
    svc: Any = app.extensions["tic"]
    cfg = HypercornConfig()
    cfg.bind = [f"{svc.config.host}:{svc.config.port}"]
    cfg.workers = 1
    cfg.accesslog = None
    cfg.graceful_timeout = 10
    # Browsers' websockets (the /tic-tvh/ bridge) are pinged when idle, so a vanished browser is noticed
    # and its TVHeadend websocket closed; Hypercorn sends no pings unless this is set.
    cfg.websocket_ping_interval = 20
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    @app.before_serving
    async def start_scheduler() -> None:
        svc.scheduler = build_scheduler(svc)
        svc.scheduler.start()
        svc.broker.tick()
        # Everything loaded at start-up (modules, the app, settings) lives for the whole process: move it
        # out of the collector's view so full collections during big imports scan less (shorter loop lags).
        gc.collect()
        gc.freeze()
        log.info("Listening on http://%s:%d", svc.config.host, svc.config.port)

    await serve(app, cfg, shutdown_trigger=stop.wait)  # type: ignore[arg-type]


def main() -> None:
    configure_logging(load_config().log_level)
    app = create_app()
    asyncio.run(serve_app(app))


if __name__ == "__main__":
    main()
