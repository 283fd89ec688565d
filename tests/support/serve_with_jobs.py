"""Serve TIC like run.py does, plus a test job `sleepy`, for restart and signal tests in a real process."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from backend.app import create_app
from backend.tasks.broker import JobContext
from backend.tasks.registry import JobSpec
from run import configure_logging, serve_app


async def sleepy(ctx: JobContext) -> str:
    seconds = float(os.environ.get("TIC_TEST_SLEEP", "60"))
    await ctx.progress(10, "sleeping")
    await asyncio.sleep(seconds)
    return f"slept {seconds} s"


def main() -> None:
    configure_logging("INFO")
    app = create_app()
    svc = app.extensions["tic"]
    svc.broker.register(JobSpec(name="sleepy", handler=sleepy, max_attempts=1))

    @app.before_serving
    async def maybe_enqueue() -> None:
        if os.environ.get("TIC_TEST_ENQUEUE"):
            await svc.broker.enqueue("sleepy", requested_by="test")

    asyncio.run(serve_app(app))


if __name__ == "__main__":
    main()
