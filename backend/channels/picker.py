"""Read-only views for building the lineup: imported streams and their groups, and the tags in use."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.channels.models import ChannelSource, ChannelTag, channel_tag_link
from backend.playlists.models import PlaylistSource, Stream


def _like(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def tags(session: AsyncSession) -> list[dict[str, Any]]:
    stmt = (
        select(ChannelTag.id, ChannelTag.name, func.count(channel_tag_link.c.channel_id))
        .outerjoin(channel_tag_link, channel_tag_link.c.tag_id == ChannelTag.id)
        .group_by(ChannelTag.id, ChannelTag.name)
        .order_by(ChannelTag.name)
    )
    return [{"id": i, "name": n, "channel_count": c} for i, n, c in await session.execute(stmt)]


def _in_lineup() -> Any:
    return exists(select(ChannelSource.id).where(ChannelSource.stream_id == Stream.id))


async def streams(
    session: AsyncSession,
    *,
    q: str,
    playlist_id: int | None,
    group: str | None,
    include_vod: bool,
    not_in_lineup: bool,
    limit: int,
    offset: int,
) -> tuple[list[dict[str, Any]], int]:
    """Streams in playlist order, filtered; each says whether a channel already uses it."""

    def filtered(stmt: Select[Any]) -> Select[Any]:
        if playlist_id is not None:
            stmt = stmt.where(Stream.source_id == playlist_id)
        if group is not None:
            stmt = stmt.where(
                Stream.group_title == group
                if group
                else or_(Stream.group_title.is_(None), Stream.group_title == "")
            )
        if not include_vod:
            stmt = stmt.where(Stream.is_vod.is_(False))
        if not_in_lineup:
            stmt = stmt.where(~_in_lineup())
        if q.strip():
            pattern = _like(q.strip())
            stmt = stmt.where(
                or_(
                    func.lower(Stream.name).like(pattern, escape="\\"),
                    func.lower(Stream.tvg_id).like(pattern, escape="\\"),
                )
            )
        return stmt

    total = int((await session.execute(filtered(select(func.count(Stream.id))))).scalar_one())
    stmt = filtered(
        select(
            Stream.id,
            Stream.name,
            Stream.group_title,
            Stream.tvg_id,
            Stream.tvg_name,
            Stream.tvg_logo,
            Stream.is_vod,
            Stream.source_id,
            PlaylistSource.name.label("playlist_name"),
            _in_lineup().label("in_lineup"),
        ).join(PlaylistSource, PlaylistSource.id == Stream.source_id)
    )
    stmt = (
        stmt.order_by(PlaylistSource.position, PlaylistSource.id, Stream.line_no, Stream.id)
        .limit(limit)
        .offset(offset)
    )
    items = [
        {
            "id": r.id,
            "name": r.name,
            "group": r.group_title,
            "tvg_id": r.tvg_id,
            "tvg_name": r.tvg_name,
            "logo": r.tvg_logo,
            "is_vod": bool(r.is_vod),
            "playlist_id": r.source_id,
            "playlist_name": r.playlist_name,
            "in_lineup": bool(r.in_lineup),
        }
        for r in await session.execute(stmt)
    ]
    return items, total


async def groups(
    session: AsyncSession, playlist_id: int | None, *, include_vod: bool
) -> list[dict[str, Any]]:
    """Each playlist's groups with their stream count and how many of those streams have a channel."""
    stmt = (
        select(
            Stream.source_id,
            PlaylistSource.name,
            PlaylistSource.position,
            Stream.group_title,
            func.count(Stream.id.distinct()),
            func.count(ChannelSource.stream_id.distinct()),
            func.min(Stream.line_no),
        )
        .join(PlaylistSource, PlaylistSource.id == Stream.source_id)
        .outerjoin(ChannelSource, ChannelSource.stream_id == Stream.id)
        .group_by(Stream.source_id, PlaylistSource.name, PlaylistSource.position, Stream.group_title)
    )
    if playlist_id is not None:
        stmt = stmt.where(Stream.source_id == playlist_id)
    if not include_vod:
        stmt = stmt.where(Stream.is_vod.is_(False))
    # No group and an empty group title are the same group to the admin.
    merged: dict[tuple[int, str], dict[str, Any]] = {}
    for pid, name, position, group, count, in_lineup, first in await session.execute(stmt):
        key = (pid, group or "")
        row = merged.setdefault(
            key,
            {
                "playlist_id": pid,
                "playlist_name": name,
                "group": group or "",
                "count": 0,
                "in_lineup": 0,
                "_order": (position, pid, first or 0),
            },
        )
        row["count"] += count
        row["in_lineup"] += in_lineup
        row["_order"] = min(row["_order"], (position, pid, first or 0))
    rows = sorted(merged.values(), key=lambda r: r["_order"])
    return [{k: v for k, v in r.items() if k != "_order"} for r in rows]
