"""JSON API for playlist sources, their imports and uploads, and the stream browser."""

from __future__ import annotations

import logging
from typing import Any

from quart import Blueprint, Response, g, request
from quart_schema import validate_request, validate_response

from backend.edge import allow_large_bodies, listing, page_args, receive_upload, services
from backend.errors import Conflict, Invalid
from backend.playlists import importer, service
from backend.playlists.jobs import REFRESH_JOB, refresh_key
from backend.playlists.models import PlaylistSource
from backend.playlists.schemas import (
    ConnectionTestIn,
    ConnectionTestOut,
    GroupList,
    PlaylistIn,
    PlaylistList,
    PlaylistOut,
    PlaylistPatch,
    StreamList,
    StreamOut,
)
from backend.publish.jobs import PUBLISH
from backend.schemas import TaskQueued
from backend.tasks.offload import run_blocking

log = logging.getLogger(__name__)

bp = Blueprint("playlists", __name__, url_prefix="/tic-api")

# Uploads may be as large as Config.max_upload_bytes; every other body stays capped at the JSON limit.
allow_large_bodies(r"^/tic-api/playlists/\d+/upload$")
allow_large_bodies(r"^/playlists/\d+/upload$")

_WRITE_BATCH = 1024 * 1024

#: Fields of a playlist that TVHeadend receives when the lineup is published: its network's name and
#: max streams, the HTTP headers of its streams' muxes, and whether its streams are published at all.
PUBLISHED_FIELDS = ("name", "enabled", "connection_limit", "user_agent", "headers")


def _requested_by() -> str | None:
    user = g.get("user")
    return user.username if user is not None else None


async def queue_import(source_id: int, *, force: bool) -> int:
    """Queue an import of a playlist (or find the one already queued) and return its task id."""
    svc = services()
    result = await svc.broker.enqueue(
        REFRESH_JOB,
        key=refresh_key(source_id),
        args={"playlist_id": source_id, "force": force},
        requested_by=_requested_by(),
    )
    return result.task_id


def published_values(source: PlaylistSource) -> tuple[Any, ...]:
    """What of a playlist a publish writes into TVHeadend, to tell whether an edit needs one."""
    return tuple(getattr(source, name) for name in PUBLISHED_FIELDS)


async def queue_lineup_publish() -> int:
    """Queue the TVHeadend publish after a playlist change that alters what TVHeadend gets.

    It shares the dedupe key of the publish the channels domain queues, so a burst of edits in both
    makes one queued publish (which itself waits for the edits to settle). Returns its task id.
    """
    result = await services().broker.enqueue(
        PUBLISH, key=PUBLISH, requested_by=_requested_by() or "playlists"
    )
    return result.task_id


@bp.get("/playlists")
@validate_response(PlaylistList, 200)
async def list_playlists() -> dict[str, Any]:
    """Playlist sources in their order, with the outcome of their last import."""
    limit, offset = page_args()
    async with services().db.session() as session:
        sources, total = await service.list_sources(session, limit, offset)
        return listing([service.source_out(s) for s in sources], total)


@bp.post("/playlists")
@validate_request(PlaylistIn)
@validate_response(PlaylistOut, 201)
async def create_playlist(data: PlaylistIn) -> tuple[dict[str, Any], int]:
    svc = services()
    async with svc.db.transaction() as session:
        source = await service.create_source(session, svc.keyring, data.model_dump())
        out = service.source_out(source)
    return out, 201


@bp.get("/playlists/<int:playlist_id>")
@validate_response(PlaylistOut, 200)
async def get_playlist(playlist_id: int) -> dict[str, Any]:
    async with services().db.session() as session:
        return service.source_out(await service.get_source(session, playlist_id))


@bp.patch("/playlists/<int:playlist_id>")
@validate_request(PlaylistPatch)
@validate_response(PlaylistOut, 200)
async def update_playlist(playlist_id: int, data: PlaylistPatch) -> dict[str, Any]:
    svc = services()
    changes = {key: getattr(data, key) for key in data.model_fields_set}
    async with svc.db.transaction() as session:
        source = await service.get_source(session, playlist_id)
        before = published_values(source)
        await service.update_source(session, svc.keyring, source, changes)
        out = service.source_out(source)
        published_changed = published_values(source) != before
    if published_changed:
        await queue_lineup_publish()
    return out


@bp.delete("/playlists/<int:playlist_id>")
async def delete_playlist(playlist_id: int) -> Response:
    """Delete a playlist and its streams; channels that used them keep a label of what was there."""
    svc = services()
    async with svc.db.transaction() as session:
        await service.delete_source(session, await service.get_source(session, playlist_id))
    await run_blocking(service.upload_path(svc.config.data_dir, playlist_id).unlink, True)
    # Its network, muxes and the channels that only it fed leave TVHeadend with the next publish.
    await queue_lineup_publish()
    return Response(status=204)


@bp.post("/playlists/update/<int:playlist_id>")
@validate_response(TaskQueued, 202)
async def update_playlist_streams(playlist_id: int) -> tuple[dict[str, Any], int]:
    """Queue an import now (the path TVH-IPTV-Config clients already use); answers the task id."""
    async with services().db.session() as session:
        await service.get_source(session, playlist_id)
    return {"task_id": await queue_import(playlist_id, force=True)}, 202


@bp.post("/playlists/<int:playlist_id>/upload")
@validate_response(TaskQueued, 202)
async def upload_playlist_file(playlist_id: int) -> tuple[dict[str, Any], int]:
    """Upload the file of an m3u_file playlist (multipart field `file`, or the raw body) and import it."""
    return {"task_id": await receive_playlist_file(playlist_id)}, 202


async def receive_playlist_file(playlist_id: int) -> int:
    """Store the request's file as the playlist's file, if it is a playlist, and queue its import.

    The old file stays until the new one has arrived complete and looks like a playlist.
    """
    svc = services()
    async with svc.db.session() as session:
        source = await service.get_source(session, playlist_id)
        if source.kind != "m3u_file":
            raise Conflict(
                "Only playlists of kind m3u_file take an uploaded file", code="PLAYLIST_NOT_FILE_KIND"
            )
    filename, size = await receive_upload(
        service.upload_path(svc.config.data_dir, playlist_id),
        default_name="playlist.m3u",
        kind="a playlist",
        sniff=importer.sniff_playlist,
        code="PLAYLIST_INVALID",
    )
    async with svc.db.transaction() as session:
        await service.record_upload(session, await service.get_source(session, playlist_id), filename)
    log.info("Playlist %d: received an uploaded file of %d bytes", playlist_id, size)
    return await queue_import(playlist_id, force=True)


@bp.post("/playlists/test")
@validate_request(ConnectionTestIn)
@validate_response(ConnectionTestOut, 200)
async def test_playlist_connection(data: ConnectionTestIn) -> dict[str, Any]:
    """Try source settings without saving: reach the provider and check it answers a playlist.

    Failures are an answer here (ok false, with the code and message an import would give), not an error.
    """
    svc = services()
    values = data.model_dump()
    stored: str | None = None
    if data.playlist_id is not None:
        async with svc.db.session() as session:
            source = await service.get_source(session, data.playlist_id)
            values = service.restore_secrets(source, values)
            if source.xc_password_enc and (not data.xc_password or data.xc_password == service.MASK):
                stored = svc.keyring.decrypt(source.xc_password_enc)
    if values.get("xc_password") == service.MASK:
        values["xc_password"] = None
    try:
        clean, _password = service.clean_source(
            {**values, "name": "test"}, password_stored=stored is not None or data.kind != "xtream"
        )
    except Invalid as exc:
        return {
            "ok": False,
            "code": exc.code,
            "message": exc.message,
            "details": {"fields": exc.fields or {}},
        }
    clean["xc_password"] = values.get("xc_password")
    return await importer.test_connection(svc, clean, stored)


@bp.get("/playlists/<int:playlist_id>/streams")
@validate_response(StreamList, 200)
async def list_playlist_streams(playlist_id: int) -> dict[str, Any]:
    """A playlist's streams in the order they first appeared: `q` searches names (case and accents ignored), `group`
    filters by group title (empty for streams without one)."""
    async with services().db.session() as session:
        await service.get_source(session, playlist_id)
        return await _streams(session, playlist_id)


@bp.get("/playlists/<int:playlist_id>/groups")
@validate_response(GroupList, 200)
async def list_playlist_groups(playlist_id: int) -> dict[str, Any]:
    """A playlist's group titles with the number of streams in each."""
    async with services().db.session() as session:
        await service.get_source(session, playlist_id)
        items = await service.list_groups(session, playlist_id=playlist_id)
    return listing(items, len(items))


@bp.get("/streams")
@validate_response(StreamList, 200)
async def list_streams() -> dict[str, Any]:
    """Streams of every playlist (or of `playlist_id`), with the same search and group filter."""
    async with services().db.session() as session:
        return await _streams(session, _int_arg("playlist_id"))


@bp.get("/streams/groups")
@validate_response(GroupList, 200)
async def list_stream_groups() -> dict[str, Any]:
    async with services().db.session() as session:
        items = await service.list_groups(session, playlist_id=_int_arg("playlist_id"))
    return listing(items, len(items))


@bp.get("/streams/<int:stream_id>")
@validate_response(StreamOut, 200)
async def get_stream(stream_id: int) -> dict[str, Any]:
    async with services().db.session() as session:
        return await service.get_stream(session, stream_id)


async def _streams(session: Any, playlist_id: int | None) -> dict[str, Any]:
    limit, offset = page_args(default_limit=50, max_limit=500)
    query = request.args.get("q")
    if query is not None and len(query) > 200:
        raise Invalid("The search is too long (at most 200 characters)", fields={"q": "too long"})
    items, total = await service.list_streams(
        session,
        playlist_id=playlist_id,
        query=query,
        group=request.args.get("group"),
        limit=limit,
        offset=offset,
    )
    return listing(items, total)


def _int_arg(name: str) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise Invalid(f"{name} must be a whole number", fields={name: "integer"}) from None
