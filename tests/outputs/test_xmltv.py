"""The XMLTV guide file: built by the job, valid against the XMLTV DTD, every field, served with HTTP caching."""

from __future__ import annotations

import gzip
from datetime import timedelta
from email.utils import format_datetime
from typing import Any

from sqlalchemy import delete, update

from backend.channels.models import Channel
from backend.epg.models import EpgChannel
from backend.playlists.m3u import M3uParser
from backend.settings import service as settings_service
from tests.conftest import ApiClient
from tests.outputs.conftest import Lineup, build_guide, now, parse_xmltv, window

FULL_EXTRA = {
    "titles": [["Les Nouvelles", "fr"], ["The News", "en"]],
    "sub_titles": [["Episode 5", "en"]],
    "descs": [['Tonight: <big> & "small" stories', "en"], ["Ce soir", "fr"]],
    "credits": {"actor": ["Ann Actor", "Bob Actor"], "director": ["Dee Rector"], "presenter": ["Pat"]},
    "actor_roles": [["Ann Actor", "Herself"]],
    "date": "2024",
    "keywords": ["politics"],
    "length_seconds": 3600,
    "country": "GB",
    "episode_systems": [["dd_progid", "EP123.45"], ["onscreen", "S02E05"]],
    "previously_shown": True,
    "previously_shown_start": "2024-01-02T03:04:05Z",
    "premiere": True,
    "new": True,
    "live": True,
    "ratings": [["VCHIP", "TV-PG"]],
    "star_rating": "3/5",
}


async def get(client: Any, path: str, key: str, **headers: str) -> Any:
    return await client.get(f"{path}?stream_key={key}", headers=headers)


async def test_guide_is_valid_xmltv_with_every_stored_field(
    client: Any, admin: ApiClient, lineup: Lineup, stream_key: str, svc: Any
) -> None:
    guide = await lineup.guide()
    await lineup.guide_channel(guide, "news.uk", "News UK", icon="http://epg.invalid/news.png")
    await lineup.guide_channel(guide, "gone.uk", "Gone")
    start = now().replace(minute=0, second=0)
    await lineup.programmes(
        guide,
        "news.uk",
        [
            {
                "start": start,
                "stop": start + timedelta(hours=1),
                "title": "The News",
                "sub_title": "Episode 5",
                "description": 'Tonight: <big> & "small" stories',
                "categories": ["News", "Current affairs"],
                "episode_num": "S02E05",
                "season": 2,
                "episode": 5,
                "icon": "http://epg.invalid/show.png?a=1&b=2",
                "extra": FULL_EXTRA,
            },
            # Old enough to be outside the guide window (xmltv_past_days = 1).
            {"start": start - timedelta(days=3), "stop": start - timedelta(days=3, hours=-1), "title": "Old"},
            {
                "start": start + timedelta(hours=1),
                "stop": start + timedelta(hours=2),
                "title": "Bad \x01\x0b char",
            },
        ],
    )
    await lineup.programmes(guide, "other.uk", window(2))
    await lineup.channel(1, 'News <&> "One"', guide_id="news.uk", epg=(guide, "news.uk"), offset=60)
    await lineup.channel(2, "News again", guide_id="news.two", epg=(guide, "news.uk"))
    await lineup.channel(3, "Unmapped", logo_url="http://l.invalid/3.png")
    await lineup.channel(4, "Vanished guide channel", epg=(guide, "gone.uk"))
    await lineup.channel(5, "Disabled", epg=(guide, "other.uk"), enabled=False)
    async with svc.db.transaction() as session:
        await session.execute(delete(EpgChannel).where(EpgChannel.xmltv_id == "gone.uk"))

    task = await build_guide(admin)
    assert task["status"] == "succeeded", task
    resp = await get(client, "/tic-api/epg/xmltv.xml", stream_key)
    assert resp.status_code == 200
    root = parse_xmltv(await resp.get_data())

    channels = root.findall("channel")
    assert [c.get("id") for c in channels] == ["news.uk", "news.two", "tic-3", "tic-4"]
    assert [d.text for d in channels[0].findall("display-name")] == ['News <&> "One"', "1"]
    assert channels[0].find("icon").get("src") == "http://epg.invalid/news.png"
    assert channels[2].find("icon").get("src") == "http://l.invalid/3.png"
    assert channels[3].find("icon") is None

    programmes = root.findall("programme")
    assert sorted({p.get("channel") for p in programmes}) == ["news.two", "news.uk"]
    first = next(p for p in programmes if p.get("channel") == "news.uk")
    shifted = start + timedelta(minutes=60)
    assert first.get("start") == f"{shifted:%Y%m%d%H%M%S} +0000"
    copy = next(p for p in programmes if p.get("channel") == "news.two")
    assert copy.get("start") == f"{start:%Y%m%d%H%M%S} +0000"
    # The stored variants hold the main title already, so it is not repeated.
    assert [(t.text, t.get("lang")) for t in first.findall("title")] == [
        ("Les Nouvelles", "fr"),
        ("The News", "en"),
    ]
    assert first.findtext("sub-title") == "Episode 5"
    assert [d.text for d in first.findall("desc")] == ['Tonight: <big> & "small" stories', "Ce soir"]
    credits = first.find("credits")
    assert [(c.tag, c.text, c.get("role")) for c in credits] == [
        ("director", "Dee Rector", None),
        ("actor", "Ann Actor", "Herself"),
        ("actor", "Bob Actor", None),
        ("presenter", "Pat", None),
    ]
    assert first.findtext("date") == "2024"
    assert [c.text for c in first.findall("category")] == ["News", "Current affairs"]
    assert first.findtext("keyword") == "politics"
    assert first.find("length").get("units") == "minutes" and first.findtext("length") == "60"
    assert first.find("icon").get("src") == "http://epg.invalid/show.png?a=1&b=2"
    assert first.findtext("country") == "GB"
    episodes = {e.get("system"): e.text for e in first.findall("episode-num")}
    assert episodes == {"xmltv_ns": "1.4.", "dd_progid": "EP123.45", "onscreen": "S02E05"}
    assert first.find("previously-shown").get("start") == "20240102030405 +0000"
    assert first.find("premiere") is not None and first.find("new") is not None
    assert first.find("rating").get("system") == "VCHIP" and first.findtext("rating/value") == "TV-PG"
    assert first.findtext("star-rating/value") == "3/5"
    titles = [p.findtext("title") for p in programmes if p.get("channel") == "news.uk"]
    assert titles[-1] == "Bad  char" and "Old" not in titles


async def test_first_request_queues_a_build_and_answers_503(
    client: Any, admin: ApiClient, lineup: Lineup, stream_key: str
) -> None:
    await lineup.channel(1, "One", sources=["http://p.invalid/1"])
    resp = await get(client, "/tic-api/epg/xmltv.xml", stream_key)
    assert resp.status_code == 503
    assert resp.headers["Retry-After"] == "30"
    assert (await resp.get_json())["code"] == "XMLTV_NOT_READY"
    tasks = await (await admin.get("/tic-api/tasks?name=build_xmltv")).get_json()
    assert any(t["name"] == "build_xmltv" for t in tasks["items"] + tasks["queue"])
    await build_guide(admin)
    ok = await get(client, "/tic-api/epg/xmltv.xml.gz", stream_key)
    assert ok.status_code == 200
    parse_xmltv(gzip.decompress(await ok.get_data()))


async def test_conditional_get_gzip_and_stable_etag(
    client: Any, admin: ApiClient, lineup: Lineup, stream_key: str, svc: Any
) -> None:
    guide = await lineup.guide()
    await lineup.programmes(guide, "a.uk", window(24, description="x" * 200))
    await lineup.channel(1, "A", guide_id="a.uk", epg=(guide, "a.uk"))
    await build_guide(admin)

    plain = await get(client, "/tic-api/epg/xmltv.xml", stream_key)
    body = await plain.get_data()
    assert plain.status_code == 200 and plain.mimetype == "application/xml"
    assert int(plain.headers["Content-Length"]) == len(body)
    assert "Content-Encoding" not in plain.headers and plain.headers["Vary"] == "Accept-Encoding"
    etag, modified = plain.headers["ETag"], plain.headers["Last-Modified"]

    encoded = await get(client, "/tic-api/epg/xmltv.xml", stream_key, **{"Accept-Encoding": "gzip, br"})
    assert encoded.headers["Content-Encoding"] == "gzip"
    packed = await encoded.get_data()
    assert gzip.decompress(packed) == body and len(packed) < len(body)
    assert int(encoded.headers["Content-Length"]) == len(packed)
    assert encoded.headers["ETag"] != etag

    gz_file = await get(client, "/tic-api/epg/xmltv.xml.gz", stream_key)
    assert gz_file.mimetype == "application/gzip" and "Content-Encoding" not in gz_file.headers
    assert gzip.decompress(await gz_file.get_data()) == body

    assert (
        await get(client, "/tic-api/epg/xmltv.xml", stream_key, **{"If-None-Match": etag})
    ).status_code == 304
    assert (
        await get(client, "/tic-api/epg/xmltv.xml", stream_key, **{"If-None-Match": '"other"'})
    ).status_code == 200
    since = await get(client, "/tic-api/epg/xmltv.xml", stream_key, **{"If-Modified-Since": modified})
    assert since.status_code == 304 and since.headers["ETag"] == etag
    stale = format_datetime(now() - timedelta(days=1), usegmt=True)
    assert (
        await get(client, "/tic-api/epg/xmltv.xml", stream_key, **{"If-Modified-Since": stale})
    ).status_code == 200

    head = await client.head(f"/tic-api/epg/xmltv.xml?stream_key={stream_key}")
    # (Quart's test client recomputes Content-Length from the empty body it received, so only the
    # status, the validator and the empty body can be checked here.)
    assert head.status_code == 200 and head.headers["ETag"] == etag and await head.get_data() == b""

    # Nothing changed: the rebuild keeps the served file, so clients keep getting 304.
    again = await build_guide(admin)
    assert again["status"] == "succeeded" and "unchanged" in again["message"]
    assert (await get(client, "/tic-api/epg/xmltv.xml", stream_key)).headers["ETag"] == etag

    async with svc.db.transaction() as session:
        await session.execute(
            update(Channel).values(name="A renamed", updated_at=now() + timedelta(seconds=1))
        )
    changed = await build_guide(admin)
    assert "updated" in changed["message"]
    fresh = await get(client, "/tic-api/epg/xmltv.xml", stream_key, **{"If-None-Match": etag})
    assert fresh.status_code == 200 and b"A renamed" in await fresh.get_data()


async def test_every_m3u_tvg_id_is_an_xmltv_channel_id(
    client: Any, admin: ApiClient, lineup: Lineup, stream_key: str
) -> None:
    guide = await lineup.guide()
    await lineup.programmes(guide, "x", window(2))
    odd_ids = ['quote"id', "amp&<id>", "new\nline", "ctrl\x01id", "üñí.cøde", "plain.id"]
    for number, guide_id in enumerate(odd_ids, start=1):
        await lineup.channel(
            number,
            f"Channel {guide_id}",
            guide_id=guide_id,
            sources=[f"http://p.invalid/{number}"],
            epg=(guide, "x"),
        )
    await build_guide(admin)
    xml = parse_xmltv(await (await get(client, "/tic-api/epg/xmltv.xml", stream_key)).get_data())
    xml_ids = [c.get("id") for c in xml.findall("channel")]
    resp = await get(client, "/tic-api/playlist/combined.m3u", stream_key)
    entries = list(M3uParser().feed_bytes([await resp.get_data()]))
    assert len(entries) == len(odd_ids)
    assert [e.tvg_id for e in entries] == xml_ids
    assert {p.get("channel") for p in xml.findall("programme")} == set(xml_ids)


async def test_guide_settings_change_queues_a_rebuild(admin: ApiClient, svc: Any) -> None:
    resp = await admin.patch("/tic-api/settings", json={"xmltv_past_days": 3})
    assert resp.status_code == 200
    tasks = await (await admin.get("/tic-api/tasks")).get_json()
    assert any(t["name"] == "build_xmltv" for t in tasks["items"] + tasks["queue"])
    async with svc.db.session() as session:
        assert await settings_service.get_setting(session, svc.keyring, "xmltv_past_days") == 3


async def test_outputs_page_data_lists_the_callers_urls(
    admin: ApiClient, streamer: ApiClient, lineup: Lineup, stream_key: str
) -> None:
    playlist = await lineup.playlist("Provider")
    mine = await (await admin.get("/tic-api/outputs")).get_json()
    assert mine["m3u"] == f"http://localhost/tic-api/playlist/combined.m3u?stream_key={stream_key}"
    assert mine["hdhr"] == f"http://localhost/tic-api/hdhr_device/{stream_key}/combined"
    assert mine["playlists"][0]["id"] == playlist.id and mine["xmltv_file"] is None
    theirs = await (await streamer.get("/tic-api/outputs")).get_json()
    assert stream_key not in theirs["m3u"]
    assert (await streamer.post("/tic-api/outputs/xmltv/rebuild")).status_code == 403
