"""Fixtures for the proxy: TIC served by a real Hypercorn in the test's loop, a logged-in admin, upstreams."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import WSMsgType, web
from hypercorn.asyncio import serve
from hypercorn.config import Config as HypercornConfig
from quart import Quart

from tests.conftest import ADMIN_PASSWORD, ADMIN_USER, PostgresCluster, free_port, make_app
from tests.fakes.tvheadend import FakeTvheadend

TVH_ADMIN = {"admin": ("admin", {"admin", "dvr", "streaming", "webui"})}
BLOCK = bytes(range(256)) * 4096  # 1 MiB of a known pattern


@dataclass
class TicServer:
    """TIC on a real Hypercorn on 127.0.0.1, sharing the test's event loop."""

    app: Quart
    port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_base(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def svc(self) -> Any:
        return self.app.extensions["tic"]


async def start_tic(tmp_path: Path, database_url: str, **overrides: Any) -> tuple[TicServer, Any]:
    app = make_app(tmp_path / "data", database_url, **overrides)
    port = free_port()
    cfg = HypercornConfig()
    cfg.bind = [f"127.0.0.1:{port}"]
    cfg.accesslog = None
    cfg.graceful_timeout = 1
    cfg.websocket_ping_interval = overrides.get("websocket_ping_interval")
    stop = asyncio.Event()
    task = asyncio.ensure_future(serve(app, cfg, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    async with aiohttp.ClientSession() as http:
        for _ in range(400):
            try:
                async with http.get(f"http://127.0.0.1:{port}/tic-api/health") as resp:
                    if resp.status in (200, 503):
                        break
            except aiohttp.ClientError:
                pass
            assert not task.done(), "TIC did not start"
            await asyncio.sleep(0.02)

    async def close() -> None:
        stop.set()
        await asyncio.wait_for(task, 15)

    return TicServer(app, port), close


@pytest.fixture(scope="module")
def database_url(pg_cluster: PostgresCluster | None, template_database: str, tmp_path_factory: Any) -> str:
    """One database per test module: starting TIC and logging in (Argon2) once keeps the suite fast.

    Each test sets the TVHeadend settings it needs, so tests do not depend on each other's state.
    """
    if pg_cluster is None:
        target = tmp_path_factory.mktemp("proxy") / "tic.db"
        shutil.copyfile(template_database, target)
        wal = Path(template_database + "-wal")
        if wal.exists():
            shutil.copyfile(wal, str(target) + "-wal")
        return f"sqlite+aiosqlite:///{target}"
    name = "p_" + uuid.uuid4().hex[:16]
    pg_cluster.create_database(name, template=template_database)
    return pg_cluster.url(name)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def tic(tmp_path_factory: Any, database_url: str) -> AsyncIterator[TicServer]:
    server, close = await start_tic(tmp_path_factory.mktemp("tic"), database_url)
    try:
        yield server
    finally:
        await close()


class Browser:
    """An aiohttp session that behaves like a logged-in browser tab on TIC (cookie, CSRF, Origin)."""

    def __init__(self, server: TicServer) -> None:
        self.server = server
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""

    @property
    def origin(self) -> str:
        return self.server.base

    async def login(self, username: str, password: str) -> Browser:
        async with self.http.post(
            self.server.base + "/tic-api/auth/login", json={"username": username, "password": password}
        ) as resp:
            assert resp.status == 200, await resp.text()
            self.csrf = (await resp.json())["csrf_token"]
        return self

    def url(self, path: str) -> str:
        return self.server.base + path

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """A request as TVHeadend's UI makes it: same-origin, without TIC's CSRF header."""
        headers = {"Origin": self.origin, **kwargs.pop("headers", {})}
        kwargs.setdefault("allow_redirects", False)
        return self.http.request(method, self.url(path), headers=headers, **kwargs)

    async def api(self, method: str, path: str, body: Any = None) -> Any:
        async with self.http.request(
            method, self.url(path), json=body, headers={"X-CSRF-Token": self.csrf}
        ) as resp:
            data = await resp.json()
            assert resp.status < 300, (resp.status, data)
            return data

    async def configure_tvh(
        self, url: str, username: str = "admin", password: str = "admin", **more: Any
    ) -> None:
        await self.api(
            "PATCH",
            "/tic-api/settings",
            {"tvh_url": url, "tvh_username": username, "tvh_password": password, **more},
        )

    async def settle(self, timeout: float = 10.0) -> None:
        """Wait until no background task runs (saving TVHeadend settings may start work against it).

        Runs queued for a later retry do not count: they may wait for their backoff for a long time.
        """
        deadline = asyncio.get_running_loop().time() + timeout
        idle = 0
        while idle < 3:
            tasks = await self.api("GET", "/tic-api/tasks?limit=1")
            idle = idle + 1 if tasks["current"] is None else 0
            assert asyncio.get_running_loop().time() < deadline, "a background task kept running"
            await asyncio.sleep(0.05)

    def ws(self, path: str, **kwargs: Any) -> Any:
        kwargs.setdefault("origin", self.origin)
        return self.http.ws_connect(self.server.ws_base + path, **kwargs)

    async def close(self) -> None:
        await self.http.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def admin_browser(tic: TicServer) -> AsyncIterator[Browser]:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            tic.base + "/tic-api/setup", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD}
        ) as resp:
            assert resp.status == 201
    browser = await Browser(tic).login(ADMIN_USER, ADMIN_PASSWORD)
    try:
        yield browser
    finally:
        await browser.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def streamer_browser(tic: TicServer, admin_browser: Browser) -> AsyncIterator[Browser]:
    await admin_browser.api(
        "POST", "/tic-api/users", {"username": "viewer", "password": "viewer-password", "role": "streamer"}
    )
    browser = await Browser(tic).login("viewer", "viewer-password")
    try:
        yield browser
    finally:
        await browser.close()


@pytest_asyncio.fixture(loop_scope="module")
async def tvh() -> AsyncIterator[FakeTvheadend]:
    async with FakeTvheadend(auth_mode=1, users=TVH_ADMIN, comet_ws_interval=0.05) as fake:
        yield fake


@dataclass
class Seeded:
    channel: str
    recording: str
    payload: bytes


def seed(tvh: FakeTvheadend) -> Seeded:
    """A channel with a working service and a finished recording on the fake TVHeadend."""
    network = tvh.state.add_network()
    tvh.state.add_mux(network, iptv_url="http://iptv.example/one.ts", iptv_sname="One")
    services = [s.uuid for s in tvh.state.of("iptv_service")]
    channel = tvh.state.add_channel("One", 1, services=services)
    now = int(tvh.state.now())
    recording = tvh.state.add_dvr_entry(channel, now - 600, now - 300, "A recording")
    payload = tvh.state.dvr_file_bytes(tvh.state.nodes[recording])
    assert payload
    return Seeded(channel, recording, payload)


@pytest_asyncio.fixture(loop_scope="module")
async def proxied(admin_browser: Browser, tvh: FakeTvheadend) -> Browser:
    """An admin browser on a TIC that points at the fake TVHeadend (Digest only, its default)."""
    await admin_browser.configure_tvh(tvh.url)
    return admin_browser


# ---------------------------------------------------------------------------------------------------
# A generic upstream for what the fake TVHeadend does not do: echo, sinks, gzip, big bodies
# ---------------------------------------------------------------------------------------------------


@dataclass
class Upload:
    size: int = 0
    sha256: str = ""
    content_type: str | None = None
    content_length: str | None = None
    chunked: bool = False


@dataclass
class EchoUpstream:
    """A tiny real server under /tic-tvh that reports what it received; Basic auth admin/admin."""

    port: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)
    uploads: list[Upload] = field(default_factory=list)
    ws_events: list[str] = field(default_factory=list)
    ws_pings: int = 0
    open_downloads: int = 0
    bytes_sent: int = 0
    #: After this many bytes of an upload, the sink stops reading for `sink_stall` seconds.
    sink_stall_after: int = 0
    sink_stall: float = 0.0
    sink_received: int = 0
    _runner: web.AppRunner | None = None
    _sockets: set[web.WebSocketResponse] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/tic-tvh"

    async def start(self) -> EchoUpstream:
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/tic-tvh/echo/{tail:.*}", self._echo)
        app.router.add_post("/tic-tvh/sink", self._sink)
        app.router.add_get("/tic-tvh/gzip", self._gzip)
        app.router.add_get("/tic-tvh/bytes/{size}", self._bytes)
        app.router.add_get("/tic-tvh/ws/echo", self._ws_echo)
        app.router.add_get("/tic-tvh/ws/close", self._ws_close)
        app.router.add_get("/tic-tvh/redirect", self._redirect)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def _record(self, request: web.Request) -> None:
        self.requests.append(
            {"method": request.method, "path": request.raw_path, "headers": dict(request.headers)}
        )

    async def _echo(self, request: web.Request) -> web.Response:
        self._record(request)
        body = await request.read()
        payload = {
            "method": request.method,
            "path": request.raw_path,
            "body": body.decode("latin-1"),
            "headers": {k: v for k, v in request.headers.items()},
        }
        response = web.json_response(payload, status=int(request.query.get("status", "200")))
        if "set_cookie" in request.query:
            response.set_cookie("tvh_session", request.query["set_cookie"], path="/")
        return response

    async def _sink(self, request: web.Request) -> web.Response:
        self._record(request)
        upload = Upload(
            content_type=request.headers.get("Content-Type"),
            content_length=request.headers.get("Content-Length"),
            chunked="chunked" in request.headers.get("Transfer-Encoding", ""),
        )
        digest = hashlib.sha256()
        self.sink_received = 0
        stalled = False
        async for chunk in request.content.iter_chunked(256 * 1024):
            upload.size += len(chunk)
            self.sink_received = upload.size
            digest.update(chunk)
            if self.sink_stall and not stalled and upload.size >= self.sink_stall_after:
                stalled = True
                await asyncio.sleep(self.sink_stall)
        upload.sha256 = digest.hexdigest()
        self.uploads.append(upload)
        return web.json_response({"size": upload.size, "sha256": upload.sha256})

    async def _gzip(self, request: web.Request) -> web.Response:
        self._record(request)
        body = gzip.compress(json.dumps({"hello": "world" * 100}).encode(), mtime=0)
        return web.Response(
            body=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
        )

    async def _bytes(self, request: web.Request) -> web.StreamResponse:
        self._record(request)
        size = int(request.match_info["size"])
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = size
        self.open_downloads += 1
        try:
            await response.prepare(request)
            sent = 0
            while sent < size:
                chunk = BLOCK[: min(len(BLOCK), size - sent)]
                await response.write(chunk)
                sent += len(chunk)
                self.bytes_sent += len(chunk)
            await response.write_eof()
        except ConnectionError:
            pass
        finally:
            self.open_downloads -= 1
        return response

    async def _ws_echo(self, request: web.Request) -> web.WebSocketResponse:
        self._record(request)
        ws = web.WebSocketResponse(protocols=("echo", "tvheadend-comet"), autoping=False)
        await ws.prepare(request)
        self._sockets.add(ws)
        self.ws_events.append("open")
        try:
            async for msg in ws:
                if msg.type == WSMsgType.PING:
                    self.ws_pings += 1
                    await ws.pong(msg.data)
                elif msg.type == WSMsgType.TEXT:
                    if msg.data == "close-me":
                        await ws.close(code=4001, message=b"asked to")
                        break
                    await ws.send_str("echo:" + msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await ws.send_bytes(b"echo:" + msg.data)
        finally:
            self._sockets.discard(ws)
            self.ws_events.append(f"closed:{ws.close_code}")
        return ws

    async def _ws_close(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str("bye")
        await ws.close(code=4002)
        return ws

    async def _redirect(self, request: web.Request) -> web.Response:
        target = request.query.get("to", "/tic-tvh/echo/landed")
        return web.Response(status=302, headers={"Location": target})


@pytest_asyncio.fixture(loop_scope="module")
async def echo() -> AsyncIterator[EchoUpstream]:
    server = await EchoUpstream().start()
    try:
        yield server
    finally:
        await server.close()


def rss_bytes() -> int:
    """This process's resident memory now (Linux)."""
    with open(f"/proc/{os.getpid()}/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """Samples RSS every few milliseconds while a transfer runs; `growth` is the peak above the start."""

    def __init__(self) -> None:
        self.start = 0
        self.peak = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> PeakRss:
        self.start = self.peak = rss_bytes()
        self._task = asyncio.ensure_future(self._sample())
        return self

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, rss_bytes())
            await asyncio.sleep(0.01)

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        self.peak = max(self.peak, rss_bytes())

    @property
    def growth(self) -> int:
        return self.peak - self.start
