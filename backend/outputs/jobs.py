"""Background work of the outputs: building the XMLTV guide file, on demand, after changes and periodically."""

from __future__ import annotations

import logging
from typing import Any

from backend.outputs import service
from backend.settings import service as settings_service
from backend.settings.hooks import on_settings_changed
from backend.tasks.broker import JobContext
from backend.tasks.offload import run_in_subprocess
from backend.tasks.registry import PeriodicJob, job, register_periodic

log = logging.getLogger(__name__)

BUILD_XMLTV = "build_xmltv"
#: A rebuild now and then drops programmes that have aged out of the window and repairs a lost file.
PERIODIC_SECONDS = 3 * 3600
#: Rebuild at most this many times in one run when the lineup keeps changing while it is written.
MAX_PASSES = 3
# Settings that change what the guide file contains.
_GUIDE_SETTINGS = frozenset({"xmltv_past_days", "public_base_url"})


@job(BUILD_XMLTV, title="Build the XMLTV guide for clients", priority=40, timeout=1800, max_attempts=2)
async def build_xmltv(ctx: JobContext) -> dict[str, Any]:
    """Write the guide in a child process; build again if the lineup or a guide changed meanwhile.

    Other domains enqueue this job by name after an EPG import or a lineup change. The broker
    merges an enqueue into a run that is already going, so this run compares a fingerprint of its
    inputs before and after and goes round again when they moved.
    """
    svc = ctx.services
    result: dict[str, Any] = {}
    for attempt in range(1, MAX_PASSES + 1):
        async with ctx.db.session() as session:
            before = await service.lineup_fingerprint(session)
            past_days = await settings_service.get_setting(session, svc.keyring, "xmltv_past_days")
            base_url = await settings_service.get_setting(session, svc.keyring, "public_base_url")

        async def on_progress(percent: float, message: str) -> None:
            await ctx.progress(percent, message)

        result = await run_in_subprocess(
            "backend.outputs.xmltv_writer:build_xmltv_files",
            svc.db.url,
            str(svc.config.data_dir),
            int(past_days),
            str(base_url or "").strip().rstrip("/"),
            on_progress=on_progress,
        )
        async with ctx.db.session() as session:
            after = await service.lineup_fingerprint(session)
        if after == before:
            break
        log.info("The lineup or a guide changed while the XMLTV file was written (pass %d)", attempt)
    state = "updated" if result.get("changed") else "unchanged"
    result["message"] = (
        f"Guide {state}: {result.get('channels', 0)} channels, {result.get('programmes', 0)} programmes"
    )
    return result


register_periodic(PeriodicJob(BUILD_XMLTV, seconds=PERIODIC_SECONDS))


@on_settings_changed
async def rebuild_guide_on_settings(svc: Any, changed: list[str]) -> None:
    if _GUIDE_SETTINGS.intersection(changed):
        await svc.broker.enqueue(BUILD_XMLTV, requested_by="settings")
