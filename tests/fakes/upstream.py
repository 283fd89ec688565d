"""A fake IPTV provider: a real aiohttp server on 127.0.0.1 that serves files, Xtream APIs and faults."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import socket
import struct
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

from aiohttp import web
from multidict import CIMultiDict

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DIR = Path(os.environ.get("TIC_SHARED_DIR", REPO_ROOT.parent / "shared"))
CORPUS_DIR = SHARED_DIR / "corpus"
GEN_CORPUS = SHARED_DIR / "tools" / "gen_corpus.py"

FAULT_KINDS = frozenset(
    {
        "status",
        "timeout",
        "truncated_gzip",
        "short_body",
        "html_login",
        "slow_trickle",
        "redirect",
        "huge",
        "reset",
    }
)

LOGIN_PAGE = b"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in - IPTV Panel</title></head>
<body><form method="post" action="/login"><input name="username"><input name="password" type="password">
<button type="submit">Sign in</button></form></body></html>
"""

_CHUNK = 1024 * 1024
# One MiB of playlist-looking filler, built once, repeated to stream any size without holding it.
_LINE = b'#EXTINF:-1 tvg-id="filler.tv" group-title="Filler",Filler Channel\nhttp://127.0.0.1/filler.ts\n'
_FILLER = (_LINE * (_CHUNK // len(_LINE) + 1))[:_CHUNK]
# A few MPEG-TS null packets: enough for a client to see a stream start.
_TS_PAYLOAD = (b"\x47\x1f\xff\x10" + b"\xff" * 184) * 64


class RecordedRequest(NamedTuple):
    """One request as the fake received it."""

    method: str
    path: str
    headers: CIMultiDict[str]


@dataclass
class _File:
    data: bytes | Path
    content_type: str
    gzip_encoding: bool


@dataclass
class _Fault:
    kind: str
    opts: dict[str, Any]
    remaining: int | None


@dataclass
class _XtreamAccount:
    username: str
    password: str
    categories: list[dict[str, Any]]
    live_streams: list[dict[str, Any]]
    status: str
    exp_date: int | str | None = None


def corpus_path(name: str) -> Path:
    """Return the path of a file in the shared corpus, such as "m3u/ipytv__m3u_plus.m3u"."""
    path = CORPUS_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"no corpus file {name!r} under {CORPUS_DIR}")
    return path


async def generate_corpus(
    kind: str, out: Path, *, gzip_output: bool = False, timeout: float = 300, **args: int | str
) -> Path:
    """Run gen_corpus.py (kind "m3u" or "xmltv") into `out` as a subprocess; options map to --flags."""
    argv = [sys.executable, str(GEN_CORPUS), kind, "--out", str(out)]
    for name, value in args.items():
        argv += [f"--{name.replace('_', '-')}", str(value)]
    if gzip_output:
        argv.append("--gzip")
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    try:
        _, stderr = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"gen_corpus.py failed ({proc.returncode}): {stderr.decode(errors='replace')}")
    return out


def _content_type_for(name: str) -> str:
    if name.endswith(".gz"):
        return "application/gzip"
    if name.endswith((".m3u", ".m3u8")):
        return "audio/x-mpegurl"
    if name.endswith(".xml"):
        return "application/xml"
    return "application/octet-stream"


def _trickle_body(opts: dict[str, Any]) -> bytes:
    data = opts.get("data")
    if data is not None:
        return bytes(data)
    return _FILLER[: int(opts.get("total", 16 * 1024))]


class FakeProvider:
    """An upstream provider on an ephemeral port; use as `async with FakeProvider() as p:`.

    Every stall is capped at `max_stall` seconds and ends at once when the server stops, so a test
    can fail but never hang.
    """

    def __init__(self, *, max_stall: float = 30.0) -> None:
        self.max_stall = max_stall
        self.requests: list[RecordedRequest] = []
        #: The path and query string of every request, in the same order as `requests`.
        self.request_urls: list[str] = []
        self.port = 0
        self._files: dict[str, _File] = {}
        self._faults: dict[str, _Fault] = {}
        self._xtream: dict[str, _XtreamAccount] = {}
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> FakeProvider:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # Handlers are cancelled when a client goes away, so an abandoned stall ends with it.
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, path: str, *, userinfo: str | None = None) -> str:
        """Absolute URL of `path` on this server, optionally with `user:pass` userinfo."""
        auth = f"{userinfo}@" if userinfo else ""
        return f"http://{auth}127.0.0.1:{self.port}{path}"

    # -- content ---------------------------------------------------------------------------------

    def add_file(
        self,
        path: str,
        data: bytes | Path,
        *,
        content_type: str = "application/octet-stream",
        gzip_encoding: bool = False,
    ) -> None:
        """Serve `data` (bytes, or a file streamed from disk) at `path`, optionally gzip-encoded."""
        self._files[path] = _File(data, content_type, gzip_encoding)

    def add_corpus_file(
        self, path: str, name: str, *, content_type: str | None = None, gzip_encoding: bool = False
    ) -> Path:
        """Serve a file of the shared corpus (e.g. "xmltv/dispatcharr__test_epg.xml") at `path`."""
        source = corpus_path(name)
        self.add_file(
            path, source, content_type=content_type or _content_type_for(name), gzip_encoding=gzip_encoding
        )
        return source

    async def add_generated(
        self,
        path: str,
        kind: str,
        out_dir: Path,
        *,
        gzip_output: bool = False,
        content_type: str | None = None,
        gzip_encoding: bool = False,
        **args: int | str,
    ) -> Path:
        """Generate a file with gen_corpus.py (URLs pointing at this server) and serve it at `path`."""
        args.setdefault("port", self.port)
        name = path.strip("/").replace("/", "_") or kind
        out = out_dir / (f"{name}.gz" if gzip_output and not name.endswith(".gz") else name)
        await generate_corpus(kind, out, gzip_output=gzip_output, timeout=300, **args)
        self.add_file(
            path, out, content_type=content_type or _content_type_for(out.name), gzip_encoding=gzip_encoding
        )
        return out

    def fault(self, path: str, kind: str, *, times: int | None = None, **opts: Any) -> None:
        """Make requests for `path` misbehave; after `times` faulty answers, serve normally again.

        Kinds and their options:
        - status: status=500, body="...", content_type="text/plain", headers={}
        - timeout: stage="body" (headers and `before` bytes sent, then a stall) or "headers"
          (stall before anything is sent); seconds=max_stall
        - truncated_gzip: data=bytes to compress (default filler), gzip_encoding=False
        - short_body: declared=100_000 (Content-Length), send=declared // 2, then close
        - html_login: a 200 text/html login page
        - slow_trickle: chunk=1024 bytes every interval=0.1 s, of data=bytes or total=16 KiB;
          declare_length=True
        - redirect: to="/other" (a path or absolute URL; to itself for a loop), status=302
        - huge: size=bytes streamed (generated on the fly, never held in memory), declared=size
          (the Content-Length, at least size; None sends it chunked with no length)
        - reset: declared=1 MiB, after=64 KiB sent, then a TCP reset
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_KINDS)}")
        if kind == "slow_trickle":
            steps = -(-len(_trickle_body(opts)) // int(opts.get("chunk", 1024)))
            if steps * float(opts.get("interval", 0.1)) > self.max_stall:
                raise ValueError("slow_trickle would run longer than max_stall")
        if kind == "redirect" and "to" not in opts:
            raise ValueError("redirect needs to=<path or URL>")
        self._faults[path] = _Fault(kind, opts, times)

    def clear_fault(self, path: str) -> None:
        self._faults.pop(path, None)

    def add_xtream(
        self,
        username: str,
        password: str,
        *,
        categories: list[dict[str, Any]] | None = None,
        live_streams: list[dict[str, Any]] | None = None,
        status: str = "Active",
        exp_date: int | str | None = None,
    ) -> None:
        """Serve an Xtream Codes account at /player_api.php, /get.php and /live/<user>/<pass>/<id>.<ext>.

        Categories need category_name (category_id defaults to its position); streams need name,
        the other fields get the defaults real panels send. `exp_date` is sent as user_info.exp_date
        as given (a Unix time as int, or any raw string such as "" or "null"); None sends a date 30
        days from now.
        """
        cats = [
            {"category_id": str(i), "category_name": f"Category {i}", "parent_id": 0} | dict(c)
            for i, c in enumerate(categories or [], start=1)
        ]
        default_cat = cats[0]["category_id"] if cats else "1"
        streams = [
            {
                "num": i,
                "name": f"Channel {i}",
                "stream_type": "live",
                "stream_id": i,
                "stream_icon": "",
                "epg_channel_id": "",
                "added": "1700000000",
                "category_id": default_cat,
                "custom_sid": "",
                "tv_archive": 0,
                "direct_source": "",
                "tv_archive_duration": 0,
            }
            | dict(s)
            for i, s in enumerate(live_streams or [], start=1)
        ]
        self._xtream[username] = _XtreamAccount(username, password, cats, streams, status, exp_date)

    # -- dispatch --------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(RecordedRequest(request.method, request.path, CIMultiDict(request.headers)))
        self.request_urls.append(request.path_qs)
        try:
            return await self._dispatch(request)
        except ConnectionResetError:
            # The client hung up mid-response (a size cap, a timeout, a cancellation): that is what
            # these tests provoke, so it is not a server error. aiohttp discards this response quietly.
            return web.Response(status=499)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        fault = self._take_fault(request.path)
        if fault is not None:
            return await self._serve_fault(request, fault)
        if request.path == "/player_api.php" and self._xtream:
            return self._player_api(request)
        if request.path == "/get.php" and self._xtream:
            return self._get_php(request)
        served = self._files.get(request.path)
        if served is not None:
            return await self._serve_file(request, served)
        if self._xtream and request.path.startswith("/live/"):
            return self._live_stream(request)
        return web.Response(status=404, text="Not Found")

    def _take_fault(self, path: str) -> _Fault | None:
        fault = self._faults.get(path)
        if fault is not None and fault.remaining is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                del self._faults[path]
        return fault

    async def _stall(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), min(seconds, self.max_stall))

    async def _serve_file(self, request: web.Request, served: _File) -> web.StreamResponse:
        headers = {"Content-Encoding": "gzip"} if served.gzip_encoding else {}
        if isinstance(served.data, bytes):
            body = gzip.compress(served.data, mtime=0) if served.gzip_encoding else served.data
            return web.Response(body=body, content_type=served.content_type, headers=headers)
        resp = web.StreamResponse(headers=headers)
        resp.content_type = served.content_type
        if not served.gzip_encoding:
            resp.content_length = served.data.stat().st_size
        await resp.prepare(request)
        # Stream from disk so a generated 250 MB guide is never held in memory.
        compressor = zlib.compressobj(wbits=16 + zlib.MAX_WBITS) if served.gzip_encoding else None
        f = await asyncio.to_thread(served.data.open, "rb")
        try:
            while chunk := await asyncio.to_thread(f.read, _CHUNK):
                if compressor is not None:
                    chunk = await asyncio.to_thread(compressor.compress, chunk)
                await resp.write(chunk)
        finally:
            f.close()
        if compressor is not None:
            await resp.write(compressor.flush())
        await resp.write_eof()
        return resp

    async def _serve_fault(self, request: web.Request, fault: _Fault) -> web.StreamResponse:
        opts = fault.opts
        kind = fault.kind
        if kind == "status":
            status = int(opts.get("status", 500))
            return web.Response(
                status=status,
                body=None if status == 204 else str(opts.get("body", f"HTTP {status}")).encode(),
                content_type=None if status == 204 else opts.get("content_type", "text/plain"),
                headers=opts.get("headers"),
            )
        if kind == "html_login":
            return web.Response(body=LOGIN_PAGE, content_type="text/html", charset="utf-8")
        if kind == "redirect":
            to = str(opts["to"])
            location = self.url(to) if to.startswith("/") else to
            return web.Response(status=int(opts.get("status", 302)), headers={"Location": location})
        if kind == "truncated_gzip":
            compressed = gzip.compress(opts.get("data") or _FILLER, mtime=0)
            headers = {"Content-Encoding": "gzip"} if opts.get("gzip_encoding") else {}
            return web.Response(
                body=compressed[: len(compressed) // 2],
                content_type=opts.get("content_type", "application/gzip"),
                headers=headers,
            )
        handler = {
            "timeout": self._timeout,
            "short_body": self._short_body,
            "slow_trickle": self._slow_trickle,
            "huge": self._huge,
            "reset": self._reset,
        }[kind]
        return await handler(request, opts)

    async def _timeout(self, request: web.Request, opts: dict[str, Any]) -> web.StreamResponse:
        seconds = float(opts.get("seconds", self.max_stall))
        if opts.get("stage", "body") == "headers":
            await self._stall(seconds)
            return web.Response(text="#EXTM3U\n", content_type="audio/x-mpegurl")
        before = bytes(opts.get("before", b"#EXTM3U\n"))
        resp = web.StreamResponse()
        resp.content_length = len(before) + _CHUNK
        resp.force_close()
        await resp.prepare(request)
        await resp.write(before)
        await self._stall(seconds)
        return resp

    async def _short_body(self, request: web.Request, opts: dict[str, Any]) -> web.StreamResponse:
        declared = int(opts.get("declared", 100_000))
        send = int(opts.get("send", declared // 2))
        resp = web.StreamResponse()
        resp.content_length = declared
        # Closing the connection after the short body is what makes it short, not a stall.
        resp.force_close()
        await resp.prepare(request)
        await resp.write(_FILLER[:send])
        return resp

    async def _slow_trickle(self, request: web.Request, opts: dict[str, Any]) -> web.StreamResponse:
        body = _trickle_body(opts)
        chunk = int(opts.get("chunk", 1024))
        interval = float(opts.get("interval", 0.1))
        resp = web.StreamResponse()
        resp.content_type = opts.get("content_type", "audio/x-mpegurl")
        if opts.get("declare_length", True):
            resp.content_length = len(body)
        await resp.prepare(request)
        deadline = time.monotonic() + self.max_stall
        for start in range(0, len(body), chunk):
            await resp.write(body[start : start + chunk])
            if time.monotonic() > deadline:
                break
            await self._stall(interval)
        await resp.write_eof()
        return resp

    async def _huge(self, request: web.Request, opts: dict[str, Any]) -> web.StreamResponse:
        size = int(opts["size"])
        declared = opts.get("declared", size)
        resp = web.StreamResponse()
        resp.content_type = opts.get("content_type", "audio/x-mpegurl")
        if declared is not None:
            resp.content_length = int(declared)
        await resp.prepare(request)
        sent = 0
        while sent < size:
            piece = _FILLER[: min(_CHUNK, size - sent)]
            await resp.write(piece)
            sent += len(piece)
        await resp.write_eof()
        return resp

    async def _reset(self, request: web.Request, opts: dict[str, Any]) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_length = int(opts.get("declared", _CHUNK))
        await resp.prepare(request)
        await resp.write(_FILLER[: int(opts.get("after", 64 * 1024))])
        transport = request.transport
        if transport is not None:
            # SO_LINGER with a zero timeout turns the close into a TCP RST, as a crashing server would.
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        return resp

    # -- Xtream Codes ----------------------------------------------------------------------------

    def _account(self, request: web.Request) -> _XtreamAccount | None:
        account = self._xtream.get(request.query.get("username", ""))
        if account is None or account.password != request.query.get("password"):
            return None
        return account

    def _player_api(self, request: web.Request) -> web.StreamResponse:
        account = self._account(request)
        if account is None:
            # Real panels answer wrong credentials with 200 and auth 0, not with 401.
            return web.json_response({"user_info": {"auth": 0}})
        action = request.query.get("action")
        if action is None:
            return web.json_response(self._account_info(account))
        if action == "get_live_categories":
            return web.json_response(account.categories)
        if action == "get_live_streams":
            category = request.query.get("category_id")
            streams = [
                s for s in account.live_streams if category is None or str(s["category_id"]) == category
            ]
            return web.json_response(streams)
        return web.json_response([])

    def _account_info(self, account: _XtreamAccount) -> dict[str, Any]:
        now = int(time.time())
        return {
            "user_info": {
                "username": account.username,
                "password": account.password,
                "message": "Welcome",
                "auth": 1,
                "status": account.status,
                "exp_date": str(now + 30 * 86400) if account.exp_date is None else str(account.exp_date),
                "is_trial": "0",
                "active_cons": "0",
                "created_at": str(now - 86400),
                "max_connections": "1",
                "allowed_output_formats": ["m3u8", "ts"],
            },
            "server_info": {
                "url": "127.0.0.1",
                "port": str(self.port),
                "https_port": "",
                "server_protocol": "http",
                "rtmp_port": "",
                "timezone": "UTC",
                "timestamp_now": now,
                "time_now": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now)),
            },
        }

    def _get_php(self, request: web.Request) -> web.StreamResponse:
        account = self._account(request)
        if account is None:
            return web.Response(status=403, text="")
        plus = request.query.get("type", "m3u_plus") == "m3u_plus"
        ext = "m3u8" if request.query.get("output") in ("m3u8", "hls") else "ts"
        names = {c["category_id"]: c["category_name"] for c in account.categories}
        lines = ["#EXTM3U"]
        for s in account.live_streams:
            if plus:
                group = names.get(str(s["category_id"]), "")
                lines.append(
                    f'#EXTINF:-1 tvg-id="{s["epg_channel_id"]}" tvg-name="{s["name"]}" '
                    f'tvg-logo="{s["stream_icon"]}" group-title="{group}",{s["name"]}'
                )
            else:
                lines.append(f"#EXTINF:-1,{s['name']}")
            lines.append(self.url(f"/live/{account.username}/{account.password}/{s['stream_id']}.{ext}"))
        return web.Response(text="\n".join(lines) + "\n", content_type="audio/x-mpegurl")

    def _live_stream(self, request: web.Request) -> web.StreamResponse:
        parts = request.path.split("/")
        if len(parts) != 5:
            return web.Response(status=404, text="Not Found")
        account = self._xtream.get(parts[2])
        if account is None or account.password != parts[3]:
            return web.Response(status=403, text="")
        stream_id = parts[4].split(".", 1)[0]
        if not any(str(s["stream_id"]) == stream_id for s in account.live_streams):
            return web.Response(status=404, text="Not Found")
        return web.Response(body=_TS_PAYLOAD, content_type="video/mp2t")
