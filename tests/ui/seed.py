"""Seed a lineup straight into the database for UI tests (the domains' own APIs may not exist yet)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from backend.channels.models import Channel, ChannelTag, channel_tag_link
from backend.epg.models import EpgSource, Programme
from backend.playlists.models import PlaylistSource, Stream


def now() -> datetime:
    return datetime.now(UTC)


async def seed_lineup(
    svc: Any,
    *,
    channels: int = 3,
    mapped: int | None = None,
    hours: int = 12,
    failed_playlist: bool = False,
    tag: str | None = "News",
) -> dict[str, Any]:
    """A playlist with streams in two groups, a guide with half-hour programmes around now, and channels."""
    stamp = now()
    start = stamp.replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    mapped = channels if mapped is None else mapped
    async with svc.db.transaction() as session:
        playlist = PlaylistSource(
            name="Provider A",
            kind="m3u_url",
            url="http://127.0.0.1:9/a.m3u",
            headers={},
            stream_count=channels,
            last_import_at=stamp,
            last_import_status="failed" if failed_playlist else "succeeded",
            last_import_error="HTTP 500 from the provider" if failed_playlist else None,
            created_at=stamp,
            updated_at=stamp,
        )
        epg = EpgSource(
            name="Guide A",
            kind="xmltv_url",
            url="http://127.0.0.1:9/a.xml",
            last_import_at=stamp,
            last_import_status="succeeded",
            created_at=stamp,
            updated_at=stamp,
        )
        session.add_all([playlist, epg])
        await session.flush()
        tag_row = ChannelTag(name=tag) if tag else None
        if tag_row is not None:
            session.add(tag_row)
        programmes = []
        made = []
        for i in range(channels):
            session.add(
                Stream(
                    source_id=playlist.id,
                    stream_key=f"k{i}",
                    name=f"Channel {i + 1}",
                    url=f"http://127.0.0.1:9/{i}.ts",
                    group_title="News" if i % 2 == 0 else "Sport",
                    first_seen_at=stamp,
                    updated_at=stamp,
                )
            )
            ch = Channel(
                name=f"Channel {i + 1}",
                number=i + 1,
                enabled=True,
                guide_id=f"ch{i + 1}.tic",
                epg_source_id=epg.id if i < mapped else None,
                epg_channel_id=f"xml{i + 1}" if i < mapped else None,
                created_at=stamp,
                updated_at=stamp,
            )
            session.add(ch)
            made.append(ch)
            if i < mapped:
                for slot in range(hours * 2):
                    begin = start + timedelta(minutes=30 * slot)
                    programmes.append(
                        Programme(
                            source_id=epg.id,
                            xmltv_channel_id=f"xml{i + 1}",
                            start=begin,
                            stop=begin + timedelta(minutes=30),
                            title=f"Show {slot} on {i + 1}" if slot % 3 else f"News at {slot}",
                            sub_title="The one with the test" if slot == 4 else None,
                            description="A programme for tests." if slot % 2 else None,
                            categories=["News"] if slot % 3 == 0 else ["Drama"],
                            season=1 if slot == 4 else None,
                            episode=2 if slot == 4 else None,
                        )
                    )
        session.add_all(programmes)
        await session.flush()
        if tag_row is not None:
            for ch in made[::2]:
                await session.execute(channel_tag_link.insert().values(channel_id=ch.id, tag_id=tag_row.id))
        return {
            "playlist_id": playlist.id,
            "epg_id": epg.id,
            "channel_ids": [c.id for c in made],
            "tag_id": tag_row.id if tag_row is not None else None,
            "programme_ids": [p.id for p in programmes],
        }
