"""Tests for the Xtream Codes helpers: URLs, redaction, and player_api JSON mapped to entries."""

from __future__ import annotations

import json
from typing import Any

import pytest

from backend.download import redact_url
from backend.errors import Invalid, UpstreamError
from backend.playlists.m3u import M3uParser, stream_identity
from backend.playlists.xtream import (
    XtreamLiveMapper,
    category_names,
    expect_list,
    live_stream_url,
    normalize_server,
    player_api_url,
)

CATEGORIES: list[dict[str, Any]] = json.loads(
    """[
      {"category_id": "1", "category_name": "UK | News", "parent_id": 0},
      {"category_id": 2, "category_name": "Sports ", "parent_id": 0},
      {"category_id": "3", "category_name": ""},
      "junk"
    ]"""
)

STREAMS: list[Any] = json.loads(
    """[
      {"num": 1, "name": "BBC News", "stream_type": "live", "stream_id": 101,
       "stream_icon": "http://logos/bbc.png", "epg_channel_id": "bbcnews.uk", "added": "1600000000",
       "category_id": "1", "custom_sid": "", "tv_archive": 1, "direct_source": "",
       "tv_archive_duration": "7"},
      {"num": "2", "name": " Sky Sports ", "stream_id": "202", "stream_icon": "", "epg_channel_id": null,
       "category_id": 2, "tv_archive": "0", "tv_archive_duration": 0, "unknown_field": {"x": 1}},
      {"num": null, "name": "No Category", "stream_id": 303, "stream_icon": null, "epg_channel_id": "",
       "tv_archive": "1", "tv_archive_duration": "n/a"},
      {"num": 4.0, "name": "", "stream_id": 404.0, "category_ids": [2, 1]},
      {"num": 5, "name": "No Id", "stream_id": null},
      "not an object",
      {"num": 7, "name": "Unknown Category", "stream_id": "707", "category_id": "99", "tv_archive": true,
       "tv_archive_duration": 3}
    ]"""
)


def mapper(ext: str = "ts") -> XtreamLiveMapper:
    return XtreamLiveMapper("http://prov.example:8080/", "alice", "s3cret", ext)


def test_live_streams_map_to_entries() -> None:
    m = mapper()
    entries = list(m.entries(STREAMS, CATEGORIES))
    assert [(e.line_no, e.provider_stream_id, e.name) for e in entries] == [
        (1, "101", "BBC News"),
        (2, "202", "Sky Sports"),
        (3, "303", "No Category"),
        (4, "404", "Stream 404"),
        (7, "707", "Unknown Category"),
    ]
    bbc, sky, nocat, float_id, unknown = entries
    assert bbc.url == "http://prov.example:8080/live/alice/s3cret/101.ts"
    assert (bbc.tvg_id, bbc.tvg_logo, bbc.tvg_chno, bbc.group) == (
        "bbcnews.uk",
        "http://logos/bbc.png",
        "1",
        "UK | News",
    )
    assert (bbc.catchup, bbc.catchup_days, bbc.catchup_source) == ("xc", 7, None)
    assert (bbc.tvg_name, bbc.is_vod, bbc.headers, bbc.attrs) == ("BBC News", False, {}, {})
    # Ids and numbers given as strings, empty strings and nulls.
    assert (sky.tvg_id, sky.tvg_logo, sky.tvg_chno, sky.group) == (None, None, "2", "Sports")
    assert (sky.catchup, sky.catchup_days) == (None, None)
    assert (nocat.tvg_chno, nocat.group, nocat.tvg_id) == (None, None, None)
    assert (nocat.catchup, nocat.catchup_days) == ("xc", None)
    # Float ids, and category_ids when category_id is missing.
    assert (float_id.url, float_id.tvg_chno, float_id.group) == (
        "http://prov.example:8080/live/alice/s3cret/404.ts",
        "4",
        "Sports",
    )
    assert unknown.group is None
    assert (unknown.catchup, unknown.catchup_days) == ("xc", 3)
    assert [(s.line_no, s.reason) for s in m.skipped] == [
        (5, "stream has no stream_id"),
        (6, "stream is not an object"),
    ]
    assert m.skipped_total == 2


def test_without_categories_and_m3u8_output() -> None:
    entries = list(mapper("m3u8").entries(STREAMS[:2]))
    assert [e.group for e in entries] == [None, None]
    assert entries[0].url == "http://prov.example:8080/live/alice/s3cret/101.m3u8"


def test_identity_matches_the_same_stream_from_an_m3u_plus_export() -> None:
    (from_api,) = mapper().entries(STREAMS[:1])
    export = '#EXTM3U\n#EXTINF:-1 tvg-id="bbcnews.uk",BBC News\nhttp://other-host:80/alice/s3cret/101\n'
    (from_m3u,) = M3uParser().feed_bytes([export.encode()])
    assert stream_identity(9, from_api) == stream_identity(9, from_m3u) == "9:xc:live:101"


def test_category_names() -> None:
    assert category_names(CATEGORIES) == {"1": "UK | News", "2": "Sports"}
    assert category_names([]) == {}


@pytest.mark.parametrize(
    ("payload", "code", "words"),
    [
        ({"user_info": {"auth": 0}}, "XTREAM_AUTH_FAILED", "check the username and password"),
        ({"user_info": {"auth": "0", "status": "Active"}}, "XTREAM_AUTH_FAILED", "username and password"),
        ({"user_info": {"auth": 1, "status": "Expired"}}, "XTREAM_ACCOUNT_INACTIVE", "status: Expired"),
        (
            {"user_info": {"auth": 1, "status": "Active"}},
            "XTREAM_BAD_RESPONSE",
            "an object instead of a list",
        ),
        ({}, "XTREAM_BAD_RESPONSE", "an object instead of a list"),
        (None, "XTREAM_BAD_RESPONSE", "with nothing instead of a list"),
        ("<html>", "XTREAM_BAD_RESPONSE", "with str instead of a list"),
        (3, "XTREAM_BAD_RESPONSE", "with int instead of a list"),
    ],
)
def test_non_list_responses_raise(payload: object, code: str, words: str) -> None:
    calls = [lambda: list(mapper().entries(payload)), lambda: expect_list(payload, "live streams")]
    if payload is not None:  # None as categories means "no categories".
        calls.append(lambda: list(mapper().entries([], payload)))
    for call in calls:
        with pytest.raises(UpstreamError) as info:
            call()
        assert info.value.code == code
        assert words in info.value.message
        assert "s3cret" not in info.value.message and "alice" not in info.value.message
        assert info.value.status == 502 and not info.value.transient


@pytest.mark.parametrize(
    ("server", "normalized"),
    [
        ("prov.example:8080", "http://prov.example:8080"),
        (" http://prov.example:8080/ ", "http://prov.example:8080"),
        ("https://prov.example/player_api.php", "https://prov.example"),
        ("http://prov.example/panel/get.php", "http://prov.example/panel"),
        ("http://[2001:db8::1]:8000", "http://[2001:db8::1]:8000"),
    ],
)
def test_normalize_server(server: str, normalized: str) -> None:
    assert normalize_server(server) == normalized


@pytest.mark.parametrize("server", ["", "ftp://prov.example", "http://", "http://[bad", "http://h:99999"])
def test_bad_server(server: str) -> None:
    with pytest.raises(Invalid) as info:
        normalize_server(server)
    assert info.value.code == "XTREAM_BAD_SERVER"
    assert info.value.fields == {"server": "not an http(s) address"}


def test_player_api_url() -> None:
    assert player_api_url("prov.example:8080", "alice", "s3cret") == (
        "http://prov.example:8080/player_api.php?username=alice&password=s3cret"
    )
    assert player_api_url("http://prov.example", "a b", "p&w=1/#", "get_live_streams") == (
        "http://prov.example/player_api.php?username=a+b&password=p%26w%3D1%2F%23&action=get_live_streams"
    )


def test_live_stream_url() -> None:
    assert live_stream_url("prov.example:8080", "alice", "s3cret", "101") == (
        "http://prov.example:8080/live/alice/s3cret/101.ts"
    )
    assert live_stream_url("http://prov.example", "a/b", "p?w", "7", "m3u8") == (
        "http://prov.example/live/a%2Fb/p%3Fw/7.m3u8"
    )
    with pytest.raises(Invalid) as info:
        live_stream_url("prov.example", "a", "b", "1", "mp4")
    assert info.value.code == "XTREAM_BAD_FORMAT"
    with pytest.raises(Invalid):
        XtreamLiveMapper("prov.example", "a", "b", "flv")


# The Xtream URL forms TIC builds and logs, through the one redact_url (backend.download).
@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        (
            "http://prov.example:8080/player_api.php?username=alice&password=s3cret&action=get_live_streams",
            "http://prov.example:8080/player_api.php?username=***&password=***&action=get_live_streams",
        ),
        (
            "http://prov.example/get.php?USERNAME=alice&type=m3u_plus&Password=s3cret&output=ts",
            "http://prov.example/get.php?USERNAME=***&type=m3u_plus&Password=***&output=ts",
        ),
        ("http://prov.example/live/alice/s3cret/101.ts", "http://prov.example/live/***/***/101.ts"),
        ("http://prov.example/movie/alice/s3cret/5.mkv", "http://prov.example/movie/***/***/5.mkv"),
        (
            "http://prov.example/timeshift/alice/s3cret/60/2024-01-01:10-00/101.ts",
            "http://prov.example/timeshift/***/***/60/2024-01-01:10-00/101.ts",
        ),
        ("http://prov.example:80/alice/s3cret/101", "http://prov.example:80/***/***/101"),
        ("https://alice:s3cret@cdn.example/hls/a.m3u8", "https://***@cdn.example/hls/a.m3u8"),
        ("https://cdn.example/hls/a.m3u8?token=s3cret&x=1", "https://cdn.example/hls/a.m3u8?token=***&x=1"),
        ("https://cdn.example/hls/a.m3u8?x=1", "https://cdn.example/hls/a.m3u8?x=1"),
    ],
)
def test_redact_url(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted
    assert "s3cret" not in redact_url(url)


def test_urls_built_here_redact_cleanly() -> None:
    for url in (
        player_api_url("prov.example:8080", "alice", "s3cret", "get_live_streams"),
        live_stream_url("prov.example:8080", "alice", "s3cret", "101"),
    ):
        assert "s3cret" not in redact_url(url) and "alice" not in redact_url(url)
