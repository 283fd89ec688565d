"""Streaming XMLTV parser: a guide file (plain, gzip or xz) in, channel and programme records out."""

from __future__ import annotations

import gzip
import html
import io
import json
import logging
import lzma
import operator
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, cast

from lxml import etree

from backend.errors import Invalid

log = logging.getLogger(__name__)

__all__ = [
    "ParseStats",
    "XmltvChannel",
    "XmltvProgramme",
    "channel_from_json",
    "channel_to_json",
    "iter_xmltv",
    "open_guide",
    "parse_onscreen",
    "parse_to_jsonl",
    "parse_xmltv_ns",
    "parse_xmltv_time",
    "programme_from_json",
    "programme_to_json",
]

_UTC = UTC
_GZIP_MAGIC = b"\x1f\x8b"
_XZ_MAGIC = b"\xfd7zXZ\x00"
#: How many (line, message) notes ParseStats keeps; the counters keep counting past it.
MAX_ERRORS = 200


# --- records ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class XmltvChannel:
    """One `<channel>`: its id, every display-name in file order with its lang, icon, urls and number."""

    id: str
    display_names: list[tuple[str, str | None]]
    icon: str | None
    urls: list[str]
    number: str | None
    line_no: int

    @property
    def name(self) -> str:
        """The first display-name that is not just a channel number, else the first one, else the id."""
        for text, _lang in self.display_names:
            if not _CHANNEL_NUMBER.fullmatch(text):
                return text
        return self.display_names[0][0] if self.display_names else self.id


@dataclass(slots=True)
class XmltvProgramme:
    """One `<programme>` with UTC start/stop; single-valued texts are picked by the preferred language."""

    channel_id: str
    start: datetime
    stop: datetime
    title: str
    titles: list[tuple[str, str | None]]
    sub_title: str | None
    sub_titles: list[tuple[str, str | None]]
    desc: str | None
    descs: list[tuple[str, str | None]]
    categories: list[str]
    keywords: list[str]
    episode_num: str | None
    season: int | None
    episode: int | None
    part: int | None
    episode_systems: list[tuple[str, str]]
    icon: str | None
    credits: dict[str, list[str]]
    actor_roles: list[tuple[str, str]]
    rating: str | None
    rating_system: str | None
    ratings: list[tuple[str | None, str]]
    star_rating: str | None
    previously_shown: bool
    previously_shown_start: datetime | None
    new: bool
    premiere: bool
    live: bool
    date: str | None
    length_seconds: int | None
    country: str | None
    line_no: int


@dataclass
class ParseStats:
    """What a parse read and what it left out, and why.

    Every `<programme>` read ends up in exactly one of `programmes` (emitted), `skipped`
    (unusable; `skipped_reasons` says why), `filtered` (outside the time window) or
    `dropped_no_stop` (no stop time and no later programme on its channel to end it).
    """

    channels: int = 0
    channels_skipped: int = 0
    programmes_seen: int = 0
    programmes: int = 0
    skipped: int = 0
    skipped_reasons: dict[str, int] = field(default_factory=dict)
    filtered: int = 0
    dropped_no_stop: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)

    def note(self, line: int, message: str) -> None:
        """Keep a (line, message) note for the user, up to MAX_ERRORS of them."""
        if len(self.errors) < MAX_ERRORS:
            self.errors.append((line, message))

    def skip(self, reason: str, line: int, message: str) -> None:
        """Count a programme left out as unusable, under a stable reason."""
        self.skipped += 1
        self.skipped_reasons[reason] = self.skipped_reasons.get(reason, 0) + 1
        self.note(line, message)

    def as_dict(self) -> dict[str, Any]:
        """The stats as plain JSON-ready values (errors as [line, message] lists)."""
        return {
            "channels": self.channels,
            "channels_skipped": self.channels_skipped,
            "programmes_seen": self.programmes_seen,
            "programmes": self.programmes,
            "skipped": self.skipped,
            "skipped_reasons": dict(self.skipped_reasons),
            "filtered": self.filtered,
            "dropped_no_stop": self.dropped_no_stop,
            "errors": [[line, message] for line, message in self.errors],
        }


# --- times -----------------------------------------------------------------------------------------

# Zone names XMLTV grabbers are known to write instead of an offset, in minutes east of UTC. Only
# names with one common meaning are listed (IST and AST are not); CST/CDT take the North American
# meaning that XMLTV's own grabbers used.
_NAMED_ZONES: dict[str, int] = {
    "UTC": 0, "UT": 0, "GMT": 0, "Z": 0, "WET": 0, "BST": 60, "WEST": 60, "CET": 60, "CEST": 120,
    "EET": 120, "EEST": 180, "MSK": 180, "EST": -300, "EDT": -240, "CST": -360, "CDT": -300,
    "MST": -420, "MDT": -360, "PST": -480, "PDT": -420, "AKST": -540, "AKDT": -480, "HST": -600,
    "AWST": 480, "JST": 540, "KST": 540, "ACST": 570, "ACDT": 630, "AEST": 600, "AEDT": 660,
    "NZST": 720, "NZDT": 780,
}  # fmt: skip
_TIME_RE = re.compile(
    r"(\d{4})(\d\d)?(\d\d)?(\d\d)?(\d\d)?(\d\d)?\s*(?:([+-])(\d\d)(?::?(\d\d))?|([A-Za-z]{1,5}))?"
)
# Offsets already seen, keyed by their text ("+0100"), so the common 20-character form
# "YYYYMMDDhhmmss +HHMM" skips the regular expression. At most 2,880 valid keys exist.
_OFFSETS: dict[str, timedelta] = {"+0000": timedelta(0), "-0000": timedelta(0)}


# Parsed times by their text. A guide repeats the same few thousand instants (every channel starts
# programmes on the same half hours), so most lookups hit; the cache is emptied when it reaches its
# size, which keeps memory flat however long the guide is.
_TIME_CACHE: dict[str, datetime] = {}
_TIME_CACHE_SIZE = 50_000


def parse_xmltv_time(value: str) -> datetime:
    """Parse an XMLTV time ("20080715003000 +0100", "200807150030", "... BST") into aware UTC.

    Seconds, minutes, hours and even the day may be left out (they default to the start of the
    period); a time with no zone is UTC, as the XMLTV DTD says. Raises ValueError when unreadable.
    """
    moment = _TIME_CACHE.get(value)
    if moment is None:
        moment = _parse_time(value)
        if len(_TIME_CACHE) >= _TIME_CACHE_SIZE:
            _TIME_CACHE.clear()
        _TIME_CACHE[value] = moment
    return moment


def _parse_time(value: str) -> datetime:
    if len(value) == 20 and value[14] == " " and value[:14].isdigit():
        offset = _OFFSETS.get(value[15:])
        if offset is not None:
            moment = datetime(
                int(value[0:4]), int(value[4:6]), int(value[6:8]),
                int(value[8:10]), int(value[10:12]), int(value[12:14]), tzinfo=_UTC,
            )  # fmt: skip
            return moment - offset
    match = _TIME_RE.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"not an XMLTV time: {value!r}")
    year, month, day, hour, minute, second, sign, off_h, off_m, zone = match.groups()
    if sign is not None:
        hours, minutes = int(off_h), int(off_m or 0)
        if hours > 23 or minutes > 59:
            raise ValueError(f"impossible UTC offset in XMLTV time: {value!r}")
        offset = timedelta(hours=hours, minutes=minutes)
        if sign == "-":
            offset = -offset
        if off_m is not None and ":" not in value:
            _OFFSETS[f"{sign}{off_h}{off_m}"] = offset
    elif zone is not None:
        zone_minutes = _NAMED_ZONES.get(zone.upper())
        if zone_minutes is None:
            raise ValueError(f"unknown time zone name {zone!r} in XMLTV time: {value!r}")
        offset = timedelta(minutes=zone_minutes)
    else:
        offset = timedelta(0)
    moment = datetime(
        int(year), int(month or 1), int(day or 1),
        int(hour or 0), int(minute or 0), int(second or 0), tzinfo=_UTC,
    )  # fmt: skip
    return moment - offset


# --- episode numbers -------------------------------------------------------------------------------

_ONSCREEN_SE = re.compile(r"\s*(?:s(?:eason)?\s*(\d+)[\s,.:_-]*)?e(?:p(?:isode)?)?\.?\s*(\d+)", re.IGNORECASE)
_ONSCREEN_X = re.compile(r"\s*(\d+)\s*x\s*(\d+)\b", re.IGNORECASE)
_ONSCREEN_S = re.compile(r"\s*s(?:eason)?\s*(\d+)\b", re.IGNORECASE)


def parse_xmltv_ns(value: str) -> tuple[int | None, int | None, int | None]:
    """Parse xmltv_ns ("season.episode.part", zero-based, each may carry "/total") into 1-based numbers.

    "1.4/10.0/1" gives (2, 5, 1) and ".4." gives (None, 5, None); a missing or negative field
    (some feeds write -1 for unknown) is None.
    """
    parts = value.split(".")
    if len(parts) > 3:
        return None, None, None
    numbers: list[int | None] = []
    for part in parts:
        number = part.split("/", 1)[0].strip()
        numbers.append(int(number) + 1 if number.isdigit() else None)
    numbers.extend([None] * (3 - len(numbers)))
    return numbers[0], numbers[1], numbers[2]


def parse_onscreen(value: str) -> tuple[int | None, int | None]:
    """Read (season, episode) from on-screen forms such as "S05E36", "S5 E36", "5x36", "E12", "S3".

    On-screen numbers are already 1-based. Returns (None, None) for anything else.
    """
    match = _ONSCREEN_SE.match(value)
    if match is not None:
        season, episode = match.groups()
        return (int(season) if season is not None else None), int(episode)
    match = _ONSCREEN_X.match(value)
    if match is not None:
        return int(match.group(1)), int(match.group(2))
    match = _ONSCREEN_S.match(value)
    if match is not None:
        return int(match.group(1)), None
    return None, None


def _episode(systems: list[tuple[str, str]]) -> tuple[str | None, int | None, int | None, int | None]:
    """Pick (display string, season, episode, part): xmltv_ns first, gaps filled from onscreen."""
    season = episode = part = None
    onscreen: str | None = None
    for system, value in systems:
        if system == "xmltv_ns" and season is None and episode is None:
            season, episode, part = parse_xmltv_ns(value)
        elif system == "onscreen" and onscreen is None:
            onscreen = value
    if onscreen is not None and (season is None or episode is None):
        on_season, on_episode = parse_onscreen(onscreen)
        season = season if season is not None else on_season
        episode = episode if episode is not None else on_episode
    if onscreen is not None:
        return onscreen, season, episode, part
    if season is not None and episode is not None:
        return f"S{season:02d}E{episode:02d}", season, episode, part
    if episode is not None:
        return f"E{episode:02d}", season, episode, part
    if season is not None:
        return f"S{season:02d}", season, episode, part
    return None, season, episode, part


# --- opening the input -----------------------------------------------------------------------------


def open_guide(path: str | Path) -> BinaryIO:
    """Open a guide file for reading, decompressing gzip or xz as told by its first bytes (never its name)."""
    with open(path, "rb") as probe:
        magic = probe.read(6)
    if magic.startswith(_GZIP_MAGIC):
        return cast(BinaryIO, gzip.open(path, "rb"))
    if magic == _XZ_MAGIC:
        return cast(BinaryIO, lzma.open(path, "rb"))
    return open(path, "rb")


class _Rejoined(io.RawIOBase):
    """A stream whose first bytes were already read to sniff them, put back in front of the rest."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        super().__init__()
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            count = min(len(buffer), len(self._head))
            buffer[:count] = self._head[:count]
            self._head = self._head[count:]
            return count
        data = self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _decompressing(stream: BinaryIO) -> BinaryIO:
    """Wrap an already open stream in gzip or xz decompression when its first bytes say so."""
    head = stream.read(6)
    rejoined = io.BufferedReader(_Rejoined(head, stream))
    if head.startswith(_GZIP_MAGIC):
        return cast(BinaryIO, gzip.GzipFile(fileobj=rejoined, mode="rb"))
    if head == _XZ_MAGIC:
        return cast(BinaryIO, lzma.LZMAFile(rejoined, "rb"))
    return cast(BinaryIO, rejoined)


class _TrackedReader:
    """Hands the decompressed bytes to lxml, keeping the head and tail of the stream for error messages."""

    __slots__ = ("_stream", "eof", "head", "tail")

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.head = b""
        self.tail = b""
        self.eof = False

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        if not data:
            self.eof = True
            return data
        if len(self.head) < 1024:
            self.head += data[: 1024 - len(self.head)]
        self.tail = (self.tail + data)[-256:] if len(data) < 256 else data[-256:]
        return data


# --- errors ----------------------------------------------------------------------------------------

_HTML_START = re.compile(
    rb"\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html)[\s>]", re.IGNORECASE | re.DOTALL
)
_TV_END = re.compile(rb"</\s*tv\s*>")


def _html_error() -> Invalid:
    return Invalid(
        "Expected an XMLTV guide but got an HTML page (often a provider login or error page). "
        "Check the guide URL and its credentials.",
        code="XMLTV_NOT_XMLTV",
    )


def _not_xmltv(head: bytes, root_tag: str | None = None) -> Invalid:
    """The error for input that is something other than an XMLTV document."""
    head = head.removeprefix(b"\xef\xbb\xbf")
    if not head.strip():
        return Invalid(
            "The guide file is empty. Check the guide URL; the provider may have sent nothing.",
            code="XMLTV_NOT_XMLTV",
        )
    if _HTML_START.match(head) or (root_tag is not None and etree.QName(root_tag).localname == "html"):
        return _html_error()
    if root_tag is not None:
        return Invalid(
            f"Expected an XMLTV guide (root element <tv>) but the file's root element is <{root_tag}>. "
            "Check that the guide URL points at an XMLTV file.",
            code="XMLTV_NOT_XMLTV",
        )
    return Invalid(
        f"Expected an XMLTV guide but the file is not XML (it starts with {head.lstrip()[:40]!r}). "
        "Check that the guide URL points at an XMLTV file.",
        code="XMLTV_NOT_XMLTV",
    )


def _syntax_error(exc: etree.XMLSyntaxError, error_log: Any, reader: _TrackedReader) -> Invalid:
    """Turn lxml's complaint into a user-facing error naming the line where parsing failed."""
    line, message = exc.lineno, exc.msg
    # The exception's own message can be a generic "no element found"; the parser's log holds
    # the first real complaint with its line.
    for entry in error_log or ():
        if entry.level >= etree.ErrorLevels.ERROR:
            line, message = entry.line, entry.message
            break
    head = reader.head.removeprefix(b"\xef\xbb\xbf")
    if not head.lstrip().startswith(b"<") or _HTML_START.match(head):
        return _not_xmltv(head)
    if "amplification" in message or "entity loop" in message.lower():
        return Invalid(
            f"The guide was rejected at line {line}: it declares XML entities that expand beyond safe "
            f"limits ({message}). Use another guide source.",
            code="XMLTV_MALFORMED",
        )
    if reader.eof and not _TV_END.search(reader.tail):
        return Invalid(
            f"The guide ends early: the XML stops at line {line} before the closing </tv> ({message}). "
            "The download was probably cut off; refresh the guide to fetch it again.",
            code="XMLTV_TRUNCATED",
        )
    return Invalid(
        f"The guide is not well-formed XML at line {line}: {message}. "
        "Ask the provider to fix the feed or use another guide URL.",
        code="XMLTV_MALFORMED",
    )


# --- element readers -------------------------------------------------------------------------------

_CHANNEL_NUMBER = re.compile(r"\d+(?:[.-]\d+)?")
#: Programme children TIC does not keep; tested early so they skip the chain of known tags.
_IGNORED_TAGS = frozenset(
    {"url", "video", "audio", "subtitles", "review", "last-chance", "language", "orig-language"}
)
#: Cleared elements are detached from the tree in batches of this many.
_FREE_BATCH = 256
_LENGTH_UNITS = {"seconds": 1, "minutes": 60, "hours": 3600}


def _read_channel(elem: Any) -> XmltvChannel:
    display_names: list[tuple[str, str | None]] = []
    urls: list[str] = []
    icon: str | None = None
    lcn: str | None = None
    for child in elem:
        tag = child.tag
        text = child.text
        if tag == "display-name":
            if text and (text := text.strip()):
                display_names.append((text, child.get("lang")))
        elif tag == "icon":
            if icon is None:
                icon = child.get("src") or None
        elif tag == "url":
            if text and (text := text.strip()):
                urls.append(text)
        elif tag == "lcn" and lcn is None and text:
            lcn = text.strip() or None
    number = lcn
    if number is None:
        number = next((name for name, _ in display_names if _CHANNEL_NUMBER.fullmatch(name)), None)
    return XmltvChannel(elem.get("id") or "", display_names, icon, urls, number, elem.sourceline or 0)


def _full_text(elem: Any) -> str:
    """An element's text including what follows child nodes; unresolved entity references are decoded.

    Entities are never resolved by the parser, so a guide that names the XMLTV DTD and writes
    HTML entities (&eacute;, &nbsp;) leaves reference nodes in the text. Named HTML entities are
    decoded here by name; anything else keeps its "&name;" spelling rather than being lost.
    """
    parts = [elem.text or ""]
    for node in elem:
        if node.tag is etree.Entity:
            parts.append(html.unescape(node.text))
        else:
            parts.append("".join(node.itertext()))
        parts.append(node.tail or "")
    return "".join(parts)


def _pick(variants: list[tuple[str, str | None]], lang: str | None) -> str | None:
    """The variant in `lang` exactly, else one in the same base language (en for en_NZ), else the first."""
    if not variants:
        return None
    if lang is None or len(variants) == 1:
        return variants[0][0]
    wanted = lang.lower().replace("-", "_")
    base = wanted.split("_", 1)[0]
    same_base: str | None = None
    for text, variant_lang in variants:
        if variant_lang is None:
            continue
        have = variant_lang.lower().replace("-", "_")
        if have == wanted:
            return text
        if same_base is None and have.split("_", 1)[0] == base:
            same_base = text
    return same_base if same_base is not None else variants[0][0]


def _read_programme(elem: Any, lang: str | None, stats: ParseStats) -> tuple[XmltvProgramme, bool] | None:
    """Read one `<programme>`; returns (programme, has_stop) or None when it is unusable (counted)."""
    line = elem.sourceline or 0
    channel = elem.get("channel")
    if not channel or not channel.strip():
        stats.skip("missing_channel", line, "programme has no channel attribute; skipped")
        return None
    start_text = elem.get("start")
    try:
        start = parse_xmltv_time(start_text or "")
    except ValueError:
        stats.skip(
            "bad_start", line, f"programme on channel {channel!r} has an unreadable start {start_text!r}"
        )
        return None
    stop_text = elem.get("stop")
    stop: datetime | None = None
    if stop_text:
        try:
            stop = parse_xmltv_time(stop_text)
        except ValueError:
            stats.note(line, f"unreadable stop {stop_text!r}; the next programme's start is used instead")

    titles: list[tuple[str, str | None]] = []
    sub_titles: list[tuple[str, str | None]] = []
    descs: list[tuple[str, str | None]] = []
    categories: list[str] = []
    keywords: list[str] = []
    systems: list[tuple[str, str]] = []
    credits: dict[str, list[str]] = {}
    actor_roles: list[tuple[str, str]] = []
    ratings: list[tuple[str | None, str]] = []
    icon = image = star_rating = date = country = None
    previously_shown = new = premiere = live = False
    previously_shown_start: datetime | None = None
    length_seconds: int | None = None
    # One pass over the children with the commonest tags tested first: this loop runs for every
    # element of a 250 MB guide, so it avoids repeated find() calls.
    for child in elem:
        tag = child.tag
        if tag == "title" or tag == "desc" or tag == "sub-title":
            text = child.text if not len(child) else _full_text(child)
            if text and (text := text.strip()):
                target = titles if tag == "title" else descs if tag == "desc" else sub_titles
                target.append((text, child.get("lang")))
        elif tag in _IGNORED_TAGS:
            continue
        elif tag == "episode-num":
            text = child.text
            if text and (text := text.strip()):
                systems.append((child.get("system") or "onscreen", text))
        elif tag == "category":
            text = child.text
            if text and (text := text.strip()) and text not in categories:
                categories.append(text)
        elif tag == "icon":
            if icon is None:
                icon = child.get("src") or None
        elif tag == "image":
            if image is None and child.text:
                image = child.text.strip() or None
        elif tag == "date":
            date = (child.text or "").strip() or None
        elif tag == "rating" or tag == "star-rating":
            value = next((v.text or "" for v in child if v.tag == "value"), "").strip()
            if value and tag == "rating":
                ratings.append((child.get("system"), value))
            elif value and star_rating is None:
                star_rating = value
        elif tag == "previously-shown":
            previously_shown = True
            shown = child.get("start")
            if shown:
                try:
                    previously_shown_start = parse_xmltv_time(shown)
                except ValueError:
                    stats.note(line, f"unreadable previously-shown start {shown!r}; ignored")
        elif tag == "keyword":
            text = child.text
            if text and (text := text.strip()) and text not in keywords:
                keywords.append(text)
        elif tag == "country":
            if country is None and child.text:
                country = child.text.strip() or None
        elif tag == "live":
            live = True
        elif tag == "new":
            new = True
        elif tag == "premiere":
            premiere = True
        elif tag == "length":
            amount = (child.text or "").strip()
            factor = _LENGTH_UNITS.get(child.get("units") or "")
            if amount.isdigit() and factor is not None:
                length_seconds = int(amount) * factor
        elif tag == "credits":
            for person in child:
                kind, name = person.tag, person.text
                if not isinstance(kind, str) or not name or not (name := name.strip()):
                    continue
                credits.setdefault(kind, []).append(name)
                if kind == "actor":
                    role = person.get("role")
                    if role:
                        actor_roles.append((name, role))

    episode_num, season, episode, part = _episode(systems) if systems else (None, None, None, None)
    rating_system, rating = ratings[0] if ratings else (None, None)
    programme = XmltvProgramme(
        channel_id=channel,
        start=start,
        # A programme without a stop waits for the next one on its channel; until then its stop
        # holds the start as a placeholder and the caller knows from has_stop.
        stop=stop if stop is not None else start,
        title=_pick(titles, lang) or "",
        titles=titles,
        sub_title=_pick(sub_titles, lang),
        sub_titles=sub_titles,
        desc=_pick(descs, lang),
        descs=descs,
        categories=categories,
        keywords=keywords,
        episode_num=episode_num,
        season=season,
        episode=episode,
        part=part,
        episode_systems=systems,
        icon=icon or image,
        credits=credits,
        actor_roles=actor_roles,
        rating=rating,
        rating_system=rating_system,
        ratings=ratings,
        star_rating=star_rating,
        previously_shown=previously_shown,
        previously_shown_start=previously_shown_start,
        new=new,
        premiere=premiere,
        live=live,
        date=date,
        length_seconds=length_seconds,
        country=country,
        line_no=line,
    )
    return programme, stop is not None


# --- the stream ------------------------------------------------------------------------------------


def _require_aware(name: str, value: datetime | None) -> None:
    if value is not None and value.utcoffset() is None:
        raise Invalid(
            f"{name} must be a timezone-aware time (UTC); got {value.isoformat()}.",
            code="XMLTV_NAIVE_WINDOW",
            fields={name: "must include a timezone"},
        )


class _Programmes:
    """Completes programmes (missing stops, bad intervals, the time window) with one pending per channel.

    A programme without a stop waits, per channel, for the next programme on that channel, whose
    start becomes its stop. This assumes each channel's programmes appear in ascending start
    order, as XMLTV files in practice have them (channels may still be interleaved). Should a
    later programme start before the waiting one, the waiting one is dropped and counted as
    "out_of_order". At most one programme per channel is held, so memory stays bounded by the
    number of channels, not the size of the guide.
    """

    def __init__(self, stats: ParseStats, keep_from: datetime | None, keep_until: datetime | None) -> None:
        self._stats = stats
        self._keep_from = keep_from
        self._keep_until = keep_until
        self._pending: dict[str, XmltvProgramme] = {}

    def add(self, programme: XmltvProgramme, has_stop: bool) -> Iterator[XmltvProgramme]:
        waiting = self._pending.pop(programme.channel_id, None)
        if waiting is not None:
            if programme.start < waiting.start:
                self._stats.skip(
                    "out_of_order",
                    waiting.line_no,
                    f"programme on channel {waiting.channel_id!r} has no stop and the next one on the "
                    f"channel (line {programme.line_no}) starts earlier; dropped",
                )
            else:
                waiting.stop = programme.start
                yield from self._finish(waiting)
        if has_stop:
            yield from self._finish(programme)
        else:
            self._pending[programme.channel_id] = programme

    def _finish(self, programme: XmltvProgramme) -> Iterator[XmltvProgramme]:
        stats = self._stats
        if programme.stop <= programme.start:
            stats.skip(
                "stop_not_after_start",
                programme.line_no,
                f"programme on channel {programme.channel_id!r} stops at or before its start; dropped",
            )
        elif (self._keep_from is not None and programme.stop <= self._keep_from) or (
            self._keep_until is not None and programme.start >= self._keep_until
        ):
            stats.filtered += 1
        else:
            stats.programmes += 1
            yield programme

    def close(self) -> None:
        """Drop the programmes still waiting: nothing came after them to say when they end."""
        for programme in self._pending.values():
            self._stats.dropped_no_stop += 1
            self._stats.note(
                programme.line_no,
                f"last programme on channel {programme.channel_id!r} has no stop time; dropped",
            )
        self._pending.clear()


def iter_xmltv(
    source: str | Path | BinaryIO,
    *,
    preferred_lang: str | None = None,
    keep_from: datetime | None = None,
    keep_until: datetime | None = None,
    stats: ParseStats | None = None,
) -> Iterator[XmltvChannel | XmltvProgramme]:
    """Stream the channels and programmes of an XMLTV guide with memory that does not grow with its size.

    `source` is a path or an open binary stream; gzip and xz are recognised by their first bytes.
    Programmes entirely outside [keep_from, keep_until) are counted as filtered. A programme
    without a stop ends where the next programme on its channel starts, so it is yielded when that
    one is read (not in file order); this relies on each channel's programmes being in ascending
    start order, as real guides have them. Records may be yielded before a fault later in the file
    raises Invalid (XMLTV_MALFORMED, XMLTV_TRUNCATED, XMLTV_NOT_XMLTV); callers must then discard
    everything the parse produced.
    """
    _require_aware("keep_from", keep_from)
    _require_aware("keep_until", keep_until)
    stats = stats if stats is not None else ParseStats()
    stream = open_guide(source) if isinstance(source, str | Path) else _decompressing(source)
    try:
        yield from _parse(stream, preferred_lang, _Programmes(stats, keep_from, keep_until), stats)
    finally:
        if isinstance(source, str | Path):
            stream.close()
    log.info(
        "parsed XMLTV: %s channels, %s programmes (%s skipped, %s filtered, %s without stop)",
        stats.channels,
        stats.programmes,
        stats.skipped,
        stats.filtered,
        stats.dropped_no_stop,
    )


def _parse(
    stream: BinaryIO, lang: str | None, programmes: _Programmes, stats: ParseStats
) -> Iterator[XmltvChannel | XmltvProgramme]:
    reader = _TrackedReader(stream)
    # Entities are never resolved, no DTD or network resource is loaded, and libxml2's size limits
    # stay on (no huge_tree): its 10 MB cap on one text node is far above any real description,
    # and the same limits guard against entity-expansion ("billion laughs") attacks.
    events = etree.iterparse(
        reader,
        events=("end",),
        tag=("channel", "programme"),
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )
    root: Any = None
    seen_ids: set[str] = set()
    last_line = 0
    pending_free = 0
    try:
        for _event, elem in events:
            if root is None:
                root = elem
                while (parent := root.getparent()) is not None:
                    root = parent
                if root.tag != "tv":
                    raise _not_xmltv(reader.head, str(root.tag))
            last_line = elem.sourceline or last_line
            if elem.tag == "programme":
                stats.programmes_seen += 1
                read = _read_programme(elem, lang, stats)
                if read is not None:
                    yield from programmes.add(*read)
            else:
                channel = _read_channel(elem)
                if not channel.id or channel.id in seen_ids:
                    stats.channels_skipped += 1
                    stats.note(channel.line_no, f"channel without an id or with a repeated id {channel.id!r}")
                else:
                    seen_ids.add(channel.id)
                    stats.channels += 1
                    yield channel
            # Free what has been read: the element's content at once, and the emptied elements
            # before it in batches (at its end event an element is its parent's last child), so the
            # tree never holds more than a few hundred empty shells.
            elem.clear(keep_tail=False)
            pending_free += 1
            if pending_free >= _FREE_BATCH:
                pending_free = 0
                parent = elem.getparent()
                if parent is not None:
                    del parent[:-1]
    except etree.XMLSyntaxError as exc:
        raise _syntax_error(exc, getattr(events, "error_log", None), reader) from exc
    except EOFError as exc:
        raise Invalid(
            f"The guide's compressed data ends early ({_where(last_line)}). "
            "The download was probably cut off; refresh the guide to fetch it again.",
            code="XMLTV_TRUNCATED",
        ) from exc
    except (gzip.BadGzipFile, zlib.error, lzma.LZMAError) as exc:
        raise Invalid(
            f"The guide's compressed data is corrupt ({_where(last_line)}): {exc}. "
            "Refresh the guide; if it keeps failing, the provider's file is damaged.",
            code="XMLTV_MALFORMED",
        ) from exc
    if root is None:
        document_root = events.root
        if document_root is None or document_root.tag != "tv":
            raise _not_xmltv(reader.head, None if document_root is None else str(document_root.tag))
    programmes.close()


def _where(last_line: int) -> str:
    """Where in the XML a compressed stream failed, for the error message."""
    return (
        f"after line {last_line} of the XML"
        if last_line
        else "before the first complete channel or programme"
    )


# --- subprocess entry point ------------------------------------------------------------------------

_PROGRAMME_FIELDS = tuple(XmltvProgramme.__dataclass_fields__)
_programme_values = operator.attrgetter(*_PROGRAMME_FIELDS)
_PAIR_FIELDS = ("titles", "sub_titles", "descs", "episode_systems", "actor_roles", "ratings")
_TIME_FIELDS = ("start", "stop", "previously_shown_start")


def _iso(moment: datetime) -> str:
    """ISO-8601 in UTC with a Z, the API's time format ("2025-01-06T00:00:00Z")."""
    return moment.isoformat().removesuffix("+00:00") + "Z"


def programme_to_json(programme: XmltvProgramme) -> dict[str, Any]:
    """A programme as one JSONL row: times as ISO-8601 UTC with Z, and no key for null, false or empty.

    Leaving out empty values halves the row and the time spent encoding 350,000 of them;
    programme_from_json puts the defaults back.
    """
    row = {
        name: value
        for name, value in zip(_PROGRAMME_FIELDS, _programme_values(programme), strict=True)
        if value or type(value) is int
    }
    row["start"] = _iso(programme.start)
    row["stop"] = _iso(programme.stop)
    if programme.previously_shown_start is not None:
        row["previously_shown_start"] = _iso(programme.previously_shown_start)
    return row


def programme_from_json(row: dict[str, Any]) -> XmltvProgramme:
    """Rebuild a programme from a programme_to_json row (as read back from programmes.jsonl)."""
    values: dict[str, Any] = {name: row.get(name) for name in _PROGRAMME_FIELDS}
    for name in _TIME_FIELDS:
        if values[name] is not None:
            values[name] = datetime.fromisoformat(values[name])
    for name in _PAIR_FIELDS:
        values[name] = [tuple(pair) for pair in values[name] or ()]
    for name in ("categories", "keywords"):
        values[name] = values[name] or []
    for name in ("previously_shown", "new", "premiere", "live"):
        values[name] = bool(values[name])
    values["credits"] = values["credits"] or {}
    values["title"] = values["title"] or ""
    return XmltvProgramme(**values)


def channel_to_json(channel: XmltvChannel) -> dict[str, Any]:
    """A channel as one JSONL row, with its chosen `name` added for the importer's convenience."""
    return {
        "id": channel.id,
        "name": channel.name,
        "display_names": channel.display_names,
        "icon": channel.icon,
        "urls": channel.urls,
        "number": channel.number,
        "line_no": channel.line_no,
    }


def channel_from_json(row: dict[str, Any]) -> XmltvChannel:
    """Rebuild a channel from a channel_to_json row (as read back from channels.jsonl)."""
    return XmltvChannel(
        id=row["id"],
        display_names=[(name, lang) for name, lang in row["display_names"]],
        icon=row["icon"],
        urls=list(row["urls"]),
        number=row["number"],
        line_no=row["line_no"],
    )


def parse_to_jsonl(
    src: str,
    dest_dir: str,
    preferred_lang: str | None,
    keep_from_iso: str | None,
    keep_until_iso: str | None,
) -> dict[str, Any]:
    """Parse the guide at `src` into `dest_dir/channels.jsonl` and `dest_dir/programmes.jsonl`.

    Meant to run in a child process (all arguments and the result are plain, picklable values), so
    the CPU-heavy parse stays off the event loop while the parent streams the files into the
    database in chunks. Each line is one JSON object: channel_to_json / programme_to_json rows,
    read back with channel_from_json / programme_from_json. The window bounds are ISO-8601 with
    an offset. Returns ParseStats.as_dict() plus the two file paths; raises Invalid like
    iter_xmltv, after which the files hold partial output and must be discarded.
    """
    keep_from = datetime.fromisoformat(keep_from_iso) if keep_from_iso else None
    keep_until = datetime.fromisoformat(keep_until_iso) if keep_until_iso else None
    stats = ParseStats()
    channels_path = Path(dest_dir) / "channels.jsonl"
    programmes_path = Path(dest_dir) / "programmes.jsonl"
    encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    with (
        open(channels_path, "w", encoding="utf-8", buffering=1 << 20) as channels_out,
        open(programmes_path, "w", encoding="utf-8", buffering=1 << 20) as programmes_out,
    ):
        records = iter_xmltv(
            src, preferred_lang=preferred_lang, keep_from=keep_from, keep_until=keep_until, stats=stats
        )
        for record in records:
            if isinstance(record, XmltvProgramme):
                programmes_out.write(encode(programme_to_json(record)) + "\n")
            else:
                channels_out.write(encode(channel_to_json(record)) + "\n")
    result = stats.as_dict()
    result["channels_path"] = str(channels_path)
    result["programmes_path"] = str(programmes_path)
    return result
