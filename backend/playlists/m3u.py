"""Streaming M3U / m3u_plus parser: lines or byte chunks in, M3uEntry records out; pure, no I/O."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urljoin

log = logging.getLogger(__name__)

#: Lines longer than this (bytes for byte input, characters for text input) are skipped and reported.
#: Real EXTINF lines stay under a few KiB (the largest header in the corpus is ~6 KiB); the cap keeps a
#: hostile or truncated body from growing one line without bound.
MAX_LINE = 64 * 1024
#: How many SkippedEntry records are kept; skipped_total keeps counting past it.
MAX_SKIPPED_KEPT = 1000
_READ_CHUNK = 1024 * 1024

#: URL schemes an entry may use. Anything else is skipped and reported: TVHeadend runs `pipe://` URLs
#: as shell commands and reads `file://` URLs from its own disk, so a playlist from the internet must
#: never be able to put one into a published mux.
STREAM_SCHEMES = frozenset(
    {
        "http", "https", "udp", "rtp", "rtsp", "rtsps", "srt", "rist",
        "rtmp", "rtmps", "rtmpe", "rtmpt", "rtmpte", "rtmpts", "mms", "mmsh", "mmst",
    }
)  # fmt: skip

# The common, well-formed EXTINF: a numeric duration, lower-case key="value" attributes separated by
# spaces, a comma, then the name. Lines that do not match this take the general path below, which
# gives the same result for them; this one only exists because it is three times faster.
_FAST_EXTINF = re.compile(r'#EXTINF:(-?\d++(?:\.\d++)?+)((?: ++[a-z0-9_-]++="[^"]*+")*+) *+,(.*)')
# The duration is the first token after "#EXTINF:"; it is optional because real files omit it.
_DURATION = re.compile(r"\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+))?")
# One key=value attribute; values are "double", 'single' or bare. The block pattern reads a run of
# them. Keys exclude "=" and every quantifier is possessive, so a hostile line cannot make the engine
# backtrack: matching stays linear in the line length.
_ATTR = re.compile(r"""\s*+([^\s=,"']++)\s*+=\s*+(?:"([^"]*+)"|'([^']*+)'|([^\s,"']*+))""")
_ATTR_BLOCK = re.compile(r"""(?:\s*+[^\s=,"']++\s*+=\s*+(?:"[^"]*+"|'[^']*+'|[^\s,"']*+))*+""")
# Where the attribute run stops early but a quoted attribute follows, skip the obstacle and read on:
# a stray comma (yuechan-live__IPTV.m3u line 172: tvg-name="X",group-title="Y",X) or a stray word
# or quote (line 50: zz-definition=HD" catchup="default" ...).
_RESUME = re.compile(r"""\s*+(?:,|[^\s,]++)(?=\s*+[^\s=,"']++\s*+=\s*+["'])""")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
# Xtream Codes stream paths: /live|movie|series/<user>/<pass>/<id>.<ext>, or the short live form
# /<user>/<pass>/<id> that get.php?output=ts emits. The short form must end the URL and has no
# extension, so CDN paths such as /live/hls/8117.m3u8 or /a/b/1.m3u8?x=y are not mistaken for it.
_XTREAM_PATH = re.compile(
    r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#]+/"
    r"(?:(live|movie|series)/[^/?#]+/[^/?#]+/(\d{1,20})(?:\.[A-Za-z0-9]{1,5})?(?:[?#]|$)"
    r"|[^/?#]+/[^/?#]+/(\d{1,20})$)"
)
# All four characters long, so one slice of the URL path tests them all.
_VOD_EXTENSIONS = frozenset((".mp4", ".mkv", ".avi", ".mov", ".m4v", ".wmv"))
_HEADER_TOKEN = re.compile(r"[A-Za-z0-9_-]+=")
# An HTTP header name (an RFC 9110 token); a header with any other name is dropped, not sent upstream.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_BOM = b"\xef\xbb\xbf"
_NEWLINE = re.compile(r"\r\n|\r|\n")

# Entry attributes and #EXTVLCOPT options that carry HTTP request headers, by lower-cased name.
_HEADER_ATTRS = {
    "http-user-agent": "User-Agent",
    "user-agent": "User-Agent",
    "http-referrer": "Referer",
    "http-referer": "Referer",
    "http-origin": "Origin",
    "http-cookie": "Cookie",
}
# Canonical spelling of header names given in |suffixes, http-header attributes and #EXTHTTP.
_HEADER_NAMES = {
    "user-agent": "User-Agent",
    "referer": "Referer",
    "referrer": "Referer",
    "origin": "Origin",
    "cookie": "Cookie",
}
_HEADER_KEYS = frozenset((*_HEADER_ATTRS, "http-header"))
_CATCHUP_KEYS = frozenset(("catchup", "catchup-type", "catchup-source", "catchup-days", "timeshift"))


@dataclass(slots=True)
class M3uEntry:
    """One playable stream with its guide metadata, as found in a playlist or an Xtream response."""

    line_no: int  # 1-based line of the #EXTINF (of the URL when there was none; list position for Xtream)
    name: str
    url: str  # without the |header suffix, resolved against the playlist URL when it was relative
    duration: float | None  # as written (-1 for live streams); None when the EXTINF gives none
    tvg_id: str | None
    tvg_name: str | None
    tvg_logo: str | None  # only http(s) logos; any other value stays in attrs only
    tvg_chno: str | None
    group: str | None  # group-title, else #EXTGRP
    catchup: str | None
    catchup_source: str | None
    catchup_days: int | None
    headers: dict[str, str]
    vlc_options: dict[str, str]
    kodi_props: dict[str, str]
    attrs: dict[str, str]  # every EXTINF attribute as written, keys lower-cased; nothing inherited
    is_vod: bool
    provider_stream_id: str | None  # the numeric id of an Xtream-style URL


@dataclass(slots=True)
class SkippedEntry:
    """Something in the input that could not become an entry, and why."""

    line_no: int
    reason: str


@dataclass(slots=True)
class Extinf:
    """A parsed #EXTINF line waiting for its URL."""

    line_no: int
    duration: float | None
    attrs: dict[str, str]  # keys lower-cased
    name: str  # stripped; may be empty


#: EXTINF attributes that make an entry more than a simple one (see EntrySink.simple).
SPECIAL_ATTRS = _HEADER_KEYS | _CATCHUP_KEYS


class EntrySink(Protocol):
    """Where a parser given a sink puts its entries, in playlist order, instead of returning them."""

    def entry(self, entry: M3uEntry) -> None:
        """Any entry."""

    def simple(self, info: Extinf, url: str) -> None:
        """An entry that is only its #EXTINF and an http(s) URL, without the M3uEntry being built: no
        header, catchup (SPECIAL_ATTRS) or option lines, no #EXTGRP, no #EXTM3U defaults that apply
        to it, and a URL without a |suffix or quotes. The sink derives the fields the way
        M3uParser builds an M3uEntry (this is the common entry of big playlists, so it is the one
        worth not building twice)."""


class M3uParser:
    """Turn one playlist into entries, one line at a time; use a new parser for each playlist.

    Feed it with exactly one of feed_lines(), feed_bytes(), or push()+finish(). Entries come out as
    soon as their URL line is read, so memory stays flat whatever the playlist size. Rules that are
    choices rather than format facts:

    - A URL line with no #EXTINF before it is kept (plain M3U lists are only URLs); it is named after
      the last path segment of the URL and its line_no is the URL's line.
    - A relative URL is resolved against base_url; without base_url it is skipped and reported. Quotes
      around a URL line are dropped. Only the schemes in STREAM_SCHEMES are accepted.
    - The name is the text after the first comma that ends the attributes, with stray leading commas
      dropped; commas inside quoted values or inside the name itself do not split. An EXTINF without
      any comma takes the text after its attributes. An empty name falls back to tvg-name, tvg-id,
      then the URL.
    - Headers come from the #EXTM3U line, then the entry's header attributes, #EXTVLCOPT, #EXTHTTP and
      finally the URL's |suffix; later ones win. A header whose name is not a token or whose value
      holds CR, LF or NUL is dropped: it could inject headers into requests to the provider.
    - catchup, catchup-source and catchup-days from the #EXTM3U line apply to entries without their own.
    - NUL characters are dropped from the input: they are junk in a playlist, and PostgreSQL text
      cannot hold them.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        header: str | None = None,
        first_line: int = 1,
        sink: EntrySink | None = None,
    ) -> None:
        """header: the playlist's #EXTM3U line, for a parser that starts in the middle of a playlist at
        line first_line (the importer parses big playlists in parts). With a sink, entries go to it
        and the feed methods return none."""
        self.base_url = base_url
        self._sink = sink
        self.header: dict[str, str] = {}
        self.skipped: list[SkippedEntry] = []
        self.skipped_total = 0
        self._pending: Extinf | None = None
        self._group: str | None = None
        self._vlc: dict[str, str] = {}
        self._kodi: dict[str, str] = {}
        self._http: dict[str, str] = {}
        self._default_headers: dict[str, str] = {}
        self._header_catchup = False
        self._after_overlong = False
        # Byte-input state: the pieces of an unfinished line and their length, whether the last chunk
        # ended in CR, and whether we are dropping the rest of an overlong line.
        self._parts: list[bytes] = []
        self._parts_len = 0
        self._after_cr = False
        self._discarding = False
        self._finished = False
        self.lines_read = first_line - 1
        if header is not None and header[:7].upper() == "#EXTM3U":
            self._handle(header, 0)

    @property
    def epg_urls(self) -> list[str]:
        """Guide URLs named by the #EXTM3U line (x-tvg-url, url-tvg), comma-separated lists split.

        Only http(s) URLs are listed: anything else cannot be a guide TIC should fetch.
        """
        urls: list[str] = []
        for key in ("x-tvg-url", "url-tvg"):
            for url in self.header.get(key, "").split(","):
                url = url.strip()
                if url[:8].lower().startswith(("http://", "https://")) and url not in urls:
                    urls.append(url)
        return urls

    # -- input adapters ---------------------------------------------------------------------------

    def feed_lines(self, lines: Iterable[str]) -> Iterator[M3uEntry]:
        """Parse text given as lines (line endings optional); an item may also hold several lines."""
        handle = self._handle
        for raw in lines:
            if "\0" in raw:
                raw = raw.replace("\0", "")
            # Drop one line ending only: further ones end blank lines, which count.
            text = raw[:-2] if raw.endswith("\r\n") else raw[:-1] if raw.endswith(("\n", "\r")) else raw
            # An item may hold several lines (a whole text, or lines split on LF only).
            many = "\r" in text or "\n" in text
            for piece in _NEWLINE.split(text) if many else (text,):
                self.lines_read += 1
                if self.lines_read == 1 and piece.startswith("\ufeff"):
                    piece = piece[1:]
                if len(piece) > MAX_LINE:
                    self._overlong(self.lines_read)
                    continue
                entry = handle(piece, self.lines_read)
                if entry is not None:
                    yield entry
        yield from self.finish()

    def feed_bytes(self, chunks: Iterable[bytes]) -> Iterator[M3uEntry]:
        """Parse raw bytes given in chunks of any size (file lines, 1 MiB reads, HTTP body chunks)."""
        for chunk in chunks:
            yield from self.push(chunk)
        yield from self.finish()

    def push(self, chunk: bytes) -> list[M3uEntry]:
        """Parse the next chunk of raw bytes; returns the entries it completed.

        This is the form an async importer uses: push each body chunk as it arrives, then finish().
        """
        out: list[M3uEntry] = []
        if b"\0" in chunk:
            # NUL is junk in a playlist, and PostgreSQL text cannot hold it: entries never carry one.
            chunk = chunk.replace(b"\0", b"")
        if not chunk:
            return out
        if self._after_cr:
            # CRLF split across two chunks: the LF belongs to the line the CR already ended.
            self._after_cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if self._discarding:
            chunk = self._discard_until_eol(chunk)
            if self._discarding:
                return out
        if not chunk:
            return out
        if b"\n" not in chunk and b"\r" not in chunk:
            # Still inside one line: keep the piece and join only once the line ends, so that many
            # tiny chunks cost linear, not quadratic, time.
            self._keep_partial(chunk)
            if self._discarding:
                self.lines_read += 1
                self._overlong(self.lines_read)
            return out
        if self._parts:
            self._parts.append(chunk)
            data = b"".join(self._parts)
            self._parts = []
            self._parts_len = 0
        else:
            data = chunk
        pieces = data.splitlines()
        last = data[-1:]
        if last == b"\n" or last == b"\r":
            self._after_cr = last == b"\r"
        else:
            self._keep_partial(pieces.pop())
        handle = self._handle
        append = out.append
        n = self.lines_read
        for raw in pieces:
            n += 1
            if len(raw) > MAX_LINE:
                self._overlong(n)
                continue
            # UTF-8 is tried inline because this loop runs once per line of the playlist.
            try:
                text = raw.decode()
            except UnicodeDecodeError:
                text = _decode_legacy(raw)
            if n == 1:
                text = text.removeprefix("\ufeff").removeprefix("\u00ef\u00bb\u00bf")
            entry = handle(text, n)
            if entry is not None:
                append(entry)
        self.lines_read = n
        if self._discarding:
            self.lines_read += 1
            self._overlong(self.lines_read)
        return out

    def finish(self) -> list[M3uEntry]:
        """Flush a last line without a final newline and report an EXTINF left without a URL."""
        out: list[M3uEntry] = []
        if self._finished:
            return out
        self._finished = True
        if self._parts:
            raw = b"".join(self._parts)
            self._parts = []
            self.lines_read += 1
            entry = self._handle(_decode(raw, self.lines_read), self.lines_read)
            if entry is not None:
                out.append(entry)
        if self._pending is not None:
            self._skip(self._pending.line_no, "#EXTINF has no URL before the end of the playlist")
            self._pending = None
        return out

    def _keep_partial(self, piece: bytes) -> None:
        self._parts.append(piece)
        self._parts_len += len(piece)
        if self._parts_len > MAX_LINE:
            # Stop buffering a line that is already too long and drop it up to its end.
            self._parts = []
            self._parts_len = 0
            self._discarding = True

    def _discard_until_eol(self, chunk: bytes) -> bytes:
        n, r = chunk.find(b"\n"), chunk.find(b"\r")
        ends = [i for i in (n, r) if i >= 0]
        if not ends:
            return b""
        cut = min(ends)
        self._discarding = False
        if chunk[cut : cut + 2] == b"\r\n":
            return chunk[cut + 2 :]
        if cut == len(chunk) - 1 and chunk[cut:] == b"\r":
            self._after_cr = True
        return chunk[cut + 1 :]

    # -- line rules -------------------------------------------------------------------------------

    def _handle(self, line: str, line_no: int) -> M3uEntry | None:
        line = line.strip()
        if not line:
            return None
        if line[0] != "#":
            return self._on_url(line, line_no)
        if line.startswith("#EXTINF:"):
            self._on_extinf(line, line_no)
            return None
        head = line[:10].upper()
        if head.startswith("#EXTINF:"):
            self._on_extinf(line, line_no)
        elif head.startswith("#EXTM3U"):
            for key, value in _read_attrs(line, 8 if line[7:8] == ":" else 7)[0].items():
                self.header.setdefault(key, value)
            self._default_headers = _safe_headers(
                {_HEADER_ATTRS[k]: v.strip() for k, v in self.header.items() if k in _HEADER_ATTRS and v}
            )
            self._header_catchup = not self.header.keys().isdisjoint(_CATCHUP_KEYS)
        elif head.startswith("#EXTGRP:"):
            self._group = line[8:].strip() or None
        elif head.startswith("#EXTVLCOPT"):
            key, value = _option(line[10:])
            if key:
                self._vlc[key] = value
        elif head.startswith("#KODIPROP:"):
            key, value = _option(line[10:])
            if key:
                self._kodi[key] = value
        elif head.startswith("#EXTHTTP:"):
            self._on_exthttp(line[9:], line_no)
        # Anything else is a comment or a directive we do not use (#EXT-X-..., #PLAYLIST, ...).
        return None

    def _on_exthttp(self, text: str, line_no: int) -> None:
        """#EXTHTTP:{"User-Agent": "...", "Cookie": "..."}: headers for the next entry."""
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            log.debug("Line %s: #EXTHTTP is not a JSON object; ignored", line_no)
            return
        for name, header in value.items():
            if isinstance(header, str | int | float) and not isinstance(header, bool):
                self._http[_HEADER_NAMES.get(str(name).lower(), str(name))] = str(header).strip()

    def _on_extinf(self, line: str, line_no: int) -> None:
        if self._pending is not None:
            self._skip(self._pending.line_no, f"#EXTINF has no URL (next #EXTINF is on line {line_no})")
            # Options seen after the broken EXTINF belonged to it, not to the next entry.
            self._reset_options()
        self._after_overlong = False
        fast = _FAST_EXTINF.fullmatch(line)
        if fast is not None:
            duration, block, name = fast.groups()
            # A name holding more key="value" pairs means a stray comma split the attributes; only
            # the general path knows how to read on past it.
            if '="' not in name:
                name = name.strip()
                if name.startswith(","):
                    name = name.lstrip(", \t")
                if block:
                    # The pattern matched the block as runs of ` key="value"`, so cutting it at the
                    # quotes gives " key=", "value", " key2=", "value2", ..., "" (a third faster
                    # than a findall; the last repeat of a key wins, as with the general path).
                    pieces = block.split('"')
                    attrs = dict(zip([k.lstrip(" ")[:-1] for k in pieces[0:-1:2]], pieces[1::2], strict=True))
                else:
                    attrs = {}
                self._pending = Extinf(line_no, float(duration), attrs, name)
                return
        m = _DURATION.match(line, 8)
        assert m is not None  # The pattern also matches the empty string.
        duration = float(m.group(1)) if m.group(1) else None
        attrs, pos = _read_attrs(line, m.end())
        comma = line.find(",", pos)
        if comma > pos and line.find('"', pos, comma) >= 0:
            # A stray quote before the name: the comma that ends the attributes is the first one
            # outside quotes.
            comma = _unquoted_comma(line, pos, comma)
        if comma >= 0:
            name = line[comma + 1 :].strip()
            if name.startswith(","):
                name = name.lstrip(", \t")
        else:
            name = line[pos:].strip()
        self._pending = Extinf(line_no, duration, attrs, name)

    def _reset_options(self) -> None:
        # Each entry owns its option dicts: the next #EXTVLCOPT must not write into this one.
        self._group = None
        self._vlc = {}
        self._kodi = {}
        self._http = {}

    def _on_url(self, line: str, line_no: int) -> M3uEntry | None:
        # This runs once per entry of playlists with 100k+ entries, hence the inlined helpers.
        info = self._pending
        vlc = self._vlc
        kodi = self._kodi
        http = self._http
        group = self._group
        sink = self._sink
        if (
            sink is not None
            and info is not None
            and group is None
            and not (vlc or kodi or http or self._default_headers or self._header_catchup)
            and line.startswith(("http://", "https://"))
            and "|" not in line
            and line[-1] not in "\"'"
            and info.attrs.keys().isdisjoint(SPECIAL_ATTRS)
        ):
            # Nothing was collected for this entry but its EXTINF: no option dicts to reset.
            self._pending = None
            sink.simple(info, line)
            return None
        if info is not None:
            self._pending = None
            attrs = info.attrs
            entry_line = info.line_no
        else:
            attrs = {}
            entry_line = line_no
            if self._after_overlong:
                self._after_overlong = False
                self._skip(line_no, "URL follows a skipped overlong line, so its #EXTINF was lost")
                return None
        self._group = None
        self._vlc = {}
        self._kodi = {}
        self._http = {}
        if line[0] in "\"'" or line[-1] in "\"'":
            # A stray quote around the URL (fanmingming-live__radio_index.m3u line 339).
            line = line.strip("\"' \t")
        url, bar, suffix = line.partition("|")
        if bar:
            url = url.rstrip()
        if not url.startswith(("http://", "https://")):
            checked = self._checked_url(url, entry_line, line_no)
            if checked is None:
                return None
            url = checked
        get = attrs.get
        keys = attrs.keys()
        if self._default_headers or http or suffix or vlc or not keys.isdisjoint(_HEADER_KEYS):
            headers = self._headers(attrs, vlc, http, suffix)
        else:
            headers = {}
        value = get("tvg-name")
        tvg_name = (value.strip() or None) if value else None
        value = get("tvg-id")
        tvg_id = (value.strip() or None) if value else None
        if not keys.isdisjoint(_CATCHUP_KEYS) or self._header_catchup:
            catchup = _clean(get("catchup") or get("catchup-type") or self.header.get("catchup"))
            source = _clean(get("catchup-source") or self.header.get("catchup-source"))
            days = _int(get("catchup-days") or get("timeshift") or self.header.get("catchup-days"))
        else:
            catchup = source = None
            days = None
        name = info.name if info is not None else ""
        if not name:
            name = tvg_name or tvg_id or name_from_url(url)
        value = get("tvg-logo") or get("logo")
        # Only web logos: the admin UI and clients load them, so no javascript:, data: or file: URLs.
        logo = value.strip() if value and value[:8].lower().startswith(("http://", "https://")) else None
        value = get("tvg-chno") or get("channel-number")
        chno = (value.strip() or None) if value else None
        value = get("group-title")
        if value:
            group = value.strip() or group
        kind, stream_id = xtream_ref(url)
        entry = M3uEntry(
            entry_line,
            name,
            url,
            info.duration if info is not None else None,
            tvg_id,
            tvg_name,
            logo,
            chno,
            group,
            catchup,
            source,
            days,
            headers,
            vlc,
            kodi,
            attrs,
            kind == "movie" or kind == "series" or looks_like_vod_file(url),
            stream_id,
        )
        if sink is not None:
            sink.entry(entry)
            return None
        return entry

    def _checked_url(self, url: str, entry_line: int, line_no: int) -> str | None:
        """The URL if its scheme is allowed (relative ones resolved), else None with a skip recorded."""
        if url.startswith(("http://", "https://")):
            return url
        scheme = _SCHEME.match(url)
        if scheme is not None and (url[scheme.end() : scheme.end() + 2] == "//" or "://" not in url):
            name = scheme.group(1).lower()
            if name in STREAM_SCHEMES:
                return url
            self._skip(entry_line, f"{name}: URLs are not allowed (line {line_no})")
            return None
        if any(c.isspace() for c in url):
            self._skip(entry_line, f"line {line_no} is neither a directive nor a URL")
            return None
        if self.base_url is None:
            self._skip(entry_line, "relative URL and no playlist URL to resolve it against")
            return None
        resolved = urljoin(self.base_url, url)
        if not resolved.lower().startswith(("http://", "https://")):
            self._skip(entry_line, f"relative URL on line {line_no} does not resolve to an http(s) URL")
            return None
        return resolved

    def _headers(
        self, attrs: dict[str, str], vlc: dict[str, str], http: dict[str, str], suffix: str
    ) -> dict[str, str]:
        """Least to most specific: #EXTM3U, EXTINF attributes, #EXTVLCOPT, #EXTHTTP, the |suffix."""
        headers = dict(self._default_headers)
        if not attrs.keys().isdisjoint(_HEADER_KEYS):
            for key, header in _HEADER_ATTRS.items():
                value = attrs.get(key)
                if value:
                    headers[header] = value.strip()
            if attrs.get("http-header"):
                _header_pairs(attrs["http-header"], headers)
        if vlc:
            for key, header in _HEADER_ATTRS.items():
                value = vlc.get(key)
                if value:
                    headers[header] = value
        if http:
            headers.update(http)
        if suffix:
            _header_pairs(suffix, headers)
        return _safe_headers(headers)

    def _overlong(self, line_no: int) -> None:
        self._after_overlong = True
        self._skip(line_no, f"line is longer than {MAX_LINE} characters")

    def _skip(self, line_no: int, reason: str) -> None:
        self.skipped_total += 1
        if len(self.skipped) < MAX_SKIPPED_KEPT:
            self.skipped.append(SkippedEntry(line_no, reason))
        elif self.skipped_total == MAX_SKIPPED_KEPT + 1:
            log.debug("More than %s skipped lines; only counting from line %s on", MAX_SKIPPED_KEPT, line_no)


def _decode(raw: bytes, line_no: int) -> str:
    """UTF-8 first; a line that is not valid UTF-8 is read as Windows-1252, then Latin-1."""
    if line_no == 1:
        raw = raw.removeprefix(_BOM)
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return _decode_legacy(raw)


def _decode_legacy(raw: bytes) -> str:
    # Windows-1252 is what "Latin-1" files written on Windows really are (€, curly quotes); Latin-1
    # itself decodes every byte, so it is the last resort for the five bytes cp1252 leaves undefined.
    try:
        return raw.decode("cp1252")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _read_attrs(text: str, pos: int) -> tuple[dict[str, str], int]:
    """key="value" attributes from pos on, and where they end; keys lower-cased, the last repeat wins.

    findall() only ever sees a span the block pattern has already matched, so it never tries the
    pattern at every position of a long line (which would be quadratic).
    """
    attrs: dict[str, str] = {}
    while True:
        block = _ATTR_BLOCK.match(text, pos)
        assert block is not None  # The pattern matches the empty string.
        end = block.end()
        if end > pos:
            items = _ATTR.findall(text, pos, end)
            attrs.update({key.lower(): dq or sq or bare for key, dq, sq, bare in items})
        pos = end
        # Only text that still holds a quoted value can hide more attributes; testing that first
        # keeps the regex off the common path.
        if text.find('="', pos) < 0 and text.find("='", pos) < 0:
            return attrs, pos
        resume = _RESUME.match(text, pos)
        if resume is None:
            return attrs, pos
        pos = resume.end()


def _unquoted_comma(text: str, pos: int, first: int) -> int:
    """Index of the first comma after pos outside double quotes; `first` if quotes never balance."""
    in_quotes = False
    for i in range(pos, len(text)):
        c = text[i]
        if c == '"':
            in_quotes = not in_quotes
        elif c == "," and not in_quotes:
            return i
    return first


def _option(text: str) -> tuple[str, str]:
    """Split a '#EXTVLCOPT:key=value' or '#KODIPROP:key=value' body; quotes around the value go."""
    key, _, value = text.lstrip(":").partition("=")
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    return key.strip().lstrip("-").lower(), value


def _header_pairs(text: str, headers: dict[str, str]) -> None:
    """Add 'Name=value&Name2=value2' pairs (Kodi's |suffix form) to headers.

    A piece that does not start with 'Token=' continues the previous value, so a Referer with its own
    '&' query survives. Values are percent-decoded, as writers encode them (User-Agent=Kodi%2F20.0).
    """
    last: str | None = None
    for piece in text.split("&"):
        if _HEADER_TOKEN.match(piece) or last is None:
            key, _, value = piece.partition("=")
            key = key.strip()
            if not key:
                continue
            last = _HEADER_NAMES.get(key.lower(), key)
            headers[last] = unquote(value.strip())
        else:
            headers[last] += "&" + unquote(piece)


def _safe_headers(headers: dict[str, str]) -> dict[str, str]:
    """Drop headers with a name that is not a token or a value holding CR, LF or NUL.

    Such a value (often smuggled in percent-encoded, as %0D%0A) would let a playlist add its own
    headers to TIC's or TVHeadend's requests to the provider.
    """
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name) or "\r" in value or "\n" in value or "\0" in value:
            break
    else:
        return headers
    return {
        name: value
        for name, value in headers.items()
        if _TOKEN.fullmatch(name) and "\r" not in value and "\n" not in value and "\0" not in value
    }


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def _int(value: str | None) -> int | None:
    if not value:
        return None
    try:
        return int(float(value.strip()))
    except (ValueError, OverflowError):
        return None


def xtream_ref(url: str) -> tuple[str | None, str | None]:
    """('live'|'movie'|'series', id) for an Xtream Codes stream URL, else (None, None)."""
    m = _XTREAM_PATH.match(url)
    if m is None:
        return None, None
    if m.group(1):
        return m.group(1), m.group(2)
    return "live", m.group(3)


def looks_like_vod_file(url: str) -> bool:
    end = url.find("?")
    if end < 0:
        end = len(url)
    hash_at = url.find("#", 0, end)
    if hash_at >= 0:
        end = hash_at
    return url[end - 4 : end].lower() in _VOD_EXTENSIONS


def name_from_url(url: str) -> str:
    path = url.split("?", 1)[0].split("#", 1)[0]
    after_host = path.split("://", 1)[-1]
    host, _, rest = after_host.partition("/")
    segment = unquote(rest.rstrip("/").rsplit("/", 1)[-1]) if rest.strip("/") else ""
    stem = segment.rsplit(".", 1)[0] if "." in segment else segment
    return stem or segment or host or url


def stream_identity(source_id: int, entry: M3uEntry) -> str:
    """A key for an entry that stays the same across refreshes of one source.

    Xtream-style entries use the provider's stream id with its kind ("7:xc:live:1234"), so a changed
    host or load-balanced server keeps the identity. Others use the SHA-1 of the URL without its
    |header suffix ("7:url:<40 hex>"); a URL with a rotating token therefore gets a new identity on
    every refresh. Identities are not unique inside a playlist (duplicate entries are common); the
    importer disambiguates them, e.g. by order of appearance.
    """
    kind = xtream_ref(entry.url)[0] if entry.provider_stream_id else None
    return identity(source_id, entry.url, kind, entry.provider_stream_id)


def identity(source_id: int, url: str, kind: str | None, stream_id: str | None) -> str:
    """stream_identity() from an entry's URL and its xtream_ref() (kind, stream_id), already known."""
    if stream_id:
        return f"{source_id}:xc:{kind or 'live'}:{stream_id}"
    digest = hashlib.sha1(url.encode("utf-8"), usedforsecurity=False).hexdigest()
    return f"{source_id}:url:{digest}"


def parse_m3u_file(path: Path, base_url: str | None = None) -> tuple[M3uParser, Iterator[M3uEntry]]:
    """Parse a playlist file in 1 MiB reads; the file is opened when iteration starts.

    Blocking file I/O: call it from a worker thread or process, not from a coroutine.
    """
    parser = M3uParser(base_url)

    def chunks() -> Iterator[bytes]:
        with path.open("rb") as f:
            while chunk := f.read(_READ_CHUNK):
                yield chunk

    return parser, parser.feed_bytes(chunks())


def why_not_m3u(first_bytes: bytes) -> str | None:
    """None when the start of a body looks like an M3U playlist, else a reason a user can act on.

    The reasons never quote the body: a provider's error page may hold the account's credentials.
    """
    head = first_bytes[:4096]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "the playlist is UTF-16 encoded; only UTF-8 and Latin-1 playlists are supported"
    if head.startswith(b"\x1f\x8b"):
        return "the response is gzip-compressed data, not a plain playlist"
    text = head.removeprefix(_BOM).lstrip()
    if not text:
        return "the provider returned an empty response instead of a playlist"
    lower = text[:1024].lower()
    if lower.startswith((b"#extm3u", b"#extinf")):
        if b"#ext-x-targetduration" in lower or b"#ext-x-stream-inf" in lower:
            return "this is an HLS stream (one channel's own playlist), not a list of channels"
        return None
    if lower.startswith(b"<"):
        if b"<html" in lower or b"<!doctype html" in lower or b"<head" in lower or b"<body" in lower:
            return "the provider returned an HTML page (a login or error page?) instead of a playlist"
        if b"<tv" in lower:
            return "the provider returned an XMLTV guide instead of a playlist"
        return "the provider returned XML instead of a playlist"
    if lower.startswith((b"{", b"[")):
        if b'"user_info"' in lower or b'"auth"' in lower:
            return "the provider returned a JSON error instead of a playlist; check the username and password"
        return "the provider returned JSON instead of a playlist"
    first_line = text.split(b"\n", 1)[0].strip()
    scheme = _SCHEME.match(first_line.decode("latin-1"))
    if scheme is not None and b"://" in first_line and scheme.group(1).lower() in STREAM_SCHEMES:
        return None
    if _looks_binary(head):
        return "the response is binary data, not a text playlist"
    return "the response does not look like an M3U playlist (it does not start with #EXTM3U)"


def _looks_binary(head: bytes) -> bool:
    # Text playlists have no NUL bytes and few control characters; junk and media files have many.
    controls = sum(1 for b in head[:1024] if b < 9 or 13 < b < 32)
    return b"\0" in head or controls > len(head[:1024]) // 20


def looks_like_m3u(first_bytes: bytes) -> bool:
    """Whether the start of a body looks like an M3U playlist; why_not_m3u() says why not."""
    return why_not_m3u(first_bytes) is None
