"""Tests for the streaming XMLTV parser: the real corpus, time and episode forms, hostile and broken input."""

from __future__ import annotations

import gzip
import io
import json
import lzma
import multiprocessing
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from backend.epg.parser import (
    ParseStats,
    XmltvChannel,
    XmltvProgramme,
    channel_from_json,
    channel_to_json,
    iter_xmltv,
    open_guide,
    parse_onscreen,
    parse_to_jsonl,
    parse_xmltv_ns,
    parse_xmltv_time,
    programme_from_json,
    programme_to_json,
)
from backend.errors import Invalid

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("TIC_SHARED_DIR", REPO.parent / "shared"))
CORPUS = SHARED / "corpus"
XMLTV_DIR = CORPUS / "xmltv"
GEN_CORPUS = SHARED / "tools" / "gen_corpus.py"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


class Parsed:
    """Everything one parse produced, split by kind."""

    def __init__(self, records: Iterable[XmltvChannel | XmltvProgramme], stats: ParseStats) -> None:
        self.channels: list[XmltvChannel] = []
        self.programmes: list[XmltvProgramme] = []
        for record in records:
            if isinstance(record, XmltvChannel):
                self.channels.append(record)
            else:
                self.programmes.append(record)
        self.stats = stats

    def titled(self, title: str) -> XmltvProgramme:
        [programme] = [p for p in self.programmes if p.title == title]
        return programme


def parse(source: Path | bytes, **options: Any) -> Parsed:
    stats = ParseStats()
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    return Parsed(iter_xmltv(stream, stats=stats, **options), stats)


def invalid(source: Path | bytes) -> Invalid:
    with pytest.raises(Invalid) as caught:
        parse(source)
    return caught.value


def guide(*programmes: str, channels: str = "") -> bytes:
    """A small XMLTV document around the given <programme> snippets, one per line."""
    body = "\n".join([channels, *programmes] if channels else programmes)
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<tv>\n{body}\n</tv>\n'.encode()


def prog(channel: str, start: str, stop: str | None, title: str) -> str:
    stop_attr = f' stop="{stop}"' if stop else ""
    return f'<programme start="{start}"{stop_attr} channel="{channel}"><title>{title}</title></programme>'


# --- the corpus ------------------------------------------------------------------------------------


def sources_figures() -> dict[str, tuple[int, int]]:
    """Channel and programme counts from the XMLTV table of corpus/SOURCES.md."""
    text = (CORPUS / "SOURCES.md").read_text(encoding="utf-8")
    table = text.split("## XMLTV guides", 1)[1].split("\n## ", 1)[0]
    figures: dict[str, tuple[int, int]] = {}
    for row in table.splitlines():
        match = re.match(r"\|\s*`([^`]+)`\s*\|", row)
        if match is None:
            continue
        counts = row.split("|")[5]
        numbers = re.search(r"([\d,]+)\s*/\s*([\d,]+)", counts)
        assert numbers is not None, f"no channels / programmes figure in SOURCES.md row: {row[:80]}"
        figures[match.group(1)] = (
            int(numbers.group(1).replace(",", "")),
            int(numbers.group(2).replace(",", "")),
        )
    return figures


CORPUS_FILES = sorted(path.name for path in XMLTV_DIR.iterdir())


def test_sources_md_describes_every_corpus_guide() -> None:
    assert len(CORPUS_FILES) == 27
    assert set(sources_figures()) == set(CORPUS_FILES)


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_every_corpus_guide_parses_with_the_documented_counts(name: str) -> None:
    channels, programmes = sources_figures()[name]

    result = parse(XMLTV_DIR / name, preferred_lang="en")

    stats = result.stats
    assert stats.channels == len(result.channels) == channels
    assert stats.programmes_seen == programmes
    assert stats.programmes == len(result.programmes)
    assert stats.programmes_seen == stats.programmes + stats.skipped + stats.filtered + stats.dropped_no_stop
    assert sum(stats.skipped_reasons.values()) == stats.skipped
    assert len({channel.id for channel in result.channels}) == len(result.channels)
    for programme in result.programmes:
        assert programme.start.utcoffset() == timedelta(0)
        assert programme.stop.utcoffset() == timedelta(0)
        assert programme.stop > programme.start
        assert programme.channel_id
        assert programme.line_no > 0
    if not name.startswith("xmltv-project__"):
        # Real feeds: nothing is unusable; only a channel's last programme may lack a stop.
        assert stats.skipped == 0
        assert stats.dropped_no_stop <= stats.channels


def test_nz_guide_converts_both_of_its_offsets_to_utc() -> None:
    result = parse(XMLTV_DIR / "i-mjh-nz__nz_epg.xml.gz", preferred_lang="en")

    assert (len(result.channels), len(result.programmes)) == (45, 5510)
    # +1200 in the file: midnight local is noon UTC the day before.
    [sail] = [p for p in result.programmes if p.title == "LIVE: Rockwool Germany SailGP - Day 2"]
    assert (sail.channel_id, sail.start, sail.stop) == (
        "mjh-sky-popup2",
        utc(2026, 8, 23, 12),
        utc(2026, 8, 23, 13, 30),
    )
    assert (sail.season, sail.episode, sail.episode_num) == (2026, 18, "S2026E18")
    assert sail.line_no == 222
    # +0000 in the file, with the rich Gracenote-style fields.
    [homes] = [p for p in result.programmes if p.line_no == 279]
    assert homes.title == "Extreme Homes"
    assert (homes.start, homes.stop) == (utc(2026, 8, 22, 17, 15), utc(2026, 8, 22, 18))
    assert homes.sub_title == "Magical, Puzzle, Palace"
    assert homes.categories == ["Lifestyle", "Leisure, Hobbies", "Home/Gardening"]
    assert homes.keywords == ["series"]
    assert (homes.season, homes.episode, homes.part, homes.episode_num) == (4, 8, 1, "S04E08")
    assert ("xmltv_ns", "3.7.0") in homes.episode_systems and len(homes.episode_systems) == 10
    assert (homes.rating, homes.rating_system, homes.star_rating) == ("G", "New Zealand", "6/10")
    assert homes.previously_shown and homes.previously_shown_start is None
    assert (homes.date, homes.country) == ("2012", "United States")
    assert homes.icon == "https://image.tmdb.org/t/p/original/ufjD4HyvKrvYkGLh7lYJPZaGFNe.jpg"
    # Empty <category/> and <date/> elements never become values.
    assert all(category for p in result.programmes for category in p.categories)
    assert all(p.date is None or p.date for p in result.programmes)
    assert sum(p.live for p in result.programmes) > 0
    tvnz = next(c for c in result.channels if c.id == "mjh-tvnz-1")
    assert (tvnz.name, tvnz.number, tvnz.icon) == ("TVNZ 1", "1", "https://i.mjh.nz/.images/tvnz-1.png")


def test_pbs_channel_number_comes_from_a_numeric_display_name() -> None:
    result = parse(XMLTV_DIR / "i-mjh-nz__PBS_all.xml")

    kacv = result.channels[0]
    assert kacv.id == "KACV"
    assert kacv.display_names == [("KACVDT", None), ("PUBLIC BROADCASTING SERVICE", None), ("2.1", None)]
    assert (kacv.name, kacv.number) == ("KACVDT", "2.1")
    first = next(p for p in result.programmes if p.line_no == 733)
    assert (first.channel_id, first.title) == ("WTTW", "Amanpour and Company")
    assert (first.start, first.stop) == (utc(2026, 8, 22, 5), utc(2026, 8, 22, 6))
    assert (first.season, first.episode, first.episode_num, first.new) == (8, 233, "S08E233", True)


def test_kayo_channel_number_comes_from_lcn_and_icon_entities_are_decoded() -> None:
    result = parse(XMLTV_DIR / "i-mjh-nz__Kayo_epg.xml")

    racing = next(c for c in result.channels if c.id == "68330")
    assert (racing.name, racing.number) == ("Racing.com", "529")
    assert racing.icon is not None and "carousel-item&imwidth=415" in racing.icon


@pytest.mark.parametrize(
    ("lang", "desc"),
    [
        ("en", "All African and Caribbean music."),
        ("fr", "Toutes les musiques africaines et caribéennes."),
        ("pt_BR", "Todas as músicas africanas e caribenhas."),  # same base language
        ("ES", "Toda la música africana y caribeña."),
        ("de", "Toutes les musiques africaines et caribéennes."),  # none: the first
        (None, "Toutes les musiques africaines et caribéennes."),
    ],
)
def test_preferred_language_picks_among_variants_and_keeps_them_all(lang: str | None, desc: str) -> None:
    result = parse(XMLTV_DIR / "iptv-org-epg__epg.tmacaraibes.com.xml", preferred_lang=lang)

    first = result.programmes[0]
    assert first.desc == desc
    assert [variant_lang for _, variant_lang in first.descs] == ["fr", "en", "es", "pt"]
    assert len(first.titles) == 4 and first.title == "GLOBAL"
    assert (first.start, first.length_seconds) == (utc(2026, 5, 3, 4), 3 * 3600)
    assert first.ratings == [("CSA", "Tout public"), ("VCHIP", "TV-G")]
    assert (first.rating, first.rating_system) == ("Tout public", "CSA")


def test_region_preference_matches_a_plain_language_tag() -> None:
    data = guide(
        '<programme start="20250101000000" stop="20250101010000" channel="c">'
        '<title lang="de">Nachrichten</title><title lang="en">News</title></programme>'
    )
    assert parse(data, preferred_lang="en-NZ").programmes[0].title == "News"
    assert parse(data, preferred_lang="de_AT").programmes[0].title == "Nachrichten"


def test_metv_onscreen_episode_numbers_and_out_of_dtd_order_elements() -> None:
    result = parse(XMLTV_DIR / "i-mjh-nz__MeTV_epg.xml")

    wagon = next(p for p in result.programmes if p.sub_title == "The Hiram Winthrop Story")
    assert (wagon.title, wagon.season, wagon.episode, wagon.episode_num) == ("Wagon Train", 5, 36, "S05E36")
    assert wagon.desc is not None and wagon.desc.startswith('"Duke quits')


def test_schedules_direct_guide_with_bom_credits_and_numeric_display_name() -> None:
    result = parse(XMLTV_DIR / "jellyfin-xmltv__schedulesdirect.xml")

    cfto = result.channels[0]
    assert (cfto.name, cfto.number, len(cfto.display_names)) == ("CFTO", "201", 5)
    match_game, unforgettable = result.programmes
    assert match_game.credits["producer"] == ["Alec Baldwin", "Jennifer Mullin"]
    assert match_game.credits["presenter"] == ["Alec Baldwin"]
    assert len(match_game.credits["guest"]) == 6
    assert (match_game.season, match_game.episode, match_game.part) == (2, 12, 1)
    assert match_game.icon == "p12845677_b_v3_af.jpg"
    assert len(match_game.ratings) == 3 and match_game.previously_shown
    assert ("Poppy Montgomery", "Carrie Wells") in unforgettable.actor_roles
    assert unforgettable.credits["director"] == ["Anna Foerster"]


def test_dispatcharr_guide_keeps_a_century_long_programme() -> None:
    result = parse(XMLTV_DIR / "dispatcharr__test_epg.xml")

    always = result.titled("Always On Show")
    assert (always.start, always.stop) == (utc(2000, 1, 1), utc(2099, 12, 31, 23, 59, 59))
    assert always.sub_title == "The eternal broadcast"
    assert [c.id for c in result.channels] == ["channel.current", "channel.past", "channel.empty"]


# --- the xmltv-project samples ---------------------------------------------------------------------


def test_amp_sample_decodes_entities_and_reads_a_zone_name() -> None:
    result = parse(XMLTV_DIR / "xmltv-project__amp.xml")

    # The BST programme has no stop and nothing after it on its channel, so it cannot be kept.
    assert (result.stats.programmes, result.stats.dropped_no_stop) == (1, 1)
    assert result.stats.errors == [
        (5, "last programme on channel 'bbc2.bbc.co.uk' has no stop time; dropped")
    ]
    news = result.programmes[0]
    assert (news.channel_id, news.start, news.stop) == ("TA", utc(2002, 10, 10, 8), utc(2002, 10, 10, 8, 55))
    assert parse_xmltv_time("20010829000500 BST") == utc(2001, 8, 28, 23, 5)
    data = (XMLTV_DIR / "xmltv-project__amp.xml").read_bytes()
    with_stop = data.replace(b'BST" channel', b'BST" stop="20010829010000 BST" channel')
    amp = parse(with_stop).titled("Ampersand Land")
    assert amp.titles == [("Ampersand Land", None), ("&", None)]
    assert amp.desc == "& hello && there &amp; everyone <\n      &< <amp;"


def test_clump_sample_keeps_both_programmes_sharing_a_slot() -> None:
    result = parse(XMLTV_DIR / "xmltv-project__clump.xml")

    first, second = result.programmes
    assert first.start == second.start == utc(2002, 4, 20, 17, 25)
    assert first.stop == second.stop == utc(2002, 4, 20, 18)
    assert (first.title, first.categories, second.title, second.categories) == (
        "First in clump",
        ["b"],
        "Second in clump",
        ["g"],
    )


def test_empty_sample_is_a_valid_guide_with_nothing_in_it() -> None:
    result = parse(XMLTV_DIR / "xmltv-project__empty.xml")

    assert (result.channels, result.programmes) == ([], [])
    assert result.stats == ParseStats()


def test_intervals_sample_drops_zero_length_programmes() -> None:
    result = parse(XMLTV_DIR / "xmltv-project__intervals.xml")

    # The first programme has no stop; the next on the channel starts at the same instant, so it
    # ends up zero-length like the explicit 13:30-13:30 one, and both are dropped.
    assert [(p.start.time().isoformat(), p.stop.time().isoformat()) for p in result.programmes] == [
        ("13:00:00", "14:00:00"),
        ("13:00:00", "13:10:00"),
        ("13:30:00", "14:00:00"),
        ("13:40:00", "14:00:00"),
    ]
    assert result.stats.skipped_reasons == {"stop_not_after_start": 2}
    assert [line for line, _ in result.stats.errors] == [14, 20]


def test_length_sample_reads_twelve_digit_times_and_length_in_minutes() -> None:
    [news] = parse(XMLTV_DIR / "xmltv-project__length.xml").programmes

    assert (news.start, news.stop) == (utc(2002, 2, 23, 23), utc(2002, 2, 23, 23, 30))
    assert news.length_seconds == 1800
    assert (news.title, news.desc, news.titles) == ("News", "Lots of news.", [("News", "en")])


def test_overlap_sample_applies_the_missing_stop_rule() -> None:
    result = parse(XMLTV_DIR / "xmltv-project__overlap.xml")

    assert sorted(p.title for p in result.programmes) == ["A", "C", "G", "H", "I", "J", "K", "One hour long"]
    assert result.titled("A").stop == result.titled("A").start + timedelta(seconds=1)  # ended by B
    assert result.titled("C").stop == utc(2001, 12, 28, 11, 31, 1)  # ended by D
    # B is dropped because C, the next on its channel, starts before it; D and E get zero length
    # from the programme after them; F has nothing after it.
    assert result.stats.skipped_reasons == {"out_of_order": 1, "stop_not_after_start": 4}
    assert result.stats.dropped_no_stop == 1


def test_reference_sample_reads_nearly_every_element() -> None:
    data = (XMLTV_DIR / "xmltv-project__test.xml").read_bytes()
    assert parse(data).stats.dropped_no_stop == 1  # as published: no stop on its only programme
    with_stop = data.replace(b'start="200006031633"', b'start="200006031633" stop="200006031733"')

    result = parse(with_stop, preferred_lang="en")

    assert [(c.id, c.display_names) for c in result.channels] == [
        ("3sat.de", [("3SAT", "de")]),
        ("das-erste.de", [("ARD", "de"), ("Das Erste", "de")]),
    ]
    [blah] = result.programmes
    assert (blah.start, blah.stop) == (utc(2000, 6, 3, 16, 33), utc(2000, 6, 3, 17, 33))
    assert (blah.title, blah.desc) == ("blah", "Blah Blah Blah.")
    assert blah.credits == {"director": ["blah"], "actor": ["a", "b", "c", "d", "e"]}
    assert blah.actor_roles == [("c", "blah"), ("e", "blah")]
    assert (blah.season, blah.episode, blah.part, blah.episode_num) == (3, 10, 1, "S03E10")
    assert blah.episode_systems == [("xmltv_ns", "2 . 9 . 0/1")]
    assert (blah.rating, blah.rating_system, blah.star_rating) == ("PG", "MPAA", "3/3")
    assert (blah.date, blah.length_seconds, blah.country) == ("19901011", 3600, "ES")
    assert blah.categories == ["Comedy"]
    assert blah.icon == "http://image.example.com/dgXPhzNJH8H.jpg"
    assert (blah.new, blah.premiere, blah.live, blah.previously_shown) == (False, False, False, False)


# --- times and episode numbers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20080715003000 +0000", utc(2008, 7, 15, 0, 30)),
        ("20080715003000 +0100", utc(2008, 7, 14, 23, 30)),
        ("20080715003000 +0545", utc(2008, 7, 14, 18, 45)),
        ("20080715003000 -0330", utc(2008, 7, 15, 4, 0)),
        ("20080715003000 +1300", utc(2008, 7, 14, 11, 30)),
        ("20080715003000 +05:45", utc(2008, 7, 14, 18, 45)),
        ("20080715003000+0200", utc(2008, 7, 14, 22, 30)),
        ("20080715003000", utc(2008, 7, 15, 0, 30)),
        ("200807150030", utc(2008, 7, 15, 0, 30)),
        ("200807150030 -0400", utc(2008, 7, 15, 4, 30)),
        ("2008071500", utc(2008, 7, 15)),
        ("20080715", utc(2008, 7, 15)),
        ("20080715003007 GMT", utc(2008, 7, 15, 0, 30, 7)),
        ("20080715003000 UTC", utc(2008, 7, 15, 0, 30)),
        ("20080115003000 EST", utc(2008, 1, 15, 5, 30)),
        ("20080715003000 bst", utc(2008, 7, 14, 23, 30)),
        ("  20080715003000 +0000 ", utc(2008, 7, 15, 0, 30)),
        ("20260503084250 -0300", utc(2026, 5, 3, 11, 42, 50)),
    ],
)
def test_xmltv_times_become_utc(text: str, expected: datetime) -> None:
    parsed = parse_xmltv_time(text)

    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "tomorrow",
        "2008071500300 +0000",  # 13 digits
        "20081315003000 +0000",  # month 13
        "20080230003000 +0000",  # 30 February
        "20080715003000 +2500",
        "20080715003000 +0160",
        "20080715003000 XYZ",
        "2008-07-15T00:30:00Z",
    ],
)
def test_unreadable_xmltv_times_raise_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        parse_xmltv_time(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.4/10.0/1", (2, 5, 1)),
        (".4.", (None, 5, None)),
        ("0.0.", (1, 1, None)),
        ("2 . 9 . 0/1", (3, 10, 1)),
        ("7.232.", (8, 233, None)),
        ("-1.11.0", (None, 12, 1)),
        ("2025.-1.0", (2026, None, 1)),
        ("..", (None, None, None)),
        ("", (None, None, None)),
        ("a.b.c", (None, None, None)),
        ("1.2.3.4", (None, None, None)),
    ],
)
def test_xmltv_ns_is_read_as_one_based_numbers(text: str, expected: tuple[int | None, ...]) -> None:
    assert parse_xmltv_ns(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("S05E36", (5, 36)),
        ("S5 E36", (5, 36)),
        ("s05e36 - Pilot", (5, 36)),
        ("5x36", (5, 36)),
        ("E12", (None, 12)),
        ("Ep. 7", (None, 7)),
        ("Season 2 Episode 3", (2, 3)),
        ("S3", (3, None)),
        ("S2025DE4", (None, None)),
        ("Part 1", (None, None)),
        ("", (None, None)),
    ],
)
def test_onscreen_episode_numbers(text: str, expected: tuple[int | None, int | None]) -> None:
    assert parse_onscreen(text) == expected


def test_onscreen_fills_what_xmltv_ns_leaves_out() -> None:
    data = guide(
        '<programme start="20250101000000" stop="20250101010000" channel="c"><title>x</title>'
        '<episode-num system="xmltv_ns">.4.</episode-num>'
        '<episode-num system="onscreen">S02E05</episode-num></programme>',
        '<programme start="20250101010000" stop="20250101020000" channel="c"><title>y</title>'
        '<episode-num system="xmltv_ns">.4.</episode-num></programme>',
        '<programme start="20250101020000" stop="20250101030000" channel="c"><title>z</title>'
        "<episode-num>5x36</episode-num></programme>",
    )
    x, y, z = parse(data).programmes

    assert (x.season, x.episode, x.episode_num) == (2, 5, "S02E05")
    assert (y.season, y.episode, y.episode_num) == (None, 5, "E05")
    # No system attribute means "onscreen", the DTD's default.
    assert (z.season, z.episode, z.episode_systems) == (5, 36, [("onscreen", "5x36")])


# --- stops, skips and the window -------------------------------------------------------------------


def test_missing_stop_is_taken_from_the_next_programme_on_the_same_channel() -> None:
    data = guide(
        prog("a", "20250101000000 +0000", None, "a1"),
        prog("b", "20250101000000 +0000", None, "b1"),
        prog("a", "20250101003000 +0000", None, "a2"),
        prog("b", "20250101020000 +0100", "20250101030000 +0100", "b2"),
        prog("a", "20250101020000 +0000", None, "a3"),
        prog("b", "20250101020000 +0000", None, "b3"),
    )
    result = parse(data)

    # Interleaved channels: each waiting programme is ended by the next one on its own channel.
    assert [(p.title, p.start, p.stop) for p in result.programmes] == [
        ("a1", utc(2025, 1, 1, 0), utc(2025, 1, 1, 0, 30)),
        ("b1", utc(2025, 1, 1, 0), utc(2025, 1, 1, 1)),
        ("b2", utc(2025, 1, 1, 1), utc(2025, 1, 1, 2)),
        ("a2", utc(2025, 1, 1, 0, 30), utc(2025, 1, 1, 2)),
    ]
    # a3 and b3 have nothing after them.
    assert (result.stats.dropped_no_stop, result.stats.skipped) == (2, 0)
    assert sorted(result.stats.errors) == [
        (7, "last programme on channel 'a' has no stop time; dropped"),
        (8, "last programme on channel 'b' has no stop time; dropped"),
    ]


def test_a_waiting_programme_overtaken_by_an_earlier_one_is_dropped() -> None:
    data = guide(
        prog("a", "20250101020000", None, "late"),
        prog("a", "20250101010000", "20250101013000", "early"),
    )
    result = parse(data)

    assert [p.title for p in result.programmes] == ["early"]
    assert result.stats.skipped_reasons == {"out_of_order": 1}
    assert result.stats.errors[0][0] == 3


def test_unusable_programmes_are_skipped_with_reason_and_line() -> None:
    data = guide(
        prog("a", "yesterday", "20250101010000", "bad start"),
        '<programme start="20250101000000" stop="20250101010000"><title>no channel</title></programme>',
        prog("a", "20250101010000", "20250101005900", "backwards"),
        prog("a", "20250101020000", "later", "bad stop"),
        prog("a", "20250101030000", "20250101040000", "fine"),
    )
    result = parse(data)

    # An unreadable stop is replaced by the next programme's start.
    assert [(p.title, p.stop) for p in result.programmes] == [
        ("bad stop", utc(2025, 1, 1, 3)),
        ("fine", utc(2025, 1, 1, 4)),
    ]
    assert result.stats.skipped_reasons == {"bad_start": 1, "missing_channel": 1, "stop_not_after_start": 1}
    assert [line for line, _ in result.stats.errors] == [3, 4, 5, 6]
    assert "'yesterday'" in result.stats.errors[0][1]


def test_programmes_without_a_title_are_kept_with_an_empty_one() -> None:
    data = guide(
        '<programme start="20250101000000" stop="20250101010000" channel="a"><image>x.png</image></programme>'
    )

    [untitled] = parse(data).programmes

    assert (untitled.title, untitled.titles, untitled.icon) == ("", [], "x.png")


def test_html_entities_in_a_guide_naming_the_dtd_are_decoded_not_lost() -> None:
    # With a DOCTYPE the parser does not load, undeclared entities are left as references.
    data = (
        b'<?xml version="1.0"?>\n<!DOCTYPE tv SYSTEM "xmltv.dtd">\n<tv>\n'
        b'<programme start="20250101000000" stop="20250101010000" channel="a">'
        b"<title>Caf&eacute;&nbsp;&amp; more</title><desc>Un &bogus; mot</desc></programme>\n</tv>\n"
    )

    [programme] = parse(data).programmes

    assert (programme.title, programme.desc) == ("Caf\u00e9\u00a0& more", "Un &bogus; mot")


def test_long_text_parses_within_libxml2s_default_limits() -> None:
    # The parser keeps libxml2's safety limits on (no huge_tree); a 2 MB description is far longer
    # than any real one and still fits.
    desc = "word " * 400_000
    data = guide(
        f'<programme start="20250101000000" stop="20250101010000" channel="a"><title>t</title>'
        f"<desc>{desc}</desc></programme>"
    )

    [programme] = parse(data).programmes

    assert programme.desc == desc.strip()


def test_error_notes_are_capped_but_counting_goes_on() -> None:
    data = guide(*(prog("a", "never", None, str(n)) for n in range(250)))

    stats = parse(data).stats

    assert stats.skipped == 250
    assert len(stats.errors) == 200


def test_time_window_is_half_open_and_counts_what_it_filters() -> None:
    result = parse(
        XMLTV_DIR / "dispatcharr__test_epg.xml",
        keep_from=utc(2020, 1, 1, 6),
        keep_until=utc(2020, 1, 1, 7),
    )

    # Programmes ending at 06:00 are entirely before the window.
    assert sorted(p.title for p in result.programmes) == ["Always On Show", "Another Past Show"]
    assert result.stats.filtered == 2
    later = parse(XMLTV_DIR / "dispatcharr__test_epg.xml", keep_from=utc(2020, 1, 1, 12))
    assert [p.title for p in later.programmes] == ["Always On Show"]
    earlier = parse(XMLTV_DIR / "dispatcharr__test_epg.xml", keep_until=utc(2020, 1, 1))
    assert [p.title for p in earlier.programmes] == ["Always On Show"]


def test_naive_window_bounds_are_refused() -> None:
    with pytest.raises(Invalid) as caught:
        parse(XMLTV_DIR / "dispatcharr__test_epg.xml", keep_from=datetime(2020, 1, 1))

    assert caught.value.code == "XMLTV_NAIVE_WINDOW"


# --- compression, hostile and broken input ---------------------------------------------------------


def test_compression_is_detected_by_content_not_by_name(tmp_path: Path) -> None:
    plain = gzip.decompress((XMLTV_DIR / "i-mjh-nz__nz_epg.xml.gz").read_bytes())
    (tmp_path / "gzip.xml").write_bytes((XMLTV_DIR / "i-mjh-nz__nz_epg.xml.gz").read_bytes())
    (tmp_path / "plain.xml.gz").write_bytes(plain)
    (tmp_path / "xz.bin").write_bytes(lzma.compress(plain))

    for name in ("gzip.xml", "plain.xml.gz", "xz.bin"):
        with open_guide(tmp_path / name) as stream:
            assert stream.read(5) == b"<?xml", name
        assert parse(tmp_path / name).stats.programmes == 5510, name
    assert parse(gzip.compress(plain)).stats.programmes == 5510
    assert parse(lzma.compress(plain)).stats.programmes == 5510


def test_a_path_given_as_text_is_opened_and_closed() -> None:
    stats = ParseStats()
    records = list(iter_xmltv(str(XMLTV_DIR / "i-mjh-nz__PlutoTV_us.xml.gz"), stats=stats))

    assert (stats.channels, stats.programmes, len(records)) == (421, 7172, 421 + 7172)


@pytest.mark.parametrize("compress", [gzip.compress, lzma.compress], ids=["gzip", "xz"])
def test_truncated_compressed_guide_is_refused(tmp_path: Path, compress: Callable[[bytes], bytes]) -> None:
    plain = (XMLTV_DIR / "i-mjh-nz__PBS_all.xml").read_bytes()
    packed = compress(plain)
    (tmp_path / "guide").write_bytes(packed[: len(packed) // 2])

    error = invalid(tmp_path / "guide")

    assert error.code == "XMLTV_TRUNCATED"
    match = re.search(r"after line (\d+)", error.message)
    assert match is not None, error.message
    assert 1000 < int(match.group(1)) < plain.count(b"\n")


def test_corrupt_gzip_is_refused(tmp_path: Path) -> None:
    packed = bytearray(gzip.compress((XMLTV_DIR / "i-mjh-nz__PBS_all.xml").read_bytes()))
    packed[len(packed) // 2 : len(packed) // 2 + 64] = bytes(64)
    (tmp_path / "guide.gz").write_bytes(bytes(packed))

    assert invalid(tmp_path / "guide.gz").code == "XMLTV_MALFORMED"


def test_truncated_plain_guide_is_refused_with_the_line() -> None:
    plain = (XMLTV_DIR / "i-mjh-nz__world_epg.xml").read_bytes()
    cut = plain[: len(plain) // 2]

    error = invalid(cut)

    assert error.code == "XMLTV_TRUNCATED"
    last_line = cut.count(b"\n") + 1
    assert f"line {last_line}" in error.message


def test_malformed_xml_names_the_line() -> None:
    data = guide(
        prog("a", "20250101000000", "20250101010000", "fine"),
        '<programme start="20250101010000" stop="20250101020000" channel="a"><title>x</titel></programme>',
    )

    error = invalid(data)

    assert error.code == "XMLTV_MALFORMED"
    assert "line 4" in error.message and "titel" in error.message


def test_undeclared_entity_names_its_line() -> None:
    data = guide(prog("a", "20250101000000", "20250101010000", "Caf&eacute;"))

    error = invalid(data)

    assert error.code == "XMLTV_MALFORMED"
    assert "line 3" in error.message and "eacute" in error.message


LOGIN_PAGE = b"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in</title></head>
<body><form method="post"><input name="user"><br><input type="password" name="pass"></form></body></html>
"""


@pytest.mark.parametrize(
    "page",
    [
        LOGIN_PAGE,
        gzip.compress(LOGIN_PAGE),
        b"<html><body><p>Access denied</p></body></html>",
        b'<?xml version="1.0"?>\n<html xmlns="http://www.w3.org/1999/xhtml"><body/></html>',
    ],
    ids=["html5", "gzipped", "well-formed", "xhtml"],
)
def test_html_page_is_not_a_guide(page: bytes) -> None:
    error = invalid(page)

    assert error.code == "XMLTV_NOT_XMLTV"
    assert "got an HTML page" in error.message


def test_wrong_root_element_is_not_a_guide() -> None:
    stats = ParseStats()
    records = iter_xmltv(
        io.BytesIO(b'<rss>\n<channel id="x"><display-name>X</display-name></channel>\n</rss>'), stats=stats
    )

    with pytest.raises(Invalid) as caught:
        next(records)

    assert caught.value.code == "XMLTV_NOT_XMLTV"
    assert "<rss>" in caught.value.message
    assert stats.channels == 0
    assert invalid(b"<guide/>").code == "XMLTV_NOT_XMLTV"


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "empty"),
        (b"  \n", "empty"),
        (b'{"error": "expired"}', "not XML"),
        (b"\x00\x01binary", "not XML"),
    ],
)
def test_empty_or_non_xml_input_is_not_a_guide(data: bytes, words: str) -> None:
    error = invalid(data)

    assert error.code == "XMLTV_NOT_XMLTV"
    assert words in error.message


# A child's peak memory, read from its own address space: getrusage's ru_maxrss (self or children)
# is no good here, because Linux carries the high-water mark of the forking pytest process across
# exec into the child.
PEAK_RSS_CODE = (
    "status = open('/proc/self/status').read()\npeak = int(status.split('VmHWM:', 1)[1].split()[0])\n"
)


BILLION_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE tv [\n <!ENTITY lol0 "lol">\n'
    + b"".join(b' <!ENTITY lol%d "%s">\n' % (n, b"&lol%d;" % (n - 1) * 10) for n in range(1, 10))
    + b']>\n<tv><programme start="20250101000000" stop="20250101010000" channel="a">'
    + b"<title>&lol9;</title></programme></tv>\n"
)


def test_billion_laughs_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    (tmp_path / "laughs.xml").write_bytes(BILLION_LAUGHS)
    code = (
        "import json, sys\n"
        "from backend.epg.parser import iter_xmltv\n"
        "from backend.errors import Invalid\n"
        "try:\n"
        "    outcome = [len(getattr(r, 'title', '')) for r in iter_xmltv(sys.argv[1])]\n"
        "except Invalid as exc:\n"
        "    outcome = [exc.code, exc.message]\n"
        f"{PEAK_RSS_CODE}"
        "print(json.dumps({'outcome': outcome, 'peak_kb': peak}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "laughs.xml")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report = json.loads(done.stdout)

    # Either refused, or parsed without the 3-billion-character expansion.
    if report["outcome"][0] == "XMLTV_MALFORMED":
        assert "entities" in report["outcome"][1]
    else:
        assert all(length < 100 for length in report["outcome"])
    assert report["peak_kb"] < 100 * 1024


@pytest.mark.parametrize(
    "doctype",
    [
        b'<!DOCTYPE tv [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
        b'<!DOCTYPE tv [<!ENTITY % xxe SYSTEM "file:///etc/passwd"> %xxe;]>',
        b'<!DOCTYPE tv SYSTEM "file:///etc/passwd">',
    ],
    ids=["general-entity", "parameter-entity", "external-dtd"],
)
def test_external_entities_are_never_loaded(doctype: bytes) -> None:
    assert "root:" in Path("/etc/passwd").read_text(), "this test needs a readable /etc/passwd"
    data = (
        b'<?xml version="1.0"?>\n'
        + doctype
        + b'\n<tv><channel id="c"><display-name>&xxe;</display-name></channel>'
        b'<programme start="20250101000000" stop="20250101010000" channel="c">'
        b"<title>before &xxe; after</title><desc>&xxe;</desc></programme></tv>\n"
    )
    if b"ENTITY xxe" not in doctype:
        data = data.replace(b"&xxe;", b"plain")

    try:
        result = parse(data)
    except Invalid as exc:
        assert exc.code == "XMLTV_MALFORMED"
        assert "root:" not in exc.message
        return
    texts = [repr(record) for record in [*result.channels, *result.programmes]]
    assert result.stats.programmes == 1
    assert not any("root:" in text for text in texts)


# --- the subprocess entry point ----------------------------------------------------------------------


def _spawn_pool() -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))


def test_parse_to_jsonl_in_a_child_process_round_trips(tmp_path: Path) -> None:
    source = XMLTV_DIR / "i-mjh-nz__nz_epg.xml.gz"
    with _spawn_pool() as pool:
        stats = pool.submit(
            parse_to_jsonl, str(source), str(tmp_path), "en", "2026-08-23T00:00:00+00:00", None
        ).result(timeout=120)

    direct = parse(source, preferred_lang="en", keep_from=utc(2026, 8, 23))
    assert stats["channels"] == 45 and stats["programmes"] == len(direct.programmes) > 0
    assert stats["filtered"] == direct.stats.filtered > 0
    assert stats["programmes_seen"] == 5510
    channel_lines = Path(stats["channels_path"]).read_text(encoding="utf-8").splitlines()
    programme_lines = Path(stats["programmes_path"]).read_text(encoding="utf-8").splitlines()
    assert [channel_from_json(json.loads(line)) for line in channel_lines] == direct.channels
    rows = [json.loads(line) for line in programme_lines]
    assert [programme_from_json(row) for row in rows] == direct.programmes
    assert rows[0]["start"].endswith("Z") and rows[0]["stop"].endswith("Z")
    assert json.loads(channel_lines[0])["name"] == direct.channels[0].name
    assert json.loads(json.dumps(programme_to_json(direct.programmes[0]))) == rows[0]
    assert json.loads(json.dumps(channel_to_json(direct.channels[0]))) == json.loads(channel_lines[0])
    # Empty values are left out of the rows.
    assert all(value not in (None, False, [], {}, "") for row in rows for value in row.values())


def test_parse_to_jsonl_failure_reaches_the_parent_with_its_code(tmp_path: Path) -> None:
    packed = (XMLTV_DIR / "i-mjh-nz__nz_epg.xml.gz").read_bytes()
    (tmp_path / "cut.gz").write_bytes(packed[:300_000])

    with _spawn_pool() as pool, pytest.raises(Invalid) as caught:
        pool.submit(parse_to_jsonl, str(tmp_path / "cut.gz"), str(tmp_path), None, None, None).result(
            timeout=120
        )

    assert caught.value.code == "XMLTV_TRUNCATED"


def _peak_rss_kb(tmp_path: Path, days: int) -> int:
    """Generate a 200-channel guide of `days` days and parse it in a child; returns the child's peak RSS."""
    source = tmp_path / f"guide-{days}.xml"
    out = tmp_path / f"out-{days}"
    out.mkdir()
    subprocess.run(
        [
            sys.executable,
            str(GEN_CORPUS),
            "xmltv",
            "--channels",
            "200",
            "--days",
            str(days),
            "--out",
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    code = (
        "import json, sys\n"
        "from backend.epg.parser import parse_to_jsonl\n"
        "stats = parse_to_jsonl(sys.argv[1], sys.argv[2], 'en', None, None)\n"
        f"{PEAK_RSS_CODE}"
        "print(json.dumps({'programmes': stats['programmes'], 'peak_kb': peak}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(source), str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    report = json.loads(done.stdout)
    assert report["programmes"] > 5000 * days
    return int(report["peak_kb"])


def test_memory_does_not_grow_with_the_guide(tmp_path: Path) -> None:
    one_day = _peak_rss_kb(tmp_path, 1)
    three_days = _peak_rss_kb(tmp_path, 3)

    # A parser that kept the tree would need about 60 MB more for the 10 MB three-day file than
    # for the 3.5 MB one-day file; a streaming one needs the same.
    assert three_days < 150 * 1024
    assert three_days - one_day < 10 * 1024, (one_day, three_days)
