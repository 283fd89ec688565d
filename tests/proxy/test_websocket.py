"""Websockets under /tic-tvh/: TVHeadend's comet/ws, echo both ways, close propagation, pings and auth."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import aiohttp
import pytest

from tests.fakes.tvheadend import FakeTvheadend
from tests.proxy.conftest import Browser, EchoUpstream, TicServer

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def until(predicate: Callable[[], bool], timeout: float = 3.0) -> float:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, "condition not reached in time"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


def bridge_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("tvh-ws-")]


async def test_comet_websocket_of_tvheadend(proxied: Browser, tvh: FakeTvheadend) -> None:
    async with proxied.ws("/tic-tvh/comet/ws", protocols=["tvheadend-comet"]) as ws:
        assert ws.protocol == "tvheadend-comet"
        first = json.loads((await ws.receive(timeout=3)).data)
        assert first["boxid"]
        classes = [m["notificationClass"] for m in first["messages"]]
        assert classes[:2] == ["accessUpdate", "setServerIpPort"]
        assert first["messages"][0]["username"] == "admin" and first["messages"][0]["admin"] == 1
        tvh.notify("logmessage", logtxt="pushed by TVHeadend")
        later = json.loads((await ws.receive(timeout=3)).data)
        assert "boxid" not in later
        assert later["messages"][0]["logtxt"] == "pushed by TVHeadend"
    await until(lambda: not bridge_tasks())
    # The handshake to TVHeadend carried TIC's Digest login; the fake logs it once the socket closed.
    await until(lambda: any(r.path.endswith("/comet/ws") and r.status == 101 for r in tvh.requests))
    ws_requests = [r for r in tvh.requests if r.path.endswith("/comet/ws") and r.status == 101]
    assert ws_requests[-1].auth_scheme == "digest"


async def test_subprotocol_only_when_the_browser_asked(proxied: Browser, tvh: FakeTvheadend) -> None:
    # TVHeadend always names its protocol; a browser that did not ask must not get it.
    async with proxied.ws("/tic-tvh/comet/ws") as ws:
        assert ws.protocol is None
        assert json.loads((await ws.receive(timeout=3)).data)["boxid"]


async def test_echo_both_ways_and_browser_close_reaches_tvheadend(
    admin_browser: Browser, echo: EchoUpstream
) -> None:
    await admin_browser.configure_tvh(echo.url)
    async with admin_browser.ws("/tic-tvh/ws/echo?x=1", protocols=["echo"]) as ws:
        assert ws.protocol == "echo"
        await ws.send_str("hello")
        assert (await ws.receive(timeout=3)).data == "echo:hello"
        await ws.send_bytes(b"\x00\x01")
        assert (await ws.receive(timeout=3)).data == b"echo:\x00\x01"
        assert echo.requests[-1]["path"] == "/tic-tvh/ws/echo?x=1"
        headers = echo.requests[-1]["headers"]
        assert headers["Authorization"].startswith("Basic ") and "Cookie" not in headers
        assert headers["X-Forwarded-For"] == "127.0.0.1"
        assert len(bridge_tasks()) == 2
    elapsed = await until(lambda: echo.ws_events[-1].startswith("closed:"))
    assert elapsed < 1.0
    assert echo.ws_events[-1] == "closed:1000"
    await until(lambda: not bridge_tasks())


async def test_tvheadend_close_reaches_the_browser(admin_browser: Browser, echo: EchoUpstream) -> None:
    await admin_browser.configure_tvh(echo.url)
    async with admin_browser.ws("/tic-tvh/ws/echo") as ws:
        await ws.send_str("close-me")
        started = time.monotonic()
        msg = await ws.receive(timeout=3)
        assert msg.type == aiohttp.WSMsgType.CLOSE
        assert time.monotonic() - started < 1.0
        assert ws.close_code == 4001
    await until(lambda: not bridge_tasks())
    async with admin_browser.ws("/tic-tvh/ws/close") as ws:
        assert (await ws.receive(timeout=3)).data == "bye"
        assert (await ws.receive(timeout=3)).type == aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 4002
    await until(lambda: not bridge_tasks())


async def test_pings_keep_an_idle_bridge_alive(
    tic: TicServer, admin_browser: Browser, echo: EchoUpstream
) -> None:
    await admin_browser.configure_tvh(echo.url)
    tic.svc.config.extra["tvh_ws_heartbeat"] = 0.1
    try:
        async with admin_browser.ws("/tic-tvh/ws/echo") as ws:
            await asyncio.sleep(0.8)
            assert echo.ws_pings >= 4
            await ws.send_str("still there")
            assert (await ws.receive(timeout=3)).data == "echo:still there"
    finally:
        tic.svc.config.extra.pop("tvh_ws_heartbeat", None)


async def _handshake_status(ws_connect: object) -> int:
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        async with ws_connect:  # type: ignore[attr-defined]
            pass
    return info.value.status


async def test_websocket_is_admin_only_and_same_origin(
    tic: TicServer, proxied: Browser, streamer_browser: Browser, tvh: FakeTvheadend
) -> None:
    async with aiohttp.ClientSession() as anonymous:
        assert await _handshake_status(anonymous.ws_connect(tic.ws_base + "/tic-tvh/comet/ws")) == 401
    assert await _handshake_status(streamer_browser.ws("/tic-tvh/comet/ws")) == 403
    assert await _handshake_status(proxied.ws("/tic-tvh/comet/ws", origin="http://evil.example")) == 403
    assert await _handshake_status(proxied.ws("/tic-tvh/comet/ws", origin=None)) == 403
    assert not [r for r in tvh.requests if r.path.endswith("/comet/ws")]
    # An API token (a script, not a browser) needs no Origin.
    token = (await proxied.api("POST", "/tic-api/auth/tokens", {"name": "ws script"}))["token"]
    async with aiohttp.ClientSession() as script:
        async with script.ws_connect(
            tic.ws_base + "/tic-tvh/comet/ws", headers={"Authorization": f"Bearer {token}"}
        ) as ws:
            assert json.loads((await ws.receive(timeout=3)).data)["boxid"]


async def test_websocket_when_tvheadend_is_down(admin_browser: Browser) -> None:
    await admin_browser.configure_tvh("", username="", password="")
    assert await _handshake_status(admin_browser.ws("/tic-tvh/comet/ws")) == 502
    async with FakeTvheadend() as fake:
        await admin_browser.configure_tvh(fake.url, password="wrong")
        assert await _handshake_status(admin_browser.ws("/tic-tvh/comet/ws")) == 502
    assert not bridge_tasks()
