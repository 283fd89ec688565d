"""Reconcile TIC's recordings with TVHeadend's DVR entries: create, cancel, stop, remove, copy status back."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select

from backend.channels.models import Channel
from backend.db import utcnow
from backend.dvr.models import (
    ACTION_CANCEL,
    ACTION_STOP,
    ACTIVE,
    CANCELLED,
    COMPLETED,
    FAILED,
    MISSED,
    RECORDING,
    SCHEDULED,
    Recording,
)
from backend.dvr.state import dvr_state
from backend.errors import UpstreamError
from backend.settings.service import get_setting
from backend.tvheadend.client import Row, TvheadendClient

log = logging.getLogger(__name__)

MARKER_RE = re.compile(r"tic:rec:[0-9a-f]{20}")


@dataclass
class Snap:
    """What reconcile needs of one recording, read before any network I/O."""

    id: int
    marker: str
    tvh_uuid: str | None
    status: str
    status_reason: str | None
    pending_action: str | None
    needs_update: bool
    deleted: bool
    channel_uuid: str | None
    title: str
    sub_title: str | None
    start: datetime
    stop: datetime
    padding_before: int
    padding_after: int
    file_size: int | None
    updated_at: datetime

    @property
    def padded_stop(self) -> datetime:
        return self.stop + timedelta(minutes=self.padding_after)


@dataclass
class ReconcileReport:
    created: int = 0
    cancelled: int = 0
    stopped: int = 0
    removed: int = 0
    updated: int = 0
    changed: int = 0
    duplicates: int = 0
    tvh_down: str | None = None
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.tvh_down:
            return f"TVHeadend unavailable ({self.tvh_down}); recordings stay scheduled"
        return (
            f"{self.created} created, {self.cancelled} cancelled, {self.stopped} stopped, {self.removed} removed, "
            f"{self.updated} updated in TVHeadend; {self.changed} recording(s) changed"
            + (f"; {len(self.errors)} error(s)" if self.errors else "")
        )


# Per recording: the fields to write back, plus guards so a concurrent user change is never overwritten.
Changes = dict[str, Any]


async def reconcile_recordings(svc: Any, client: TvheadendClient) -> ReconcileReport:
    """One pass; runs are serialised per process, and the TVH comment marker keeps them idempotent."""
    state = dvr_state(svc)
    async with state.reconcile_lock:
        report = await _reconcile(svc, client)
    if report.changed:
        state.changes.bump()
    return report


async def _load(svc: Any) -> tuple[list[Snap], str]:
    async with svc.db.session() as session:
        config_name = str(await get_setting(session, svc.keyring, "dvr_tvh_config") or "")
        rows = await session.execute(
            select(Recording, Channel.tvh_uuid)
            .outerjoin(Channel, Channel.id == Recording.channel_id)
            .where(
                or_(
                    Recording.deleted.is_(True),
                    Recording.pending_action.is_not(None),
                    Recording.needs_update.is_(True),
                    Recording.status.in_(ACTIVE),
                    (Recording.status == COMPLETED) & Recording.tvh_uuid.is_not(None),
                )
            )
            .order_by(Recording.id)
        )
        snaps = [
            Snap(
                id=r.id,
                marker=r.marker,
                tvh_uuid=r.tvh_uuid,
                status=r.status,
                status_reason=r.status_reason,
                pending_action=r.pending_action,
                needs_update=r.needs_update,
                deleted=r.deleted,
                channel_uuid=ch_uuid,
                title=r.title,
                sub_title=r.sub_title,
                start=r.start,
                stop=r.stop,
                padding_before=r.padding_before,
                padding_after=r.padding_after,
                file_size=r.file_size,
                updated_at=r.updated_at,
            )
            for r, ch_uuid in rows.all()
        ]
    return snaps, config_name


async def _reconcile(svc: Any, client: TvheadendClient) -> ReconcileReport:
    report = ReconcileReport()
    snaps, config_name = await _load(svc)
    if not snaps:
        return report
    changes: dict[int, Changes] = {}
    drop: set[int] = set()
    try:
        grid = await client.dvr_entry_grid("all")
    except UpstreamError as exc:
        report.tvh_down = exc.code
        _while_down(snaps, exc, changes)
        await _write(svc, snaps, changes, drop, report)
        return report
    wrote = False
    entries = _index(grid)
    for snap in snaps:
        entry, duplicates = _match(snap, entries)
        if duplicates:
            wrote |= await _remove_duplicates(client, snap, duplicates, report)
        try:
            wrote |= await _act(client, snap, entry, config_name, changes, drop, report)
        except UpstreamError as exc:
            report.errors.append(f"recording {snap.id}: {exc.message}")
            log.warning("Reconcile of recording %s failed: %s", snap.id, exc.message)
            if exc.transient:
                # TVHeadend went away mid-run; whatever was not done is retried next time.
                report.tvh_down = exc.code
                break
    if wrote and report.tvh_down is None:
        try:
            entries = _index(await client.dvr_entry_grid("all"))
        except UpstreamError as exc:
            report.tvh_down = exc.code
    if report.tvh_down is None:
        for snap in snaps:
            if snap.id in drop or snap.deleted:
                continue
            ch = changes.setdefault(snap.id, {})
            uuid = ch.get("tvh_uuid", snap.tvh_uuid)
            entry = entries.by_uuid.get(uuid) if uuid else None
            if entry is not None and not ch.get("_no_copy"):
                _copy_back(snap, entry, ch)
    await _write(svc, snaps, changes, drop, report)
    return report


# -- matching ----------------------------------------------------------------------------------------


@dataclass
class _Entries:
    by_uuid: dict[str, Row]
    by_marker: dict[str, list[Row]]


def _index(grid: list[Row]) -> _Entries:
    by_uuid: dict[str, Row] = {}
    by_marker: dict[str, list[Row]] = {}
    for row in grid:
        uuid = row.get("uuid")
        if not isinstance(uuid, str):
            continue
        by_uuid[uuid] = row
        found = MARKER_RE.search(str(row.get("comment") or ""))
        if found:
            by_marker.setdefault(found.group(0), []).append(row)
    return _Entries(by_uuid, by_marker)


def _match(snap: Snap, entries: _Entries) -> tuple[Row | None, list[Row]]:
    """The TVH entry of a recording (by uuid, else by marker) and any duplicates carrying its marker."""
    marked = entries.by_marker.get(snap.marker, [])
    entry = entries.by_uuid.get(snap.tvh_uuid) if snap.tvh_uuid else None
    if entry is None and marked:
        entry = min(marked, key=lambda r: (int(r.get("create") or 0), str(r["uuid"])))
    duplicates = [r for r in marked if entry is None or r["uuid"] != entry["uuid"]]
    return entry, duplicates


async def _remove_duplicates(
    client: TvheadendClient, snap: Snap, duplicates: list[Row], report: ReconcileReport
) -> bool:
    # Two TIC processes racing (or a retried create) made a second entry: keep one, delete the rest.
    uuids = [str(r["uuid"]) for r in duplicates]
    log.warning("Recording %s had %d duplicate TVHeadend entries; deleting them", snap.id, len(uuids))
    await client.idnode_delete(uuids)
    report.duplicates += len(uuids)
    return True


# -- actions -----------------------------------------------------------------------------------------


async def _act(
    client: TvheadendClient,
    snap: Snap,
    entry: Row | None,
    config_name: str,
    changes: dict[int, Changes],
    drop: set[int],
    report: ReconcileReport,
) -> bool:
    """Tell TVHeadend what the user asked for; returns whether anything was written to TVHeadend."""
    ch = changes.setdefault(snap.id, {})
    sched = str(entry.get("sched_status", "")) if entry is not None else ""
    uuid = str(entry["uuid"]) if entry is not None else None
    if uuid is not None and uuid != snap.tvh_uuid:
        ch["tvh_uuid"] = uuid
    if snap.deleted:
        drop.add(snap.id)
        if uuid is None:
            return False
        if sched in ("scheduled", "recording"):
            await client.dvr_entry_cancel(uuid)
        if sched != "scheduled":
            await client.dvr_entry_remove(uuid)
        report.removed += 1
        return True
    if snap.pending_action == ACTION_CANCEL:
        ch["pending_action"] = None
        ch["_no_copy"] = True
        if uuid is not None and sched in ("scheduled", "recording"):
            await client.dvr_entry_cancel(uuid)
            report.cancelled += 1
            if sched == "scheduled":
                ch["tvh_uuid"] = None
            return True
        return False
    if snap.pending_action == ACTION_STOP:
        ch["pending_action"] = None
        if uuid is not None and sched == "recording":
            await client.dvr_entry_stop(uuid)
            report.stopped += 1
            return True
        return False
    if entry is not None:
        if snap.needs_update and sched == "scheduled":
            await client.idnode_save({"uuid": uuid, **_times(snap), "disp_title": snap.title})
            ch["needs_update"] = False
            report.updated += 1
            return True
        if snap.needs_update:
            ch["needs_update"] = False
        return False
    return await _without_entry(client, snap, config_name, ch, report)


async def _without_entry(
    client: TvheadendClient, snap: Snap, config_name: str, ch: Changes, report: ReconcileReport
) -> bool:
    now = utcnow()
    if snap.needs_update:
        ch["needs_update"] = False
    if snap.status == RECORDING or (snap.status == SCHEDULED and snap.tvh_uuid is not None):
        # TIC had an entry and TVHeadend no longer has it: someone deleted it in TVHeadend.
        ch["tvh_uuid"] = None
        if snap.status == RECORDING:
            ch.update(status=FAILED, status_reason="The TVHeadend entry disappeared while recording")
        else:
            ch.update(status=CANCELLED, status_reason="The TVHeadend entry was deleted outside TIC")
        return False
    if snap.status == COMPLETED:
        if snap.tvh_uuid is not None:
            ch.update(tvh_uuid=None, file_size=None, status_reason="Removed from TVHeadend")
        return False
    if snap.status != SCHEDULED:
        return False
    if snap.padded_stop <= now:
        reason = "TVHeadend never got this recording before it ended"
        if snap.status_reason:
            reason += f" ({snap.status_reason})"
        ch.update(status=MISSED, status_reason=reason)
        return False
    if not snap.channel_uuid:
        ch.update(status=FAILED, status_reason="The channel is no longer published to TVHeadend")
        return False
    conf = {
        "channel": snap.channel_uuid,
        **_times(snap),
        "disp_title": snap.title,
        "disp_subtitle": snap.sub_title or "",
        # The marker lets a later run find this entry even if the reply to this call is lost.
        "comment": snap.marker,
        "pri": 6,
        "config_name": config_name,
    }
    try:
        uuid = await client.dvr_entry_create(conf)
    except UpstreamError as exc:
        if exc.transient:
            ch["status_reason"] = f"Waiting for TVHeadend: {exc.message}"
            raise
        ch.update(status=FAILED, status_reason=f"TVHeadend rejected the recording: {exc.message}")
        report.errors.append(f"recording {snap.id}: {exc.message}")
        return True
    ch.update(tvh_uuid=uuid, needs_update=False)
    report.created += 1
    return True


def _times(snap: Snap) -> dict[str, int]:
    return {
        "start": int(snap.start.timestamp()),
        "stop": int(snap.stop.timestamp()),
        "start_extra": snap.padding_before,
        "stop_extra": snap.padding_after,
    }


def _while_down(snaps: list[Snap], exc: UpstreamError, changes: dict[int, Changes]) -> None:
    """TVHeadend cannot be asked: recordings stay scheduled; only ones that ran out of time are missed."""
    now = utcnow()
    for snap in snaps:
        if snap.deleted or snap.status != SCHEDULED or snap.tvh_uuid is not None:
            continue
        if snap.padded_stop <= now:
            changes[snap.id] = {
                "status": MISSED,
                "status_reason": f"TVHeadend was unavailable until the recording ended ({exc.code})",
            }
        else:
            changes[snap.id] = {"status_reason": f"Waiting for TVHeadend: {exc.message}"}


# -- copying TVHeadend's view back -------------------------------------------------------------------


def _copy_back(snap: Snap, entry: Row, ch: Changes) -> None:
    sched = str(entry.get("sched_status") or "")
    text = str(entry.get("status") or "")
    if sched == "scheduled":
        status = SCHEDULED
    elif sched == "recording":
        status = RECORDING
    elif sched == "completed":
        status = COMPLETED
    elif sched == "completedError":
        status = MISSED if text == "Time missed" else FAILED
    else:
        status = FAILED
        text = (
            f"TVHeadend marked the entry {text or 'invalid'}: the channel is unknown to TVHeadend "
            "(publish the lineup again)"
        )
    errors = int(entry.get("errors") or 0) + int(entry.get("data_errors") or 0)
    reason = text + (f" ({errors} stream errors)" if errors else "")
    if snap.pending_action == ACTION_STOP and status == RECORDING:
        reason = snap.status_reason or reason
    size = entry.get("filesize")
    ch.setdefault("status", status)
    ch.setdefault("status_reason", reason or None)
    ch["file_size"] = int(size) if isinstance(size, int) and size > 0 else None
    ch["tvh_filename"] = str(entry.get("filename") or "") or None
    ch["real_start"] = _epoch(entry.get("start_real"))
    ch["real_stop"] = _epoch(entry.get("stop_real"))


def _epoch(value: Any) -> datetime | None:
    if isinstance(value, int | float) and value > 0:
        return datetime.fromtimestamp(value, tz=UTC)
    return None


async def _write(
    svc: Any, snaps: list[Snap], changes: dict[int, Changes], drop: set[int], report: ReconcileReport
) -> None:
    """Apply the outcome in one transaction, without undoing what a user changed meanwhile."""
    by_id = {s.id: s for s in snaps}
    async with svc.db.transaction() as session:
        for rid in sorted(set(changes) | drop):
            rec = await session.get(Recording, rid)
            if rec is None:
                continue
            snap = by_id[rid]
            if rid in drop:
                if rec.deleted:
                    await session.delete(rec)
                    report.changed += 1
                continue
            ch = {k: v for k, v in changes[rid].items() if not k.startswith("_")}
            touched_by_user = rec.updated_at != snap.updated_at
            if touched_by_user:
                # Keep the user's newer intent; only facts learned from TVHeadend are recorded.
                ch = {k: v for k, v in ch.items() if k in ("tvh_uuid",) and v is not None}
            if ch.get("pending_action", "keep") is None and rec.pending_action != snap.pending_action:
                ch.pop("pending_action")
            dirty = False
            for key, value in ch.items():
                if getattr(rec, key) != value:
                    setattr(rec, key, value)
                    dirty = True
            if dirty:
                rec.updated_at = utcnow()
                report.changed += 1
