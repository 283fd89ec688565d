"""M3U playlists: parsed back with our own parser; sources, tags, escaping, stream modes and base URLs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import delete, text

from backend.playlists.m3u import M3uEntry, M3uParser
from backend.playlists.models import Stream
from backend.settings import service as settings_service
from tests.conftest import make_app
from tests.outputs.conftest import Lineup

BASE = "http://localhost"


async def fetch(client: Any, path: str, key: str) -> tuple[M3uParser, list[M3uEntry]]:
    resp = await client.get(f"{path}?stream_key={key}")
    assert resp.status_code == 200, await resp.get_data(as_text=True)
    assert resp.mimetype == "audio/x-mpegurl"
    parser = M3uParser()
    entries = list(parser.feed_bytes([await resp.get_data()]))
    assert parser.skipped_total == 0, parser.skipped
    return parser, entries


async def set_settings(svc: Any, **values: Any) -> None:
    async with svc.db.transaction() as session:
        await settings_service.update_settings(session, svc.keyring, values)


async def test_combined_lists_enabled_channels_with_a_playable_source(
    client: Any, lineup: Lineup, stream_key: str, svc: Any
) -> None:
    provider = await lineup.playlist("Provider")
    off = await lineup.playlist("Switched off", enabled=False)
    news = await lineup.stream(
        provider, "News HD", "http://p.invalid/live/1.ts", {"User-Agent": "Box/1.0", "Referer": "http://r/"}
    )
    doomed = await lineup.stream(provider, "Doomed", "http://p.invalid/live/2.ts")
    backup = await lineup.stream(provider, "Backup", "http://p.invalid/live/3.ts")
    dark = await lineup.stream(off, "Dark", "http://off.invalid/4.ts")
    news_channel = await lineup.channel(
        12, "News", guide_id="news.uk", sources=[news], tags=["News", "Apple"], logo_url="http://l/1.png"
    )
    await lineup.channel(3, "Manual", sources=["http://manual.invalid/x.m3u8"])
    await lineup.channel(4, "Failover", sources=[doomed, backup])
    await lineup.channel(5, "Only vanished", sources=[doomed])
    await lineup.channel(6, "Disabled source", sources=[{"url": "http://x.invalid/", "enabled": False}])
    await lineup.channel(7, "Disabled channel", sources=[backup], enabled=False)
    await lineup.channel(8, "Disabled playlist", sources=[dark])
    await lineup.channel(9, "No sources")
    async with svc.db.transaction() as session:
        await session.execute(delete(Stream).where(Stream.id == doomed.id))

    parser, entries = await fetch(client, "/tic-api/playlist/combined.m3u", stream_key)

    assert parser.header["x-tvg-url"] == f"{BASE}/tic-api/epg/xmltv.xml?stream_key={stream_key}"
    assert [(e.tvg_chno, e.name, e.url) for e in entries] == [
        ("3", "Manual", "http://manual.invalid/x.m3u8"),
        ("4", "Failover", "http://p.invalid/live/3.ts"),
        ("12", "News", "http://p.invalid/live/1.ts"),
    ]
    news_entry = entries[2]
    assert news_entry.tvg_id == "news.uk" and news_entry.tvg_name == "News"
    assert news_entry.group == "Apple"
    assert news_entry.tvg_logo == f"{BASE}/tic-api/logos/{news_channel.id}"
    assert news_entry.headers == {"User-Agent": "Box/1.0", "Referer": "http://r/"}
    assert entries[0].tvg_logo is None and entries[0].group is None


async def test_hostile_names_cannot_break_lines_or_attributes(
    client: Any, lineup: Lineup, stream_key: str, svc: Any
) -> None:
    nul = "\x00" if svc.db.dialect == "sqlite" else ""  # PostgreSQL text cannot hold NUL at all
    hostile = f'Evil "Q",\r\n#EXTINF:-1 tvg-id="x",Injected\nhttp://evil.invalid/{nul}\x07\x1b <&> \u2028end'
    await lineup.channel(
        1,
        hostile,
        guide_id='id"with\nquote',
        sources=["http://ok.invalid/1\nhttp://evil.invalid/2"],
        tags=['Group "A"\n#EXTM3U'],
    )
    await lineup.channel(2, "   ", sources=["http://ok.invalid/blank"])
    _, entries = await fetch(client, "/tic-api/playlist/combined.m3u", stream_key)

    assert len(entries) == 2, [e.url for e in entries]
    first = entries[0]
    assert "\n" not in first.name and "\x00" not in first.name and "\x1b" not in first.name
    assert first.name == 'Evil "Q", #EXTINF:-1 tvg-id="x",Injected http://evil.invalid/ <&> end'
    assert first.tvg_name == first.name.replace('"', "'")
    assert first.tvg_id == "id'with quote"
    assert first.group == "Group 'A' #EXTM3U"
    assert first.url == "http://ok.invalid/1 http://evil.invalid/2"
    assert entries[1].name == "Channel 2" and entries[1].url == "http://ok.invalid/blank"


async def test_per_playlist_uses_that_playlists_sources_only(
    client: Any, lineup: Lineup, stream_key: str
) -> None:
    a = await lineup.playlist("A")
    b = await lineup.playlist("B")
    a1 = await lineup.stream(a, "One on A", "http://a.invalid/1")
    b1 = await lineup.stream(b, "One on B", "http://b.invalid/1")
    b2 = await lineup.stream(b, "Two on B", "http://b.invalid/2")
    await lineup.channel(1, "One", sources=[b1, a1])
    await lineup.channel(2, "Two", sources=[b2])
    await lineup.channel(3, "Manual", sources=["http://m.invalid/3"])

    _, on_a = await fetch(client, f"/tic-api/playlist/{a.id}.m3u", stream_key)
    assert [(e.name, e.url) for e in on_a] == [("One", "http://a.invalid/1")]
    _, on_b = await fetch(client, f"/tic-api/playlist/{b.id}.m3u", stream_key)
    assert [(e.name, e.url) for e in on_b] == [("One", "http://b.invalid/1"), ("Two", "http://b.invalid/2")]
    missing = await client.get(f"/tic-api/playlist/{b.id + 100}.m3u?stream_key={stream_key}")
    assert missing.status_code == 404
    assert (await missing.get_json())["code"] == "PLAYLIST_NOT_FOUND"


@pytest.mark.parametrize(
    ("mode", "tvh_url", "expected"),
    [
        ("auto", "", {"Published": "direct", "Local": "direct"}),
        ("auto", "http://tvh.invalid:9981/tic-tvh", {"Published": "tvh", "Local": "direct"}),
        ("tvheadend", "http://tvh.invalid:9981/tic-tvh", {"Published": "tvh"}),
        ("direct", "http://tvh.invalid:9981/tic-tvh", {"Published": "direct", "Local": "direct"}),
    ],
)
async def test_stream_mode_chooses_tvheadend_or_the_source(
    client: Any,
    lineup: Lineup,
    stream_key: str,
    svc: Any,
    mode: str,
    tvh_url: str,
    expected: dict[str, str],
) -> None:
    await set_settings(svc, output_stream_mode=mode, tvh_url=tvh_url)
    await lineup.channel(1, "Published", sources=["http://p.invalid/1"], tvh_uuid="0123abcd" * 4)
    await lineup.channel(2, "Local", sources=["http://p.invalid/2"])
    _, entries = await fetch(client, "/tic-api/playlist/combined.m3u", stream_key)
    tvh = f"{BASE}/tic-api/tvh_stream/stream/channel/{'0123abcd' * 4}?stream_key={stream_key}"
    got = {
        e.name: ("tvh" if e.url == tvh else "direct" if e.url.startswith("http://p.invalid/") else e.url)
        for e in entries
    }
    assert got == expected


async def test_public_base_url_wins_over_the_request_host(
    client: Any, lineup: Lineup, stream_key: str, svc: Any
) -> None:
    await set_settings(svc, public_base_url="https://tv.example.com/tic/")
    await lineup.channel(1, "Logo", sources=["http://p.invalid/1"], logo_url="http://l.invalid/a.png")
    parser, entries = await fetch(client, "/tic-api/playlist/combined.m3u", stream_key)
    assert (
        parser.header["x-tvg-url"]
        == f"https://tv.example.com/tic/tic-api/epg/xmltv.xml?stream_key={stream_key}"
    )
    assert entries[0].tvg_logo is not None
    assert entries[0].tvg_logo.startswith("https://tv.example.com/tic/tic-api/logos/")


async def test_simultaneous_requests_share_one_read_and_get_the_same_playlist(
    app: Any, lineup: Lineup, stream_key: str
) -> None:
    provider = await lineup.playlist("P")
    for number in range(1, 41):
        stream = await lineup.stream(provider, f"S{number}", f"http://p.invalid/{number}")
        await lineup.channel(number, f"Channel {number}", sources=[stream])
    clients = [app.test_client() for _ in range(10)]
    paths = (
        [f"/tic-api/playlist/combined.m3u?stream_key={stream_key}"] * 5
        + [
            f"/tic-api/playlist/{provider.id}.m3u?stream_key={stream_key}",
            f"/tic-api/playlist/{provider.id + 9}.m3u?stream_key={stream_key}",
        ]
        * 2
        + [f"/tic-api/hdhr_device/{stream_key}/combined/lineup.json"]
    )
    responses = await asyncio.gather(*(c.get(p) for c, p in zip(clients, paths, strict=True)))
    bodies = [await r.get_data() for r in responses]
    assert [r.status_code for r in responses] == [200] * 5 + [200, 404, 200, 404, 200]
    assert len(set(bodies[:5])) == 1 and bodies[5] == bodies[0] and bodies[7] == bodies[0]
    assert len(list(M3uParser().feed_bytes([bodies[0]]))) == 40
    assert len(await responses[9].get_json()) == 40


async def _bodies(client: Any, key: str) -> tuple[bytes, Any]:
    m3u = await client.get(f"/tic-api/playlist/combined.m3u?stream_key={key}")
    lineup = await client.get(f"/tic-api/hdhr_device/{key}/combined/lineup.json")
    assert m3u.status_code == lineup.status_code == 200
    return await m3u.get_data(), await lineup.get_json()


# Each change is made straight in the database, as another process (a job's child, a second
# replica, an admin with psql) would: nothing in this app is told, and updated_at is left alone.
CHANGES = {
    "channel renamed": "UPDATE channel SET name = 'Renamed' WHERE number = 1",
    "channel renumbered": "UPDATE channel SET number = 40 WHERE number = 2",
    "channel disabled": "UPDATE channel SET enabled = false WHERE number = 2",
    "published to TVHeadend": f"UPDATE channel SET tvh_uuid = '{'ab' * 16}' WHERE number = 1",
    "stream URL refreshed": "UPDATE stream SET url = 'http://p.invalid/moved.ts'",
    "stream headers changed": """UPDATE stream SET headers = '{"User-Agent": "Other/2"}'""",
    "playlist user agent set": "UPDATE playlist_source SET user_agent = 'Agent/9'",
    "playlist disabled": "UPDATE playlist_source SET enabled = false",
    "source disabled": "UPDATE channel_source SET enabled = false WHERE url IS NOT NULL",
    "tag renamed": "UPDATE channel_tag SET name = 'Renamed tag'",
    "guide icon added": "UPDATE epg_channel SET icon = 'http://icons.invalid/1.png'",
    "channel deleted": "DELETE FROM channel WHERE number = 2",
    "stream mode setting": "tvheadend",
}


@pytest.mark.parametrize("change", list(CHANGES))
async def test_repeated_requests_see_every_change_at_once(
    app: Any, lineup: Lineup, stream_key: str, svc: Any, change: str
) -> None:
    """The lineup's entries are remembered between requests; a change anywhere must still show at once,
    and the output after it must be exactly what an app that never served the lineup sends."""
    await set_settings(svc, tvh_url="http://tvh.invalid:9981/tic-tvh")
    provider = await lineup.playlist("P")
    stream = await lineup.stream(provider, "S", "http://p.invalid/1.ts")
    guide = await lineup.guide()
    await lineup.guide_channel(guide, "one.uk", "One")
    await lineup.channel(1, "One", sources=[stream], tags=["News"], epg=(guide, "one.uk"))
    await lineup.channel(2, "Two", sources=["http://m.invalid/2"], tvh_uuid="cd" * 16)
    client = app.test_client()
    before = await _bodies(client, stream_key)
    assert await _bodies(client, stream_key) == before  # served twice: the second from remembered entries

    if change == "stream mode setting":
        await set_settings(svc, output_stream_mode=CHANGES[change])
    else:
        async with svc.db.transaction() as session:
            await session.execute(text(CHANGES[change]))
    after = await _bodies(client, stream_key)

    assert after != before
    # A second app on the same database and data dir (same secret, so the same stream key) has
    # remembered nothing: it renders everything afresh.
    fresh_app = make_app(svc.config.data_dir, svc.db.url)
    async with fresh_app.test_app():
        assert await _bodies(fresh_app.test_client(), stream_key) == after


async def test_each_user_gets_urls_with_their_own_key(
    client: Any, admin: Any, lineup: Lineup, stream_key: str, svc: Any
) -> None:
    await set_settings(svc, output_stream_mode="tvheadend", tvh_url="http://tvh.invalid:9981/tic-tvh")
    await lineup.channel(1, "One", sources=["http://p.invalid/1"], tvh_uuid="ab" * 16)
    created = await admin.post(
        "/tic-api/users", json={"username": "viewer", "password": "viewer-password", "role": "streamer"}
    )
    viewer_id = (await created.get_json())["id"]
    other_key = (await (await admin.get(f"/tic-api/users/{viewer_id}/stream-key")).get_json())["stream_key"]
    for _ in range(2):
        for key in (stream_key, other_key):
            _, entries = await fetch(client, "/tic-api/playlist/combined.m3u", key)
            assert [e.url for e in entries] == [
                f"{BASE}/tic-api/tvh_stream/stream/channel/{'ab' * 16}?stream_key={key}"
            ]


async def test_logos_tic_could_not_cache_are_passed_on_as_the_providers_url(
    client: Any, lineup: Lineup, stream_key: str
) -> None:
    await lineup.channel(1, "Cached", sources=["http://p.invalid/1"], logo_url="http://l.invalid/a.png")
    await lineup.channel(
        2, "Svg", sources=["http://p.invalid/2"], logo_url="http://l.invalid/b.svg", logo_cached=False
    )
    _, entries = await fetch(client, "/tic-api/playlist/combined.m3u", stream_key)
    logos = {e.name: e.tvg_logo for e in entries}
    assert logos["Cached"] is not None and logos["Cached"].endswith("/tic-api/logos/1")
    # Not cached (an SVG, too big, or the fetch failed): TIC's URL would be a broken link in the client.
    assert logos["Svg"] == "http://l.invalid/b.svg"
