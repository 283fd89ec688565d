"""Channel rows shaped for the API and the pages: sources flagged missing, guide mapping flagged vanished."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from backend.channels import logos
from backend.channels.models import Channel, ChannelSource
from backend.db import iso_z


def source_out(source: ChannelSource) -> dict[str, Any]:
    stream = source.stream
    playlist = source.playlist
    return {
        "id": source.id,
        "position": source.position,
        "kind": "url" if source.url else "stream",
        "stream_id": source.stream_id,
        # Manual URLs are the admin's own; stream URLs (which often carry provider credentials) are not echoed.
        "url": source.url,
        "name": stream.name if stream is not None else source.label,
        "playlist_id": source.playlist_source_id,
        "playlist_name": playlist.name if playlist is not None else None,
        "group": stream.group_title if stream is not None else None,
        "tvg_id": stream.tvg_id if stream is not None else None,
        "enabled": source.enabled,
        "missing": source.missing,
    }


def problems(channel: Channel) -> list[str]:
    """Stable codes for what needs the admin's attention on this channel."""
    found = []
    if not channel.sources:
        found.append("NO_SOURCE")
    if any(s.missing for s in channel.sources):
        found.append("SOURCE_MISSING")
    if channel.sources and not any(s.enabled and not s.missing for s in channel.sources):
        found.append("NO_PLAYABLE_SOURCE")
    if channel.epg_channel_id is not None and channel.epg_channel is None:
        found.append("EPG_MISSING")
    return found


def logo_urls(channels: Sequence[Channel]) -> list[str]:
    urls = [c.logo_url for c in channels if c.logo_url]
    urls += [c.epg_channel.icon for c in channels if c.epg_channel is not None and c.epg_channel.icon]
    return urls


def logo_state(channel: Channel, statuses: dict[str, str]) -> str | None:
    """cached (its own logo), fallback (the guide's icon), failed, pending, or None (no logo at all)."""
    own = statuses.get(channel.logo_url or "")
    icon_url = channel.epg_channel.icon if channel.epg_channel is not None else None
    if own == logos.OK:
        return "cached"
    if icon_url and statuses.get(icon_url) == logos.OK:
        return "fallback"
    if not channel.logo_url and not icon_url:
        return None
    return "failed" if own == logos.FAILED else "pending"


def channel_out(channel: Channel, statuses: dict[str, str]) -> dict[str, Any]:
    epg = None
    if channel.epg_channel_id is not None:
        guide = channel.epg_channel
        names = [str(n[0]) for n in guide.display_names or [] if n] if guide is not None else []
        epg = {
            "source_name": channel.epg_source.name if channel.epg_source is not None else None,
            "display_name": names[0] if names else None,
            "icon": guide.icon if guide is not None else None,
            "programme_count": guide.programme_count if guide is not None else None,
            "missing": guide is None,
            "method": channel.epg_match_method,
            "score": channel.epg_match_score,
        }
    state = logo_state(channel, statuses)
    return {
        "id": channel.id,
        "name": channel.name,
        "number": channel.number,
        "enabled": channel.enabled,
        "tags": [t.name for t in channel.tags],
        "logo_url": channel.logo_url,
        "logo": logos.LOGO_PATH.format(channel_id=channel.id) if state in ("cached", "fallback") else None,
        "logo_status": state,
        "epg_id": channel.epg_source_id,
        "epg_channel_id": channel.epg_channel_id,
        "epg": epg,
        "guide_offset_minutes": channel.guide_offset_minutes,
        "guide_id": channel.guide_id,
        "tvh_uuid": channel.tvh_uuid,
        "sources": [source_out(s) for s in channel.sources],
        "problems": problems(channel),
        "created_at": iso_z(channel.created_at),
        "updated_at": iso_z(channel.updated_at),
    }


async def channels_out(session: AsyncSession, channels: Sequence[Channel]) -> list[dict[str, Any]]:
    statuses = await logos.statuses(session, logo_urls(channels))
    return [channel_out(c, statuses) for c in channels]
