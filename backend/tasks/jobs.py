"""Housekeeping jobs of the task system itself."""

from __future__ import annotations

from backend.settings import service as settings_service
from backend.tasks.broker import JobContext
from backend.tasks.registry import PeriodicJob, job, register_periodic


@job("prune_task_history", title="Prune task history", priority=90, max_attempts=1)
async def prune_task_history(ctx: JobContext) -> str:
    async with ctx.db.session() as session:
        days = await settings_service.get_setting(session, ctx.services.keyring, "task_history_days")
    removed = await ctx.broker.prune(int(days))
    return f"Removed {removed} finished task(s) older than {days} days"


register_periodic(PeriodicJob("prune_task_history", seconds=3600))
