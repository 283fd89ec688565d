"""Lineup at scale: 5,000 channels from groups of a 100k playlist, and auto-matching them to a 2,000-channel guide."""

from __future__ import annotations

import asyncio
import gc
import hashlib
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

from sqlalchemy import insert, select

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("TIC_SHARED_DIR", REPO.parent / "shared"))
GEN_CORPUS = SHARED / "tools" / "gen_corpus.py"
CORPUS = SHARED / "corpus"
ENTRIES = 100_000
CHANNELS = 5_000
GUIDE_CHANNELS = 2_000
RUNS = 3
PASSWORD = "bench-password-123"

#: Real playlist + guide pairs from ../shared/corpus/SOURCES.md (their tvg-ids name guide channels).
CORPUS_PAIRS = [
    ("freetv-iptv__playlist.m3u8", "iptv-org-epg__guide_programme-tv.net_2021.xml"),
    ("freetv-iptv__playlist.m3u8", "iptv-org-epg__guide_ontvtonight.com_2021.xml"),
    ("freetv-iptv__playlist.m3u8", "iptv-org-epg__guide_tvplus.com.tr_2024.xml"),
    ("freetv-iptv__playlist_france.m3u8", "iptv-org-epg__guide_programme-tv.net_2021.xml"),
]

log = logging.getLogger("bench.channels")


def run() -> dict[str, Any]:
    """Generate the corpus, fill a fresh TIC database, then time the lineup work through the API."""
    sys.path.insert(0, str(REPO))
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="tic-bench-channels-"))
    try:
        figures = asyncio.run(_run(work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    figures.update(corpus_pairs())
    return figures


def _generate(work: Path) -> tuple[Path, Path]:
    m3u, xml = work / "big.m3u", work / "guide.xml"
    for args, out in (
        (["m3u", "--entries", str(ENTRIES)], m3u),
        (["xmltv", "--channels", str(GUIDE_CHANNELS), "--days", "1"], xml),
    ):
        subprocess.run(
            [sys.executable, str(GEN_CORPUS), *args, "--seed", "1", "--out", str(out)],
            check=True,
            capture_output=True,
        )
    return m3u, xml


def _truth(entries: list[Any], guide_ids: list[str]) -> list[str | None]:
    """The guide channel each entry really is: its tvg-id (any case), else the channel its logo names.

    gen_corpus gives every channel a logo /logos/<id lower-cased, dots as dashes>.png, and the
    playlist entries whose tvg-id was blanked keep that logo, so the truth is known for all of them.
    """
    by_id = {g.casefold(): g for g in guide_ids}
    by_slug = {g.lower().replace(".", "-"): g for g in guide_ids}
    out: list[str | None] = []
    for entry in entries:
        if entry.tvg_id:
            out.append(by_id.get(entry.tvg_id.casefold()))
        elif entry.tvg_logo and "/logos/" in entry.tvg_logo:
            out.append(by_slug.get(entry.tvg_logo.rsplit("/", 1)[-1].removesuffix(".png")))
        else:
            out.append(None)
    return out


def precision_recall(applied: dict[Any, str], truth: dict[Any, str | None]) -> tuple[float, float]:
    correct = sum(1 for key, xmltv_id in applied.items() if truth.get(key) == xmltv_id)
    relevant = sum(1 for v in truth.values() if v)
    return round(correct / max(1, len(applied)), 4), round(correct / max(1, relevant), 4)


async def _fill(svc: Any, m3u: Path, xml: Path) -> tuple[list[Any], list[int], list[str], int]:
    """Streams and guide channels written the way the importers write them."""
    from backend.db import utcnow
    from backend.epg.models import EpgChannel, EpgSource
    from backend.epg.parser import XmltvChannel, iter_xmltv
    from backend.playlists.m3u import parse_m3u_file
    from backend.playlists.models import PlaylistSource, Stream

    _parser, parsed = parse_m3u_file(m3u)
    entries = list(parsed)
    now = utcnow()
    async with svc.db.transaction() as session:
        playlist = PlaylistSource(
            name="Generated", kind="m3u_file", headers={}, created_at=now, updated_at=now
        )
        guide = EpgSource(name="Generated guide", kind="xmltv_file", created_at=now, updated_at=now)
        session.add_all([playlist, guide])
        await session.flush()
        rows = [
            {
                "source_id": playlist.id,
                "stream_key": f"{playlist.id}:url:{hashlib.sha1(f'{e.url}#{i}'.encode()).hexdigest()}",
                "name": e.name,
                "url": e.url,
                "tvg_id": e.tvg_id,
                "tvg_name": e.tvg_name,
                "tvg_logo": e.tvg_logo,
                "group_title": e.group,
                "is_vod": e.is_vod,
                "extra": {"attrs": e.attrs},
                "line_no": e.line_no,
                "first_seen_at": now,
                "updated_at": now,
            }
            for i, e in enumerate(entries)
        ]
        for start in range(0, len(rows), 5000):
            await session.execute(insert(Stream), rows[start : start + 5000])
        ids = list((await session.execute(select(Stream.id).order_by(Stream.line_no))).scalars())
        guide_rows = [
            {
                "source_id": guide.id,
                "xmltv_id": r.id,
                "display_names": [list(d) for d in r.display_names],
                "icon": r.icon,
                "programme_count": 24,
            }
            for r in iter_xmltv(xml)
            if isinstance(r, XmltvChannel)
        ]
        await session.execute(insert(EpgChannel), guide_rows)
    return entries, ids, [g["xmltv_id"] for g in guide_rows], playlist.id


class LoopLag:
    """The worst delay of a 10 ms ticker while something runs: does the loop stay free?"""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            self.worst = max(self.worst, time.perf_counter() - before - 0.01)

    def __enter__(self) -> LoopLag:
        self._task = asyncio.get_running_loop().create_task(self._tick())
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._task is not None
        self._task.cancel()


async def _run(work: Path) -> dict[str, Any]:
    from backend.app import create_app

    m3u, xml = _generate(work)
    app = create_app({"data_dir": work / "data", "database_url": f"sqlite+aiosqlite:///{work / 'tic.db'}"})
    figures: dict[str, Any] = {"database": "sqlite"}
    async with app.test_app():
        # As run.py does once the app has started: start-up objects leave the collector's view.
        gc.collect()
        gc.freeze()
        svc = app.extensions["tic"]
        svc.broker.wake_enabled = False  # follow-up jobs stay queued; only the lineup work is timed
        client = app.test_client()
        await client.post("/tic-api/setup", json={"username": "bench", "password": PASSWORD})
        login = await (
            await client.post("/tic-api/auth/login", json={"username": "bench", "password": PASSWORD})
        ).get_json()
        headers = {"X-CSRF-Token": login["csrf_token"]}

        async def call(path: str, body: Any, lag: LoopLag | None = None) -> tuple[float, Any]:
            started = time.perf_counter()
            if lag is None:
                resp = await client.post(path, json=body, headers=headers)
            else:
                # Only the server's work counts as lag, not this client parsing the answer afterwards.
                with lag:
                    resp = await client.post(path, json=body, headers=headers)
            elapsed = time.perf_counter() - started
            payload = await resp.get_json()
            if resp.status_code >= 400:
                raise RuntimeError(f"{path}: {resp.status_code} {payload}")
            return elapsed, payload

        started = time.perf_counter()
        entries, stream_ids, guide_ids, playlist_id = await _fill(svc, m3u, xml)
        figures["fill_database_s"] = round(time.perf_counter() - started, 1)

        # Groups in playlist order until they hold about 5,000 live streams.
        groups: list[str] = []
        sizes: dict[str, int] = {}
        for e in entries:
            if not e.is_vod and e.group:
                sizes[e.group] = sizes.get(e.group, 0) + 1
        for group in dict.fromkeys(e.group for e in entries if not e.is_vod and e.group):
            if sum(sizes[g] for g in groups) >= CHANNELS:
                break
            groups.append(group)
        # The first 5,000 live streams: the guide holds the first 2,000 distinct channels of the playlist.
        live = [(sid, e) for sid, e in zip(stream_ids, entries, strict=True) if not e.is_vod][:CHANNELS]
        live_ids = [sid for sid, _e in live]
        truth_by_entry = _truth([e for _sid, e in live], guide_ids)
        # The parsed playlist is the bench's, not TIC's: drop it so garbage collection pauses are TIC's own.
        del entries, live, stream_ids
        gc.collect()
        timings = []
        for _ in range(RUNS):
            elapsed, made = await call(
                "/tic-api/channels/bulk/from-groups",
                {"playlist_id": playlist_id, "groups": groups, "start_number": 1},
            )
            timings.append(elapsed)
            await call("/tic-api/channels/bulk/delete", {"ids": made["channel_ids"]})
        figures["from_groups_channels"] = made["created"]
        figures["from_groups_groups"] = len(groups)
        figures["from_groups_s_median"] = round(statistics.median(timings), 3)

        _t, made = await call(
            "/tic-api/channels/bulk/from-streams",
            {"stream_ids": live_ids, "start_number": 1},
        )
        truth = dict(zip(made["channel_ids"], truth_by_entry, strict=True))
        timings, lags = [], []
        for _ in range(RUNS):
            lag = LoopLag()
            elapsed, result = await call("/tic-api/channels/epg-match/preview", {"all_unmapped": True}, lag)
            timings.append(elapsed)
            lags.append(lag.worst)
        applied = {
            i["channel_id"]: i["suggestion"]["epg_channel_id"]
            for i in result["items"]
            if i["suggestion"] and i["suggestion"]["apply"]
        }
        precision, recall = precision_recall(applied, truth)
        # The same ticker while the loop has nothing to do: what the machine alone adds (other load).
        idle = LoopLag()
        with idle:
            await asyncio.sleep(statistics.median(timings))
        figures |= {
            "match_channels": result["total"],
            "match_guide_channels": result["guide_channels"],
            "match_request_s_median": round(statistics.median(timings), 3),
            "match_loop_lag_ms_max": round(max(lags) * 1000, 1),
            "idle_loop_lag_ms_max": round(idle.worst * 1000, 1),
            "match_applied": len(applied),
            "match_precision": precision,
            "match_recall": recall,
            "match_by_tvg_id": sum(
                1
                for i in result["items"]
                if i["suggestion"] and i["suggestion"]["method"].startswith("tvg_id")
            ),
        }
        _t, _r = await call("/tic-api/channels/bulk/delete", {"ids": made["channel_ids"]})

        # The same 5,000 channels by names alone: sources whose streams carry no tvg-id.
        from backend.playlists.models import Stream

        async with svc.db.transaction() as session:
            await session.execute(
                Stream.__table__.update().where(Stream.id.in_(live_ids)).values(tvg_id=None)
            )
        _t, made = await call(
            "/tic-api/channels/bulk/from-streams",
            {"stream_ids": live_ids, "start_number": 1},
        )
        truth = dict(zip(made["channel_ids"], truth_by_entry, strict=True))
        elapsed, result = await call("/tic-api/channels/epg-match/preview", {"all_unmapped": True})
        applied = {
            i["channel_id"]: i["suggestion"]["epg_channel_id"]
            for i in result["items"]
            if i["suggestion"] and i["suggestion"]["apply"]
        }
        precision, recall = precision_recall(applied, truth)
        figures |= {
            "names_only_request_s": round(elapsed, 3),
            "names_only_applied": len(applied),
            "names_only_precision": precision,
            "names_only_recall": recall,
        }
    return figures


def corpus_pairs() -> dict[str, Any]:
    """Precision and recall on the real pairs, against tvg-id truth, with and without the tvg-ids."""
    from backend.channels.matching import match_channels
    from backend.epg.parser import XmltvChannel, iter_xmltv
    from backend.playlists.m3u import parse_m3u_file

    out: dict[str, Any] = {}
    for playlist, guide_file in CORPUS_PAIRS:
        _parser, parsed = parse_m3u_file(CORPUS / "m3u" / playlist)
        entries = [e for e in parsed if not e.is_vod]
        guide = [
            {
                "epg_id": 1,
                "xmltv_id": r.id,
                "names": [t for t, _l in r.display_names],
                "icon": r.icon,
                "programmes": 1,
            }
            for r in iter_xmltv(CORPUS / "xmltv" / guide_file)
            if isinstance(r, XmltvChannel)
        ]
        ids = {g["xmltv_id"].casefold(): g["xmltv_id"] for g in guide}
        # Truth is known only for entries with a tvg-id; the others are left out of the score.
        known = {i: ids.get(e.tvg_id.casefold()) for i, e in enumerate(entries) if e.tvg_id}
        label = (
            f"{playlist.split('__')[1].split('.')[0]}+{guide_file.split('guide_')[1].removesuffix('.xml')}"
        )
        for with_ids in (True, False):
            channels = [
                {
                    "id": i,
                    "names": [e.name, *([e.tvg_name] if e.tvg_name else [])],
                    "tvg_ids": [e.tvg_id] if e.tvg_id and with_ids else [],
                    "hints": [e.group or ""],
                    "countries": [e.attrs["tvg-country"]] if e.attrs.get("tvg-country") else [],
                    "logo": e.tvg_logo,
                }
                for i, e in enumerate(entries)
            ]
            results = match_channels(channels, guide, 90)
            applied = {
                r["channel_id"]: r["suggestion"]["epg_channel_id"]
                for r in results
                if r["suggestion"] and r["suggestion"]["apply"] and r["channel_id"] in known
            }
            precision, recall = precision_recall(applied, known)
            mode = "ids" if with_ids else "names"
            out[f"corpus_{label}_{mode}"] = (
                f"P={precision} R={recall} (applied {len(applied)}, relevant {sum(1 for v in known.values() if v)})"
            )
    return out
