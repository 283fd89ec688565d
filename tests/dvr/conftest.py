"""DVR fixtures: a real MPEG-TS made with ffmpeg, the fake TVHeadend serving it, channels and programmes."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from backend.auth.models import User
from backend.auth.service import create_api_token, new_stream_key
from backend.channels.models import Channel
from backend.db import utcnow
from backend.dvr.models import Recording
from backend.dvr.reconcile import ReconcileReport, reconcile_recordings
from backend.dvr.service import new_marker
from backend.dvr.tvh import tvh_client
from backend.epg.models import EpgSource, Programme
from backend.settings import service as settings_service
from tests.fakes.tvheadend import FakeTvheadend

TS_SECONDS = 20


@pytest.fixture(scope="session")
def ts_file(tmp_path_factory: Any) -> Path:
    """20 s of MPEG-2 video (a key frame every second) and MP2 audio, as TVHeadend records IPTV."""
    out = tmp_path_factory.mktemp("media") / "recording.ts"
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-y",
            "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
            "-f", "lavfi", "-i", "sine",
            "-t", str(TS_SECONDS),
            "-c:v", "mpeg2video", "-g", "25", "-c:a", "mp2",
            "-f", "mpegts", str(out),
        ],
        check=True,
        timeout=120,
    )  # fmt: skip
    return out


@pytest.fixture
async def tvh(ts_file: Path) -> AsyncIterator[FakeTvheadend]:
    async with FakeTvheadend(dvr_payload=ts_file.read_bytes()) as fake:
        yield fake


async def set_settings(svc: Any, **values: Any) -> None:
    async with svc.db.transaction() as session:
        await settings_service.update_settings(session, svc.keyring, values)


@pytest.fixture
async def configured(svc: Any, tvh: FakeTvheadend) -> FakeTvheadend:
    """TIC pointed at the fake TVHeadend (Digest-only, like a default install); the broker paused so
    tests decide when reconcile runs."""
    await svc.broker.pause()
    await set_settings(svc, tvh_url=tvh.url, tvh_username="admin", tvh_password="admin")
    return tvh


@dataclass
class Guide:
    svc: Any
    tvh: FakeTvheadend
    source_id: int = 0
    _n: int = 0

    async def channel(
        self, name: str = "One", *, published: bool = True, offset: int = 0, xmltv_id: str | None = None
    ) -> Channel:
        self._n += 1
        now = utcnow()
        tvh_uuid = self.tvh.state.add_channel(name, self._n) if published else None
        async with self.svc.db.transaction() as session:
            if not self.source_id:
                source = EpgSource(name="Guide", kind="xmltv_url", created_at=now, updated_at=now)
                session.add(source)
                await session.flush()
                self.source_id = source.id
            ch = Channel(
                name=name,
                number=100 + self._n,
                enabled=True,
                epg_source_id=self.source_id,
                epg_channel_id=xmltv_id or f"{name.lower()}.tv",
                guide_offset_minutes=offset,
                guide_id=f"tic.{name.lower()}.{self._n}",
                tvh_uuid=tvh_uuid,
                created_at=now,
                updated_at=now,
            )
            session.add(ch)
        return ch

    async def programme(
        self, channel: Channel, start: datetime, minutes: int, title: str, **fields: Any
    ) -> Programme:
        async with self.svc.db.transaction() as session:
            p = Programme(
                source_id=self.source_id,
                xmltv_channel_id=channel.epg_channel_id,
                start=start,
                stop=start + timedelta(minutes=minutes),
                title=title,
                **fields,
            )
            session.add(p)
        return p

    async def clear_programmes(self) -> None:
        from sqlalchemy import delete

        async with self.svc.db.transaction() as session:
            await session.execute(delete(Programme))


@pytest.fixture
def guide(svc: Any, tvh: FakeTvheadend) -> Guide:
    return Guide(svc, tvh)


def soon(minutes: float = 10) -> datetime:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).replace(microsecond=0)


async def reconcile(svc: Any) -> ReconcileReport:
    client = await tvh_client(svc)
    assert client is not None
    return await reconcile_recordings(svc, client)


async def recording(svc: Any, rid: int) -> Recording:
    async with svc.db.session() as session:
        rec = await session.get(Recording, rid)
        assert rec is not None
        return rec


async def all_recordings(svc: Any) -> list[Recording]:
    async with svc.db.session() as session:
        return list((await session.execute(select(Recording).order_by(Recording.id))).scalars().all())


async def insert_recording(
    svc: Any,
    channel: Channel,
    *,
    tvh_uuid: str | None = None,
    status: str = "completed",
    minutes_ago: float = 30,
    length: float = 20,
    file_size: int | None = 1,
    owner_id: int | None = None,
    title: str = "Film",
) -> int:
    """A recording row as reconcile would have left it (for playback and rights tests)."""
    start = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    now = utcnow()
    async with svc.db.transaction() as session:
        rec = Recording(
            marker=new_marker(),
            channel_id=channel.id,
            channel_name=channel.name,
            owner_id=owner_id,
            title=title,
            start=start,
            stop=start + timedelta(minutes=length),
            padding_before=0,
            padding_after=0,
            status=status,
            tvh_uuid=tvh_uuid,
            file_size=file_size,
            created_at=now,
            updated_at=now,
        )
        session.add(rec)
        await session.flush()
        return rec.id


def tvh_entry(
    tvh: FakeTvheadend, channel: Channel, *, ago: int = 120, length: int = 60, title: str = "Film"
) -> str:
    """A finished recording in the fake TVHeadend (its file is the test MPEG-TS)."""
    now = int(tvh.state.now())
    assert channel.tvh_uuid is not None
    return tvh.state.add_dvr_entry(channel.tvh_uuid, now - ago, now - ago + length, title)


async def eventually(
    check: Callable[[], Awaitable[Any]], timeout: float = 10.0, interval: float = 0.05
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


def free_port_url() -> str:
    """A TVHeadend URL where nothing listens (TVHeadend is down)."""
    from tests.conftest import free_port

    return f"http://127.0.0.1:{free_port()}/tic-tvh"


def random_uuid() -> str:
    return secrets.token_hex(16)


@dataclass
class TokenClient:
    """A user created straight in the database with an API token (no Argon2 cost per test)."""

    client: Any
    token: str
    user_id: int
    username: str
    stream_key: str

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = dict(kwargs.pop("headers", None) or {})
        headers.setdefault("Authorization", f"Bearer {self.token}")
        return await self.client.open(path, method=method, headers=headers, **kwargs)

    async def get(self, path: str, **kwargs: Any) -> Any:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> Any:
        return await self.request("POST", path, **kwargs)

    async def patch(self, path: str, **kwargs: Any) -> Any:
        return await self.request("PATCH", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> Any:
        return await self.request("DELETE", path, **kwargs)


async def make_user(app: Any, username: str, role: str = "admin", dvr_access: str = "none") -> TokenClient:
    svc = app.extensions["tic"]
    key = new_stream_key()
    async with svc.db.transaction() as session:
        user = User(
            username=username,
            password_hash="!",
            role=role,
            dvr_access="all" if role == "admin" else dvr_access,
            stream_key_hash=svc.keyring.keyed_hash(key, "stream_key"),
            stream_key_enc=svc.keyring.encrypt(key),
            created_at=utcnow(),
        )
        session.add(user)
        await session.flush()
        token, _row = await create_api_token(session, user, "tests")
        user_id = user.id
    svc.setup_done = True
    return TokenClient(app.test_client(), token, user_id, username, key)


@pytest.fixture
async def boss(app: Any) -> TokenClient:
    return await make_user(app, "boss")
