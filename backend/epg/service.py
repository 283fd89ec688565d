"""EPG rules: guide sources (checked and stored), import outcomes, guide channels, the grid and search."""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Text, and_, cast, func, or_, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from backend.channels.models import Channel
from backend.db import iso_z, utcnow
from backend.download import redact_url
from backend.epg.models import KINDS, PROGRAMME_CONTENT_COLUMNS, EpgChannel, EpgSource, Programme
from backend.errors import Conflict, Invalid, NotFound

#: Bounds of the editable numbers. Wide day ranges let an archive or an old sample guide import.
PAST_DAYS = (0, 36500)
FUTURE_DAYS = (1, 36500)
REFRESH_MINUTES = (15, 43200)
#: The longest window one guide request may ask for.
MAX_GUIDE_SPAN = timedelta(days=7)
DEFAULT_GUIDE_SPAN = timedelta(hours=6)
#: Assumed longest programme when an import did not measure it (guides imported before it did).
DEFAULT_MAX_PROGRAMME = timedelta(hours=24)

_LANG = re.compile(r"[A-Za-z]{2,3}(?:[_-][A-Za-z0-9]{2,8})?")
_FIELDS = (
    "name",
    "kind",
    "enabled",
    "url",
    "user_agent",
    "refresh_interval_minutes",
    "past_days",
    "future_days",
    "preferred_language",
)
# Changing any of these changes what an import produces, so the next one must not be skipped.
_IMPORT_FIELDS = ("kind", "url", "user_agent", "past_days", "future_days", "preferred_language")
FLAGS = ("new", "premiere", "live", "previously_shown")


# --- sources ---------------------------------------------------------------------------------------


def upload_path(data_dir: Path, source_id: int) -> Path:
    """Where the uploaded guide of an xmltv_file source is kept (compressed or not, as uploaded)."""
    return data_dir / "epg" / f"upload-{source_id}.xmltv"


def work_root(data_dir: Path) -> Path:
    """Scratch space of imports (downloads, SQLite stage files); each import uses its own folder."""
    return data_dir / "tmp" / "epg"


def source_out(source: EpgSource) -> dict[str, Any]:
    return {
        "id": source.id,
        "name": source.name,
        "enabled": source.enabled,
        "kind": source.kind,
        "url": redact_url(source.url) if source.url else None,
        "user_agent": source.user_agent,
        "refresh_interval_minutes": source.refresh_interval_minutes,
        "past_days": source.past_days,
        "future_days": source.future_days,
        "preferred_language": source.preferred_language,
        "upload_name": source.upload_name,
        "channel_count": source.channel_count,
        "programme_count": source.programme_count,
        "last_import_at": iso_z(source.last_import_at),
        "last_import_status": source.last_import_status,
        "last_import_error": source.last_import_error,
        "last_import_report": source.last_import_report,
        "created_at": iso_z(source.created_at),
        "updated_at": iso_z(source.updated_at),
    }


def _text(value: Any, field: str, limit: int, errors: dict[str, str]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        errors[field] = "expected text"
        return None
    value = value.strip()
    if len(value) > limit:
        errors[field] = f"at most {limit} characters"
    return value or None


def _number(value: Any, field: str, bounds: tuple[int, int], errors: dict[str, str]) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        errors[field] = "expected a whole number"
        return None
    if not bounds[0] <= value <= bounds[1]:
        errors[field] = f"must be between {bounds[0]} and {bounds[1]}"
    return value


def clean_source(values: dict[str, Any]) -> dict[str, Any]:
    """Check a whole source definition; raise Invalid naming every bad field at once."""
    errors: dict[str, str] = {}
    name = _text(values.get("name"), "name", 200, errors)
    if not name and "name" not in errors:
        errors["name"] = "a name is required"
    kind = values.get("kind") or "xmltv_url"
    if kind not in KINDS:
        errors["kind"] = f"must be one of {', '.join(KINDS)}"
    url = _text(values.get("url"), "url", 4000, errors)
    if kind == "xmltv_url":
        if not url:
            errors.setdefault("url", "a guide URL is required")
        else:
            try:
                parts = urlsplit(url)
                if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
                    errors["url"] = "must be an http:// or https:// URL with a host"
            except ValueError:
                errors["url"] = "not a valid URL"
    else:
        url = None
    language = _text(values.get("preferred_language"), "preferred_language", 20, errors)
    if language and not _LANG.fullmatch(language):
        errors["preferred_language"] = "a language code such as en, fr or en_GB"
    past = values.get("past_days")
    future = values.get("future_days")
    clean = {
        "name": name,
        "kind": kind,
        "enabled": bool(values.get("enabled", True)),
        "url": url,
        "user_agent": _text(values.get("user_agent"), "user_agent", 500, errors),
        "refresh_interval_minutes": _number(
            values.get("refresh_interval_minutes"), "refresh_interval_minutes", REFRESH_MINUTES, errors
        ),
        "past_days": _number(1 if past is None else past, "past_days", PAST_DAYS, errors),
        "future_days": _number(14 if future is None else future, "future_days", FUTURE_DAYS, errors),
        "preferred_language": language,
    }
    if errors:
        names = ", ".join(sorted(errors))
        raise Invalid(f"The guide source has problems: check {names}", code="EPG_INVALID", fields=errors)
    return clean


async def get_source(session: AsyncSession, source_id: int) -> EpgSource:
    source = await session.get(EpgSource, source_id)
    if source is None:
        raise NotFound(f"EPG source {source_id} does not exist", code="EPG_NOT_FOUND")
    return source


async def list_sources(session: AsyncSession, limit: int, offset: int) -> tuple[list[EpgSource], int]:
    total = int((await session.execute(select(func.count()).select_from(EpgSource))).scalar_one())
    rows = await session.execute(
        select(EpgSource).order_by(EpgSource.name, EpgSource.id).limit(limit).offset(offset)
    )
    return list(rows.scalars()), total


async def _check_name(session: AsyncSession, name: str, source_id: int | None) -> None:
    query = select(EpgSource.id).where(func.lower(EpgSource.name) == name.lower())
    if source_id is not None:
        query = query.where(EpgSource.id != source_id)
    if (await session.execute(query.limit(1))).first() is not None:
        raise _name_taken(name)


def _name_taken(name: str) -> Conflict:
    return Conflict(
        f"An EPG source named {name!r} already exists",
        code="EPG_NAME_TAKEN",
        fields={"name": "another EPG source has this name"},
    )


async def create_source(session: AsyncSession, values: dict[str, Any]) -> EpgSource:
    clean = clean_source(values)
    await _check_name(session, clean["name"], None)
    now = utcnow()
    source = EpgSource(**clean, channel_count=0, programme_count=0, created_at=now, updated_at=now)
    session.add(source)
    await _flush(session, clean["name"])
    return source


async def update_source(session: AsyncSession, source: EpgSource, changes: dict[str, Any]) -> EpgSource:
    """Apply the given changes after checking the whole resulting definition.

    A URL sent back exactly as the API shows it (credentials as ***) means "unchanged".
    """
    current = {field: getattr(source, field) for field in _FIELDS}
    if source.url and changes.get("url") == redact_url(source.url):
        changes = {**changes, "url": source.url}
    clean = clean_source({**current, **changes})
    if clean["name"].lower() != source.name.lower():
        await _check_name(session, clean["name"], source.id)
    if any(clean[field] != current[field] for field in _IMPORT_FIELDS):
        # The next import must not be skipped as unchanged: it fetches or keeps something else now.
        source.content_sha256 = None
    for key, value in clean.items():
        setattr(source, key, value)
    source.updated_at = utcnow()
    await _flush(session, clean["name"])
    return source


async def _flush(session: AsyncSession, name: str) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:
        raise _name_taken(name) from exc


async def delete_source(session: AsyncSession, source: EpgSource) -> None:
    """Delete a source with its channels and programmes; lineup channels that used it lose the link."""
    # The database cascades to epg_channel and programme, and sets channel.epg_source_id to NULL.
    await session.delete(source)
    await session.flush()


async def record_upload(session: AsyncSession, source: EpgSource, filename: str) -> None:
    source.upload_name = (filename or "guide.xml")[:255]
    source.content_sha256 = None
    source.updated_at = utcnow()


async def record_import_failure(session: AsyncSession, source_id: int, message: str) -> None:
    """Note a failed import on the source; its channels and programmes are left as they were."""
    source = await session.get(EpgSource, source_id)
    if source is None:
        return
    now = utcnow()
    source.last_import_at = now
    source.last_import_status = "failed"
    source.last_import_error = message[:4000]
    source.updated_at = now


async def record_unchanged(session: AsyncSession, source_id: int, report: dict[str, Any]) -> None:
    """Note an import that found the same file as last time (nothing to do)."""
    source = await get_source(session, source_id)
    now = utcnow()
    source.last_import_at = now
    source.last_import_status = "succeeded"
    source.last_import_error = None
    source.last_import_report = {**(source.last_import_report or {}), **report}
    source.updated_at = now


async def due_sources(session: AsyncSession, now: datetime) -> list[int]:
    """Enabled sources with a refresh interval whose last import is at least that old (or never ran)."""
    rows = await session.execute(
        select(
            EpgSource.id, EpgSource.refresh_interval_minutes, EpgSource.last_import_at, EpgSource.kind
        ).where(EpgSource.enabled.is_(True), EpgSource.refresh_interval_minutes.is_not(None))
    )
    due = []
    for source_id, minutes, last, kind in rows:
        if kind == "xmltv_file" and last is not None:
            # An uploaded file does not change by itself; it is imported when uploaded.
            continue
        if last is None or now - last >= timedelta(minutes=minutes or 0):
            due.append(source_id)
    return due


# --- guide channels --------------------------------------------------------------------------------


def epg_channel_out(channel: EpgChannel) -> dict[str, Any]:
    return {
        "channel_id": channel.xmltv_id,
        "display_names": [list(pair) for pair in channel.display_names or []],
        "icon": channel.icon,
        "url": channel.url,
        "number": channel.number,
        "programme_count": channel.programme_count,
        "first_start": iso_z(channel.first_start),
        "last_stop": iso_z(channel.last_stop),
    }


async def list_epg_channels(
    session: AsyncSession, source_id: int, limit: int, offset: int, text: str | None
) -> tuple[list[EpgChannel], int]:
    """A source's guide channels by id; `text` filters on the id or a display name (case-insensitive)."""
    condition = EpgChannel.source_id == source_id
    if text:
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        names = cast(EpgChannel.display_names, Text)
        condition = and_(
            condition,
            or_(EpgChannel.xmltv_id.ilike(pattern, escape="\\"), names.ilike(pattern, escape="\\")),
        )
    total = int(
        (await session.execute(select(func.count()).select_from(EpgChannel).where(condition))).scalar_one()
    )
    rows = await session.execute(
        select(EpgChannel).where(condition).order_by(EpgChannel.xmltv_id).limit(limit).offset(offset)
    )
    return list(rows.scalars()), total


# --- programmes: the grid and search ----------------------------------------------------------------


#: The programme columns the grid and search answers carry (rows of these, not ORM objects).
GRID_COLUMNS = (Programme.id, Programme.source_id, *PROGRAMME_CONTENT_COLUMNS)
#: Programmes handled between two returns to the event loop while a grid answer is built.
GRID_SLICE = 500


def programme_out(programme: Any, offset_minutes: int = 0) -> dict[str, Any]:
    """A programme (ORM object or a row of GRID_COLUMNS) as the API shows it, shifted by the offset."""
    shift = timedelta(minutes=offset_minutes)
    extra = programme.extra if isinstance(programme.extra, dict) else {}
    return {
        "id": programme.id,
        "source_id": programme.source_id,
        "xmltv_channel_id": programme.xmltv_channel_id,
        "start": iso_z(programme.start + shift),
        "stop": iso_z(programme.stop + shift),
        "title": programme.title,
        "sub_title": programme.sub_title,
        "description": programme.description,
        "categories": [str(c) for c in programme.categories or []],
        "episode_num": programme.episode_num,
        "season": programme.season,
        "episode": programme.episode,
        "icon": programme.icon,
        "flags": [flag for flag in FLAGS if extra.get(flag)],
    }


def parse_instant(value: str | None, field: str) -> datetime | None:
    """An ISO-8601 query parameter with a zone (Z or an offset) as an aware datetime."""
    if value is None or value == "":
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise Invalid(
            f"{field} must be an ISO-8601 time such as 2025-01-06T18:00:00Z", fields={field: "not a time"}
        ) from None
    if moment.utcoffset() is None:
        raise Invalid(f"{field} must include a zone (Z or +01:00)", fields={field: "no time zone"})
    return moment


async def _max_programme(session: AsyncSession, source_ids: set[int]) -> timedelta:
    """The longest programme any of these sources had at its last import (bounds the grid's scan)."""
    longest = timedelta(0)
    rows = await session.execute(select(EpgSource.last_import_report).where(EpgSource.id.in_(source_ids)))
    for (report,) in rows:
        seconds = (report or {}).get("max_programme_seconds")
        span = timedelta(seconds=seconds) if isinstance(seconds, int) else DEFAULT_MAX_PROGRAMME
        longest = max(longest, span)
    return longest


async def guide(
    session: AsyncSession, start: datetime | None, end: datetime | None, channel_ids: list[int] | None
) -> dict[str, Any]:
    """Grid data: the mapped lineup channels (all enabled ones, or those asked for) with the
    programmes overlapping [start, end), shifted by each channel's guide offset.

    Programmes come from one query over the (source, channel, start) index, whatever the number of
    channels; the scan starts no earlier than the longest programme of the sources before `start`.
    """
    now = utcnow()
    if start is None:
        start = now.replace(minute=0 if now.minute < 30 else 30, second=0, microsecond=0)
    if end is None:
        end = start + DEFAULT_GUIDE_SPAN
    if end <= start:
        raise Invalid("end must be after start", fields={"end": "not after start"})
    if end - start > MAX_GUIDE_SPAN:
        raise Invalid(
            "A guide request may cover at most 7 days", fields={"end": "more than 7 days after start"}
        )
    query = select(Channel).where(Channel.epg_source_id.is_not(None), Channel.epg_channel_id.is_not(None))
    if channel_ids is None:
        query = query.where(Channel.enabled.is_(True))
    else:
        query = query.where(Channel.id.in_(channel_ids))
    channels = list((await session.execute(query.order_by(Channel.number))).scalars())
    rows: dict[tuple[int | None, str | None], list[Any]] = defaultdict(list)
    if channels:
        offsets = [timedelta(minutes=c.guide_offset_minutes or 0) for c in channels]
        low, high = start - max(offsets), end - min(offsets)
        keys = {(c.epg_source_id, c.epg_channel_id) for c in channels}
        longest = await _max_programme(session, {source_id for source_id, _ in keys if source_id is not None})
        # Plain rows of the grid's columns, not ORM objects: a 500-channel day is thousands of rows.
        found = await session.stream(
            select(*GRID_COLUMNS)
            .where(
                tuple_(Programme.source_id, Programme.xmltv_channel_id).in_(list(keys)),
                Programme.start < high,
                Programme.start >= low - longest,
                Programme.stop > low,
            )
            .order_by(Programme.start)
        )
        # Streamed a slice at a time: rows are converted (times, JSON columns) on the loop as they are
        # fetched, so a whole day of a big lineup at once would hold it; hand it back between slices.
        async for part in found.partitions(GRID_SLICE):
            for programme in part:
                rows[(programme.source_id, programme.xmltv_channel_id)].append(programme)
            await asyncio.sleep(0)
    out = []
    built = 0
    for channel in channels:
        shift = timedelta(minutes=channel.guide_offset_minutes or 0)
        key = (channel.epg_source_id, channel.epg_channel_id)
        programmes = [
            programme_out(p, channel.guide_offset_minutes or 0)
            for p in rows.get(key, [])
            if p.start + shift < end and p.stop + shift > start
        ]
        built += len(programmes)
        if built >= GRID_SLICE:
            built = 0
            await asyncio.sleep(0)
        out.append(
            {
                "id": channel.id,
                "name": channel.name,
                "number": channel.number,
                "logo_url": channel.logo_url,
                "epg_source_id": channel.epg_source_id,
                "epg_channel_id": channel.epg_channel_id,
                "guide_offset_minutes": channel.guide_offset_minutes or 0,
                "programmes": programmes,
            }
        )
    return {"start": iso_z(start), "end": iso_z(end), "channels": out}


async def search_programmes(
    session: AsyncSession,
    text: str,
    start: datetime | None,
    end: datetime | None,
    source_id: int | None,
    limit: int,
    offset: int,
) -> tuple[list[dict[str, Any]], int]:
    """Programmes whose title contains `text` (case-insensitive) overlapping [start, end), soonest
    first, each with the lineup channels that show it."""
    text = text.strip()
    if not text:
        raise Invalid("Give some text to search for in titles (q)", fields={"q": "required"})
    pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    conditions: list[ColumnElement[bool]] = [Programme.title.ilike(pattern, escape="\\")]
    if start is not None:
        conditions.append(Programme.stop > start)
    if end is not None:
        conditions.append(Programme.start < end)
    if source_id is not None:
        conditions.append(Programme.source_id == source_id)
    total = int(
        (await session.execute(select(func.count()).select_from(Programme).where(*conditions))).scalar_one()
    )
    found = list(
        (
            await session.execute(
                select(Programme)
                .where(*conditions)
                .order_by(Programme.start, Programme.id)
                .limit(limit)
                .offset(offset)
            )
        ).scalars()
    )
    mapped: dict[tuple[int | None, str | None], list[int]] = defaultdict(list)
    keys = {(p.source_id, p.xmltv_channel_id) for p in found}
    if keys:
        channel_rows = await session.execute(
            select(Channel.id, Channel.epg_source_id, Channel.epg_channel_id)
            .where(tuple_(Channel.epg_source_id, Channel.epg_channel_id).in_(list(keys)))
            .order_by(Channel.number)
        )
        for channel_id, epg_source_id, epg_channel_id in channel_rows:
            mapped[(epg_source_id, epg_channel_id)].append(channel_id)
    items = [
        {**programme_out(p), "channel_ids": mapped.get((p.source_id, p.xmltv_channel_id), [])} for p in found
    ]
    return items, total
