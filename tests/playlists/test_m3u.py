"""Tests for the M3U parser: every corpus playlist, each parsing rule, and a generated large playlist."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

from backend.playlists.m3u import (
    MAX_LINE,
    MAX_SKIPPED_KEPT,
    STREAM_SCHEMES,
    M3uEntry,
    M3uParser,
    looks_like_m3u,
    parse_m3u_file,
    stream_identity,
    why_not_m3u,
)

SHARED = Path(os.environ.get("TIC_SHARED_DIR", Path(__file__).resolve().parents[2].parent / "shared"))
CORPUS = SHARED / "corpus" / "m3u"
GEN_CORPUS = SHARED / "tools" / "gen_corpus.py"


def parse_file(name: str, base_url: str | None = None) -> tuple[M3uParser, list[M3uEntry]]:
    parser, entries = parse_m3u_file(CORPUS / name, base_url)
    return parser, list(entries)


def parse_text(text: str, base_url: str | None = None) -> tuple[M3uParser, list[M3uEntry]]:
    parser = M3uParser(base_url)
    return parser, list(parser.feed_bytes([text.encode("utf-8")]))


def only(entries: list[M3uEntry]) -> M3uEntry:
    assert len(entries) == 1, entries
    return entries[0]


def by_line(entries: Iterable[M3uEntry]) -> dict[int, M3uEntry]:
    return {e.line_no: e for e in entries}


# --- every corpus file ----------------------------------------------------------------------------

# file -> (#EXTINF lines, entries, 1-based EXTINF lines reported as skipped). EXTINF and entry counts
# are those of corpus/SOURCES.md; freetv's skips are its nine "[NO PUBLIC STREAM]" placeholder lines.
CORPUS_COUNTS: dict[str, tuple[int, int, list[int]]] = {
    "aptv__iptv.m3u": (120, 120, []),
    "aptv__sdyd.m3u": (457, 457, []),
    "aptv__video.m3u": (3, 3, []),
    "fanmingming-live__ipv6.m3u": (411, 411, []),
    "fanmingming-live__radio_index.m3u": (453, 450, [376, 417, 418]),
    "freetv-iptv__playlist.m3u8": (2059, 2050, [2168, 2180, 2182, 2184, 2190, 2192, 2194, 2196, 2198]),
    "freetv-iptv__playlist_france.m3u8": (32, 32, []),
    "freetv-iptv__playlist_spain.m3u8": (51, 51, []),
    "freetv-iptv__playlist_zz_vod_it.m3u8": (155, 155, []),
    "iptv-playlist-parser__duplicate.m3u": (2, 2, []),
    "iptv-playlist-parser__kodi.m3u": (1, 1, []),
    "iptv-playlist-parser__pipe.m3u": (2, 2, []),
    "iptv-playlist-parser__url_tvg.m3u": (1, 1, []),
    "iptv-playlist-parser__user_agent.m3u": (1, 1, []),
    "iptv-playlist-parser__vlcopt.m3u": (1, 1, []),
    "ipytv__iptv-org-index-2022.m3u": (4602, 4601, [7042]),
    "ipytv__m3u8_plain.m3u": (4, 4, []),
    "ipytv__m3u_plus.m3u": (4, 4, []),
    "m3ukit__demoWithCustomKeys.m3u": (3, 3, []),
    "m3ukit__demoWithUnknownDirective.m3u": (3, 3, []),
    "yuechan-live__IPTV.m3u": (90, 90, []),
    "yuechan-live__Radio.m3u": (100, 100, []),
}


def test_every_corpus_file_is_listed() -> None:
    assert sorted(p.name for p in CORPUS.iterdir()) == sorted(CORPUS_COUNTS)


@pytest.mark.parametrize("name", sorted(CORPUS_COUNTS))
def test_corpus_file_counts(name: str) -> None:
    extinf, expected_entries, skipped_lines = CORPUS_COUNTS[name]
    raw = (CORPUS / name).read_bytes()
    assert raw.count(b"#EXTINF") == extinf
    parser, entries = parse_file(name)
    assert len(entries) == expected_entries
    assert [s.line_no for s in parser.skipped] == skipped_lines
    assert parser.skipped_total == len(skipped_lines)
    assert parser.lines_read == len(raw.splitlines())
    # Every entry comes from its own EXTINF, in file order, and has a name and an absolute URL.
    lines = [e.line_no for e in entries]
    assert lines == sorted(set(lines))
    text_lines = raw.decode("utf-8").splitlines()
    for e in entries:
        assert text_lines[e.line_no - 1].startswith("#EXTINF")
        assert e.name and e.name == e.name.strip()
        assert "://" in e.url and "|" not in e.url


@pytest.mark.parametrize("name", sorted(CORPUS_COUNTS))
def test_corpus_file_same_result_in_any_chunking(name: str) -> None:
    raw = (CORPUS / name).read_bytes()
    whole = M3uParser()
    expected = list(whole.feed_bytes([raw]))
    # One-byte chunks are slow in Python, so the big files get them only for their first 200 KB.
    small = raw if len(raw) < 200_000 else raw[:200_000].rsplit(b"\n", 1)[0] + b"\n"
    one_byte = M3uParser()
    expected_small = list(M3uParser().feed_bytes([small]))
    assert list(one_byte.feed_bytes(small[i : i + 1] for i in range(len(small)))) == expected_small
    for size in (7, 4096):
        parser = M3uParser()
        got = list(parser.feed_bytes(raw[i : i + size] for i in range(0, len(raw), size)))
        assert got == expected, size
        assert parser.skipped == whole.skipped
        assert parser.lines_read == whole.lines_read
    # Text lines (as from a text-mode file) give the same entries as bytes.
    by_text = M3uParser()
    assert list(by_text.feed_lines(raw.decode("utf-8").split("\n"))) == expected


def test_iptv_org_index_broken_entry_and_empty_values() -> None:
    parser, entries = parse_file("ipytv__iptv-org-index-2022.m3u")
    (skip,) = parser.skipped
    assert skip.line_no == 7042
    assert "7044" in skip.reason  # The next EXTINF, after a blank line.
    # The duplicate that follows the broken EXTINF is the one kept.
    assert by_line(entries)[7044].name == "Новый мир"
    # Empty attribute values are kept as written but are not treated as values.
    assert sum(e.attrs["tvg-id"] == "" for e in entries) == 3574
    assert sum(e.tvg_id is None for e in entries) == 3574
    assert sum(e.group is None for e in entries) == 3028
    assert all(len(e.attrs) == 7 for e in entries)
    assert sum(bool(e.vlc_options) for e in entries) == 12
    assert sum("User-Agent" in e.headers for e in entries) == 11
    assert by_line(entries)[5491].headers == {"Referer": "https://www.teleliban.com.lb/live"}
    # A quoted EXTVLCOPT value loses its quotes; a trailing space goes too.
    agents = {e.headers["User-Agent"] for e in entries if "User-Agent" in e.headers}
    assert "Mozilla/5.0 (Windows NT 10.0; Win64; x64)" in agents
    assert all(a == a.strip() and '"' not in a for a in agents)


def test_radio_index_three_broken_entries() -> None:
    parser, entries = parse_file("fanmingming-live__radio_index.m3u")
    assert [(s.line_no, s.reason) for s in parser.skipped] == [
        (376, "#EXTINF has no URL (next #EXTINF is on line 377)"),
        (417, "#EXTINF has no URL (next #EXTINF is on line 418)"),
        (418, "#EXTINF has no URL (next #EXTINF is on line 419)"),
    ]
    # All three broken EXTINFs carry radio="true" too.
    radio = (CORPUS / "fanmingming-live__radio_index.m3u").read_bytes().count(b'radio="true"')
    assert sum(e.attrs.get("radio") == "true" for e in entries) == radio - 3


def test_radio_index_stray_quote_before_the_url() -> None:
    # Line 339 is `"https://...` with an opening quote and no closing one.
    _, entries = parse_file("fanmingming-live__radio_index.m3u")
    entry = by_line(entries)[338]
    assert (entry.name, entry.url) == (
        "延边文艺生活广播",
        "https://satellitepull.cnr.cn/live/wxybwyshgb/playlist.m3u8",
    )
    assert (entry.tvg_id, entry.tvg_logo, entry.attrs["radio"]) == (None, None, "true")


def test_aptv_referer_attribute_is_kept_as_written() -> None:
    _, entries = parse_file("aptv__iptv.m3u")
    assert by_line(entries)[38].headers == {"User-Agent": "iPhone", "Referer": "https:/aptv.app/"}


def test_pipe_headers() -> None:
    _, (first, second) = parse_file("iptv-playlist-parser__pipe.m3u")
    assert first.url == "http://192.54.104.122:8080/d/abcdef/video.mp4"
    assert first.duration == 17.0
    assert first.headers == {
        "User-Agent": "Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; AS; rv:11.0) like Gecko",
        "Referer": "http://180upload.abc/embed-uaqmgcckhpcl.html",
    }
    assert first.is_vod
    assert second.duration == 555.0
    assert second.url == "http://my-news-stream:8999/d/letsplay/video.mp4"
    # The user agent comes from #EXTVLCOPT, the referrer from the pipe suffix.
    assert second.headers == {
        "User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_14_5) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/76.0.3809.25 Safari/537.36",
        "Referer": "http://test.abc/blank.html",
    }
    assert second.vlc_options == {"http-user-agent": second.headers["User-Agent"]}
    assert first.vlc_options == {}


def test_vlcopt_quoted_value_and_extgrp_conflict() -> None:
    _, entries = parse_file("iptv-playlist-parser__vlcopt.m3u")
    e = only(entries)
    assert e.duration == 0.0
    assert (e.name, e.tvg_name) == ("Test Channel", "TestChannel")
    assert e.group == "Entertainment"  # group-title wins over #EXTGRP.
    assert e.vlc_options == {"http-user-agent": "Dalvik/2.1.0 (Linux; U; Android 6.0.1;)"}
    assert e.headers == {"User-Agent": "Dalvik/2.1.0 (Linux; U; Android 6.0.1;)"}


def test_kodi_props_comments_and_pipe_user_agent() -> None:
    parser, entries = parse_file("iptv-playlist-parser__kodi.m3u")
    e = only(entries)
    assert parser.epg_urls == ["https://github.com/LITUATUI/M3UPT/raw/main/epg/epg-vodafone.xml.gz"]
    assert (e.name, e.group, e.tvg_id) == ("RTP 1", "TV", "rtp1hd.tv.vodafone.pt")
    assert e.kodi_props == {
        "inputstream": "inputstream.adaptive",
        "inputstream.adaptive.manifest_type": "hls",
    }
    assert e.url == "https://streaming-live.rtp.pt/liverepeater/rtpClean1HD.smil/playlist.m3u8"
    assert e.headers == {"User-Agent": "RTP Play/2.0.26 (Linux;Android 11) ExoPlayerLib/2.11.8"}


@pytest.mark.parametrize("name", ["iptv-playlist-parser__url_tvg.m3u", "iptv-playlist-parser__duplicate.m3u"])
def test_url_tvg_header(name: str) -> None:
    parser, _ = parse_file(name)
    assert parser.header == {"url-tvg": "http://195.154.221.171/epg/guidealbania.xml.gz"}
    assert parser.epg_urls == ["http://195.154.221.171/epg/guidealbania.xml.gz"]


def test_user_agent_attribute() -> None:
    _, entries = parse_file("iptv-playlist-parser__user_agent.m3u")
    e = only(entries)
    agent = "Mozilla/5.0 (iPhone; CPU iPhone OS 12_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"
    assert e.attrs["user-agent"] == agent
    assert e.headers == {"User-Agent": agent}
    assert (e.name, e.group, e.tvg_id) == ("Agromais", "Entertainment", "Agromais.br")


def test_duplicate_entries_are_both_kept_with_one_identity() -> None:
    _, (a, b) = parse_file("iptv-playlist-parser__duplicate.m3u")
    assert (a.line_no, b.line_no) == (2, 4)
    a.line_no = b.line_no
    assert a == b
    assert stream_identity(1, a) == stream_identity(1, b)


def test_aptv_global_catchup_and_app_directives() -> None:
    parser, entries = parse_file("aptv__iptv.m3u")
    assert parser.epg_urls == ["https://epg.aptv.app/pp.xml.gz", "https://epg.aptv.app/xml"]
    playseek = "?playseek=${(b)yyyyMMddHHmmss}-${(e)yyyyMMddHHmmss}"
    assert parser.header["catchup-source"] == playseek
    # Entries inherit the header's catchup, but their attrs stay as written.
    assert all(e.catchup == "append" and e.catchup_source == playseek for e in entries)
    inherited = [e for e in entries if "catchup" not in e.attrs]
    assert inherited and inherited[0].line_no == 6
    first = entries[0]
    assert (first.line_no, first.name, first.group) == (6, "CCTV1", "央视IPV4")
    assert first.headers == {"User-Agent": "AptvPlayer-UA"}
    # The misspelt attribute is kept but is not a header.
    cctv13 = by_line(entries)[32]
    assert cctv13.attrs["ghttp-user-agent"] == "AptvPlayer-UA"
    assert cctv13.headers == {}
    # http-header="Referer=..." becomes a header.
    assert by_line(entries)[65].headers == {
        "User-Agent": "iPhone",
        "Referer": "https://live.kankanews.com/",
    }
    assert sum("User-Agent" in e.headers for e in entries) == 66


def test_aptv_no_final_newline() -> None:
    raw = (CORPUS / "aptv__sdyd.m3u").read_bytes()
    assert not raw.endswith(b"\n")
    _, entries = parse_file("aptv__sdyd.m3u")
    assert entries[-1].url == raw.rsplit(b"\n", 1)[1].decode()
    assert entries[-1].name == "青岛6 576"


def test_aptv_video_extinf_without_comma() -> None:
    _, entries = parse_file("aptv__video.m3u")
    assert [(e.name, e.url, e.is_vod) for e in entries] == [
        (f"Video{i}", f"https://img.whalenas.com:283/file/video{i}.mp4", True) for i in (1, 2, 3)
    ]
    assert all(e.duration == -1.0 and e.attrs == {} for e in entries)


def test_yuechan_catchup_multicast_and_stray_commas() -> None:
    _, entries = parse_file("yuechan-live__IPTV.m3u")
    with_catchup = [e for e in entries if e.catchup is not None]
    assert len(with_catchup) == 81
    assert all(e.catchup == "default" and "playseek=${(b)" in str(e.catchup_source) for e in with_catchup)
    assert sum(str(e.catchup_source).startswith("rtsp://") for e in with_catchup) > 60
    first = entries[0]
    assert (first.name, first.tvg_name, first.tvg_chno) == ("CCTV-1 综合", "CCTV-1高清", "1")
    assert first.url == "rtp://239.3.1.129:8008"
    assert first.attrs["zz-definition"] == "HD"
    lines = by_line(entries)
    # Line 50 has a stray quote (zz-definition=HD") before its catchup attributes.
    assert lines[50].catchup == "default"
    assert lines[50].name == "北京影视"
    # Line 162 ends with two commas; line 172 has a comma between its attributes.
    assert lines[162].name == "动作影院"
    assert (lines[172].name, lines[172].group, lines[172].attrs["zz-definition"]) == (
        "重温经典",
        "数字",
        "HD",
    )


def test_freetv_big_header_and_placeholders() -> None:
    parser, entries = parse_file("freetv-iptv__playlist.m3u8")
    assert len(parser.epg_urls) == 101
    assert all(url.startswith("https://") for url in parser.epg_urls)
    assert len({e.group for e in entries}) == 97
    # SOURCES.md counts 1,500 EXTINF lines with tvg-chno; nine of them are the skipped placeholders.
    assert sum(e.tvg_chno is not None for e in entries) == 1491
    assert sum(e.url.startswith("rtmp://") for e in entries) == 3
    assert all("neither a directive nor a URL" in s.reason for s in parser.skipped)


def test_freetv_vod_italy() -> None:
    _, entries = parse_file("freetv-iptv__playlist_zz_vod_it.m3u8")
    assert sum(e.tvg_id is not None for e in entries) == 26
    assert sum(e.tvg_chno is not None for e in entries) == 50
    assert sum(".mpd" in e.url for e in entries) == 3
    assert max(len(e.url) for e in entries) > 500


def test_ipv6_hosts_kept() -> None:
    _, entries = parse_file("fanmingming-live__ipv6.m3u")
    assert (
        entries[0].url == "http://[2409:8087:3869:8021:1001::e5]:6610/PLTV/88888910/224/3221225642/index.m3u8"
    )
    assert (entries[0].name, entries[0].group) == ("CCTV-1", "央视")
    assert len({e.group for e in entries}) == 16


def test_ipytv_m3u_plus() -> None:
    parser, entries = parse_file("ipytv__m3u_plus.m3u")
    assert parser.header == {"x-tvg-url": "http://myown.link:80/luke/220311/22311"}
    assert [e.name for e in entries] == [
        "Rai 1",
        "Cielo",
        "TEMATICO MASSIMO TROISI",
        "----I N T R A T T E N I M E N T O----",
    ]
    assert entries[1].headers["User-Agent"].startswith("Mozilla/5.0 (Windows NT 10.0")
    assert entries[2].attrs["tvg-shift"] == "-0.5"
    assert entries[3].tvg_id == "-10.5"
    # The short Xtream form /<user>/<pass>/<id>.
    assert [e.provider_stream_id for e in entries] == ["78482", "89844", "89800", "78282"]


def test_ipytv_plain_names() -> None:
    _, entries = parse_file("ipytv__m3u8_plain.m3u")
    assert [e.name for e in entries] == ["CA: HBO", "CA: NBC HD", "CA: PBS KIDS HD", "SANTUÁRIO DE FÁTIMA"]
    assert all(e.attrs == {} and e.group is None for e in entries)


def test_m3ukit_custom_keys_and_extgrp() -> None:
    _, entries = parse_file("m3ukit__demoWithCustomKeys.m3u")
    banner, uhd, rex = entries
    assert banner.name == "=== Обновлён: 30.12.2021 === smarttvnews.ru ==="
    assert banner.url.endswith(".png")
    assert (uhd.attrs["group_id"], uhd.group) == ("1", "Группа1")
    assert rex.group == "Кино"


def test_m3ukit_unknown_directive() -> None:
    _, entries = parse_file("m3ukit__demoWithUnknownDirective.m3u")
    assert [e.group for e in entries] == [None, "Кино", "Кино"]
    assert [e.headers for e in entries] == [{}, {}, {"User-Agent": "OnlineTvAppDroid"}]


# --- encodings and line endings -------------------------------------------------------------------

SAMPLE = '#EXTM3U x-tvg-url="http://epg/a.xml"\n#EXTINF:-1 tvg-id="a",Alpha\nhttp://h/1\n\n#EXTINF:-1,Beta\nhttp://h/2\n'


def summary(parser: M3uParser, entries: list[M3uEntry]) -> list[tuple[int, str, str]]:
    return [(e.line_no, e.name, e.url) for e in entries] + [(parser.lines_read, "", "")]


def test_bom_is_ignored() -> None:
    plain = M3uParser()
    expected = summary(plain, list(plain.feed_bytes([SAMPLE.encode()])))
    for chunks in ([b"\xef\xbb\xbf" + SAMPLE.encode()], [b"\xef", b"\xbb", b"\xbf" + SAMPLE.encode()]):
        parser = M3uParser()
        assert summary(parser, list(parser.feed_bytes(chunks))) == expected
        assert parser.header == {"x-tvg-url": "http://epg/a.xml"}
    parser = M3uParser()
    assert summary(parser, list(parser.feed_lines(["\ufeff" + SAMPLE]))) == expected


@pytest.mark.parametrize("newline", ["\r\n", "\r"])
def test_crlf_and_lone_cr(newline: str) -> None:
    plain = M3uParser()
    expected = summary(plain, list(plain.feed_bytes([SAMPLE.encode()])))
    data = SAMPLE.replace("\n", newline).encode()
    for size in (1, 2, 3, len(data)):
        parser = M3uParser()
        got = list(parser.feed_bytes(data[i : i + size] for i in range(0, len(data), size)))
        assert summary(parser, got) == expected, size
    parser = M3uParser()
    assert summary(parser, list(parser.feed_lines([SAMPLE.replace("\n", newline)]))) == expected


def test_latin1_and_cp1252_lines_among_utf8() -> None:
    data = (
        b'#EXTM3U\n#EXTINF:-1 group-title="T\xe9l\xe9",Caf\xe9 \x80\n/x/1\n#EXTINF:-1,Ch\xc3\xa2teau\n/x/2\n'
    )
    parser = M3uParser("http://h/list.m3u")
    first, second = parser.feed_bytes([data])
    assert (first.name, first.group) == ("Café €", "Télé")
    assert second.name == "Château"  # Valid UTF-8 on the next line is still read as UTF-8.
    # A byte that Windows-1252 leaves undefined falls back to Latin-1.
    (e,) = M3uParser().feed_bytes([b"#EXTINF:-1,A\x81B\nhttp://h/1\n"])
    assert e.name == "A\x81B"


def test_no_final_newline_and_blank_and_comment_lines() -> None:
    text = "#EXTM3U\n\n# a comment, with a comma\n#EXT-X-APP APTV\n#EXTINF:-1,One\n\n#PLAYLIST:x\nhttp://h/1"
    parser, entries = parse_text(text)
    e = only(entries)
    assert (e.line_no, e.name, e.url) == (5, "One", "http://h/1")
    assert parser.lines_read == 8
    assert parser.skipped == []


# --- EXTINF attributes and names ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extinf", "name", "attrs"),
    [
        ('#EXTINF:-1 tvg-name="A, B" group-title="News, Weather",Name', "Name", {"tvg-name": "A, B"}),
        ('#EXTINF:-1 tvg-id="x",News, Weather and Sport', "News, Weather and Sport", {"tvg-id": "x"}),
        (
            "#EXTINF:-1 tvg-id='single, quoted' tvg-chno=7,Seven",
            "Seven",
            {"tvg-id": "single, quoted", "tvg-chno": "7"},
        ),
        ('#EXTINF:-1 tvg-id="" tvg-logo="",Empty', "Empty", {"tvg-id": "", "tvg-logo": ""}),
        ('#EXTINF:-1 TVG-ID="Up" My-Key="v",Upper', "Upper", {"tvg-id": "Up", "my-key": "v"}),
        ('#EXTINF:-1 tvg-id = "spaced" ,Spaced', "Spaced", {"tvg-id": "spaced"}),
        ('#EXTINF:-1 a="1"b="2",Glued', "Glued", {"a": "1", "b": "2"}),
        ('#EXTINF:-1 tvg-name="A",,B', "B", {"tvg-name": "A"}),
        ('#EXTINF:-1 tvg-name="X",group-title="Y",X', "X", {"tvg-name": "X", "group-title": "Y"}),
        ('#EXTINF:-1 a=HD" catchup="default",C', "C", {"a": "HD", "catchup": "default"}),
        ('#EXTINF:-1 tvg-id="a" junk tvg-name="b, c",Name', "Name", {"tvg-id": "a", "tvg-name": "b, c"}),
        ('#EXTINF:-1 tvg-name="Unclosed, Quote', "Quote", {"tvg-name": ""}),
        ("#EXTINF:-1,E=mc2", "E=mc2", {}),
        ('#EXTINF:-1 tvg-id="x",Foo title="bar"', 'Foo title="bar"', {"tvg-id": "x"}),
        ("#EXTINF:-1  Video1", "Video1", {}),
        ('#EXTINF:-1 tvg-logo="http://l/x.png" Title Without Comma', "Title Without Comma", {}),
        ("#EXTINF:-1,  Padded Name  ", "Padded Name", {}),
        ("#extinf:-1,lower case directive", "lower case directive", {}),
    ],
)
def test_extinf_attributes_and_name(extinf: str, name: str, attrs: dict[str, str]) -> None:
    _, entries = parse_text(f"#EXTM3U\n{extinf}\nhttp://h/1\n")
    e = only(entries)
    assert e.name == name
    assert {k: v for k, v in e.attrs.items() if k in attrs} == attrs
    if "tvg-logo" in e.attrs and not attrs:
        assert e.tvg_logo == "http://l/x.png"


@pytest.mark.parametrize(
    ("extinf", "duration"),
    [
        ("#EXTINF:-1,A", -1.0),
        ("#EXTINF:0,A", 0.0),
        ("#EXTINF:555 a=1,A", 555.0),
        ("#EXTINF:12.5,A", 12.5),
        ("#EXTINF:,A", None),
    ],
)
def test_duration(extinf: str, duration: float | None) -> None:
    _, entries = parse_text(f"{extinf}\nhttp://h/1\n")
    assert only(entries).duration == duration


def test_empty_name_falls_back_to_tvg_name_then_id_then_url() -> None:
    text = (
        '#EXTINF:-1 tvg-name="By Name",\nhttp://h/1\n'
        '#EXTINF:-1 tvg-id="by.id",\nhttp://h/2\n'
        "#EXTINF:-1,\nhttp://h/streams/by%20url.m3u8?t=1\n"
    )
    _, entries = parse_text(text)
    assert [e.name for e in entries] == ["By Name", "by.id", "by url"]


def test_typed_fields_from_attributes() -> None:
    text = (
        '#EXTINF:-1 tvg-id=" bbc1.uk " tvg-name="BBC One" tvg-logo="http://l/bbc.png" tvg-chno="101" '
        'group-title="UK" catchup="shift" catchup-days="7" catchup-source="http://c/{utc}",BBC One HD\n'
        "http://h/1\n"
        '#EXTINF:-1 channel-number="5" logo="http://l/5.png" catchup-type="flussonic" timeshift="3",Five\n'
        "http://h/2\n"
    )
    _, (a, b) = parse_text(text)
    assert (a.tvg_id, a.tvg_name, a.tvg_logo, a.tvg_chno, a.group) == (
        "bbc1.uk",
        "BBC One",
        "http://l/bbc.png",
        "101",
        "UK",
    )
    assert (a.catchup, a.catchup_days, a.catchup_source) == ("shift", 7, "http://c/{utc}")
    assert (b.tvg_chno, b.tvg_logo, b.catchup, b.catchup_days) == ("5", "http://l/5.png", "flussonic", 3)


def test_header_catchup_is_inherited_only_where_missing() -> None:
    text = (
        '#EXTM3U url-tvg="http://e/1.xml, http://e/2.xml" catchup="append" catchup-days="5" '
        'catchup-source="?utc={utc}"\n'
        "#EXTINF:-1,Inherits\nhttp://h/1\n"
        '#EXTINF:-1 catchup="default" catchup-source="http://c/x" catchup-days="2",Own\nhttp://h/2\n'
    )
    parser, (inherits, own) = parse_text(text)
    assert parser.epg_urls == ["http://e/1.xml", "http://e/2.xml"]
    assert (inherits.catchup, inherits.catchup_source, inherits.catchup_days) == ("append", "?utc={utc}", 5)
    assert inherits.attrs == {}
    assert (own.catchup, own.catchup_source, own.catchup_days) == ("default", "http://c/x", 2)


def test_bad_catchup_days_is_none() -> None:
    _, entries = parse_text('#EXTINF:-1 catchup-days="a week",A\nhttp://h/1\n')
    assert only(entries).catchup_days is None


# --- options, groups and headers ------------------------------------------------------------------


def test_extgrp_used_without_group_title_or_with_an_empty_one() -> None:
    text = (
        "#EXTINF:-1,A\n#EXTGRP:Films\nhttp://h/1\n"
        + '#EXTINF:-1 group-title="",B\n#EXTGRP:Kids\nhttp://h/2\n'
    )
    _, (a, b) = parse_text(text)
    assert (a.group, b.group) == ("Films", "Kids")


def test_vlc_and_kodi_options_and_header_precedence() -> None:
    text = (
        '#EXTINF:-1 http-user-agent="FromAttr" http-referrer="http://attr/",A\n'
        "#EXTVLCOPT:http-user-agent=FromVlc\n"
        "#EXTVLCOPT:http-referrer=http://vlc/\n"
        "#EXTVLCOPT:network-caching=1000\n"
        "#EXTVLCOPT:--http-reconnect=true\n"
        "#KODIPROP:inputstream.adaptive.license_type=clearkey\n"
        "http://h/1|User-Agent=FromPipe\n"
    )
    _, entries = parse_text(text)
    e = only(entries)
    assert e.headers == {"User-Agent": "FromPipe", "Referer": "http://vlc/"}
    assert e.vlc_options == {
        "http-user-agent": "FromVlc",
        "http-referrer": "http://vlc/",
        "network-caching": "1000",
        "http-reconnect": "true",
    }
    assert e.kodi_props == {"inputstream.adaptive.license_type": "clearkey"}


def test_pipe_suffix_ampersands_and_percent_encoding() -> None:
    text = "#EXTINF:-1,A\nhttp://h/1.m3u8?a=1&b=2|referer=http://r/p?flag&x=1&User-Agent=Kodi%2F20.0&X-Token=abc\n"
    _, entries = parse_text(text)
    e = only(entries)
    assert e.url == "http://h/1.m3u8?a=1&b=2"
    # A piece without "=" continues the previous value; one that looks like Name=value cannot be told
    # from a header, so a referrer's "&x=1" becomes a header "x".
    assert e.headers == {
        "Referer": "http://r/p?flag",
        "x": "1",
        "User-Agent": "Kodi/20.0",
        "X-Token": "abc",
    }


def test_options_of_a_broken_entry_do_not_leak_into_the_next() -> None:
    text = (
        "#EXTINF:-1,Broken\n#EXTVLCOPT:http-user-agent=Old\n#EXTGRP:Old\n"
        "#EXTINF:-1,Good\nhttp://h/1\n#EXTINF:-1,Later\n#EXTVLCOPT:http-user-agent=New\nhttp://h/2\n"
    )
    parser, (good, later) = parse_text(text)
    assert [(s.line_no, s.reason) for s in parser.skipped] == [
        (1, "#EXTINF has no URL (next #EXTINF is on line 4)")
    ]
    assert (good.name, good.headers, good.vlc_options, good.group) == ("Good", {}, {}, None)
    assert later.headers == {"User-Agent": "New"}
    assert good.vlc_options is not later.vlc_options


def test_options_before_the_extinf_belong_to_the_entry() -> None:
    _, entries = parse_text("#KODIPROP:inputstream=inputstream.adaptive\n#EXTINF:-1,A\nhttp://h/1\n")
    assert only(entries).kodi_props == {"inputstream": "inputstream.adaptive"}


# --- URLs -----------------------------------------------------------------------------------------


def test_relative_urls_resolve_against_the_playlist_url() -> None:
    text = "#EXTINF:-1,A\nchan/1.m3u8\n#EXTINF:-1,B\n/abs/2.ts\n#EXTINF:-1,C\n../up/3.ts\n"
    text += "#EXTINF:-1,D\n//cdn/4.ts\n"
    parser, entries = parse_text(text, base_url="https://p.example/lists/tv.m3u")
    assert [e.url for e in entries] == [
        "https://p.example/lists/chan/1.m3u8",
        "https://p.example/abs/2.ts",
        "https://p.example/up/3.ts",
        "https://cdn/4.ts",
    ]
    assert parser.skipped == []


def test_relative_url_without_base_is_skipped_with_its_extinf_line() -> None:
    parser, entries = parse_text("#EXTM3U\n#EXTINF:-1,A\nchan/1.m3u8\n#EXTINF:-1,B\nhttp://h/2\n")
    assert [e.name for e in entries] == ["B"]
    assert [(s.line_no, s.reason) for s in parser.skipped] == [
        (2, "relative URL and no playlist URL to resolve it against")
    ]


def test_url_lines_without_extinf_are_entries_named_from_the_url() -> None:
    parser, entries = parse_text("http://h/live/news.m3u8\n\nrtp://239.1.1.1:5000\nhttp://h/dir/\n")
    assert [(e.line_no, e.name, e.duration, e.attrs) for e in entries] == [
        (1, "news", None, {}),
        (3, "239.1.1.1:5000", None, {}),
        (4, "dir", None, {}),
    ]
    assert parser.skipped == []


def test_extinf_at_end_without_url_is_reported() -> None:
    parser, entries = parse_text("#EXTINF:-1,A\nhttp://h/1\n#EXTINF:-1,Dangling\n#EXTVLCOPT:x=y\n")
    assert [e.name for e in entries] == ["A"]
    assert [(s.line_no, s.reason) for s in parser.skipped] == [
        (3, "#EXTINF has no URL before the end of the playlist")
    ]


@pytest.mark.parametrize(
    ("url", "is_vod", "stream_id"),
    [
        ("http://h:8080/live/user/pass/1234.ts", False, "1234"),
        ("http://h:8080/live/user/pass/1234.m3u8", False, "1234"),
        ("http://h:8080/user/pass/1234", False, "1234"),
        ("http://h:8080/movie/user/pass/55.mkv", True, "55"),
        ("http://h:8080/series/user/pass/66.mp4", True, "66"),
        ("http://h/live/hls/8117.m3u8", False, None),
        ("http://h/a/b/1.m3u8?x=y", False, None),
        ("http://h/a/b/c/1", False, None),
        ("http://h/films/x.MKV?token=1", True, None),
        ("http://h/clip.avi", True, None),
        ("http://h/hls/index.m3u8?f=a.mp4", False, None),
        ("http://h/1234", False, None),
    ],
)
def test_vod_and_provider_stream_id(url: str, is_vod: bool, stream_id: str | None) -> None:
    _, entries = parse_text(f"#EXTINF:-1,X\n{url}\n")
    e = only(entries)
    assert (e.is_vod, e.provider_stream_id) == (is_vod, stream_id)


def test_stream_identity() -> None:
    def entry(url: str) -> M3uEntry:
        return only(parse_text(f"#EXTINF:-1,X\n{url}\n")[1])

    live = entry("http://a:80/live/u/p/42.ts")
    assert stream_identity(3, live) == "3:xc:live:42"
    # Another host, another output format and the short form are the same provider stream.
    assert stream_identity(3, entry("http://b:8080/u/p/42")) == "3:xc:live:42"
    assert stream_identity(3, entry("http://b/live/u/p/42.m3u8")) == "3:xc:live:42"
    assert stream_identity(3, entry("http://a/movie/u/p/42.mp4")) == "3:xc:movie:42"
    assert stream_identity(4, live) == "4:xc:live:42"
    plain = stream_identity(3, entry("http://h/hls/one.m3u8"))
    assert plain == "3:url:" + hashlib.sha1(b"http://h/hls/one.m3u8").hexdigest()
    # Headers are not part of the identity; the URL is.
    assert stream_identity(3, entry("http://h/hls/one.m3u8|User-Agent=X")) == plain
    assert stream_identity(3, entry("http://h/hls/two.m3u8")) != plain


# --- what a playlist from the internet must not be able to do -------------------------------------


def test_dangerous_schemes_are_dropped_and_reported() -> None:
    parser, entries = parse_text(
        "#EXTM3U\n"
        "#EXTINF:-1,Shell\npipe:///usr/bin/ffmpeg -i http://x -f mpegts pipe:1\n"
        "#EXTINF:-1,Disk\nfile:///etc/passwd\n"
        "#EXTINF:-1,Script\njavascript:alert(1)\n"
        "#EXTINF:-1,Data\n'data:text/html,<b>x</b>'\n"
        '#EXTINF:-1 tvg-logo="javascript:alert(1)",Fine\nudp://@239.0.0.1:1234\n'
    )
    assert [(s.line_no, s.reason) for s in parser.skipped] == [
        (2, "pipe: URLs are not allowed (line 3)"),
        (4, "file: URLs are not allowed (line 5)"),
        (6, "javascript: URLs are not allowed (line 7)"),
        (8, "data: URLs are not allowed (line 9)"),
    ]
    entry = only(entries)
    assert (entry.name, entry.url, entry.tvg_logo) == ("Fine", "udp://@239.0.0.1:1234", None)
    assert entry.attrs["tvg-logo"] == "javascript:alert(1)"


def test_a_relative_url_cannot_resolve_to_a_file() -> None:
    parser, entries = parse_text("#EXTINF:-1,A\nchan/1.ts\n", base_url="file:///srv/lists/tv.m3u")
    assert entries == []
    assert "does not resolve to an http(s) URL" in parser.skipped[0].reason


@pytest.mark.parametrize(
    ("lines", "headers"),
    [
        # Percent-encoded CRLF in a pipe suffix, a raw one in #EXTHTTP, an invalid header name.
        ("http://h/1|User-Agent=ok%0d%0aX-Evil:%201&Referer=http://r/", {"Referer": "http://r/"}),
        ('#EXTHTTP:{"User-Agent":"ok\\r\\nX-Evil: 1","Cookie":"a=b"}\nhttp://h/1', {"Cookie": "a=b"}),
        ('#EXTHTTP:{"Bad Name":"v","Origin":"http://o/"}\nhttp://h/1', {"Origin": "http://o/"}),
        ("#EXTHTTP:not json\nhttp://h/1", {}),
        ("#EXTHTTP:[1, 2]\nhttp://h/1", {}),
        ("#EXTVLCOPT:http-user-agent=a%00b\nhttp://h/1|Referer=x%00y", {"User-Agent": "a%00b"}),
    ],
)
def test_headers_cannot_smuggle_line_breaks(lines: str, headers: dict[str, str]) -> None:
    _, entries = parse_text(f"#EXTM3U\n#EXTINF:-1,A\n{lines}\n")
    assert only(entries).headers == headers


def test_exthttp_applies_to_the_next_entry_only_and_the_pipe_wins() -> None:
    text = (
        '#EXTM3U\n#EXTHTTP:{"cookie":"c=1","user-agent":"FromHttp"}\n'
        '#EXTINF:-1 http-user-agent="FromAttr",A\nhttp://h/1|User-Agent=FromPipe\n'
        "#EXTINF:-1,B\nhttp://h/2\n"
    )
    _, (a, b) = parse_text(text)
    assert a.headers == {"User-Agent": "FromPipe", "Cookie": "c=1"}
    assert b.headers == {}


def test_header_defaults_from_the_extm3u_line_apply_unless_the_entry_overrides_them() -> None:
    text = (
        '#EXTM3U http-user-agent="Box/1" http-referrer="http://ref/" catchup="shift" catchup-days="3"\n'
        "#EXTINF:-1,Plain\nhttp://a/1\n"
        '#EXTINF:-1 user-agent="Own/2" catchup="flussonic" catchup-days="7",Own\nhttp://a/2\n'
        "#EXTINF:-1,Piped\nhttp://a/3|User-Agent=Pipe%2F3\n"
    )
    _, (plain, own, piped) = parse_text(text)
    assert (plain.headers, plain.catchup, plain.catchup_days) == (
        {"User-Agent": "Box/1", "Referer": "http://ref/"},
        "shift",
        3,
    )
    assert (own.headers, own.catchup, own.catchup_days) == (
        {"User-Agent": "Own/2", "Referer": "http://ref/"},
        "flussonic",
        7,
    )
    assert piped.headers == {"User-Agent": "Pipe/3", "Referer": "http://ref/"}
    assert plain.attrs == {} and piped.attrs == {}


def test_epg_urls_are_only_web_urls() -> None:
    parser, _ = parse_text('#EXTM3U x-tvg-url="file:///etc/epg.xml, http://e/1.xml,, https://e/2.xml"\n')
    assert parser.epg_urls == ["http://e/1.xml", "https://e/2.xml"]


def test_sloppy_but_readable_input() -> None:
    text = (
        '\ufeff#EXTINF:-1 tvg-ID="Up.tv" tvg-name=\'Single Quoted\' tvg-chno=12 group-title="G" Title\n'
        "  http://a/1  \n"
        "\n"
        "http://host/path/My%20Channel.ts\n"
        "http://host/\n"
        '#EXTINF:-1 tvg-id="x" catchup-days="many",\n'
        "http://a/2\n"
        '#EXTINF:-1 tvg-id="x" tvg-name="Named", \n'
        "'http://a/3'\n"
    )
    parser, (first, bare, host_only, unnamed, named) = parse_text(text)
    assert parser.skipped == []
    assert (first.name, first.tvg_id, first.tvg_name, first.tvg_chno, first.group, first.url) == (
        "Title",
        "Up.tv",
        "Single Quoted",
        "12",
        "G",
        "http://a/1",
    )
    assert (bare.name, bare.line_no, bare.attrs) == ("My Channel", 4, {})
    assert host_only.name == "host"
    assert (unnamed.name, unnamed.catchup_days) == ("x", None)
    assert (named.name, named.url) == ("Named", "http://a/3")


@pytest.mark.parametrize("name", ["ipytv__m3u_plus.m3u", "aptv__iptv.m3u", "iptv-playlist-parser__kodi.m3u"])
def test_mangled_playlists_never_crash(name: str) -> None:
    """Truncations, deletions and random bytes: the parser always finishes with sane entries."""
    data = (CORPUS / name).read_bytes()
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
        size = rng.randint(1, 512)
        parser = M3uParser("http://base/list.m3u")
        entries = list(parser.feed_bytes(bytes(mangled[i : i + size]) for i in range(0, len(mangled), size)))
        for entry in entries:
            assert entry.name
            assert entry.url.split(":", 1)[0].lower() in STREAM_SCHEMES
            assert all("\r" not in v and "\n" not in v for v in entry.headers.values())


# --- limits ---------------------------------------------------------------------------------------


def test_overlong_url_line_is_skipped_and_reported() -> None:
    long_url = "http://h/" + "a" * MAX_LINE
    text = f"#EXTINF:-1,Long\n{long_url}\n#EXTINF:-1,Next\nhttp://h/2\n"
    for size in (1000, len(text)):
        data = text.encode()
        parser = M3uParser()
        entries = list(parser.feed_bytes(data[i : i + size] for i in range(0, len(data), size)))
        assert [(e.line_no, e.name) for e in entries] == [(3, "Next")]
        assert [(s.line_no, s.reason) for s in parser.skipped] == [
            (2, f"line is longer than {MAX_LINE} characters"),
            (1, "#EXTINF has no URL (next #EXTINF is on line 3)"),
        ]
        assert parser.lines_read == 4


def test_overlong_extinf_drops_its_url_too() -> None:
    text = f'#EXTINF:-1 tvg-name="{"x" * MAX_LINE}",Huge\nhttp://h/1\n#EXTINF:-1,Next\nhttp://h/2'
    parser, entries = parse_text(text)
    assert [e.name for e in entries] == ["Next"]
    assert [s.line_no for s in parser.skipped] == [1, 2]
    parser = M3uParser()
    assert [e.name for e in parser.feed_lines(text.split("\n"))] == ["Next"]


def test_endless_line_is_discarded_without_buffering_it() -> None:
    parser = M3uParser()
    block = b"x" * 100_000
    assert parser.push(b"#EXTINF:-1,A\nhttp://h/1\n" + block) != []
    for _ in range(50):  # 5 MB with no line end.
        assert parser.push(block) == []
    assert parser.push(b"\r") == []
    entries = parser.push(b"\n#EXTINF:-1,B\nhttp://h/2\n") + parser.finish()
    assert [(e.line_no, e.name) for e in entries] == [(4, "B")]
    assert [s.line_no for s in parser.skipped] == [3]
    assert parser.lines_read == 5


@pytest.mark.parametrize(
    "hostile",
    [
        "a" * 60_000,
        'a="' * 20_000,
        "a=" * 30_000,
        '"' * 60_000,
        'x "' * 20_000,
        ", k" * 20_000,
        ' j k="' * 10_000,
    ],
)
def test_hostile_lines_parse(hostile: str) -> None:
    # Each of these made a naive attribute pattern quadratic or exponential; they must just parse.
    parser, entries = parse_text(f"#EXTM3U {hostile}\n#EXTINF:-1 {hostile}\nhttp://h/1\n")
    assert only(entries).url == "http://h/1"
    assert parser.skipped == []


def test_skipped_list_is_capped_but_counted() -> None:
    text = "#EXTINF:-1,x\n" * (MAX_SKIPPED_KEPT + 500) + "http://h/1\n"
    parser, entries = parse_text(text)
    assert len(entries) == 1
    assert len(parser.skipped) == MAX_SKIPPED_KEPT
    assert parser.skipped_total == MAX_SKIPPED_KEPT + 499


def test_push_and_finish() -> None:
    parser = M3uParser()
    assert parser.push(b"#EXTM3U\n#EXTINF:-1,A\nhttp://h/") == []
    (a,) = parser.push(b"1\n#EXTINF:-1,B\nhttp://h/2")
    assert a.url == "http://h/1"
    (b,) = parser.finish()
    assert b.url == "http://h/2"
    assert parser.finish() == []


# --- sniffing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"#EXTM3U\n#EXTINF:-1,A\nhttp://h/1\n", None),
        (b'\xef\xbb\xbf  #extm3u x-tvg-url=""\n', None),
        (b"#EXTINF:-1,A\nhttp://h/1\n", None),
        (b"http://h/1.ts\nhttp://h/2.ts\n", None),
        (b"", "empty response"),
        (b"  \r\n\t", "empty response"),
        (b"<!DOCTYPE html><html><head><title>Login</title>", "HTML page"),
        (b"\n<html>\n<body>Access denied</body>", "HTML page"),
        (b'<?xml version="1.0"?>\n<tv generator-info-name="x">', "XMLTV guide"),
        (b'{"user_info":{"auth":0}}', "check the username and password"),
        (b'[{"stream_id": 1}]', "JSON"),
        (b"\x1f\x8b\x08\x00", "gzip"),
        (b"\xff\xfe#\x00E\x00", "UTF-16"),
        (b"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:6\n#EXTINF:6.0,\nseg1.ts\n", "HLS stream"),
        (b"404 page not found", "does not look like an M3U playlist"),
        (b"Invalid credentials\n", "does not look like an M3U playlist"),
        (b"# just a comment\n", "does not look like an M3U playlist"),
        (b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1280000\nlow/index.m3u8\n", "HLS stream"),
        (b"\x00\x01\x02\x03binary\x00junk" * 50, "binary data"),
        (b"pipe:///bin/sh -c reboot\n", "does not look like an M3U playlist"),
    ],
)
def test_why_not_m3u(body: bytes, problem: str | None) -> None:
    reason = why_not_m3u(body)
    if problem is None:
        assert reason is None
        assert looks_like_m3u(body)
    else:
        assert reason is not None and problem in reason
        assert not looks_like_m3u(body)


def test_reasons_never_echo_the_page() -> None:
    page = b"<html><body>Account user=alice password=hunter2 expired</body></html>"
    reason = why_not_m3u(page)
    assert reason is not None and "hunter2" not in reason and "alice" not in reason


# --- a large generated playlist -------------------------------------------------------------------


def test_generated_playlist(tmp_path: Path) -> None:
    out = tmp_path / "big.m3u"
    subprocess.run(
        [sys.executable, str(GEN_CORPUS), "m3u", "--entries", "20000", "--out", str(out)],
        check=True,
        capture_output=True,
    )
    parser, entries = parse_m3u_file(out)
    first = next(entries)
    # Entries stream out: after the first one, only the first 1 MiB read has been split into lines.
    assert first.line_no == 2
    assert 0 < parser.lines_read < 10_000
    count = 1
    vod = catchup = xtream = with_headers = 0
    for e in entries:
        count += 1
        assert e.name and e.tvg_name and e.group
        vod += e.is_vod
        if e.is_vod:
            assert "/movie/" in e.url or "/series/" in e.url
        if e.catchup is not None:
            catchup += 1
            assert e.catchup == "default" and e.catchup_days in (1, 3, 7, 14)
        xtream += e.provider_stream_id is not None
        with_headers += bool(e.headers)
    assert count == 20_000
    assert parser.skipped_total == 0
    assert len(parser.epg_urls) == 2
    # Roughly 5% VOD, 8% of live with catchup, 85% Xtream-style URLs, a few percent with headers.
    assert 700 < vod < 1400
    assert 1000 < catchup < 2000
    assert 14_000 < xtream < 18_000
    assert 300 < with_headers < 1000
