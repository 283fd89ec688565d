"""Publishing the lineup: desired state from the database, TVHeadend's state, reconcile, bookkeeping."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from backend.channels import service as channels_service
from backend.channels.models import Channel, ChannelSource, ChannelTag, channel_tag_link
from backend.db import Database, iso_z, utcnow
from backend.errors import AppError
from backend.keys import Keyring
from backend.outputs.formats import output_guide_id
from backend.playlists.models import PlaylistSource, Stream
from backend.publish.apply import Applier, ApplyStats, wait_for_scans
from backend.publish.models import TvhManagedObject, TvhPublishRun
from backend.publish.plan import (
    GRID_FIELDS,
    MANUAL_NETWORK_KEY,
    MANUAL_NETWORK_NAME,
    MARKER_TAG_KEY,
    MARKER_TAG_NAME,
    NETWORK_PREFIX,
    READ_PAGE_SIZE,
    DesiredChannel,
    DesiredMux,
    DesiredNetwork,
    DesiredTag,
    Lineup,
    Plan,
    Record,
    RecordKey,
    Snapshot,
    compute_plan,
    mux_name,
)
from backend.settings import service as settings_service
from backend.tvheadend.client import TvheadendClient
from backend.tvheadend.service import client_from_settings

log = logging.getLogger(__name__)

Progress = Callable[[float, str], Awaitable[None]]

#: Operations kept in a publish run's record (the counts are always complete).
MAX_LOGGED_OPS = 2000
#: IPTV muxes TIC creates do not take part in over-the-air EPG scanning: TIC feeds the guide as XMLTV,
#: and an EIT grab would hold one of the provider's connections for ten minutes after every scan.
MUX_EPG_OFF = 0


class TvheadendNotConfigured(AppError):
    status = 409
    code = "TVH_NOT_CONFIGURED"


@dataclass
class PublishOptions:
    concurrency: int = 8
    scan_timeout: float = 90.0
    scan_poll_interval: float = 1.0
    #: Rounds of apply-then-verify within one run; objects deleted by hand mid-run are put back.
    max_rounds: int = 3


async def publish_options(session: AsyncSession, keyring: Keyring) -> PublishOptions:
    values = await settings_service.get_settings(session, keyring)
    return PublishOptions(
        concurrency=int(values["tvh_publish_concurrency"]),
        scan_timeout=float(values["tvh_scan_timeout_seconds"]),
    )


async def tvh_client(svc: Any) -> TvheadendClient:
    """A client for the configured TVHeadend on the app's shared HTTP session."""
    async with svc.db.session() as session:
        client = await client_from_settings(session, svc.keyring, svc.http.api)
    if client is None:
        raise TvheadendNotConfigured(
            "TVHeadend is not configured: set its URL (with the HTTP root, e.g. "
            "http://tvheadend:9981/tic-tvh), username and password in Settings"
        )
    return client


# ---------------------------------------------------------------------------------------------------
# Desired state from the database
# ---------------------------------------------------------------------------------------------------


def _header_pairs(text: str) -> dict[str, str]:
    """Kodi's `url|Name=value&Name2=value2` suffix as headers."""
    headers: dict[str, str] = {}
    for piece in text.split("&"):
        name, eq, value = piece.partition("=")
        if eq and name.strip():
            headers[unquote(name.strip())] = unquote(value.strip())
    return headers


@dataclass(frozen=True)
class PlaylistInfo:
    """What publishing needs of a playlist source."""

    id: int
    name: str
    enabled: bool
    connection_limit: int | None
    user_agent: str | None
    headers: Mapping[str, Any] | None


def stream_target(
    url: str, stream_headers: Mapping[str, Any] | None, source: PlaylistInfo | None
) -> tuple[str, str]:
    """The URL TVHeadend should fetch and its `iptv_hdr` ("Name: value" lines) for HTTP(S) streams."""
    base, _, suffix = url.strip().partition("|")
    headers: dict[str, str] = {}
    if source is not None:
        if source.user_agent:
            headers["User-Agent"] = source.user_agent
        headers.update({str(k): str(v) for k, v in (source.headers or {}).items()})
    headers.update({str(k): str(v) for k, v in (stream_headers or {}).items()})
    headers.update(_header_pairs(suffix))
    if not base.lower().startswith(("http://", "https://")):
        return base, ""
    lines = []
    for name, value in headers.items():
        # A newline inside a value would smuggle another header line into TVHeadend's request.
        clean_name = name.replace("\r", "").replace("\n", "").strip()
        clean_value = value.replace("\r", " ").replace("\n", " ").strip()
        if clean_name:
            lines.append(f"{clean_name}: {clean_value}\n")
    return base, "".join(lines)


async def load_lineup(session: AsyncSession, *, with_records: bool = True) -> Lineup:
    """What TVHeadend should show: enabled channels, their enabled sources with a URL, tags, networks.

    Plain column selects (no ORM objects): a lineup of thousands of channels loads in milliseconds.
    Without `with_records` the bookkeeping of what was published (one JSON document per object) is
    left out: enough to tell whether the lineup changed.
    """
    lineup = Lineup()
    channels = (
        await session.execute(
            select(
                Channel.id, Channel.name, Channel.number, Channel.logo_url, Channel.guide_id, Channel.tvh_uuid
            )
            .where(Channel.enabled.is_(True))
            .order_by(Channel.number)
        )
    ).all()
    by_id = {c.id: c for c in channels}
    playlists = {
        row.id: PlaylistInfo(row.id, row.name, row.enabled, row.connection_limit, row.user_agent, row.headers)
        for row in await session.execute(
            select(
                PlaylistSource.id,
                PlaylistSource.name,
                PlaylistSource.enabled,
                PlaylistSource.connection_limit,
                PlaylistSource.user_agent,
                PlaylistSource.headers,
            )
        )
    }
    rows = (
        await session.execute(
            select(
                ChannelSource.id,
                ChannelSource.channel_id,
                ChannelSource.url,
                ChannelSource.label,
                ChannelSource.playlist_source_id,
                ChannelSource.tvh_mux_uuid,
                Stream.url.label("stream_url"),
                Stream.headers.label("stream_headers"),
                Stream.source_id.label("stream_playlist"),
            )
            .outerjoin(Stream, Stream.id == ChannelSource.stream_id)
            .where(ChannelSource.enabled.is_(True))
            .order_by(ChannelSource.channel_id, ChannelSource.position, ChannelSource.id)
        )
    ).all()
    tags = (
        await session.execute(
            select(ChannelTag.id, ChannelTag.name, ChannelTag.tvh_uuid).order_by(ChannelTag.name)
        )
    ).all()
    links = (await session.execute(select(channel_tag_link.c.channel_id, channel_tag_link.c.tag_id))).all()

    lineup.tags = [DesiredTag(MARKER_TAG_KEY, MARKER_TAG_NAME)] + [
        DesiredTag(str(t.id), t.name) for t in tags
    ]
    tags_of: dict[int, list[str]] = {}
    for channel_id, tag_id in links:
        tags_of.setdefault(channel_id, []).append(str(tag_id))

    sources_of: dict[int, list[tuple[int, str, str, str]]] = {}
    networks: dict[str, DesiredNetwork] = {}
    for source in rows:
        channel = by_id.get(source.channel_id)
        if channel is None:
            continue
        playlist_id = source.playlist_source_id or source.stream_playlist
        playlist = playlists.get(playlist_id) if playlist_id is not None else None
        url = source.stream_url or source.url
        label = source.label or source.id
        if not url:
            lineup.skipped.append({"channel": channel.name, "source": label, "reason": "no stream URL"})
            continue
        if playlist is not None and not playlist.enabled:
            lineup.skipped.append({"channel": channel.name, "source": label, "reason": "playlist disabled"})
            continue
        if playlist is None:
            network = DesiredNetwork(MANUAL_NETWORK_KEY, MANUAL_NETWORK_NAME, 0)
        else:
            network = DesiredNetwork(
                f"source:{playlist.id}", NETWORK_PREFIX + playlist.name, int(playlist.connection_limit or 0)
            )
        networks[network.key] = network
        target, hdr = stream_target(url, source.stream_headers if source.stream_url else None, playlist)
        sources_of.setdefault(channel.id, []).append((source.id, target, hdr, network.key))
    lineup.networks = sorted(networks.values(), key=lambda n: n.name)

    for channel in channels:
        sources = sources_of.get(channel.id, [])
        mux_keys = []
        for index, (source_id, target, hdr, network_key) in enumerate(sources):
            key = str(source_id)
            mux_keys.append(key)
            lineup.muxes.append(
                DesiredMux(
                    key,
                    network_key,
                    str(channel.id),
                    {
                        "iptv_url": target,
                        "iptv_muxname": mux_name(channel.name, source_id),
                        "iptv_sname": channel.name,
                        # The XMLTV channel id exactly as TIC's guide writes it, so TVHeadend links them.
                        "iptv_epgid": output_guide_id(channel.guide_id),
                        "channel_number": channel.number,
                        "iptv_icon": channel.logo_url or "",
                        "iptv_hdr": hdr,
                        # TVHeadend prefers the higher priority: the first source wins, the others are failover.
                        "priority": len(sources) - index,
                        "enabled": 1,
                        "epg": MUX_EPG_OFF,
                    },
                )
            )
        lineup.channels.append(
            DesiredChannel(
                str(channel.id),
                channel.name,
                channel.number,
                channel.logo_url or "",
                tuple(sorted(tags_of.get(channel.id, []), key=int)),
                tuple(mux_keys),
            )
        )
    if with_records:
        lineup.records, lineup.stored = await _load_records(session, channels, rows, tags)
    return lineup


async def _load_records(
    session: AsyncSession, channels: Any, source_rows: Any, tags: Any
) -> tuple[dict[RecordKey, Record], dict[RecordKey, Record]]:
    """The uuids on TIC's rows overlaid with the bookkeeping table; and the table's rows alone."""
    records: dict[RecordKey, Record] = {}
    # Uuids on TIC's own rows count when the bookkeeping table has nothing (e.g. a restored backup).
    for channel in channels:
        if channel.tvh_uuid:
            records[("channel", str(channel.id))] = Record(channel.tvh_uuid)
    for source in source_rows:
        if source.tvh_mux_uuid:
            records[("mux", str(source.id))] = Record(source.tvh_mux_uuid)
    for tag in tags:
        if tag.tvh_uuid:
            records[("tag", str(tag.id))] = Record(tag.tvh_uuid)
    stmt = select(
        TvhManagedObject.kind,
        TvhManagedObject.tic_key,
        TvhManagedObject.tvh_uuid,
        TvhManagedObject.fields_digest,
    )
    stored: dict[RecordKey, Record] = {}
    for kind, key, uuid, digests in await session.execute(stmt):
        stored[(kind, key)] = Record(uuid, dict(digests or {}))
    records.update(stored)
    return records, stored


async def lineup_changed_at(session: AsyncSession) -> datetime | None:
    """When the lineup last changed (channels or playlists), for debouncing a publish."""
    stamps = [
        (await session.execute(select(func.max(Channel.updated_at)))).scalar_one_or_none(),
        (await session.execute(select(func.max(PlaylistSource.updated_at)))).scalar_one_or_none(),
    ]
    known = [s for s in stamps if s is not None]
    return max(known) if known else None


# ---------------------------------------------------------------------------------------------------
# TVHeadend's state
# ---------------------------------------------------------------------------------------------------


async def read_snapshot(client: TvheadendClient, stats: ApplyStats | None = None) -> Snapshot:
    """TVHeadend's networks, muxes, services, channels and tags: only the fields the planner reads.

    The five grids are read at the same time (five requests in flight at most); each grid's pages one
    after the other.
    """

    async def read(path: str, kind: str, **params: Any) -> list[dict[str, Any]]:
        return await client.grid(
            path, {**params, "list": ",".join(GRID_FIELDS[kind])}, page_size=READ_PAGE_SIZE
        )

    networks, muxes, services, channels, tags = await asyncio.gather(
        read("mpegts/network/grid", "network"),
        read("mpegts/mux/grid", "mux", hidemode="none"),
        read("mpegts/service/grid", "service", hidemode="none"),
        read("channel/grid", "channel", all=1),
        read("channeltag/grid", "tag", all=1),
    )
    if stats is not None:
        stats.reads += sum(
            max(1, math.ceil(len(rows) / READ_PAGE_SIZE))
            for rows in (networks, muxes, services, channels, tags)
        )
    return Snapshot(networks=networks, muxes=muxes, services=services, channels=channels, tags=tags)


# ---------------------------------------------------------------------------------------------------
# Preview and publish
# ---------------------------------------------------------------------------------------------------


def plan_view(plan: Plan, lineup: Lineup, limit: int | None = None) -> dict[str, Any]:
    ops = [op.to_dict() for op in plan.ops]
    return {
        "summary": plan.summary(),
        "operations": ops if limit is None else ops[:limit],
        "total_operations": len(ops),
        "drift": plan.drift(),
        "warnings": plan.warnings,
        "without_service": plan.without_service,
        "skipped": lineup.skipped,
    }


async def preview_plan(db: Database, client: TvheadendClient, limit: int = 500) -> dict[str, Any]:
    """The plan a publish would apply now, without applying anything."""
    async with db.session() as session:
        lineup = await load_lineup(session)
    plan = compute_plan(await read_snapshot(client), lineup)
    return {"generated_at": iso_z(utcnow()), **plan_view(plan, lineup, limit)}


# Apply phases: parents (tags, networks) then muxes from one plan, since a mux create finds its new
# network's uuid in the claims; then, after scans and a fresh read, channels and the deletes of parents.
_PARENTS: tuple[tuple[str, ...], tuple[str, ...]] = (("tag", "network"), ("create", "update"))
_MUXES: tuple[tuple[str, ...], tuple[str, ...]] = (("mux",), ("delete", "create", "update"))
_CHANNELS: tuple[tuple[str, ...], tuple[str, ...]] = (
    ("channel", "tag", "network"),
    ("delete", "create", "update"),
)


async def _reconcile(
    client: TvheadendClient,
    lineup: Lineup,
    options: PublishOptions,
    stats: ApplyStats,
    progress: Progress,
    drift: list[dict[str, Any]],
    snapshot: Snapshot | None = None,
) -> Plan:
    if snapshot is None:
        await progress(5, "Reading TVHeadend's networks, muxes, services, channels and tags")
        snapshot = await read_snapshot(client, stats)
    plan = compute_plan(snapshot, lineup)
    drift += plan.drift()
    waited: set[str] = set()
    for _round in range(options.max_rounds):
        if plan.empty:
            break
        early = plan.of(*_PARENTS) + plan.of(*_MUXES)
        failed = len(stats.failed)
        if early:
            await progress(10, f"Applying {len(early)} change(s) to TVHeadend tags, networks and muxes")
            runner = Applier(client, options.concurrency, stats)
            await runner.run(plan.of(*_PARENTS), plan.claims)
            await runner.run(plan.of(*_MUXES), plan.claims)
        # Channels get the services of muxes still being scanned (created by this run, or by an earlier
        # one that stopped early) once they are ready: wait for those, within the time limit.
        scanning = {p["uuid"] for p in plan.without_service if p.get("scanning")}
        fresh = (stats.new_muxes | scanning) - waited
        if fresh:
            waited |= fresh
            await _wait(client, fresh, options, stats, progress)
        # Updates change no uuids and no services; after creates, deletes or scans the plan is redone.
        reread = bool(fresh or any(op.action != "update" for op in early) or len(stats.failed) > failed)
        if reread:
            snapshot = await read_snapshot(client, stats)
            plan = compute_plan(snapshot, lineup)
        late = plan.of(*_CHANNELS)
        if late:
            await progress(70, f"Applying {len(late)} change(s) to TVHeadend channels")
            await Applier(client, options.concurrency, stats).run(late, plan.claims)
        written = late + ([] if reread else early)
        if written:
            # Verify: what TVHeadend holds now, so a change that did not take effect is tried again.
            # After updates alone (no uuid or service can have changed) reading back just the updated
            # objects tells the same as reading every grid again.
            updated = [op.uuid for op in written if op.action == "update" and op.uuid]
            only_updates = len(updated) == len(written) and len(stats.failed) == failed
            if only_updates and len(updated) <= READ_PAGE_SIZE:
                snapshot = await _reload_objects(client, snapshot, updated, stats)
            else:
                snapshot = await read_snapshot(client, stats)
            plan = compute_plan(snapshot, lineup)
    return plan


#: Uuids per `idnode/load` when reading updated objects back.
LOAD_BATCH = 500


async def _reload_objects(
    client: TvheadendClient, snapshot: Snapshot, uuids: list[str], stats: ApplyStats
) -> Snapshot:
    """`snapshot` with the rows of `uuids` read again (as grid rows); objects that vanished are dropped."""
    fields = sorted({name for names in GRID_FIELDS.values() for name in names})
    fresh: dict[str, dict[str, Any]] = {}
    for i in range(0, len(uuids), LOAD_BATCH):
        for row in await client.idnode_load(uuids[i : i + LOAD_BATCH], fields):
            fresh[str(row.get("uuid"))] = row
        stats.reads += 1
    wanted = set(uuids)

    def patch(rows: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
        keep = ("uuid", *GRID_FIELDS[kind])
        out = []
        for row in rows:
            uuid = row["uuid"]
            if uuid not in wanted:
                out.append(row)
            elif uuid in fresh:
                out.append({k: v for k, v in fresh[uuid].items() if k in keep})
        return out

    return Snapshot(
        networks=patch(snapshot.networks, "network"),
        muxes=patch(snapshot.muxes, "mux"),
        services=snapshot.services,
        channels=patch(snapshot.channels, "channel"),
        tags=patch(snapshot.tags, "tag"),
    )


async def _wait(
    client: TvheadendClient, muxes: set[str], options: PublishOptions, stats: ApplyStats, progress: Progress
) -> None:
    async def report(message: str) -> None:
        await progress(55, message)

    pending = await wait_for_scans(
        client, muxes, options.scan_timeout, options.scan_poll_interval, stats, report
    )
    if pending:
        log.info(
            "%d mux(es) not scanned within %.0f s; they are reported", len(pending), options.scan_timeout
        )


async def publish_lineup(
    db: Database,
    client: TvheadendClient,
    options: PublishOptions,
    progress: Progress,
    task_run_id: int | None = None,
) -> dict[str, Any]:
    """Make TVHeadend show TIC's lineup: read, plan, apply what differs, verify, record uuids."""
    async with db.transaction() as session:
        run = TvhPublishRun(task_run_id=task_run_id, status="running", started_at=utcnow())
        session.add(run)
        await session.flush()
        run_id = run.id
    stats = ApplyStats()
    drift: list[dict[str, Any]] = []
    await progress(5, "Reading the lineup, and TVHeadend's networks, muxes, services, channels and tags")
    # The database and TVHeadend are read at the same time: neither read depends on the other.
    loaded, snapshot = await asyncio.gather(
        _read_lineup(db), read_snapshot(client, stats), return_exceptions=True
    )
    if isinstance(loaded, BaseException) or isinstance(snapshot, BaseException):
        failure = loaded if isinstance(loaded, BaseException) else snapshot
        assert isinstance(failure, BaseException)
        if isinstance(failure, Exception):
            # Nothing was written to TVHeadend yet, so there are no records to keep.
            await _finish_run(db, run_id, "failed", stats, drift, [], error=_error_text(failure))
        raise failure
    lineup = loaded
    try:
        plan = await _reconcile(client, lineup, options, stats, progress, drift, snapshot)
        # Edits made while this run was applying are published by the same run, not lost to the dedupe.
        for again in range(3):
            await _save_records(db, plan, stats, lineup)
            if again == 2 or lineup.same_as(await _read_lineup(db, with_records=False)):
                break
            lineup = await _read_lineup(db)
            plan = await _reconcile(client, lineup, options, stats, progress, drift)
    except Exception as exc:
        await _save_records(db, None, stats, lineup)
        await _finish_run(db, run_id, "failed", stats, drift, [], error=_error_text(exc))
        raise
    problems = [*stats.failed, *plan.without_service]
    leftover = [op.to_dict() for op in plan.ops]
    if leftover:
        problems.append(
            {
                "kind": "publish",
                "reason": f"{len(leftover)} change(s) did not take effect",
                "operations": leftover[:50],
            }
        )
    result = await _finish_run(db, run_id, "succeeded", stats, drift, problems, warnings=plan.warnings)
    result["skipped"] = lineup.skipped
    return result


async def _read_lineup(db: Database, *, with_records: bool = True) -> Lineup:
    async with db.session() as session:
        return await load_lineup(session, with_records=with_records)


def _error_text(exc: BaseException) -> str:
    return f"{exc.message} [{exc.code}]" if isinstance(exc, AppError) else type(exc).__name__


async def _finish_run(
    db: Database,
    run_id: int,
    status: str,
    stats: ApplyStats,
    drift: list[dict[str, Any]],
    problems: list[dict[str, Any]],
    *,
    error: str | None = None,
    warnings: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    counts: dict[str, dict[str, int]] = {"create": {}, "update": {}, "delete": {}}
    for op in stats.applied:
        counts[op.action][op.kind] = counts[op.action].get(op.kind, 0) + 1
    summary = {
        "created": sum(counts["create"].values()),
        "updated": sum(counts["update"].values()),
        "deleted": sum(counts["delete"].values()),
        "by_kind": counts,
        "drift_repaired": len(drift),
        "problems": len(problems),
        "warnings": warnings or [],
    }
    async with db.transaction() as session:
        run = await session.get(TvhPublishRun, run_id)
        assert run is not None
        run.status = status
        run.finished_at = utcnow()
        run.summary = summary
        run.operations = [op.to_dict() for op in stats.applied[:MAX_LOGGED_OPS]]
        run.drift = drift[:MAX_LOGGED_OPS]
        run.problems = problems[:MAX_LOGGED_OPS]
        run.error = error
        run.read_calls = stats.reads
        run.write_calls = stats.writes
        out = run_view(run)
    parts = [
        f"{summary['created']} created",
        f"{summary['updated']} updated",
        f"{summary['deleted']} deleted",
    ]
    if drift:
        parts.append(f"{len(drift)} drifted object(s) put back")
    if problems:
        parts.append(f"{len(problems)} problem(s)")
    out["message"] = "Published to TVHeadend: " + ", ".join(parts) if status == "succeeded" else error
    return out


def run_view(run: TvhPublishRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "task_run_id": run.task_run_id,
        "status": run.status,
        "started_at": iso_z(run.started_at),
        "finished_at": iso_z(run.finished_at),
        "summary": run.summary,
        "operations": run.operations,
        "drift": run.drift,
        "problems": run.problems,
        "error": run.error,
        "read_calls": run.read_calls,
        "write_calls": run.write_calls,
    }


async def last_publish(session: AsyncSession) -> dict[str, Any] | None:
    run = (
        await session.execute(select(TvhPublishRun).order_by(TvhPublishRun.id.desc()).limit(1))
    ).scalar_one_or_none()
    return run_view(run) if run is not None else None


# ---------------------------------------------------------------------------------------------------
# Bookkeeping: records and the uuids on TIC's rows
# ---------------------------------------------------------------------------------------------------


def _desired_keys(lineup: Lineup) -> list[RecordKey]:
    return [
        *(("tag", t.key) for t in lineup.tags),
        *(("network", n.key) for n in lineup.networks),
        *(("mux", m.key) for m in lineup.muxes),
        *(("channel", c.key) for c in lineup.channels),
    ]


async def _save_records(db: Database, plan: Plan | None, stats: ApplyStats, lineup: Lineup) -> None:
    """Store what TVHeadend now holds for each desired object. Without a plan (a failed run) only add."""
    wanted: dict[RecordKey, tuple[str, dict[str, str]]] = {}
    for key in _desired_keys(lineup):
        if plan is not None and key in plan.in_sync:
            record = plan.in_sync[key]
            wanted[key] = (record.uuid, dict(record.digests))
        elif plan is not None and key in plan.claims:
            old = lineup.records.get(key)
            uuid = plan.claims[key]
            wanted[key] = (uuid, dict(old.digests) if old is not None and old.uuid == uuid else {})
        elif key in stats.written:
            wanted[key] = stats.written[key]
    now = utcnow()
    async with db.transaction() as session:
        # Ids and uuids only: the digests were read with the lineup (decoding thousands of JSON documents
        # again would cost more than the rest of a publish with nothing to do). Publishes run one at a
        # time and only they write this table, so those digests are still what is stored.
        existing = {
            (kind, key): (row_id, uuid)
            for row_id, kind, key, uuid in await session.execute(
                select(
                    TvhManagedObject.id,
                    TvhManagedObject.kind,
                    TvhManagedObject.tic_key,
                    TvhManagedObject.tvh_uuid,
                )
            )
        }
        stale = [row_id for key, (row_id, _u) in existing.items() if key not in wanted]
        if stale and plan is not None:
            await session.execute(delete(TvhManagedObject).where(TvhManagedObject.id.in_(stale)))
        changed = [
            {"id": existing[key][0], "tvh_uuid": uuid, "fields_digest": digests, "updated_at": now}
            for key, (uuid, digests) in wanted.items()
            if key in existing and _stored_differs(lineup.stored.get(key), existing[key][1], uuid, digests)
        ]
        if changed:
            await session.execute(update(TvhManagedObject), changed)
        added = [
            {"kind": key[0], "tic_key": key[1], "tvh_uuid": uuid, "fields_digest": digests, "updated_at": now}
            for key, (uuid, digests) in wanted.items()
            if key not in existing
        ]
        if added:
            await session.execute(insert(TvhManagedObject), added)
        uuids = {key: value[0] for key, value in wanted.items()}
        await _sync_row_uuids(session, uuids, clear=plan is not None)


def _stored_differs(stored: Record | None, stored_uuid: str, uuid: str, digests: Mapping[str, str]) -> bool:
    """Whether a bookkeeping row must be rewritten; a row the lineup did not load is always rewritten."""
    if stored is None or stored.uuid != stored_uuid:
        return True
    return stored.uuid != uuid or dict(stored.digests) != dict(digests)


async def _sync_row_uuids(session: AsyncSession, uuids: Mapping[RecordKey, str], *, clear: bool) -> None:
    """Write TVHeadend uuids onto channels, channel sources and tags, through the channels service.

    Only rows whose uuid changes are written, so a publish with nothing to do writes nothing here.
    """
    for kind, model, column, setter in (
        ("channel", Channel, Channel.tvh_uuid, channels_service.set_tvh_uuid),
        ("mux", ChannelSource, ChannelSource.tvh_mux_uuid, channels_service.set_source_tvh_mux),
        ("tag", ChannelTag, ChannelTag.tvh_uuid, channels_service.set_tag_tvh_uuid),
    ):
        current = {row[0]: row[1] for row in (await session.execute(select(model.id, column))).all()}
        for row_id, value in current.items():
            new = uuids.get((kind, str(row_id)))
            if new is None and not clear:
                continue
            if new != value:
                await setter(session, row_id, new)
