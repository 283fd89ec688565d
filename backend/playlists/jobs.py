"""Background jobs of the playlists domain: import one playlist, and queue the imports that are due."""

from __future__ import annotations

import logging
from typing import Any

from backend.db import utcnow
from backend.playlists import importer, service
from backend.tasks.broker import JobContext
from backend.tasks.registry import PeriodicJob, failures_recorded, job, register_periodic

log = logging.getLogger(__name__)

REFRESH_JOB = "refresh_playlist"
#: The TVHeadend publish, registered by the publish domain (jobs are named, not imported).
PUBLISH_JOB = "publish_tvheadend"


def refresh_key(source_id: int) -> str:
    """The dedupe key of a playlist's import: one queued or running import per playlist."""
    return f"playlist:{source_id}"


@job(REFRESH_JOB, title="Import a playlist", priority=20, max_attempts=3)
async def refresh_playlist(ctx: JobContext) -> dict[str, Any]:
    """Download (or read) a playlist, parse it and swap its streams in; record the outcome either way."""
    source_id = int(ctx.args["playlist_id"])

    async def record(message: str, status: str) -> None:
        async with ctx.db.transaction() as session:
            await service.record_import_failure(session, source_id, message, status)

    async with failures_recorded(record, f"playlist {source_id}", "the previous streams were kept"):
        result = await importer.import_playlist(
            ctx.services, source_id, force=bool(ctx.args.get("force")), progress=ctx.progress
        )
    if any(result.get(k) for k in ("added", "updated", "removed")):
        # Stream URLs or names changed: TVHeadend's muxes follow. The publish shares its dedupe key with
        # the channels domain's, so an import plus edits make one queued publish.
        await ctx.broker.enqueue(PUBLISH_JOB, key=PUBLISH_JOB, requested_by=f"playlist:{source_id}")
    return result


@job("refresh_due_playlists", title="Queue due playlist refreshes", priority=60, max_attempts=1)
async def refresh_due_playlists(ctx: JobContext) -> str:
    """Queue an import for every enabled playlist whose refresh interval has passed."""
    async with ctx.db.session() as session:
        due = await service.due_sources(session, utcnow())
    queued = 0
    for source_id in due:
        result = await ctx.broker.enqueue(
            REFRESH_JOB, key=refresh_key(source_id), args={"playlist_id": source_id}, requested_by="scheduler"
        )
        queued += result.created
    return f"Queued {queued} playlist refresh(es)" if queued else "No playlist is due for a refresh"


register_periodic(PeriodicJob("refresh_due_playlists", seconds=60))
