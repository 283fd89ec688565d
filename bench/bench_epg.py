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

Run with `python -m bench epg` (or `python bench/bench_epg.py`). BENCH_EPG_RUNS sets the runs per
input (default 3; the median is reported), BENCH_EPG_INPUTS a comma list of 7d,7d.gz,14d.gz.
"""

from __future__ import annotations

import asyncio
import json
import os
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


async def one_run(name: str, guide_url: str, database_url: str) -> dict[str, Any]:
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
        tic_hwm = proc_status(pid).get("VmHWM", 0)
    finally:
        tic.stop()
        shutil.rmtree(root, ignore_errors=True)
    if task["status"] != "succeeded":
        raise RuntimeError(f"{name}: import {task['status']}: {task.get('error')}")
    report = after["last_import_report"] or {}
    assert after["programme_count"] == EXPECTED_PROGRAMMES[name], after["programme_count"]
    return {
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
    runs = int(os.environ.get("BENCH_EPG_RUNS", "3"))
    wanted = os.environ.get("BENCH_EPG_INPUTS", "7d,7d.gz,14d.gz").split(",")
    serve_dir = Path(tempfile.mkdtemp(prefix="tic-bench-guides-"))
    for name in wanted:
        path = ensure_input(name)
        (serve_dir / path.name).symlink_to(path)
    server = FileServer(serve_dir)
    kind, cluster = _database()
    results: dict[str, Any] = {}
    try:
        for name in wanted:
            samples = []
            for i in range(runs):
                database_url = ""
                if cluster is not None:
                    db = f"bench_{name.replace('.', '_')}_{i}"
                    cluster.create_database(db)
                    database_url = cluster.url(db)
                sample = asyncio.run(one_run(name, server.url(INPUTS[name][0]), database_url))
                sys.stderr.write(f"  {name} run {i + 1}: {json.dumps(sample)}\n")
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
    return summary


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    for key, value in run().items():
        sys.stdout.write(f"| {key} | {value} |\n")
