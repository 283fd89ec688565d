"""Client output routes (M3U, XMLTV, HDHomeRun) behind stream keys, plus the URLs page data and a rebuild."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, BinaryIO
from urllib.parse import quote

from quart import Blueprint, Response, g, request
from quart.wrappers.response import ResponseBody
from quart_schema import validate_response
from sqlalchemy import select

from backend.auth import service as auth_service
from backend.auth.guard import stream_key_required, user_required
from backend.edge import services
from backend.errors import NotFound, ServiceUnavailable
from backend.outputs import formats, render, service
from backend.outputs.jobs import BUILD_XMLTV
from backend.playlists.models import PlaylistSource
from backend.schemas import TaskQueued
from backend.tasks.offload import run_blocking

bp = Blueprint("outputs", __name__, url_prefix="/tic-api")

#: Bytes read from the guide file per thread hop while serving it.
READ_CHUNK = 256 * 1024
M3U_TYPE = "audio/x-mpegurl; charset=utf-8"
XML_TYPE = "application/xml; charset=utf-8"
#: How long a client is told to wait when the guide file does not exist yet and is being built.
BUILDING_RETRY_AFTER = 30
#: AppServices.extras key of the lineup reads in flight (see _shared_lineup).
INFLIGHT = "outputs.lineup_reads"
#: AppServices.extras key of the remembered lineup entries (see render.EntryMemo).
ENTRY_MEMO = "outputs.entry_memo"


def _request_stream_key() -> str:
    """The key the guard already accepted (path segment or query string)."""
    return str((request.view_args or {}).get("stream_key") or request.args.get("stream_key", ""))


def _base_url(settings: service.OutputSettings) -> str:
    """public_base_url when set; otherwise what the client used to reach us (trusted proxies' view)."""
    if settings.public_base_url:
        return settings.public_base_url
    scheme, host = request.scheme, request.host
    if services().config.trusted_proxies > 0:
        scheme = request.headers.get("X-Forwarded-Proto", scheme).split(",")[0].strip() or scheme
        host = request.headers.get("X-Forwarded-Host", host).split(",")[0].strip() or host
    return f"{scheme}://{host}"


def _entry_memo() -> render.EntryMemo:
    """The app's remembered lineup entries (one per app, so test apps never share one)."""
    extras = services().extras
    memo: render.EntryMemo | None = extras.get(ENTRY_MEMO)
    if memo is None:
        memo = extras[ENTRY_MEMO] = render.EntryMemo()
    return memo


async def _load_lineup(
    playlist_id: int | None,
) -> tuple[service.OutputSettings, list[service.OutputChannel]]:
    svc = services()
    async with svc.db.session() as session:
        if playlist_id is not None:
            await service.get_playlist(session, playlist_id)
        settings = await service.output_settings(session, svc.keyring)
        return settings, await service.output_channels(session, playlist_id)


async def _shared_lineup(
    playlist_id: int | None,
) -> tuple[service.OutputSettings, list[service.OutputChannel]]:
    """The lineup for an output, read once for all requests that arrive while a read is under way.

    Clients tend to ask together (a household's boxes at power-on, Plex and its guide refresh);
    they share one query instead of queueing twenty. Nothing is kept after the read finishes, so
    no request sees data older than the read it joined.
    """
    inflight: dict[int | None, asyncio.Future[Any]] = services().extras.setdefault(INFLIGHT, {})
    task = inflight.get(playlist_id)
    if task is None:
        task = asyncio.ensure_future(_load_lineup(playlist_id))
        inflight[playlist_id] = task
        task.add_done_callback(
            lambda done: inflight.pop(playlist_id, None) if inflight.get(playlist_id) is done else None
        )
    # Shielded: one client hanging up must not cancel the read the others are waiting for.
    result: tuple[service.OutputSettings, list[service.OutputChannel]] = await asyncio.shield(task)
    return result


async def _playlist_response(playlist_id: int | None) -> Response:
    settings, channels = await _shared_lineup(playlist_id)
    base, key = _base_url(settings), _request_stream_key()
    context = service.item_context(settings, base, key)
    body = render.m3u_body(_entry_memo(), channels, context, service.xmltv_url(base, key))
    return Response(body, status=200, content_type=M3U_TYPE, headers={"Cache-Control": "no-store"})


@bp.get("/playlist/combined.m3u")
@stream_key_required
async def get_combined_playlist() -> Response:
    """Every enabled, playable channel as M3U, pointing at TIC's XMLTV guide."""
    return await _playlist_response(None)


@bp.get("/playlist/<int:playlist_id>.m3u")
@stream_key_required
async def get_source_playlist(playlist_id: int) -> Response:
    """The channels that have a working source in one playlist source, as M3U."""
    return await _playlist_response(playlist_id)


# --- XMLTV ------------------------------------------------------------------------------------------


class _OpenFileBody(ResponseBody):
    """Streams an already opened file in chunks read in a worker thread; closes it when done.

    Opening first and taking the size from that descriptor means a rebuild that swaps the file
    mid-download cannot change what this response sends: the old inode stays readable.
    """

    def __init__(self, handle: BinaryIO, size: int) -> None:
        self._handle = handle
        self._size = size

    async def __aenter__(self) -> _OpenFileBody:
        return self

    async def __aexit__(
        self, exc_type: type | None, exc_value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._handle.close()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        remaining = self._size
        while remaining > 0:
            data = await run_blocking(self._handle.read, min(READ_CHUNK, remaining))
            if not data:
                return
            remaining -= len(data)
            yield data


def _open_with_stat(path: Any) -> tuple[BinaryIO, os.stat_result] | None:
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed by _OpenFileBody or the caller
    except FileNotFoundError:
        return None
    return handle, os.fstat(handle.fileno())


def _not_modified(etag: str, last_modified: datetime) -> bool:
    """RFC 9110: If-None-Match decides when present; otherwise If-Modified-Since."""
    if "If-None-Match" in request.headers:
        return request.if_none_match.contains_weak(etag)
    since = request.if_modified_since
    return since is not None and last_modified.replace(microsecond=0) <= since


async def _guide_response(packed: bool) -> Response:
    svc = services()
    files = service.xmltv_files(svc.config.data_dir)
    gzip_encoding = not packed and request.accept_encodings.quality("gzip") > 0
    opened = await run_blocking(_open_with_stat, files.gz if packed or gzip_encoding else files.xml)
    if opened is None:
        await svc.broker.enqueue(BUILD_XMLTV, requested_by="client")
        raise ServiceUnavailable(
            "The guide has not been built yet; it is being built now, try again shortly",
            code="XMLTV_NOT_READY",
            headers={"Retry-After": str(BUILDING_RETRY_AFTER)},
        )
    handle, stat = opened
    etag = f"{stat.st_ino:x}-{stat.st_mtime_ns:x}-{stat.st_size:x}"
    last_modified = datetime.fromtimestamp(stat.st_mtime, UTC)
    headers = {"Cache-Control": "no-cache"}
    if not packed:
        headers["Vary"] = "Accept-Encoding"
    not_modified = _not_modified(etag, last_modified)
    if not_modified or request.method == "HEAD":
        handle.close()
        response = Response(b"", status=304 if not_modified else 200, headers=headers)
    else:
        response = Response(_OpenFileBody(handle, stat.st_size), status=200, headers=headers)
        # A large guide on a slow link takes longer than Quart's default response timeout.
        response.timeout = None
    response.set_etag(etag)
    response.last_modified = last_modified
    if response.status_code == 200:
        response.content_type = "application/gzip" if packed else XML_TYPE
        if gzip_encoding:
            response.headers["Content-Encoding"] = "gzip"
        response.headers["Content-Length"] = str(stat.st_size)
    return response


@bp.get("/epg/xmltv.xml")
@stream_key_required
async def get_xmltv() -> Response:
    """The lineup's XMLTV guide, served from the last built file (gzip-encoded when the client accepts it)."""
    return await _guide_response(packed=False)


@bp.get("/epg/xmltv.xml.gz")
@stream_key_required
async def get_xmltv_gz() -> Response:
    """The same guide as a .gz file."""
    return await _guide_response(packed=True)


# --- HDHomeRun emulation -------------------------------------------------------------------------------


async def _device(target: str) -> tuple[service.HdhrDevice, int | None, service.OutputSettings]:
    """The emulated tuner for "combined" or a playlist id; anything else is a 404."""
    if target != "combined" and not (target.isdigit() and len(target) < 10):
        raise NotFound("No such HDHomeRun device: use 'combined' or a playlist id", code="DEVICE_NOT_FOUND")
    playlist_id = None if target == "combined" else int(target)
    svc = services()
    async with svc.db.session() as session:
        name = "TIC"
        if playlist_id is not None:
            playlist = await service.get_playlist(session, playlist_id)
            name = f"TIC {formats.one_line(playlist.name)}"
        settings = await service.output_settings(session, svc.keyring)
        tuners = await service.tuner_count(session, playlist_id, settings.default_tuners)
    base = f"{_base_url(settings)}/tic-api/hdhr_device/{quote(_request_stream_key(), safe='')}/{target}"
    device = service.hdhr_device(svc.keyring, target, name, base, tuners)
    return device, playlist_id, settings


@bp.get("/hdhr_device/<stream_key>/<target>/discover.json")
@stream_key_required
async def get_hdhr_discover(stream_key: str, target: str) -> dict[str, Any]:
    device, _, _ = await _device(target)
    return formats.hdhr_discover(device)


@bp.get("/hdhr_device/<stream_key>/<target>/lineup_status.json")
@stream_key_required
async def get_hdhr_lineup_status(stream_key: str, target: str) -> dict[str, Any]:
    await _device(target)
    return formats.hdhr_lineup_status()


@bp.get("/hdhr_device/<stream_key>/<target>/lineup.json")
@stream_key_required
async def get_hdhr_lineup(stream_key: str, target: str) -> Response:
    """The channels with GuideNumber = channel number and their stream URLs."""
    _, playlist_id, _ = await _device(target)
    settings, channels = await _shared_lineup(playlist_id)
    context = service.item_context(settings, _base_url(settings), stream_key)
    return Response(
        render.hdhr_lineup_body(_entry_memo(), channels, context),
        status=200,
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


@bp.post("/hdhr_device/<stream_key>/<target>/lineup.post")
@stream_key_required
async def post_hdhr_lineup_scan(stream_key: str, target: str) -> Response:
    """Plex asks the tuner to rescan; the lineup is always current, so there is nothing to do."""
    await _device(target)
    return Response(b"", status=200)


@bp.get("/hdhr_device/<stream_key>/<target>/device.xml")
@stream_key_required
async def get_hdhr_device_xml(stream_key: str, target: str) -> Response:
    device, _, _ = await _device(target)
    return Response(formats.hdhr_device_xml(device), status=200, content_type=XML_TYPE)


# --- for the admin UI and users -----------------------------------------------------------------------


@bp.get("/outputs")
@user_required
async def get_outputs() -> dict[str, Any]:
    """The caller's own client URLs (with their stream key) and the state of the guide file."""
    svc = services()
    async with svc.db.session() as session:
        settings = await service.output_settings(session, svc.keyring)
        playlists = (
            await session.execute(
                select(PlaylistSource.id, PlaylistSource.name).order_by(
                    PlaylistSource.position, PlaylistSource.id
                )
            )
        ).all()
    key = auth_service.reveal_stream_key(svc.keyring, g.user)
    base = _base_url(settings)
    quoted = quote(key, safe="")
    meta = await run_blocking(service.read_xmltv_meta, svc.config.data_dir)
    return {
        "m3u": f"{base}/tic-api/playlist/combined.m3u?stream_key={quoted}",
        "xmltv": service.xmltv_url(base, key),
        "xmltv_gz": f"{base}/tic-api/epg/xmltv.xml.gz?stream_key={quoted}",
        "hdhr": f"{base}/tic-api/hdhr_device/{quoted}/combined",
        "playlists": [
            {
                "id": playlist_id,
                "name": name,
                "m3u": f"{base}/tic-api/playlist/{playlist_id}.m3u?stream_key={quoted}",
                "hdhr": f"{base}/tic-api/hdhr_device/{quoted}/{playlist_id}",
            }
            for playlist_id, name in playlists
        ],
        "stream_mode": settings.mode,
        "xmltv_file": meta,
    }


@bp.post("/outputs/xmltv/rebuild")
@validate_response(TaskQueued, 202)
async def rebuild_xmltv() -> tuple[dict[str, Any], int]:
    """Build the guide file now (queued; deduplicated with a build already waiting or running)."""
    queued = await services().broker.enqueue(BUILD_XMLTV, requested_by=g.user.username)
    return {"task_id": queued.task_id}, 202
