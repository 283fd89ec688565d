"""Fixtures for the lineup tests: playlists, streams and guides inserted straight through the models."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select

from backend.epg.models import EpgChannel, EpgSource, Programme
from backend.playlists.models import PlaylistSource, Stream
from backend.tasks.models import TaskRun
from tests.conftest import ApiClient


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class Data:
    """Rows other domains would import (playlists, streams, guides), written directly for the tests."""

    def __init__(self, svc: Any) -> None:
        self.svc = svc
        self._line = 0

    async def _add(self, row: Any) -> Any:
        async with self.svc.db.transaction() as session:
            session.add(row)
            await session.flush()
        return row

    async def playlist(self, name: str = "Provider", position: int = 0, enabled: bool = True) -> Any:
        stamp = now()
        return await self._add(
            PlaylistSource(
                name=name,
                kind="m3u_url",
                url="http://provider.invalid/get.php",
                position=position,
                enabled=enabled,
                headers={},
                created_at=stamp,
                updated_at=stamp,
            )
        )

    def stream_row(self, playlist: Any, name: str, **fields: Any) -> dict[str, Any]:
        self._line += 1
        stamp = now()
        url = fields.pop("url", f"http://provider.invalid/live/u/p/{self._line}.ts")
        return {
            "source_id": playlist.id,
            "stream_key": f"{playlist.id}:url:{hashlib.sha1(url.encode()).hexdigest()}",
            "name": name,
            "url": url,
            "line_no": self._line,
            "first_seen_at": stamp,
            "updated_at": stamp,
            "is_vod": False,
            **fields,
        }

    async def stream(self, playlist: Any, name: str, **fields: Any) -> Any:
        return await self._add(Stream(**self.stream_row(playlist, name, **fields)))

    async def streams(self, rows: list[dict[str, Any]]) -> list[int]:
        """Insert many stream rows at once; returns their ids in order."""
        async with self.svc.db.transaction() as session:
            await session.execute(insert(Stream), rows)
            keys = [r["stream_key"] for r in rows]
            found = dict(
                (
                    await session.execute(
                        select(Stream.stream_key, Stream.id).where(Stream.stream_key.in_(keys))
                    )
                ).all()
            )
        return [found[k] for k in keys]

    async def guide(self, name: str = "Guide", enabled: bool = True) -> Any:
        stamp = now()
        return await self._add(
            EpgSource(name=name, kind="xmltv_url", enabled=enabled, created_at=stamp, updated_at=stamp)
        )

    async def guide_channel(
        self, guide: Any, xmltv_id: str, *names: str, icon: str | None = None, programmes: int = 1
    ) -> Any:
        return await self._add(
            EpgChannel(
                source_id=guide.id,
                xmltv_id=xmltv_id,
                display_names=[[n, None] for n in names] or [[xmltv_id, None]],
                icon=icon,
                programme_count=programmes,
            )
        )

    async def guide_channels(self, guide: Any, rows: list[tuple[str, list[str], str | None]]) -> None:
        async with self.svc.db.transaction() as session:
            await session.execute(
                insert(EpgChannel),
                [
                    {
                        "source_id": guide.id,
                        "xmltv_id": x,
                        "display_names": [[n, None] for n in names],
                        "icon": icon,
                        "programme_count": 1,
                    }
                    for x, names, icon in rows
                ],
            )

    async def programme(self, guide: Any, xmltv_id: str, title: str = "Show") -> None:
        start = now()
        await self._add(
            Programme(
                source_id=guide.id,
                xmltv_channel_id=xmltv_id,
                start=start,
                stop=start + timedelta(hours=1),
                title=title,
            )
        )

    async def delete(self, model: Any, row_id: int) -> None:
        async with self.svc.db.transaction() as session:
            await session.delete(await session.get(model, row_id))


@pytest.fixture
def data(svc: Any) -> Data:
    # Follow-up jobs (guide build, publish, logos) stay queued: the tests look at what was queued.
    svc.broker.wake_enabled = False
    return Data(svc)


async def queued_jobs(svc: Any) -> list[str]:
    async with svc.db.session() as session:
        return list((await session.execute(select(TaskRun.name).where(TaskRun.status == "queued"))).scalars())


async def create(
    admin: ApiClient, body: dict[str, Any], *, expect: int = 201, query: str = ""
) -> dict[str, Any]:
    resp = await admin.post(f"/tic-api/channels{query}", json=body)
    payload = await resp.get_json()
    assert resp.status_code == expect, payload
    return dict(payload)


async def listing(admin: ApiClient, query: str = "") -> dict[str, Any]:
    resp = await admin.get(f"/tic-api/channels{query}")
    assert resp.status_code == 200, await resp.get_data(as_text=True)
    return dict(await resp.get_json())
