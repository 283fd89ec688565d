"""Read-only guide queries for the TV guide page: channels by rows, their programmes in a time window, search."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.channels.models import Channel, ChannelTag, channel_tag_link
from backend.db import iso_z
from backend.epg.models import Programme

#: Programmes longer than this are not looked for before the window (bounds the index range scan).
MAX_PROGRAMME = timedelta(hours=24)


@dataclass
class Block:
    """One programme placed on a row: percentages of the window, times shifted by the channel's offset."""

    id: int
    title: str
    sub_title: str | None
    start: datetime
    stop: datetime
    left: float
    width: float
    cut_start: bool
    on_now: bool


@dataclass
class Row:
    channel_id: int
    number: int
    name: str
    logo_url: str | None
    mapped: bool
    blocks: list[Block] = field(default_factory=list)


def _enabled_channels(tag_id: int | None) -> Any:
    query = select(Channel).where(Channel.enabled)
    if tag_id is not None:
        query = query.join(channel_tag_link, channel_tag_link.c.channel_id == Channel.id).where(
            channel_tag_link.c.tag_id == tag_id
        )
    return query


async def count_channels(session: AsyncSession, tag_id: int | None) -> int:
    sub = _enabled_channels(tag_id).with_only_columns(Channel.id).subquery()
    return int((await session.execute(select(func.count()).select_from(sub))).scalar_one())


async def tags(session: AsyncSession) -> list[tuple[int, str]]:
    return list(
        (await session.execute(select(ChannelTag.id, ChannelTag.name).order_by(ChannelTag.name))).all()
    )


async def _programmes_for(
    session: AsyncSession, channels: list[Channel], start: datetime, end: datetime
) -> dict[int, list[Programme]]:
    """Programmes of each channel's mapped guide overlapping the window, after the channel's time offset."""
    by_source: dict[int, list[Channel]] = defaultdict(list)
    for ch in channels:
        if ch.epg_source_id is not None and ch.epg_channel_id:
            by_source[ch.epg_source_id].append(ch)
    found: dict[int, list[Programme]] = defaultdict(list)
    for source_id, members in by_source.items():
        offsets = [timedelta(minutes=c.guide_offset_minutes or 0) for c in members]
        # Query the guide's own clock: widen the window by the largest shift either way, filter exactly below.
        early, late = min([*offsets, timedelta(0)]), max([*offsets, timedelta(0)])
        lo, hi = start - late, end - early
        ids = sorted({c.epg_channel_id for c in members if c.epg_channel_id})
        rows = (
            await session.execute(
                select(Programme)
                .where(
                    Programme.source_id == source_id,
                    Programme.xmltv_channel_id.in_(ids),
                    Programme.start < hi,
                    Programme.start > lo - MAX_PROGRAMME,
                    Programme.stop > lo,
                )
                .order_by(Programme.start)
            )
        ).scalars()
        per_xmltv: dict[str, list[Programme]] = defaultdict(list)
        for prog in rows:
            per_xmltv[prog.xmltv_channel_id].append(prog)
        for ch, shift in zip(members, offsets, strict=True):
            for prog in per_xmltv.get(ch.epg_channel_id or "", []):
                if prog.start + shift < end and prog.stop + shift > start:
                    found[ch.id].append(prog)
    return found


def _place(prog: Programme, shift: timedelta, start: datetime, end: datetime, now: datetime) -> Block:
    span = (end - start).total_seconds()
    p_start, p_stop = prog.start + shift, prog.stop + shift
    vis_start, vis_stop = max(p_start, start), min(p_stop, end)
    return Block(
        id=prog.id,
        title=prog.title,
        sub_title=prog.sub_title,
        start=p_start,
        stop=p_stop,
        left=round(100 * (vis_start - start).total_seconds() / span, 3),
        width=round(100 * max((vis_stop - vis_start).total_seconds(), 0) / span, 3),
        cut_start=p_start < start,
        on_now=p_start <= now < p_stop,
    )


async def rows(
    session: AsyncSession,
    *,
    start: datetime,
    end: datetime,
    now: datetime,
    tag_id: int | None,
    limit: int,
    offset: int,
) -> list[Row]:
    """One page of enabled channels (by number) with their programmes placed on the window."""
    channels = list(
        (
            await session.execute(
                _enabled_channels(tag_id).order_by(Channel.number).limit(limit).offset(offset)
            )
        ).scalars()
    )
    programmes = await _programmes_for(session, channels, start, end)
    out: list[Row] = []
    for ch in channels:
        shift = timedelta(minutes=ch.guide_offset_minutes or 0)
        row = Row(
            ch.id, ch.number, ch.name, ch.logo_url, ch.epg_source_id is not None and bool(ch.epg_channel_id)
        )
        row.blocks = [_place(p, shift, start, end, now) for p in programmes.get(ch.id, [])]
        out.append(row)
    return out


def programme_out(prog: Programme, channel: Channel | None) -> dict[str, Any]:
    """A programme for the details dialog, with times shifted by the channel's guide offset."""
    shift = timedelta(minutes=(channel.guide_offset_minutes or 0) if channel else 0)
    episode = None
    if prog.season is not None and prog.episode is not None:
        episode = f"S{prog.season:02d}E{prog.episode:02d}"
    elif prog.episode is not None:
        episode = f"Episode {prog.episode}"
    elif prog.episode_num:
        episode = prog.episode_num
    extra = prog.extra or {}
    return {
        "id": prog.id,
        "title": prog.title,
        "sub_title": prog.sub_title,
        "description": prog.description,
        "categories": [c[0] if isinstance(c, list | tuple) else c for c in (prog.categories or [])],
        "episode": episode,
        "icon": prog.icon,
        "start": iso_z(prog.start + shift),
        "stop": iso_z(prog.stop + shift),
        "start_dt": prog.start + shift,
        "stop_dt": prog.stop + shift,
        "flags": [f for f in ("new", "premiere", "live", "previously_shown") if extra.get(f)],
        "channel_id": channel.id if channel else None,
        "channel_name": channel.name if channel else None,
        "channel_number": channel.number if channel else None,
    }


async def programme(
    session: AsyncSession, programme_id: int, channel_id: int | None
) -> dict[str, Any] | None:
    prog = await session.get(Programme, programme_id)
    if prog is None:
        return None
    channel = await session.get(Channel, channel_id) if channel_id is not None else None
    if (
        channel is None
        or channel.epg_source_id != prog.source_id
        or channel.epg_channel_id != prog.xmltv_channel_id
    ):
        # Any enabled channel showing this guide entry will do when the caller did not say which.
        channel = (
            await session.execute(
                select(Channel)
                .where(
                    Channel.epg_source_id == prog.source_id, Channel.epg_channel_id == prog.xmltv_channel_id
                )
                .order_by(Channel.enabled.desc(), Channel.number)
                .limit(1)
            )
        ).scalar_one_or_none()
    return programme_out(prog, channel)


async def search(
    session: AsyncSession, text: str, now: datetime, tag_id: int | None, limit: int = 60
) -> list[dict[str, Any]]:
    """Programmes on the lineup whose title contains `text` (case-insensitive), not yet over, soonest first."""
    pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    chans = _enabled_channels(tag_id).subquery()
    query = (
        select(Programme, chans.c.id, chans.c.name, chans.c.number, chans.c.guide_offset_minutes)
        .join(
            chans,
            and_(
                Programme.source_id == chans.c.epg_source_id,
                Programme.xmltv_channel_id == chans.c.epg_channel_id,
            ),
        )
        .where(Programme.stop > now - timedelta(hours=12), Programme.title.ilike(pattern, escape="\\"))
        .order_by(Programme.start, chans.c.number)
        .limit(limit * 2)
    )
    out = []
    for prog, cid, name, number, offset in (await session.execute(query)).all():
        shift = timedelta(minutes=offset or 0)
        if prog.stop + shift <= now:
            continue
        out.append(
            {
                "id": prog.id,
                "title": prog.title,
                "sub_title": prog.sub_title,
                "start": iso_z(prog.start + shift),
                "stop": iso_z(prog.stop + shift),
                "channel_id": cid,
                "channel_name": name,
                "channel_number": number,
            }
        )
    return out[:limit]
