"""Routes of the TVHeadend proxy: /tic-tvh/ for admins (HTTP and websockets) and stream-key streams."""

from __future__ import annotations

import re
from typing import Any, cast
from urllib.parse import quote

from quart import Blueprint, Quart, Response, g, request, websocket
from quart_schema import hide

from backend.auth import service as auth_service
from backend.auth.guard import SESSION_COOKIE, admin_proxy, same_origin, stream_key_required
from backend.auth.models import ADMIN
from backend.dvr import service as dvr_service
from backend.edge import allow_large_bodies, services
from backend.errors import AppError, Forbidden, NotFound
from backend.proxy import backpressure, relay
from backend.proxy.upstream import request_headers

bp = Blueprint("proxy", __name__)

PREFIX = "/tic-tvh"
# Uploads through TVHeadend's UI may be large; they are streamed, never held in memory.
allow_large_bodies(r"^/tic-tvh/")
# Streamed request bodies need backpressure from Quart's ASGI layer; see backend/proxy/backpressure.py.
# This belongs in create_app() (app.py is shared), where the lead may move it.
bp.record_once(lambda state: backpressure.install(cast(Quart, state.app)))

PROXY_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_UUID_RE = re.compile(r"^[0-9a-f]{32}$")
_PROFILE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
#: The only request headers a stream-key client may pass on to TVHeadend.
_STREAM_HEADERS = ("user-agent", "range", "if-range", "accept")


def _tail() -> str:
    """The request path after /tic-tvh/, still percent-encoded exactly as the browser sent it."""
    raw = request.scope.get("raw_path") or quote(request.path).encode()
    path = raw.decode("latin-1")
    return path[len(PREFIX) :].lstrip("/") if path.startswith(PREFIX) else ""


@bp.route(f"{PREFIX}/", methods=PROXY_METHODS, provide_automatic_options=False)
@admin_proxy
@hide
async def proxy_tvheadend_root() -> Response:
    """TVHeadend's start page (it redirects to its web UI), for admins."""
    return await _proxy()


@bp.route(f"{PREFIX}/<path:path>", methods=PROXY_METHODS, provide_automatic_options=False)
@admin_proxy
@hide
async def proxy_tvheadend(path: str) -> Response:
    """TVHeadend's web UI and API, with TIC's TVHeadend login injected (admins only)."""
    del path  # the raw path is used, so TVHeadend sees exactly what the browser asked for
    return await _proxy()


async def _proxy() -> Response:
    try:
        upstream = await relay.current_upstream(services())
        headers = relay.client_headers()
        return await relay.relay_http(
            upstream, upstream.auth, _tail(), request.query_string.decode("latin-1"), headers
        )
    except AppError as exc:
        return await relay.error_response(exc)


@bp.websocket(f"{PREFIX}/<path:path>")
@admin_proxy
@hide
async def proxy_tvheadend_websocket(path: str) -> Response | None:
    """TVHeadend's websockets (comet/ws), bridged both ways after the same admin check."""
    del path
    refusal = await _websocket_refusal()
    if refusal is not None:
        return refusal
    raw = websocket.scope.get("raw_path") or quote(websocket.path).encode()
    tail = raw.decode("latin-1")[len(PREFIX) :].lstrip("/")
    try:
        upstream = await relay.current_upstream(services())
    except AppError as exc:
        return relay.ws_error_response(exc)
    return await relay.bridge_websocket(upstream, tail, websocket.query_string.decode("latin-1"))


async def _websocket_refusal() -> Response | None:
    """Websockets skip the before_request guard, so the admin and same-origin checks happen here.

    Browsers send cookies and Origin on the handshake but no custom headers; a cross-site page must not
    be able to open an admin's TVHeadend websocket, so Origin has to match.
    """
    svc = services()
    user: Any = None
    header = websocket.headers.get("Authorization", "")
    async with svc.db.transaction() as session:
        if header.lower().startswith("bearer "):
            user = await auth_service.resolve_api_token(session, header[7:].strip())
            method = "token"
        else:
            cookie = websocket.cookies.get(SESSION_COOKIE)
            info = await auth_service.resolve_session(session, cookie) if cookie else None
            user = info.user if info is not None else None
            method = "session"
    if user is None:
        return _refuse(401, "UNAUTHORIZED", "Log in to TIC first")
    if user.role != ADMIN:
        return _refuse(403, "ADMIN_REQUIRED", "This needs an admin account")
    if method == "session" and not same_origin(websocket.headers, websocket.host):
        return _refuse(403, "CROSS_ORIGIN", "This websocket was not opened from TIC's own pages")
    g.user = user
    return None


def _refuse(status: int, code: str, message: str) -> Response:
    return relay.ws_error_response(AppError(message, code=code, status=status))


# ---------------------------------------------------------------------------------------------------
# Stream-key routes: exactly two path shapes of TVHeadend, nothing else
# ---------------------------------------------------------------------------------------------------


async def _relay_stream(kind: str, uuid: str) -> Response:
    if not _UUID_RE.match(uuid):
        raise NotFound(
            "No such TVHeadend channel or recording: the id must be 32 hex digits", code="NOT_FOUND"
        )
    svc = services()
    try:
        upstream = await relay.current_upstream(svc)
        headers = request_headers(
            [(k, v) for k, v in request.headers.items() if k.lower() in _STREAM_HEADERS],
            client_ip=request.remote_addr or "unknown",
            proto=request.scheme,
            host=request.host,
        )
        profile = request.args.get("profile", "")
        query = f"profile={profile}" if profile and _PROFILE_RE.match(profile) else ""
        # Channel streams go out as the user's own TVHeadend login when they have one; recordings as
        # TIC's, which owns them in TVHeadend (TIC has already checked the user's DVR rights).
        auth = await relay.auth_for_user(svc, upstream, g.user) if kind == "stream/channel" else upstream.auth
        resp = await relay.open_upstream(
            upstream, auth, request.method, f"{kind}/{uuid}", query, headers, with_body=False
        )
        return relay.relay_response(resp, upstream)
    except AppError as exc:
        return await relay.error_response(exc)


@bp.route("/tic-api/tvh_stream/stream/channel/<uuid>", methods=["GET"])
@stream_key_required
async def stream_channel(uuid: str) -> Response:
    """A TVHeadend channel stream (MPEG-TS, endless) for IPTV clients; `?stream_key=` authenticates.

    `?profile=` is passed on to TVHeadend; nothing else of the query is.
    """
    return await _relay_stream("stream/channel", uuid)


@bp.route("/tic-api/tvh_stream/dvrfile/<uuid>", methods=["GET"])
@stream_key_required
async def stream_dvrfile(uuid: str) -> Response:
    """A TVHeadend recording file (Range supported) for users with DVR access; `?stream_key=` authenticates."""
    if g.user.role != ADMIN and g.user.dvr_access == "none":
        raise Forbidden("Your TIC account has no DVR access", code="DVR_ACCESS_REQUIRED")
    if _UUID_RE.match(uuid):
        async with services().db.session() as session:
            await dvr_service.check_recording_file_access(session, g.user, uuid)
    return await _relay_stream("dvrfile", uuid)
