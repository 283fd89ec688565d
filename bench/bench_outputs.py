"""Client outputs at scale against a real TIC process: guide build time, first byte and total, peak RSS."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import insert

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("TIC_SHARED_DIR", REPO.parent / "shared"))
GEN_CORPUS = SHARED / "tools" / "gen_corpus.py"
ENTRIES = 100_000
CHANNELS = 5_000
GUIDE_CHANNELS = 2_000
GUIDE_DAYS = 7
CLIENTS = 20
INSERT_CHUNK = 5_000

log = logging.getLogger("bench.outputs")

# Programme fields stored in their own columns; everything else the parser read goes to `extra`,
# the way the EPG importer keeps it.
_COLUMN_FIELDS = {
    "channel_id", "start", "stop", "title", "sub_title", "desc", "categories", "episode_num",
    "season", "episode", "icon", "line_no",
}  # fmt: skip


def run() -> dict[str, Any]:
    """Generate the corpus, start TIC, fill the database, build the guide, then measure the client URLs."""
    sys.path.insert(0, str(REPO))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="tic-bench-outputs-"))
    try:
        return asyncio.run(_run(work))
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --- TIC as a real process ------------------------------------------------------------------------------


class TicProcess:
    def __init__(self, work: Path, database_url: str) -> None:
        self.data_dir = work / "data"
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.database_url = database_url
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        env = {
            **os.environ,
            "TIC_DATA_DIR": str(self.data_dir),
            "DATABASE_URL": self.database_url,
            "TIC_PORT": str(self.port),
            "TIC_LOG_LEVEL": "WARNING",
        }
        self._log = open(self.data_dir.parent / "tic.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "run.py"], cwd=REPO, env=env, stdout=self._log, stderr=self._log
        )
        async with aiohttp.ClientSession() as http:
            for _ in range(600):
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

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                log.warning("TIC did not stop within 60 s of SIGTERM; killing it")
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()

    def status(self, field: str, pid: int | None = None) -> int:
        """A /proc/<pid>/status memory figure (VmRSS, VmHWM) in KiB."""
        target = pid or (self.proc.pid if self.proc else 0)
        for line in Path(f"/proc/{target}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise KeyError(field)

    def cpu_seconds(self) -> float:
        """User + system CPU time TIC's main process has used (its worker children not included)."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def reset_peak(self) -> None:
        """Writing 5 to clear_refs resets VmHWM to the current RSS (Linux 4.0+)."""
        assert self.proc is not None
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")

    def children(self) -> list[int]:
        assert self.proc is not None
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return [int(p) for p in path.read_text().split()] if path.exists() else []


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _bootstrap(http: aiohttp.ClientSession, base: str) -> tuple[str, str]:
    """First admin, an API token and the admin's stream key."""
    creds = {"username": "admin", "password": "bench-password-1"}
    async with http.post(base + "/tic-api/setup", json=creds) as resp:
        assert resp.status == 201, await resp.text()
    async with http.post(base + "/tic-api/auth/login", json=creds) as resp:
        csrf = (await resp.json())["csrf_token"]
    async with http.post(
        base + "/tic-api/auth/tokens", json={"name": "bench"}, headers={"X-CSRF-Token": csrf}
    ) as r:
        token = (await r.json())["token"]
    auth = {"Authorization": f"Bearer {token}"}
    async with http.get(base + "/tic-api/users/self/stream-key", headers=auth) as resp:
        key = (await resp.json())["stream_key"]
    return token, key


# --- data ------------------------------------------------------------------------------------------------


def _generate(work: Path) -> tuple[Path, Path, dict[str, float]]:
    """The playlist and a guide starting today (TIC_BENCH_CORPUS_DIR keeps them between runs)."""
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    keep = os.environ.get("TIC_BENCH_CORPUS_DIR")
    where = Path(keep) if keep else work
    where.mkdir(parents=True, exist_ok=True)
    m3u, xml = where / f"m3u-{ENTRIES}.m3u", where / f"xmltv-{GUIDE_CHANNELS}x{GUIDE_DAYS}-{today}.xml"
    timings: dict[str, float] = {}
    for kind, args in (
        ("m3u", ["m3u", "--entries", str(ENTRIES), "--out", str(m3u)]),
        ("xmltv", ["xmltv", "--channels", str(GUIDE_CHANNELS), "--days", str(GUIDE_DAYS), "--start", today,
                   "--out", str(xml)]),
    ):  # fmt: skip
        if (m3u if kind == "m3u" else xml).exists():
            continue
        started = time.monotonic()
        subprocess.run(
            [sys.executable, str(GEN_CORPUS), *args, "--seed", "1"], check=True, capture_output=True
        )
        timings[f"generate_{kind}_s"] = round(time.monotonic() - started, 1)
    return m3u, xml, timings


async def _populate(database_url: str, m3u: Path, xml: Path) -> dict[str, Any]:
    """5,000 channels from the playlist's first live entries, mapped by tvg-id to the guide, inserted directly."""
    from backend.app import load_domains
    from backend.channels.models import Channel, ChannelSource, ChannelTag, channel_tag_link
    from backend.db import Database
    from backend.epg.models import EpgChannel, EpgSource, Programme
    from backend.epg.parser import XmltvChannel, iter_xmltv
    from backend.playlists.m3u import parse_m3u_file
    from backend.playlists.models import PlaylistSource, Stream

    load_domains()
    db = Database(database_url)
    now = datetime.now(UTC)
    started = time.monotonic()
    _, entries = parse_m3u_file(m3u)
    live = []
    for entry in entries:
        if not entry.is_vod:
            live.append(entry)
            if len(live) == CHANNELS:
                break
    async with db.transaction() as session:
        playlist = PlaylistSource(
            name="Bench", kind="m3u_file", connection_limit=4, headers={}, created_at=now, updated_at=now
        )
        guide = EpgSource(name="Bench guide", kind="xmltv_file", created_at=now, updated_at=now)
        session.add_all([playlist, guide])
        await session.flush()
        playlist_id, guide_id = playlist.id, guide.id
        stream_rows = [
            {
                "source_id": playlist_id, "stream_key": f"bench:{i}", "name": entry.name, "url": entry.url,
                "tvg_id": entry.tvg_id, "group_title": entry.group, "headers": entry.headers or None,
                "first_seen_at": now, "updated_at": now,
            }
            for i, entry in enumerate(live)
        ]  # fmt: skip
        stream_ids: list[int] = []
        for chunk in range(0, len(stream_rows), 1000):
            result = await session.execute(
                insert(Stream).returning(Stream.id, sort_by_parameter_order=True),
                stream_rows[chunk : chunk + 1000],
            )
            stream_ids.extend(result.scalars().all())
    guide_ids: dict[str, str] = {}
    programme_rows: list[dict[str, Any]] = []
    programmes = 0
    # Core inserts on a plain connection: the ORM's bulk path costs more than the parse here.
    async with db.engine.begin() as conn:
        for record in iter_xmltv(xml):
            if isinstance(record, XmltvChannel):
                guide_ids[record.id.lower()] = record.id
                await conn.execute(
                    EpgChannel.__table__.insert(),
                    [{"source_id": guide_id, "xmltv_id": record.id, "display_names": record.display_names,
                      "icon": record.icon, "number": record.number, "programme_count": 0}],
                )  # fmt: skip
                continue
            programme_rows.append({
                "source_id": guide_id, "xmltv_channel_id": record.channel_id, "start": record.start,
                "stop": record.stop, "title": record.title, "sub_title": record.sub_title,
                "description": record.desc, "categories": record.categories or None,
                "episode_num": record.episode_num, "season": record.season, "episode": record.episode,
                "icon": record.icon, "extra": _extra(record),
            })  # fmt: skip
            if len(programme_rows) >= INSERT_CHUNK:
                await conn.execute(Programme.__table__.insert(), programme_rows)
                programmes += len(programme_rows)
                programme_rows = []
        if programme_rows:
            await conn.execute(Programme.__table__.insert(), programme_rows)
            programmes += len(programme_rows)
    mapped = 0
    async with db.transaction() as session:
        tags: dict[str, int] = {}
        used_ids: set[str] = set()
        channel_rows, source_rows, link_rows = [], [], []
        for i, entry in enumerate(live):
            epg_id = guide_ids.get((entry.tvg_id or "").lower())
            mapped += epg_id is not None
            wanted = entry.tvg_id or f"tic-{i + 1}"
            guide = wanted if wanted not in used_ids else f"{wanted}-{i + 1}"
            used_ids.add(guide)
            channel_rows.append({
                "name": entry.name, "number": i + 1, "enabled": True, "logo_url": entry.tvg_logo,
                "epg_source_id": guide_id if epg_id else None, "epg_channel_id": epg_id,
                "guide_offset_minutes": 0, "guide_id": guide, "created_at": now, "updated_at": now,
            })  # fmt: skip
            if entry.group and entry.group not in tags:
                result = await session.execute(
                    insert(ChannelTag).returning(ChannelTag.id), [{"name": entry.group}]
                )
                tags[entry.group] = result.scalar_one()
        ids = []
        for chunk in range(0, len(channel_rows), 1000):
            result = await session.execute(
                insert(Channel).returning(Channel.id, sort_by_parameter_order=True),
                channel_rows[chunk : chunk + 1000],
            )
            ids.extend(result.scalars().all())
        for channel_id, entry, stream_id in zip(ids, live, stream_ids, strict=True):
            source_rows.append({
                "channel_id": channel_id, "position": 0, "stream_id": stream_id,
                "playlist_source_id": playlist_id, "label": entry.name, "enabled": True, "created_at": now,
            })  # fmt: skip
            if entry.group:
                link_rows.append({"channel_id": channel_id, "tag_id": tags[entry.group]})
        await session.execute(insert(ChannelSource), source_rows)
        await session.execute(channel_tag_link.insert(), link_rows)
    await db.dispose()
    return {
        "channels": len(live),
        "channels_mapped_to_guide": mapped,
        "guide_programmes_stored": programmes,
        "tags": len(tags),
        "populate_s": round(time.monotonic() - started, 1),
    }


def _extra(record: Any) -> dict[str, Any] | None:
    """What the EPG importer keeps in Programme.extra: its own function when present, else the same idea."""
    try:
        from backend.epg.loader import programme_extra
    except ImportError:
        from backend.epg.parser import programme_to_json

        row = programme_to_json(record)
        return {k: v for k, v in row.items() if k not in _COLUMN_FIELDS} or None
    extra: dict[str, Any] | None = programme_extra(record)
    return extra


# --- measuring -------------------------------------------------------------------------------------------


async def _fetch(http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> tuple[float, float, int]:
    """(seconds to the first body byte, seconds to the last, bytes) for one GET."""
    started = time.perf_counter()
    async with http.get(url, headers=headers) as resp:
        assert resp.status == 200, f"{resp.status} for {url.split('?')[0]}"
        first = await resp.content.readany()
        ttfb = time.perf_counter() - started
        size = len(first)
        async for chunk in resp.content.iter_chunked(1 << 20):
            size += len(chunk)
    return ttfb, time.perf_counter() - started, size


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return round(ordered[index] * 1000, 1)


async def _measure(url: str, headers: dict[str, str], clients: int, rounds: int) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False, timeout=timeout) as http:
        results = []
        for _ in range(rounds):
            results += await asyncio.gather(*(_fetch(http, url, headers) for _ in range(clients)))
    ttfb = [r[0] for r in results]
    total = [r[1] for r in results]
    return {
        "requests": len(results),
        "bytes": results[0][2],
        "ttfb_p50_ms": _ms(ttfb, 0.5),
        "ttfb_p95_ms": _ms(ttfb, 0.95),
        "total_p50_ms": _ms(total, 0.5),
        "total_p95_ms": _ms(total, 0.95),
        "total_median_s": round(statistics.median(total), 3),
    }


def _rename_every_channel(db_path: Path, round_no: int) -> None:
    """Change every channel's name, behind TIC's back, so no remembered M3U entry can be used."""
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE channel SET name = rtrim(name, ' 0123456789') || ' ' || ?", (str(round_no),))


async def _after_changes(
    tic: TicProcess, db_path: Path, url: str, headers: dict[str, str], rounds: int
) -> dict[str, Any]:
    """1 client, each request right after the whole lineup changed: the cold render (every entry formatted)."""
    timings: list[dict[str, Any]] = []
    cpu = 0.0
    for round_no in range(rounds):
        await asyncio.to_thread(_rename_every_channel, db_path, round_no)
        before = tic.cpu_seconds()
        timings.append(await _measure(url, headers, 1, 1))
        cpu += tic.cpu_seconds() - before
    return {
        "requests": rounds,
        "total_p50_ms": statistics.median(t["total_p50_ms"] for t in timings),
        "ttfb_p50_ms": statistics.median(t["ttfb_p50_ms"] for t in timings),
        "tic_cpu_ms_per_request": round(cpu * 1000 / rounds, 1),
    }


async def _build_guide(tic: TicProcess, token: str) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {token}"}
    peak_child_kib = 0
    async with aiohttp.ClientSession() as http:
        started = time.monotonic()
        async with http.post(tic.base + "/tic-api/outputs/xmltv/rebuild", headers=auth) as resp:
            task_id = (await resp.json())["task_id"]
        while True:
            for pid in tic.children():
                try:
                    peak_child_kib = max(peak_child_kib, tic.status("VmHWM", pid))
                except (FileNotFoundError, KeyError, ProcessLookupError):
                    continue
            async with http.get(f"{tic.base}/tic-api/tasks/{task_id}", headers=auth) as resp:
                task = await resp.json()
            if task["status"] not in ("queued", "running"):
                break
            await asyncio.sleep(0.1)
        wall = time.monotonic() - started
    assert task["status"] == "succeeded", task
    async with (
        aiohttp.ClientSession() as http,
        http.get(tic.base + "/tic-api/outputs", headers=auth) as resp,
    ):
        meta = (await resp.json())["xmltv_file"]
    return {
        "build_wall_s": round(wall, 1),
        "build_in_child_s": meta["seconds"],
        "xml_bytes": meta["bytes"],
        "gz_bytes": meta["gz_bytes"],
        "guide_channels_written": meta["channels"],
        "programmes_written": meta["programmes"],
        "builder_child_peak_rss_mib": round(peak_child_kib / 1024, 1),
    }


async def _rss_while(tic: TicProcess, action: Callable[[], Awaitable[Any]]) -> float:
    """TIC's peak RSS (MiB) while `action` runs, counted from a peak reset just before it."""
    tic.reset_peak()
    await action()
    return round(tic.status("VmHWM") / 1024, 1)


async def _run(work: Path) -> dict[str, Any]:
    results: dict[str, Any] = {"method": METHOD, "load_average_at_start": os.getloadavg()[0]}
    m3u, xml, timings = await asyncio.to_thread(_generate, work)
    results.update(timings)
    (work / "data").mkdir()
    database_url = f"sqlite+aiosqlite:///{work / 'data' / 'tic.db'}"
    tic = TicProcess(work, database_url)
    await tic.start()
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            token, key = await _bootstrap(http, tic.base)
        log.info("populating the database")
        results.update(await _populate(database_url, m3u, xml))
        log.info("building the guide")
        results.update(await _build_guide(tic, token))
        plain = {"Accept-Encoding": "identity"}
        xml_url = f"{tic.base}/tic-api/epg/xmltv.xml?stream_key={key}"
        # Memory first, before the other measurements grow the heap: the XMLTV is served from a
        # file in chunks, so 20 downloads should cost about what one does.
        results["tic_rss_before_downloads_mib"] = round(tic.status("VmRSS") / 1024, 1)
        results["tic_peak_rss_mib_1_xmltv_download"] = await _rss_while(
            tic, lambda: _measure(xml_url, plain, 1, 1)
        )
        results[f"tic_peak_rss_mib_{CLIENTS}_xmltv_downloads"] = await _rss_while(
            tic, lambda: _measure(xml_url, plain, CLIENTS, 1)
        )
        urls = {
            "combined_m3u": (f"{tic.base}/tic-api/playlist/combined.m3u?stream_key={key}", plain, 30, 5),
            "lineup_json": (f"{tic.base}/tic-api/hdhr_device/{key}/combined/lineup.json", plain, 30, 5),
            "xmltv_xml": (xml_url, plain, 3, 1),
            "xmltv_xml_gzip_encoded": (xml_url, {"Accept-Encoding": "gzip"}, 5, 2),
            "xmltv_xml_gz": (f"{tic.base}/tic-api/epg/xmltv.xml.gz?stream_key={key}", plain, 5, 2),
        }
        for name, (url, headers, single_runs, concurrent_rounds) in urls.items():
            log.info("measuring %s", name)
            cpu_before = tic.cpu_seconds()
            one = await _measure(url, headers, 1, single_runs)
            # Server CPU per request is what the latency would be on an otherwise idle machine, minus I/O.
            one["tic_cpu_ms_per_request"] = round((tic.cpu_seconds() - cpu_before) * 1000 / single_runs, 1)
            tic.reset_peak()
            many = await _measure(url, headers, CLIENTS, concurrent_rounds)
            many["tic_peak_rss_mib"] = round(tic.status("VmHWM") / 1024, 1)
            results[name] = {"1_client": one, f"{CLIENTS}_clients": many}
        log.info("measuring combined_m3u after each lineup change")
        results["combined_m3u_after_each_change"] = await _after_changes(
            tic, work / "data" / "tic.db", urls["combined_m3u"][0], plain, 10
        )
        results["load_average_at_end"] = os.getloadavg()[0]
    finally:
        tic.stop()
    return results


METHOD = (
    f"gen_corpus seed 1: {ENTRIES} M3U entries and a {GUIDE_CHANNELS}x{GUIDE_DAYS}-day guide starting today. "
    f"TIC runs as a real process (run.py, SQLite in a temp data dir, one Hypercorn worker). The first "
    f"{CHANNELS} live entries become channels (one source each, group -> tag), mapped to the guide when "
    "their tvg-id matches a guide channel id case-insensitively; streams, guide channels and programmes "
    "are inserted directly (parsed with TIC's own parsers, extra fields kept like the EPG importer). The "
    "guide is built through POST /tic-api/outputs/xmltv/rebuild (the build_xmltv job in a child process). "
    "Clients are aiohttp on the same 2-core machine without decompression; TTFB = first body byte. "
    f"1 client = sequential requests; {CLIENTS} clients = rounds of {CLIENTS} simultaneous requests. "
    "Peak RSS = VmHWM of the TIC process after resetting it via /proc/<pid>/clear_refs. "
    "combined_m3u_after_each_change: every channel renamed straight in the database before each request, "
    "so no remembered entry is reused (the cold render)."
)
