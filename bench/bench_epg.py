"""EPG import benchmark: gen_corpus guides served over HTTP, imported through the API of a real TIC process.

For each input (2000 channels x 7 days plain and gzip, and x 14 days gzip) and each run, a fresh TIC
(run.py, its own data dir and SQLite database, or PostgreSQL with BENCH_EPG_DB=postgres) imports
the guide through POST /tic-api/epgs/update/<id>, and the benchmark measures:

- trigger -> succeeded: from the POST to the task reporting succeeded (download, parse, stage, swap);
- peak RSS of TIC during the import (VmRSS sampled every 50 ms; its lifetime VmHWM is reported
  too, but includes the ~64 MiB Argon2 hash of the benchmark's login) and of its worker processes
  (the import worker and the second-half process it starts for big guides: the largest VmHWM of
  one, and the largest sum of their RSS). getrusage's ru_maxrss is not used: a child started by
  fork+exec reports the high-water mark it inherited from its parent;
- the largest simultaneous RSS of TIC and all its workers (sampled together);
- event-loop lag p99: TIC's own monitor (a 250 ms sleep that wakes late by the lag), read from
  /tic-api/health at 20 Hz during the import;
- API p99: the latency of those /tic-api/health requests.

After the first import, on the same TIC, GUIDE_CHANNELS (500) lineup channels are created through
POST /tic-api/channels, each mapped to one of the guide's channels (every fourth), and once the jobs
that queues have finished the benchmark measures, 10 requests each:

- GET /tic-api/guide for those channels x 12 hours from the current half hour (on a day of the
  generated guide, whose programmes are in January 2025): median, p95 (the slowest of 10), the
  first request, response size, and TIC's loop lag, /tic-api/health latency and RSS meanwhile;
- GET /tic-api/programmes?q= for a common title word and a rare one: median, total and loop lag.

Run with `python -m bench epg` (or `python bench/bench_epg.py`). BENCH_EPG_RUNS sets the runs per
input (default 3; the median is reported), BENCH_EPG_INPUTS a comma list of 7d,7d.gz,14d.gz.
BENCH_EPG_ONLY=guide runs one 7d import and the guide and search measurements only.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parent.parent
GEN = Path(os.environ.get("TIC_SHARED_DIR", REPO.parent / "shared")) / "tools" / "gen_corpus.py"
INPUTS = {
    # name: (file in /tmp, gen_corpus arguments)
    "7d": ("big.xml", ["--channels", "2000", "--days", "7"]),
    "7d.gz": ("big.xml.gz", ["--channels", "2000", "--days", "7", "--gzip"]),
    "14d.gz": ("big14.xml.gz", ["--channels", "2000", "--days", "14", "--gzip"]),
}
EXPECTED_PROGRAMMES = {"7d": 357_734, "7d.gz": 357_734, "14d.gz": 715_333}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_input(name: str) -> Path:
    """The generated guide (seed 1, default start), made once and kept in /tmp."""
    file, args = INPUTS[name]
    path = Path("/tmp") / file
    if not path.exists():
        sys.stderr.write(f"generating {path}...\n")
        part = path.with_suffix(path.suffix + ".part")
        subprocess.run([sys.executable, str(GEN), "xmltv", *args, "--out", str(part)], check=True)
        part.replace(path)
    return path


def proc_status(pid: int) -> dict[str, int]:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return {}
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            out[key] = int(value.split()[0])
    return out


def descendants(pid: int) -> list[int]:
    """Every process below `pid`: the import worker and the second-half process it may start."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            kids = [int(p) for p in task.read_text().split()]
        except (FileNotFoundError, ValueError):
            continue
        for kid in kids:
            found += [kid, *descendants(kid)]
    return found


def p99(values: list[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


class Tic:
    """A TIC server process with its own data dir, as run.py starts it."""

    def __init__(self, root: Path, database_url: str) -> None:
        self.root = root
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.database_url = database_url
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        env = {
            **os.environ,
            "TIC_DATA_DIR": str(self.root / "data"),
            "DATABASE_URL": self.database_url,
            "TIC_PORT": str(self.port),
            "TIC_LOG_LEVEL": "WARNING",
        }
        self.log = open(self.root / "tic.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "run.py"], cwd=REPO, env=env, stdout=self.log, stderr=self.log
        )
        async with aiohttp.ClientSession() as http:
            for _ in range(600):
                try:
                    async with http.get(self.base + "/tic-api/health") as resp:
                        if resp.status in (200, 503):
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise RuntimeError("TIC did not start; see " + str(self.root / "tic.log"))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


async def bootstrap(http: aiohttp.ClientSession, base: str) -> dict[str, str]:
    async with http.post(
        base + "/tic-api/setup", json={"username": "admin", "password": "bench-password"}
    ) as r:
        assert r.status == 201, await r.text()
    async with http.post(
        base + "/tic-api/auth/login", json={"username": "admin", "password": "bench-password"}
    ) as r:
        csrf = (await r.json())["csrf_token"]
    async with http.post(
        base + "/tic-api/auth/tokens", json={"name": "bench"}, headers={"X-CSRF-Token": csrf}
    ) as r:
        token = (await r.json())["token"]
    return {"Authorization": f"Bearer {token}"}


async def one_run(
    name: str, guide_url: str, database_url: str, *, guide: bool = False
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """One import on a fresh TIC; with `guide`, then the guide and search measurements on the same TIC."""
    root = Path(tempfile.mkdtemp(prefix="tic-bench-epg-"))
    tic = Tic(root, database_url or f"sqlite+aiosqlite:///{root / 'tic.db'}")
    await tic.start()
    assert tic.proc is not None
    pid = tic.proc.pid
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            auth = await bootstrap(http, tic.base)
            body = {
                "name": "Bench",
                "kind": "xmltv_url",
                "url": guide_url,
                "past_days": 36500,
                "future_days": 36500,
            }
            async with http.post(tic.base + "/tic-api/epgs", json=body, headers=auth) as r:
                source = await r.json()
            rss_before = proc_status(pid).get("VmRSS", 0)
            started = time.perf_counter()
            async with http.post(f"{tic.base}/tic-api/epgs/update/{source['id']}", headers=auth) as r:
                task_id = (await r.json())["task_id"]
            sampler = Sampler(pid)
            sampling = asyncio.create_task(sampler.run())
            latencies: list[float] = []
            lags: list[float] = []
            task: dict[str, Any] = {}
            while True:
                t0 = time.perf_counter()
                async with http.get(tic.base + "/tic-api/health") as r:
                    health = await r.json()
                latencies.append(time.perf_counter() - t0)
                lag = health.get("checks", {}).get("loop_lag_seconds")
                if lag is not None:
                    lags.append(float(lag))
                async with http.get(f"{tic.base}/tic-api/tasks/{task_id}", headers=auth) as r:
                    task = await r.json()
                if task["status"] in ("succeeded", "failed", "cancelled", "interrupted"):
                    break
                await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - started
            sampler.stop = True
            await sampling
            async with http.get(f"{tic.base}/tic-api/epgs/{source['id']}", headers=auth) as r:
                after = await r.json()
            # Read before the guide requests, so that the import's figures are the import's alone.
            tic_hwm = proc_status(pid).get("VmHWM", 0)
            guide_figures = None
            if guide and task["status"] == "succeeded":
                guide_figures = await measure_guide(http, tic.base, auth, source["id"], pid)
    finally:
        tic.stop()
        shutil.rmtree(root, ignore_errors=True)
    if task["status"] != "succeeded":
        raise RuntimeError(f"{name}: import {task['status']}: {task.get('error')}")
    report = after["last_import_report"] or {}
    assert after["programme_count"] == EXPECTED_PROGRAMMES[name], after["programme_count"]
    sample = {
        "seconds": round(elapsed, 2),
        "parse_seconds": report.get("parse_seconds"),
        "swap_seconds": report.get("swap_seconds"),
        "tic_rss_before_mb": round(rss_before / 1024, 1),
        "tic_peak_mb": round(sampler.tic_peak / 1024, 1),
        "tic_lifetime_hwm_mb": round(tic_hwm / 1024, 1),
        "worker_peak_mb": round(sampler.child_peak / 1024, 1),
        "workers_together_peak_mb": round(sampler.workers_peak / 1024, 1),
        "together_peak_mb": round(sampler.together_peak / 1024, 1),
        "loop_lag_p99_ms": round(p99(lags) * 1000, 1),
        "loop_lag_max_ms": round(max(lags, default=0) * 1000, 1),
        "api_p99_ms": round(p99(latencies) * 1000, 1),
        "programmes": after["programme_count"],
    }
    return sample, guide_figures


#: The guide measurements: lineup channels mapped to the guide, hours of grid asked for, requests timed.
GUIDE_CHANNELS = 500
GUIDE_HOURS = 12
GUIDE_REQUESTS = 10
#: gen_corpus guides start on 2025-01-06 (local days), so today's half hour has no programmes; the
#: grid starts at the current half hour of the clock on the guide's fourth day, well inside its 7 days.
GUIDE_DAY = date(2025, 1, 9)
#: Title words to search for: one in about 46,000 of the 357,734 programmes, one in under 200.
SEARCH_WORDS = {"common": "adventures", "rare": "gracht"}
#: How long to wait for the jobs a lineup change queues (guide build, logos) before measuring anyway.
SETTLE_TIMEOUT = 300.0


def p95(values: list[float]) -> float:
    """Nearest rank, so with 10 samples it is the slowest one."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)] if ordered else 0.0


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


class HealthPoller:
    """Reads TIC's loop-lag monitor from /tic-api/health at 20 Hz and times those requests."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base
        self.lags: list[float] = []
        self.latencies: list[float] = []
        self.stop = False

    async def run(self) -> None:
        while not self.stop:
            t0 = time.perf_counter()
            async with self.http.get(self.base + "/tic-api/health") as r:
                health = await r.json()
            self.latencies.append(time.perf_counter() - t0)
            lag = health.get("checks", {}).get("loop_lag_seconds")
            if lag is not None:
                self.lags.append(float(lag))
            await asyncio.sleep(0.05)

    def figures(self) -> dict[str, float]:
        return {
            "loop_lag_p99_ms": ms(p99(self.lags)),
            "loop_lag_max_ms": ms(max(self.lags, default=0)),
            "health_p99_ms": ms(p99(self.latencies)),
            "health_max_ms": ms(max(self.latencies, default=0)),
        }


async def timed_gets(
    http: aiohttp.ClientSession, url: str, params: dict[str, str], headers: dict[str, str], pid: int
) -> tuple[list[float], bytes, dict[str, float]]:
    """GUIDE_REQUESTS sequential GETs: their durations (whole body read), the last body, and the loop
    lag, health latency and TIC's peak RSS while they ran."""
    poller = HealthPoller(http, url.split("/tic-api/")[0])
    sampler = Sampler(pid)
    background = [asyncio.create_task(poller.run()), asyncio.create_task(sampler.run())]
    durations: list[float] = []
    body = b""
    try:
        for _ in range(GUIDE_REQUESTS):
            t0 = time.perf_counter()
            async with http.get(url, params=params, headers=headers) as r:
                body = await r.read()
                if r.status != 200:
                    raise RuntimeError(f"GET {url}: {r.status} {body[:500]!r}")
            durations.append(time.perf_counter() - t0)
    finally:
        poller.stop = sampler.stop = True
        await asyncio.gather(*background)
    return durations, body, {**poller.figures(), "tic_peak_mb": round(sampler.tic_peak / 1024, 1)}


async def guide_channel_ids(
    http: aiohttp.ClientSession, base: str, auth: dict[str, str], epg_id: int
) -> list[tuple[str, str]]:
    """Every channel of the imported guide as (xmltv id, first display name), in the guide's order."""
    found: list[tuple[str, str]] = []
    while True:
        params = {"limit": "1000", "offset": str(len(found))}
        async with http.get(f"{base}/tic-api/epgs/{epg_id}/channels", params=params, headers=auth) as r:
            page = await r.json()
        for item in page["items"]:
            names = item["display_names"]
            found.append((item["channel_id"], names[0][0] if names else item["channel_id"]))
        if not page["items"] or len(found) >= page["total"]:
            return found


async def create_mapped_channels(
    http: aiohttp.ClientSession, base: str, auth: dict[str, str], epg_id: int, chosen: list[tuple[str, str]]
) -> list[int]:
    """One lineup channel per guide channel through POST /tic-api/channels, a few requests at a time."""
    ids: list[int] = [0] * len(chosen)
    gate = asyncio.Semaphore(4)

    async def create(i: int, xmltv_id: str, name: str) -> None:
        body = {"name": name, "number": i + 1, "epg_id": epg_id, "epg_channel_id": xmltv_id}
        async with gate, http.post(base + "/tic-api/channels", json=body, headers=auth) as r:
            if r.status != 201:
                raise RuntimeError(f"create channel {xmltv_id}: {r.status} {await r.text()}")
            ids[i] = (await r.json())["id"]

    await asyncio.gather(*(create(i, x, n) for i, (x, n) in enumerate(chosen)))
    return ids


async def wait_idle(http: aiohttp.ClientSession, base: str, auth: dict[str, str]) -> bool:
    """Wait until no task is queued or running (the guide build and logo caching a lineup change
    queues would otherwise share the CPU with the requests measured). False if it timed out."""
    deadline = time.perf_counter() + SETTLE_TIMEOUT
    # The follow-up jobs are queued as the channel requests return; give the broker a moment to pick up.
    await asyncio.sleep(1)
    while time.perf_counter() < deadline:
        async with http.get(base + "/tic-api/tasks", params={"limit": "1"}, headers=auth) as r:
            tasks = await r.json()
        if not tasks["queue"] and tasks["current"] is None:
            return True
        await asyncio.sleep(0.5)
    return False


async def measure_guide(
    http: aiohttp.ClientSession, base: str, auth: dict[str, str], epg_id: int, pid: int
) -> dict[str, Any]:
    """Map GUIDE_CHANNELS lineup channels to the imported guide, then time the guide grid for them
    and the programme search by title."""
    guide_channels = await guide_channel_ids(http, base, auth, epg_id)
    step = max(1, len(guide_channels) // GUIDE_CHANNELS)
    chosen = guide_channels[::step][:GUIDE_CHANNELS]
    t0 = time.perf_counter()
    channel_ids = await create_mapped_channels(http, base, auth, epg_id, chosen)
    created = time.perf_counter() - t0
    t0 = time.perf_counter()
    settled = await wait_idle(http, base, auth)
    settle = time.perf_counter() - t0

    now = datetime.now(UTC)
    start = datetime(
        GUIDE_DAY.year, GUIDE_DAY.month, GUIDE_DAY.day, now.hour, 0 if now.minute < 30 else 30, tzinfo=UTC
    )
    end = start + timedelta(hours=GUIDE_HOURS)
    params = {
        "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "end": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "channels": ",".join(str(i) for i in channel_ids),
    }
    durations, body, during = await timed_gets(http, base + "/tic-api/guide", params, auth, pid)
    grid = json.loads(body)
    programmes = sum(len(c["programmes"]) for c in grid["channels"])
    empty = sum(1 for c in grid["channels"] if not c["programmes"])
    if len(grid["channels"]) != len(channel_ids) or programmes == 0:
        raise RuntimeError(f"guide: {len(grid['channels'])} channels, {programmes} programmes")
    figures: dict[str, Any] = {
        "channels": len(channel_ids),
        "start": params["start"],
        "hours": GUIDE_HOURS,
        "create_channels_seconds": round(created, 2),
        "settle_seconds": round(settle, 2) if settled else f"timed out after {SETTLE_TIMEOUT:.0f}",
        "median_ms": ms(statistics.median(durations)),
        "p95_ms": ms(p95(durations)),
        "first_ms": ms(durations[0]),
        "response_kb": round(len(body) / 1024, 1),
        "programmes": programmes,
        "channels_without_programmes": empty,
        **during,
    }
    for kind, word in SEARCH_WORDS.items():
        durations, body, during = await timed_gets(http, base + "/tic-api/programmes", {"q": word}, auth, pid)
        figures[f"search {kind} q"] = word
        figures[f"search {kind} total"] = json.loads(body)["total"]
        figures[f"search {kind} median_ms"] = ms(statistics.median(durations))
        figures[f"search {kind} loop_lag_max_ms"] = during["loop_lag_max_ms"]
    return figures


class Sampler:
    """Samples TIC's RSS, its workers' VmHWM and RSS, and the sum of all of them, every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.tic_peak = 0
        self.child_peak = 0
        self.workers_peak = 0
        self.together_peak = 0
        self.stop = False

    async def run(self) -> None:
        while not self.stop:
            rss = proc_status(self.pid).get("VmRSS", 0)
            self.tic_peak = max(self.tic_peak, rss)
            workers = 0
            for child in descendants(self.pid):
                status = proc_status(child)
                self.child_peak = max(self.child_peak, status.get("VmHWM", 0))
                workers += status.get("VmRSS", 0)
            self.workers_peak = max(self.workers_peak, workers)
            rss += workers
            self.together_peak = max(self.together_peak, rss)
            await asyncio.sleep(0.05)


class FileServer:
    """A plain HTTP server for the guides, in its own process so its CPU is not TIC's."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "http.server",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--directory",
                str(directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def _database() -> tuple[str, Any]:
    if os.environ.get("BENCH_EPG_DB") != "postgres":
        return "", None
    sys.path.insert(0, str(REPO))
    from tests.conftest import PostgresCluster

    cluster = PostgresCluster()
    cluster.start()
    return "postgres", cluster


def run() -> dict[str, Any]:
    guide_only = os.environ.get("BENCH_EPG_ONLY") == "guide"
    runs = 1 if guide_only else int(os.environ.get("BENCH_EPG_RUNS", "3"))
    wanted = ["7d"] if guide_only else os.environ.get("BENCH_EPG_INPUTS", "7d,7d.gz,14d.gz").split(",")
    serve_dir = Path(tempfile.mkdtemp(prefix="tic-bench-guides-"))
    for name in wanted:
        path = ensure_input(name)
        (serve_dir / path.name).symlink_to(path)
    server = FileServer(serve_dir)
    kind, cluster = _database()
    results: dict[str, Any] = {}
    guide: dict[str, Any] | None = None
    try:
        for name in wanted:
            samples = []
            for i in range(runs):
                database_url = ""
                if cluster is not None:
                    db = f"bench_{name.replace('.', '_')}_{i}"
                    cluster.create_database(db)
                    database_url = cluster.url(db)
                # The guide and search are measured once, on the TIC of the first import.
                sample, figures = asyncio.run(
                    one_run(name, server.url(INPUTS[name][0]), database_url, guide=guide is None)
                )
                sys.stderr.write(f"  {name} run {i + 1}: {json.dumps(sample)}\n")
                if figures is not None:
                    sys.stderr.write(f"  guide after {name}: {json.dumps(figures)}\n")
                    guide = {"input": name, **figures}
                samples.append(sample)
            results[name] = {key: statistics.median(s[key] for s in samples) for key in samples[0]}
            results[name]["runs"] = runs
    finally:
        server.close()
        shutil.rmtree(serve_dir, ignore_errors=True)
        if cluster is not None:
            cluster.stop()
    summary: dict[str, Any] = {"database": kind or "sqlite"}
    for name, figures in results.items():
        for key, value in figures.items():
            summary[f"{name} {key}"] = value
    if "7d.gz" in results and "14d.gz" in results:
        seven = results["7d.gz"]["together_peak_mb"]
        summary["14d/7d together peak ratio"] = round(results["14d.gz"]["together_peak_mb"] / seven, 2)
    for key, value in (guide or {}).items():
        summary[key if key.startswith("search ") else f"guide {key}"] = value
    return summary


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    for key, value in run().items():
        sys.stdout.write(f"| {key} | {value} |\n")
