"""The /tic-tvh/ proxy against a real TIC process: throughput vs. direct, CPU per MB, RSS, websocket latency.

Three processes: a fast upstream standing in for TVHeadend (aiohttp, `python -m bench.bench_proxy
upstream PORT`), TIC served by run.py (Hypercorn, one worker), and the clients (curl for bulk bytes, so
that the client costs the same in both runs; aiohttp for streams and websockets). Every figure compares
the same transfer through TIC and straight from the upstream, with the same client and interleaved,
and reports the CPU each process spent per MB: on a busy 2-core machine every process gets a share of
a core, so the throughput ratio follows the CPU cost of the slowest stage (TIC against the client).
Ratios are medians over back-to-back pairs (direct, then through), which saw the same load.

Two minimal relays on the same machine give ceilings for that moment: `copy_relay` (threads, blocking
`recv_into` a reused buffer + `sendall`: the cheapest any relay that copies bytes through user space can
be) and `splice_relay` (Linux `splice()`, the bytes never enter the process).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
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


def _copy(src: socket.socket, dst: socket.socket) -> None:
    buf = bytearray(MB)
    view = memoryview(buf)
    while n := src.recv_into(buf):
        dst.sendall(view[:n])


def _splice(src: socket.socket, dst: socket.socket) -> None:
    r, w = os.pipe()
    try:
        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, MB)  # a bigger pipe means fewer splice() calls
        while n := os.splice(src.fileno(), w, MB):
            while n:
                n -= os.splice(r, dst.fileno(), n)
    finally:
        os.close(r)
        os.close(w)


def serve_relay(mode: str, port: int, upstream_port: int) -> None:
    """A minimal TCP relay (one thread per direction): a ceiling for what a relay can do right now."""
    pump_bytes = _splice if mode == "splice" else _copy

    def pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            pump_bytes(src, dst)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def handle(client: socket.socket) -> None:
        with client, socket.create_connection(("127.0.0.1", upstream_port)) as up:
            other = threading.Thread(target=pump, args=(client, up), daemon=True)
            other.start()
            pump(up, client)
            other.join()

    with socket.create_server(("127.0.0.1", port)) as server:
        while True:
            conn, _ = server.accept()
            threading.Thread(target=handle, args=(conn,), daemon=True).start()


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


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def _curl_download(url: str, cookie: str | None) -> tuple[float, int]:
    """(seconds, bytes) for one download with curl, whose own cost is the same direct or proxied."""
    seconds, size, _ = await _curl_measured(url, cookie, {})
    return seconds, size


async def _curl_measured(
    url: str, cookie: str | None, pids: dict[str, int]
) -> tuple[float, int, dict[str, float]]:
    """One curl download: (seconds, bytes, CPU ms per MB of curl and of each process in `pids`)."""
    args = ["curl", "-s", "-o", "/dev/null", "-w", "%{size_download} %{time_total}", url]
    if cookie:
        args[1:1] = ["-b", cookie]
    before = {name: _proc_stat(pid)[0] for name, pid in pids.items()}
    client_before = _children_cpu()  # curl is the only child reaped meanwhile
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    size_text, seconds_text = out.decode().split()
    size = int(size_text)
    mb = max(size / MB, 1e-9)
    cpu = {name: (_proc_stat(pid)[0] - before[name]) * 1000 / mb for name, pid in pids.items()}
    cpu["client"] = (_children_cpu() - client_before) * 1000 / mb
    return float(seconds_text), size, cpu


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


def _paired_ratio(through: list[float] | list[int], direct: list[float] | list[int]) -> float:
    """Median of the ratios of back-to-back runs: each pair saw the same load on the machine."""
    return round(statistics.median(t / d for t, d in zip(through, direct, strict=True)), 3)


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
    upstream = subprocess.Popen(
        [sys.executable, "-m", "bench.bench_proxy", "upstream", str(up_port)], cwd=REPO
    )
    relays = {mode: _free_port() for mode in ("copy", "splice")}
    relay_procs = [
        subprocess.Popen([sys.executable, "-m", "bench.bench_proxy", mode, str(port), str(up_port)], cwd=REPO)
        for mode, port in relays.items()
    ]
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
            out = await _measure(http, base, up, cookie, {"tic": tic.pid, "upstream": upstream.pid})
            for (mode, port), proc in zip(relays.items(), relay_procs, strict=True):
                out.update(await _relay_ceiling(mode, f"http://127.0.0.1:{port}", up, proc.pid))
            out["load_average_1m"] = round(os.getloadavg()[0], 1)
            return out
    finally:
        for proc in (tic, *relay_procs, upstream):
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        tic_log.close()


async def _relay_ceiling(mode: str, relay: str, up: str, pid: int) -> dict[str, Any]:
    """The same download through a minimal relay, interleaved with direct ones: a ceiling right now."""
    direct, relayed, cpu = [], [], []
    for _ in range(3):
        seconds, size = await _curl_download(f"{up}/tic-tvh/bytes/{DOWNLOAD_BYTES}", None)
        direct.append(size / MB / seconds)
        seconds, size, used = await _curl_measured(
            f"{relay}/tic-tvh/bytes/{DOWNLOAD_BYTES}", None, {"relay": pid}
        )
        relayed.append(size / MB / seconds)
        cpu.append(used["relay"])
    return {
        f"{mode}_relay_mb_s": round(statistics.median(relayed), 1),
        f"{mode}_relay_ratio": _paired_ratio(relayed, direct),
        f"{mode}_relay_cpu_ms_per_mb": round(statistics.median(cpu), 3),
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


async def _measure(
    http: aiohttp.ClientSession, base: str, up: str, cookie: str, pids: dict[str, int]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    pid = pids["tic"]
    # Warm up both paths (connection pools, first-request costs).
    await _curl_download(f"{up}/tic-tvh/bytes/{10 * MB}", None)
    await _curl_download(f"{base}/tic-tvh/bytes/{10 * MB}", cookie)

    # 1. A 500 MB download, median of three, direct and proxied interleaved; CPU ms per MB per process.
    speeds: dict[str, list[float]] = {"direct": [], "proxied": []}
    cpu: dict[str, list[float]] = {}
    for _ in range(3):
        for path, url, jar in (("direct", up, None), ("proxied", base, cookie)):
            seconds, size, used = await _curl_measured(f"{url}/tic-tvh/bytes/{DOWNLOAD_BYTES}", jar, pids)
            assert size == DOWNLOAD_BYTES, size
            speeds[path].append(size / MB / seconds)
            for name, ms in used.items():
                if path == "proxied" or name != "tic":
                    cpu.setdefault(f"{path}_{name}", []).append(ms)
    direct, proxied = statistics.median(speeds["direct"]), statistics.median(speeds["proxied"])
    out["download_direct_mb_s"] = round(direct, 1)
    out["download_proxied_mb_s"] = round(proxied, 1)
    out["download_ratio"] = _paired_ratio(speeds["proxied"], speeds["direct"])
    out["tic_cpu_ms_per_mb"] = round(statistics.median(cpu.pop("proxied_tic")), 3)
    for key, values in sorted(cpu.items()):
        out[f"download_{key}_cpu_ms_per_mb"] = round(statistics.median(values), 3)

    # 2. A continuous (endless) stream for a few seconds, three rounds, direct and proxied interleaved.
    streamed: dict[str, list[int]] = {"direct": [], "proxied": []}
    stream_cpu: list[float] = []
    for _ in range(3):
        streamed["direct"].append(await _read_stream(http, f"{up}/tic-tvh/stream", STREAM_SECONDS))
        cpu0, _ = _proc_stat(pid)
        got = await _read_stream(http, f"{base}/tic-tvh/stream", STREAM_SECONDS)
        cpu1, _ = _proc_stat(pid)
        streamed["proxied"].append(got)
        stream_cpu.append((cpu1 - cpu0) * 1000 / max(got / MB, 1e-9))
    direct_bytes, proxied_bytes = (
        statistics.median(streamed["direct"]),
        statistics.median(streamed["proxied"]),
    )
    out["stream_direct_mb_s"] = round(direct_bytes / MB / STREAM_SECONDS, 1)
    out["stream_proxied_mb_s"] = round(proxied_bytes / MB / STREAM_SECONDS, 1)
    out["stream_ratio"] = _paired_ratio(streamed["proxied"], streamed["direct"])
    out["stream_tic_cpu_ms_per_mb"] = round(statistics.median(stream_cpu), 3)

    # 3. RSS of TIC with 20 concurrent streams: it must not grow with the bytes relayed.
    out.update(await _concurrent_rss(http, base, pid))

    # 4. Websocket message latency added by the bridge: rounds of direct and proxied interleaved, so a
    # burst of load on the machine falls on both alike.
    direct_rtt: list[float] = []
    proxied_rtt: list[float] = []
    rounds = 5
    for _ in range(rounds):
        direct_rtt += await _ws_rtts(
            http, f"{up.replace('http', 'ws')}/tic-tvh/ws", WS_MESSAGES // rounds, None
        )
        proxied_rtt += await _ws_rtts(
            http, f"{base.replace('http', 'ws')}/tic-tvh/ws", WS_MESSAGES // rounds, base
        )
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
    elif len(sys.argv) == 4 and sys.argv[1] in ("copy", "splice"):
        serve_relay(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
    else:
        sys.path.insert(0, str(REPO))
        print(run())
