"""JSON API of the lineup: channel CRUD, bulk work, guide matching, lineup export/import, cached logos."""

from __future__ import annotations

import json
from typing import Any

from quart import Blueprint, Response, request
from quart_schema import document_response, validate_request, validate_response
from sqlalchemy.exc import IntegrityError

from backend.auth.guard import public
from backend.channels import bulk, epg_match, lineup_io, logos, merge, picker, service, shape
from backend.channels.schemas import (
    ApplyIn,
    ApplyOut,
    BulkOut,
    ChannelCreateIn,
    ChannelList,
    ChannelOut,
    ChannelPatchIn,
    CreatedOut,
    EpgChannelList,
    FromGroupsIn,
    FromStreamsIn,
    GroupList,
    IdsIn,
    ImportOut,
    MatchIn,
    MatchOut,
    MergeIn,
    MergeOut,
    RenumberIn,
    StreamList,
    TagBulkIn,
    TagList,
)
from backend.edge import allow_large_bodies, json_in_slices, listing, page_args, services
from backend.errors import Conflict, Invalid, NotFound
from backend.schemas import TaskQueued
from backend.settings import service as settings_service
from backend.tasks.offload import run_blocking

bp = Blueprint("channels", __name__, url_prefix="/tic-api")

# A lineup file for thousands of channels is bigger than the 1 MiB JSON cap.
allow_large_bodies(r"^/tic-api/channels/import$")


def _flag(name: str) -> bool | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    if raw.lower() in ("1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise Invalid(f"{name} must be true or false", fields={name: "expected true or false"})


def _shift() -> bool:
    mode = request.args.get("on_conflict", "reject")
    if mode not in ("reject", "shift"):
        raise Invalid("on_conflict must be reject or shift", fields={"on_conflict": "reject or shift"})
    return mode == "shift"


def _int_arg(name: str) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise Invalid(f"{name} must be a whole number", fields={name: "integer"}) from None


async def _changed(*, logos_too: bool = False) -> None:
    await service.lineup_changed(services().broker, logos=logos_too)


async def _one(channel_id: int) -> dict[str, Any]:
    async with services().db.session() as session:
        channel = await service.get_channel(session, channel_id)
        return (await shape.channels_out(session, [channel]))[0]


def _number_race(exc: IntegrityError) -> Conflict:
    # Two writers took the same number (or guide id) at once; the loser gets the ordinary 409.
    return Conflict(
        "That channel number was taken meanwhile; try again", code="NUMBER_TAKEN", fields={"number": "taken"}
    )


@bp.get("/channels")
@validate_response(ChannelList, 200)
async def list_channels() -> dict[str, Any]:
    """Channels by number; filters: tag, enabled, unmapped, problems, q; sort: number, -number, name, -name, updated."""
    limit, offset = page_args(default_limit=100, max_limit=1000)
    filters = {
        "tag": request.args.get("tag") or None,
        "enabled": _flag("enabled"),
        "unmapped": _flag("unmapped"),
        "problems": _flag("problems"),
        "q": request.args.get("q"),
    }
    async with services().db.session() as session:
        channels, total = await service.list_channels(
            session, filters, limit=limit, offset=offset, sort=request.args.get("sort", "number")
        )
        return listing(await shape.channels_out(session, channels), total)


@bp.post("/channels")
@validate_request(ChannelCreateIn)
@validate_response(ChannelOut, 201)
async def create_channel(data: ChannelCreateIn) -> tuple[dict[str, Any], int]:
    """Create a channel; a taken number is a 409 NUMBER_TAKEN unless ?on_conflict=shift moves the others down."""
    try:
        async with services().db.transaction() as session:
            channel_id = await service.create_channel(session, data, shift=_shift())
    except IntegrityError as exc:
        raise _number_race(exc) from None
    await _changed(logos_too=True)
    return await _one(channel_id), 201


@bp.get("/channels/<int:channel_id>")
@validate_response(ChannelOut, 200)
async def get_channel(channel_id: int) -> dict[str, Any]:
    return await _one(channel_id)


@bp.patch("/channels/<int:channel_id>")
@validate_request(ChannelPatchIn)
@validate_response(ChannelOut, 200)
async def update_channel(channel_id: int, data: ChannelPatchIn) -> dict[str, Any]:
    """Change the fields given; guide_id and tvh_uuid are read-only."""
    try:
        async with services().db.transaction() as session:
            await service.update_channel(session, channel_id, data, shift=_shift())
    except IntegrityError as exc:
        raise _number_race(exc) from None
    await _changed(logos_too="logo_url" in data.model_fields_set)
    return await _one(channel_id)


@bp.delete("/channels/<int:channel_id>")
async def delete_channel(channel_id: int) -> tuple[str, int]:
    async with services().db.transaction() as session:
        if not await service.delete_channels(session, [channel_id]):
            raise NotFound(f"There is no channel {channel_id}", code="CHANNEL_NOT_FOUND")
        await service.delete_unused_tags(session)
    await _changed()
    return "", 204


@bp.get("/channels/tags")
@validate_response(TagList, 200)
async def list_tags() -> dict[str, Any]:
    async with services().db.session() as session:
        items = await picker.tags(session)
    return listing(items, len(items))


@bp.get("/channels/streams")
@validate_response(StreamList, 200)
async def list_streams() -> dict[str, Any]:
    """Imported streams to build channels from: ?q, playlist_id, group, include_vod, not_in_lineup."""
    limit, offset = page_args(default_limit=100, max_limit=1000)
    async with services().db.session() as session:
        items, total = await picker.streams(
            session,
            q=request.args.get("q", ""),
            playlist_id=_int_arg("playlist_id"),
            group=request.args.get("group"),
            include_vod=bool(_flag("include_vod")),
            not_in_lineup=bool(_flag("not_in_lineup")),
            limit=limit,
            offset=offset,
        )
    return listing(items, total)


@bp.get("/channels/groups")
@validate_response(GroupList, 200)
async def list_groups() -> dict[str, Any]:
    """Stream groups per playlist with their size and how many of their streams are in the lineup."""
    async with services().db.session() as session:
        items = await picker.groups(session, _int_arg("playlist_id"), include_vod=bool(_flag("include_vod")))
    return listing(items, len(items))


@bp.post("/channels/bulk/from-streams")
@validate_request(FromStreamsIn)
@validate_response(CreatedOut, 201)
async def create_from_streams(data: FromStreamsIn) -> tuple[dict[str, Any], int]:
    """One channel per stream, numbered from start_number (default: after the last) skipping taken numbers."""
    async with services().db.transaction() as session:
        rows = await bulk.streams_for_ids(session, data.stream_ids)
        result = await bulk.create_from_streams(session, rows, data)
    await _changed(logos_too=True)
    return result, 201


@bp.post("/channels/bulk/from-groups")
@bp.post("/channels/from-groups")
@validate_request(FromGroupsIn)
@validate_response(CreatedOut, 201)
async def create_from_groups(data: FromGroupsIn) -> tuple[dict[str, Any], int]:
    """One channel per stream of the chosen groups of a playlist, group by group in playlist order."""
    async with services().db.transaction() as session:
        rows = await bulk.streams_for_groups(session, data.playlist_id, data.groups, data.include_vod)
        result = await bulk.create_from_streams(session, rows, data)
    await _changed(logos_too=True)
    return result, 201


async def _bulk(action: Any) -> dict[str, Any]:
    async with services().db.transaction() as session:
        changed = await action(session)
    await _changed()
    return {"changed": changed}


@bp.post("/channels/bulk/enable")
@validate_request(IdsIn)
@validate_response(BulkOut, 200)
async def enable_channels(data: IdsIn) -> dict[str, Any]:
    return await _bulk(lambda s: bulk.set_enabled(s, data.ids, True))


@bp.post("/channels/bulk/disable")
@validate_request(IdsIn)
@validate_response(BulkOut, 200)
async def disable_channels(data: IdsIn) -> dict[str, Any]:
    return await _bulk(lambda s: bulk.set_enabled(s, data.ids, False))


@bp.post("/channels/bulk/tag")
@validate_request(TagBulkIn)
@validate_response(BulkOut, 200)
async def tag_channels(data: TagBulkIn) -> dict[str, Any]:
    """Add and/or remove tags on the selected channels (tags are created as needed, unused ones removed)."""
    return await _bulk(lambda s: bulk.tag(s, data.ids, data.add, data.remove))


@bp.post("/channels/bulk/renumber")
@validate_request(RenumberIn)
@validate_response(BulkOut, 200)
async def renumber_channels(data: RenumberIn) -> dict[str, Any]:
    """Number the channels from start_number in the order given; ?on_conflict=shift pushes others down."""
    shift = _shift()
    return await _bulk(lambda s: bulk.renumber(s, data.ids, data.start_number, shift=shift))


@bp.post("/channels/bulk/reorder")
@validate_request(IdsIn)
@validate_response(BulkOut, 200)
async def reorder_channels(data: IdsIn) -> dict[str, Any]:
    """The channels take their own numbers in the order given (what a drag and drop does)."""
    return await _bulk(lambda s: bulk.reorder(s, data.ids))


@bp.post("/channels/bulk/delete")
@validate_request(IdsIn)
@validate_response(BulkOut, 200)
async def delete_many(data: IdsIn) -> dict[str, Any]:
    return await _bulk(lambda s: bulk.delete(s, data.ids))


@bp.post("/channels/bulk/merge-duplicates")
@validate_request(MergeIn)
@validate_response(MergeOut, 200)
async def merge_duplicates(data: MergeIn) -> dict[str, Any]:
    """Fold channels with the same tvg-id or normalised name into the lowest-numbered one (dry_run previews)."""
    async with services().db.transaction() as session:
        result = await merge.merge_duplicates(session, data.ids, data.by, dry_run=data.dry_run)
    if result["merged"]:
        await _changed()
    return result


async def _match(data: MatchIn, apply: bool) -> Response:
    svc = services()
    threshold = data.threshold
    if threshold is None:
        async with svc.db.session() as session:
            threshold = int(await settings_service.get_setting(session, svc.keyring, "epg_match_threshold"))
    ids = None if data.channel_ids is None or data.all_unmapped else data.channel_ids
    work_dir = svc.config.data_dir / "matching"
    rows, results, names, guide_size, seconds = await epg_match.run_matching(svc.db, work_dir, ids, threshold)
    applied = 0
    if apply:
        mappings = epg_match.automatic(results)
        if mappings:
            async with svc.db.transaction() as session:
                applied = await epg_match.apply_mappings(session, mappings)
            await _changed(logos_too=True)
    items = epg_match.report(rows, results, names)
    matched = sum(1 for i in items if i["suggestion"] is not None and i["suggestion"]["apply"])
    payload = {
        "items": items,
        "total": len(items),
        "matched": matched,
        "applied": applied,
        "unmatched": len(items) - matched,
        "threshold": threshold,
        "guide_channels": guide_size,
        "seconds": round(seconds, 3),
    }
    return await json_in_slices(payload)


@bp.post("/channels/epg-match")
@validate_request(MatchIn)
@document_response(MatchOut, 200)
async def match_epg(data: MatchIn) -> Response:
    """Match channels to guide channels (the given ones, or all unmapped); with apply, map the confident ones."""
    return await _match(data, data.apply)


@bp.post("/channels/epg-match/preview")
@validate_request(MatchIn)
@document_response(MatchOut, 200)
async def preview_epg_match(data: MatchIn) -> Response:
    """Suggestions with score and reason for each channel; nothing is changed."""
    return await _match(data, False)


@bp.post("/channels/epg-match/apply")
@validate_request(ApplyIn)
@validate_response(ApplyOut, 200)
async def apply_epg_match(data: ApplyIn) -> dict[str, Any]:
    """Apply the mappings the admin accepted (a null pair clears a channel's mapping)."""
    async with services().db.transaction() as session:
        applied = await epg_match.apply_mappings(session, [m.model_dump() for m in data.mappings])
    await _changed(logos_too=True)
    return {"applied": applied}


@bp.get("/channels/epg-channels")
@validate_response(EpgChannelList, 200)
async def list_epg_channels() -> dict[str, Any]:
    """Guide channels to map by hand: ?q searches ids and display names, ?epg_id limits to one guide."""
    limit, offset = page_args(default_limit=50, max_limit=500)
    async with services().db.session() as session:
        items, total = await epg_match.search_guide(
            session, request.args.get("q", ""), _int_arg("epg_id"), limit, offset
        )
    return listing(items, total)


@bp.get("/channels/export")
async def export_lineup() -> Response:
    """The whole lineup as a JSON file (format tic-lineup, version 1)."""
    async with services().db.session() as session:
        document = await lineup_io.export_lineup(session)
    body = await run_blocking(lambda: json.dumps(document, ensure_ascii=False, indent=1))
    response = Response(body, content_type="application/json; charset=utf-8")
    response.headers["Content-Disposition"] = 'attachment; filename="tic-lineup.json"'
    return response


@bp.post("/channels/import")
@validate_response(ImportOut, 200)
async def import_lineup() -> dict[str, Any]:
    """Replace the lineup with an exported file; an invalid or newer file is a 400 and changes nothing."""
    document = await request.get_json(force=True, silent=True)
    if document is None:
        raise Invalid(
            "The body must be a lineup file (JSON)", code="LINEUP_INVALID", fields={"body": "not JSON"}
        )
    async with services().db.transaction() as session:
        result = await lineup_io.import_lineup(session, document)
    await _changed(logos_too=True)
    return result


@bp.post("/channels/logos/refresh")
@validate_response(TaskQueued, 202)
async def refresh_logos() -> tuple[dict[str, Any], int]:
    """Queue a fetch of every logo again (the periodic job only fetches new and stale ones)."""
    queued = await services().broker.enqueue(
        service.CACHE_LOGOS, key=service.CACHE_LOGOS, args={"force": True}, requested_by="channels"
    )
    return {"task_id": queued.task_id}, 202


@bp.get("/logos/<int:channel_id>")
@public
async def get_logo(channel_id: int) -> Response:
    """A channel's cached logo (or its guide channel's icon) for IPTV clients; only files already cached."""
    svc = services()
    async with svc.db.session() as session:
        cached = await logos.cached_logo(session, channel_id)
    if cached is None or not cached.content_sha256:
        raise NotFound("No cached logo for this channel", code="LOGO_NOT_FOUND")
    etag = f'"{cached.content_sha256[:32]}"'
    headers = {
        "ETag": etag,
        "Cache-Control": "public, max-age=86400",
        "Content-Security-Policy": "default-src 'none'; sandbox",
    }
    if etag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
        return Response("", status=304, headers=headers)
    path = logos.logo_file(svc.config.data_dir, cached.content_sha256)
    try:
        data = await run_blocking(path.read_bytes)
    except FileNotFoundError:
        raise NotFound("No cached logo for this channel", code="LOGO_NOT_FOUND") from None
    return Response(data, content_type=cached.content_type or "application/octet-stream", headers=headers)
