"""DVR: HLS time-to-playlist for a 1-hour recording, ffmpeg CPU per hour, apply_dvr_rules at scale, the long poll.

Method.
- HLS: a 1-hour MPEG-TS (MPEG-2 160x120 + MP2, a key frame per second, made once with ffmpeg and kept in
  TIC_BENCH_CORPUS_DIR or /tmp) is served by the fake TVHeadend (tests/fakes/tvheadend.py, Digest auth,
  in this process) as `dvrfile/<uuid>`. TIC runs as a real process (run.py, SQLite, one Hypercorn worker).
  Each run is a new recording row (so a new cache and a new ffmpeg); the time is from sending
  `GET hls.m3u8` to having the playlist (with at least one segment) and its first segment. Measured for
  the TVH relay path and for the local-recordings-directory path; median of 3 each. "Remux done" is
  when the playlist gains #EXT-X-ENDLIST.
- ffmpeg CPU per recording hour: the exact ffmpeg command TIC runs (backend.dvr.hls.ffmpeg_args),
  reading the file, timed with getrusage(RUSAGE_CHILDREN); TIC's own CPU for relaying the bytes is the
  server process's utime+stime delta over a relay run.
- apply_dvr_rules: in this process against a migrated SQLite database: 2,000 published channels x 7 days
  (about 24 programmes a day each, titles from a pool of 5,000 shows, 70 % with season/episode), 100 rules
  (85 "contains", 5 of them limited to channels and a time window, 10 regular expressions; half "new
  episodes only"; the regular expressions match ~2 % of titles each). Run as the job runs it, in a worker
  process (tasks.offload); the time includes starting that process. First apply (creates recordings), a
  second apply (no change), then a guide refresh (every programme deleted and re-inserted 5 minutes later
  with new ids) and a third apply (moves). The calling loop's lag is sampled every 10 ms meanwhile.
- Long poll: 200 clients wait on /tic-api/recordings/poll against the TIC process; meanwhile 100 requests
  to /tic-api/version measure latency, and TIC's own loop-lag monitor (it measures the loop every 250 ms;
  its latest sample is read from /metrics at the same pace) gives the lag while the 200 are held. Then a
  recording is created through the API and the time from sending that request until every waiting
  client has its answer is measured (it includes creating the recording); 3 rounds. The lag while the
  200 answers go out is reported separately ("wake").
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parent.parent
log = logging.getLogger("bench.dvr")

HOUR_TS = "dvr-bench-1h-160x120.ts"
CHANNELS = 2000
DAYS = 7
SHOWS = 5000
RULES = 100
POLL_CLIENTS = 200


def run() -> dict[str, Any]:
    sys.path.insert(0, str(REPO))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="tic-bench-dvr-"))
    try:
        return asyncio.run(_run(work))
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def _run(work: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    ts = _hour_file()
    results.update(_ffmpeg_cpu(ts, work))
    log.info("ffmpeg: %s", results)
    results.update(await _server_benches(work / "server", ts))
    log.info("server: %s", results)
    results.update(await _apply_rules_bench(work / "rules"))
    results["method"] = (__doc__ or "").split("Method.", 1)[-1].strip()
    return results


# -- the 1-hour recording ---------------------------------------------------------------------------------


def _hour_file() -> Path:
    where = Path(os.environ.get("TIC_BENCH_CORPUS_DIR") or tempfile.gettempdir())
    where.mkdir(parents=True, exist_ok=True)
    path = where / HOUR_TS
    if not path.exists():
        log.info("Making a 1-hour MPEG-TS with ffmpeg (once)")
        tmp = path.with_suffix(".part")
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25",
             "-f", "lavfi", "-i", "sine", "-t", "3600", "-c:v", "mpeg2video", "-g", "25", "-b:v", "150k",
             "-c:a", "mp2", "-b:a", "64k", "-f", "mpegts", str(tmp)],
            check=True,
        )  # fmt: skip
        tmp.rename(path)
    return path


def _ffmpeg_cpu(ts: Path, work: Path) -> dict[str, Any]:
    from backend.dvr.hls import ffmpeg_args

    out = work / "cpu"
    out.mkdir(parents=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    subprocess.run(ffmpeg_args("ffmpeg", str(ts), out, segment_seconds=6), check=True)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    segments = len(list(out.glob("seg_*.ts")))
    return {
        "hls_file_mb": round(ts.stat().st_size / 1e6, 1),
        "ffmpeg_cpu_s_per_recording_hour": round(cpu, 2),
        "ffmpeg_wall_s_per_recording_hour": round(wall, 2),
        "hls_segments_per_hour": segments,
    }


# -- apply_dvr_rules --------------------------------------------------------------------------------------


class LagSampler:
    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _loop(self) -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(self.interval)
            self.samples.append(max(0.0, time.perf_counter() - t - self.interval))

    def __enter__(self) -> LagSampler:
        self._task = asyncio.get_running_loop().create_task(self._loop())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()

    def p99_ms(self) -> float:
        return round(_pct(self.samples, 99) * 1000, 1) if self.samples else 0.0

    def max_ms(self) -> float:
        return round(max(self.samples, default=0.0) * 1000, 1)


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


async def _apply_rules_bench(work: Path) -> dict[str, Any]:
    from sqlalchemy import delete, func, insert, select

    from backend.app import load_domains
    from backend.channels.models import Channel
    from backend.db import Database
    from backend.dvr.models import Recording, RecordingRule
    from backend.dvr.rules import ApplyReport
    from backend.dvr.service import DvrDefaults
    from backend.epg.models import EpgSource, Programme
    from backend.tasks.offload import run_in_subprocess

    load_domains()
    work.mkdir(parents=True)
    db = Database(f"sqlite+aiosqlite:///{work / 'tic.db'}")
    await db.upgrade()
    rnd = random.Random(1)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    shows = [f"{rnd.choice(['The', 'Late', 'Morning', 'Great', 'Tiny'])} Show {i:04d}" for i in range(SHOWS)]
    started = time.monotonic()
    async with db.transaction() as session:
        source = EpgSource(name="bench", kind="xmltv_file", created_at=now, updated_at=now)
        session.add(source)
        await session.flush()
        source_id = source.id
        await session.execute(
            insert(Channel),
            [
                {
                    "name": f"Channel {i}", "number": i + 1, "enabled": True, "epg_source_id": source_id,
                    "epg_channel_id": f"ch{i}.tv", "guide_offset_minutes": 0, "guide_id": f"bench.{i}",
                    "tvh_uuid": f"{i:032x}", "created_at": now, "updated_at": now,
                }
                for i in range(CHANNELS)
            ],
        )  # fmt: skip

    def programmes(shift: timedelta) -> list[dict[str, Any]]:
        r = random.Random(2)
        rows = []
        for ch in range(CHANNELS):
            t = now - timedelta(hours=2)
            end = now + timedelta(days=DAYS)
            while t < end:
                minutes = r.choice((30, 30, 60, 60, 60, 90))
                show = shows[r.randrange(SHOWS)]
                numbered = r.random() < 0.7
                rows.append(
                    {
                        "source_id": source_id, "xmltv_channel_id": f"ch{ch}.tv", "start": t + shift,
                        "stop": t + shift + timedelta(minutes=minutes), "title": show,
                        "season": r.randint(1, 5) if numbered else None,
                        "episode": r.randint(1, 20) if numbered else None,
                    }
                )  # fmt: skip
                t += timedelta(minutes=minutes)
        return rows

    async def load_guide(shift: timedelta) -> int:
        rows = programmes(shift)
        async with db.transaction() as session:
            await session.execute(delete(Programme))
            for i in range(0, len(rows), 20000):
                await session.execute(insert(Programme), rows[i : i + 20000])
        return len(rows)

    count = await load_guide(timedelta(0))
    seed_s = time.monotonic() - started
    async with db.transaction() as session:
        rule_rows = []
        for i in range(RULES):
            show = shows[(i * 37) % SHOWS]
            row: dict[str, Any] = {
                "name": f"rule {i}", "enabled": True, "title_pattern": show, "match_mode": "contains",
                "channel_ids": [], "weekdays": [], "timezone": "Europe/London", "new_episodes_only": i % 2 == 0,
                "created_at": now, "updated_at": now,
            }  # fmt: skip
            if i >= 90:
                row.update(title_pattern=rf"^(the|late) show 0{i - 90}\d\d$", match_mode="regex")
            elif i >= 85:
                row.update(
                    channel_ids=list(range(1, 400)), time_from="18:00", time_to="23:30", weekdays=[0, 2, 4]
                )
            rule_rows.append(row)
        await session.execute(insert(RecordingRule), rule_rows)
    defaults = DvrDefaults()

    async def timed_apply() -> tuple[float, Any, LagSampler]:
        # The seeding's garbage (hundreds of thousands of row dicts) is not TIC's: collect it first.
        gc.collect()
        with LagSampler() as lag:
            t = time.monotonic()
            # Exactly what the apply_dvr_rules job does: the work runs in a worker process.
            result = await run_in_subprocess(
                "backend.dvr.rules:apply_rules_in_child",
                db.url,
                defaults.padding_before,
                defaults.padding_after,
                14,
            )
            return time.monotonic() - t, ApplyReport(**result), lag

    first_s, first, lag1 = await timed_apply()
    second_s, second, lag2 = await timed_apply()
    await load_guide(timedelta(minutes=5))
    third_s, third, lag3 = await timed_apply()
    async with db.session() as session:
        total = (await session.execute(select(func.count()).select_from(Recording))).scalar_one()
    await db.dispose()
    return {
        "rules_guide_programmes": count,
        "rules_seed_s": round(seed_s, 1),
        "apply_rules_first_s": round(first_s, 2),
        "apply_rules_first_created": first.created,
        "apply_rules_first_loop_lag_p99_ms": lag1.p99_ms(),
        "apply_rules_first_loop_lag_max_ms": lag1.max_ms(),
        "apply_rules_again_s": round(second_s, 2),
        "apply_rules_again_changes": second.created + second.moved + second.dropped,
        "apply_rules_again_loop_lag_p99_ms": lag2.p99_ms(),
        "apply_rules_after_refresh_s": round(third_s, 2),
        "apply_rules_after_refresh_moved": third.moved,
        "apply_rules_after_refresh_created": third.created,
        "apply_rules_after_refresh_loop_lag_p99_ms": lag3.p99_ms(),
        "apply_rules_after_refresh_loop_lag_max_ms": lag3.max_ms(),
        "recordings_after_all_applies": total,
    }


# -- TIC as a real process: HLS and the long poll ----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TicProcess:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.database_url = f"sqlite+aiosqlite:///{work / 'data' / 'tic.db'}"
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        env = {
            **os.environ,
            "TIC_DATA_DIR": str(self.work / "data"),
            "DATABASE_URL": self.database_url,
            "TIC_PORT": str(self.port),
            "TIC_LOG_LEVEL": "WARNING",
        }
        self._log = open(self.work / "tic.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "run.py"], cwd=REPO, env=env, stdout=self._log, stderr=self._log
        )
        async with aiohttp.ClientSession() as http:
            for _ in range(1200):
                try:
                    async with http.get(self.base + "/tic-api/health") as resp:
                        if resp.status in (200, 503):
                            return
                except aiohttp.ClientError:
                    pass
                if self.proc.poll() is not None:
                    raise RuntimeError("TIC exited during start-up; see tic.log")
                await asyncio.sleep(0.05)
        raise RuntimeError("TIC did not start")

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


async def _server_benches(work: Path, ts: Path) -> dict[str, Any]:
    from tests.fakes.tvheadend import FakeTvheadend

    work.mkdir(parents=True)
    (work / "data").mkdir()
    tic = TicProcess(work)
    async with FakeTvheadend(dvr_payload=ts.read_bytes()) as tvh:
        await tic.start()
        try:
            # unsafe=True: keep the session cookie of a server addressed by IP (127.0.0.1).
            jar = aiohttp.CookieJar(unsafe=True)
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), cookie_jar=jar) as http:
                token = await _bootstrap(http, tic.base)
                auth = {"Authorization": f"Bearer {token}"}
                async with http.patch(
                    tic.base + "/tic-api/settings",
                    json={"tvh_url": tvh.url, "tvh_username": "admin", "tvh_password": "admin"},
                    headers=auth,
                ) as resp:
                    assert resp.status == 200, await resp.text()
                channel_id, entry = await _seed_recording_data(tic, tvh)
                results = await _hls_bench(http, tic, tvh, auth, channel_id, entry, ts)
                log.info("hls: %s", results)
                # Unhook TVHeadend so background reconciles (status copies) cause no changes of their own.
                async with http.patch(
                    tic.base + "/tic-api/settings", json={"tvh_url": ""}, headers=auth
                ) as resp:
                    assert resp.status == 200, await resp.text()
                await asyncio.sleep(1.0)
                results.update(await _poll_bench(http, tic, auth, channel_id))
        finally:
            tic.stop()
    return results


async def _bootstrap(http: aiohttp.ClientSession, base: str) -> str:
    creds = {"username": "admin", "password": "bench-password-1"}
    async with http.post(base + "/tic-api/setup", json=creds) as resp:
        assert resp.status == 201, await resp.text()
    async with http.post(base + "/tic-api/auth/login", json=creds) as resp:
        csrf = (await resp.json())["csrf_token"]
    async with http.post(
        base + "/tic-api/auth/tokens", json={"name": "bench"}, headers={"X-CSRF-Token": csrf}
    ) as r:
        return str((await r.json())["token"])


async def _seed_recording_data(tic: TicProcess, tvh: Any) -> tuple[int, str]:
    from backend.channels.models import Channel
    from backend.db import Database

    now = datetime.now(UTC)
    tvh_channel = tvh.state.add_channel("Bench", 1)
    t = int(tvh.state.now())
    entry = tvh.state.add_dvr_entry(tvh_channel, t - 7200, t - 3600, "Bench Hour")
    db = Database(tic.database_url)
    async with db.transaction() as session:
        ch = Channel(name="Bench", number=1, enabled=True, guide_id="bench.1", tvh_uuid=tvh_channel,
                     guide_offset_minutes=0, created_at=now, updated_at=now)  # fmt: skip
        session.add(ch)
        await session.flush()
        channel_id = ch.id
    await db.dispose()
    return channel_id, entry


async def _new_recording(tic: TicProcess, channel_id: int, entry: str, size: int) -> int:
    from backend.db import Database
    from backend.dvr.models import Recording
    from backend.dvr.service import new_marker

    now = datetime.now(UTC)
    db = Database(tic.database_url)
    async with db.transaction() as session:
        rec = Recording(
            marker=new_marker(), channel_id=channel_id, channel_name="Bench", owner_id=1, title="Bench Hour",
            start=now - timedelta(hours=2), stop=now - timedelta(hours=1), padding_before=0, padding_after=0,
            status="completed", tvh_uuid=entry, file_size=size, tvh_filename="/recordings/Bench Hour.ts",
            created_at=now, updated_at=now,
        )  # fmt: skip
        session.add(rec)
        await session.flush()
        rid = rec.id
    await db.dispose()
    return rid


async def _one_playback(
    http: aiohttp.ClientSession, tic: TicProcess, auth: dict[str, str], rid: int
) -> dict[str, float]:
    url = f"{tic.base}/tic-api/recordings/{rid}/hls.m3u8"
    cpu0 = tic.cpu_seconds()
    started = time.monotonic()
    async with http.get(url, headers=auth) as resp:
        text = await resp.text()
        assert resp.status == 200, text
    playlist_s = time.monotonic() - started
    first = next(line for line in text.splitlines() if line and not line.startswith("#"))
    async with http.get(f"{tic.base}/tic-api/recordings/{rid}/{first}", headers=auth) as resp:
        await resp.read()
        assert resp.status == 200
    first_segment_s = time.monotonic() - started
    while "#EXT-X-ENDLIST" not in text:
        await asyncio.sleep(0.5)
        async with http.get(url, headers=auth) as resp:
            text = await resp.text()
    done_s = time.monotonic() - started
    segments = len(re.findall(r"^hls/seg_", text, re.M))
    return {
        "playlist_s": playlist_s,
        "first_segment_s": first_segment_s,
        "remux_done_s": done_s,
        "tic_cpu_s": tic.cpu_seconds() - cpu0,
        "segments": segments,
    }


async def _hls_bench(
    http: aiohttp.ClientSession,
    tic: TicProcess,
    tvh: Any,
    auth: dict[str, str],
    channel_id: int,
    entry: str,
    ts: Path,
) -> dict[str, Any]:
    size = ts.stat().st_size
    out: dict[str, Any] = {}
    for label in ("tvh_relay", "local_dir"):
        if label == "local_dir":
            local = tic.work / "recordings"
            local.mkdir()
            os.symlink(ts, local / "Bench Hour.ts")
            async with http.patch(
                tic.base + "/tic-api/settings",
                json={"dvr_local_recordings_dir": str(local), "dvr_tvh_recordings_dir": "/recordings"},
                headers=auth,
            ) as resp:
                assert resp.status == 200, await resp.text()
        runs = [
            await _one_playback(http, tic, auth, await _new_recording(tic, channel_id, entry, size))
            for _ in range(3)
        ]
        out[f"hls_{label}_playlist_s_median"] = round(statistics.median(r["playlist_s"] for r in runs), 3)
        out[f"hls_{label}_first_segment_s_median"] = round(
            statistics.median(r["first_segment_s"] for r in runs), 3
        )
        out[f"hls_{label}_remux_done_s_median"] = round(statistics.median(r["remux_done_s"] for r in runs), 2)
        # TIC's CPU over the whole remux, including answering the bench's playlist polls (every 0.5 s).
        out[f"hls_{label}_tic_cpu_s_per_hour"] = round(statistics.median(r["tic_cpu_s"] for r in runs), 2)
        out[f"hls_{label}_segments"] = runs[0]["segments"]
    return out


async def _metric(http: aiohttp.ClientSession, tic: TicProcess, auth: dict[str, str], name: str) -> float:
    async with http.get(tic.base + "/metrics", headers=auth) as resp:
        text = await resp.text()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return float("nan")


async def _poll_bench(
    http: aiohttp.ClientSession, tic: TicProcess, auth: dict[str, str], channel_id: int
) -> dict[str, Any]:
    wake: list[float] = []
    wake_after_commit: list[float] = []
    post_s: list[float] = []
    version_lat: list[float] = []
    lag_samples: dict[str, list[float]] = {"hold": [], "wake": [], "other": []}
    phase = "other"
    sampling = True

    async def sample_lag() -> None:
        # TIC's monitor measures its loop every 250 ms; read its latest sample at the same pace.
        while sampling:
            value = await _metric(http, tic, auth, "tic_event_loop_lag_seconds")
            lag_samples[phase].append(value)
            await asyncio.sleep(0.25)

    sampler = asyncio.ensure_future(sample_lag())
    for round_no in range(3):
        async with http.get(tic.base + "/tic-api/recordings?limit=1", headers=auth) as resp:
            since = (await resp.json())["version"]
        done_at: list[float] = []

        async def waiter(since: int = since, done_at: list[float] = done_at) -> None:
            async with http.get(
                f"{tic.base}/tic-api/recordings/poll?since={since}&timeout=30", headers=auth
            ) as resp:
                body = await resp.json()
                assert resp.status == 200 and body["changed"], body
            done_at.append(time.monotonic())

        tasks = [asyncio.ensure_future(waiter()) for _ in range(POLL_CLIENTS)]
        await asyncio.sleep(1.0)
        phase = "hold"
        await asyncio.sleep(1.0)
        assert not done_at, "polls answered before any change"
        for _ in range(100):
            t = time.monotonic()
            async with http.get(tic.base + "/tic-api/version") as resp:
                await resp.read()
            version_lat.append(time.monotonic() - t)
            await asyncio.sleep(0.02)
        start = datetime.now(UTC) + timedelta(hours=2 + round_no)
        change = {
            "channel_id": channel_id,
            "start": start.isoformat(),
            "stop": (start + timedelta(minutes=30)).isoformat(),
        }
        phase = "wake"
        sent_at = time.monotonic()
        async with http.post(tic.base + "/tic-api/recordings", json=change, headers=auth) as resp:
            assert resp.status == 201, await resp.text()
        committed_at = time.monotonic()
        post_s.append(committed_at - sent_at)
        await asyncio.gather(*tasks)
        wake += [d - sent_at for d in done_at]
        wake_after_commit += [d - committed_at for d in done_at]
        await asyncio.sleep(1.0)
        phase = "other"
    sampling = False
    await sampler
    hold, burst = lag_samples["hold"], lag_samples["wake"]
    return {
        "poll_clients": POLL_CLIENTS,
        "poll_change_request_ms_median": round(statistics.median(post_s) * 1000, 1),
        "poll_all_answered_after_change_sent_ms_p50": round(_pct(wake, 50) * 1000, 1),
        "poll_all_answered_after_change_sent_ms_p99": round(_pct(wake, 99) * 1000, 1),
        "poll_answered_after_change_reply_ms_p99": round(_pct(wake_after_commit, 99) * 1000, 1),
        "poll_hold_version_latency_ms_p50": round(_pct(version_lat, 50) * 1000, 1),
        "poll_hold_version_latency_ms_p99": round(_pct(version_lat, 99) * 1000, 1),
        "poll_hold_tic_loop_lag_samples": len(hold),
        "poll_hold_tic_loop_lag_ms_p50": round(_pct(hold, 50) * 1000, 1),
        "poll_hold_tic_loop_lag_ms_p99": round(_pct(hold, 99) * 1000, 1),
        "poll_hold_tic_loop_lag_ms_max": round(max(hold, default=0.0) * 1000, 1),
        "poll_wake_tic_loop_lag_samples": len(burst),
        "poll_wake_tic_loop_lag_ms_max": round(max(burst, default=0.0) * 1000, 1),
    }
