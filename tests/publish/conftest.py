"""Fixtures for publish tests: a fake TVHeadend, a client for it, and lineup rows inserted directly."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from sqlalchemy import insert

from backend.channels.models import Channel, ChannelSource, ChannelTag, channel_tag_link
from backend.db import Database, utcnow
from backend.playlists.models import PlaylistSource, Stream
from backend.publish.service import PublishOptions, publish_lineup
from backend.tvheadend.client import TvheadendClient
from tests.fakes.tvheadend import FakeTvheadend

ADMIN = {"admin": ("admin", {"admin", "dvr", "streaming", "webui"})}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def tvh() -> AsyncIterator[FakeTvheadend]:
    async with FakeTvheadend(auth_mode=2, users=ADMIN, scan_delay=0.02, mapper_delay=0.01) as fake:
        yield fake


@pytest.fixture
def client(tvh: FakeTvheadend, http: aiohttp.ClientSession) -> TvheadendClient:
    return TvheadendClient(http, tvh.url, "admin", "admin", timeout=5.0)


@pytest.fixture
def db(svc: Any) -> Database:
    database: Database = svc.db
    return database


OPTIONS = PublishOptions(concurrency=8, scan_timeout=5.0, scan_poll_interval=0.05)


async def _noop(_pct: float, _msg: str) -> None:
    return None


async def publish(db: Database, client: TvheadendClient, **overrides: Any) -> dict[str, Any]:
    options = PublishOptions(**{**OPTIONS.__dict__, **overrides})
    return await publish_lineup(db, client, options, _noop)


@dataclass
class Lineup:
    """Ids of what `make_lineup` inserted."""

    playlists: dict[str, int] = field(default_factory=dict)
    channels: dict[str, int] = field(default_factory=dict)
    sources: dict[str, list[int]] = field(default_factory=dict)
    tags: dict[str, int] = field(default_factory=dict)


async def add_playlist(db: Database, name: str, connection_limit: int | None = 2, **extra: Any) -> int:
    now = utcnow()
    async with db.transaction() as session:
        result = await session.execute(
            insert(PlaylistSource).values(
                name=name,
                kind="m3u_url",
                url=f"http://provider.invalid/{name}.m3u",
                connection_limit=connection_limit,
                headers=extra.pop("headers", {}),
                created_at=now,
                updated_at=now,
                **extra,
            )
        )
        return int(result.inserted_primary_key[0])  # type: ignore[index]


async def add_stream(db: Database, playlist_id: int, name: str, url: str, headers: Any = None) -> int:
    now = utcnow()
    async with db.transaction() as session:
        result = await session.execute(
            insert(Stream).values(
                source_id=playlist_id,
                stream_key=f"k-{name}-{url}"[:64],
                name=name,
                url=url,
                headers=headers,
                first_seen_at=now,
                updated_at=now,
            )
        )
        return int(result.inserted_primary_key[0])  # type: ignore[index]


async def add_channel(
    db: Database,
    name: str,
    number: int,
    *,
    streams: list[tuple[int, int]] = (),  # type: ignore[assignment]
    urls: list[str] = (),  # type: ignore[assignment]
    tags: list[int] = (),  # type: ignore[assignment]
    logo: str | None = None,
    guide_id: str | None = None,
    enabled: bool = True,
    epg: tuple[int, str] | None = None,
) -> tuple[int, list[int]]:
    """A channel with sources: (playlist id, stream id) pairs first, then manual URLs."""
    now = utcnow()
    async with db.transaction() as session:
        result = await session.execute(
            insert(Channel).values(
                name=name,
                number=number,
                enabled=enabled,
                logo_url=logo,
                guide_id=guide_id or f"{name.lower().replace(' ', '.')}.tic",
                guide_offset_minutes=0,
                epg_source_id=epg[0] if epg else None,
                epg_channel_id=epg[1] if epg else None,
                created_at=now,
                updated_at=now,
            )
        )
        channel_id = int(result.inserted_primary_key[0])  # type: ignore[index]
        source_ids = []
        position = 0
        for playlist_id, stream_id in streams:
            r = await session.execute(
                insert(ChannelSource).values(
                    channel_id=channel_id,
                    position=position,
                    stream_id=stream_id,
                    playlist_source_id=playlist_id,
                    enabled=True,
                    created_at=now,
                )
            )
            source_ids.append(int(r.inserted_primary_key[0]))  # type: ignore[index]
            position += 1
        for url in urls:
            r = await session.execute(
                insert(ChannelSource).values(
                    channel_id=channel_id, position=position, url=url, enabled=True, created_at=now
                )
            )
            source_ids.append(int(r.inserted_primary_key[0]))  # type: ignore[index]
            position += 1
        for tag_id in tags:
            await session.execute(insert(channel_tag_link).values(channel_id=channel_id, tag_id=tag_id))
    return channel_id, source_ids


async def add_tag(db: Database, name: str) -> int:
    async with db.transaction() as session:
        result = await session.execute(insert(ChannelTag).values(name=name))
        return int(result.inserted_primary_key[0])  # type: ignore[index]


async def make_lineup(db: Database) -> Lineup:
    """Three channels: one with two sources on two playlists, one with a manual URL, one with headers."""
    out = Lineup()
    out.playlists["alpha"] = await add_playlist(db, "Alpha", 2)
    out.playlists["beta"] = await add_playlist(db, "Beta", None, user_agent="BetaAgent/1.0")
    out.tags["news"] = await add_tag(db, "News")
    s1 = await add_stream(db, out.playlists["alpha"], "One A", "http://alpha.invalid/one.ts")
    s2 = await add_stream(db, out.playlists["beta"], "One B", "http://beta.invalid/one.ts")
    s3 = await add_stream(
        db,
        out.playlists["alpha"],
        "Three",
        "http://alpha.invalid/three.ts",
        headers={"Referer": "http://r.invalid/"},
    )
    out.channels["one"], out.sources["one"] = await add_channel(
        db,
        "One",
        101,
        streams=[(out.playlists["alpha"], s1), (out.playlists["beta"], s2)],
        tags=[out.tags["news"]],
        logo="http://logos.invalid/one.png",
    )
    out.channels["two"], out.sources["two"] = await add_channel(
        db, "Two", 102, urls=["http://manual.invalid/two.ts|User-Agent=Kodi%2F21&Referer=x"]
    )
    out.channels["three"], out.sources["three"] = await add_channel(
        db, "Three", 103, streams=[(out.playlists["alpha"], s3)]
    )
    return out
