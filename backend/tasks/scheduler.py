"""APScheduler wiring: tick the broker every 10 s and enqueue the periodic jobs."""

from __future__ import annotations

import logging

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from backend.runtime import AppServices
from backend.tasks.registry import PERIODIC, PeriodicJob

log = logging.getLogger(__name__)

TICK_SECONDS = 10


def build_scheduler(svc: AppServices) -> AsyncIOScheduler:
    scheduler = AsyncIOScheduler(timezone="UTC")

    async def tick() -> None:
        svc.broker.tick()

    async def enqueue(periodic: PeriodicJob) -> None:
        try:
            await svc.broker.enqueue(
                periodic.name, key=periodic.key, args=periodic.args, requested_by="scheduler"
            )
        except Exception:
            # The scheduler must keep ticking even when one periodic enqueue fails (e.g. database busy).
            log.exception("Could not queue periodic job %s", periodic.name)

    scheduler.add_job(
        tick, "interval", seconds=TICK_SECONDS, id="broker_tick", max_instances=1, coalesce=True
    )
    for periodic in PERIODIC:
        if periodic.name in svc.broker.jobs:
            scheduler.add_job(
                enqueue,
                "interval",
                seconds=periodic.seconds,
                args=[periodic],
                id=f"periodic:{periodic.name}",
                max_instances=1,
                coalesce=True,
            )
    return scheduler
