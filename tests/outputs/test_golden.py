"""Golden files for the client outputs: combined.m3u, xmltv.xml and the HDHomeRun lineup.json, byte for byte.

A fixed small lineup (tests/outputs/conftest.py's Lineup) is rendered through the HTTP routes and
compared with the committed files in tests/outputs/golden/. Only what must vary between runs is
normalised first: the address clients reached TIC at (the request's scheme://host, written as
{BASE}) and the admin's stream key (written as {STREAM_KEY}). Programme times are fixed dates far
ahead, so nothing in the files depends on when the test runs (the guide keeps programmes that end
after now minus xmltv_past_days, with no upper bound).

When an output changes on purpose, rewrite the files and review the diff before committing:

    TIC_UPDATE_GOLDEN=1 TIC_TEST_DB=sqlite .venv/bin/pytest -q tests/outputs/test_golden.py

Besides the bytes, the files are checked the way clients read them: the M3U parses back with TIC's
own parser, the guide validates against the XMLTV DTD, and every tvg-id names a guide channel.
"""

from __future__ import annotations

import difflib
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete

from backend.playlists.m3u import M3uParser
from backend.playlists.models import Stream
from backend.settings import service as settings_service
from tests.conftest import ApiClient
from tests.outputs.conftest import Lineup, build_guide, parse_xmltv

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("TIC_UPDATE_GOLDEN") == "1"
#: Quart's test client reaches the app as http://localhost.
BASE = "http://localhost"
TVH_UUID = "5f1e0c2ab39d4e0f8a7c6b5d4e3f2a1b"
#: Fixed programme times, far enough ahead never to age out of the guide window.
DAY = datetime(2099, 6, 1, 18, 0, tzinfo=UTC)


def normalise(text: str, stream_key: str) -> str:
    assert stream_key and stream_key in text, "the output should carry the stream key"
    return text.replace(BASE, "{BASE}").replace(stream_key, "{STREAM_KEY}")


def compare(name: str, actual: str) -> None:
    """Compare with the golden file (a readable diff on failure), or rewrite it with TIC_UPDATE_GOLDEN=1."""
    path = GOLDEN / name
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_bytes(actual.encode("utf-8"))
    if not path.exists():
        pytest.fail(f"{path} is missing; create it with TIC_UPDATE_GOLDEN=1 and review it")
    expected = path.read_bytes().decode("utf-8")
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                actual.splitlines(keepends=True),
                fromfile=f"golden/{name}",
                tofile="rendered",
            )
        )
        pytest.fail(f"{name} differs from its golden file (TIC_UPDATE_GOLDEN=1 rewrites it):\n{diff}")


def programme(hours: float, length: float, title: str, **fields: Any) -> dict[str, Any]:
    start = DAY + timedelta(hours=hours)
    return {"start": start, "stop": start + timedelta(hours=length), "title": title, **fields}


async def fixed_lineup(lineup: Lineup, svc: Any) -> None:
    """Five channels covering what the outputs do: direct and TVHeadend URLs, provider headers, a
    guide offset, hostile text, a vanished source and a disabled channel."""
    async with svc.db.transaction() as session:
        await settings_service.update_settings(
            session, svc.keyring, {"output_stream_mode": "auto", "tvh_url": "http://tvh.invalid:9981"}
        )
    provider = await lineup.playlist("Provider", connection_limit=2)
    news = await lineup.stream(
        provider, "UK: News HD", "http://provider.invalid/live/u/p/101.ts", {"User-Agent": "Box/1.0"}
    )
    sport = await lineup.stream(provider, "UK: Sport", "http://provider.invalid/live/u/p/102.ts")
    gone = await lineup.stream(provider, "Gone", "http://provider.invalid/live/u/p/103.ts")
    guide = await lineup.guide("Guide")
    await lineup.guide_channel(guide, "News.uk", "News", icon="http://epg.invalid/news.png")
    await lineup.guide_channel(guide, "Sport.uk", "Sport")
    await lineup.programmes(
        guide,
        "News.uk",
        [
            programme(
                0,
                1,
                "The News",
                sub_title="Evening edition",
                description='Headlines, "weather" & <sport>',
                categories=["News"],
                episode_num="S03E07",
                season=3,
                episode=7,
                icon="http://epg.invalid/news-show.png?size=2&fmt=png",
                extra={"new": True, "ratings": [["VCHIP", "TV-G"]], "star_rating": "4/5"},
            ),
            programme(1, 0.5, "Weather"),
        ],
    )
    await lineup.programmes(guide, "Sport.uk", [programme(0, 2, "Match of the Day", categories=["Sport"])])
    await lineup.channel(
        1,
        "News",
        guide_id="News.uk",
        sources=[news],
        tags=["News"],
        logo_url="http://logos.invalid/news.png",
        epg=(guide, "News.uk"),
    )
    await lineup.channel(
        2,
        'Sport & "Friends" <Live>\nextra',
        guide_id="Sport.uk",
        sources=[sport],
        tags=["Sport", "Live"],
        epg=(guide, "Sport.uk"),
        offset=60,
    )
    await lineup.channel(10, "Published", sources=["http://manual.invalid/published.m3u8"], tvh_uuid=TVH_UUID)
    await lineup.channel(11, "Only a vanished source", sources=[gone])
    await lineup.channel(12, "Switched off", sources=["http://manual.invalid/off.ts"], enabled=False)
    # The stream behind channel 11 vanished in a refresh: the channel keeps no playable source.
    async with svc.db.transaction() as session:
        await session.execute(delete(Stream).where(Stream.id == gone.id))


async def fetch(client: Any, path: str) -> tuple[str, str]:
    resp = await client.get(path)
    body = await resp.get_data(as_text=True)
    assert resp.status_code == 200, body
    return resp.mimetype, body


async def test_outputs_match_their_golden_files(
    client: Any, admin: ApiClient, lineup: Lineup, stream_key: str, svc: Any
) -> None:
    await fixed_lineup(lineup, svc)
    task = await build_guide(admin)
    assert task["status"] == "succeeded", task

    m3u_type, m3u = await fetch(client, f"/tic-api/playlist/combined.m3u?stream_key={stream_key}")
    xml_type, xml = await fetch(client, f"/tic-api/epg/xmltv.xml?stream_key={stream_key}")
    hdhr_type, lineup_json = await fetch(client, f"/tic-api/hdhr_device/{stream_key}/combined/lineup.json")
    assert (m3u_type, xml_type, hdhr_type) == ("audio/x-mpegurl", "application/xml", "application/json")

    compare("combined.m3u", normalise(m3u, stream_key))
    # The guide names no TIC address (public_base_url is unset) and no key; nothing to normalise.
    compare("xmltv.xml", xml)
    compare("lineup.json", normalise(lineup_json, stream_key))

    # As clients read them: TIC's own parser, the XMLTV DTD, and tvg-id = a guide channel id.
    parser = M3uParser()
    entries = list(parser.feed_bytes([m3u.encode()]))
    assert parser.skipped_total == 0, parser.skipped
    root = parse_xmltv(xml.encode())
    guide_ids = [c.get("id") for c in root.findall("channel")]
    assert [e.tvg_id for e in entries] == ["News.uk", "Sport.uk", "tic-10"]
    assert set(guide_ids) >= {e.tvg_id for e in entries}
    hdhr = json.loads(lineup_json)
    assert [(c["GuideNumber"], c["URL"]) for c in hdhr] == [(e.tvg_chno, e.url) for e in entries]
