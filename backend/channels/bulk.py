"""Bulk lineup work in set-based SQL: channels from streams or groups, enable, tag, renumber, delete, merge."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from backend.channels import numbering, service
from backend.channels.matching import normalise_name
from backend.channels.models import Channel, ChannelSource, ChannelTag, channel_tag_link
from backend.channels.schemas import CreateOptions
from backend.db import utcnow
from backend.errors import Invalid, NotFound
from backend.playlists.models import PlaylistSource, Stream

_STREAM_COLUMNS = (
    Stream.id,
    Stream.source_id,
    Stream.name,
    Stream.tvg_id,
    Stream.tvg_logo,
    Stream.group_title,
)


@dataclass(slots=True)
class _Spec:
    """One channel to create: the streams that become its sources, first one first."""

    name: str
    tvg_id: str | None
    logo: str | None
    group: str | None
    streams: list[Any] = field(default_factory=list)


def duplicate_key(name: str, tvg_id: str | None) -> tuple[str, ...]:
    """Two streams are the same channel when their tvg-ids match, else when their names do once normalised.

    The timeshift (+1) and an explicit country stay part of the name key, so "BBC One +1" and
    "US: Discovery" never merge with "BBC One" and "UK: Discovery".
    """
    if tvg_id and tvg_id.strip():
        return ("id", tvg_id.strip().casefold())
    norm = normalise_name(name)
    return ("name", norm.plain, norm.timeshift, norm.country)


async def existing_stream_ids(session: AsyncSession, stream_ids: Sequence[int]) -> set[int]:
    found: set[int] = set()
    for part in service.chunks(list(stream_ids)):
        rows = await session.execute(select(ChannelSource.stream_id).where(ChannelSource.stream_id.in_(part)))
        found.update(r for r in rows.scalars() if r is not None)
    return found


async def streams_for_ids(session: AsyncSession, stream_ids: Sequence[int]) -> list[Any]:
    """Stream rows in the order asked for; unknown ids are a 400 naming them."""
    found: dict[int, Any] = {}
    for part in service.chunks(list(dict.fromkeys(stream_ids))):
        for row in await session.execute(select(*_STREAM_COLUMNS).where(Stream.id.in_(part))):
            found[row.id] = row
    missing = [i for i in stream_ids if i not in found]
    if missing:
        raise Invalid(
            f"{len(missing)} of the streams do not exist (e.g. {missing[0]}); the playlist may have been refreshed",
            code="STREAM_NOT_FOUND",
            fields={"stream_ids": f"unknown stream {missing[0]}"},
        )
    return [found[i] for i in dict.fromkeys(stream_ids)]


async def streams_for_groups(
    session: AsyncSession, playlist_id: int, groups: Sequence[str], include_vod: bool
) -> list[Any]:
    """The streams of the chosen groups, group by group in the order given, each in playlist order."""
    if await session.get(PlaylistSource, playlist_id) is None:
        raise NotFound(f"There is no playlist {playlist_id}", code="PLAYLIST_NOT_FOUND")
    order = {g: i for i, g in enumerate(dict.fromkeys(groups))}
    stmt = select(*_STREAM_COLUMNS, Stream.line_no).where(Stream.source_id == playlist_id)
    conditions: list[Any] = []
    named = [g for g in order if g]
    if named:
        conditions.append(Stream.group_title.in_(named))
    if "" in order:
        conditions += [Stream.group_title.is_(None), Stream.group_title == ""]
    stmt = stmt.where(or_(*conditions))
    if not include_vod:
        stmt = stmt.where(Stream.is_vod.is_(False))
    rows = list(await session.execute(stmt))
    rows.sort(key=lambda r: (order.get(r.group_title or "", len(order)), r.line_no or 0, r.id))
    return rows


def _specs(rows: Sequence[Any], merge: bool) -> list[_Spec]:
    specs: list[_Spec] = []
    by_key: dict[tuple[str, ...], _Spec] = {}
    for row in rows:
        key = duplicate_key(row.name, row.tvg_id) if merge else ("row", str(row.id))
        spec = by_key.get(key)
        if spec is None:
            spec = _Spec(row.name, row.tvg_id, row.tvg_logo, row.group_title)
            by_key[key] = spec
            specs.append(spec)
        spec.streams.append(row)
        spec.logo = spec.logo or row.tvg_logo
    return specs


async def create_from_streams(
    session: AsyncSession, rows: Sequence[Any], options: CreateOptions
) -> dict[str, Any]:
    """One channel per stream (or per duplicate set), numbered from the start number, skipping taken ones."""
    skipped = 0
    if options.skip_existing:
        existing = await existing_stream_ids(session, [r.id for r in rows])
        skipped = sum(1 for r in rows if r.id in existing)
        rows = [r for r in rows if r.id not in existing]
    specs = _specs(rows, options.merge_duplicates)
    result: dict[str, Any] = {
        "created": len(specs),
        "skipped_existing": skipped,
        "merged": len(rows) - len(specs),
        "first_number": None,
        "last_number": None,
        "channel_ids": [],
    }
    if not specs:
        return result
    numbers = await service.channel_numbers(session)
    start = options.start_number or numbering.next_number(numbers.values())
    allocated = numbering.allocate(set(numbers.values()), start, len(specs))
    if allocated[-1] > numbering.MAX_NUMBER:
        raise Invalid(
            f"{len(specs)} channels from {start} would go past channel number {numbering.MAX_NUMBER}",
            code="NUMBER_OUT_OF_RANGE",
            fields={"start_number": "too high"},
        )
    taken_ids = await service.taken_guide_ids(session)
    now = utcnow()
    channel_rows = []
    for spec, number in zip(specs, allocated, strict=True):
        name = " ".join(service._CONTROL.sub(" ", spec.name).split())[: service.MAX_NAME] or "Channel"
        channel_rows.append(
            {
                "name": name,
                "number": number,
                "enabled": options.enabled,
                "logo_url": spec.logo,
                "guide_offset_minutes": 0,
                "guide_id": service.make_guide_id(spec.tvg_id, name, taken_ids),
                "created_at": now,
                "updated_at": now,
            }
        )
    ids: list[int] = []
    for part in service.chunks(channel_rows, 1000):
        stmt = insert(Channel).returning(Channel.id, sort_by_parameter_order=True)
        ids.extend((await session.execute(stmt, list(part))).scalars())
    source_rows = [
        {
            "channel_id": cid,
            "position": position,
            "stream_id": row.id,
            "label": row.name[:500],
            "playlist_source_id": row.source_id,
            "enabled": True,
            "created_at": now,
        }
        for cid, spec in zip(ids, specs, strict=True)
        for position, row in enumerate(spec.streams)
    ]
    for part in service.chunks(source_rows, 1000):
        await session.execute(insert(ChannelSource), list(part))
    await _tag_new(session, ids, specs, options)
    result.update(first_number=allocated[0], last_number=allocated[-1], channel_ids=ids)
    return result


async def _tag_new(
    session: AsyncSession, ids: Sequence[int], specs: Sequence[_Spec], options: CreateOptions
) -> None:
    common = service.clean_tags(options.tags)
    groups: list[str] = []
    if options.tag_with_group:
        for spec in specs:
            if spec.group and spec.group.strip():
                groups.append(spec.group)
    cleaned = {g: service.clean_tags([g])[0] for g in dict.fromkeys(groups)}
    tag_ids = await service.ensure_tags(session, list(dict.fromkeys([*common, *cleaned.values()])))
    links = [(cid, tag_ids[name.casefold()]) for cid in ids for name in common]
    if options.tag_with_group:
        links += [
            (cid, tag_ids[cleaned[spec.group].casefold()])
            for cid, spec in zip(ids, specs, strict=True)
            if spec.group in cleaned
        ]
    rows = [{"channel_id": c, "tag_id": t} for c, t in dict.fromkeys(links)]
    for part in service.chunks(rows, 1000):
        await session.execute(insert(channel_tag_link), list(part))


async def existing_ids(session: AsyncSession, ids: Sequence[int]) -> list[int]:
    """The ids that are channels, in the order given; unknown ones are a 404."""
    found: set[int] = set()
    for part in service.chunks(list(dict.fromkeys(ids))):
        found.update((await session.execute(select(Channel.id).where(Channel.id.in_(part)))).scalars())
    missing = [i for i in ids if i not in found]
    if missing:
        raise NotFound(f"There is no channel {missing[0]}", code="CHANNEL_NOT_FOUND")
    return list(dict.fromkeys(ids))


async def set_enabled(session: AsyncSession, ids: Sequence[int], enabled: bool) -> int:
    ids = await existing_ids(session, ids)
    changed = 0
    now = utcnow()
    for part in service.chunks(ids):
        stmt = (
            update(Channel)
            .where(Channel.id.in_(part), Channel.enabled.is_not(enabled))
            .values(enabled=enabled, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        changed += int((await session.execute(stmt)).rowcount or 0)  # type: ignore[attr-defined]
    return changed


async def tag(session: AsyncSession, ids: Sequence[int], add: Sequence[str], remove: Sequence[str]) -> int:
    ids = await existing_ids(session, ids)
    added = 0
    if add:
        tag_ids = await service.ensure_tags(session, service.clean_tags(add, "add"))
        added = await service.link_tags(session, ids, tag_ids.values())
    if remove:
        names = {n.casefold() for n in service.clean_tags(remove, "remove")}
        rows = (await session.execute(select(ChannelTag.id, ChannelTag.name))).all()
        drop = [tid for tid, name in rows if name.casefold() in names]
        if drop:
            await service.unlink_tags(session, ids, drop)
    await touch(session, ids)
    await service.delete_unused_tags(session)
    return added


async def touch(session: AsyncSession, ids: Sequence[int]) -> None:
    now = utcnow()
    for part in service.chunks(list(ids)):
        await session.execute(
            update(Channel)
            .where(Channel.id.in_(part))
            .values(updated_at=now)
            .execution_options(synchronize_session=False)
        )


async def renumber(session: AsyncSession, ids: Sequence[int], start: int, *, shift: bool) -> int:
    """Give the channels start, start+1, ... in the order given; channels in the way shift or it is a 409."""
    ids = await existing_ids(session, ids)
    if not numbering.fits(start, len(ids)):
        raise Invalid(
            "Those numbers go past the highest channel number",
            code="NUMBER_OUT_OF_RANGE",
            fields={"start_number": "too high"},
        )
    numbers = await service.channel_numbers(session)
    moves, taken = numbering.place_block(numbers, ids, start, shift=shift)
    if taken:
        raise await service.number_taken_error(session, taken, "start_number")
    await service.apply_numbers(session, moves)
    return len(moves)


async def reorder(session: AsyncSession, ids: Sequence[int]) -> int:
    """The channels keep their set of numbers but take them in the order given (drag and drop)."""
    ids = await existing_ids(session, ids)
    moves = numbering.reorder(await service.channel_numbers(session), ids)
    await service.apply_numbers(session, moves)
    return len(moves)


async def delete(session: AsyncSession, ids: Sequence[int]) -> int:
    deleted = await service.delete_channels(session, await existing_ids(session, ids))
    await service.delete_unused_tags(session)
    return deleted


async def source_streams(session: AsyncSession, channel_ids: Sequence[int] | None) -> list[Any]:
    """(channel id, source id, position, stream tvg-id, playlist position, playlist id) for merging."""
    stmt = (
        select(
            ChannelSource.channel_id,
            ChannelSource.id,
            ChannelSource.position,
            ChannelSource.stream_id,
            Stream.tvg_id,
            PlaylistSource.position.label("playlist_position"),
            PlaylistSource.id.label("playlist_id"),
        )
        .outerjoin(Stream, Stream.id == ChannelSource.stream_id)
        .outerjoin(PlaylistSource, PlaylistSource.id == ChannelSource.playlist_source_id)
    )
    if channel_ids is None:
        return list(await session.execute(stmt))
    rows: list[Any] = []
    for part in service.chunks(list(channel_ids)):
        rows.extend(await session.execute(stmt.where(ChannelSource.channel_id.in_(part))))
    return rows


async def move_sources(session: AsyncSession, moves: list[dict[str, int]]) -> None:
    """Re-home source rows (channel and position) keeping their ids, so TVHeadend mux links survive."""
    if not moves:
        return
    ids = [m["b_id"] for m in moves]
    for part in service.chunks(ids):
        await session.execute(
            update(ChannelSource)
            .where(ChannelSource.id.in_(part))
            .values(position=-ChannelSource.id - 1)
            .execution_options(synchronize_session=False)
        )
    table = cast(Table, ChannelSource.__table__)
    stmt = update(table).where(table.c.id == bindparam("b_id"))
    await session.execute(
        stmt.values(channel_id=bindparam("b_channel"), position=bindparam("b_position")), moves
    )


async def link_pairs_missing(session: AsyncSession, pairs: set[tuple[int, int]]) -> list[dict[str, int]]:
    existing: set[tuple[int, int]] = set()
    items = sorted(pairs)
    for part in service.chunks(items, 500):
        rows = await session.execute(
            select(channel_tag_link.c.channel_id, channel_tag_link.c.tag_id).where(
                tuple_(channel_tag_link.c.channel_id, channel_tag_link.c.tag_id).in_(list(part))
            )
        )
        existing.update((c, t) for c, t in rows)
    return [{"channel_id": c, "tag_id": t} for c, t in items if (c, t) not in existing]
