"""Stream-key routes: /tic-api/tvh_stream/stream/channel/<uuid> and /dvrfile/<uuid>, and nothing else of TVH."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp
import pytest

from tests.fakes.tvheadend import TS_PACKET_SIZE, FakeTvheadend
from tests.proxy.conftest import Browser, TicServer, seed

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def stream_key(browser: Browser) -> str:
    return str((await browser.api("GET", "/tic-api/users/self/stream-key"))["stream_key"])


async def test_channel_stream_with_a_stream_key(
    tic: TicServer, proxied: Browser, streamer_browser: Browser, tvh: FakeTvheadend
) -> None:
    seeded = seed(tvh)
    key = await stream_key(streamer_browser)
    async with aiohttp.ClientSession() as player:
        resp = await player.get(
            f"{tic.base}/tic-api/tvh_stream/stream/channel/{seeded.channel}?stream_key={key}&profile=pass&x=1"
        )
        try:
            assert resp.status == 200 and resp.headers["Content-Type"] == "video/mp2t"
            data = b""
            while len(data) < 50 * TS_PACKET_SIZE:
                data += await resp.content.readany()
            assert data[0] == 0x47
            assert tvh.open_streams == 1
        finally:
            resp.close()
    await until(lambda: tvh.open_streams == 0)
    # Only the profile goes on to TVHeadend: never the stream key, nor anything else the client added.
    call = tvh.calls_to(f"stream/channel/{seeded.channel}")[-1]
    assert call.args == {"profile": "pass"}


async def test_recordings_with_range_need_dvr_access(
    tic: TicServer, proxied: Browser, streamer_browser: Browser, tvh: FakeTvheadend
) -> None:
    seeded = seed(tvh)
    admin_key = await stream_key(proxied)
    viewer_key = await stream_key(streamer_browser)
    path = f"{tic.base}/tic-api/tvh_stream/dvrfile/{seeded.recording}"
    async with aiohttp.ClientSession() as player:
        async with player.get(f"{path}?stream_key={admin_key}", headers={"Range": "bytes=0-187"}) as resp:
            assert resp.status == 206
            assert resp.headers["Content-Range"] == f"bytes 0-187/{len(seeded.payload)}"
            assert await resp.read() == seeded.payload[:188]
        async with player.get(f"{path}?stream_key={viewer_key}") as resp:
            assert resp.status == 403
            assert (await resp.json())["code"] == "DVR_ACCESS_REQUIRED"
        viewer = (await proxied.api("GET", "/tic-api/users"))["items"]
        viewer_id = next(u["id"] for u in viewer if u["username"] == "viewer")
        await proxied.api("PATCH", f"/tic-api/users/{viewer_id}", {"dvr_access": "all"})
        try:
            async with player.get(f"{path}?stream_key={viewer_key}") as resp:
                assert resp.status == 200
                assert await resp.read() == seeded.payload
            # "own" access: only recordings TIC made for this user; this one was made in TVHeadend.
            await proxied.api("PATCH", f"/tic-api/users/{viewer_id}", {"dvr_access": "own"})
            async with player.get(f"{path}?stream_key={viewer_key}") as resp:
                assert resp.status == 404
                assert (await resp.json())["code"] == "RECORDING_NOT_FOUND"
        finally:
            await proxied.api("PATCH", f"/tic-api/users/{viewer_id}", {"dvr_access": "none"})


async def test_nothing_else_of_tvheadend_is_reachable_with_a_stream_key(
    tic: TicServer, proxied: Browser, tvh: FakeTvheadend
) -> None:
    seeded = seed(tvh)
    key = await stream_key(proxied)
    await proxied.settle()
    tvh.clear_calls()
    async with aiohttp.ClientSession() as player:
        for path in (
            "/tic-api/tvh_stream/api/serverinfo",
            "/tic-api/tvh_stream/api/config/load",
            "/tic-api/tvh_stream/stream/channelid/1",
            "/tic-api/tvh_stream/stream/channel/..%2F..%2Fapi%2Fserverinfo",
            "/tic-api/tvh_stream/stream/channel/../../api/serverinfo",
            f"/tic-api/tvh_stream/stream/channel/{seeded.channel.upper()}",
            f"/tic-api/tvh_stream/stream/channel/{seeded.channel[:-1]}",
            f"/tic-api/tvh_stream/stream/channel/{seeded.channel}/../../api/serverinfo",
            f"/tic-api/tvh_stream/dvrfile/{seeded.recording}x",
            "/tic-api/tvh_stream/playlist/channels",
        ):
            async with player.get(f"{tic.base}{path}?stream_key={key}", allow_redirects=False) as resp:
                assert resp.status == 404, path
        # A stream key is no login for the admin proxy.
        async with player.get(
            f"{tic.base}/tic-tvh/api/serverinfo?stream_key={key}", allow_redirects=False
        ) as resp:
            assert resp.status == 302 and resp.headers["Location"].startswith("/login")
        async with player.get(
            f"{tic.base}/tic-api/tvh_stream/stream/channel/{seeded.channel}?stream_key=wrong-key"
        ) as resp:
            assert resp.status == 401 and (await resp.json())["code"] == "BAD_STREAM_KEY"
        async with player.get(f"{tic.base}/tic-api/tvh_stream/stream/channel/{seeded.channel}") as resp:
            assert resp.status == 401
    assert tvh.calls == []


async def test_stream_errors_are_json(tic: TicServer, admin_browser: Browser) -> None:
    await admin_browser.configure_tvh("", username="", password="")
    key = await stream_key(admin_browser)
    async with aiohttp.ClientSession() as player:
        async with player.get(
            f"{tic.base}/tic-api/tvh_stream/stream/channel/{'a' * 32}?stream_key={key}"
        ) as resp:
            assert resp.status == 502
            assert (await resp.json())["code"] == "TVH_NOT_CONFIGURED"
    async with FakeTvheadend() as fake:
        await admin_browser.configure_tvh(fake.url)
        async with aiohttp.ClientSession() as player:
            # An unknown channel: TVHeadend's own 400 is relayed.
            async with player.get(
                f"{tic.base}/tic-api/tvh_stream/stream/channel/{'a' * 32}?stream_key={key}"
            ) as resp:
                assert resp.status == 400


async def test_channel_streams_use_the_users_own_tvheadend_login_once_synced(
    tic: TicServer, proxied: Browser, streamer_browser: Browser, tvh: FakeTvheadend
) -> None:
    seeded = seed(tvh)
    key = await stream_key(streamer_browser)
    url = f"{tic.base}/tic-api/tvh_stream/stream/channel/{seeded.channel}?stream_key={key}"

    async def subscriber() -> str:
        async with aiohttp.ClientSession() as player:
            resp = await player.get(url)
            try:
                assert resp.status == 200
                await resp.content.readany()
                [sub] = list(tvh.state.subscriptions.values())
                return str(sub["username"])
            finally:
                resp.close()
                await until(lambda: tvh.open_streams == 0)

    # Without a login of their own, the user streams as TIC's TVHeadend user.
    assert await subscriber() == "admin"
    issued = await streamer_browser.api("POST", "/tic-api/tvheadend/users/self/login")
    # The sync job puts the login into TVHeadend; until then TIC keeps using its own login.
    deadline = time.monotonic() + 30
    while not (await streamer_browser.api("GET", "/tic-api/tvheadend/users/self/login")).get("synced_at"):
        assert time.monotonic() < deadline, "the TVHeadend login was never synced"
        await asyncio.sleep(0.2)
    assert tvh.state.password_of(issued["tvh_username"]) == issued["password"]
    assert await subscriber() == issued["tvh_username"]
    # Revoked: back to TIC's login at once (the revoked login is not used even before the sync removes it).
    async with streamer_browser.http.delete(
        streamer_browser.url("/tic-api/tvheadend/users/self/login"),
        headers={"X-CSRF-Token": streamer_browser.csrf},
    ) as resp:
        assert resp.status == 204
    assert await subscriber() == "admin"
