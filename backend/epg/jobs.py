"""Background jobs of the EPG domain: import one guide, and queue the imports that are due."""

from __future__ import annotations

import logging
from typing import Any

from backend.db import utcnow
from backend.epg import importer, service
from backend.tasks.broker import JobContext
from backend.tasks.registry import PeriodicJob, failures_recorded, job, register_periodic

log = logging.getLogger(__name__)

REFRESH_JOB = "refresh_epg"
DUE_JOB = "refresh_due_epgs"
#: Jobs of other domains that depend on the guide, queued (by name, when registered) after an
#: import changed it: the clients' XMLTV output, the DVR series rules and the guide pushed into
#: TVHeadend's XMLTV socket (a no-op when TVHeadend fetches the guide itself with tv_grab_tic).
FOLLOW_UPS = ("build_xmltv", "apply_dvr_rules", "push_tvheadend_guide")


def refresh_key(source_id: int) -> str:
    """The dedupe key of a guide import: one queued or running import per source."""
    return f"epg:{source_id}"


@job(REFRESH_JOB, title="Import an EPG", priority=20, timeout=1800, max_attempts=3)
async def refresh_epg(ctx: JobContext) -> dict[str, Any]:
    """Fetch a guide, load it in a worker process and swap it in; record the outcome either way."""
    source_id = int(ctx.args["epg_id"])

    async def record(message: str, status: str) -> None:
        del status  # a guide source records every unsuccessful import as failed
        async with ctx.db.transaction() as session:
            await service.record_import_failure(session, source_id, message)

    async with failures_recorded(record, f"EPG {source_id}", "the guide in use was kept"):
        result = await importer.import_epg(
            ctx.services, source_id, force=bool(ctx.args.get("force")), progress=ctx.progress
        )
    if result.get("changed"):
        await queue_follow_ups(ctx, source_id)
    return result


async def queue_follow_ups(ctx: JobContext, source_id: int) -> None:
    """Queue the jobs that use the guide, when this version of TIC has them."""
    for name in FOLLOW_UPS:
        if name in ctx.broker.jobs:
            await ctx.broker.enqueue(name, requested_by=f"epg:{source_id}")


@job(DUE_JOB, title="Queue due EPG refreshes", priority=60, max_attempts=1)
async def refresh_due_epgs(ctx: JobContext) -> str:
    """Queue an import for every enabled guide source whose refresh interval has passed."""
    async with ctx.db.session() as session:
        due = await service.due_sources(session, utcnow())
    queued = 0
    for source_id in due:
        result = await ctx.broker.enqueue(
            REFRESH_JOB, key=refresh_key(source_id), args={"epg_id": source_id}, requested_by="scheduler"
        )
        queued += result.created
    return f"Queued {queued} EPG refresh(es)" if queued else "No EPG is due for a refresh"


register_periodic(PeriodicJob(DUE_JOB, seconds=60))
