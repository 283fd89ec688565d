"""DVR background jobs: expand recurring rules, reconcile recordings with TVHeadend."""

from __future__ import annotations

from backend.dvr.hls import hls_manager
from backend.dvr.reconcile import reconcile_recordings
from backend.dvr.rules import ApplyReport
from backend.dvr.service import load_defaults
from backend.dvr.state import dvr_state
from backend.dvr.tvh import tvh_client
from backend.settings.service import get_setting
from backend.tasks.broker import JobContext
from backend.tasks.offload import run_in_subprocess
from backend.tasks.registry import PeriodicJob, job, register_periodic

RECONCILE = "reconcile_dvr_recordings"
APPLY_RULES = "apply_dvr_rules"
#: A change made while reconcile runs is picked up by repeating the pass, at most this often.
MAX_PASSES = 3


@job(RECONCILE, title="Reconcile recordings with TVHeadend", priority=30, timeout=300, max_attempts=1)
async def reconcile_dvr_recordings(ctx: JobContext) -> str:
    svc = ctx.services
    client = await tvh_client(svc)
    if client is None:
        return "TVHeadend is not configured; nothing to reconcile"
    state = dvr_state(svc)
    summary = ""
    for _ in range(MAX_PASSES):
        seen = state.dirty
        report = await reconcile_recordings(svc, client)
        summary = report.summary()
        if state.dirty == seen or report.tvh_down:
            break
    return summary


@job(APPLY_RULES, title="Apply recording rules", priority=40, timeout=900, max_attempts=1)
async def apply_dvr_rules(ctx: JobContext) -> str:
    svc = ctx.services
    await ctx.progress(5, "Matching rules against the guide")
    async with svc.db.session() as session:
        defaults = await load_defaults(session, svc.keyring)
        days = int(await get_setting(session, svc.keyring, "dvr_rules_horizon_days"))
    # In a worker process: expanding rules over a full guide is seconds of CPU the loop must not spend.
    result = await run_in_subprocess(
        "backend.dvr.rules:apply_rules_in_child",
        svc.db.url,
        defaults.padding_before,
        defaults.padding_after,
        days,
        timeout=ctx.broker.jobs[APPLY_RULES].timeout,
    )
    report = ApplyReport(**result)
    summary = report.summary()
    for rid in report.pruned_ids:
        await hls_manager(svc).discard(rid)
    if report.changed:
        dvr_state(svc).changes.bump()
        client = await tvh_client(svc)
        if client is not None:
            await ctx.progress(70, "Creating the new recordings in TVHeadend")
            summary += "; TVHeadend: " + (await reconcile_recordings(svc, client)).summary()
    return summary


register_periodic(PeriodicJob(RECONCILE, seconds=30))
register_periodic(PeriodicJob(APPLY_RULES, seconds=900))
