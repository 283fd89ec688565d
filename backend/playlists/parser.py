"""M3U playlist parser: raw playlist bytes in, channel entry records out; pure, no I/O."""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from backend.errors import UpstreamError

#: URL schemes an entry may use. Anything else is dropped with a problem, because TVHeadend runs
#: `pipe://` URLs as shell commands and reads `file://` URLs from its own disk, so a playlist from
#: the internet must never be able to put one into a published mux.
STREAM_SCHEMES = frozenset(
    {
        "http", "https", "udp", "rtp", "rtsp", "rtsps", "srt", "rist",
        "rtmp", "rtmps", "rtmpe", "rtmpt", "rtmpte", "rtmpts", "mms", "mmsh", "mmst",
    }
)  # fmt: skip
#: A single line longer than this is not a playlist; the limit keeps a streaming parse bounded.
MAX_LINE_BYTES = 1024 * 1024
#: Only the first problems are kept (all are counted), so a broken 100k-entry file stays cheap.
MAX_PROBLEMS = 100

# HLS tags that only a media or master stream playlist carries, never a channel list.
_HLS_TAGS = ("#EXT-X-TARGETDURATION", "#EXT-X-STREAM-INF", "#EXT-X-MEDIA-SEQUENCE")
_KEY = r"[A-Za-z0-9_][\w.:-]*"
_ATTRIBUTE = re.compile(rf"""({_KEY})\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s,"']*))""")
# Where a run of attributes ends, when no comma marks it.
_ATTRIBUTE_RUN = re.compile(rf"""(?:\s*,?\s*{_KEY}\s*=\s*(?:"[^"]*"|'[^']*'|[^\s,"']*))*""")
# A comma followed by another quoted attribute is a stray separator, not the comma before the title
# (yuechan-live__IPTV.m3u line 172 has `tvg-name="X",group-title="Y" ...,X`).
_STRAY_COMMA = re.compile(rf"""\s*{_KEY}\s*=\s*["']""")
_EXTINF = re.compile(r"#EXTINF[:\s]?\s*([-+]?\d+(?:\.\d*)?)?", re.IGNORECASE)
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_PIPE_OPTIONS = re.compile(r"[A-Za-z][\w-]*=")
_REFERER_KEYS = ("http-referer", "http-referrer", "referer")
_HEADER_KEYS = frozenset(("http-user-agent", "user-agent", "http-header", *_REFERER_KEYS))
_INHERITED = ("catchup", "catchup-source", "catchup-days", "tvg-shift")
_HEADER_NAMES = {"user-agent": "User-Agent", "referer": "Referer", "referrer": "Referer"}


class InvalidPlaylist(UpstreamError):
    """The bytes are not an M3U channel playlist (an HTML login page, JSON, an HLS stream, ...)."""

    code = "INVALID_PLAYLIST"


@dataclass(frozen=True, slots=True)
class ParseProblem:
    """Something in the playlist that was skipped or guessed, with the 1-based line it is on."""

    line: int
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class PlaylistHeader:
    """The `#EXTM3U` line: its attributes as written and the XMLTV guide URLs it names."""

    attributes: dict[str, str] = field(default_factory=dict)
    epg_urls: tuple[str, ...] = ()


@dataclass(slots=True, kw_only=True)
class PlaylistEntry:
    """One stream. Typed fields are normalised (empty values become None); `attributes` keeps
    every `#EXTINF` attribute as written, keys lower-cased, for whatever the typed fields omit.

    Not frozen only because a frozen dataclass is four times slower to build, which shows on a
    100k-entry import; treat it as read-only."""

    line: int
    name: str
    url: str
    duration: float = -1.0
    tvg_id: str | None = None
    tvg_name: str | None = None
    tvg_logo: str | None = None
    tvg_chno: str | None = None
    tvg_shift: float | None = None
    group_title: str | None = None
    radio: bool = False
    catchup: str | None = None
    catchup_source: str | None = None
    catchup_days: int | None = None
    http_headers: dict[str, str] = field(default_factory=dict)
    vlc_options: dict[str, str] = field(default_factory=dict)
    kodi_props: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class ParsedPlaylist:
    """A whole playlist: header, entries in file order, and the first problems with their total."""

    header: PlaylistHeader
    entries: list[PlaylistEntry]
    problems: list[ParseProblem]
    problem_count: int


@dataclass(slots=True)
class _Info:
    """An `#EXTINF` line waiting for its URL."""

    line: int
    duration: float
    attributes: dict[str, str]
    title: str


@dataclass(slots=True)
class _Extras:
    """`#EXTGRP`, `#EXTVLCOPT`, `#KODIPROP` and `#EXTHTTP` lines seen since the last URL."""

    group: str | None = None
    vlc_options: dict[str, str] = field(default_factory=dict)
    kodi_props: dict[str, str] = field(default_factory=dict)
    http_headers: dict[str, str] = field(default_factory=dict)


def parse_playlist(data: bytes) -> ParsedPlaylist:
    """Parse a whole M3U playlist held in memory."""
    parser = PlaylistParser()
    entries = parser.feed(data)
    entries += parser.close()
    assert parser.header is not None  # close() raises when there is none
    return ParsedPlaylist(parser.header, entries, parser.problems, parser.problem_count)


class PlaylistParser:
    """Incremental M3U parser: `feed()` chunks as they arrive and get the entries they complete,
    then `close()`. Memory stays bounded by the longest line, whatever the file size.

    Lenient where real playlists are sloppy (no `#EXTM3U`, no comma before the title, stray quotes
    around a URL, non-UTF-8 text): such lines are recorded in `problems`, never fatal. Raises
    `InvalidPlaylist` only when the input is not a channel playlist at all."""

    def __init__(self) -> None:
        self.header: PlaylistHeader | None = None
        self.problems: list[ParseProblem] = []
        self.problem_count = 0
        self._buffer = b""
        self._line_no = 0
        self._info: _Info | None = None
        self._extras: _Extras | None = None
        self._inherited: dict[str, str] = {}
        self._default_headers: dict[str, str] = {}
        self._saw_text = False
        self._warned_encoding = False
        self._closed = False

    def feed(self, data: bytes) -> list[PlaylistEntry]:
        if self._closed:
            raise RuntimeError("feed() after close()")
        lines = (self._buffer + data).splitlines(keepends=True)
        # The last piece may be a line cut in half (or a CR whose LF is in the next chunk).
        self._buffer = lines.pop() if lines and not lines[-1].endswith(b"\n") else b""
        if len(self._buffer) > MAX_LINE_BYTES:
            raise InvalidPlaylist(f"Line {self._line_no + 1} is longer than {MAX_LINE_BYTES} bytes.")
        entries = []
        for raw in lines:
            entry = self._parse_line(raw)
            if entry is not None:
                entries.append(entry)
        return entries

    def close(self) -> list[PlaylistEntry]:
        entries = []
        if self._buffer:
            entry = self._parse_line(self._buffer)
            self._buffer = b""
            if entry is not None:
                entries.append(entry)
        self._closed = True
        if self.header is None:
            if not self._saw_text:
                raise InvalidPlaylist("The playlist is empty.")
            raise InvalidPlaylist("This is not an M3U playlist: it has no #EXTM3U header and no entries.")
        self._drop_pending_info()
        return entries

    def _parse_line(self, raw: bytes) -> PlaylistEntry | None:
        self._line_no += 1
        if len(raw) > MAX_LINE_BYTES:
            raise InvalidPlaylist(f"Line {self._line_no} is longer than {MAX_LINE_BYTES} bytes.")
        if self._line_no == 1 and raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
            raise InvalidPlaylist("The playlist is UTF-16 text; save it as UTF-8.")
        text = self._decode(raw.rstrip(b"\r\n")).strip()
        if self.header is None:
            text = text.lstrip("\ufeff")
            if not self._start(text):
                return None
        if not text:
            return None
        if text[0] == "#":
            self._directive(text)
            return None
        return self._url(text)

    def _decode(self, raw: bytes) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            if not self._warned_encoding:
                self._warned_encoding = True
                self._problem("NOT_UTF8", "The playlist is not UTF-8; read it as Windows-1252.")
            return raw.decode("cp1252", errors="replace")

    def _start(self, text: str) -> bool:
        """Read the lines before the header; True when `text` must also be parsed as content."""
        self._saw_text = self._saw_text or bool(text)
        if text[:7].upper() == "#EXTM3U":
            attributes = _parse_attributes(text[7:])
            self.header = PlaylistHeader(attributes, _epg_urls(attributes))
            defaults = {key: clean for key, value in attributes.items() if (clean := value.strip())}
            self._inherited = {key: defaults[key] for key in _INHERITED if key in defaults}
            self._default_headers = {}
            for name, keys in (("User-Agent", ("http-user-agent", "user-agent")), ("Referer", _REFERER_KEYS)):
                if value := next((defaults[key] for key in keys if key in defaults), None):
                    _set_header(self._default_headers, name, value)
            return False
        if _is_extinf(text) or _SCHEME.match(text):
            self.header = PlaylistHeader()
            self._problem("MISSING_HEADER", "The playlist does not start with #EXTM3U.")
            return True
        if not text or text[0] == "#":
            return False
        # Say what it looks like without echoing it: a provider's error page may hold credentials.
        looks_like = {"<": "an HTML or XML page", "{": "JSON", "[": "JSON"}.get(text[0], "some other text")
        raise InvalidPlaylist(f"This is not an M3U playlist: it starts with {looks_like}.")

    def _directive(self, text: str) -> None:
        if _is_extinf(text):
            self._drop_pending_info()
            self._info = _parse_extinf(text, self._line_no)
            return
        tag, _, value = text.partition(":")
        tag = tag.strip().upper()
        if tag.startswith(_HLS_TAGS):
            raise InvalidPlaylist("This is an HLS stream playlist, not a list of channels.")
        if tag not in ("#EXTGRP", "#EXTVLCOPT", "#KODIPROP", "#EXTHTTP"):
            return  # Comments and player-specific tags (#EXT-X-APP, #EXTM3U again, ...) carry nothing we use.
        extras = self._extras = self._extras or _Extras()
        if tag == "#EXTGRP":
            extras.group = value.strip() or None
        elif tag == "#EXTHTTP":
            self._exthttp(value, extras)
        else:
            key, eq, option = value.partition("=")
            if eq and key.strip():
                options = extras.vlc_options if tag == "#EXTVLCOPT" else extras.kodi_props
                options[key.strip().lower()] = _unquote(option.strip())

    def _exthttp(self, value: str, extras: _Extras) -> None:
        try:
            headers: Any = json.loads(value)
        except ValueError:
            headers = None
        if not isinstance(headers, dict):
            self._problem("BAD_EXTHTTP", f"Line {self._line_no}: #EXTHTTP is not a JSON object; ignored it.")
            return
        for name, header in headers.items():
            _set_header(extras.http_headers, str(name), str(header))

    def _url(self, text: str) -> PlaylistEntry | None:
        info, extras = self._info, self._extras
        self._info = self._extras = None
        url, pipe_headers = _split_pipe(text.strip("\"' \t"))
        scheme = _SCHEME.match(url)
        if scheme is not None and scheme.group(1).lower() in STREAM_SCHEMES:
            return self._entry(info, extras, url, pipe_headers)
        what = f"the entry {info.title!r}" if info else "a line"
        line = info.line if info else self._line_no
        if scheme is None:
            self._problem("NOT_A_URL", f"Skipped {what}: line {self._line_no} is not a stream URL.", line)
        else:
            message = f"Skipped {what}: {scheme.group(1)!r} URLs are not allowed."
            self._problem("UNSUPPORTED_SCHEME", message, line)
        return None

    def _entry(
        self, info: _Info | None, extras: _Extras | None, url: str, pipe_headers: dict[str, str]
    ) -> PlaylistEntry:
        attributes = info.attributes if info else {}
        own = {key: clean for key, value in attributes.items() if (clean := value.strip())}
        if extras is not None or pipe_headers or self._default_headers or not _HEADER_KEYS.isdisjoint(own):
            headers = self._http_headers(own, extras, pipe_headers)
        else:
            headers = {}
        # Catch-up and time shift on the #EXTM3U line are defaults for every entry.
        values = {**self._inherited, **own} if self._inherited else own
        tvg_id, tvg_name, logo = own.get("tvg-id"), own.get("tvg-name"), own.get("tvg-logo")
        return PlaylistEntry(
            line=info.line if info else self._line_no,
            name=(info.title if info else "") or tvg_name or tvg_id or _name_from_url(url),
            url=url,
            duration=info.duration if info else -1.0,
            tvg_id=tvg_id,
            tvg_name=tvg_name,
            # Only web logos: the admin UI and clients load them, so no javascript: or file: URLs.
            tvg_logo=logo if logo and logo[:8].lower().startswith(("http://", "https://")) else None,
            tvg_chno=own.get("tvg-chno") or own.get("channel-number"),
            tvg_shift=_float(values.get("tvg-shift")),
            group_title=own.get("group-title") or (extras.group if extras else None),
            radio=own.get("radio", "").lower() == "true",
            catchup=values.get("catchup"),
            catchup_source=values.get("catchup-source"),
            catchup_days=_int(values.get("catchup-days")),
            http_headers=headers,
            vlc_options=extras.vlc_options if extras else {},
            kodi_props=extras.kodi_props if extras else {},
            attributes=attributes,
        )

    def _http_headers(
        self, own: dict[str, str], extras: _Extras | None, pipe_headers: dict[str, str]
    ) -> dict[str, str]:
        """Least to most specific: #EXTM3U, #EXTINF, #EXTVLCOPT, #EXTHTTP, then the URL's pipe options."""
        headers = dict(self._default_headers)
        vlc = extras.vlc_options if extras else {}
        for name, value in (
            ("User-Agent", own.get("http-user-agent") or own.get("user-agent")),
            ("Referer", own.get("http-referer") or own.get("http-referrer") or own.get("referer")),
            ("User-Agent", vlc.get("http-user-agent")),
            ("Referer", vlc.get("http-referrer") or vlc.get("http-referer")),
        ):
            if value:
                _set_header(headers, name, value)
        more = (
            _pipe_options(own.get("http-header", "")),
            extras.http_headers if extras else {},
            pipe_headers,
        )
        for options in more:
            for name, value in options.items():
                _set_header(headers, name, value)
        return headers

    def _drop_pending_info(self) -> None:
        if self._info is not None:
            info, self._info = self._info, None
            self._problem("MISSING_URL", f"Skipped the entry {info.title!r}: no URL follows it.", info.line)

    def _problem(self, code: str, message: str, line: int | None = None) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(ParseProblem(self._line_no if line is None else line, code, message))


def _is_extinf(text: str) -> bool:
    return text[:7].upper() == "#EXTINF" and (len(text) == 7 or text[7] in ": \t")


def _parse_extinf(text: str, line: int) -> _Info:
    """`#EXTINF:<duration> key="value" ...,<title>`, where the duration and the comma may be missing."""
    head = _EXTINF.match(text)
    assert head is not None  # the caller checked the tag, and the rest of the pattern is optional
    start = end = head.end()
    comma = _title_comma(text, start)
    if comma >= 0:
        end, title = comma, text[comma + 1 :]
    else:
        # No comma at all (`#EXTINF:-1  Video1`): the title is whatever follows the attributes.
        run = _ATTRIBUTE_RUN.match(text, start)
        end = run.end() if run else start
        title = text[end:]
    duration = head.group(1)
    attributes = _parse_attributes(text[start:end])
    # Leading commas are stray separators too: yuechan-live__IPTV.m3u line 162 ends `"...",,Name`.
    title = title.strip().lstrip(",").lstrip()
    return _Info(line, float(duration) if duration else -1.0, attributes, title)


def _title_comma(text: str, pos: int) -> int:
    """Where the attributes end: the first comma outside double quotes that is not a stray separator
    between two attributes; -1 if there is none. str.find keeps this fast on 100k-line playlists."""
    while (comma := text.find(",", pos)) >= 0:
        quote = text.find('"', pos, comma)
        if quote >= 0 and (close := text.find('"', quote + 1)) >= 0:
            pos = close + 1
        elif quote < 0 and _STRAY_COMMA.match(text, comma + 1):
            pos = comma + 1
        else:
            return comma
    return -1


def _parse_attributes(run: str) -> dict[str, str]:
    """Read `key="value"` pairs; the first occurrence of a key wins."""
    attributes: dict[str, str] = {}
    for key, double, single, bare in _ATTRIBUTE.findall(run):
        # Interned: the same dozen keys repeat on every line of a 100k-entry playlist.
        attributes.setdefault(sys.intern(key.lower()), double or single or bare)
    return attributes


def _epg_urls(attributes: dict[str, str]) -> tuple[str, ...]:
    urls: dict[str, None] = {}
    for key in ("x-tvg-url", "url-tvg", "tvg-url"):
        for url in re.split(r"[,;]", attributes.get(key, "")):
            url = url.strip()
            if url.lower().startswith(("http://", "https://")):
                urls[url] = None
    return tuple(urls)


def _split_pipe(url: str) -> tuple[str, dict[str, str]]:
    """Split Kodi's `url|User-Agent=...&Referer=...` into the URL and its HTTP headers."""
    base, pipe, options = url.partition("|")
    if not pipe or not _PIPE_OPTIONS.match(options):
        return url, {}
    return base.strip(), _pipe_options(options)


def _pipe_options(options: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    if not options:
        return pairs
    for part in options.split("&"):
        name, eq, value = part.partition("=")
        if eq and name.strip():
            pairs[name.strip()] = unquote(value.strip())
    return pairs


def _set_header(headers: dict[str, str], name: str, value: str) -> None:
    # A CR or LF in a header would let a playlist inject headers into our upstream requests.
    if value and not any(c in name + value for c in "\r\n\0"):
        headers[_HEADER_NAMES.get(name.lower(), name)] = _unquote(value.strip())


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _float(value: str | None) -> float | None:
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _int(value: str | None) -> int | None:
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _name_from_url(url: str) -> str:
    """A name for a bare URL line: the last path segment without its extension, else the host."""
    parts = urlsplit(url)
    segment = unquote(parts.path.rstrip("/").rpartition("/")[2]).rpartition(".")
    return segment[0] or segment[2] or parts.hostname or url
