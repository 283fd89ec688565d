"""Playlist sources and their streams: validation, CRUD, the stream browser queries; takes a session."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from backend.db import iso_z, utcnow
from backend.download import redact_url
from backend.errors import Conflict, Invalid, NotFound
from backend.keys import Keyring
from backend.playlists.models import KINDS, PlaylistSource, Stream
from backend.playlists.worker import attributes, search_key
from backend.playlists.xtream import normalize_server

#: What the API shows instead of a stored password; sending it back keeps the password.
MASK = "********"
#: Request headers whose values are credentials: shown as MASK, never in full.
_SECRET_HEADER = re.compile(r"(?i)authorization|cookie|token|secret|pass|api-?key|auth")
MIN_REFRESH_MINUTES = 5
MAX_REFRESH_MINUTES = 30 * 24 * 60
MAX_HEADERS = 30
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Fields that decide what an import fetches; changing one makes the next import a full one.
_FETCH_FIELDS = ("kind", "url", "xc_server", "xc_username", "user_agent", "headers")


def upload_path(data_dir: Path, source_id: int) -> Path:
    """Where the uploaded file of an m3u_file source is kept."""
    return data_dir / "playlists" / f"upload-{source_id}.m3u"


# -- validation ----------------------------------------------------------------------------------


def clean_source(values: dict[str, Any], *, password_stored: bool) -> tuple[dict[str, Any], str | None]:
    """Check a whole source definition; return the column values and a new plaintext password, if any.

    Raises Invalid with a message for every field that is wrong, so a form can show them all at once.
    """
    errors: dict[str, str] = {}
    out: dict[str, Any] = {}
    name = str(values.get("name") or "").strip()
    if not name:
        errors["name"] = "Give the playlist a name"
    elif len(name) > 200:
        errors["name"] = "At most 200 characters"
    out["name"] = name
    kind = values.get("kind")
    if kind not in KINDS:
        errors["kind"] = f"Choose one of {', '.join(KINDS)}"
    out["kind"] = kind
    out["enabled"] = bool(values.get("enabled", True))
    out["url"] = _clean_url(values.get("url"), required=kind == "m3u_url", errors=errors)
    password: str | None = None
    if kind == "xtream":
        server = str(values.get("xc_server") or "").strip()
        if not server:
            errors["xc_server"] = "Enter the server address, e.g. http://provider.example:8080"
        else:
            try:
                server = normalize_server(server)
            except Invalid:
                errors["xc_server"] = "Not an http(s) address such as http://provider.example:8080"
        out["xc_server"] = server
        username = str(values.get("xc_username") or "").strip()
        if not username:
            errors["xc_username"] = "Enter the username the provider gave you"
        elif len(username) > 200:
            errors["xc_username"] = "At most 200 characters"
        out["xc_username"] = username
        given = values.get("xc_password")
        if given is not None and given != MASK and str(given) != "":
            password = str(given)
            if len(password) > 500:
                errors["xc_password"] = "At most 500 characters"
        elif not password_stored:
            errors["xc_password"] = "Enter the password the provider gave you"
        out["url"] = None
    else:
        out["xc_server"] = out["xc_username"] = None
    out["user_agent"] = _clean_header_value(values.get("user_agent"), "user_agent", 500, errors)
    out["headers"] = _clean_headers(values.get("headers"), errors)
    out["connection_limit"] = _bounded(values.get("connection_limit"), "connection_limit", 1, 10_000, errors)
    out["refresh_interval_minutes"] = _bounded(
        values.get("refresh_interval_minutes"),
        "refresh_interval_minutes",
        MIN_REFRESH_MINUTES,
        MAX_REFRESH_MINUTES,
        errors,
    )
    if errors:
        raise Invalid(f"Check {', '.join(sorted(errors))}", code="PLAYLIST_INVALID", fields=errors)
    return out, password


def _clean_url(value: Any, *, required: bool, errors: dict[str, str]) -> str | None:
    url = str(value or "").strip()
    if not url:
        if required:
            errors["url"] = "Enter the playlist's URL"
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        host = None
        parts = None
    if parts is None or parts.scheme.lower() not in ("http", "https") or not host:
        errors["url"] = "Must be an http:// or https:// URL"
    elif any(c in url for c in "\r\n\t ") or len(url) > 4000:
        errors["url"] = "Must be one URL without spaces, at most 4000 characters"
    return url


def _clean_header_value(value: Any, field: str, limit: int, errors: dict[str, str]) -> str | None:
    text = str(value or "").strip()
    if not text:
        return None
    if len(text) > limit:
        errors[field] = f"At most {limit} characters"
    elif any(c in text for c in "\r\n\0"):
        errors[field] = "Must be a single line"
    return text


def _clean_headers(value: Any, errors: dict[str, str]) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        errors["headers"] = "Must be an object of header names and values"
        return {}
    if len(value) > MAX_HEADERS:
        errors["headers"] = f"At most {MAX_HEADERS} headers"
        return {}
    out: dict[str, str] = {}
    for name, header in value.items():
        name = str(name).strip()
        text = str(header).strip()
        if not _TOKEN.fullmatch(name):
            errors["headers"] = f"{name!r} is not a valid header name"
        elif any(c in text for c in "\r\n\0") or len(text) > 4000:
            errors["headers"] = f"The value of {name} must be a single line of at most 4000 characters"
        else:
            out[name] = text
    return out


def _bounded(value: Any, field: str, low: int, high: int, errors: dict[str, str]) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        errors[field] = "Must be a whole number"
        return None
    if not low <= value <= high:
        errors[field] = f"Must be between {low} and {high}, or empty for none"
    return value


# -- sources -------------------------------------------------------------------------------------


def restore_secrets(source: PlaylistSource, values: dict[str, Any]) -> dict[str, Any]:
    """Values sent back exactly as the API shows them (a redacted URL, masked header values) mean "unchanged"."""
    out = dict(values)
    if source.url and out.get("url") == redact_url(source.url):
        out["url"] = source.url
    headers = out.get("headers")
    if isinstance(headers, dict) and source.headers:
        out["headers"] = {k: source.headers.get(k, v) if v == MASK else v for k, v in headers.items()}
    return out


def source_out(source: PlaylistSource) -> dict[str, Any]:
    return {
        "id": source.id,
        "name": source.name,
        "enabled": source.enabled,
        "kind": source.kind,
        "url": redact_url(source.url) if source.url else None,
        "xc_server": source.xc_server,
        "xc_username": source.xc_username,
        "xc_password": MASK if source.xc_password_enc else None,
        "user_agent": source.user_agent,
        "headers": {k: MASK if _SECRET_HEADER.search(k) else v for k, v in (source.headers or {}).items()},
        "connection_limit": source.connection_limit,
        "refresh_interval_minutes": source.refresh_interval_minutes,
        "position": source.position,
        "has_file": source.upload_name is not None,
        "stream_count": source.stream_count,
        "last_import_at": iso_z(source.last_import_at),
        "last_import_status": source.last_import_status,
        "last_import_error": source.last_import_error,
        "last_import_report": source.last_import_report,
        "created_at": iso_z(source.created_at),
        "updated_at": iso_z(source.updated_at),
    }


async def list_sources(session: AsyncSession, limit: int, offset: int) -> tuple[list[PlaylistSource], int]:
    total = int((await session.execute(select(func.count()).select_from(PlaylistSource))).scalar_one())
    rows = (
        await session.execute(
            select(PlaylistSource)
            .order_by(PlaylistSource.position, PlaylistSource.id)
            .limit(limit)
            .offset(offset)
        )
    ).scalars()
    return list(rows), total


async def get_source(session: AsyncSession, source_id: int) -> PlaylistSource:
    source = await session.get(PlaylistSource, source_id)
    if source is None:
        raise NotFound(f"Playlist {source_id} does not exist", code="PLAYLIST_NOT_FOUND")
    return source


async def _check_name(session: AsyncSession, name: str, source_id: int | None) -> None:
    query = select(PlaylistSource.id).where(func.lower(PlaylistSource.name) == name.lower())
    if source_id is not None:
        query = query.where(PlaylistSource.id != source_id)
    if (await session.execute(query.limit(1))).first() is not None:
        raise Conflict(
            f"A playlist named {name!r} already exists",
            code="PLAYLIST_NAME_TAKEN",
            fields={"name": "Another playlist already has this name"},
        )


async def create_source(session: AsyncSession, keyring: Keyring, values: dict[str, Any]) -> PlaylistSource:
    clean, password = clean_source(values, password_stored=False)
    await _check_name(session, clean["name"], None)
    position = (
        await session.execute(select(func.coalesce(func.max(PlaylistSource.position), -1)))
    ).scalar_one()
    now = utcnow()
    source = PlaylistSource(
        **clean,
        xc_password_enc=keyring.encrypt(password) if password else None,
        position=int(position) + 1,
        stream_count=0,
        created_at=now,
        updated_at=now,
    )
    session.add(source)
    await _flush(session)
    return source


async def update_source(
    session: AsyncSession, keyring: Keyring, source: PlaylistSource, changes: dict[str, Any]
) -> PlaylistSource:
    """Apply changes (only the keys given) after checking the whole resulting definition."""
    changes = restore_secrets(source, changes)
    current = {
        "name": source.name,
        "kind": source.kind,
        "enabled": source.enabled,
        "url": source.url,
        "xc_server": source.xc_server,
        "xc_username": source.xc_username,
        "user_agent": source.user_agent,
        "headers": source.headers,
        "connection_limit": source.connection_limit,
        "refresh_interval_minutes": source.refresh_interval_minutes,
    }
    merged = {**current, **changes}
    clean, password = clean_source(merged, password_stored=source.xc_password_enc is not None)
    if clean["name"] != source.name:
        await _check_name(session, clean["name"], source.id)
    refetch = any(clean[f] != current[f] for f in _FETCH_FIELDS) or password is not None
    for key, value in clean.items():
        setattr(source, key, value)
    if clean["kind"] != "xtream":
        source.xc_password_enc = None
    elif password is not None:
        source.xc_password_enc = keyring.encrypt(password)
    if refetch:
        # The next import must not be skipped as "unchanged": what it fetches is different now.
        source.content_sha256 = None
    source.updated_at = utcnow()
    await _flush(session)
    return source


async def delete_source(session: AsyncSession, source: PlaylistSource) -> None:
    # The streams go with it (ON DELETE CASCADE); channel sources that used them keep their label.
    await session.execute(delete(Stream).where(Stream.source_id == source.id))
    await session.delete(source)
    await session.flush()


async def _flush(session: AsyncSession) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(
            "Another playlist already has this name",
            code="PLAYLIST_NAME_TAKEN",
            fields={"name": "Another playlist already has this name"},
        ) from exc


async def record_upload(session: AsyncSession, source: PlaylistSource, filename: str) -> None:
    source.upload_name = (filename or "playlist.m3u")[:255]
    source.content_sha256 = None
    source.updated_at = utcnow()
    await session.flush()


async def record_import_failure(
    session: AsyncSession, source_id: int, message: str, status: str = "failed"
) -> None:
    """Note a failed or stopped import on the source; its streams and last report stay as they were."""
    await session.execute(
        update(PlaylistSource)
        .where(PlaylistSource.id == source_id)
        .values(last_import_at=utcnow(), last_import_status=status, last_import_error=message[:2000])
    )


async def record_unchanged(session: AsyncSession, source_id: int, report: dict[str, Any]) -> None:
    await session.execute(
        update(PlaylistSource)
        .where(PlaylistSource.id == source_id)
        .values(
            last_import_at=utcnow(),
            last_import_status="succeeded",
            last_import_error=None,
            last_import_report=report,
        )
    )


async def due_sources(session: AsyncSession, now: datetime) -> list[int]:
    """Enabled sources with a refresh interval whose last import is at least that long ago."""
    rows = (
        await session.execute(
            select(PlaylistSource.id, PlaylistSource.refresh_interval_minutes, PlaylistSource.last_import_at)
            .where(PlaylistSource.enabled.is_(True), PlaylistSource.refresh_interval_minutes.is_not(None))
            .order_by(PlaylistSource.position, PlaylistSource.id)
        )
    ).all()
    return [
        source_id
        for source_id, minutes, last in rows
        if minutes is not None and (last is None or last + timedelta(minutes=minutes) <= now)
    ]


# -- streams -------------------------------------------------------------------------------------

_STREAM_COLUMNS = (
    Stream.id,
    Stream.source_id,
    Stream.name,
    Stream.url,
    Stream.tvg_id,
    Stream.tvg_name,
    Stream.tvg_logo,
    Stream.tvg_chno,
    Stream.group_title,
    Stream.catchup,
    Stream.catchup_source,
    Stream.catchup_days,
    Stream.headers,
    Stream.extra,
    Stream.is_vod,
    Stream.provider_stream_id,
    Stream.line_no,
    Stream.first_seen_at,
    Stream.updated_at,
)


def _stream_out(row: Any) -> dict[str, Any]:
    extra = row.extra if isinstance(row.extra, dict) else None
    return {
        "id": row.id,
        "playlist_id": row.source_id,
        "name": row.name,
        "url": row.url,
        "tvg_id": row.tvg_id,
        "tvg_name": row.tvg_name,
        "tvg_logo": row.tvg_logo,
        "group_title": row.group_title,
        "tvg_chno": row.tvg_chno,
        "attributes": attributes(
            (row.tvg_id, row.tvg_name, row.tvg_logo, row.tvg_chno, row.group_title), extra
        ),
        "catchup": row.catchup,
        "catchup_source": row.catchup_source,
        "catchup_days": row.catchup_days,
        "headers": dict(row.headers) if isinstance(row.headers, dict) else {},
        "is_vod": bool(row.is_vod),
        "provider_stream_id": row.provider_stream_id,
        "line_no": row.line_no,
        "first_seen_at": iso_z(row.first_seen_at),
        "updated_at": iso_z(row.updated_at),
    }


def _like_pattern(query: str) -> str | None:
    term = search_key(query)
    if not term:
        return None
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def list_streams(
    session: AsyncSession,
    *,
    playlist_id: int | None,
    query: str | None,
    group: str | None,
    limit: int,
    offset: int,
) -> tuple[list[dict[str, Any]], int]:
    """Streams in the order they first appeared, optionally of one playlist, matching a search and a group.

    The search ignores case and accents ("tele" finds "Télé"); group "" means streams without a group.
    """
    conditions: list[Any] = []
    if playlist_id is not None:
        conditions.append(Stream.source_id == playlist_id)
    pattern = _like_pattern(query) if query else None
    if pattern is not None:
        conditions.append(Stream.search_name.like(pattern, escape="\\"))
    if group is not None:
        conditions.append(Stream.group_title.is_(None) if group == "" else Stream.group_title == group)
    count = select(func.count()).select_from(Stream).where(*conditions)
    total = int((await session.execute(count)).scalar_one())
    if total == 0 or offset >= total:
        return [], total
    page = (
        select(*_STREAM_COLUMNS)
        .where(*conditions)
        .order_by(Stream.source_id, Stream.id)
        .limit(limit)
        .offset(offset)
    )
    rows = (await session.execute(page)).all()
    return [_stream_out(row) for row in rows], total


async def get_stream(session: AsyncSession, stream_id: int) -> dict[str, Any]:
    row = (await session.execute(select(*_STREAM_COLUMNS).where(Stream.id == stream_id))).first()
    if row is None:
        raise NotFound(f"Stream {stream_id} does not exist", code="STREAM_NOT_FOUND")
    return _stream_out(row)


async def list_groups(session: AsyncSession, *, playlist_id: int | None) -> list[dict[str, Any]]:
    """Group names with their stream counts, sorted by name (streams without a group last)."""
    query = select(Stream.group_title, func.count()).group_by(Stream.group_title)
    if playlist_id is not None:
        query = query.where(Stream.source_id == playlist_id)
    rows = (await session.execute(query)).all()
    names: list[tuple[str | None, int]] = [(name, int(count)) for name, count in rows]
    names.sort(key=lambda g: (g[0] is None, (g[0] or "").casefold()))
    return [{"name": name, "count": count} for name, count in names]
