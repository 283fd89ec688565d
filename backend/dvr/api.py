"""JSON API for recordings, recording rules, the live long poll and HLS playback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from typing import Any
from urllib.parse import quote

from quart import Blueprint, Response, g, request, send_file
from quart_schema import validate_request, validate_response
from sqlalchemy.exc import SQLAlchemyError

from backend.auth.guard import user_or_stream_key, user_required
from backend.auth.models import User
from backend.db import utcnow
from backend.dvr import rules as rules_service
from backend.dvr import service
from backend.dvr.hls import HlsLimits, HlsRequest, hls_manager
from backend.dvr.jobs import APPLY_RULES, RECONCILE
from backend.dvr.models import RECORDING, Recording, RecordingRule
from backend.dvr.schemas import (
    PollOut,
    PreviewOut,
    RecordingIn,
    RecordingList,
    RecordingOut,
    RecordingPatch,
    RuleIn,
    RuleList,
    RuleOut,
    RulePatch,
)
from backend.dvr.state import dvr_state
from backend.dvr.tvh import LocalFileSource, local_recording_path, tvh_files
from backend.edge import listing, page_args, services
from backend.errors import AppError, Conflict, Invalid
from backend.schemas import TaskQueued
from backend.settings.service import get_settings

log = logging.getLogger(__name__)

bp = Blueprint("dvr", __name__, url_prefix="/tic-api")

MAX_POLL_SECONDS = 60.0
PREVIEW_DAYS = 7


# -- lifespan --------------------------------------------------------------------------------------


@bp.while_app_serving
async def dvr_lifespan() -> AsyncGenerator[None, None]:
    """After the app is up: empty the HLS cache and catch up with TVHeadend; at shutdown kill every ffmpeg."""
    svc = services()
    manager = hls_manager(svc)
    await manager.start()
    try:
        async with svc.db.session() as session:
            pending = await service.needs_reconcile(session)
        if pending:
            # Recordings left "recording" by a crash (or scheduled while TIC was down) are brought up to date.
            await svc.broker.enqueue(RECONCILE, requested_by="startup")
            # A reconcile queued before the restart is not queued twice, and enqueue only wakes the
            # broker for new runs: start the queue now rather than at the scheduler's first tick.
            svc.broker.wake()
    except (SQLAlchemyError, AppError):
        log.exception("Could not queue the start-up reconcile of recordings")
    yield
    await manager.shutdown()


# -- helpers ---------------------------------------------------------------------------------------


async def _changed(svc: Any, *, reconcile: bool = True) -> None:
    """Wake the long polls and, when TVHeadend must hear about it, queue a reconcile."""
    state = dvr_state(svc)
    state.changes.bump()
    if not reconcile:
        return
    state.dirty += 1
    try:
        await svc.broker.enqueue(RECONCILE, requested_by=g.user.username if g.get("user") else None)
    except (SQLAlchemyError, AppError):
        # The periodic reconcile (every 30 s) picks the change up anyway.
        log.exception("Could not queue a reconcile after a recording change")


async def _recording_out(session: Any, rec: Recording, warnings: list[str] | None = None) -> dict[str, Any]:
    return service.recording_out(rec, await service.owner_name(session, rec.owner_id), warnings)


def _user() -> User:
    user: User = g.user
    service.dvr_scope(user)
    return user


# -- recordings ------------------------------------------------------------------------------------


@bp.get("/recordings")
@user_required
@validate_response(RecordingList, 200)
async def list_recordings() -> dict[str, Any]:
    """Recordings the caller may see, soonest first. Filter with `status=scheduled,recording`."""
    svc = services()
    user = _user()
    limit, offset = page_args(default_limit=100, max_limit=1000)
    raw = request.args.get("status", "")
    statuses = [s.strip() for s in raw.split(",") if s.strip()] or None
    version = dvr_state(svc).changes.version
    async with svc.db.session() as session:
        rows, total = await service.list_recordings(
            session, user, statuses=statuses, limit=limit, offset=offset
        )
    return {**listing([service.recording_out(r, name) for r, name in rows], total), "version": version}


@bp.post("/recordings")
@user_required
@validate_request(RecordingIn)
@validate_response(RecordingOut, 201)
async def create_recording(data: RecordingIn) -> tuple[dict[str, Any], int]:
    """Schedule a recording from a guide programme or a channel and time range (padding in minutes)."""
    svc = services()
    user = _user()
    async with svc.db.transaction() as session:
        defaults = await service.load_defaults(session, svc.keyring)
        rec, warnings = await service.create_recording(
            session, user, service.NewRecording(**data.model_dump()), defaults
        )
        out = await _recording_out(session, rec, warnings)
    await _changed(svc)
    return out, 201


@bp.get("/recordings/poll")
@user_required
@validate_response(PollOut, 200)
async def poll_recordings() -> dict[str, Any]:
    """Long poll: answers at once when recordings changed since `since`, else after up to `timeout` s."""
    svc = services()
    _user()
    notifier = dvr_state(svc).changes
    try:
        since = int(request.args.get("since", notifier.version))
        timeout = float(request.args.get("timeout", 25))
    except ValueError as exc:
        raise Invalid("since and timeout must be numbers", fields={"since": "integer"}) from exc
    version = await notifier.wait(since, max(0.0, min(timeout, MAX_POLL_SECONDS)))
    return {"version": version, "changed": version != since}


@bp.get("/recordings/<int:recording_id>")
@user_required
@validate_response(RecordingOut, 200)
async def get_recording(recording_id: int) -> dict[str, Any]:
    svc = services()
    user = _user()
    async with svc.db.session() as session:
        rec = await service.get_recording(session, user, recording_id)
        return await _recording_out(session, rec)


@bp.patch("/recordings/<int:recording_id>")
@user_required
@validate_request(RecordingPatch)
@validate_response(RecordingOut, 200)
async def update_recording(recording_id: int, data: RecordingPatch) -> dict[str, Any]:
    """Change a scheduled recording's title, times or padding."""
    svc = services()
    user = _user()
    async with svc.db.transaction() as session:
        rec = await service.get_recording(session, user, recording_id)
        defaults = await service.load_defaults(session, svc.keyring)
        warnings = await service.update_recording(
            session, user, rec, service.RecordingChanges(**data.model_dump()), defaults
        )
        out = await _recording_out(session, rec, warnings)
    await _changed(svc)
    return out


@bp.post("/recordings/<int:recording_id>/cancel")
@user_required
@validate_response(RecordingOut, 200)
async def cancel_recording(recording_id: int) -> dict[str, Any]:
    """Cancel a scheduled recording."""
    return await _action(recording_id, service.cancel_recording)


@bp.post("/recordings/<int:recording_id>/stop")
@user_required
@validate_response(RecordingOut, 200)
async def stop_recording(recording_id: int) -> dict[str, Any]:
    """Stop a running recording now, keeping what was recorded."""
    return await _action(recording_id, service.stop_recording)


async def _action(recording_id: int, action: Any) -> dict[str, Any]:
    svc = services()
    user = _user()
    async with svc.db.transaction() as session:
        rec = await service.get_recording(session, user, recording_id)
        await action(session, user, rec)
        out = await _recording_out(session, rec)
    await _changed(svc)
    return out


@bp.delete("/recordings/<int:recording_id>")
@user_required
async def delete_recording(recording_id: int) -> tuple[str, int]:
    """Delete a recording and its file (a scheduled or running one is cancelled first)."""
    svc = services()
    user = _user()
    async with svc.db.transaction() as session:
        rec = await service.get_recording(session, user, recording_id)
        await service.delete_recording(session, user, rec)
    await hls_manager(svc).discard(recording_id)
    await _changed(svc)
    return "", 204


# -- HLS playback ----------------------------------------------------------------------------------


def _media_caller() -> tuple[User, str]:
    """Who is asking for a recording's media (the guard's user_or_stream_key policy identified them).

    Returns the user and the stream key to repeat on segment URLs ("" for session/token callers).
    """
    key = request.args.get("stream_key", "") if g.auth_method == "stream_key" else ""
    return g.user, key


async def _playable(svc: Any, recording_id: int) -> tuple[Recording, str]:
    user, key = _media_caller()
    async with svc.db.session() as session:
        rec = await service.get_recording(session, user, recording_id)
    return rec, key


async def _hls_request(svc: Any, rec: Recording, settings: dict[str, Any]) -> HlsRequest:
    if not service.is_playable(rec) or rec.tvh_uuid is None:
        raise Conflict(f"Nothing to play yet: the recording is {rec.status}", code="RECORDING_NOT_PLAYABLE")
    live = rec.status == RECORDING
    path = await asyncio.to_thread(
        local_recording_path,
        rec.tvh_filename,
        str(settings["dvr_local_recordings_dir"]),
        str(settings["dvr_tvh_recordings_dir"]),
    )
    if path is not None and not live:
        return HlsRequest(rec.id, rec.tvh_uuid, live=False, path=path)
    source = LocalFileSource(path) if path is not None else (await tvh_files(svc)).source(rec.tvh_uuid)

    async def still_live() -> bool:
        async with svc.db.session() as session:
            current = await session.get(Recording, rec.id)
            return current is not None and current.status == RECORDING and not current.deleted

    return HlsRequest(rec.id, rec.tvh_uuid, live=live, source=source, still_live=still_live if live else None)


@bp.get("/recordings/<int:recording_id>/hls.m3u8")
@user_or_stream_key
async def get_recording_playlist(recording_id: int) -> Response:
    """HLS playlist of a recording (session, API token or `?stream_key=`): VOD when completed, growing while recording."""
    svc = services()
    rec, key = await _playable(svc, recording_id)
    async with svc.db.session() as session:
        settings = await get_settings(session, svc.keyring)
    limits = HlsLimits(
        max_jobs=int(settings["dvr_hls_max_jobs"]),
        cache_max_bytes=int(settings["dvr_hls_cache_max_mb"]) * 1024 * 1024,
        idle_seconds=float(settings["dvr_hls_idle_seconds"]),
        segment_seconds=int(settings["dvr_hls_segment_seconds"]),
    )
    hls = await _hls_request(svc, rec, settings)
    query = f"?stream_key={quote(key, safe='')}" if key else ""
    text = await hls_manager(svc).playlist(hls, limits, query)
    return Response(
        text,
        content_type="application/vnd.apple.mpegurl",
        headers={"Cache-Control": "no-cache, private"},
    )


@bp.get("/recordings/<int:recording_id>/hls/<segment>")
@user_or_stream_key
async def get_recording_segment(recording_id: int, segment: str) -> Response:
    """One HLS segment, by the exact name the playlist gives."""
    svc = services()
    await _playable(svc, recording_id)
    path = await hls_manager(svc).segment(recording_id, segment)
    response = await send_file(path, mimetype="video/mp2t")
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response


# -- rules -----------------------------------------------------------------------------------------


async def _rule_out(session: Any, rule: Any) -> dict[str, Any]:
    return rules_service.rule_out(rule, await service.owner_name(session, rule.owner_id))


async def _queue_apply(svc: Any) -> int | None:
    try:
        return (await svc.broker.enqueue(APPLY_RULES, requested_by=g.user.username)).task_id
    except (SQLAlchemyError, AppError):
        log.exception("Could not queue apply_dvr_rules after a rule change")
        return None


@bp.get("/recording-rules")
@user_required
@validate_response(RuleList, 200)
async def list_recording_rules() -> dict[str, Any]:
    svc = services()
    user = _user()
    limit, offset = page_args(default_limit=100, max_limit=1000)
    async with svc.db.session() as session:
        rows, total = await rules_service.list_rules(session, user, limit, offset)
    return listing([rules_service.rule_out(r, n) for r, n in rows], total)


@bp.post("/recording-rules")
@user_required
@validate_request(RuleIn)
@validate_response(RuleOut, 201)
async def create_recording_rule(data: RuleIn) -> tuple[dict[str, Any], int]:
    """Create a recurring rule; matching upcoming programmes are scheduled by `apply_dvr_rules` (queued now)."""
    svc = services()
    user = _user()
    async with svc.db.transaction() as session:
        rule = await rules_service.create_rule(session, user, data.model_dump())
        out = await _rule_out(session, rule)
    await _queue_apply(svc)
    return out, 201


@bp.post("/recording-rules/preview")
@user_required
@validate_request(RuleIn)
@validate_response(PreviewOut, 200)
async def preview_recording_rule(data: RuleIn) -> dict[str, Any]:
    """What a rule (saved or not) would record in the next 7 days, and why some airings are skipped."""
    svc = services()
    user = _user()
    values = data.model_dump()
    rule = RecordingRule(owner_id=user.id, **{k: values[k] for k in rules_service.RULE_FIELDS})
    spec = rules_service.rule_spec(rule)
    async with svc.db.session() as session:
        items = await rules_service.preview(session, spec, utcnow(), PREVIEW_DAYS)
    return {"items": items[:1000], "total": len(items), "days": PREVIEW_DAYS}


@bp.post("/recording-rules/apply")
@user_required
@validate_response(TaskQueued, 202)
async def apply_recording_rules() -> tuple[dict[str, Any], int]:
    """Apply every enabled rule now instead of at the next 15-minute run."""
    svc = services()
    _user()
    task_id = (await svc.broker.enqueue(APPLY_RULES, requested_by=g.user.username)).task_id
    return {"task_id": task_id}, 202


@bp.get("/recording-rules/<int:rule_id>")
@user_required
@validate_response(RuleOut, 200)
async def get_recording_rule(rule_id: int) -> dict[str, Any]:
    svc = services()
    user = _user()
    async with svc.db.session() as session:
        return await _rule_out(session, await rules_service.get_rule(session, user, rule_id))


@bp.patch("/recording-rules/<int:rule_id>")
@user_required
@validate_request(RulePatch)
@validate_response(RuleOut, 200)
async def update_recording_rule(rule_id: int, data: RulePatch) -> dict[str, Any]:
    svc = services()
    user = _user()
    async with svc.db.transaction() as session:
        rule = await rules_service.get_rule(session, user, rule_id)
        await rules_service.update_rule(session, rule, data.model_dump(exclude_unset=True))
        out = await _rule_out(session, rule)
    await _queue_apply(svc)
    return out


@bp.delete("/recording-rules/<int:rule_id>")
@user_required
async def delete_recording_rule(rule_id: int) -> tuple[str, int]:
    """Delete a rule; recordings it already scheduled stay (cancel them individually)."""
    svc = services()
    user = _user()
    async with svc.db.transaction() as session:
        rule = await rules_service.get_rule(session, user, rule_id)
        await session.delete(rule)
    return "", 204
