"""Imports end to end through the API against a fake provider: formats, Xtream, uploads, stable ids."""

from __future__ import annotations

import asyncio
import gzip
import io
import logging
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from werkzeug.datastructures import FileStorage

from backend.channels.models import Channel, ChannelSource
from backend.db import utcnow
from backend.playlists import importer, worker
from backend.playlists.m3u import M3uParser
from backend.playlists.models import Stream
from backend.playlists.worker import ROW_COLUMNS, ROW_WIDTHS, MarshalSink, RowWriter
from tests.conftest import ApiClient
from tests.fakes.upstream import FakeProvider, corpus_path
from tests.playlists.conftest import (
    all_streams,
    create_playlist,
    json_of,
    playlist,
    run_import,
    set_settings,
    wait_task,
)


def m3u(*entries: tuple[str, str], header: str = "#EXTM3U") -> bytes:
    """A playlist of (name, url) entries, each with a tvg-id and a group."""
    lines = [header]
    for name, url in entries:
        lines.append(f'#EXTINF:-1 tvg-id="{name.lower()}.tv" group-title="Group {name[0]}",{name}')
        lines.append(url)
    return ("\n".join(lines) + "\n").encode()


async def test_corpus_playlist_imports_with_report(admin: ApiClient, provider: FakeProvider) -> None:
    provider.add_corpus_file("/radio.m3u", "m3u/fanmingming-live__radio_index.m3u")
    source = await create_playlist(admin, url=provider.url("/radio.m3u"))
    task = await run_import(admin, source["id"])
    assert task["message"].startswith("Imported 450 streams into Provider: 450 added, 0 updated, 0 removed")
    assert task["progress"] == 100
    after = await playlist(admin, source["id"])
    assert after["stream_count"] == 450
    assert after["last_import_status"] == "succeeded" and after["last_import_error"] is None
    report = after["last_import_report"]
    assert (report["added"], report["updated"], report["removed"], report["skipped"]) == (450, 0, 0, 3)
    # The three broken entries are reported with their line numbers.
    assert [line for line, _reason in report["skipped_lines"]] == [376, 417, 418]
    streams = await all_streams(admin, source["id"])
    assert len(streams) == 450
    # The stray quote before the URL on line 339 is gone.
    by_line = {s["line_no"]: s for s in streams}
    assert by_line[338]["url"] == "https://satellitepull.cnr.cn/live/wxybwyshgb/playlist.m3u8"
    assert by_line[338]["attributes"]["radio"] == "true"
    # Streams come in playlist order with ids in that order.
    assert [s["line_no"] for s in streams] == sorted(s["line_no"] for s in streams)
    assert [s["id"] for s in streams] == sorted(s["id"] for s in streams)


async def test_attributes_headers_and_catchup_survive_the_round_trip(
    admin: ApiClient, provider: FakeProvider
) -> None:
    provider.add_corpus_file("/aptv.m3u", "m3u/aptv__iptv.m3u")
    source = await create_playlist(admin, url=provider.url("/aptv.m3u"))
    await run_import(admin, source["id"])
    parser = M3uParser()
    expected = list(parser.feed_bytes([corpus_path("m3u/aptv__iptv.m3u").read_bytes()]))
    streams = await all_streams(admin, source["id"])
    assert len(streams) == len(expected) == 120
    for entry, stream in zip(expected, streams, strict=True):
        assert stream["attributes"] == entry.attrs
        assert stream["headers"] == entry.headers
        assert (stream["name"], stream["url"], stream["tvg_id"], stream["group_title"]) == (
            entry.name,
            entry.url,
            entry.tvg_id,
            entry.group,
        )
        assert (stream["catchup"], stream["catchup_source"]) == (entry.catchup, entry.catchup_source)
    by_line = {s["line_no"]: s for s in streams}
    assert by_line[65]["headers"] == {"User-Agent": "iPhone", "Referer": "https://live.kankanews.com/"}
    assert by_line[32]["attributes"]["ghttp-user-agent"] == "AptvPlayer-UA"


async def test_relative_urls_resolve_against_the_playlist_url(
    admin: ApiClient, provider: FakeProvider
) -> None:
    provider.add_file("/lists/tv.m3u", b"#EXTM3U\n#EXTINF:-1,One\nchan/1.m3u8\n#EXTINF:-1,Two\n/abs/2.ts\n")
    source = await create_playlist(admin, url=provider.url("/lists/tv.m3u"))
    await run_import(admin, source["id"])
    assert [s["url"] for s in await all_streams(admin, source["id"])] == [
        provider.url("/lists/chan/1.m3u8"),
        provider.url("/abs/2.ts"),
    ]


async def test_dangerous_urls_and_header_injection_never_reach_the_database(
    admin: ApiClient, provider: FakeProvider
) -> None:
    provider.add_file(
        "/evil.m3u",
        b"#EXTM3U\n"
        b"#EXTINF:-1,Shell\npipe:///usr/bin/ffmpeg -i http://x -f mpegts pipe:1\n"
        b"#EXTINF:-1,Disk\nfile:///etc/passwd\n"
        b'#EXTINF:-1 tvg-logo="javascript:alert(1)",Logo\nhttp://h/1.ts|User-Agent=ok%0d%0aX-Evil:%201&Referer=http://r/\n'
        b"#EXTINF:-1,Fine\nudp://@239.0.0.1:1234\n",
    )
    source = await create_playlist(admin, url=provider.url("/evil.m3u"))
    await run_import(admin, source["id"])
    streams = await all_streams(admin, source["id"])
    assert [s["url"] for s in streams] == ["http://h/1.ts", "udp://@239.0.0.1:1234"]
    logo = streams[0]
    assert logo["tvg_logo"] is None and logo["attributes"]["tvg-logo"] == "javascript:alert(1)"
    assert logo["headers"] == {"Referer": "http://r/"}
    report = (await playlist(admin, source["id"]))["last_import_report"]
    assert report["skipped_lines"] == [
        [2, "pipe: URLs are not allowed (line 3)"],
        [4, "file: URLs are not allowed (line 5)"],
    ]


async def test_gzip_by_magic_bytes_and_content_encoding(
    admin: ApiClient, provider: FakeProvider, tmp_path: Path
) -> None:
    data = corpus_path("m3u/freetv-iptv__playlist_france.m3u8").read_bytes()
    # A gzip body under a name that says nothing about it, and the same list sent Content-Encoding: gzip.
    provider.add_file("/list", gzip.compress(data), content_type="text/plain")
    provider.add_file("/encoded.m3u", data, content_type="audio/x-mpegurl", gzip_encoding=True)
    for path in ("/list", "/encoded.m3u"):
        source = await create_playlist(admin, name=path, url=provider.url(path))
        await run_import(admin, source["id"])
        assert len(await all_streams(admin, source["id"])) == 32


async def test_generated_playlist_with_duplicates_gets_unique_stable_keys(
    admin: ApiClient, provider: FakeProvider, tmp_path: Path, svc: Any
) -> None:
    await provider.add_generated("/gen.m3u", "m3u", tmp_path, entries=3000, seed=1)
    source = await create_playlist(admin, url=provider.url("/gen.m3u"))
    first = await run_import(admin, source["id"])
    assert "3000 added" in first["message"]
    async with svc.db.session() as session:
        keys = dict((await session.execute(select(Stream.stream_key, Stream.id))).all())
    assert len(keys) == 3000
    assert any("#2" in key for key in keys)  # duplicates got an occurrence counter
    again = await run_import(admin, source["id"])
    assert "0 added, 0 updated, 0 removed" in again["message"]
    async with svc.db.session() as session:
        assert dict((await session.execute(select(Stream.stream_key, Stream.id))).all()) == keys


async def test_stable_ids_across_adds_removes_renames_and_reorders(
    admin: ApiClient, provider: FakeProvider, svc: Any
) -> None:
    names = ["Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot"]
    urls = {name: provider.url(f"/s/{name.lower()}.m3u8") for name in names}
    provider.add_file("/list.m3u", m3u(*[(n, urls[n]) for n in names], ("Echo", urls["Echo"])))
    source = await create_playlist(admin, url=provider.url("/list.m3u"))
    await run_import(admin, source["id"])
    before = await all_streams(admin, source["id"])
    ids = {(s["name"], s["line_no"]): s["id"] for s in before}
    by_url = {s["url"]: s["id"] for s in before if s["name"] != "Echo"}
    echo_ids = [s["id"] for s in before if s["name"] == "Echo"]
    # A channel linked to Bravo (removed next) and one linked to Delta (kept).
    async with svc.db.transaction() as session:
        now = utcnow()
        for number, name in ((1, "Bravo"), (2, "Delta")):
            channel = Channel(name=name, number=number, guide_id=f"g{number}", created_at=now, updated_at=now)
            session.add(channel)
            await session.flush()
            session.add(
                ChannelSource(channel_id=channel.id, position=0, stream_id=by_url[urls[name]], created_at=now)
            )

    # Foxtrot moves to the top, Bravo goes, Charlie is renamed, Golf is new, Echo keeps its copy.
    provider.add_file(
        "/list.m3u",
        m3u(
            ("Foxtrot", urls["Foxtrot"]),
            ("Alpha", urls["Alpha"]),
            ("Charles", urls["Charlie"]),
            ("Delta", urls["Delta"]),
            ("Echo", urls["Echo"]),
            ("Golf", provider.url("/s/golf.m3u8")),
            ("Echo", urls["Echo"]),
        ),
    )
    task = await run_import(admin, source["id"])
    assert "1 added, 1 updated, 1 removed" in task["message"]
    after = await all_streams(admin, source["id"])
    now_by_url = {s["url"]: s for s in after if s["name"] != "Echo"}
    for name in ("Alpha", "Charlie", "Delta", "Foxtrot"):
        assert now_by_url[urls[name]]["id"] == by_url[urls[name]], name
    assert now_by_url[urls["Charlie"]]["name"] == "Charles"
    assert urls["Bravo"] not in now_by_url
    assert now_by_url[provider.url("/s/golf.m3u8")]["id"] > max(ids.values())
    # The duplicate pair keeps both ids, in order.
    assert [s["id"] for s in after if s["name"] == "Echo"] == echo_ids
    # Streams are listed in the order they first appeared; only written rows get new line numbers.
    assert [s["name"] for s in after] == ["Alpha", "Charles", "Delta", "Echo", "Foxtrot", "Echo", "Golf"]
    lines = {s["name"]: s["line_no"] for s in after}
    assert (lines["Alpha"], lines["Charles"], lines["Golf"]) == (2, 6, 12)
    report = (await playlist(admin, source["id"]))["last_import_report"]
    assert (report["added"], report["updated"], report["removed"], report["total"]) == (1, 1, 1, 7)
    async with svc.db.session() as session:
        links = dict(
            (await session.execute(select(Channel.name, ChannelSource.stream_id).join(ChannelSource))).all()
        )
    assert links == {"Bravo": None, "Delta": by_url[urls["Delta"]]}


async def test_refresh_rewrites_a_stream_whatever_single_field_changed(
    admin: ApiClient, provider: FakeProvider
) -> None:
    def entry(i: int, attrs: str = "", name: str | None = None, duration: str = "-1") -> list[str]:
        return [f"#EXTINF:{duration} {attrs or base(i)},{name or f'C{i}'}", provider.url(f"/s/{i}.m3u8")]

    def base(i: int) -> str:
        return f'tvg-id="c{i}" tvg-name="C{i}" tvg-logo="http://l/{i}.png" tvg-chno="{i}" group-title="G"'

    count = 14
    first = ["#EXTM3U"] + [line for i in range(count) for line in entry(i)]
    provider.add_file("/list.m3u", ("\n".join(first) + "\n").encode())
    source = await create_playlist(admin, url=provider.url("/list.m3u"))
    await run_import(admin, source["id"])
    before = {s["url"]: s for s in await all_streams(admin, source["id"])}

    # Each of the first twelve entries changes in one column only (NULL <-> value and JSON included);
    # 12 and 13 swap places, which is not a change.
    changed = [
        entry(0, name="C0 renamed"),
        entry(1, base(1).replace('tvg-id="c1" ', "")),
        entry(2, base(2).replace('tvg-name="C2"', 'tvg-name="C two"')),
        entry(3, base(3).replace("3.png", "3b.png")),
        entry(4, base(4).replace('tvg-chno="4"', 'tvg-chno="40"')),
        entry(5, base(5).replace('group-title="G"', 'group-title="H"')),
        entry(6, base(6) + ' catchup="default"'),
        entry(7, base(7) + ' catchup-source="?utc={utc}"'),
        entry(8, base(8) + ' catchup-days="3"'),
        entry(9, base(9) + ' http-user-agent="Kodi/20"'),
        entry(10, base(10) + ' x-foo="1"'),
        entry(11, duration="30"),
        entry(13),
        entry(12),
    ]
    provider.add_file("/list.m3u", ("\n".join(["#EXTM3U"] + [x for e in changed for x in e]) + "\n").encode())
    task = await run_import(admin, source["id"])
    assert "0 added, 12 updated, 0 removed" in task["message"], task["message"]
    after = {s["url"]: s for s in await all_streams(admin, source["id"])}
    assert {u: s["id"] for u, s in after.items()} == {u: s["id"] for u, s in before.items()}
    url = provider.url
    assert after[url("/s/0.m3u8")]["name"] == "C0 renamed"
    assert after[url("/s/1.m3u8")]["tvg_id"] is None
    assert after[url("/s/8.m3u8")]["attributes"]["catchup-days"] == "3"
    assert after[url("/s/9.m3u8")]["headers"] == {"User-Agent": "Kodi/20"}
    assert after[url("/s/10.m3u8")]["attributes"]["x-foo"] == "1"
    # The swapped pair was not rewritten: it keeps its first line numbers.
    assert (after[url("/s/12.m3u8")]["line_no"], after[url("/s/13.m3u8")]["line_no"]) == (26, 28)

    # The same content again changes nothing.
    task = await run_import(admin, source["id"])
    assert "0 added, 0 updated, 0 removed" in task["message"], task["message"]


async def test_values_longer_than_their_columns_are_cut_and_stay_unchanged(
    admin: ApiClient, provider: FakeProvider
) -> None:
    attrs = {"tvg-id": 300, "tvg-name": 600, "tvg-chno": 40, "group-title": 300, "catchup": 60}
    text = " ".join(f'{key}="{"x" * length}"' for key, length in attrs.items())
    provider.add_file("/long.m3u", f"#EXTM3U\n#EXTINF:-1 {text},{'N' * 700}\nhttp://h/s/1.m3u8\n".encode())
    source = await create_playlist(admin, url=provider.url("/long.m3u"))
    await run_import(admin, source["id"])
    [stream] = await all_streams(admin, source["id"])
    lengths = {c: len(stream[c]) for c in ("name", "tvg_id", "tvg_name", "tvg_chno", "group_title")}
    assert lengths == {c: ROW_WIDTHS[c] for c in lengths}
    # What was stored is what the next import stages: the same playlist changes nothing.
    task = await run_import(admin, source["id"])
    assert "0 added, 0 updated, 0 removed" in task["message"], task["message"]


def test_row_widths_are_the_stream_columns_widths() -> None:
    for column in ROW_COLUMNS:
        length = getattr(Stream.__table__.c[column].type, "length", None)
        # Keys are made to fit differently: a long one becomes a hash (RowWriter._key).
        expected = worker._KEY_WIDTH if column == "stream_key" else ROW_WIDTHS.get(column)
        assert expected == length, column


async def test_nul_characters_are_dropped_from_entries(admin: ApiClient, provider: FakeProvider) -> None:
    body = b'#EXTM3U\n#EXTINF:-1 tvg-id="a\x00b" group-title="G\x00",Na\x00me\nhttp://h/s/1\x00.m3u8\n'
    provider.add_file("/nul.m3u", body)
    source = await create_playlist(admin, url=provider.url("/nul.m3u"))
    await run_import(admin, source["id"])
    [stream] = await all_streams(admin, source["id"])
    assert (stream["name"], stream["tvg_id"], stream["group_title"], stream["url"]) == (
        "Name",
        "ab",
        "G",
        "http://h/s/1.m3u8",
    )


async def test_xtream_source_imports_live_streams(
    admin: ApiClient, provider: FakeProvider, caplog: Any
) -> None:
    # Our own loggers at DEBUG; the database driver logs statement parameters at DEBUG by design.
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="backend")
    provider.add_xtream(
        "alice",
        "s3cret-pw",
        categories=[{"category_name": "News"}, {"category_name": "Sport"}],
        live_streams=[
            {"name": "BBC News", "epg_channel_id": "bbcnews.uk", "category_id": "1", "tv_archive": 1,
             "tv_archive_duration": 7, "stream_icon": "http://logos/bbc.png"},
            {"name": "Sky Sports", "category_id": "2"},
            {"name": "Euro", "category_id": "2", "stream_icon": "javascript:alert(1)"},
        ],
    )  # fmt: skip
    source = await create_playlist(
        admin, kind="xtream", xc_server=provider.url("/"), xc_username="alice", xc_password="s3cret-pw"
    )
    assert source["xc_password"] == "********" and source["xc_server"] == provider.url("")
    task = await run_import(admin, source["id"])
    assert "3 added" in task["message"]
    streams = await all_streams(admin, source["id"])
    bbc, sky, euro = streams
    assert bbc["url"] == provider.url("/live/alice/s3cret-pw/1.ts")
    assert (bbc["tvg_id"], bbc["group_title"], bbc["catchup"], bbc["catchup_days"]) == (
        "bbcnews.uk",
        "News",
        "xc",
        7,
    )
    assert (bbc["provider_stream_id"], bbc["tvg_logo"]) == ("1", "http://logos/bbc.png")
    assert (sky["group_title"], sky["catchup"], euro["tvg_logo"]) == ("Sport", None, None)
    # Credentials never show up in logs, task messages or the playlist's report.
    assert "s3cret-pw" not in caplog.text
    assert "s3cret-pw" not in str(task) + str(await playlist(admin, source["id"]))

    # Renamed and moved to another host name: the provider stream id keeps the id.
    provider.add_xtream("alice", "s3cret-pw", live_streams=[{"name": "Sky Sports HD", "stream_id": 2}])
    await json_of(
        await admin.patch(
            f"/tic-api/playlists/{source['id']}", json={"xc_server": f"http://localhost:{provider.port}"}
        ),
        200,
    )
    await run_import(admin, source["id"])
    (renamed,) = await all_streams(admin, source["id"])
    assert (renamed["id"], renamed["name"]) == (sky["id"], "Sky Sports HD")
    assert renamed["url"] == f"http://localhost:{provider.port}/live/alice/s3cret-pw/2.ts"


async def test_xtream_stream_format_setting(admin: ApiClient, provider: FakeProvider) -> None:
    provider.add_xtream("bob", "pw", live_streams=[{"name": "One"}])
    source = await create_playlist(
        admin, kind="xtream", xc_server=provider.url(""), xc_username="bob", xc_password="pw"
    )
    await set_settings(admin, xtream_stream_format="m3u8")
    await run_import(admin, source["id"])
    assert (await all_streams(admin, source["id"]))[0]["url"] == provider.url("/live/bob/pw/1.m3u8")


async def test_unchanged_content_is_not_parsed_again_on_a_scheduled_refresh(
    admin: ApiClient, provider: FakeProvider, svc: Any
) -> None:
    provider.add_file("/list.m3u", m3u(("One", "http://h/1"), ("Two", "http://h/2")))
    source = await create_playlist(admin, url=provider.url("/list.m3u"))
    await run_import(admin, source["id"])
    queued = await svc.broker.enqueue(
        "refresh_playlist", key="playlist:x", args={"playlist_id": source["id"]}
    )
    task = await wait_task(admin, queued.task_id)
    assert task["status"] == "succeeded"
    assert task["message"] == "Provider: the playlist has not changed since the last import"
    # A manual import always parses again.
    assert "0 added, 0 updated" in (await run_import(admin, source["id"]))["message"]


async def test_upload_multipart_and_raw_body(admin: ApiClient) -> None:
    source = await create_playlist(admin, kind="m3u_file")
    assert source["has_file"] is False
    # A gzip file under a plain name: found by its magic bytes.
    data = gzip.compress(corpus_path("m3u/freetv-iptv__playlist_spain.m3u8").read_bytes())
    resp = await admin.post(
        f"/tic-api/playlists/{source['id']}/upload",
        files={"file": FileStorage(io.BytesIO(data), filename="spain.m3u8")},
    )
    task = await wait_task(admin, (await json_of(resp, 202))["task_id"])
    assert task["status"] == "succeeded" and "51 added" in task["message"]
    after = await playlist(admin, source["id"])
    assert after["has_file"] is True and after["stream_count"] == 51
    # The raw body works too, and this path takes more than the 1 MiB every other request is held to.
    big = corpus_path("m3u/ipytv__iptv-org-index-2022.m3u").read_bytes()
    assert len(big) > 1024 * 1024
    resp = await admin.post(
        f"/tic-api/playlists/{source['id']}/upload",
        data=big,
        headers={"Content-Type": "application/octet-stream"},
    )
    task = await wait_task(admin, (await json_of(resp, 202))["task_id"])
    # One Spanish stream is also in the iptv-org index (same URL), so it is updated, not replaced.
    assert task["status"] == "succeeded" and "4600 added, 1 updated, 50 removed" in task["message"]
    assert (await playlist(admin, source["id"]))["stream_count"] == 4601
    # Updating the source re-reads the stored file.
    assert "0 added" in (await run_import(admin, source["id"]))["message"]


async def test_upload_that_is_not_a_playlist_keeps_the_old_file(admin: ApiClient) -> None:
    source = await create_playlist(admin, kind="m3u_file")
    resp = await admin.post(
        f"/tic-api/playlists/{source['id']}/upload",
        files={"file": FileStorage(io.BytesIO(m3u(("One", "http://h/1"))), filename="a.m3u")},
    )
    await wait_task(admin, (await json_of(resp, 202))["task_id"])
    for body, words in ((b"<html><body>login</body></html>", "HTML page"), (b"", "empty")):
        resp = await admin.post(
            f"/tic-api/playlists/{source['id']}/upload",
            files={"file": FileStorage(io.BytesIO(body), filename="x")},
        )
        error = await json_of(resp, 400)
        assert words in error["message"]
    assert "0 added, 0 updated, 0 removed" in (await run_import(admin, source["id"]))["message"]
    assert len(await all_streams(admin, source["id"])) == 1


async def test_upload_only_for_file_sources_and_import_needs_a_file(
    admin: ApiClient, provider: FakeProvider
) -> None:
    url_source = await create_playlist(admin, name="url", url=provider.url("/x.m3u"))
    resp = await admin.post(f"/tic-api/playlists/{url_source['id']}/upload", data=b"#EXTM3U\n")
    assert (await json_of(resp, 409))["code"] == "PLAYLIST_NOT_FILE_KIND"
    file_source = await create_playlist(admin, name="file", kind="m3u_file")
    task = await run_import(admin, file_source["id"], status="failed")
    assert "No file has been uploaded" in task["error"] and "[PLAYLIST_NO_FILE]" in task["error"]


@pytest.mark.parametrize("workers", [2, 3])
async def test_big_playlist_parsed_in_parts_matches_one_parse(
    admin: ApiClient,
    provider: FakeProvider,
    tmp_path: Path,
    svc: Any,
    caplog: Any,
    monkeypatch: pytest.MonkeyPatch,
    workers: int,
) -> None:
    """Over 4 MiB the import cuts the file and parses the parts in parallel; nothing may differ."""
    monkeypatch.setattr(importer, "PARSE_PROCESSES", workers)
    caplog.set_level(logging.INFO, logger="backend.playlists")
    generated = await provider.add_generated("/gen.m3u", "m3u", tmp_path, entries=20000, seed=3)
    lines = generated.read_bytes().split(b"\n")
    # A header default that the second part must know, and two copies of the first 30 entries at the
    # very end, so that duplicates straddle the cut (a later part renumbers "key", "key#2" past the
    # copies in earlier parts).
    lines[0] = b'#EXTM3U http-user-agent="Box/1"'
    urls = [i for i, line in enumerate(lines) if line.startswith(b"http")]
    data = b"\n".join(lines[:-1] + lines[1 : urls[29] + 1] * 2) + b"\n"
    assert len(data) > 4 * 1024 * 1024
    provider.add_file("/big.m3u", data)
    provider.add_file("/big.m3u.gz", gzip.compress(data), content_type="application/octet-stream")
    expected = list(M3uParser().feed_bytes([data]))
    for path in ("/big.m3u", "/big.m3u.gz"):
        source = await create_playlist(admin, name=path, url=provider.url(path))
        task = await run_import(admin, source["id"])
        assert f"Imported {len(expected)} streams" in task["message"]
        streams = await all_streams(admin, source["id"])
        assert [(s["line_no"], s["name"], s["url"], s["headers"]) for s in streams] == [
            (e.line_no, e.name, e.url, e.headers) for e in expected
        ]
        assert {s["headers"]["User-Agent"] for s in streams} >= {"Box/1"}
        one_pass = RowWriter(source["id"], MarshalSink(io.BytesIO()), None)
        expected_keys = [one_pass._key(e) for e in expected]
        assert one_pass.duplicates >= 60
        report = (await playlist(admin, source["id"]))["last_import_report"]
        assert report["duplicates"] == one_pass.duplicates
        async with svc.db.session() as session:
            keys = (
                (
                    await session.execute(
                        select(Stream.stream_key).where(Stream.source_id == source["id"]).order_by(Stream.id)
                    )
                )
                .scalars()
                .all()
            )
        assert keys == expected_keys
        assert all("#" in key for key in keys[-60:])  # the copies are numbered after their originals
    assert caplog.text.count(f"'workers': {workers}") == 2


async def test_waiting_for_workers_wakes_on_reports_and_ends_only() -> None:
    # One worker has ended, the other reports twice and ends a moment later.
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Any] = loop.create_future()
    done.set_result({})
    later: asyncio.Future[Any] = loop.create_future()
    ready = asyncio.Event()
    loop.call_later(0.05, ready.set)
    loop.call_later(0.1, ready.set)
    loop.call_later(0.2, later.set_result, {})
    shown = 0

    async def show() -> None:
        nonlocal shown
        shown += 1

    await importer._wait_for_workers([done, later], ready, show)
    # A wake per report and one for the end; waiting on the finished worker as well would spin here
    # (thousands of wakes in 0.2 s).
    assert 2 <= shown <= 3

    failed: asyncio.Future[Any] = loop.create_future()
    loop.call_later(0.05, failed.set_exception, RuntimeError("worker died"))
    with pytest.raises(RuntimeError, match="worker died"):
        await importer._wait_for_workers([done, failed], asyncio.Event(), show)
