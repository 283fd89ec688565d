"""The /tic-tvh/ proxy against a real TIC process: throughput vs. direct, CPU per MB, RSS, websocket latency.

Three processes: a fast upstream standing in for TVHeadend (aiohttp, `python -m bench.bench_proxy
upstream PORT`), TIC served by run.py (Hypercorn, one worker), and the clients (curl for bulk bytes, so
that the client costs the same in both runs; aiohttp for streams and websockets). Every figure compares
the same transfer through TIC and straight from the upstream; a bare asyncio byte pipe on the same
machine gives the ceiling any Python relay could reach at that moment (the machine may be busy).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web

REPO = Path(__file__).resolve().parent.parent
MB = 1024 * 1024
DOWNLOAD_BYTES = 500 * MB
STREAM_SECONDS = 5.0
CONCURRENT_STREAMS = 20
CONCURRENT_SECONDS = 12.0
WS_MESSAGES = 2000
BLOCK = bytes(range(256)) * 1024  # 256 KiB
ADMIN = ("admin", "bench-password-1")

log = logging.getLogger("bench.proxy")


# ---------------------------------------------------------------------------------------------------
# The upstream (a separate process)
# ---------------------------------------------------------------------------------------------------


async def _bytes(request: web.Request) -> web.StreamResponse:
    size = int(request.match_info["size"])
    response = web.StreamResponse(headers={"Content-Type": "video/mp2t"})
    response.content_length = size
    await response.prepare(request)
    sent = 0
    while sent < size:
        chunk = BLOCK if size - sent >= len(BLOCK) else BLOCK[: size - sent]
        await response.write(chunk)
        sent += len(chunk)
    await response.write_eof()
    return response


async def _stream(request: web.Request) -> web.StreamResponse:
    # Endless like a TVHeadend channel stream; `rate` (bytes/s) paces it, 0 means as fast as possible.
    rate = int(request.query.get("rate", "0"))
    response = web.StreamResponse(headers={"Content-Type": "video/mp2t", "Connection": "Close"})
    response.force_close()
    await response.prepare(request)
    chunk = BLOCK[: 188 * 348]  # ~64 KiB of TS packets
    started, sent = time.monotonic(), 0
    try:
        while True:
            await response.write(chunk)
            sent += len(chunk)
            if rate:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
    except ConnectionError:
        pass
    return response


async def _ws_echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(protocols=("tvheadend-comet",))
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == WSMsgType.TEXT:
            await ws.send_str(msg.data)
    return ws


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(MB):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


def serve_pipe(port: int, upstream_port: int) -> None:
    """A bare asyncio TCP relay: what any Python relay could do at best on this machine right now."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def serve_upstream(port: int) -> None:
    app = web.Application()
    app.router.add_get("/tic-tvh/bytes/{size}", _bytes)
    app.router.add_get("/tic-tvh/stream", _stream)
    app.router.add_get("/tic-tvh/ws", _ws_echo)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


# ---------------------------------------------------------------------------------------------------
# Process helpers
# ---------------------------------------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _proc_stat(pid: int) -> tuple[float, int]:
    """(CPU seconds used, RSS bytes) of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    return cpu, rss


async def _wait_http(url: str, proc: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(600):
            try:
                async with http.get(url) as resp:
                    if resp.status < 500 or resp.status == 503:
                        return
            except aiohttp.ClientError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"{url}: the process exited with {proc.returncode}")
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


async def _curl_download(url: str, cookie: str | None) -> tuple[float, int]:
    """(seconds, bytes) for one download with curl, whose own cost is the same direct or proxied."""
    args = ["curl", "-s", "-o", "/dev/null", "-w", "%{size_download} %{time_total}", url]
    if cookie:
        args[1:1] = ["-b", cookie]
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    size, seconds = out.decode().split()
    return float(seconds), int(size)


async def _read_stream(http: aiohttp.ClientSession, url: str, seconds: float) -> int:
    received = 0
    async with http.get(url) as resp:
        assert resp.status == 200, resp.status
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            chunk = await resp.content.readany()
            if not chunk:
                break
            received += len(chunk)
    return received


async def _ws_rtts(http: aiohttp.ClientSession, url: str, count: int, origin: str | None) -> list[float]:
    rtts = []
    async with http.ws_connect(url, protocols=["tvheadend-comet"], origin=origin) as ws:
        for i in range(count):
            started = time.perf_counter()
            await ws.send_str(f'{{"n":{i}}}')
            msg = await ws.receive()
            assert msg.type == WSMsgType.TEXT
            rtts.append(time.perf_counter() - started)
    return rtts


def _p(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


# ---------------------------------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------------------------------


def run() -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="tic-bench-proxy-"))
    try:
        return asyncio.run(_run(work))
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def _run(work: Path) -> dict[str, Any]:
    up_port, tic_port = _free_port(), _free_port()
    pipe_port = _free_port()
    upstream = subprocess.Popen(
        [sys.executable, "-m", "bench.bench_proxy", "upstream", str(up_port)], cwd=REPO
    )
    pipe = subprocess.Popen(
        [sys.executable, "-m", "bench.bench_proxy", "pipe", str(pipe_port), str(up_port)], cwd=REPO
    )
    env = {
        **os.environ,
        "TIC_DATA_DIR": str(work / "data"),
        "TIC_PORT": str(tic_port),
        "TIC_HOST": "127.0.0.1",
        "DATABASE_URL": f"sqlite+aiosqlite:///{work / 'tic.db'}",
        "TIC_LOG_LEVEL": "WARNING",
    }
    tic_log = open(work / "tic.log", "wb")  # noqa: SIM115 - closed in finally
    tic = subprocess.Popen([sys.executable, "run.py"], cwd=REPO, env=env, stdout=tic_log, stderr=tic_log)
    base, up = f"http://127.0.0.1:{tic_port}", f"http://127.0.0.1:{up_port}"
    try:
        await _wait_http(up + "/tic-tvh/bytes/1", upstream)
        await _wait_http(base + "/tic-api/health", tic)
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            cookie = await _login_and_configure(http, base, up)
            out = await _measure(http, base, up, cookie, tic.pid)
            out.update(await _pipe_ceiling(f"http://127.0.0.1:{pipe_port}", up))
            return out
    finally:
        for proc in (tic, pipe, upstream):
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        tic_log.close()


async def _pipe_ceiling(pipe: str, up: str) -> dict[str, Any]:
    """The same download through a bare asyncio byte pipe: the machine's ceiling for a Python relay."""
    direct, piped = [], []
    for _ in range(3):
        seconds, size = await _curl_download(f"{up}/tic-tvh/bytes/{DOWNLOAD_BYTES}", None)
        direct.append(size / MB / seconds)
        seconds, size = await _curl_download(f"{pipe}/tic-tvh/bytes/{DOWNLOAD_BYTES}", None)
        piped.append(size / MB / seconds)
    return {
        "bare_pipe_mb_s": round(statistics.median(piped), 1),
        "bare_pipe_ratio": round(statistics.median(piped) / statistics.median(direct), 3),
        "load_average_1m": round(os.getloadavg()[0], 1),
    }


async def _login_and_configure(http: aiohttp.ClientSession, base: str, up: str) -> str:
    user, password = ADMIN
    async with http.post(base + "/tic-api/setup", json={"username": user, "password": password}) as r:
        assert r.status == 201, await r.text()
    async with http.post(base + "/tic-api/auth/login", json={"username": user, "password": password}) as r:
        body = await r.json()
        cookie = r.cookies["tic_session"].value
    settings = {"tvh_url": up + "/tic-tvh", "tvh_username": "bench", "tvh_password": "bench"}
    async with http.patch(
        base + "/tic-api/settings", json=settings, headers={"X-CSRF-Token": body["csrf_token"]}
    ) as r:
        assert r.status == 200, await r.text()
    return f"tic_session={cookie}"


async def _measure(http: aiohttp.ClientSession, base: str, up: str, cookie: str, pid: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # Warm up both paths (connection pools, first-request costs).
    await _curl_download(f"{up}/tic-tvh/bytes/{10 * MB}", None)
    await _curl_download(f"{base}/tic-tvh/bytes/{10 * MB}", cookie)

    # 1. A 500 MB download, median of three.
    direct, proxied, cpu_per_mb = [], [], []
    for _ in range(3):
        seconds, size = await _curl_download(f"{up}/tic-tvh/bytes/{DOWNLOAD_BYTES}", None)
        assert size == DOWNLOAD_BYTES
        direct.append(size / MB / seconds)
        cpu0, _ = _proc_stat(pid)
        seconds, size = await _curl_download(f"{base}/tic-tvh/bytes/{DOWNLOAD_BYTES}", cookie)
        cpu1, _ = _proc_stat(pid)
        assert size == DOWNLOAD_BYTES, size
        proxied.append(size / MB / seconds)
        cpu_per_mb.append((cpu1 - cpu0) / (size / MB))
    out["download_direct_mb_s"] = round(statistics.median(direct), 1)
    out["download_proxied_mb_s"] = round(statistics.median(proxied), 1)
    out["download_ratio"] = round(statistics.median(proxied) / statistics.median(direct), 3)
    out["tic_cpu_ms_per_mb"] = round(statistics.median(cpu_per_mb) * 1000, 3)

    # 2. A continuous (endless) stream for a few seconds.
    direct_bytes = await _read_stream(http, f"{up}/tic-tvh/stream", STREAM_SECONDS)
    proxied_bytes = await _read_stream(http, f"{base}/tic-tvh/stream", STREAM_SECONDS)
    out["stream_direct_mb_s"] = round(direct_bytes / MB / STREAM_SECONDS, 1)
    out["stream_proxied_mb_s"] = round(proxied_bytes / MB / STREAM_SECONDS, 1)
    out["stream_ratio"] = round(proxied_bytes / direct_bytes, 3)

    # 3. RSS of TIC with 20 concurrent streams: it must not grow with the bytes relayed.
    out.update(await _concurrent_rss(http, base, pid))

    # 4. Websocket message latency added by the bridge.
    origin = base
    direct_rtt = await _ws_rtts(http, f"{up.replace('http', 'ws')}/tic-tvh/ws", WS_MESSAGES, None)
    proxied_rtt = await _ws_rtts(http, f"{base.replace('http', 'ws')}/tic-tvh/ws", WS_MESSAGES, origin)
    for pct in (50, 99):
        out[f"ws_direct_p{pct}_ms"] = round(_p(direct_rtt, pct) * 1000, 3)
        out[f"ws_proxied_p{pct}_ms"] = round(_p(proxied_rtt, pct) * 1000, 3)
        out[f"ws_added_p{pct}_ms"] = round((_p(proxied_rtt, pct) - _p(direct_rtt, pct)) * 1000, 3)
    _, rss = _proc_stat(pid)
    out["tic_rss_end_mb"] = round(rss / MB, 1)
    log.info("proxy bench: %s", out)
    return out


async def _concurrent_rss(http: aiohttp.ClientSession, base: str, pid: int) -> dict[str, Any]:
    # Paced at 1 MB/s each (an HD channel is ~1 MB/s), 20 at once, for a while.
    url = f"{base}/tic-tvh/stream?rate={MB}"
    relayed = [0] * CONCURRENT_STREAMS
    stop = asyncio.Event()

    async def reader(i: int) -> None:
        async with http.get(url) as resp:
            assert resp.status == 200
            while not stop.is_set():
                chunk = await resp.content.readany()
                if not chunk:
                    return
                relayed[i] += len(chunk)

    tasks = [asyncio.ensure_future(reader(i)) for i in range(CONCURRENT_STREAMS)]
    samples: list[tuple[float, int, int]] = []
    started = time.monotonic()
    cpu0, _ = _proc_stat(pid)
    while time.monotonic() - started < CONCURRENT_SECONDS:
        await asyncio.sleep(1.0)
        _, rss = _proc_stat(pid)
        samples.append((time.monotonic() - started, rss, sum(relayed)))
    cpu1, _ = _proc_stat(pid)
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    early = samples[1]
    late = samples[-1]
    return {
        "concurrent_streams": CONCURRENT_STREAMS,
        "concurrent_relayed_mb": round(late[2] / MB, 1),
        "concurrent_rss_after_2s_mb": round(early[1] / MB, 1),
        "concurrent_rss_end_mb": round(late[1] / MB, 1),
        "concurrent_rss_growth_mb": round((late[1] - early[1]) / MB, 1),
        "concurrent_tic_cpu_pct": round((cpu1 - cpu0) / (late[0]) * 100, 1),
    }


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "upstream":
        serve_upstream(int(sys.argv[2]))
    elif len(sys.argv) == 4 and sys.argv[1] == "pipe":
        serve_pipe(int(sys.argv[2]), int(sys.argv[3]))
    else:
        sys.path.insert(0, str(REPO))
        print(run())
