"""Rules of the client outputs: which channels each output lists, where they play from, tuners, the guide file."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Text, and_, func, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession

from backend.channels.logos import OK as LOGO_OK
from backend.channels.models import Channel, ChannelSource, ChannelTag, LogoCache, channel_tag_link
from backend.epg.models import EpgChannel, EpgSource
from backend.errors import NotFound
from backend.keys import Keyring
from backend.outputs.formats import HdhrDevice, PlaylistItem, hdhr_device_id
from backend.playlists.models import PlaylistSource, Stream
from backend.settings import service as settings_service

log = logging.getLogger(__name__)

#: Where TIC serves a channel's cached logo. The channels domain owns the route; this is its path.
LOGO_PATH = "/tic-api/logos/{channel_id}"
#: TIC's stream route through TVHeadend (the proxy domain serves it with the stream key's user).
TVH_STREAM_PATH = "/tic-api/tvh_stream/stream/channel/{uuid}"
XMLTV_PATH = "/tic-api/epg/xmltv.xml"
#: Under the data dir: the built guide, its gzip twin and a JSON note about the last build.
OUTPUT_DIR = "outputs"
XMLTV_FILE = "xmltv.xml"
XMLTV_GZ_FILE = "xmltv.xml.gz"
XMLTV_META_FILE = "xmltv.json"
MAX_TUNERS = 99

# M3U / VLC option names for the request headers a provider may require.
_HEADER_OPTIONS = (("user-agent", "http-user-agent"), ("referer", "http-referrer"))


@dataclass(frozen=True, slots=True)
class OutputSettings:
    mode: str
    tvh_configured: bool
    public_base_url: str
    default_tuners: int


#: An enabled channel with what the outputs need, its first playable source and TVH identity:
#: (id, number, name, guide_id, logo, group, tvh_uuid, direct_url, headers), where logo is
#: CACHED_LOGO when TIC holds a good copy (clients get TIC's URL), else the original URL or None,
#: and headers are the chosen source's provider request headers (the playlist's merged under the stream's).
#:
#: A plain tuple on purpose. It is hashable, so the rendered lineups can remember each channel's
#: entry under it (see `render.EntryMemo`: every value an entry is made from must be in it). And
#: unlike a named tuple or a dataclass, the garbage collector stops tracking a tuple of plain
#: values: thousands of them per request then never promote into, and trigger, full collections
#: of the whole app's heap, which cost more than building the lineup itself.
OutputChannel = tuple[
    int, int, str, str, str | None, str | None, str | None, str | None, tuple[tuple[str, str], ...]
]
#: The `logo` of an OutputChannel whose logo (or guide icon) TIC has cached: served from TIC.
CACHED_LOGO = ""


@dataclass(frozen=True, slots=True)
class ItemContext:
    """Everything besides the channel that decides what one client is sent for it."""

    tvh_mode: bool
    tvh_when_published: bool
    base_url: str
    #: The requester's stream key, percent-encoded for a query string.
    quoted_key: str
    logo_prefix: str


async def output_settings(session: AsyncSession, keyring: Keyring) -> OutputSettings:
    values = await settings_service.get_settings(session, keyring)
    # The TVHeadend domain defines tvh_url; without it (or with it empty) TVH counts as not configured.
    tvh_url = values.get("tvh_url") or ""
    return OutputSettings(
        mode=str(values["output_stream_mode"]),
        tvh_configured=bool(str(tvh_url).strip()),
        public_base_url=str(values["public_base_url"] or "").strip().rstrip("/"),
        default_tuners=int(values["hdhr_default_tuner_count"]),
    )


async def get_playlist(session: AsyncSession, playlist_id: int) -> PlaylistSource:
    playlist = await session.get(PlaylistSource, playlist_id)
    if playlist is None:
        raise NotFound(f"No playlist with id {playlist_id}", code="PLAYLIST_NOT_FOUND")
    return playlist


def _merged_headers(*layers: Any) -> dict[str, str]:
    """Request headers from broadest to most specific layer; names compared case-insensitively."""
    merged: dict[str, tuple[str, str]] = {}
    for layer in layers:
        if isinstance(layer, dict):
            for name, value in layer.items():
                if isinstance(name, str) and isinstance(value, str) and value.strip():
                    merged[name.lower()] = (name, value)
    return {name: value for name, value in merged.values()}


def _json_text(raw: Any) -> Any:
    """A JSON column read without SQLAlchemy's decoding: text on SQLite (decoded here only when there
    is something in it, which for stream headers is rare), already decoded by asyncpg on PostgreSQL."""
    if not isinstance(raw, str):
        return raw
    if not raw or raw == "null":
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


async def output_channels(session: AsyncSession, playlist_id: int | None = None) -> list[OutputChannel]:
    """Enabled channels in number order, each with its first playable source, in one query.

    A source is playable when it is enabled and is either a manual URL or a stream that still
    exists in an enabled playlist; a source whose stream vanished is skipped. With `playlist_id`,
    only sources from that playlist count, and channels without one are left out.
    """
    # Correlated, so each channel looks up its own tags by the link table's primary key; a joined
    # GROUP BY subquery would be scanned once per channel by SQLite (quadratic in the lineup size).
    first_tag = (
        select(func.min(ChannelTag.name))
        .join(channel_tag_link, ChannelTag.id == channel_tag_link.c.tag_id)
        .where(channel_tag_link.c.channel_id == Channel.id)
        .scalar_subquery()
    )
    stmt = (
        select(
            Channel.id,
            Channel.number,
            Channel.name,
            Channel.guide_id,
            Channel.logo_url,
            Channel.tvh_uuid,
            EpgChannel.icon,
            first_tag,
            ChannelSource.stream_id,
            ChannelSource.url,
            ChannelSource.playlist_source_id,
            Stream.url,
            Stream.source_id,
            # As text: decoded only when a stream has headers at all (see _json_text).
            type_coerce(Stream.headers, Text),
        )
        .select_from(Channel)
        .outerjoin(
            EpgChannel,
            and_(
                EpgChannel.source_id == Channel.epg_source_id, EpgChannel.xmltv_id == Channel.epg_channel_id
            ),
        )
        .outerjoin(
            ChannelSource, and_(ChannelSource.channel_id == Channel.id, ChannelSource.enabled.is_(True))
        )
        .outerjoin(Stream, Stream.id == ChannelSource.stream_id)
        .where(Channel.enabled.is_(True))
        .order_by(Channel.number, ChannelSource.position)
    )
    if playlist_id is not None:
        stmt = stmt.where(Stream.source_id == playlist_id)
    # Playlists are few: read them once instead of joining (and decoding their headers) per row.
    playlists: dict[int, tuple[bool, dict[str, str]]] = {}
    for pid, enabled, agent, extra_headers in await session.execute(
        select(PlaylistSource.id, PlaylistSource.enabled, PlaylistSource.user_agent, PlaylistSource.headers)
    ):
        agent_header = {"User-Agent": agent} if agent else None
        playlists[pid] = (bool(enabled), _merged_headers(extra_headers, agent_header))
    no_playlist: tuple[bool, dict[str, str]] = (False, {})
    # Logos TIC holds a good copy of; others are passed on as the provider's URL (a logo that failed
    # to cache, e.g. an SVG, would otherwise be a broken link in every client).
    cached = set(
        await session.scalars(
            select(LogoCache.url).where(LogoCache.status == LOGO_OK, LogoCache.content_sha256.is_not(None))
        )
    )
    conn = await session.connection()
    # Iterated, not .all(): a Row is only created as it is read and is dropped at once, so thousands
    # of them never live long enough to be promoted and trigger full garbage collections.
    rows = await conn.execute(stmt)
    channels: list[OutputChannel] = []
    append = channels.append
    current: Any = None
    url: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    for row in rows:
        if current is None or current[0] != row[0]:
            if current is not None:
                append(_channel(current, url, headers, cached))
            current, url, headers = row, None, ()
        if url is not None:
            continue
        (stream_id, manual_url, snapshot_playlist, stream_url, stream_playlist, stream_headers) = row[8:]
        if stream_id is not None:
            enabled, playlist_headers = playlists.get(stream_playlist, no_playlist)
            if stream_url and enabled:
                url = stream_url
                own = _json_text(stream_headers)
                headers = tuple((_merged_headers(playlist_headers, own) if own else playlist_headers).items())
        elif manual_url and snapshot_playlist is None:
            url = manual_url
        # Otherwise the source pointed at a stream that vanished in a refresh: skipped.
    if current is not None:
        append(_channel(current, url, headers, cached))
    return channels


def _channel(
    row: Any, url: str | None, headers: tuple[tuple[str, str], ...], cached: set[str]
) -> OutputChannel:
    cid, number, name, guide_id, logo_url, tvh_uuid, epg_icon, tag = row[:8]
    # Same order as the logo route: the channel's own logo, then its guide channel's icon.
    if (logo_url and logo_url in cached) or (epg_icon and epg_icon in cached):
        logo: str | None = CACHED_LOGO
    else:
        logo = logo_url or epg_icon or None
    return (cid, number, name, guide_id, logo, tag, tvh_uuid or None, url, headers)


def item_context(settings: OutputSettings, base_url: str, stream_key: str) -> ItemContext:
    tvh_mode = settings.mode == "tvheadend"
    return ItemContext(
        tvh_mode=tvh_mode,
        tvh_when_published=tvh_mode or (settings.mode == "auto" and settings.tvh_configured),
        base_url=base_url,
        quoted_key=quote(stream_key, safe=""),
        logo_prefix=base_url + LOGO_PATH.split("{", 1)[0],
    )


def playlist_item(channel: OutputChannel, context: ItemContext) -> PlaylistItem | None:
    """What clients get for a channel: the URL chosen by output_stream_mode, the logo, the group.

    A channel with no playable source is left out (None) in every mode. In 'auto' a published
    channel (tvh_uuid set) plays through TVHeadend when TVHeadend is configured; 'tvheadend' lists
    only published channels; 'direct' always uses the channel's first playable source.
    """
    cid, number, name, guide_id, logo, group, tvh_uuid, direct_url, headers = channel
    if direct_url is None or (context.tvh_mode and tvh_uuid is None):
        return None
    options: list[tuple[str, str]] = []
    if tvh_uuid is not None and context.tvh_when_published:
        path = TVH_STREAM_PATH.format(uuid=quote(tvh_uuid, safe=""))
        url = f"{context.base_url}{path}?stream_key={context.quoted_key}"
    else:
        url = direct_url
        if headers:
            lowered = {header.lower(): value for header, value in headers}
            options = [(opt, lowered[h]) for h, opt in _HEADER_OPTIONS if h in lowered]
    return PlaylistItem(
        guide_id,
        number,
        name,
        url,
        f"{context.logo_prefix}{cid}" if logo == CACHED_LOGO else logo,
        group,
        options,
    )


def xmltv_url(base_url: str, stream_key: str) -> str:
    return f"{base_url}{XMLTV_PATH}?stream_key={quote(stream_key, safe='')}"


async def tuner_count(session: AsyncSession, playlist_id: int | None, default: int) -> int:
    """Sum of the connection limits of the enabled playlists behind a device; `default` for each without one."""
    stmt = select(PlaylistSource.connection_limit).where(PlaylistSource.enabled.is_(True))
    if playlist_id is not None:
        stmt = stmt.where(PlaylistSource.id == playlist_id)
    limits = (await session.execute(stmt)).scalars().all()
    total = sum(limit if limit and limit > 0 else default for limit in limits)
    return max(1, min(total or default, MAX_TUNERS))


def hdhr_device(keyring: Keyring, target: str, friendly_name: str, base_url: str, tuners: int) -> HdhrDevice:
    """A device whose ids depend only on the app secret and the target, so clients keep recognising it."""
    return HdhrDevice(
        device_id=hdhr_device_id(keyring.keyed_hash(target, "hdhr_device_id")),
        device_auth=keyring.keyed_hash(target, "hdhr_device_auth")[:24],
        friendly_name=friendly_name,
        base_url=base_url,
        tuner_count=tuners,
        udn_hex=keyring.keyed_hash(target, "hdhr_udn")[:32],
    )


async def lineup_fingerprint(session: AsyncSession) -> tuple[str, ...]:
    """A cheap summary of what the guide is built from; it changes when the lineup or a guide changes.

    The guide build compares it before and after, so an edit made while a build runs (whose own
    enqueue was merged into the running build) still reaches clients.
    """
    rows: list[tuple[str, ...]] = []
    for stmt in (
        select(func.count(Channel.id), func.max(Channel.updated_at), func.max(Channel.id)),
        select(func.count(EpgSource.id), func.max(EpgSource.last_import_at), func.max(EpgSource.updated_at)),
    ):
        rows.append(tuple(str(v) for v in (await session.execute(stmt)).one()))
    return tuple(value for row in rows for value in row)


@dataclass(frozen=True, slots=True)
class XmltvFiles:
    directory: Path
    xml: Path
    gz: Path
    meta: Path


def xmltv_files(data_dir: Path) -> XmltvFiles:
    directory = data_dir / OUTPUT_DIR
    return XmltvFiles(
        directory, directory / XMLTV_FILE, directory / XMLTV_GZ_FILE, directory / XMLTV_META_FILE
    )


def read_xmltv_meta(data_dir: Path) -> dict[str, Any] | None:
    """The note the last guide build left (counts, sizes, times); None before the first build.

    Blocking file I/O: call it through run_blocking.
    """
    path = xmltv_files(data_dir).meta
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        log.warning("The guide build note %s is unreadable; it is rewritten by the next build", path)
        return None
    return data if isinstance(data, dict) else None
