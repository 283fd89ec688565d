"""Builds the clients' XMLTV guide file in a child process: rows streamed from the database, written once."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import and_, select

from backend.channels.models import Channel
from backend.db import Database, iso_z
from backend.epg.models import PROGRAMME_CONTENT_COLUMNS, EpgChannel, Programme
from backend.outputs.formats import INVALID_XML, display_name, output_guide_id, xml_attr, xml_text
from backend.outputs.service import LOGO_PATH, xmltv_files

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]

#: XMLTV ids asked for in one programme query (well under SQLite's bound-parameter limit).
IDS_PER_QUERY = 400
ROWS_PER_FETCH = 2000
#: Text is encoded and handed to the writer thread in pieces of about this many characters.
FLUSH_CHARS = 256 * 1024
GZIP_LEVEL = 6
GENERATOR = "TIC"
# People in <credits>, in the order the XMLTV DTD requires.
CREDIT_ROLES = (
    "director",
    "actor",
    "writer",
    "adapter",
    "producer",
    "composer",
    "editor",
    "presenter",
    "commentator",
    "guest",
)


@dataclass(slots=True)
class _GuideChannel:
    xml_id: str
    offset: timedelta


def xmltv_time(moment: datetime) -> str:
    """'YYYYMMDDhhmmss +0000'; %-formatting is several times faster than strftime on this hot path."""
    m = moment if moment.tzinfo is UTC else moment.astimezone(UTC)
    return "%04d%02d%02d%02d%02d%02d +0000" % (m.year, m.month, m.day, m.hour, m.minute, m.second)  # noqa: UP031


def _esc(value: str) -> str:
    """Element text. Characters XML forbids are removed from whole chunks when they are written (_Buffer)."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _esc_attr(value: str) -> str:
    return (
        value.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("\n", "&#10;")
        .replace("\r", "&#13;")
        .replace("\t", "&#9;")
    )


def _pairs(value: Any) -> list[tuple[str, str | None]]:
    """[(text, lang-or-other)] from stored [[text, lang], ...] or plain strings; junk is ignored."""
    if not value:
        return []
    if isinstance(value, str):
        return [(value, None)]
    out: list[tuple[str, str | None]] = []
    if not isinstance(value, list):
        return out
    for item in value:
        if isinstance(item, str):
            out.append((item, None))
        elif isinstance(item, list | tuple) and item and isinstance(item[0], str):
            second = item[1] if len(item) > 1 and isinstance(item[1], str) else None
            out.append((item[0], second))
    return out


def _texts(parts: list[str], tag: str, primary: str | None, variants: Any, *, always: bool = False) -> None:
    """One element per language variant, with the stored main value first when the variants lack it."""
    if not variants:
        # The common case: just the stored value, or nothing.
        if primary or always:
            parts.append(f"  <{tag}>{_esc(primary or '')}</{tag}>\n")
        return
    pairs = _pairs(variants)
    if primary and all(text != primary for text, _ in pairs):
        pairs.insert(0, (primary, None))
    if not pairs and always:
        pairs = [("", None)]
    for text, lang in pairs:
        if lang:
            parts.append(f'  <{tag} lang="{_esc_attr(lang)}">{_esc(text)}</{tag}>\n')
        else:
            parts.append(f"  <{tag}>{_esc(text)}</{tag}>\n")


def _credits(parts: list[str], credits: Any, actor_roles: Any) -> None:
    if not isinstance(credits, dict) or not credits:
        return
    roles: dict[str, str] = {}
    for name, role in _pairs(actor_roles):
        if role:
            roles.setdefault(name, role)
    people: list[str] = []
    for kind in CREDIT_ROLES:
        for name, _ in _pairs(credits.get(kind)):
            role = roles.get(name) if kind == "actor" else None
            role_attr = f' role="{_esc_attr(role)}"' if role else ""
            people.append(f"    <{kind}{role_attr}>{_esc(name)}</{kind}>\n")
    if people:
        parts.append("  <credits>\n")
        parts.extend(people)
        parts.append("  </credits>\n")


def _episode_nums(row: Any, extra: dict[str, Any]) -> list[tuple[str, str]]:
    """(system, value) pairs: the stored ones, plus xmltv_ns and onscreen derived from the columns."""
    # Stored as [[system, value], ...] in file order (xmltv_ns, onscreen, dd_progid, ...).
    systems = [(system, value) for system, value in _pairs(extra.get("episode_systems")) if value]
    have = {system for system, _ in systems}
    season, episode = row.season, row.episode
    if "xmltv_ns" not in have and (season is not None or episode is not None):
        part = extra.get("part")
        fields = [
            str(season - 1) if isinstance(season, int) and season > 0 else "",
            str(episode - 1) if isinstance(episode, int) and episode > 0 else "",
            str(part - 1) if isinstance(part, int) and part > 0 else "",
        ]
        if fields[0] or fields[1]:
            systems.insert(0, ("xmltv_ns", ".".join(fields)))
    if "onscreen" not in have and row.episode_num:
        systems.append(("onscreen", row.episode_num))
    return systems


def _ratings(extra: dict[str, Any]) -> list[tuple[str | None, str]]:
    out: list[tuple[str | None, str]] = [
        (system or None, value) for system, value in _pairs(extra.get("ratings")) if value is not None
    ]
    if not out and isinstance(extra.get("rating"), str):
        system = extra.get("rating_system")
        out.append((system if isinstance(system, str) else None, extra["rating"]))
    return out


def _time_attr(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return xmltv_time(moment) if moment.tzinfo is not None else None


def programme_body(row: Any) -> str:
    """The children of one <programme> with every stored field, in the order the XMLTV DTD requires.

    Built once per stored programme and shared by every TIC channel mapped to its guide channel.
    """
    extra: dict[str, Any] = row.extra if isinstance(row.extra, dict) else {}
    get = extra.get
    parts: list[str] = []
    _texts(parts, "title", row.title, get("titles"), always=True)
    _texts(parts, "sub-title", row.sub_title, get("sub_titles"))
    _texts(parts, "desc", row.description, get("descs"))
    _credits(parts, get("credits"), get("actor_roles"))
    if get("date"):
        parts.append(f"  <date>{_esc(str(extra['date']))}</date>\n")
    _texts(parts, "category", None, row.categories)
    _texts(parts, "keyword", None, get("keywords"))
    length = get("length_seconds")
    if isinstance(length, int) and not isinstance(length, bool) and length > 0:
        if length % 60:
            parts.append(f'  <length units="seconds">{length}</length>\n')
        else:
            parts.append(f'  <length units="minutes">{length // 60}</length>\n')
    if row.icon:
        parts.append(f'  <icon src="{_esc_attr(row.icon)}"/>\n')
    _texts(parts, "country", None, get("country"))
    for system, value in _episode_nums(row, extra):
        parts.append(f'  <episode-num system="{_esc_attr(system)}">{_esc(value)}</episode-num>\n')
    if get("previously_shown"):
        shown = _time_attr(get("previously_shown_start"))
        parts.append(f'  <previously-shown start="{shown}"/>\n' if shown else "  <previously-shown/>\n")
    premiere = get("premiere")
    if premiere:
        text = _esc(premiere) if isinstance(premiere, str) else ""
        parts.append(f"  <premiere>{text}</premiere>\n" if text else "  <premiere/>\n")
    if get("new"):
        parts.append("  <new/>\n")
    # "live" is kept in the database but has no element in the XMLTV DTD (1.2.1), so it is not written.
    if get("ratings") or get("rating"):
        for rating_system, rating in _ratings(extra):
            system_attr = f' system="{_esc_attr(rating_system)}"' if rating_system else ""
            parts.append(f"  <rating{system_attr}>\n    <value>{_esc(rating)}</value>\n  </rating>\n")
    star = get("star_rating")
    if isinstance(star, str) and star.strip():
        parts.append(f"  <star-rating>\n    <value>{_esc(star)}</value>\n  </star-rating>\n")
    parts.append("</programme>\n")
    return "".join(parts)


def programme_xml(parts: list[str], channel: _GuideChannel, row: Any, body: str) -> None:
    """Append one <programme> for one TIC channel: its own id and guide offset, the shared body."""
    start = xmltv_time(row.start + channel.offset)
    stop = xmltv_time(row.stop + channel.offset)
    parts.append(f'<programme start="{start}" stop="{stop}" channel="{channel.xml_id}">\n')
    parts.append(body)


class _TeeWriter:
    """Writes the plain file, its gzip twin and the SHA-256 in a thread, so compression overlaps formatting.

    zlib and hashlib release the GIL on large buffers, so on two cores the formatting (main thread)
    and the compression (this thread) run side by side. The queue is bounded: memory stays flat.
    """

    def __init__(self, plain: BinaryIO, packed: BinaryIO) -> None:
        self.sha = hashlib.sha256()
        self.bytes = 0
        self._plain = plain
        self._gzip = gzip.GzipFile(filename="", mode="wb", fileobj=packed, compresslevel=GZIP_LEVEL, mtime=0)
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="xmltv-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            data = self._queue.get()
            if data is None:
                return
            if self._error is not None:
                continue
            try:
                self._plain.write(data)
                self.sha.update(data)
                self._gzip.write(data)
            except OSError as exc:
                # Keep draining so the producer never blocks on a full queue; the error is raised at close.
                self._error = exc

    def write(self, text: str) -> None:
        data = text.encode("utf-8")
        self.bytes += len(data)
        self._queue.put(data)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        self._gzip.close()


class _Buffer:
    """Collects small strings and hands them to the writer in large pieces.

    Characters XML 1.0 forbids (most C0 controls) are removed here, from each whole piece in one
    pass, rather than from every field: TIC's own markup never contains them, so the result is the
    same and the hot formatting path stays short.
    """

    def __init__(self, writer: _TeeWriter) -> None:
        self.parts: list[str] = []
        self._size = 0
        self._writer = writer

    def maybe_flush(self) -> None:
        self._size += 1
        if self._size >= 512:
            self._size = 0
            text = "".join(self.parts)
            if len(text) >= FLUSH_CHARS:
                self.parts.clear()
                self._write(text)
            else:
                self.parts[:] = [text]

    def flush(self) -> None:
        if self.parts:
            self._write("".join(self.parts))
            self.parts.clear()

    def _write(self, text: str) -> None:
        if INVALID_XML.search(text):
            text = INVALID_XML.sub("", text)
        self._writer.write(text)


async def _write_guide(
    db: Database, buffer: _Buffer, past_days: int, base_url: str, progress: Progress | None
) -> dict[str, int]:
    """Write <tv> with every enabled channel, then the programmes of the mapped ones."""
    parts = buffer.parts
    parts.append('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE tv SYSTEM "xmltv.dtd">\n')
    parts.append(f'<tv generator-info-name="{GENERATOR}">\n')
    mapped: dict[tuple[int, str], list[_GuideChannel]] = {}
    channel_count = 0
    async with db.session() as session:
        channel_rows = await session.execute(
            select(
                Channel.id,
                Channel.number,
                Channel.name,
                Channel.guide_id,
                Channel.logo_url,
                Channel.epg_source_id,
                Channel.epg_channel_id,
                Channel.guide_offset_minutes,
                EpgChannel.icon,
            )
            .outerjoin(
                EpgChannel,
                and_(
                    EpgChannel.source_id == Channel.epg_source_id,
                    EpgChannel.xmltv_id == Channel.epg_channel_id,
                ),
            )
            .where(Channel.enabled.is_(True))
            .order_by(Channel.number)
        )
        for cid, number, name, guide_id, logo_url, source_id, epg_id, offset, icon in channel_rows:
            channel_count += 1
            xml_id = xml_attr(output_guide_id(guide_id))
            parts.append(f'<channel id="{xml_id}">\n')
            parts.append(f"  <display-name>{xml_text(display_name(name, number))}</display-name>\n")
            # The DTD has no <lcn>; the number as a second display-name is how XMLTV carries it.
            parts.append(f"  <display-name>{number}</display-name>\n")
            logo = _channel_icon(cid, logo_url, icon, base_url)
            if logo:
                parts.append(f'  <icon src="{xml_attr(logo)}"/>\n')
            parts.append("</channel>\n")
            buffer.maybe_flush()
            if source_id is not None and epg_id:
                guide = _GuideChannel(xml_id, timedelta(minutes=offset or 0))
                mapped.setdefault((source_id, epg_id), []).append(guide)
    stats = {"channels": channel_count, "mapped_channels": sum(len(v) for v in mapped.values())}
    stats.update(await _write_programmes(db, buffer, mapped, past_days, progress))
    parts.append("</tv>\n")
    buffer.flush()
    return stats


def _channel_icon(channel_id: int, logo_url: str | None, epg_icon: str | None, base_url: str) -> str | None:
    """TIC's cached logo when clients can reach TIC at a known address, else the original URL."""
    if not (logo_url or epg_icon):
        return None
    if base_url:
        return f"{base_url}{LOGO_PATH.format(channel_id=channel_id)}"
    return logo_url or epg_icon


async def _write_programmes(
    db: Database,
    buffer: _Buffer,
    mapped: dict[tuple[int, str], list[_GuideChannel]],
    past_days: int,
    progress: Progress | None,
) -> dict[str, int]:
    cutoff = datetime.now(UTC) - timedelta(days=past_days)
    by_source: dict[int, list[str]] = {}
    for source_id, epg_id in sorted(mapped):
        by_source.setdefault(source_id, []).append(epg_id)
    batches = [
        (source_id, ids[i : i + IDS_PER_QUERY])
        for source_id, ids in by_source.items()
        for i in range(0, len(ids), IDS_PER_QUERY)
    ]
    written = 0
    with_programmes = 0
    parts = buffer.parts
    # A plain Core connection and whole partitions of rows: iterating an ORM session's stream row by
    # row costs a greenlet switch per row, which dominated the build.
    async with db.engine.connect() as conn:
        for done, (source_id, ids) in enumerate(batches):
            stmt = (
                select(*PROGRAMME_CONTENT_COLUMNS)
                .where(
                    Programme.source_id == source_id,
                    Programme.xmltv_channel_id.in_(ids),
                    Programme.stop > cutoff,
                )
                .order_by(Programme.xmltv_channel_id, Programme.start)
            )
            result = await conn.stream(stmt)
            last_id: str | None = None
            # Rows come grouped by guide channel; every TIC channel mapped to it gets its own copy.
            async for rows in result.partitions(ROWS_PER_FETCH):
                for row in rows:
                    targets = mapped[(source_id, row.xmltv_channel_id)]
                    if row.xmltv_channel_id != last_id:
                        last_id = row.xmltv_channel_id
                        with_programmes += len(targets)
                    body = programme_body(row)
                    for channel in targets:
                        programme_xml(parts, channel, row, body)
                        written += 1
                    buffer.maybe_flush()
            if progress is not None:
                progress(10 + 85 * (done + 1) / len(batches), f"{written} programmes written")
    mapped_count = sum(len(v) for v in mapped.values())
    return {"programmes": written, "mapped_without_programmes": mapped_count - with_programmes}


def _same_content(meta_path: Path, sha256: str, gz_path: Path, xml_path: Path) -> bool:
    try:
        previous = json.loads(meta_path.read_text())
    except (FileNotFoundError, ValueError):
        return False
    return (
        isinstance(previous, dict)
        and previous.get("sha256") == sha256
        and gz_path.exists()
        and xml_path.exists()
    )


def build_xmltv_files(
    database_url: str,
    data_dir: str,
    past_days: int,
    base_url: str,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Write the guide to temporary files and swap them in; runs in a child process (JSON in and out).

    When the content is byte-for-byte what is already served, the old files stay, so their ETag
    and Last-Modified stay too and clients' conditional requests keep answering 304.
    """
    started = time.monotonic()
    # A background job: on a two-core machine the web process should win when both want the CPU.
    os.nice(5)
    files = xmltv_files(Path(data_dir))
    files.directory.mkdir(parents=True, exist_ok=True)
    suffix = f".tmp-{os.getpid()}"
    tmp_xml = files.xml.with_name(files.xml.name + suffix)
    tmp_gz = files.gz.with_name(files.gz.name + suffix)
    try:
        with open(tmp_xml, "wb") as plain, open(tmp_gz, "wb") as packed:
            writer = _TeeWriter(plain, packed)
            try:
                stats = asyncio.run(_build(database_url, writer, past_days, base_url, progress))
            finally:
                writer.close()
            plain.flush()
            os.fsync(plain.fileno())
            packed.flush()
            os.fsync(packed.fileno())
        sha256 = writer.sha.hexdigest()
        changed = not _same_content(files.meta, sha256, files.gz, files.xml)
        now = iso_z(datetime.now(UTC))
        previous_built = None
        if changed:
            # The gzip twin first: a request between the two swaps gets a consistent file either way.
            os.replace(tmp_gz, files.gz)
            os.replace(tmp_xml, files.xml)
        else:
            previous_built = json.loads(files.meta.read_text()).get("built_at")
        meta = {
            **stats,
            "sha256": sha256,
            "bytes": writer.bytes,
            "gz_bytes": files.gz.stat().st_size,
            "changed": changed,
            "built_at": now if changed else previous_built,
            "checked_at": now,
            "seconds": round(time.monotonic() - started, 2),
        }
        tmp_meta = files.meta.with_name(files.meta.name + suffix)
        tmp_meta.write_text(json.dumps(meta))
        os.replace(tmp_meta, files.meta)
        return meta
    finally:
        for leftover in (tmp_xml, tmp_gz):
            leftover.unlink(missing_ok=True)


async def _build(
    database_url: str, writer: _TeeWriter, past_days: int, base_url: str, progress: Progress | None
) -> dict[str, int]:
    db = Database(database_url)
    try:
        if progress is not None:
            progress(5, "Reading the lineup")
        return await _write_guide(db, _Buffer(writer), past_days, base_url, progress)
    finally:
        await db.dispose()
