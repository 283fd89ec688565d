"""Guide matching for the lineup: gather channels and guide channels, match in a child process, apply."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, bindparam, not_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from backend.channels import bulk, service
from backend.channels.matching import normalise_name
from backend.channels.models import Channel, ChannelSource
from backend.db import Database, utcnow
from backend.epg.models import EpgChannel, EpgSource
from backend.errors import Invalid
from backend.playlists.models import Stream
from backend.tasks.offload import run_blocking, run_in_subprocess

MATCHER = "backend.channels.matching:match_file"
#: Seconds the matching child may take (5,000 channels take a few seconds).
TIMEOUT = 300.0
#: Rows turned into objects between two awaits while reading thousands of channels.
PARTITION = 500


def _country_attr(extra: Any) -> str | None:
    """tvg-country from a stream's extra attributes, wherever the importer put them."""
    if not isinstance(extra, dict):
        return None
    for scope in (extra, extra.get("attrs"), extra.get("attributes")):
        if isinstance(scope, dict):
            value = scope.get("tvg-country")
            if isinstance(value, str) and value.strip():
                return value.strip().split(",")[0].strip()
    return None


async def _channel_rows(session: AsyncSession, channel_ids: Sequence[int] | None) -> list[Any]:
    stmt = select(
        Channel.id,
        Channel.name,
        Channel.number,
        Channel.logo_url,
        Channel.epg_source_id,
        Channel.epg_channel_id,
    )
    if channel_ids is None:
        unmapped = stmt.where(not_(service.mapping_exists())).order_by(Channel.number)
        return [row async for row in _streamed(session, unmapped)]
    ids = await bulk.existing_ids(session, channel_ids)
    rows: dict[int, Any] = {}
    for part in service.chunks(ids):
        rows.update((r.id, r) for r in await session.execute(stmt.where(Channel.id.in_(part))))
    return [rows[i] for i in ids]


async def _streamed(session: AsyncSession, stmt: Any) -> AsyncIterator[Any]:
    """Rows in partitions, so a big result is turned into objects a slice at a time between awaits."""
    result = await session.stream(stmt)
    async for part in result.partitions(PARTITION):
        for row in part:
            yield row


async def _sources_by_channel(
    session: AsyncSession, batch: set[int]
) -> tuple[dict[int, list[Any]], list[dict[str, Any]]]:
    """The batch's stream sources (names, ids, hints) and the other channels' tvg-ids (the context)."""
    stmt = (
        select(
            ChannelSource.channel_id,
            Stream.name,
            Stream.tvg_name,
            Stream.tvg_id,
            Stream.tvg_logo,
            Stream.group_title,
            Stream.extra,
        )
        .join(Stream, Stream.id == ChannelSource.stream_id)
        .order_by(ChannelSource.channel_id, ChannelSource.position)
    )
    mine: dict[int, list[Any]] = {}
    others: dict[int, list[str]] = {}
    # One pass over every stream source: a long IN list would cost more than the rows it saves.
    async for row in _streamed(session, stmt):
        if row.channel_id in batch:
            mine.setdefault(row.channel_id, []).append(row)
        elif row.tvg_id:
            others.setdefault(row.channel_id, []).append(row.tvg_id)
    return mine, [{"tvg_ids": list(dict.fromkeys(ids))} for ids in others.values()]


async def gather(
    session: AsyncSession, channel_ids: Sequence[int] | None
) -> tuple[list[Any], list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(channel rows, matcher channels, guide channels, context) for one matching run."""
    rows = await _channel_rows(session, channel_ids)
    sources, context = await _sources_by_channel(session, {r.id for r in rows})
    channels = []
    for index, row in enumerate(rows):
        if index % PARTITION == 0:
            await asyncio.sleep(0)
        mine = sources.get(row.id, [])
        names = [row.name, *(s.tvg_name for s in mine if s.tvg_name), *(s.name for s in mine)]
        channels.append(
            {
                "id": row.id,
                "names": list(dict.fromkeys(names)),
                "tvg_ids": list(dict.fromkeys(s.tvg_id for s in mine if s.tvg_id)),
                "hints": [s.group_title for s in mine if s.group_title],
                "countries": [c for c in (_country_attr(s.extra) for s in mine) if c],
                "logo": row.logo_url or next((s.tvg_logo for s in mine if s.tvg_logo), None),
            }
        )
    guide_rows = _streamed(
        session,
        select(
            EpgChannel.source_id,
            EpgChannel.xmltv_id,
            EpgChannel.display_names,
            EpgChannel.icon,
            EpgChannel.programme_count,
        )
        .join(EpgSource, EpgSource.id == EpgChannel.source_id)
        .where(EpgSource.enabled.is_(True))
        .order_by(EpgChannel.source_id, EpgChannel.id),
    )
    guide = [
        {
            "epg_id": source_id,
            "xmltv_id": xmltv_id,
            "names": [str(n[0]) for n in names or [] if n and n[0]],
            "icon": icon,
            "programmes": programmes or 0,
        }
        async for source_id, xmltv_id, names, icon, programmes in guide_rows
    ]
    return rows, channels, guide, context


async def source_names(session: AsyncSession) -> dict[int, str]:
    return {i: n for i, n in (await session.execute(select(EpgSource.id, EpgSource.name))).all()}


def _write_json(path: Path, document: Any) -> None:
    # json.dump writes in pieces, so the loop gets the GIL back between them while this thread works.
    with path.open("w", encoding="utf-8") as f:
        json.dump(document, f, ensure_ascii=False)


def _read_json_lines(path: Path) -> list[Any]:
    # A line at a time: json.load of the whole file would hold the GIL, and stall the event loop, for
    # tens of milliseconds on a 5,000-channel lineup (3 MB of results).
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


async def run_matching(
    db: Database, work_dir: Path, channel_ids: Sequence[int] | None, threshold: int
) -> tuple[list[Any], list[dict[str, Any]], dict[int, str], int, float]:
    """Match in a child process (the loop stays free); returns rows, results, guide names, guide size, seconds."""
    started = time.perf_counter()
    async with db.session() as session:
        rows, channels, guide, context = await gather(session, channel_ids)
        names = await source_names(session)
    if not (channels and guide):
        results = [{"channel_id": c["id"], "suggestion": None, "alternatives": []} for c in channels]
        return rows, results, names, len(guide), time.perf_counter() - started
    await run_blocking(lambda: work_dir.mkdir(parents=True, exist_ok=True))
    job = work_dir / f"match-{uuid.uuid4().hex}.json"
    out = job.with_suffix(".out.json")
    try:
        document = {"channels": channels, "guide": guide, "threshold": threshold, "context": context}
        await run_blocking(_write_json, job, document)
        await run_in_subprocess(MATCHER, str(job), str(out), timeout=TIMEOUT)
        results = await run_blocking(_read_json_lines, out)
    finally:
        for path in (job, out):
            await run_blocking(lambda p=path: p.unlink(missing_ok=True))
    return rows, results, names, len(guide), time.perf_counter() - started


def report(
    rows: Sequence[Any], results: Sequence[dict[str, Any]], names: dict[int, str]
) -> list[dict[str, Any]]:
    by_id = {r.id: r for r in rows}
    items = []
    for result in results:
        row = by_id[result["channel_id"]]

        def named(s: dict[str, Any] | None) -> dict[str, Any] | None:
            return None if s is None else s | {"epg_source_name": names.get(s["epg_id"], "")}

        items.append(
            {
                "channel_id": row.id,
                "channel_name": row.name,
                "number": row.number,
                "current_epg_id": row.epg_source_id,
                "current_epg_channel_id": row.epg_channel_id,
                "suggestion": named(result["suggestion"]),
                "alternatives": [named(a) for a in result["alternatives"]],
            }
        )
    return items


async def apply_mappings(session: AsyncSession, mappings: Sequence[dict[str, Any]]) -> int:
    """Write guide mappings set-based; every (guide, channel id) pair must exist (null pair clears)."""
    await bulk.existing_ids(session, [m["channel_id"] for m in mappings])
    wanted = {(m["epg_id"], m["epg_channel_id"]) for m in mappings if m["epg_id"] is not None}
    for index, m in enumerate(mappings):
        if (m["epg_id"] is None) != (m["epg_channel_id"] is None):
            raise Invalid(
                "Give both epg_id and epg_channel_id, or null for both to clear",
                code="EPG_MAPPING_INCOMPLETE",
                fields={f"mappings.{index}": "incomplete"},
            )
    found: set[tuple[int, str]] = set()
    by_source: dict[int, list[str]] = {}
    for epg_id, xmltv_id in wanted:
        by_source.setdefault(epg_id, []).append(xmltv_id)
    for epg_id, xmltv_ids in by_source.items():
        for part in service.chunks(xmltv_ids):
            rows = await session.execute(
                select(EpgChannel.xmltv_id).where(
                    EpgChannel.source_id == epg_id, EpgChannel.xmltv_id.in_(part)
                )
            )
            found.update((epg_id, x) for x in rows.scalars())
    for index, m in enumerate(mappings):
        if m["epg_id"] is not None and (m["epg_id"], m["epg_channel_id"]) not in found:
            raise Invalid(
                f"The guide has no channel “{m['epg_channel_id']}” (it may have gone in a refresh)",
                code="EPG_CHANNEL_NOT_FOUND",
                fields={f"mappings.{index}.epg_channel_id": "not in that guide"},
            )
    now = utcnow()
    table = cast(Table, Channel.__table__)
    stmt = (
        update(table)
        .where(table.c.id == bindparam("b_id"))
        .values(
            epg_source_id=bindparam("b_epg"),
            epg_channel_id=bindparam("b_xmltv"),
            epg_match_method=bindparam("b_method"),
            epg_match_score=bindparam("b_score"),
            updated_at=now,
        )
    )
    params = [
        {
            "b_id": m["channel_id"],
            "b_epg": m["epg_id"],
            "b_xmltv": m["epg_channel_id"],
            "b_method": m.get("method") if m["epg_id"] is not None else None,
            "b_score": m.get("score") if m["epg_id"] is not None else None,
        }
        for m in {m["channel_id"]: m for m in mappings}.values()
    ]
    for part in service.chunks(params, 1000):
        await session.execute(stmt, list(part))
    return len(params)


async def search_guide(
    session: AsyncSession, query: str, epg_id: int | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """Guide channels for the manual picker: id or any display name contains the query (accents ignored)."""
    stmt = (
        select(
            EpgChannel.source_id,
            EpgSource.name,
            EpgChannel.xmltv_id,
            EpgChannel.display_names,
            EpgChannel.icon,
            EpgChannel.programme_count,
        )
        .join(EpgSource, EpgSource.id == EpgChannel.source_id)
        .order_by(EpgSource.name, EpgChannel.xmltv_id)
    )
    if epg_id is not None:
        stmt = stmt.where(EpgChannel.source_id == epg_id)
    needle = normalise_name(query).plain if query.strip() else ""
    items = []
    for source_id, source_name, xmltv_id, names, icon, programmes in await session.execute(stmt):
        texts = [str(n[0]) for n in names or [] if n and n[0]]
        if (
            needle
            and not any(needle in normalise_name(t).plain for t in [xmltv_id, *texts])
            and query.strip().casefold() not in xmltv_id.casefold()
        ):
            continue
        items.append(
            {
                "epg_id": source_id,
                "epg_source_name": source_name,
                "epg_channel_id": xmltv_id,
                "display_names": texts,
                "icon": icon,
                "programme_count": programmes or 0,
            }
        )
    return items[offset : offset + limit], len(items)


def automatic(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The mappings an automatic run applies: suggestions marked `apply`."""
    return [
        {
            "channel_id": r["channel_id"],
            "epg_id": r["suggestion"]["epg_id"],
            "epg_channel_id": r["suggestion"]["epg_channel_id"],
            "method": r["suggestion"]["method"],
            "score": r["suggestion"]["score"],
        }
        for r in results
        if r["suggestion"] is not None and r["suggestion"]["apply"]
    ]
