"""Playlist import benchmark: a real TIC process imports generated M3U files served over local HTTP.

Measures trigger -> task succeeded -> streams visible for 10k, 50k and 100k entries (median of 3 runs,
each a fresh playlist), and a refresh of the 100k playlist with 1% of its entries changed. While an
import runs it samples, every 50 ms, the RSS of the TIC process, alone and with its worker children (/proc) and the
latency of /tic-api/health with the loop lag TIC reports there (sampled by TIC every 250 ms). Each run
also records the CPU seconds of TIC and its finished worker processes and the load average at its
start: on a shared machine wall-clock figures vary with the load, CPU seconds much less. Each run
starts once TIC is idle, after the previous run's background work (WAL checkpoint, queued jobs).

Run: `python -m bench bench_playlists` (SQLite in a temporary data dir), or with
TIC_BENCH_DATABASE_URL=postgresql+asyncpg://... for PostgreSQL. TIC_BENCH_SIZES=10000,50000 limits sizes.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("TIC_SHARED_DIR", REPO.parent / "shared"))
GEN_CORPUS = SHARED / "tools" / "gen_corpus.py"
SIZES = [int(s) for s in os.environ.get("TIC_BENCH_SIZES", "10000,50000,100000").split(",")]
RUNS = 3
SAMPLE_EVERY = 0.05
ENDED = ("succeeded", "failed", "cancelled", "interrupted")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _generate(out: Path, entries: int, port: int) -> Path:
    cmd = [sys.executable, str(GEN_CORPUS), "m3u", "--entries", str(entries), "--seed", "1"]
    subprocess.run([*cmd, "--port", str(port), "--out", str(out)], check=True, capture_output=True)
    return out


def _change_one_percent(src: Path, out: Path) -> dict[str, int]:
    """Rename 0.5%, remove 0.25% and add 0.25% of the entries (an entry is its EXTINF block + URL)."""
    lines = src.read_text(encoding="utf-8").splitlines()
    header, blocks, block = lines[0], [], []
    for line in lines[1:]:
        block.append(line)
        if line and not line.startswith("#"):
            blocks.append(block)
            block = []
    rng = random.Random(1)
    n = len(blocks)
    picks = rng.sample(range(n), n // 100)
    renamed, removed, added = (
        picks[: n // 200],
        set(picks[n // 200 : n // 200 + n // 400]),
        picks[n // 200 + n // 400 :],
    )
    for i in renamed:
        blocks[i] = [(b + " (changed)") if b.startswith("#EXTINF") else b for b in blocks[i]]
    out_blocks = []
    for i, b in enumerate(blocks):
        if i in removed:
            continue
        out_blocks.append(b)
        if i in added:
            out_blocks.append(
                [
                    f'#EXTINF:-1 tvg-id="new{i}.tv" group-title="New",New channel {i}',
                    f"http://127.0.0.1/new/{i}.ts",
                ]
            )
    out.write_text("\n".join([header, *(line for b in out_blocks for line in b)]) + "\n", encoding="utf-8")
    return {"renamed": len(renamed), "removed": len(removed), "added": len(added), "entries": len(out_blocks)}


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and of its children that have ended (the parse workers)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime, stime, cutime, cstime are fields 14-17 of stat(5); fields[0] here is field 3.
    ticks = sum(int(v) for v in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


async def _settle(pid: int, timeout: float = 30.0) -> None:
    """Wait until TIC is idle (under 2% of a core for 2.5 s, longer than the WAL checkpointer's
    interval), so that each run starts from the same state: the previous run's background work (the
    WAL checkpoint of 100k new rows, the jobs an import queues) is not counted in the next run."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while time.monotonic() < deadline and quiet < 5:
        before = _cpu_seconds(pid)
        await asyncio.sleep(0.5)
        quiet = quiet + 1 if _cpu_seconds(pid) - before < 0.01 else 0


_MINIMAL = r"""
import re, sqlite3, sys, time
started = time.perf_counter()
extinf = re.compile(r'#EXTINF:[^ ,]*((?: [a-z0-9_-]+="[^"]*")*) *,(.*)')
attr = re.compile(r'([a-z0-9_-]+)="([^"]*)"')
rows, pending = [], None
with open(sys.argv[1], encoding="utf-8", errors="replace") as f:
    for line in f:
        line = line.strip()
        if line.startswith("#EXTINF:"):
            pending = extinf.match(line)
        elif line and not line.startswith("#") and pending is not None:
            a = dict(attr.findall(pending.group(1)))
            rows.append((pending.group(2), line, a.get("tvg-id"), a.get("tvg-name"), a.get("tvg-logo"),
                         a.get("group-title")))
            pending = None
db = sqlite3.connect(sys.argv[2])
db.execute("CREATE TABLE stream (id INTEGER PRIMARY KEY, name, url, tvg_id, tvg_name, logo, grp)")
db.executemany("INSERT INTO stream (name, url, tvg_id, tvg_name, logo, grp) VALUES (?, ?, ?, ?, ?, ?)", rows)
db.commit()
print(time.perf_counter() - started, len(rows))
"""


def _minimal_import(playlist: Path, database: Path) -> float:
    """Seconds the issue's yardstick takes here: a single-purpose script that only parses the file
    (the common EXTINF form) and bulk-inserts six columns into an unindexed SQLite table."""
    out = subprocess.run(
        [sys.executable, "-c", _MINIMAL, str(playlist), str(database)], check=True, capture_output=True
    ).stdout.split()
    return float(out[0])


def _host_speed() -> float:
    """CPU milliseconds a fixed pure-Python loop takes right now (about 110 ms on a quiet host).

    This VM shares its host: the same loop has taken anywhere from 0.9x to 1.7x its quiet time within
    a minute, and the import's CPU seconds swing with it. Each run records this, so a slow run can be
    told from a slow host."""
    started = time.process_time()
    total = 0
    for i in range(1_000_000):
        total += i
    return round((time.process_time() - started) * 1000, 1)


def _load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            out += kids
            todo += kids
    return out


def _percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


class Tic:
    """A TIC server process (run.py) with its own data dir, and an API token to drive it."""

    def __init__(self, data_dir: Path, database_url: str) -> None:
        self.data_dir = data_dir
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.database_url = database_url
        self.proc: subprocess.Popen[bytes] | None = None
        self.headers: dict[str, str] = {}

    async def start(self, http: aiohttp.ClientSession) -> None:
        env = {
            **os.environ,
            "TIC_DATA_DIR": str(self.data_dir),
            "TIC_PORT": str(self.port),
            "TIC_LOG_LEVEL": "INFO" if os.environ.get("TIC_BENCH_VERBOSE") else "WARNING",
        }
        if self.database_url:
            env["DATABASE_URL"] = self.database_url
        self.log = (self.data_dir.parent / "tic.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "run.py"], cwd=REPO, env=env, stdout=self.log, stderr=self.log
        )
        for _ in range(600):
            try:
                async with http.get(self.base + "/tic-api/health") as resp:
                    if resp.status in (200, 503):
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        else:
            raise RuntimeError("TIC did not start; see tic.log")
        user = {"username": "admin", "password": "bench-password-1"}
        async with http.post(self.base + "/tic-api/setup", json=user) as r:
            assert r.status == 201, await r.text()
        async with http.post(self.base + "/tic-api/auth/login", json=user) as r:
            csrf = (await r.json())["csrf_token"]
        async with http.post(
            self.base + "/tic-api/auth/tokens", json={"name": "bench"}, headers={"X-CSRF-Token": csrf}
        ) as r:
            self.headers = {"Authorization": f"Bearer {(await r.json())['token']}"}

    async def call(self, http: aiohttp.ClientSession, method: str, path: str, **kw: Any) -> Any:
        async with http.request(method, self.base + path, headers=self.headers, **kw) as resp:
            body = await resp.json() if resp.content_type == "application/json" else None
            if resp.status >= 400:
                raise RuntimeError(f"{method} {path}: {resp.status} {body}")
            return body

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
            self.log.close()


async def _sample(tic: Tic, stop: asyncio.Event, out: dict[str, list[float]]) -> None:
    # Its own client without the admin's cookie, like a monitoring probe: the health check is public.
    async with aiohttp.ClientSession() as http:
        await _sample_with(http, tic, stop, out)


async def _sample_with(
    http: aiohttp.ClientSession, tic: Tic, stop: asyncio.Event, out: dict[str, list[float]]
) -> None:
    assert tic.proc is not None
    while not stop.is_set():
        children = _descendants(tic.proc.pid)
        parent = _rss_kib(tic.proc.pid) / 1024
        out["rss_parent"].append(parent)
        out["rss"].append(parent + sum(_rss_kib(p) for p in children) / 1024)
        started = time.perf_counter()
        async with http.get(tic.base + "/tic-api/health") as resp:
            body = await resp.json()
        out["health"].append((time.perf_counter() - started) * 1000)
        out["lag"].append(float(body["checks"].get("loop_lag_seconds", 0.0)) * 1000)
        try:
            await asyncio.wait_for(stop.wait(), SAMPLE_EVERY)
        except TimeoutError:
            pass


async def _timed_import(
    http: aiohttp.ClientSession, tic: Tic, playlist_id: int, expected: int
) -> dict[str, float]:
    samples: dict[str, list[float]] = {"rss": [], "rss_parent": [], "health": [], "lag": []}
    stop = asyncio.Event()
    assert tic.proc is not None
    await _settle(tic.proc.pid)
    sampler = asyncio.create_task(_sample(tic, stop, samples))
    cpu_before = _cpu_seconds(tic.proc.pid)
    load = _load_average()
    speed = _host_speed()
    version = (await tic.call(http, "GET", "/tic-api/tasks?limit=1"))["version"]
    started = time.perf_counter()
    task_id = (await tic.call(http, "POST", f"/tic-api/playlists/update/{playlist_id}"))["task_id"]
    task = await _wait_task(http, tic, task_id, version)
    seen_at = time.perf_counter()
    if task["status"] != "succeeded":
        raise RuntimeError(f"import failed: {task['error']}")
    page = await tic.call(http, "GET", f"/tic-api/playlists/{playlist_id}/streams?limit=1")
    elapsed = time.perf_counter() - started
    # Wall-clock time depends on what else the machine runs; CPU seconds compare versions fairly.
    cpu = _cpu_seconds(tic.proc.pid) - cpu_before
    stop.set()
    await sampler
    if os.environ.get("TIC_BENCH_VERBOSE"):
        sys.stderr.write(f"    lag samples (ms): {[round(x) for x in samples['lag']]}\n")
        sys.stderr.write(
            f"    task: created {task['created_at']} started {task['started_at']} "
            f"finished {task['finished_at']}; seen ended after {seen_at - started:.2f} s, "
            f"streams visible after {elapsed:.2f} s\n"
        )
    if page["total"] != expected:
        raise RuntimeError(f"expected {expected} streams, the API shows {page['total']}")
    return {
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "load_average": load,
        "calibration_ms": speed,
        "peak_rss_mb": max(samples["rss"]),
        "peak_rss_tic_mb": max(samples["rss_parent"]),
        "loop_lag_p99_ms": _percentile(samples["lag"], 99),
        "loop_lag_max_ms": max(samples["lag"]),
        "health_p99_ms": _percentile(samples["health"], 99),
    }


async def _wait_task(http: aiohttp.ClientSession, tic: Tic, task_id: int, version: int) -> dict[str, Any]:
    """Wait for a task to end the way the admin UI does: the task list's long poll, which answers as
    soon as anything changes (progress at most five times a second, the end at once). Polling the
    task every few milliseconds instead would cost TIC a share of the CPU the import needs."""
    while True:
        body = await tic.call(http, "GET", f"/tic-api/tasks?wait=10&since={version}&limit=10")
        version = body["version"]
        for task in [body["current"], *body["items"]]:
            if task and task["id"] == task_id and task["status"] in ENDED:
                return dict(task)


def _summary(runs: list[dict[str, float]]) -> dict[str, Any]:
    return {
        "median_s": round(statistics.median(r["seconds"] for r in runs), 2),
        "runs_s": [round(r["seconds"], 2) for r in runs],
        "median_cpu_s": round(statistics.median(r["cpu_seconds"] for r in runs), 2),
        "runs_cpu_s": [round(r["cpu_seconds"], 2) for r in runs],
        "load_average": [r["load_average"] for r in runs],
        "calibration_ms": [r["calibration_ms"] for r in runs],
        "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs), 1),
        "peak_rss_tic_only_mb": round(max(r["peak_rss_tic_mb"] for r in runs), 1),
        "loop_lag_p99_ms": round(max(r["loop_lag_p99_ms"] for r in runs), 1),
        "loop_lag_max_ms": round(max(r["loop_lag_max_ms"] for r in runs), 1),
        "health_p99_ms": round(max(r["health_p99_ms"] for r in runs), 1),
    }


async def _bench(work: Path) -> dict[str, Any]:
    files = work / "files"
    files.mkdir()
    http_port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "http.server",
            str(http_port),
            "--bind",
            "127.0.0.1",
            "--directory",
            str(files),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    results: dict[str, Any] = {
        "database": "postgresql" if os.environ.get("TIC_BENCH_DATABASE_URL") else "sqlite"
    }
    tic = Tic(work / "data", os.environ.get("TIC_BENCH_DATABASE_URL", ""))
    try:
        for size in SIZES:
            _generate(files / f"{size}.m3u", size, http_port)
        changes = _change_one_percent(files / f"{SIZES[-1]}.m3u", files / "changed.m3u") if SIZES else {}
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=600), cookie_jar=aiohttp.CookieJar(unsafe=True)
        ) as http:
            await tic.start(http)
            idle_rss = _rss_kib(tic.proc.pid) / 1024 if tic.proc else 0.0
            results["idle_rss_mb"] = round(idle_rss, 1)
            if SIZES:
                # The yardstick of the issue, on this host and now: parse + bulk insert, nothing else.
                biggest = files / f"{SIZES[-1]}.m3u"
                reference = [_minimal_import(biggest, work / f"minimal-{i}.db") for i in range(RUNS)]
                results[f"reference_minimal_{SIZES[-1]}"] = {
                    "median_s": round(statistics.median(reference), 2),
                    "runs_s": [round(r, 2) for r in reference],
                }
            for size in SIZES:
                runs = []
                for run in range(RUNS):
                    url = f"http://127.0.0.1:{http_port}/{size}.m3u"
                    source = await tic.call(
                        http,
                        "POST",
                        "/tic-api/playlists",
                        json={"name": f"{size}-{run}", "kind": "m3u_url", "url": url},
                    )
                    runs.append(await _timed_import(http, tic, source["id"], size))
                    await tic.call(http, "DELETE", f"/tic-api/playlists/{source['id']}")
                results[f"import_{size}"] = _summary(runs)
                sys.stderr.write(f"  {size}: {results[f'import_{size}']}\n")
            if SIZES:
                big = SIZES[-1]
                base_url = f"http://127.0.0.1:{http_port}"
                source = await tic.call(
                    http,
                    "POST",
                    "/tic-api/playlists",
                    json={"name": "refresh", "kind": "m3u_url", "url": f"{base_url}/{big}.m3u"},
                )
                await _timed_import(http, tic, source["id"], big)
                runs = []
                for run in range(RUNS):
                    target, count = (
                        ("changed.m3u", changes["entries"]) if run % 2 == 0 else (f"{big}.m3u", big)
                    )
                    await tic.call(
                        http,
                        "PATCH",
                        f"/tic-api/playlists/{source['id']}",
                        json={"url": f"{base_url}/{target}"},
                    )
                    runs.append(await _timed_import(http, tic, source["id"], count))
                results[f"refresh_{big}_1pct"] = {**_summary(runs), "changes": changes}
                sys.stderr.write(f"  refresh: {results[f'refresh_{big}_1pct']}\n")
            if tic.proc is not None:
                hwm = [
                    line
                    for line in Path(f"/proc/{tic.proc.pid}/status").read_text().splitlines()
                    if line.startswith("VmHWM:")
                ]
                results["tic_process_vmhwm_mb"] = round(int(hwm[0].split()[1]) / 1024, 1) if hwm else None
    finally:
        tic.stop()
        if os.environ.get("TIC_BENCH_VERBOSE"):
            for line in (work / "tic.log").read_text(errors="replace").splitlines():
                if "took" in line or "Swapped" in line:
                    sys.stderr.write(line + "\n")
        server.terminate()
        server.wait(timeout=10)
    return results


def run() -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="tic-bench-playlists-"))
    try:
        return asyncio.run(_bench(work))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
