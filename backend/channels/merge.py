"""Merging duplicate channels: same tvg-id or same normalised name become one channel with several sources."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.channels import bulk, service
from backend.channels.matching import normalise_name
from backend.channels.models import Channel, ChannelSource, channel_tag_link
from backend.db import utcnow


class _Groups:
    """Union-find over channel ids, remembering why two channels were joined."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}
        self.reason: dict[int, str] = {}

    def find(self, item: int) -> int:
        self.parent.setdefault(item, item)
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    def join(self, items: Sequence[int], reason: str) -> None:
        roots = [self.find(i) for i in items]
        for root in roots[1:]:
            if root != roots[0]:
                self.parent[root] = roots[0]
                self.reason.setdefault(roots[0], reason)


def _name_keys(channels: Sequence[Any]) -> dict[tuple[str, ...], list[int]]:
    """Channels by normalised name; an unprefixed name joins the one country variant there is, if only one."""
    norms = {c.id: normalise_name(c.name) for c in channels}
    countries: dict[tuple[str, str], set[str]] = {}
    for norm in norms.values():
        if norm.plain and norm.country:
            countries.setdefault((norm.plain, norm.timeshift), set()).add(norm.country)
    keys: dict[tuple[str, ...], list[int]] = {}
    for cid, norm in norms.items():
        if not norm.plain:
            continue
        variants = countries.get((norm.plain, norm.timeshift), set())
        country = norm.country
        if not country and len(variants) > 1:
            continue
        if not country and variants:
            country = next(iter(variants))
        keys.setdefault((norm.plain, norm.timeshift, country), []).append(cid)
    return keys


async def find_duplicates(
    session: AsyncSession, ids: Sequence[int] | None, by: Sequence[str]
) -> list[dict[str, Any]]:
    stmt = select(Channel.id, Channel.name, Channel.number).order_by(Channel.number)
    if ids is not None:
        ids = await bulk.existing_ids(session, ids)
        channels = [
            r
            for part in service.chunks(list(ids))
            for r in await session.execute(stmt.where(Channel.id.in_(part)))
        ]
    else:
        channels = list(await session.execute(stmt))
    groups = _Groups()
    if "tvg_id" in by:
        by_id: dict[str, list[int]] = {}
        for row in await bulk.source_streams(session, [c.id for c in channels] if ids is not None else None):
            if row.tvg_id and row.tvg_id.strip():
                by_id.setdefault(row.tvg_id.strip().casefold(), []).append(row.channel_id)
        for tvg_id, members in by_id.items():
            if len(set(members)) > 1:
                groups.join(sorted(set(members)), f"same tvg-id “{tvg_id}”")
    if "name" in by:
        for key, members in _name_keys(channels).items():
            if len(members) > 1:
                groups.join(members, f"same name “{key[0]}”" + (f" ({key[2].upper()})" if key[2] else ""))
    info = {c.id: c for c in channels}
    members_of: dict[int, list[int]] = {}
    for cid in info:
        if cid in groups.parent:
            members_of.setdefault(groups.find(cid), []).append(cid)
    out = []
    for root, members in members_of.items():
        if len(members) < 2:
            continue
        members.sort(key=lambda c: info[c].number)
        keep, rest = members[0], members[1:]
        out.append(
            {
                "keep": keep,
                "keep_name": info[keep].name,
                "merge": rest,
                "merge_names": [info[c].name for c in rest],
                "reason": groups.reason.get(root, "duplicates"),
            }
        )
    out.sort(key=lambda g: info[g["keep"]].number)
    return out


def _plan_group(
    group: dict[str, Any], sources: Sequence[Any], number: dict[int, int]
) -> tuple[list[dict[str, int]], list[int]]:
    """Source moves onto the kept channel, in failover order, and the duplicate source rows to drop."""
    keep, members = group["keep"], {group["keep"], *group["merge"]}
    mine = [s for s in sources if s.channel_id in members]
    # Failover order follows playlist priority; manual URLs go after the playlists' streams.
    mine.sort(
        key=lambda s: (
            s.playlist_position is None,
            s.playlist_position or 0,
            s.playlist_id or 0,
            number[s.channel_id],
            s.position,
        )
    )
    moves: list[dict[str, int]] = []
    drop: list[int] = []
    seen: set[int] = set()
    for source in mine:
        if source.stream_id is not None and source.stream_id in seen:
            drop.append(source.id)
            continue
        if source.stream_id is not None:
            seen.add(source.stream_id)
        moves.append({"b_id": source.id, "b_channel": keep, "b_position": len(moves)})
    return moves, drop


def _fold_into(kept: Channel, others: Sequence[Channel]) -> None:
    """The kept channel takes a guide mapping and a logo from a duplicate when it has none."""
    for other in others:
        if kept.epg_channel_id is None and other.epg_channel_id is not None:
            kept.epg_source_id, kept.epg_channel_id = other.epg_source_id, other.epg_channel_id
            kept.epg_match_method, kept.epg_match_score = other.epg_match_method, other.epg_match_score
        kept.logo_url = kept.logo_url or other.logo_url
        kept.enabled = kept.enabled or other.enabled
    kept.updated_at = utcnow()


async def merge_duplicates(
    session: AsyncSession, ids: Sequence[int] | None, by: Sequence[str], *, dry_run: bool
) -> dict[str, Any]:
    """Find duplicate sets; unless dry_run, fold each into its lowest-numbered channel."""
    found = await find_duplicates(session, ids, by)
    if dry_run or not found:
        return {"groups": found, "merged": 0, "dry_run": dry_run}
    everyone = [c for g in found for c in (g["keep"], *g["merge"])]
    channels: dict[int, Channel] = {}
    links: list[Any] = []
    for part in service.chunks(everyone):
        channels.update(
            (c.id, c) for c in (await session.execute(select(Channel).where(Channel.id.in_(part)))).scalars()
        )
        links.extend(
            await session.execute(select(channel_tag_link).where(channel_tag_link.c.channel_id.in_(part)))
        )
    sources = await bulk.source_streams(session, everyone)
    number = {cid: c.number for cid, c in channels.items()}
    moves: list[dict[str, int]] = []
    drop: list[int] = []
    pairs: set[tuple[int, int]] = set()
    for group in found:
        group_moves, group_drop = _plan_group(group, sources, number)
        moves += group_moves
        drop += group_drop
        members = {group["keep"], *group["merge"]}
        pairs.update((group["keep"], link.tag_id) for link in links if link.channel_id in members)
        _fold_into(channels[group["keep"]], [channels[c] for c in group["merge"]])
    await session.flush()
    for part in service.chunks(drop):
        await session.execute(delete(ChannelSource).where(ChannelSource.id.in_(part)))
    await bulk.move_sources(session, moves)
    missing_links = await bulk.link_pairs_missing(session, pairs)
    if missing_links:
        await session.execute(insert(channel_tag_link), missing_links)
    merged = await service.delete_channels(session, [c for g in found for c in g["merge"]])
    return {"groups": found, "merged": merged, "dry_run": False}
