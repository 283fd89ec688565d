"""Recordings: DVR rights, validation, scheduling, cancel/stop/delete and overlap warnings."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth.models import ADMIN, User
from backend.channels.models import Channel
from backend.db import iso_z, utcnow
from backend.dvr.models import (
    ACTION_CANCEL,
    ACTION_STOP,
    ACTIVE,
    CANCELLED,
    COMPLETED,
    RECORDING,
    SCHEDULED,
    STATUSES,
    Recording,
)
from backend.epg.models import Programme
from backend.errors import Conflict, Forbidden, Invalid, NotFound
from backend.keys import Keyring
from backend.settings.service import get_setting

#: The longest single recording TIC schedules; longer ones are almost always a typing mistake.
MAX_DURATION = timedelta(hours=24)


class RecordingNotFound(NotFound):
    code = "RECORDING_NOT_FOUND"


class DvrForbidden(Forbidden):
    code = "DVR_FORBIDDEN"


@dataclass(frozen=True)
class DvrDefaults:
    padding_before: int = 2
    padding_after: int = 5
    max_parallel: int = 2


async def load_defaults(session: AsyncSession, keyring: Keyring) -> DvrDefaults:
    return DvrDefaults(
        padding_before=int(await get_setting(session, keyring, "dvr_padding_before_minutes")),
        padding_after=int(await get_setting(session, keyring, "dvr_padding_after_minutes")),
        max_parallel=int(await get_setting(session, keyring, "dvr_max_parallel_recordings")),
    )


# -- rights ----------------------------------------------------------------------------------------


def dvr_scope(user: User) -> str:
    """ "all" or "own"; users without DVR rights get 403 DVR_FORBIDDEN."""
    if user.role == ADMIN:
        return "all"
    if user.dvr_access in ("own", "all"):
        return user.dvr_access
    raise DvrForbidden("Your account has no DVR rights; ask an admin to grant them")


def check_owner(user: User, owner_id: int | None) -> None:
    if dvr_scope(user) == "own" and owner_id != user.id:
        raise RecordingNotFound("No such recording")


# -- identity helpers (shared with the rules) ------------------------------------------------------


def normalise_title(title: str) -> str:
    return " ".join(title.casefold().split())


def episode_identity(
    season: int | None, episode: int | None, episode_num: str | None, sub_title: str | None
) -> tuple[str | None, str | None]:
    """(key, label): season/episode numbers when known, else the raw episode number, else the subtitle."""
    if episode is not None:
        if season is not None:
            return f"s{season}e{episode}", f"S{season:02d}E{episode:02d}"
        return f"e{episode}", f"E{episode:02d}"
    if episode_num and episode_num.strip():
        return "ep:" + "".join(episode_num.split()).casefold(), episode_num.strip()[:100]
    if sub_title and sub_title.strip():
        return "sub:" + normalise_title(sub_title), None
    return None, None


def padded(rec: Recording) -> tuple[datetime, datetime]:
    return (
        rec.start - timedelta(minutes=rec.padding_before),
        rec.stop + timedelta(minutes=rec.padding_after),
    )


# -- shaping ---------------------------------------------------------------------------------------


def is_playable(rec: Recording) -> bool:
    return rec.tvh_uuid is not None and (
        rec.status in (RECORDING, COMPLETED) or bool(rec.file_size and rec.status != SCHEDULED)
    )


def recording_out(rec: Recording, owner: str | None, warnings: list[str] | None = None) -> dict[str, Any]:
    return {
        "id": rec.id,
        "channel_id": rec.channel_id,
        "channel_name": rec.channel_name,
        "programme_id": rec.programme_id,
        "rule_id": rec.rule_id,
        "title": rec.title,
        "sub_title": rec.sub_title,
        "description": rec.description,
        "episode": rec.episode_label,
        "start": iso_z(rec.start),
        "stop": iso_z(rec.stop),
        "padding_before": rec.padding_before,
        "padding_after": rec.padding_after,
        "status": rec.status,
        "status_reason": rec.status_reason,
        "pending_action": rec.pending_action,
        "tvh_uuid": rec.tvh_uuid,
        "file_size": rec.file_size,
        "real_start": iso_z(rec.real_start),
        "real_stop": iso_z(rec.real_stop),
        "owner_id": rec.owner_id,
        "owner": owner,
        "playable": is_playable(rec),
        "hls_url": f"/tic-api/recordings/{rec.id}/hls.m3u8" if is_playable(rec) else None,
        "created_at": iso_z(rec.created_at),
        "updated_at": iso_z(rec.updated_at),
        "warnings": warnings or [],
    }


# -- reading ---------------------------------------------------------------------------------------


def _visible(user: User) -> Any:
    cond: Any = Recording.deleted.is_(False)
    if dvr_scope(user) == "own":
        cond = cond & (Recording.owner_id == user.id)
    return cond


async def list_recordings(
    session: AsyncSession,
    user: User,
    *,
    statuses: list[str] | None = None,
    limit: int = 50,
    offset: int = 0,
    newest_first: bool = False,
) -> tuple[list[tuple[Recording, str | None]], int]:
    cond = _visible(user)
    if statuses:
        unknown = sorted(set(statuses) - set(STATUSES))
        if unknown:
            raise Invalid(
                f"Unknown status {', '.join(unknown)}; use {', '.join(STATUSES)}",
                fields={"status": "unknown status"},
            )
        cond = cond & Recording.status.in_(statuses)
    total = (await session.execute(select(func.count()).select_from(Recording).where(cond))).scalar_one()
    rows = await session.execute(
        select(Recording, User.username)
        .outerjoin(User, User.id == Recording.owner_id)
        .where(cond)
        .order_by(
            *(
                (Recording.start.desc(), Recording.id.desc())
                if newest_first
                else (Recording.start, Recording.id)
            )
        )
        .limit(limit)
        .offset(offset)
    )
    return [(rec, name) for rec, name in rows.all()], int(total)


async def get_recording(session: AsyncSession, user: User, recording_id: int) -> Recording:
    rec = await session.get(Recording, recording_id)
    if rec is None or rec.deleted:
        raise RecordingNotFound(f"No recording with id {recording_id}")
    check_owner(user, rec.owner_id)
    return rec


async def check_recording_file_access(session: AsyncSession, user: User, tvh_uuid: str) -> None:
    """May `user` fetch TVHeadend's file of the recording `tvh_uuid`? Raises DvrForbidden or RecordingNotFound.

    Users who see all recordings may fetch any file, also ones recorded outside TIC; users with "own"
    access only files of recordings TIC made for them (anything else is "not found", not "forbidden",
    so a uuid does not reveal that someone else's recording exists).
    """
    if dvr_scope(user) == "all":
        return
    owner = await session.scalar(
        select(Recording.owner_id).where(Recording.tvh_uuid == tvh_uuid, Recording.deleted.is_(False))
    )
    if owner != user.id:
        raise RecordingNotFound("No such recording")


async def needs_reconcile(session: AsyncSession) -> bool:
    """Is anything waiting for TVHeadend (scheduled, recording, or a cancel/stop/delete not yet sent)?"""
    found = await session.execute(
        select(Recording.id)
        .where(
            Recording.status.in_(ACTIVE) | Recording.pending_action.is_not(None) | Recording.deleted.is_(True)
        )
        .limit(1)
    )
    return found.first() is not None


async def owner_name(session: AsyncSession, owner_id: int | None) -> str | None:
    if owner_id is None:
        return None
    user = await session.get(User, owner_id)
    return user.username if user is not None else None


# -- scheduling ------------------------------------------------------------------------------------


async def _published_channel(session: AsyncSession, channel_id: int) -> Channel:
    channel = await session.get(Channel, channel_id)
    if channel is None:
        raise Invalid(
            f"No channel with id {channel_id}", code="CHANNEL_NOT_FOUND", fields={"channel_id": "not found"}
        )
    if not channel.tvh_uuid:
        raise Conflict(
            f"Channel '{channel.name}' is not published to TVHeadend yet: publish the lineup first",
            code="CHANNEL_NOT_PUBLISHED",
        )
    return channel


def _check_times(start: datetime, stop: datetime, now: datetime) -> None:
    if stop <= start:
        raise Invalid(
            "stop must be after start", code="INVALID_TIME_RANGE", fields={"stop": "not after start"}
        )
    if stop - start > MAX_DURATION:
        raise Invalid(
            "A recording can last at most 24 hours", code="INVALID_TIME_RANGE", fields={"stop": "too long"}
        )
    if stop <= now:
        raise Invalid(
            "That time range is entirely in the past",
            code="RECORDING_IN_PAST",
            fields={"stop": "in the past"},
        )


async def channels_for_programme(session: AsyncSession, programme: Programme) -> list[Channel]:
    rows = await session.execute(
        select(Channel)
        .where(
            Channel.epg_source_id == programme.source_id,
            Channel.epg_channel_id == programme.xmltv_channel_id,
        )
        .order_by(Channel.number)
    )
    return list(rows.scalars().all())


@dataclass
class NewRecording:
    channel_id: int | None = None
    start: datetime | None = None
    stop: datetime | None = None
    programme_id: int | None = None
    title: str | None = None
    padding_before: int | None = None
    padding_after: int | None = None


async def create_recording(
    session: AsyncSession, user: User, data: NewRecording, defaults: DvrDefaults
) -> tuple[Recording, list[str]]:
    """Schedule from a guide programme or a channel + time range; returns the row and overlap warnings."""
    dvr_scope(user)
    now = utcnow()
    sub_title = description = episode_key = episode_label = None
    if data.programme_id is not None:
        programme = await session.get(Programme, data.programme_id)
        if programme is None:
            raise Invalid(
                f"No guide programme with id {data.programme_id} (the guide may have been refreshed)",
                code="PROGRAMME_NOT_FOUND",
                fields={"programme_id": "not found"},
            )
        candidates = await channels_for_programme(session, programme)
        if data.channel_id is not None:
            candidates = [c for c in candidates if c.id == data.channel_id]
        if not candidates:
            raise Invalid(
                "No channel shows this programme's guide channel",
                code="CHANNEL_NOT_FOUND",
                fields={"channel_id": "no channel is mapped to this programme"},
            )
        published = [c for c in candidates if c.tvh_uuid]
        channel = await _published_channel(session, (published or candidates)[0].id)
        offset = timedelta(minutes=channel.guide_offset_minutes)
        start, stop = programme.start + offset, programme.stop + offset
        title = data.title or programme.title
        sub_title, description = programme.sub_title, programme.description
        episode_key, episode_label = episode_identity(
            programme.season, programme.episode, programme.episode_num, programme.sub_title
        )
    else:
        if data.channel_id is None or data.start is None or data.stop is None:
            raise Invalid(
                "Give either programme_id, or channel_id with start and stop",
                fields={"programme_id": "or channel_id + start + stop"},
            )
        channel = await _published_channel(session, data.channel_id)
        start, stop = data.start, data.stop
        title = data.title or f"Recording on {channel.name}"
    _check_times(start, stop, now)
    await _refuse_duplicate(session, channel.id, title, start, stop)
    rec = Recording(
        marker=new_marker(),
        channel_id=channel.id,
        channel_name=channel.name,
        programme_id=data.programme_id,
        owner_id=user.id,
        title=title.strip()[:1000] or f"Recording on {channel.name}",
        sub_title=sub_title,
        description=description,
        episode_key=episode_key,
        episode_label=episode_label,
        start=start,
        stop=stop,
        padding_before=defaults.padding_before if data.padding_before is None else data.padding_before,
        padding_after=defaults.padding_after if data.padding_after is None else data.padding_after,
        status=SCHEDULED,
        created_at=now,
        updated_at=now,
    )
    await add_recording(session, rec)
    return rec, await overlap_warnings(session, rec, defaults.max_parallel)


def new_marker() -> str:
    """The tag written into the TVH entry's comment: random, so it is unique across databases too."""
    return "tic:rec:" + secrets.token_hex(10)


async def add_recording(session: AsyncSession, rec: Recording) -> None:
    session.add(rec)
    await session.flush()


async def _refuse_duplicate(
    session: AsyncSession, channel_id: int, title: str, start: datetime, stop: datetime
) -> None:
    # Pressing "record" twice must not make two TVH entries of the same programme.
    rows = await session.execute(
        select(Recording.id, Recording.title).where(
            Recording.channel_id == channel_id,
            Recording.deleted.is_(False),
            Recording.status.in_(ACTIVE),
            Recording.start < stop,
            Recording.stop > start,
        )
    )
    for rid, existing in rows.all():
        if normalise_title(existing) == normalise_title(title):
            raise Conflict(
                f"'{title}' is already scheduled on this channel at that time (recording {rid})",
                code="RECORDING_EXISTS",
            )


async def overlap_warnings(session: AsyncSession, rec: Recording, limit: int) -> list[str]:
    """Warn when more recordings than TVHeadend can make at once overlap this one's padded window."""
    if limit <= 0:
        return []
    lo, hi = padded(rec)
    slack = timedelta(hours=5)
    rows = await session.execute(
        select(Recording).where(
            Recording.id != rec.id,
            Recording.deleted.is_(False),
            Recording.status.in_(ACTIVE),
            Recording.start < hi + slack,
            Recording.stop > lo - slack,
        )
    )
    windows = [padded(r) for r in rows.scalars().all()]
    windows = [(a, b) for a, b in windows if a < hi and b > lo] + [(lo, hi)]
    events = sorted([(max(a, lo), 1) for a, _ in windows] + [(min(b, hi), -1) for _, b in windows])
    depth = peak = 0
    peak_at = lo
    for when, step in events:
        depth += step
        if depth > peak:
            peak, peak_at = depth, when
    if peak <= limit:
        return []
    return [
        f"{peak} recordings overlap at {iso_z(peak_at)}, but TVHeadend can record {limit} at once "
        "(setting dvr_max_parallel_recordings): one of them may fail"
    ]


@dataclass
class RecordingChanges:
    title: str | None = None
    start: datetime | None = None
    stop: datetime | None = None
    padding_before: int | None = None
    padding_after: int | None = None


async def update_recording(
    session: AsyncSession, user: User, rec: Recording, changes: RecordingChanges, defaults: DvrDefaults
) -> list[str]:
    if rec.status != SCHEDULED or rec.pending_action is not None:
        raise Conflict(
            f"Only scheduled recordings can be changed; this one is {rec.status}",
            code="RECORDING_NOT_SCHEDULED",
        )
    start = changes.start or rec.start
    stop = changes.stop or rec.stop
    if changes.start is not None or changes.stop is not None:
        _check_times(start, stop, utcnow())
    rec.start, rec.stop = start, stop
    if changes.title is not None:
        rec.title = changes.title.strip() or rec.title
    if changes.padding_before is not None:
        rec.padding_before = changes.padding_before
    if changes.padding_after is not None:
        rec.padding_after = changes.padding_after
    rec.needs_update = rec.tvh_uuid is not None
    rec.updated_at = utcnow()
    return await overlap_warnings(session, rec, defaults.max_parallel)


async def cancel_recording(session: AsyncSession, user: User, rec: Recording) -> None:
    if rec.status == RECORDING:
        raise Conflict("This recording is running: stop it instead", code="RECORDING_RUNNING")
    if rec.status != SCHEDULED:
        raise Conflict(f"This recording is already {rec.status}", code="RECORDING_NOT_SCHEDULED")
    rec.status = CANCELLED
    rec.status_reason = f"Cancelled by {user.username}"
    # Even without a known TVH uuid an entry may exist (a lost reply): reconcile looks for the marker.
    rec.pending_action = ACTION_CANCEL
    rec.updated_at = utcnow()


async def stop_recording(session: AsyncSession, user: User, rec: Recording) -> None:
    if rec.status != RECORDING:
        raise Conflict(
            f"Only a running recording can be stopped; this one is {rec.status}", code="RECORDING_NOT_RUNNING"
        )
    rec.pending_action = ACTION_STOP
    rec.status_reason = f"Stop requested by {user.username}"
    rec.updated_at = utcnow()


async def delete_recording(session: AsyncSession, user: User, rec: Recording) -> None:
    """Hide the recording; reconcile removes the TVH entry and its file, then the row."""
    if rec.tvh_uuid is None and rec.status not in ACTIVE and rec.pending_action is None:
        await session.delete(rec)
        return
    rec.deleted = True
    rec.updated_at = utcnow()
