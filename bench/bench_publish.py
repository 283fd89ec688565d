"""Publish 2,000 channels x 2 sources to the fake TVHeadend: first publish, no-op publish, one-channel change.

Method: the fake TVHeadend (tests/fakes/tvheadend.py) runs in a child process so that its own CPU
time does not count against TIC; TIC's publish runs in this process against a migrated SQLite
database in a temporary directory, through the real TvheadendClient over HTTP on 127.0.0.1 (the
fake in Basic+Digest mode, scans taking 0.1 s). Call counts come from the fake's own call log.

The no-op publish is repeated NOOP_RUNS times: its figures are medians (wall also as min and all
runs), since other work on the machine inflates wall time; CPU seconds of each process are the
steadier figures. `fake_tvh_idle_cpu_per_second` is what the fake burns doing nothing (its scan
loop walks every mux every 20 ms), part of its CPU figures, not TIC's. The load average at the start
and end is recorded with the figures.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import resource
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

CHANNELS = 2000
SOURCES_PER_CHANNEL = 2
NOOP_RUNS = 5


# -- the fake TVHeadend in a child process -------------------------------------------------------------


def _serve(conn: Connection) -> None:
    asyncio.run(_serve_async(conn))


async def _serve_async(conn: Connection) -> None:
    from tests.fakes.tvheadend import FakeTvheadend

    loop = asyncio.get_running_loop()
    async with FakeTvheadend(auth_mode=2, scan_delay=0.1, mapper_delay=0.01) as fake:
        conn.send(fake.url)
        while True:
            command = await loop.run_in_executor(None, conn.recv)
            if command == "stats":
                writes = fake.write_calls()
                touched: list[str] = []
                for call in writes:
                    for name in ("node", "uuid"):
                        if name in call.args:
                            try:
                                value = call.json_arg(name)
                            except ValueError:
                                value = call.args[name]
                            items = value if isinstance(value, list) else [value]
                            touched += [i["uuid"] if isinstance(i, dict) else str(i) for i in items]
                conn.send(
                    {
                        "cpu": time.process_time(),
                        "calls": len(fake.calls),
                        "writes": len(writes),
                        "write_paths": sorted({c.path for c in writes}),
                        "touched": touched,
                        "objects": {
                            "networks": len(fake.state.networks),
                            "muxes": len(fake.state.muxes),
                            "services": len(fake.state.services),
                            "channels": len(fake.state.channels),
                        },
                    }
                )
            elif command == "clear":
                fake.clear_calls()
                conn.send("ok")
            else:
                conn.send("bye")
                return


# -- TIC's side ---------------------------------------------------------------------------------------


async def _seed(db: Any) -> None:
    from sqlalchemy import insert

    from backend.channels.models import Channel, ChannelSource
    from backend.db import utcnow
    from backend.playlists.models import PlaylistSource, Stream

    now = utcnow()
    async with db.transaction() as session:
        for pid, name in ((1, "Provider A"), (2, "Provider B")):
            await session.execute(
                insert(PlaylistSource).values(
                    id=pid,
                    name=name,
                    kind="m3u_url",
                    url="http://p.invalid/x.m3u",
                    connection_limit=4,
                    headers={},
                    created_at=now,
                    updated_at=now,
                )
            )
        streams, channels, sources = [], [], []
        for i in range(1, CHANNELS + 1):
            channels.append(
                {
                    "id": i,
                    "name": f"Channel {i}",
                    "number": i,
                    "enabled": True,
                    "guide_id": f"ch{i}.tic",
                    "guide_offset_minutes": 0,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            for s in range(SOURCES_PER_CHANNEL):
                sid = (i - 1) * SOURCES_PER_CHANNEL + s + 1
                playlist = 1 + s % 2
                streams.append(
                    {
                        "id": sid,
                        "source_id": playlist,
                        "stream_key": f"k{sid}",
                        "name": f"Channel {i}",
                        # The fake fails the scan of any URL containing "404": keep those digits apart.
                        "url": f"http://p{playlist}.invalid/live/{str(i).replace('404', '40-4')}.ts",
                        "first_seen_at": now,
                        "updated_at": now,
                    }
                )
                sources.append(
                    {
                        "id": sid,
                        "channel_id": i,
                        "position": s,
                        "stream_id": sid,
                        "playlist_source_id": playlist,
                        "enabled": True,
                        "created_at": now,
                    }
                )
        await session.execute(insert(Stream), streams)
        await session.execute(insert(Channel), channels)
        await session.execute(insert(ChannelSource), sources)


async def _run(url: str, conn: Connection, data_dir: Path) -> dict[str, Any]:
    import aiohttp
    from sqlalchemy import select, update

    from backend.app import load_domains
    from backend.channels.models import Channel, ChannelSource
    from backend.db import Database, utcnow
    from backend.publish.service import PublishOptions, publish_lineup
    from backend.tvheadend.client import TvheadendClient

    load_domains()
    db = Database(f"sqlite+aiosqlite:///{data_dir / 'tic.db'}")
    await db.upgrade()
    await _seed(db)

    def ask(command: str) -> Any:
        conn.send(command)
        return conn.recv()

    async def progress(_pct: float, _msg: str) -> None:
        return None

    options = PublishOptions(concurrency=8, scan_timeout=600, scan_poll_interval=1.0)
    figures: dict[str, Any] = {
        "channels": CHANNELS,
        "sources_per_channel": SOURCES_PER_CHANNEL,
        "loadavg_start": _loadavg(),
    }
    async with aiohttp.ClientSession() as http:
        client = TvheadendClient(http, url, "admin", "admin", timeout=60)
        for label, runs in (("first", 1), ("second", NOOP_RUNS)):
            samples: list[dict[str, Any]] = []
            for _run in range(runs):
                ask("clear")
                fake_cpu = ask("stats")["cpu"]
                started, cpu = time.perf_counter(), time.process_time()
                result = await publish_lineup(db, client, options, progress)
                elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
                stats = ask("stats")
                samples.append(
                    {
                        "seconds": elapsed,
                        "tic_cpu": cpu,
                        "fake_cpu": stats["cpu"] - fake_cpu,
                        "calls": stats["calls"],
                        "writes": stats["writes"],
                        "problems": result["problems"],
                        "objects": stats["objects"],
                    }
                )
            figures[f"{label}_publish_seconds"] = _median(samples, "seconds")
            if runs > 1:
                figures[f"{label}_publish_seconds_min"] = round(min(s["seconds"] for s in samples), 2)
                figures[f"{label}_publish_seconds_all"] = [round(s["seconds"], 2) for s in samples]
            figures[f"{label}_publish_tic_cpu_seconds"] = _median(samples, "tic_cpu")
            figures[f"{label}_publish_fake_tvh_cpu_seconds"] = _median(samples, "fake_cpu")
            figures[f"{label}_publish_tvh_calls"] = max(s["calls"] for s in samples)
            figures[f"{label}_publish_tvh_writes"] = max(s["writes"] for s in samples)
            problems = [p for s in samples for p in s["problems"]]
            figures[f"{label}_publish_problems"] = max(len(s["problems"]) for s in samples)
            figures[f"{label}_publish_problem_reasons"] = sorted({str(p.get("reason")) for p in problems})
            if label == "first":
                figures["tvh_objects_after_first"] = samples[0]["objects"]
        idle = ask("stats")["cpu"]
        await asyncio.sleep(2.0)
        figures["fake_tvh_idle_cpu_per_second"] = round((ask("stats")["cpu"] - idle) / 2.0, 3)

        async with db.transaction() as session:
            await session.execute(
                update(Channel)
                .where(Channel.id == 1000)
                .values(name="Channel 1000 renamed", updated_at=utcnow())
            )
            channel_uuid = (
                await session.execute(select(Channel.tvh_uuid).where(Channel.id == 1000))
            ).scalar_one()
            muxes = set(
                (
                    await session.execute(
                        select(ChannelSource.tvh_mux_uuid).where(ChannelSource.channel_id == 1000)
                    )
                )
                .scalars()
                .all()
            )
        ask("clear")
        fake_cpu = ask("stats")["cpu"]
        started, cpu = time.perf_counter(), time.process_time()
        await publish_lineup(db, client, options, progress)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        stats = ask("stats")
        touched = set(stats["touched"])
        figures["one_change_publish_seconds"] = round(elapsed, 2)
        figures["one_change_tic_cpu_seconds"] = round(cpu, 2)
        figures["one_change_fake_tvh_cpu_seconds"] = round(stats["cpu"] - fake_cpu, 2)
        figures["one_change_tvh_calls"] = stats["calls"]
        figures["one_change_tvh_writes"] = stats["writes"]
        figures["one_change_objects_written"] = len(touched)
        figures["one_change_only_that_channel"] = touched == muxes | {channel_uuid}
    await db.dispose()
    figures["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    figures["loadavg_end"] = _loadavg()
    return figures


def _median(samples: list[dict[str, Any]], key: str) -> float:
    return round(statistics.median(s[key] for s in samples), 2)


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def run() -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(child,), daemon=True)
    proc.start()
    try:
        url = parent.recv()
        with tempfile.TemporaryDirectory(prefix="tic-bench-publish-") as tmp:
            return asyncio.run(_run(url, parent, Path(tmp)))
    finally:
        parent.send("stop")
        proc.join(timeout=10)
        if proc.is_alive():
            proc.terminate()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    for key, value in run().items():
        sys.stdout.write(f"{key}: {value}\n")
