"""JSON API for EPG sources, their imports, uploads and channels, the guide grid and programme search.

The guide grid and programme search are open to every logged-in user (@user_required), because
streamers with DVR rights pick what to record from them; everything else is admin-only.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from quart import Blueprint, Response, g, request
from quart_schema import document_response, validate_request, validate_response

from backend.auth.guard import user_required
from backend.download import looks_like_html, sniff_compression
from backend.edge import allow_large_bodies, json_in_slices, listing, page_args, receive_upload, services
from backend.epg import service
from backend.epg.jobs import REFRESH_JOB, refresh_key
from backend.epg.schemas import (
    EpgChannelList,
    EpgIn,
    EpgList,
    EpgOut,
    EpgPatch,
    GuideOut,
    ProgrammeList,
)
from backend.errors import Conflict, Invalid
from backend.schemas import TaskQueued
from backend.tasks.offload import run_blocking

log = logging.getLogger(__name__)

bp = Blueprint("epgs", __name__, url_prefix="/tic-api")

# Uploads may be as large as Config.max_upload_bytes; every other body stays capped at the JSON limit.
allow_large_bodies(r"^/tic-api/epgs/\d+/upload$")
allow_large_bodies(r"^/epgs/\d+/upload$")


def _requested_by() -> str | None:
    user = g.get("user")
    return user.username if user is not None else None


def _flag(name: str) -> bool:
    return request.args.get(name, "").lower() in ("1", "true", "yes")


async def queue_import(source_id: int, *, force: bool) -> int:
    """Queue an import of a guide (or find the one already queued or running) and return its task id."""
    result = await services().broker.enqueue(
        REFRESH_JOB,
        key=refresh_key(source_id),
        args={"epg_id": source_id, "force": force},
        requested_by=_requested_by(),
    )
    return result.task_id


@bp.get("/epgs")
@validate_response(EpgList, 200)
async def list_epgs() -> dict[str, Any]:
    """Guide sources by name, with the outcome of their last import."""
    limit, offset = page_args()
    async with services().db.session() as session:
        sources, total = await service.list_sources(session, limit, offset)
        return listing([service.source_out(s) for s in sources], total)


@bp.post("/epgs")
@validate_request(EpgIn)
@validate_response(EpgOut, 201)
async def create_epg(data: EpgIn) -> tuple[dict[str, Any], int]:
    """Add a guide source. Import it with POST /tic-api/epgs/update/<id> (or upload its file); an
    enabled source with a refresh interval is also picked up by the next scheduled check."""
    svc = services()
    async with svc.db.transaction() as session:
        source = await service.create_source(session, data.model_dump())
        out = service.source_out(source)
    return out, 201


@bp.get("/epgs/<int:epg_id>")
@validate_response(EpgOut, 200)
async def get_epg(epg_id: int) -> dict[str, Any]:
    async with services().db.session() as session:
        return service.source_out(await service.get_source(session, epg_id))


@bp.patch("/epgs/<int:epg_id>")
@validate_request(EpgPatch)
@validate_response(EpgOut, 200)
async def update_epg(epg_id: int, data: EpgPatch) -> dict[str, Any]:
    changes = {key: getattr(data, key) for key in data.model_fields_set}
    async with services().db.transaction() as session:
        source = await service.get_source(session, epg_id)
        await service.update_source(session, source, changes)
        return service.source_out(source)


@bp.delete("/epgs/<int:epg_id>")
async def delete_epg(epg_id: int) -> Response:
    """Delete a guide source with its channels and programmes; lineup channels keep playing, unguided."""
    svc = services()
    async with svc.db.transaction() as session:
        await service.delete_source(session, await service.get_source(session, epg_id))
    await run_blocking(service.upload_path(svc.config.data_dir, epg_id).unlink, True)
    return Response(status=204)


@bp.post("/epgs/update/<int:epg_id>")
@validate_response(TaskQueued, 202)
async def update_epg_guide(epg_id: int) -> tuple[dict[str, Any], int]:
    """Queue an import now (the path TVH-IPTV-Config clients already use); answers the task id.

    An unchanged file is not imported again unless `?force=true`.
    """
    async with services().db.session() as session:
        await service.get_source(session, epg_id)
    return {"task_id": await queue_import(epg_id, force=_flag("force"))}, 202


@bp.post("/epgs/<int:epg_id>/upload")
@validate_response(TaskQueued, 202)
async def upload_epg_file(epg_id: int) -> tuple[dict[str, Any], int]:
    """Upload the guide of an xmltv_file source (multipart field `file`, or the raw body; plain, gzip
    or xz) and queue its import."""
    return {"task_id": await receive_guide_file(epg_id)}, 202


async def receive_guide_file(epg_id: int) -> int:
    """Store the request's file as the source's guide if it looks like XML, and queue its import.

    The previous file stays until the new one has arrived complete.
    """
    svc = services()
    async with svc.db.session() as session:
        source = await service.get_source(session, epg_id)
        if source.kind != "xmltv_file":
            raise Conflict(
                "Only EPG sources of kind xmltv_file take an uploaded file", code="EPG_NOT_FILE_KIND"
            )
    filename, size = await receive_upload(
        service.upload_path(svc.config.data_dir, epg_id),
        default_name="guide.xml",
        kind="an XMLTV guide",
        sniff=_sniff_guide,
        code="XMLTV_NOT_XMLTV",
    )
    async with svc.db.transaction() as session:
        await service.record_upload(session, await service.get_source(session, epg_id), filename)
    log.info("EPG %d: received an uploaded guide of %d bytes", epg_id, size)
    return await queue_import(epg_id, force=True)


def _sniff_guide(path: Path) -> str | None:
    """Why the file cannot be a guide (from its first bytes), or None when it may be one."""
    with path.open("rb") as f:
        head = f.read(4096)
    if looks_like_html(head):
        return "it is an HTML page"
    if sniff_compression(head) is not None:
        return None
    if not head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        return "it does not start like an XML document"
    return None


@bp.get("/epgs/<int:epg_id>/channels")
@validate_response(EpgChannelList, 200)
async def list_epg_channels(epg_id: int) -> dict[str, Any]:
    """The channels of a source's guide with their programme counts; `q` filters by id or name."""
    limit, offset = page_args(default_limit=100, max_limit=1000)
    async with services().db.session() as session:
        await service.get_source(session, epg_id)
        channels, total = await service.list_epg_channels(
            session, epg_id, limit, offset, request.args.get("q")
        )
        return listing([service.epg_channel_out(c) for c in channels], total)


#: Guide channels per encoded slice: each carries a day's programmes, so far fewer than list items.
GUIDE_ENCODE_SLICE = 20


@bp.get("/guide")
@user_required
@document_response(GuideOut, 200)
async def get_guide() -> Response:
    """Grid data for the lineup's mapped channels between `start` and `end` (ISO-8601 with a zone;
    default: the current half hour plus 6 hours, at most 7 days). `channels` is a comma-separated
    list of lineup channel ids (default: every enabled mapped channel)."""
    start = service.parse_instant(request.args.get("start"), "start")
    end = service.parse_instant(request.args.get("end"), "end")
    channel_ids: list[int] | None = None
    raw = request.args.get("channels")
    if raw:
        try:
            channel_ids = [int(part) for part in raw.split(",") if part.strip()]
        except ValueError:
            raise Invalid(
                "channels must be comma-separated channel ids", fields={"channels": "not ids"}
            ) from None
    async with services().db.session() as session:
        grid = await service.guide(session, start, end, channel_ids)
    # Thousands of programmes: encoded in slices so the loop keeps serving (no one-shot validation).
    return await json_in_slices(grid, key="channels", per_slice=GUIDE_ENCODE_SLICE)


@bp.get("/programmes")
@user_required
@validate_response(ProgrammeList, 200)
async def search_programmes() -> dict[str, Any]:
    """Programmes whose title contains `q`, soonest first, optionally between `start` and `end` and
    from one `source_id`; paged with limit/offset."""
    limit, offset = page_args()
    start = service.parse_instant(request.args.get("start"), "start")
    end = service.parse_instant(request.args.get("end"), "end")
    source_raw = request.args.get("source_id")
    try:
        source_id = int(source_raw) if source_raw else None
    except ValueError:
        raise Invalid("source_id must be a whole number", fields={"source_id": "not an id"}) from None
    async with services().db.session() as session:
        items, total = await service.search_programmes(
            session, request.args.get("q", ""), start, end, source_id, limit, offset
        )
    return listing(items, total)
