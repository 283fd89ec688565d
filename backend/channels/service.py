"""The lineup's rules: channel CRUD, numbers, tags, sources, guide ids, and the calls other domains use."""

from __future__ import annotations

import logging
import re
import secrets
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any, cast
from urllib.parse import urlsplit

from sqlalchemy import Select, Table, and_, bindparam, delete, exists, func, insert, not_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from backend.channels import numbering
from backend.channels.models import Channel, ChannelSource, ChannelTag, channel_tag_link
from backend.channels.schemas import ChannelCreateIn, ChannelPatchIn, SourceIn
from backend.db import utcnow
from backend.epg.models import EpgChannel, EpgSource
from backend.errors import Conflict, Invalid, NotFound
from backend.playlists.models import Stream

log = logging.getLogger(__name__)

#: Jobs other domains register; a lineup change queues them when they exist in this version.
FOLLOW_UP_JOBS = ("build_xmltv", "publish_tvheadend")
CACHE_LOGOS = "cache_logos"
#: Rows per statement when a list of ids goes into an IN clause (well under every driver's limit).
CHUNK = 5000
MAX_NAME = 300
MAX_TAG = 100

# Control characters, line and paragraph separators, bidi overrides/isolates and the BOM: a name
# keeps every printable character (quotes, <, & included) but none that can break a line or a layout.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff\u200b]")
_GUIDE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,199}$")
_GUIDE_ID_BAD = re.compile(r"[^A-Za-z0-9._@+-]+")
SOURCE_SCHEMES = ("http", "https", "rtmp", "rtmps", "rtsp", "rtp", "udp", "srt")


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# -- input cleaning ---------------------------------------------------------------------------------


def clean_text(raw: str, *, field: str, what: str, max_len: int) -> str:
    """Collapse whitespace and drop control characters; blank or over-long text is a 400."""
    text = " ".join(_CONTROL.sub(" ", raw).split())
    if not text:
        raise Invalid(f"{what} cannot be blank", code="NAME_REQUIRED", fields={field: "required"})
    if len(text) > max_len:
        raise Invalid(
            f"{what} is longer than {max_len} characters",
            code="NAME_TOO_LONG",
            fields={field: f"at most {max_len} characters"},
        )
    return text


def clean_name(raw: str, field: str = "name") -> str:
    return clean_text(raw, field=field, what="A channel name", max_len=MAX_NAME)


def clean_tags(names: Iterable[str], field: str = "tags") -> list[str]:
    """Tag names cleaned and de-duplicated ignoring case, first spelling wins."""
    out: dict[str, str] = {}
    for raw in names:
        name = clean_text(raw, field=field, what="A tag name", max_len=MAX_TAG)
        out.setdefault(name.casefold(), name)
    return list(out.values())


def _check_url(raw: str, *, field: str, schemes: Sequence[str]) -> str:
    url = raw.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme.lower() not in schemes
        or not parts.netloc
        or _CONTROL.search(url)
        or any(ch.isspace() for ch in url)
    ):
        raise Invalid(
            f"Not a usable URL: it must start with {', '.join(s + '://' for s in schemes)} and contain no spaces",
            code="URL_INVALID",
            fields={field: "invalid URL"},
        )
    return url


def clean_logo_url(raw: str | None, field: str = "logo_url") -> str | None:
    if raw is None or not raw.strip():
        return None
    return _check_url(raw, field=field, schemes=("http", "https"))


def clean_source_url(raw: str, field: str) -> str:
    return _check_url(raw, field=field, schemes=SOURCE_SCHEMES)


# -- guide ids --------------------------------------------------------------------------------------


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:40].strip("-")


def make_guide_id(tvg_id: str | None, name: str, taken: set[str]) -> str:
    """A new guide id: the tvg-id when it is usable and free, else a slug of the name with a short id.

    `taken` holds the lower-cased ids in use and gets the new one; ids are compared ignoring case
    because some clients do. The result is safe as an XMLTV channel id and an M3U attribute value.
    """
    if tvg_id:
        candidate = _GUIDE_ID_BAD.sub("-", tvg_id.strip()).strip("-.")
        if _GUIDE_ID.match(candidate) and candidate.casefold() not in taken:
            taken.add(candidate.casefold())
            return candidate
    base = _slug(tvg_id or "") or _slug(name) or "channel"
    while True:
        candidate = f"{base}.{secrets.token_hex(3)}"
        if candidate.casefold() not in taken:
            taken.add(candidate.casefold())
            return candidate


def valid_guide_id(value: str) -> bool:
    return bool(_GUIDE_ID.match(value))


async def taken_guide_ids(session: AsyncSession) -> set[str]:
    return {g.casefold() for g in (await session.execute(select(Channel.guide_id))).scalars()}


# -- numbers ----------------------------------------------------------------------------------------


async def channel_numbers(session: AsyncSession) -> dict[int, int]:
    """Every channel's number by id (a few ints per channel: cheap even for a big lineup)."""
    return {cid: n for cid, n in (await session.execute(select(Channel.id, Channel.number))).all()}


async def apply_numbers(session: AsyncSession, moves: dict[int, int]) -> None:
    """Renumber channels in two set-based steps, so a swap never trips the unique constraint midway."""
    if not moves:
        return
    if max(moves.values()) > numbering.MAX_NUMBER:
        raise Invalid(
            f"Channel numbers cannot go above {numbering.MAX_NUMBER}",
            code="NUMBER_OUT_OF_RANGE",
            fields={"number": "out of range"},
        )
    table = cast(Table, Channel.__table__)
    now = utcnow()
    rows = [{"b_id": cid, "b_number": -number} for cid, number in moves.items()]
    stmt = (
        update(table)
        .where(table.c.id == bindparam("b_id"))
        .values(number=bindparam("b_number"), updated_at=now)
    )
    await session.execute(stmt, rows)
    await session.execute(update(table).where(table.c.number < 0).values(number=-table.c.number))


async def number_taken_error(session: AsyncSession, taken: list[int], field: str = "number") -> Conflict:
    holders = (
        await session.execute(select(Channel.number, Channel.name).where(Channel.number.in_(taken[:5])))
    ).all()
    who = ", ".join(f"{n} (“{name}”)" for n, name in sorted(holders))
    return Conflict(
        f"Channel number {who} is already taken. Add ?on_conflict=shift to move the channels in the way "
        "down, or choose free numbers.",
        code="NUMBER_TAKEN",
        fields={field: f"{taken[0]} is taken"},
    )


async def room_for(
    session: AsyncSession, channel_id: int | None, number: int, *, shift: bool
) -> dict[int, int]:
    """The moves that free `number` for `channel_id` (None for a new channel), or a 409 without shift."""
    numbers = await channel_numbers(session)
    others = {cid: n for cid, n in numbers.items() if cid != channel_id}
    taken = numbering.conflicts(others, number, 1)
    if taken and not shift:
        raise await number_taken_error(session, taken)
    return numbering.shift_down(others, number, 1) if taken else {}


# -- tags -------------------------------------------------------------------------------------------


async def ensure_tags(session: AsyncSession, names: Sequence[str]) -> dict[str, int]:
    """Tag ids by case-folded name, creating the tags that do not exist yet."""
    if not names:
        return {}
    wanted = {n.casefold(): n for n in names}
    found: dict[str, int] = {}
    for part in chunks(list(wanted)):
        rows = await session.execute(
            select(ChannelTag.id, ChannelTag.name).where(func.lower(ChannelTag.name).in_(part))
        )
        for tag_id, name in rows:
            found.setdefault(name.casefold(), tag_id)
    # lower() in SQL folds ASCII only on SQLite; compare the rest here.
    missing = [key for key in wanted if key not in found]
    if missing:
        for tag_id, name in (await session.execute(select(ChannelTag.id, ChannelTag.name))).all():
            if name.casefold() in missing:
                found.setdefault(name.casefold(), tag_id)
    new = [ChannelTag(name=wanted[key]) for key in wanted if key not in found]
    if new:
        session.add_all(new)
        await session.flush()
        found.update({tag.name.casefold(): tag.id for tag in new})
    return found


async def link_tags(session: AsyncSession, channel_ids: Sequence[int], tag_ids: Iterable[int]) -> int:
    """Add tags to channels, skipping links that exist; returns the links added."""
    tag_list = sorted(set(tag_ids))
    if not channel_ids or not tag_list:
        return 0
    existing: set[tuple[int, int]] = set()
    for part in chunks(list(channel_ids)):
        rows = await session.execute(
            select(channel_tag_link.c.channel_id, channel_tag_link.c.tag_id).where(
                channel_tag_link.c.channel_id.in_(part), channel_tag_link.c.tag_id.in_(tag_list)
            )
        )
        existing.update((c, t) for c, t in rows)
    rows_to_add = [
        {"channel_id": c, "tag_id": t} for c in channel_ids for t in tag_list if (c, t) not in existing
    ]
    for part in chunks(rows_to_add):
        await session.execute(insert(channel_tag_link), list(part))
    return len(rows_to_add)


async def unlink_tags(session: AsyncSession, channel_ids: Sequence[int], tag_ids: Iterable[int]) -> None:
    tag_list = list(tag_ids)
    for part in chunks(list(channel_ids)):
        stmt = delete(channel_tag_link).where(channel_tag_link.c.channel_id.in_(part))
        if tag_list:
            stmt = stmt.where(channel_tag_link.c.tag_id.in_(tag_list))
        await session.execute(stmt)


async def replace_tags(session: AsyncSession, channel_id: int, names: Sequence[str]) -> None:
    await unlink_tags(session, [channel_id], [])
    ids = await ensure_tags(session, clean_tags(names))
    await link_tags(session, [channel_id], ids.values())


async def delete_unused_tags(session: AsyncSession) -> None:
    """Tags no channel uses any more go away (TVHeadend tags follow them on the next publish)."""
    used = select(channel_tag_link.c.tag_id)
    await session.execute(delete(ChannelTag).where(ChannelTag.id.not_in(used)))


# -- sources ----------------------------------------------------------------------------------------


async def streams_by_id(session: AsyncSession, ids: Sequence[int]) -> dict[int, Stream]:
    found: dict[int, Stream] = {}
    for part in chunks(list(dict.fromkeys(ids))):
        for stream in (await session.execute(select(Stream).where(Stream.id.in_(part)))).scalars():
            found[stream.id] = stream
    return found


async def write_sources(session: AsyncSession, channel_id: int, items: Sequence[SourceIn]) -> None:
    """Make the channel's sources exactly `items`, in order, reusing rows so their TVH mux links survive."""
    current = list(
        (await session.execute(select(ChannelSource).where(ChannelSource.channel_id == channel_id))).scalars()
    )
    by_id = {s.id: s for s in current}
    by_stream = {s.stream_id: s for s in current if s.stream_id is not None}
    by_url = {s.url: s for s in current if s.url}
    streams = await streams_by_id(session, [i.stream_id for i in items if i.stream_id is not None])
    plan: list[tuple[ChannelSource | None, dict[str, Any]]] = []
    seen: set[tuple[str, Any]] = set()
    for index, item in enumerate(items):
        field = f"sources.{index}"
        if item.id is not None:
            row = by_id.get(item.id)
            if row is None:
                raise Invalid(
                    f"Source {item.id} is not one of this channel's sources",
                    code="SOURCE_NOT_FOUND",
                    fields={f"{field}.id": "not a source of this channel"},
                )
            key: tuple[str, Any] = ("id", row.id)
            values: dict[str, Any] = {}
        elif item.stream_id is not None:
            stream = streams.get(item.stream_id)
            if stream is None:
                raise Invalid(
                    f"There is no stream {item.stream_id}; it may have gone in a playlist refresh",
                    code="STREAM_NOT_FOUND",
                    fields={f"{field}.stream_id": "no such stream"},
                )
            row = by_stream.get(stream.id)
            key = ("stream", stream.id)
            values = {
                "stream_id": stream.id,
                "url": None,
                "label": stream.name[:500],
                "playlist_source_id": stream.source_id,
            }
        else:
            url = clean_source_url(item.url or "", f"{field}.url")
            row = by_url.get(url)
            key = ("url", url)
            values = {"stream_id": None, "url": url, "label": None, "playlist_source_id": None}
        if row is not None:
            key = ("id", row.id)
        if key in seen:
            raise Invalid(
                "The same source is listed twice", code="SOURCE_DUPLICATE", fields={field: "listed twice"}
            )
        seen.add(key)
        plan.append((row, values | {"enabled": item.enabled, "position": index}))
    kept = {row.id for row, _v in plan if row is not None}
    gone = [s.id for s in current if s.id not in kept]
    if gone:
        await session.execute(delete(ChannelSource).where(ChannelSource.id.in_(gone)))
    # Park kept rows on negative positions first, so reordering cannot collide on (channel, position).
    await session.execute(
        update(ChannelSource)
        .where(ChannelSource.channel_id == channel_id)
        .values(position=-ChannelSource.id - 1)
        .execution_options(synchronize_session=False)
    )
    now = utcnow()
    for row, values in plan:
        if row is not None:
            stmt = update(ChannelSource).where(ChannelSource.id == row.id).values(**values)
            await session.execute(stmt.execution_options(synchronize_session=False))
        else:
            session.add(ChannelSource(channel_id=channel_id, created_at=now, **values))
    await session.flush()


# -- guide mapping ----------------------------------------------------------------------------------


async def check_mapping(session: AsyncSession, epg_id: int | None, epg_channel_id: str | None) -> None:
    """A manual mapping names an existing guide and one of its channels, or nothing at all."""
    if epg_id is None and epg_channel_id is None:
        return
    if epg_id is None or not epg_channel_id:
        raise Invalid(
            "Give both the guide (epg_id) and its channel (epg_channel_id), or neither",
            code="EPG_MAPPING_INCOMPLETE",
            fields={"epg_id" if epg_id is None else "epg_channel_id": "required with the other"},
        )
    if await session.get(EpgSource, epg_id) is None:
        raise Invalid(f"There is no guide {epg_id}", code="EPG_NOT_FOUND", fields={"epg_id": "no such guide"})
    found = await session.execute(
        select(EpgChannel.id).where(EpgChannel.source_id == epg_id, EpgChannel.xmltv_id == epg_channel_id)
    )
    if found.first() is None:
        raise Invalid(
            f"The guide has no channel “{epg_channel_id}”",
            code="EPG_CHANNEL_NOT_FOUND",
            fields={"epg_channel_id": "not in that guide"},
        )


def mapping_exists() -> Any:
    """SQL condition: the channel's guide mapping points at a guide channel that exists."""
    return exists(
        select(EpgChannel.id).where(
            EpgChannel.source_id == Channel.epg_source_id, EpgChannel.xmltv_id == Channel.epg_channel_id
        )
    )


def missing_source_exists() -> Any:
    return exists(
        select(ChannelSource.id).where(
            ChannelSource.channel_id == Channel.id,
            ChannelSource.stream_id.is_(None),
            ChannelSource.url.is_(None),
        )
    )


# -- channel CRUD -----------------------------------------------------------------------------------


def load_options() -> list[Any]:
    """Everything a channel view needs, loaded in a fixed number of queries (no N+1)."""
    return [
        selectinload(Channel.sources).options(
            selectinload(ChannelSource.stream), selectinload(ChannelSource.playlist)
        ),
        selectinload(Channel.tags),
        selectinload(Channel.epg_source),
        selectinload(Channel.epg_channel),
    ]


async def get_channel(session: AsyncSession, channel_id: int) -> Channel:
    stmt = select(Channel).where(Channel.id == channel_id).options(*load_options())
    channel = (await session.execute(stmt.execution_options(populate_existing=True))).scalar_one_or_none()
    if channel is None:
        raise NotFound(f"There is no channel {channel_id}", code="CHANNEL_NOT_FOUND")
    return channel


def _filtered(stmt: Select[Any], filters: dict[str, Any]) -> Select[Any]:
    if filters.get("enabled") is not None:
        stmt = stmt.where(Channel.enabled.is_(bool(filters["enabled"])))
    if filters.get("tag"):
        tagged = select(channel_tag_link.c.channel_id).join(
            ChannelTag, ChannelTag.id == channel_tag_link.c.tag_id
        )
        stmt = stmt.where(Channel.id.in_(tagged.where(ChannelTag.name == filters["tag"])))
    if filters.get("unmapped") is not None:
        stmt = stmt.where(not_(mapping_exists()) if filters["unmapped"] else mapping_exists())
    if filters.get("problems"):
        broken_guide = and_(Channel.epg_channel_id.is_not(None), not_(mapping_exists()))
        no_source = not_(exists(select(ChannelSource.id).where(ChannelSource.channel_id == Channel.id)))
        stmt = stmt.where(or_(missing_source_exists(), broken_guide, no_source))
    query = str(filters.get("q") or "").strip()
    if query:
        escaped = query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        match = or_(
            func.lower(Channel.name).like(f"%{escaped}%", escape="\\"),
            func.lower(Channel.guide_id).like(f"%{escaped}%", escape="\\"),
        )
        if query.isdigit():
            match = or_(match, Channel.number == int(query))
        stmt = stmt.where(match)
    return stmt


SORTS = {
    "number": (Channel.number,),
    "-number": (Channel.number.desc(),),
    "name": (func.lower(Channel.name), Channel.number),
    "-name": (func.lower(Channel.name).desc(), Channel.number),
    "updated": (Channel.updated_at.desc(), Channel.number),
}


async def list_channels(
    session: AsyncSession, filters: dict[str, Any], *, limit: int, offset: int, sort: str = "number"
) -> tuple[list[Channel], int]:
    if sort not in SORTS:
        raise Invalid(f"sort must be one of {', '.join(SORTS)}", fields={"sort": "unknown sort"})
    total = int((await session.execute(_filtered(select(func.count(Channel.id)), filters))).scalar_one())
    stmt = _filtered(select(Channel), filters).order_by(*SORTS[sort]).limit(limit).offset(offset)
    rows = await session.execute(stmt.options(*load_options()).execution_options(populate_existing=True))
    return list(rows.scalars()), total


async def create_channel(session: AsyncSession, data: ChannelCreateIn, *, shift: bool) -> int:
    name = clean_name(data.name)
    tags = clean_tags(data.tags)
    logo = clean_logo_url(data.logo_url)
    await check_mapping(session, data.epg_id, data.epg_channel_id)
    if data.number is None:
        number = numbering.next_number((await channel_numbers(session)).values())
    else:
        number = data.number
        await apply_numbers(session, await room_for(session, None, number, shift=shift))
    first_stream = next((s.stream_id for s in data.sources if s.stream_id is not None), None)
    streams = await streams_by_id(session, [first_stream] if first_stream else [])
    tvg_id = streams[first_stream].tvg_id if first_stream in streams else None
    now = utcnow()
    channel = Channel(
        name=name,
        number=number,
        enabled=data.enabled,
        logo_url=logo or (streams[first_stream].tvg_logo if first_stream in streams else None),
        epg_source_id=data.epg_id,
        epg_channel_id=data.epg_channel_id,
        epg_match_method="manual" if data.epg_id is not None else None,
        guide_offset_minutes=data.guide_offset_minutes,
        guide_id=make_guide_id(tvg_id, name, await taken_guide_ids(session)),
        created_at=now,
        updated_at=now,
    )
    session.add(channel)
    await session.flush()
    await write_sources(session, channel.id, data.sources)
    await replace_tags(session, channel.id, tags)
    return channel.id


async def update_channel(
    session: AsyncSession, channel_id: int, data: ChannelPatchIn, *, shift: bool
) -> None:
    channel = await session.get(Channel, channel_id)
    if channel is None:
        raise NotFound(f"There is no channel {channel_id}", code="CHANNEL_NOT_FOUND")
    given = data.model_fields_set
    for field in ("number", "enabled", "guide_offset_minutes"):
        if field in given and getattr(data, field) is None:
            raise Invalid(f"{field} cannot be null", fields={field: "required"})
    if "name" in given:
        channel.name = clean_name(data.name or "")
    if "logo_url" in given:
        channel.logo_url = clean_logo_url(data.logo_url)
    if data.enabled is not None:
        channel.enabled = data.enabled
    if data.guide_offset_minutes is not None:
        channel.guide_offset_minutes = data.guide_offset_minutes
    if given & {"epg_id", "epg_channel_id"}:
        epg_id = data.epg_id if "epg_id" in given else channel.epg_source_id
        epg_channel_id = data.epg_channel_id if "epg_channel_id" in given else channel.epg_channel_id
        if (epg_id, epg_channel_id) != (channel.epg_source_id, channel.epg_channel_id):
            await check_mapping(session, epg_id, epg_channel_id)
            channel.epg_source_id, channel.epg_channel_id = epg_id, epg_channel_id
            channel.epg_match_method = "manual" if epg_id is not None else None
            channel.epg_match_score = None
    channel.updated_at = utcnow()
    await session.flush()
    if data.number is not None and data.number != channel.number:
        moves = await room_for(session, channel_id, data.number, shift=shift)
        await apply_numbers(session, moves | {channel_id: data.number})
    if data.tags is not None:
        await replace_tags(session, channel_id, data.tags)
        await delete_unused_tags(session)
    if data.sources is not None:
        await write_sources(session, channel_id, data.sources)


async def delete_channels(session: AsyncSession, ids: Sequence[int]) -> int:
    """Delete channels; their sources and tag links go with them (ON DELETE CASCADE)."""
    deleted = 0
    for part in chunks(list(ids)):
        result = await session.execute(delete(Channel).where(Channel.id.in_(part)))
        deleted += int(result.rowcount or 0)  # type: ignore[attr-defined]
    return deleted


# -- for other domains ------------------------------------------------------------------------------


async def list_enabled_channels(session: AsyncSession) -> list[Channel]:
    """Enabled channels by number, with sources (stream and playlist), tags and guide channel loaded.

    Relationships are lazy="raise": only what is loaded here can be touched, so there is no N+1.
    Use `playable_sources(channel)` for the sources outputs may play.
    """
    stmt = select(Channel).where(Channel.enabled.is_(True)).order_by(Channel.number).options(*load_options())
    return list((await session.execute(stmt)).scalars())


def playable_sources(channel: Channel) -> list[ChannelSource]:
    """Enabled sources that can play, in failover order: manual URLs and streams of enabled playlists."""
    out = []
    for source in channel.sources:
        if not source.enabled or source.missing:
            continue
        if source.stream_id is not None and (
            source.stream is None or (source.playlist is not None and not source.playlist.enabled)
        ):
            continue
        out.append(source)
    return out


async def channel_guide_id(session: AsyncSession, channel_id: int) -> str:
    guide_id = (
        await session.execute(select(Channel.guide_id).where(Channel.id == channel_id))
    ).scalar_one_or_none()
    if guide_id is None:
        raise NotFound(f"There is no channel {channel_id}", code="CHANNEL_NOT_FOUND")
    return guide_id


async def set_tvh_uuid(session: AsyncSession, channel_id: int, uuid: str | None) -> None:
    """Record the TVHeadend channel of a channel (updated_at is left alone: this is not a lineup edit)."""
    await session.execute(update(Channel).where(Channel.id == channel_id).values(tvh_uuid=uuid))


async def set_source_tvh_mux(session: AsyncSession, source_id: int, uuid: str | None) -> None:
    await session.execute(
        update(ChannelSource).where(ChannelSource.id == source_id).values(tvh_mux_uuid=uuid)
    )


async def set_tag_tvh_uuid(session: AsyncSession, tag_id: int, uuid: str | None) -> None:
    await session.execute(update(ChannelTag).where(ChannelTag.id == tag_id).values(tvh_uuid=uuid))


async def lineup_changed(broker: Any, *, logos: bool = False) -> None:
    """After a committed lineup change: queue the guide build and the TVHeadend publish, if they exist.

    The publish job debounces itself (it waits until the lineup has been quiet for its setting), so
    a burst of edits makes one publish; the broker's dedupe key keeps one of each in the queue.
    """
    names = [*FOLLOW_UP_JOBS, *((CACHE_LOGOS,) if logos else ())]
    for name in names:
        if name in broker.jobs:
            await broker.enqueue(name, key=name, requested_by="channels")
