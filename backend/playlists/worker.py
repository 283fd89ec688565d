"""Child-process side of an import: a playlist file in, compact chunks of stream rows out; no database."""

from __future__ import annotations

import contextlib
import gc
import gzip
import hashlib
import io
import json
import lzma
import marshal
import struct
import time
import unicodedata
import zlib
from collections.abc import Callable, Iterable, Iterator
from json.encoder import encode_basestring
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from backend.errors import Invalid, UpstreamError
from backend.playlists.m3u import (
    Extinf,
    M3uEntry,
    M3uParser,
    SkippedEntry,
    identity,
    looks_like_vod_file,
    name_from_url,
    stream_identity,
    why_not_m3u,
    xtream_ref,
)

# This module runs in a fresh interpreter for every import, so it must stay cheap to import: it uses
# nothing that pulls in aiohttp, SQLAlchemy or Quart.

ProgressFn = Callable[[float, str], None]

#: Columns of a staged row, in order; the store creates its staging table with these.
ROW_COLUMNS = (
    "stream_key",
    "name",
    "search_name",
    "url",
    "tvg_id",
    "tvg_name",
    "tvg_logo",
    "tvg_chno",
    "group_title",
    "catchup",
    "catchup_source",
    "catchup_days",
    "headers",
    "extra",
    "is_vod",
    "provider_stream_id",
    "line_no",
)
#: Columns a refresh compares to tell a changed stream from an unchanged one: all but the key and the
#: line number (an entry that only moved is not rewritten).
COMPARED_COLUMNS = tuple(c for c in ROW_COLUMNS if c not in ("stream_key", "line_no"))
#: Widths of `stream`'s text columns (PostgreSQL rejects longer values). Rows are cut to fit here, so
#: the swap stores and compares the staged values as they are.
ROW_WIDTHS = {
    "name": 500,
    "search_name": 500,
    "tvg_id": 255,
    "tvg_name": 500,
    "tvg_chno": 32,
    "group_title": 255,
    "catchup": 50,
    "provider_stream_id": 64,
}
#: Rows per chunk written to the output file. The parent stages each chunk in one statement, so the
#: size trades statement overhead against how long reading one chunk holds the parent's GIL (about
#: 5 ms at 2000 rows: marshal.loads never lets go of it).
CHUNK_ROWS = 2000
#: Skipped lines listed in the import report (all are counted).
REPORT_SKIPPED = 100

_HEAD_BYTES = 64 * 1024
_READ = 1024 * 1024
_LENGTH = struct.Struct("<I")
# Typed columns that an EXTINF attribute of the same name fills; extra.columns has the bit set when
# the attribute's value is exactly the column's, so the attribute is not stored twice (see attributes()).
_FOLDED = (("tvg-id", 1), ("tvg-name", 2), ("tvg-logo", 4), ("tvg-chno", 8), ("group-title", 16))
_FOLDED_NAMES = [frozenset(a for a, bit in _FOLDED if mask & bit) for mask in range(32)]
# The `extra` of an entry whose attributes all went into columns and that has nothing else to keep:
# the common case, so its text is made once per mask rather than once per entry.
_COLUMNS_ONLY = [f'{{"columns":{mask}}}' for mask in range(32)]
_KEY_WIDTH = 64
#: Table names in a SQLite stage file (see SqliteSink).
STAGE_TABLE = "staged"
#: Page cache of a stage file (KiB): a 50k-row part is about 15 MiB.
_STAGE_CACHE_KIB = 65536
_SQL_TYPES = {"catchup_days": "INTEGER", "line_no": "INTEGER", "is_vod": "BOOLEAN"}


class MarshalSink:
    """Rows as length-prefixed marshal chunks appended to a file, for a parent that reads them as they
    come (PostgreSQL: the parent COPYs each chunk into its staging table)."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        # Version 2 skips marshal's reference table: twice as fast to write for rows of strings.
        data = marshal.dumps(rows, 2)
        self.out.write(_LENGTH.pack(len(data)))
        self.out.write(data)
        self.out.flush()

    def close(self) -> None:
        self.out.close()

    def abandon(self) -> None:
        self.out.close()


class SqliteSink:
    """Rows in a private SQLite file that the parent attaches for the swap (SQLite databases).

    The worker pays for the inserts and the key index on its own core, so the parent only runs the
    swap.
    """

    def __init__(self, path: Path) -> None:
        import sqlite3

        self.conn = sqlite3.connect(path, isolation_level=None)
        # A throw-away file: no journal, no syncs. A crash loses it, and the import starts over. The
        # cache holds a whole part, so no page is written twice; big pages suit one long append.
        self.conn.execute("PRAGMA page_size=16384")
        self.conn.execute("PRAGMA journal_mode=OFF")
        self.conn.execute("PRAGMA synchronous=OFF")
        self.conn.execute(f"PRAGMA cache_size=-{_STAGE_CACHE_KIB}")
        columns = ", ".join(f"{c} {_SQL_TYPES.get(c, 'TEXT')}" for c in ROW_COLUMNS)
        self.conn.execute(f"CREATE TABLE {STAGE_TABLE} ({columns})")
        self.conn.execute("BEGIN")
        marks = ", ".join("?" for _ in ROW_COLUMNS)
        self._insert = f"INSERT INTO {STAGE_TABLE} VALUES ({marks})"  # noqa: S608 - constant names

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        self.conn.executemany(self._insert, rows)

    def close(self) -> None:
        try:
            self.conn.execute("COMMIT")
            # The swap looks keys up here (a refresh matches them against the stored ones, and later
            # parts number their copies after the earlier parts' ones): the index is built now, in
            # parallel with the other parts, rather than in the parent. Not UNIQUE: renumbering a
            # part's copies ("key" -> "key#2" while the old "key#2" waits its turn) passes through
            # duplicates; the keys are unique by construction, and `stream` enforces it.
            self.conn.execute(f"CREATE INDEX {STAGE_TABLE}_key ON {STAGE_TABLE} (stream_key)")
        finally:
            self.conn.close()

    def abandon(self) -> None:
        self.conn.close()


RowSink = MarshalSink | SqliteSink


def open_sink(job: dict[str, Any]) -> RowSink:
    """The sink the importer asked for: a stage file (`"stage": "sqlite"`) or marshal chunks."""
    out = Path(job["out"])
    if job.get("stage") == "sqlite":
        return SqliteSink(out)
    return MarshalSink(out.open("ab"))


class RowWriter:
    """Turns entries into staged rows with stable, unique keys and writes them in chunks.

    It is the parser's EntrySink: entries become rows as the parser finishes them.
    """

    def __init__(self, source_id: int, sink: RowSink, progress: ProgressFn | None) -> None:
        self.source_id = source_id
        self.sink = sink
        self.progress = progress
        #: How far through its input the writer is (0..1), for progress reports.
        self.fraction: Callable[[], float] = lambda: 0.0
        self.count = 0
        self.duplicates = 0
        self._seen: dict[str, int] = {}
        self._rows: list[tuple[Any, ...]] = []

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is not None:
            self.sink.abandon()

    def add(self, entries: Iterable[M3uEntry], fraction: Callable[[], float]) -> None:
        self.fraction = fraction
        for entry in entries:
            self.entry(entry)

    def entry(self, entry: M3uEntry) -> None:
        self._rows.append(self._row(entry))
        if len(self._rows) >= CHUNK_ROWS:
            self._flush(self.fraction())

    def simple(self, info: Extinf, url: str) -> None:
        """The row of a simple entry (see EntrySink.simple), built straight from its EXTINF.

        It must equal _row() of the M3uEntry the parser would have built (tests compare the two over
        every corpus playlist); it is written out separately because most entries of big playlists
        take this path, and skipping the M3uEntry and the checks that cannot apply takes a seventh
        off a worker's time.
        """
        attrs = info.attrs
        get = attrs.get
        folded = 0
        value = get("tvg-id")
        tvg_id = (value.strip() or None) if value else None
        if tvg_id is not None and tvg_id == value:
            folded = 1
        value = get("tvg-name")
        tvg_name = (value.strip() or None) if value else None
        if tvg_name is not None and tvg_name == value:
            folded |= 2
        value = get("tvg-logo") or get("logo")
        logo = value.strip() if value and value[:8].lower().startswith(("http://", "https://")) else None
        if logo is not None and logo == get("tvg-logo"):
            folded |= 4
        value = get("tvg-chno") or get("channel-number")
        chno = (value.strip() or None) if value else None
        if chno is not None and chno == get("tvg-chno"):
            folded |= 8
        value = get("group-title")
        group = (value.strip() or None) if value else None
        if group is not None and group == value:
            folded |= 16
        name = info.name or tvg_name or tvg_id or name_from_url(url)
        kind, psid = xtream_ref(url)
        is_vod = kind == "movie" or kind == "series" or looks_like_vod_file(url)
        rest = attrs
        if folded:
            dropped = _FOLDED_NAMES[folded]
            rest = {k: v for k, v in attrs.items() if k not in dropped} if len(attrs) > len(dropped) else {}
        duration = info.duration
        if rest or (duration is not None and duration != -1.0):
            extra = _extra(rest, folded, {}, {}, duration)
        else:
            extra = _COLUMNS_ONLY[folded] if folded else None
        rows = self._rows
        rows.append(
            _fit(
                self._unique(identity(self.source_id, url, kind, psid)),
                name,
                search_key(name),
                url,
                tvg_id,
                tvg_name,
                logo,
                chno,
                group,
                None,
                None,
                None,
                None,
                extra,
                is_vod,
                psid,
                info.line_no,
            )
        )
        if len(rows) >= CHUNK_ROWS:
            self._flush(self.fraction())

    def finish(self) -> None:
        self._flush(1.0)

    def close(self) -> None:
        self.sink.close()

    def _flush(self, fraction: float) -> None:
        if self._rows:
            self.sink.write(self._rows)
            self.count += len(self._rows)
            self._rows = []
        # The parent reads the file when told that a chunk is complete, so this comes after the write.
        if self.progress is not None:
            self.progress(round(fraction * 100, 1), f"{self.count} entries parsed")

    def _key(self, entry: M3uEntry) -> str:
        psid = entry.provider_stream_id
        if psid and not entry.is_vod:
            # stream_identity() gives the same for live Xtream entries without a second regex match.
            key = f"{self.source_id}:xc:live:{psid}"
        else:
            key = stream_identity(self.source_id, entry)
        return self._unique(key)

    def _unique(self, key: str) -> str:
        """The key made to fit its column and numbered when it was seen before in this playlist."""
        if len(key) > _KEY_WIDTH - 8:
            digest = hashlib.sha1(key.encode("utf-8"), usedforsecurity=False).hexdigest()
            key = f"{self.source_id}:h:{digest}"
        seen = self._seen.get(key)
        if seen is None:
            self._seen[key] = 1
            return key
        # Identical entries are common; the n-th copy keeps its id as long as the copies stay in order.
        self._seen[key] = seen + 1
        self.duplicates += 1
        return f"{key}#{seen + 1}"

    def _row(self, e: M3uEntry) -> tuple[Any, ...]:
        # Runs once per entry of 100k-entry playlists: the checks are written out rather than looped.
        attrs = e.attrs
        tvg_id, tvg_name, logo, chno, group = e.tvg_id, e.tvg_name, e.tvg_logo, e.tvg_chno, e.group
        folded = 0
        rest = attrs
        if attrs:
            get = attrs.get
            if tvg_id is not None and get("tvg-id") == tvg_id:
                folded = 1
            if tvg_name is not None and get("tvg-name") == tvg_name:
                folded |= 2
            if logo is not None and get("tvg-logo") == logo:
                folded |= 4
            if chno is not None and get("tvg-chno") == chno:
                folded |= 8
            if group is not None and get("group-title") == group:
                folded |= 16
            if folded:
                dropped = _FOLDED_NAMES[folded]
                # Every folded name is an attribute, so equal sizes mean nothing is left over.
                rest = (
                    {k: v for k, v in attrs.items() if k not in dropped} if len(attrs) > len(dropped) else {}
                )
        duration = e.duration
        if rest or e.vlc_options or e.kodi_props or (duration is not None and duration != -1.0):
            extra = _extra(rest, folded, e.vlc_options, e.kodi_props, duration)
        else:
            extra = _COLUMNS_ONLY[folded] if folded else None
        headers = _json_object(e.headers) if e.headers else None
        days = e.catchup_days
        if days is not None and not 0 <= days <= 3650:
            days = None
        return _fit(
            self._key(e),
            e.name,
            search_key(e.name),
            e.url,
            tvg_id,
            tvg_name,
            logo,
            chno,
            group,
            e.catchup,
            e.catchup_source,
            days,
            headers,
            extra,
            e.is_vod,
            e.provider_stream_id,
            e.line_no,
        )


#: (position in a row, width) of the columns ROW_WIDTHS limits.
_WIDTH_AT = tuple((i, ROW_WIDTHS[c]) for i, c in enumerate(ROW_COLUMNS) if c in ROW_WIDTHS)


def _fit(*row: Any) -> tuple[Any, ...]:
    """The row (values in ROW_COLUMNS order) with its text cut to the column widths (ROW_WIDTHS)."""
    for i, width in _WIDTH_AT:
        value = row[i]
        if value is not None and len(value) > width:
            return tuple(
                v[:w] if (w := ROW_WIDTHS.get(c)) is not None and v is not None else v
                for c, v in zip(ROW_COLUMNS, row, strict=True)
            )
    return row


def _json_object(values: dict[str, str]) -> str:
    # json.dumps builds a new encoder on every call; for the small str->str dicts of 100k entries
    # this is four times faster and gives the same text.
    return (
        "{" + ",".join([encode_basestring(k) + ":" + encode_basestring(v) for k, v in values.items()]) + "}"
    )


def _extra(
    rest: dict[str, str], folded: int, vlc: dict[str, str], kodi: dict[str, str], duration: float | None
) -> str | None:
    parts = []
    if rest:
        parts.append('"attributes":' + _json_object(rest))
    if folded:
        parts.append(f'"columns":{folded}')
    if vlc:
        parts.append('"vlc_options":' + _json_object(vlc))
    if kodi:
        parts.append('"kodi_props":' + _json_object(kodi))
    if duration is not None and duration != -1.0:
        parts.append(f'"duration":{json.dumps(duration)}')
    return "{" + ",".join(parts) + "}" if parts else None


def attributes(row_values: tuple[Any, ...], extra: dict[str, Any] | None) -> dict[str, str]:
    """The entry's EXTINF attributes as written, from a stream's typed columns and its `extra` JSON.

    row_values are (tvg_id, tvg_name, tvg_logo, tvg_chno, group_title), in that order.
    """
    if not extra:
        return {}
    out: dict[str, str] = {}
    folded = int(extra.get("columns") or 0)
    for (attr, bit), value in zip(_FOLDED, row_values, strict=True):
        if folded & bit and value is not None:
            out[attr] = value
    stored = extra.get("attributes")
    if isinstance(stored, dict):
        out.update(stored)
    return out


def search_key(text: str) -> str:
    """Fold text for search: lower case, no accents, single spaces ("Télé  Été" -> "tele ete")."""
    if text.isascii():
        return " ".join(text.lower().split())
    folded = unicodedata.normalize("NFKD", text.casefold())
    return " ".join("".join([c for c in folded if not unicodedata.combining(c)]).split())


def open_content(path: Path) -> tuple[BinaryIO, BinaryIO]:
    """Open a file for its content, undoing gzip or xz found by magic bytes; returns (content, raw file)."""
    raw = path.open("rb")
    magic = raw.read(6)
    raw.seek(0)
    if magic.startswith(b"\x1f\x8b"):
        return cast(BinaryIO, gzip.GzipFile(fileobj=raw, mode="rb")), raw
    if magic.startswith(b"\xfd7zXZ\x00"):
        return cast(BinaryIO, lzma.LZMAFile(raw, "rb")), raw
    return raw, raw


def _chunks(content: BinaryIO, what: str) -> Iterator[bytes]:
    try:
        while chunk := content.read(_READ):
            yield chunk
    except EOFError:
        raise Invalid(
            f"The {what} is a truncated compressed file: the data ends early. The provider probably "
            "cut the transfer short; try the update again later.",
            code="DOWNLOAD_TRUNCATED",
        ) from None
    except (gzip.BadGzipFile, zlib.error, lzma.LZMAError, OSError) as exc:
        raise Invalid(
            f"The {what} is a corrupt compressed file ({type(exc).__name__}). Try the update again; if it "
            "keeps failing, the provider is serving a damaged file.",
            code="DOWNLOAD_CORRUPT",
        ) from None


@contextlib.contextmanager
def _without_gc() -> Iterator[None]:
    """No cyclic garbage collection while rows are built: they are tuples and dicts without cycles,
    and a 50k-row part otherwise pays ~6% of its time for collections that find nothing."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def build_m3u_rows(job: dict[str, Any], progress: ProgressFn | None = None) -> dict[str, Any]:
    """Parse an M3U file (or one part of a plain one) into staged rows.

    job: source_id, path, out, base_url, what; for a part of a bigger playlist also start and end (byte
    offsets at line starts), first_line, header (the #EXTM3U line) and parts (how many in all). Only
    the first part checks that the file is a playlist; the importer checks the total of entries.
    """
    with _without_gc():
        return _build_m3u_rows(job, progress)


def build_xtream_rows(job: dict[str, Any], progress: ProgressFn | None = None) -> dict[str, Any]:
    """Map Xtream player_api JSON files into staged rows (job: source_id, streams, categories, out,
    server, username, password, ext)."""
    with _without_gc():
        return _build_xtream_rows(job, progress)


def _build_m3u_rows(job: dict[str, Any], progress: ProgressFn | None) -> dict[str, Any]:
    path = Path(job["path"])
    what = str(job.get("what") or "download")
    start = int(job.get("start") or 0)
    content: BinaryIO
    raw: BinaryIO
    if "end" in job:
        raw = path.open("rb")
        raw.seek(start)
        content = cast(BinaryIO, _Range(raw, int(job["end"]) - start))
    else:
        content, raw = open_content(path)
    span = max(1, int(job.get("end") or path.stat().st_size) - start)
    with content, raw, RowWriter(int(job["source_id"]), open_sink(job), progress) as writer:
        head = _read_head(content, what)
        if start == 0:
            reason = why_not_m3u(head)
            if reason is not None:
                raise UpstreamError(f"The {what} is not a playlist: {reason}.", code="PLAYLIST_INVALID")
        parser = M3uParser(
            job.get("base_url"),
            header=job.get("header"),
            first_line=int(job.get("first_line") or 1),
            sink=writer,
        )
        writer.fraction = lambda: (raw.tell() - start) / span
        parser.push(head)
        for chunk in _chunks(content, what):
            parser.push(chunk)
        parser.finish()
        writer.finish()
        if int(job.get("parts") or 1) == 1:
            require_entries(writer.count, parser.skipped_total, parser.skipped, what)
        writer.close()
    return _summary(writer, parser.skipped_total, parser.skipped, parser.lines_read, parser.epg_urls)


class _Range(io.RawIOBase):
    """The next `length` bytes of a file, as a file."""

    def __init__(self, f: BinaryIO, length: int) -> None:
        self._f = f
        self._left = length

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        data = self._f.read(self._left if size < 0 else min(size, self._left))
        self._left -= len(data)
        return data


def plan_parts(path: Path, parts: int, min_bytes: int) -> list[dict[str, Any]]:
    """Where to cut a plain playlist file into `parts` ranges that can be parsed independently.

    Each cut is just after a URL line, so no entry is split and the options (#EXTVLCOPT, ...) that
    come before an entry's URL stay with it. Returns [] when the file should be parsed in one piece:
    small, compressed, or with lone-CR line ends. Blocking file I/O.
    """
    size = path.stat().st_size
    if parts < 2 or size < min_bytes:
        return []
    with path.open("rb") as f:
        head = f.read(_HEAD_BYTES)
        if head.startswith((b"\x1f\x8b", b"\xfd7zXZ\x00")) or (b"\r" in head and b"\r\n" not in head):
            return []
        header = _header_line(head)
        cuts = [0]
        for k in range(1, parts):
            f.seek(size * k // parts)
            window = f.read(_READ)
            cut = _cut_after_url_line(window)
            if cut is None or size * k // parts + cut <= cuts[-1]:
                return []
            cuts.append(size * k // parts + cut)
        cuts.append(size)
        first_lines = _line_numbers(f, cuts[1:-1])
    return [
        {"start": cuts[i], "end": cuts[i + 1], "first_line": first_lines[i], "header": header, "parts": parts}
        for i in range(parts)
    ]


def _header_line(head: bytes) -> str | None:
    for raw in head.removeprefix(b"\xef\xbb\xbf").splitlines()[:50]:
        line = raw.strip()
        if line[:7].upper() == b"#EXTM3U":
            return line.decode("utf-8", "replace")
    return None


def _cut_after_url_line(window: bytes) -> int | None:
    """Offset in window just after the first complete URL line (not the first, partial one)."""
    pos = window.find(b"\n")
    while pos >= 0:
        end = window.find(b"\n", pos + 1)
        if end < 0:
            return None
        line = window[pos + 1 : end].strip()
        if line and not line.startswith(b"#"):
            return end + 1
        pos = end
    return None


def _line_numbers(f: BinaryIO, cuts: list[int]) -> list[int]:
    """The 1-based line number at offset 0 and at each cut, counted as bytes.splitlines() does."""
    numbers = [1]
    f.seek(0)
    done = 0
    lines = 0
    previous = b""
    for cut in cuts:
        while done < cut:
            block = f.read(min(_READ, cut - done))
            if not block:
                break
            # A CRLF split across two blocks is one line end, not two.
            joined = previous[-1:] + block
            lines += block.count(b"\n") + block.count(b"\r") - joined.count(b"\r\n")
            done += len(block)
            previous = block
        numbers.append(lines + 1)
    return numbers


def decompress_to(path: Path, dest: Path, what: str) -> Path:
    """Write the content of a gzip or xz file to dest (so it can be cut into parts). Blocking."""
    content, raw = open_content(path)
    with content, raw, dest.open("wb") as out:
        for chunk in _chunks(content, what):
            out.write(chunk)
    return dest


def _read_head(content: BinaryIO, what: str) -> bytes:
    head = b""
    for chunk in _chunks(content, what):
        head += chunk
        if len(head) >= _HEAD_BYTES:
            break
    return head


def _build_xtream_rows(job: dict[str, Any], progress: ProgressFn | None) -> dict[str, Any]:
    from backend.playlists.xtream import XtreamLiveMapper

    streams = _load_json(Path(job["streams"]), "live streams")
    categories = _load_json(Path(job["categories"]), "live categories")
    mapper = XtreamLiveMapper(job["server"], job["username"], job["password"], job.get("ext", "ts"))
    total = max(1, len(streams) if isinstance(streams, list) else 1)
    with RowWriter(int(job["source_id"]), open_sink(job), progress) as writer:
        writer.add(mapper.entries(streams, categories), lambda: (writer.count + CHUNK_ROWS) / total)
        writer.finish()
        require_entries(writer.count, mapper.skipped_total, mapper.skipped, "Xtream server's stream list")
        writer.close()
    return _summary(writer, mapper.skipped_total, mapper.skipped, None, [])


def _load_json(path: Path, what: str) -> Any:
    content, raw = open_content(path)
    with content, raw:
        data = b"".join(_chunks(content, f"{what} response"))
    stripped = data.lstrip()
    if stripped[:1] == b"<":
        raise UpstreamError(
            f"The Xtream server answered the {what} request with an HTML page instead of JSON; "
            "check the server address.",
            code="XTREAM_BAD_RESPONSE",
        )
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise UpstreamError(
            f"The Xtream server's answer to the {what} request is not valid JSON.", code="XTREAM_BAD_RESPONSE"
        ) from None


def require_entries(count: int, skipped_total: int, skipped: list[SkippedEntry], what: str) -> None:
    if count:
        return
    if skipped_total:
        first = skipped[0]
        raise UpstreamError(
            f"The {what} has no usable entries: all {skipped_total} were skipped (the first, on line "
            f"{first.line_no}: {first.reason}). The streams from the last good import were kept.",
            code="PLAYLIST_EMPTY",
        )
    raise UpstreamError(
        f"The {what} has no entries. The streams from the last good import were kept.", code="PLAYLIST_EMPTY"
    )


def _summary(
    writer: RowWriter, skipped_total: int, skipped: list[SkippedEntry], lines: int | None, epg_urls: list[str]
) -> dict[str, Any]:
    return {
        "entries": writer.count,
        "duplicates": writer.duplicates,
        "skipped": skipped_total,
        "skipped_lines": [[s.line_no, s.reason] for s in skipped[:REPORT_SKIPPED]],
        "lines": lines,
        "epg_urls": epg_urls[:20],
        "finished_at": time.time(),
        # CPU seconds of the whole worker process (start-up included), for the import's timings.
        "cpu_seconds": round(time.process_time(), 2),
    }


class ChunkReader:
    """Reads the chunks a worker appends to its output file, tolerating a chunk still being written.

    Blocking file I/O: call read_next() from a worker thread.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: BinaryIO | None = None

    def read_next(self) -> list[tuple[Any, ...]] | None:
        """The next complete chunk of rows, or None if none is complete yet."""
        if self._file is None:
            self._file = self.path.open("rb")
        f = self._file
        start = f.tell()
        header = f.read(_LENGTH.size)
        if len(header) < _LENGTH.size:
            f.seek(start)
            return None
        (length,) = _LENGTH.unpack(header)
        data = f.read(length)
        if len(data) < length:
            f.seek(start)
            return None
        # The file was written by our own worker process in TIC's data directory, never by a client.
        rows: list[tuple[Any, ...]] = marshal.loads(data)  # noqa: S302
        return rows

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
