"""Background work of the lineup: keeping the logo cache filled and fresh."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from backend.channels import logos
from backend.channels.service import CACHE_LOGOS
from backend.settings import service as settings_service
from backend.tasks.broker import JobContext
from backend.tasks.registry import PeriodicJob, job, register_periodic

log = logging.getLogger(__name__)

#: How often the scheduler looks for logos that are new, due for a refresh, or failed long enough ago.
PERIODIC_SECONDS = 6 * 3600


@job(CACHE_LOGOS, title="Fetch channel logos into the cache", priority=60, timeout=1800, max_attempts=1)
async def cache_logos(ctx: JobContext) -> dict[str, Any]:
    """Fetch new and stale logos (all of them with args {"force": true}); failures are kept per logo."""
    svc = ctx.services
    async with ctx.db.session() as session:
        values = await settings_service.get_settings(session, svc.keyring)
    limits = logos.CacheLimits(
        max_bytes=int(values["logo_max_bytes"]),
        max_total_bytes=int(values["logo_cache_max_mb"]) * 1024 * 1024,
        refresh=timedelta(days=int(values["logo_refresh_days"])),
        user_agent=str(values.get("user_agent") or "") or None,
    )

    async def progress(percent: float, message: str) -> None:
        await ctx.progress(percent, message)

    counts = await logos.refresh_cache(
        ctx.db,
        svc.http.api,
        svc.config.data_dir,
        limits,
        force=bool(ctx.args.get("force")),
        progress=progress,
    )
    message = f"{counts['fetched']} logos fetched, {counts['failed']} failed, {counts['wanted']} in use"
    return {**counts, "message": message}


register_periodic(PeriodicJob(CACHE_LOGOS, seconds=PERIODIC_SECONDS))
