"""The M3U parser against the real playlists in ../shared/corpus/m3u, generated ones, and hostile input."""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import pytest

from backend.playlists.parser import (
    MAX_LINE_BYTES,
    MAX_PROBLEMS,
    STREAM_SCHEMES,
    InvalidPlaylist,
    ParsedPlaylist,
    PlaylistEntry,
    PlaylistParser,
    parse_playlist,
)
from tests.fakes.upstream import CORPUS_DIR, LOGIN_PAGE, generate_corpus

M3U_DIR = CORPUS_DIR / "m3u"

# file -> (entries, problems by code, EPG URLs in the header). Entry counts are the #EXTINF counts
# in ../shared/corpus/SOURCES.md minus the broken entries it lists.
CORPUS: dict[str, tuple[int, dict[str, int], int]] = {
    "aptv__iptv.m3u": (120, {}, 2),
    "aptv__sdyd.m3u": (457, {}, 1),
    "aptv__video.m3u": (3, {}, 0),
    "fanmingming-live__ipv6.m3u": (411, {}, 0),
    "fanmingming-live__radio_index.m3u": (450, {"MISSING_URL": 3}, 0),
    "freetv-iptv__playlist.m3u8": (2050, {"NOT_A_URL": 9}, 101),
    "freetv-iptv__playlist_france.m3u8": (32, {}, 101),
    "freetv-iptv__playlist_spain.m3u8": (51, {}, 101),
    "freetv-iptv__playlist_zz_vod_it.m3u8": (155, {}, 101),
    "iptv-playlist-parser__duplicate.m3u": (2, {}, 1),
    "iptv-playlist-parser__kodi.m3u": (1, {}, 1),
    "iptv-playlist-parser__pipe.m3u": (2, {}, 0),
    "iptv-playlist-parser__url_tvg.m3u": (1, {}, 1),
    "iptv-playlist-parser__user_agent.m3u": (1, {}, 0),
    "iptv-playlist-parser__vlcopt.m3u": (1, {}, 0),
    "ipytv__iptv-org-index-2022.m3u": (4601, {"MISSING_URL": 1}, 0),
    "ipytv__m3u8_plain.m3u": (4, {}, 0),
    "ipytv__m3u_plus.m3u": (4, {}, 1),
    "m3ukit__demoWithCustomKeys.m3u": (3, {}, 0),
    "m3ukit__demoWithUnknownDirective.m3u": (3, {}, 0),
    "yuechan-live__IPTV.m3u": (90, {}, 0),
    "yuechan-live__Radio.m3u": (100, {}, 0),
}

# (file, line of the #EXTINF, expected fields): what makes each file interesting, per SOURCES.md.
SPOT_CHECKS: list[tuple[str, int, dict[str, object]]] = [
    (
        "aptv__video.m3u",  # no comma before the title
        2,
        {"name": "Video1", "url": "https://img.whalenas.com:283/file/video1.mp4", "attributes": {}},
    ),
    (
        "aptv__iptv.m3u",  # catch-up inherited from the #EXTM3U line, per-entry user agent
        6,
        {
            "name": "CCTV1",
            "tvg_id": "CCTV1",
            "group_title": "央视IPV4",
            "http_headers": {"User-Agent": "AptvPlayer-UA"},
            "catchup": "append",
            "catchup_source": "?playseek=${(b)yyyyMMddHHmmss}-${(e)yyyyMMddHHmmss}",
        },
    ),
    ("aptv__iptv.m3u", 32, {"name": "CCTV13", "http_headers": {}}),  # misspelt ghttp-user-agent
    ("aptv__iptv.m3u", 38, {"http_headers": {"User-Agent": "iPhone", "Referer": "https:/aptv.app/"}}),
    (
        "aptv__iptv.m3u",  # http-header="Referer=..."
        65,
        {"http_headers": {"User-Agent": "iPhone", "Referer": "https://live.kankanews.com/"}},
    ),
    (
        "yuechan-live__IPTV.m3u",  # multicast URL, catch-up, channel-number
        2,
        {
            "name": "CCTV-1 综合",
            "tvg_name": "CCTV-1高清",
            "url": "rtp://239.3.1.129:8008",
            "tvg_chno": "1",
            "catchup": "default",
            "catchup_source": "rtsp://61.135.88.136/TVOD/88888892/224/3221225880/"
            "10000100000000060000000000025506_0.smil?playseek=${(b)yyyyMMddHHmmss}-${(e)yyyyMMddHHmmss}",
        },
    ),
    (
        "yuechan-live__IPTV.m3u",  # a stray comma between two attributes
        172,
        {"name": "重温经典", "group_title": "数字", "tvg_chno": "349"},
    ),
    ("yuechan-live__IPTV.m3u", 162, {"name": "动作影院"}),  # two commas before the title
    (
        "fanmingming-live__ipv6.m3u",
        2,
        {
            "name": "CCTV-1",
            "tvg_id": "CCTV1",
            "url": "http://[2409:8087:3869:8021:1001::e5]:6610/PLTV/88888910/224/3221225642/index.m3u8",
        },
    ),
    (
        "fanmingming-live__radio_index.m3u",  # a stray quote before the URL
        338,
        {
            "name": "延边文艺生活广播",
            "url": "https://satellitepull.cnr.cn/live/wxybwyshgb/playlist.m3u8",
            "radio": True,
            "tvg_id": None,
            "tvg_logo": None,
        },
    ),
    (
        "ipytv__iptv-org-index-2022.m3u",  # empty attributes become None, the raw ones stay
        2,
        {"name": "1 Music Channel", "tvg_id": None, "tvg_name": "Music Channel", "group_title": "Music"},
    ),
    (
        "ipytv__m3u_plus.m3u",
        6,
        {
            "name": "Cielo",
            "http_headers": {
                "User-Agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:76.0) Gecko/20100101 Firefox/76.0"
            },
        },
    ),
    ("ipytv__m3u_plus.m3u", 10, {"tvg_shift": -0.5, "tvg_id": None}),
    ("ipytv__m3u_plus.m3u", 13, {"tvg_id": "-10.5", "name": "----I N T R A T T E N I M E N T O----"}),
    ("ipytv__m3u8_plain.m3u", 8, {"name": "SANTUÁRIO DE FÁTIMA", "attributes": {}}),
    (
        "iptv-playlist-parser__kodi.m3u",  # #KODIPROP lines and a |user-agent= suffix
        7,
        {
            "name": "RTP 1",
            "url": "https://streaming-live.rtp.pt/liverepeater/rtpClean1HD.smil/playlist.m3u8",
            "http_headers": {"User-Agent": "RTP Play/2.0.26 (Linux;Android 11) ExoPlayerLib/2.11.8"},
            "kodi_props": {
                "inputstream": "inputstream.adaptive",
                "inputstream.adaptive.manifest_type": "hls",
            },
        },
    ),
    (
        "iptv-playlist-parser__pipe.m3u",
        2,
        {
            "duration": 17.0,
            "url": "http://192.54.104.122:8080/d/abcdef/video.mp4",
            "http_headers": {
                "User-Agent": "Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; AS; rv:11.0) like Gecko",
                "Referer": "http://180upload.abc/embed-uaqmgcckhpcl.html",
            },
        },
    ),
    (
        "iptv-playlist-parser__pipe.m3u",  # user agent from #EXTVLCOPT, referer from the pipe
        4,
        {
            "duration": 555.0,
            "url": "http://my-news-stream:8999/d/letsplay/video.mp4",
            "http_headers": {
                "User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_14_5) AppleWebKit/537.36 "
                "(KHTML, like Gecko) Chrome/76.0.3809.25 Safari/537.36",
                "Referer": "http://test.abc/blank.html",
            },
        },
    ),
    (
        "iptv-playlist-parser__vlcopt.m3u",  # group-title wins over #EXTGRP; quoted option value
        2,
        {
            "duration": 0.0,
            "name": "Test Channel",
            "group_title": "Entertainment",
            "http_headers": {"User-Agent": "Dalvik/2.1.0 (Linux; U; Android 6.0.1;)"},
            "vlc_options": {"http-user-agent": "Dalvik/2.1.0 (Linux; U; Android 6.0.1;)"},
        },
    ),
    (
        "iptv-playlist-parser__user_agent.m3u",
        2,
        {
            "http_headers": {
                "User-Agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 12_2 like Mac OS X) "
                "AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"
            }
        },
    ),
    (
        "m3ukit__demoWithCustomKeys.m3u",  # a non-standard attribute is kept as written
        4,
        {
            "group_title": "Группа1",
            "attributes": {
                "group_id": "1",
                "group-title": "Группа1",
                "tvg-name": "Ultra HD Cinema 4K UHD",
                "tvg-logo": "http://site.domain/channel1_logo.png",
            },
        },
    ),
    ("m3ukit__demoWithCustomKeys.m3u", 7, {"name": "ULTRA REX 4K UHD", "group_title": "Кино"}),
    (
        "m3ukit__demoWithUnknownDirective.m3u",
        7,
        {"group_title": "Кино", "http_headers": {"User-Agent": "OnlineTvAppDroid"}},
    ),
    (
        "freetv-iptv__playlist_zz_vod_it.m3u8",  # DASH
        6,
        {"url": "https://live3.msf.cdn.mediaset.net/content/dash_d0_clr_vos/live/channel(b7)/manifest.mpd"},
    ),
]


def corpus_bytes(name: str) -> bytes:
    return (M3U_DIR / name).read_bytes()


def raw_lines(name: str) -> list[str]:
    return corpus_bytes(name).decode("utf-8").splitlines()


def parse_in_chunks(data: bytes, size: int) -> ParsedPlaylist:
    parser = PlaylistParser()
    entries: list[PlaylistEntry] = []
    for start in range(0, len(data), size):
        entries += parser.feed(data[start : start + size])
    entries += parser.close()
    assert parser.header is not None
    return ParsedPlaylist(parser.header, entries, parser.problems, parser.problem_count)


def test_every_corpus_playlist_has_expectations() -> None:
    assert sorted(path.name for path in M3U_DIR.iterdir()) == sorted(CORPUS)


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_corpus_playlist_counts(name: str) -> None:
    entries, problems, epg_urls = CORPUS[name]
    playlist = parse_playlist(corpus_bytes(name))
    assert len(playlist.entries) == entries
    codes: dict[str, int] = {}
    for problem in playlist.problems:
        codes[problem.code] = codes.get(problem.code, 0) + 1
    assert codes == problems
    assert playlist.problem_count == sum(problems.values())
    assert len(playlist.header.epg_urls) == epg_urls


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_corpus_entries_are_usable_and_point_at_their_extinf_line(name: str) -> None:
    lines = raw_lines(name)
    playlist = parse_playlist(corpus_bytes(name))
    previous = 0
    for entry in playlist.entries:
        assert entry.line > previous
        previous = entry.line
        assert lines[entry.line - 1].startswith("#EXTINF")
        assert entry.name and entry.name == entry.name.strip() and not entry.name.startswith(",")
        assert entry.url.split("://")[0].lower() in STREAM_SCHEMES
        assert "|" not in entry.url and entry.url == entry.url.strip()
        # The URL comes from the first line after the #EXTINF that is neither blank nor a tag.
        url_line = next(line for line in lines[entry.line :] if line.strip() and not line.startswith("#"))
        assert entry.url in url_line


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_streaming_in_small_chunks_gives_the_same_result(name: str) -> None:
    data = corpus_bytes(name)
    whole = parse_playlist(data)
    assert parse_in_chunks(data, 7) == whole
    assert parse_in_chunks(data, 4096) == whole


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_crlf_and_cr_line_endings_change_nothing(name: str) -> None:
    data = corpus_bytes(name)
    whole = parse_playlist(data)
    assert parse_in_chunks(data.replace(b"\n", b"\r\n"), 5) == whole
    assert parse_playlist(data.replace(b"\n", b"\r")) == whole


@pytest.mark.parametrize(("name", "line", "expected"), SPOT_CHECKS, ids=lambda v: str(v)[:40])
def test_corpus_spot_checks(name: str, line: int, expected: dict[str, object]) -> None:
    by_line = {entry.line: entry for entry in parse_playlist(corpus_bytes(name)).entries}
    entry = by_line[line]
    assert {field: getattr(entry, field) for field in expected} == expected


def test_entries_without_a_url_are_reported_at_their_own_line() -> None:
    playlist = parse_playlist(corpus_bytes("fanmingming-live__radio_index.m3u"))
    assert [(p.line, p.code) for p in playlist.problems] == [
        (376, "MISSING_URL"),
        (417, "MISSING_URL"),
        (418, "MISSING_URL"),
    ]
    playlist = parse_playlist(corpus_bytes("ipytv__iptv-org-index-2022.m3u"))
    assert [(p.line, p.code) for p in playlist.problems] == [(7042, "MISSING_URL")]
    assert "Новый мир" in playlist.problems[0].message
    # The copy that follows the broken one is kept.
    assert {e.line: e.name for e in playlist.entries}[7044] == "Новый мир"


def test_placeholder_instead_of_a_url_skips_the_entry() -> None:
    lines = raw_lines("freetv-iptv__playlist.m3u8")
    playlist = parse_playlist(corpus_bytes("freetv-iptv__playlist.m3u8"))
    assert len(playlist.problems) == 9
    for problem in playlist.problems:
        assert problem.code == "NOT_A_URL"
        assert lines[problem.line - 1].startswith("#EXTINF")
        assert lines[problem.line] == "[NO PUBLIC STREAM]"
    assert "NHK BSP4K" not in {entry.name for entry in playlist.entries}


def test_header_epg_urls_keep_their_order_and_drop_blanks() -> None:
    header = parse_playlist(corpus_bytes("aptv__iptv.m3u")).header
    assert header.epg_urls == ("https://epg.aptv.app/pp.xml.gz", "https://epg.aptv.app/xml")
    assert header.attributes["catchup"] == "append"
    header = parse_playlist(corpus_bytes("iptv-playlist-parser__url_tvg.m3u")).header
    assert header.epg_urls == ("http://195.154.221.171/epg/guidealbania.xml.gz",)
    header = parse_playlist(corpus_bytes("freetv-iptv__playlist.m3u8")).header
    assert header.epg_urls[0] == "https://epgshare01.online/epgshare01/epg_ripper_AL1.xml.gz"
    assert all(url == url.strip() and url.startswith("https://") for url in header.epg_urls)


def test_duplicate_entries_are_all_kept() -> None:
    first, second = parse_playlist(corpus_bytes("iptv-playlist-parser__duplicate.m3u")).entries
    assert (first.line, second.line) == (2, 4)
    assert first.url == second.url == "https://agromais/playlist.m3u8"
    assert first.tvg_id == second.tvg_id == "Agromais.br"


def test_long_query_strings_survive_intact() -> None:
    lines = raw_lines("freetv-iptv__playlist_zz_vod_it.m3u8")
    long_urls = {line for line in lines if not line.startswith("#") and len(line) > 500}
    assert long_urls
    urls = {
        entry.url for entry in parse_playlist(corpus_bytes("freetv-iptv__playlist_zz_vod_it.m3u8")).entries
    }
    assert long_urls <= urls


async def test_generated_playlist(tmp_path: Path) -> None:
    path = await generate_corpus("m3u", tmp_path / "gen.m3u", entries=3000, seed=7)
    text = path.read_text(encoding="utf-8")
    playlist = parse_in_chunks(path.read_bytes(), 65536)
    assert len(playlist.entries) == 3000
    assert playlist.problem_count == 0
    assert len(playlist.header.epg_urls) == 2
    assert all(entry.url.startswith("http://127.0.0.1:") for entry in playlist.entries)
    piped = [line.split("|")[0] for line in text.splitlines() if line.startswith("http") and "|" in line]
    by_url = {entry.url: entry for entry in playlist.entries}
    assert piped
    for url in piped:
        assert "User-Agent" in by_url[url].http_headers
    kodi = sum(1 for line in text.splitlines() if line.startswith("#KODIPROP:inputstream="))
    assert kodi > 0
    assert sum(1 for e in playlist.entries if e.kodi_props.get("inputstream")) == kodi


def test_result_pickles_for_a_worker_process() -> None:
    playlist = parse_playlist(corpus_bytes("aptv__iptv.m3u"))
    assert pickle.loads(pickle.dumps(playlist)) == playlist


# Input that is not a playlist: a clear error, never a half-import.
@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"", "empty"),
        (b"\n \r\n\t\n", "empty"),
        (LOGIN_PAGE, "HTML"),
        (b'{"user_info":{"auth":0}}', "JSON"),
        (b"Invalid credentials\n", "not an M3U playlist"),
        (b"# just a comment\n", "no #EXTM3U"),
        (b"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:6\n#EXTINF:6.0,\nseg1.ts\n", "HLS"),
        (b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1280000\nlow/index.m3u8\n", "HLS"),
        ("#EXTM3U\n#EXTINF:-1,A\nhttp://a/b\n".encode("utf-16"), "UTF-16"),
    ],
)
def test_not_a_playlist(data: bytes, says: str) -> None:
    with pytest.raises(InvalidPlaylist, match=says) as caught:
        parse_playlist(data)
    assert caught.value.code == "INVALID_PLAYLIST"
    assert not caught.value.transient


def test_error_never_echoes_the_page() -> None:
    page = b"<html><body>Account user=alice password=hunter2 expired</body></html>"
    with pytest.raises(InvalidPlaylist) as caught:
        parse_playlist(page)
    assert "hunter2" not in caught.value.message


def test_an_endless_line_is_refused_whether_streamed_or_not() -> None:
    data = b"#EXTM3U\n#EXTINF:-1," + b"x" * (MAX_LINE_BYTES + 1) + b"\nhttp://a/b\n"
    with pytest.raises(InvalidPlaylist, match="longer than"):
        parse_playlist(data)
    parser = PlaylistParser()
    with pytest.raises(InvalidPlaylist, match="longer than"):
        for start in range(0, len(data), 65536):
            parser.feed(data[start : start + 65536])


def test_dangerous_schemes_are_dropped() -> None:
    playlist = parse_playlist(
        b"#EXTM3U\n"
        b"#EXTINF:-1,Shell\npipe:///usr/bin/ffmpeg -i http://x -f mpegts pipe:1\n"
        b"#EXTINF:-1,Disk\nfile:///etc/passwd\n"
        b'#EXTINF:-1 tvg-logo="javascript:alert(1)",Fine\nudp://@239.0.0.1:1234\n'
    )
    assert [(p.code, p.line) for p in playlist.problems] == [
        ("UNSUPPORTED_SCHEME", 2),
        ("UNSUPPORTED_SCHEME", 4),
    ]
    (entry,) = playlist.entries
    assert (entry.name, entry.url, entry.tvg_logo) == ("Fine", "udp://@239.0.0.1:1234", None)
    assert entry.attributes["tvg-logo"] == "javascript:alert(1)"


def test_headers_cannot_smuggle_line_breaks() -> None:
    playlist = parse_playlist(
        b"#EXTM3U\n"
        b'#EXTHTTP:{"User-Agent":"ok\\r\\nX-Evil: 1","Cookie":"a=b"}\n'
        b"#EXTINF:-1,A\nhttp://a/b\n"
        b"#EXTHTTP:not json\n#EXTINF:-1,B\nhttp://a/c\n"
    )
    first, second = playlist.entries
    assert first.http_headers == {"Cookie": "a=b"}
    assert second.http_headers == {}
    assert [p.code for p in playlist.problems] == ["BAD_EXTHTTP"]


def test_header_defaults_apply_unless_the_entry_overrides_them() -> None:
    playlist = parse_playlist(
        b'#EXTM3U http-user-agent="Box/1" catchup="shift" catchup-days="3" tvg-shift="+1"\n'
        b"#EXTINF:-1,Plain\nhttp://a/1\n"
        b'#EXTINF:-1 user-agent="Own/2" catchup="flussonic" catchup-days="7" tvg-shift="0",Own\nhttp://a/2\n'
        b"#EXTINF:-1,Piped\nhttp://a/3|User-Agent=Pipe%2F3\n"
    )
    plain, own, piped = playlist.entries
    assert (plain.http_headers, plain.catchup, plain.catchup_days, plain.tvg_shift) == (
        {"User-Agent": "Box/1"},
        "shift",
        3,
        1.0,
    )
    assert (own.http_headers, own.catchup, own.catchup_days, own.tvg_shift) == (
        {"User-Agent": "Own/2"},
        "flussonic",
        7,
        0.0,
    )
    assert (piped.url, piped.http_headers) == ("http://a/3", {"User-Agent": "Pipe/3"})


def test_sloppy_but_readable_input() -> None:
    data = (
        '\ufeff#EXTINF:-1 tvg-ID="Up.tv" tvg-name=\'Single Quoted\' tvg-chno=12 group-title="G" Title\n'
        "  http://a/1  \n"
        "\n"
        "http://host/path/My%20Channel.ts\n"
        "http://host/\n"
        '#EXTINF:-1 tvg-id="x" tvg-shift="nan" catchup-days="many",\n'
        "http://a/2\n"
        '#EXTINF:-1 tvg-id="x" tvg-name="Named", \n'
        "http://a/3\n"
    ).encode()
    playlist = parse_playlist(data)
    first, bare, host_only, unnamed, named = playlist.entries
    assert [p.code for p in playlist.problems] == ["MISSING_HEADER"]
    assert (first.name, first.tvg_id, first.tvg_name, first.tvg_chno, first.group_title, first.url) == (
        "Title",
        "Up.tv",
        "Single Quoted",
        "12",
        "G",
        "http://a/1",
    )
    assert (bare.name, bare.line, bare.attributes) == ("My Channel", 4, {})
    assert host_only.name == "host"
    assert (unnamed.name, unnamed.tvg_shift, unnamed.catchup_days) == ("x", None, None)
    assert named.name == "Named"


def test_legacy_8bit_text_is_read_as_windows_1252() -> None:
    playlist = parse_playlist(
        b"#EXTM3U\n#EXTINF:-1,Caf\xe9 T\xe9l\xe9\nhttp://a/1\n#EXTINF:-1,\xc9t\xe9\nhttp://a/2\n"
    )
    assert [e.name for e in playlist.entries] == ["Café Télé", "Été"]
    assert [p.code for p in playlist.problems] == ["NOT_UTF8"]


def test_problems_are_capped_but_counted() -> None:
    data = b"#EXTM3U\n" + b"#EXTINF:-1,Broken\n" * (MAX_PROBLEMS + 50) + b"#EXTINF:-1,Fine\nhttp://a/1\n"
    playlist = parse_playlist(data)
    assert [e.name for e in playlist.entries] == ["Fine"]
    assert len(playlist.problems) == MAX_PROBLEMS
    assert playlist.problem_count == MAX_PROBLEMS + 50


@pytest.mark.parametrize("name", ["ipytv__m3u_plus.m3u", "aptv__iptv.m3u", "iptv-playlist-parser__kodi.m3u"])
def test_mangled_playlists_never_crash(name: str) -> None:
    """Truncations, deletions and random bytes: either a result or InvalidPlaylist, nothing else."""
    data = corpus_bytes(name)
    rng = random.Random(name)
    for _ in range(300):
        mangled = bytearray(data)
        for _ in range(rng.randint(1, 6)):
            at = rng.randrange(len(mangled))
            if rng.random() < 0.5:
                del mangled[at : at + rng.randint(1, 40)]
            else:
                mangled[at:at] = bytes(
                    rng.choice(b'",=|:#\r\n \xff\xfe\xc3') for _ in range(rng.randint(1, 8))
                )
        try:
            playlist = parse_in_chunks(bytes(mangled), rng.randint(1, 512))
        except InvalidPlaylist:
            continue
        for entry in playlist.entries:
            assert entry.name
            assert entry.url.split("://")[0].lower() in STREAM_SCHEMES
