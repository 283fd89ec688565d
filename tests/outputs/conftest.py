"""Fixtures for the outputs: a lineup inserted straight through the models, and the admin's stream key."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from sqlalchemy import select

from backend.channels.logos import url_hash
from backend.channels.models import Channel, ChannelSource, ChannelTag, LogoCache, channel_tag_link
from backend.epg.models import EpgChannel, EpgSource, Programme
from backend.playlists.models import PlaylistSource, Stream
from tests.conftest import ApiClient

XMLTV_DTD = Path("/usr/share/xmltv/xmltv.dtd")


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class Lineup:
    """Inserts playlists, streams, guides, programmes and channels directly, as the other domains would."""

    def __init__(self, svc: Any) -> None:
        self.svc = svc

    async def _add(self, row: Any) -> Any:
        async with self.svc.db.transaction() as session:
            session.add(row)
            await session.flush()
        return row

    async def playlist(self, name: str = "Provider", connection_limit: int | None = None, **kw: Any) -> Any:
        stamp = now()
        return await self._add(
            PlaylistSource(
                name=name,
                kind="m3u_url",
                url="http://provider.invalid/get.php",
                connection_limit=connection_limit,
                headers=kw.pop("headers", {}),
                created_at=stamp,
                updated_at=stamp,
                **kw,
            )
        )

    async def stream(self, playlist: Any, name: str, url: str, headers: dict[str, str] | None = None) -> Any:
        stamp = now()
        return await self._add(
            Stream(
                source_id=playlist.id,
                stream_key=hashlib.sha1(url.encode()).hexdigest(),
                name=name,
                url=url,
                headers=headers,
                first_seen_at=stamp,
                updated_at=stamp,
            )
        )

    async def guide(self, name: str = "Guide") -> Any:
        stamp = now()
        return await self._add(EpgSource(name=name, kind="xmltv_url", created_at=stamp, updated_at=stamp))

    async def guide_channel(self, guide: Any, xmltv_id: str, name: str, icon: str | None = None) -> Any:
        return await self._add(
            EpgChannel(source_id=guide.id, xmltv_id=xmltv_id, display_names=[[name, None]], icon=icon)
        )

    async def programmes(self, guide: Any, xmltv_id: str, rows: list[dict[str, Any]]) -> None:
        async with self.svc.db.transaction() as session:
            for row in rows:
                session.add(Programme(source_id=guide.id, xmltv_channel_id=xmltv_id, **row))

    async def _cache_logo(self, session: Any, url: str, stamp: Any) -> None:
        found = await session.scalar(select(LogoCache).where(LogoCache.url_hash == url_hash(url)))
        if found is None:
            session.add(
                LogoCache(
                    url_hash=url_hash(url),
                    url=url,
                    status="ok",
                    content_sha256="0" * 64,
                    content_type="image/png",
                    size=1,
                    checked_at=stamp,
                    fetched_at=stamp,
                )
            )

    async def channel(
        self,
        number: int,
        name: str,
        *,
        guide_id: str | None = None,
        sources: list[Any] | None = None,
        tags: list[str] | None = None,
        enabled: bool = True,
        logo_url: str | None = None,
        epg: tuple[Any, str] | None = None,
        offset: int = 0,
        tvh_uuid: str | None = None,
        logo_cached: bool = True,
    ) -> Any:
        """sources: Stream rows, URL strings, or dicts of ChannelSource fields, in priority order.

        With a logo_url, logo_cached says whether TIC holds a good copy of it (as the logo job leaves it).
        """
        stamp = now()
        async with self.svc.db.transaction() as session:
            if logo_url and logo_cached:
                await self._cache_logo(session, logo_url, stamp)
            channel = Channel(
                name=name,
                number=number,
                enabled=enabled,
                logo_url=logo_url,
                epg_source_id=epg[0].id if epg else None,
                epg_channel_id=epg[1] if epg else None,
                guide_offset_minutes=offset,
                guide_id=guide_id or f"tic-{number}",
                tvh_uuid=tvh_uuid,
                created_at=stamp,
                updated_at=stamp,
            )
            session.add(channel)
            await session.flush()
            for position, source in enumerate(sources or []):
                fields: dict[str, Any]
                if isinstance(source, Stream):
                    fields = {
                        "stream_id": source.id,
                        "playlist_source_id": source.source_id,
                        "label": source.name,
                    }
                elif isinstance(source, str):
                    fields = {"url": source}
                else:
                    fields = dict(source)
                session.add(
                    ChannelSource(channel_id=channel.id, position=position, created_at=stamp, **fields)
                )
            for tag_name in tags or []:
                tag_id = await session.scalar(select(ChannelTag.id).where(ChannelTag.name == tag_name))
                if tag_id is None:
                    row = ChannelTag(name=tag_name)
                    session.add(row)
                    await session.flush()
                    tag_id = row.id
                await session.execute(channel_tag_link.insert().values(channel_id=channel.id, tag_id=tag_id))
        return channel


@pytest.fixture
def lineup(svc: Any) -> Lineup:
    return Lineup(svc)


@pytest.fixture
async def stream_key(admin: ApiClient) -> str:
    resp = await admin.get("/tic-api/users/self/stream-key")
    return str((await resp.get_json())["stream_key"])


async def build_guide(admin: ApiClient, timeout: float = 60) -> dict[str, Any]:
    """Queue build_xmltv through the API and wait for the run to finish; returns the task."""
    resp = await admin.post("/tic-api/outputs/xmltv/rebuild")
    assert resp.status_code == 202, await resp.get_data(as_text=True)
    task_id = (await resp.get_json())["task_id"]
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        task = await (await admin.get(f"/tic-api/tasks/{task_id}")).get_json()
        if task["status"] not in ("queued", "running"):
            return dict(task)
        assert asyncio.get_running_loop().time() < deadline, f"guide build did not finish: {task}"
        await asyncio.sleep(0.05)


def parse_xmltv(data: bytes) -> Any:
    """Parse a guide and validate it against the XMLTV DTD from Debian's xmltv-util."""
    if not XMLTV_DTD.exists():
        pytest.fail(f"{XMLTV_DTD} is missing: apt-get install xmltv-util (make system-deps)")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    root = etree.fromstring(data, parser)
    dtd = etree.DTD(str(XMLTV_DTD))
    assert dtd.validate(root), dtd.error_log.filter_from_errors()
    return root


def window(hours: int = 6, start: datetime | None = None, **fields: Any) -> list[dict[str, Any]]:
    """Consecutive one-hour programmes from the current hour on."""
    first = start or now().replace(minute=0, second=0)
    return [
        {
            "start": first + timedelta(hours=i),
            "stop": first + timedelta(hours=i + 1),
            "title": f"Show {i}",
            **fields,
        }
        for i in range(hours)
    ]
