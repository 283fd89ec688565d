"""Background jobs: configure TVHeadend, publish the lineup, push the guide, sync TVHeadend logins."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from backend.db import utcnow
from backend.publish import configure, guide, service, users
from backend.settings import service as settings_service
from backend.settings.hooks import on_settings_changed
from backend.tasks.broker import JobContext
from backend.tasks.registry import PeriodicJob, job, register_periodic

log = logging.getLogger(__name__)

CONFIGURE = "configure_tvheadend"
PUBLISH = "publish_tvheadend"
PUSH_GUIDE = "push_tvheadend_guide"
SYNC_USERS = "sync_tvheadend_users"
#: Settings whose change makes TVHeadend need configuring again.
CONFIGURE_KEYS = frozenset(
    {
        "tvh_url",
        "tvh_username",
        "tvh_password",
        "tvh_xmltv_socket",
        "tvh_epg_mode",
        "tvh_epg_cron",
        "tvh_exclusive_epg",
        "tvh_server_name",
        "tvh_dvr_profile",
    }
)


async def _tvh_configured(ctx: JobContext) -> bool:
    async with ctx.db.session() as session:
        values = await settings_service.get_settings(session, ctx.services.keyring)
    return bool(str(values.get("tvh_url") or "").strip())


async def _socket_path(ctx: JobContext) -> str | None:
    """The XMLTV socket TIC pushes into, when the guide goes that way."""
    async with ctx.db.session() as session:
        options = await configure.configure_options(session, ctx.services.keyring)
    return options.xmltv_socket if options.epg_mode == "socket" and options.xmltv_socket else None


@job(CONFIGURE, title="Configure TVHeadend", priority=20, timeout=600)
async def configure_tvheadend(ctx: JobContext) -> dict[str, Any] | str:
    if not await _tvh_configured(ctx):
        return "TVHeadend is not configured; nothing to do"
    client = await service.tvh_client(ctx.services)
    async with ctx.db.session() as session:
        options = await configure.configure_options(session, ctx.services.keyring)
    await ctx.progress(10, "Reading TVHeadend's configuration")
    result = await configure.configure_tvheadend(client, options)
    socket = options.xmltv_socket if options.epg_mode == "socket" else ""
    module_enabled = any(str(c["what"]).startswith("epg grabber '") for c in result["changes"])
    if socket and module_enabled:
        await ctx.progress(70, "Pushing TIC's guide into TVHeadend")
        result["guide"] = await _push(ctx, client, socket)
    return result


async def _push(ctx: JobContext, client: Any, socket: str) -> dict[str, Any]:
    try:
        return await guide.push_guide(ctx.db, client, socket, ctx.services.config.data_dir)
    except guide.GuideSocketUnavailable as exc:
        log.warning("Guide push to TVHeadend failed: %s", exc.message)
        return {"error": exc.message}


@job(PUBLISH, title="Publish the lineup to TVHeadend", priority=30, timeout=3600)
async def publish_tvheadend(ctx: JobContext) -> dict[str, Any] | str:
    if not await _tvh_configured(ctx):
        return "TVHeadend is not configured; nothing to publish"
    async with ctx.db.session() as session:
        debounce = int(
            await settings_service.get_setting(session, ctx.services.keyring, "tvh_publish_debounce_seconds")
        )
        options = await service.publish_options(session, ctx.services.keyring)
    await _debounce(ctx, debounce)
    client = await service.tvh_client(ctx.services)

    async def progress(percent: float, message: str) -> None:
        await ctx.progress(percent, message)

    result = await service.publish_lineup(ctx.db, client, options, progress, task_run_id=ctx.run_id)
    created_channels = result["summary"]["by_kind"]["create"].get("channel", 0)
    socket = await _socket_path(ctx)
    if socket and created_channels:
        # New channels need their guide now, not at the next scheduled push.
        await ctx.progress(95, "Pushing the guide for the new channels")
        result["guide"] = await _push(ctx, client, socket)
    return result


async def _debounce(ctx: JobContext, seconds: int) -> None:
    """Wait until the lineup has been quiet for `seconds`, so a burst of edits makes one publish."""
    deadline = time.monotonic() + seconds * 3
    while seconds > 0 and time.monotonic() < deadline:
        async with ctx.db.session() as session:
            changed = await service.lineup_changed_at(session)
        quiet = (utcnow() - changed).total_seconds() if changed is not None else seconds
        if quiet >= seconds:
            return
        await ctx.progress(0, "Waiting for the lineup edits to settle")
        await asyncio.sleep(min(seconds - quiet, deadline - time.monotonic()) + 0.05)


@job(PUSH_GUIDE, title="Push the guide to TVHeadend", priority=40, timeout=1800)
async def push_tvheadend_guide(ctx: JobContext) -> dict[str, Any] | str:
    if not await _tvh_configured(ctx):
        return "TVHeadend is not configured; nothing to push"
    socket = await _socket_path(ctx)
    if socket is None:
        return "The guide reaches TVHeadend through tv_grab_tic (or not at all); nothing to push"
    client = await service.tvh_client(ctx.services)
    await ctx.progress(10, "Writing and pushing the guide")
    result = await guide.push_guide(ctx.db, client, socket, ctx.services.config.data_dir)
    result["message"] = (
        f"Pushed the guide ({result['channels']} channels, {result['programmes'] or 'all'} programmes) "
        f"{result['pushes']} time(s)"
    )
    return result


@job(SYNC_USERS, title="Sync TVHeadend logins", priority=30, timeout=600)
async def sync_tvheadend_users(ctx: JobContext) -> dict[str, Any] | str:
    if not await _tvh_configured(ctx):
        return "TVHeadend is not configured; nothing to sync"
    client = await service.tvh_client(ctx.services)
    return await users.sync_logins(ctx.db, client, ctx.services.keyring)


register_periodic(PeriodicJob(CONFIGURE, seconds=6 * 3600))
# The periodic publish doubles as the drift check: it repairs what was changed in TVHeadend's UI.
register_periodic(PeriodicJob(PUBLISH, seconds=15 * 60))
register_periodic(PeriodicJob(PUSH_GUIDE, seconds=3600))
register_periodic(PeriodicJob(SYNC_USERS, seconds=30 * 60))


@on_settings_changed
async def queue_configure(svc: Any, changed: list[str]) -> None:
    """Saving TVHeadend settings queues the configure task (the request itself never talks to TVH)."""
    if CONFIGURE_KEYS.intersection(changed):
        await svc.broker.enqueue(CONFIGURE, requested_by="settings")
