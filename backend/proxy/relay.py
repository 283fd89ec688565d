"""Relaying HTTP requests and websockets to TVHeadend: streamed both ways, TIC's login injected."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

import aiohttp
from multidict import CIMultiDict
from quart import Response, g, render_template, request, websocket
from quart.wrappers.response import ResponseBody
from werkzeug.exceptions import RequestEntityTooLarge
from yarl import URL

from backend.edge import client_ip, services, wants_json
from backend.errors import AppError, PayloadTooLarge
from backend.proxy.upstream import (
    ProxyError,
    TvhAuth,
    Upstream,
    auth_rejected,
    connection_lost,
    not_configured,
    request_headers,
    response_headers,
    timed_out,
    unreachable,
)
from backend.publish import users as tvh_users
from backend.runtime import AppServices
from backend.settings.hooks import on_settings_changed
from backend.tvheadend.service import load_tvh_settings

log = logging.getLogger(__name__)

#: Where the app's services keep the proxy's upstream (settings and TVHeadend's learned auth scheme).
UPSTREAM_KEY = "tvh_proxy_upstream"
#: Settings are read again after this long, so another TIC replica's change is picked up too.
SETTINGS_TTL = 10.0
#: Bodies up to this size are read before sending, so a 401 with a fresh Digest nonce can be retried.
SMALL_BODY = 64 * 1024
#: TVHeadend holds a comet long-poll open for up to ~10 s before answering.
LONG_POLL_GRACE = 15.0
#: Socket reads from TVHeadend are up to this large; bigger reads mean fewer, larger writes to clients.
READ_BUFFER = 1024 * 1024
#: Headers aiohttp would add on its own; the browser's choice (or none) is relayed instead.
SKIP_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
#: Seconds between pings to TVHeadend on an idle websocket bridge (a missing pong closes the bridge).
WS_HEARTBEAT = 20.0
#: Largest websocket message relayed either way.
WS_MAX_MESSAGE = 16 * 1024 * 1024
TVH_SETTINGS_KEYS = frozenset({"tvh_url", "tvh_username", "tvh_password", "tvh_timeout_seconds"})


# ---------------------------------------------------------------------------------------------------
# The upstream, from settings
# ---------------------------------------------------------------------------------------------------


async def current_upstream(svc: AppServices) -> Upstream:
    """The configured TVHeadend; raises TVH_NOT_CONFIGURED when no URL is set."""
    cached: Upstream | None = svc.extras.get(UPSTREAM_KEY)
    now = time.monotonic()
    if cached is not None and now - cached.loaded_at < SETTINGS_TTL:
        return cached
    async with svc.db.session() as session:
        settings = await load_tvh_settings(session, svc.keyring)
    if not settings.configured:
        svc.extras.pop(UPSTREAM_KEY, None)
        raise not_configured()
    if cached is not None and cached.settings == settings:
        # Unchanged: keep the learned auth scheme and Digest nonce.
        cached.loaded_at = now
        return cached
    upstream = Upstream.from_settings(settings)
    svc.extras[UPSTREAM_KEY] = upstream
    return upstream


@on_settings_changed
async def _forget_upstream(svc: Any, changed: list[str]) -> None:
    if TVH_SETTINGS_KEYS.intersection(changed):
        svc.extras.pop(UPSTREAM_KEY, None)


async def auth_for_user(svc: AppServices, upstream: Upstream, user: Any) -> TvhAuth:
    """The TVHeadend login a stream-key channel stream is relayed with.

    The user's own TVHeadend login (issued on /account and synced into TVHeadend) when there is one,
    so TVHeadend's subscriptions and limits follow the TIC user; TIC's own login otherwise. Logins
    are cached on the upstream (rebuilt when the TVHeadend settings change) and keyed by the
    password, so a rotated password is picked up at once and the Digest nonce is reused otherwise.
    """
    async with svc.db.session() as session:
        creds = await tvh_users.synced_credentials(session, svc.keyring, int(user.id))
    if creds is None:
        return upstream.auth
    username, password = creds
    key = (int(user.id), hashlib.sha256(f"{username}\0{password}".encode()).hexdigest())
    auth = upstream.user_auth.get(key)
    if auth is None:
        for stale in [k for k in upstream.user_auth if k[0] == key[0]]:
            del upstream.user_auth[stale]
        auth = upstream.user_auth[key] = TvhAuth(username, password)
    return auth


# ---------------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------------


class UpstreamBody(ResponseBody):
    """TVHeadend's reply body, relayed as it arrives; the upstream connection is closed on exit.

    Quart enters and exits this around sending the body, also when the client goes away mid-stream
    (the handler is cancelled), so the upstream request never outlives the client.
    """

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp

    async def __aenter__(self) -> UpstreamBody:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        try:
            while chunk := await self._resp.content.readany():
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            # Ending early is all that can be done once the status line is out; with a Content-Length
            # the client sees a short body.
            log.info("TVHeadend stopped sending %s mid-body: %s", self._resp.url.path, type(exc).__name__)
        finally:
            self.close()

    def close(self) -> None:
        if self._resp.closed:
            return
        if self._resp.content.at_eof():
            self._resp.release()
        else:
            # An unfinished body (an endless stream the client left) cannot go back to the pool.
            self._resp.close()


class _UploadGuard:
    """Streams the client's body upstream, counting bytes against the upload limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.sent = 0
        self.too_large = False

    async def stream(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in request.body:
                self.sent += len(chunk)
                if self.sent > self.limit:
                    raise RequestEntityTooLarge()
                yield chunk
        except RequestEntityTooLarge:
            # Quart's own cap (on what is buffered at once) or ours (on the total) was passed.
            self.too_large = True
            raise PayloadTooLarge(f"The request body is larger than {self.limit} bytes") from None


def client_headers() -> CIMultiDict[str]:
    svc = services()
    forwarded = request.headers.get("X-Forwarded-For", "") if svc.config.trusted_proxies > 0 else ""
    return request_headers(
        request.headers.items(),
        client_ip=client_ip(),
        proto=request.scheme,
        host=request.host,
        forwarded_for=forwarded,
    )


def _header_timeout(upstream: Upstream, tail: str) -> float:
    return upstream.timeout + (LONG_POLL_GRACE if tail.startswith("comet/poll") else 0.0)


async def _send(
    session: aiohttp.ClientSession,
    upstream: Upstream,
    auth: TvhAuth,
    method: str,
    url: URL,
    headers: CIMultiDict[str],
    data: Any,
    header_timeout: float | None,
) -> aiohttp.ClientResponse:
    out = headers.copy()
    authorization = auth.header(method, url)
    if authorization is not None:
        out["Authorization"] = authorization
    connect = aiohttp.ClientTimeout(
        total=None, connect=upstream.timeout, sock_connect=upstream.timeout, sock_read=None
    )
    try:
        async with asyncio.timeout(header_timeout):
            return await session.request(
                method,
                url,
                headers=out,
                data=data,
                allow_redirects=False,
                timeout=connect,
                skip_auto_headers=SKIP_AUTO_HEADERS,
                auto_decompress=False,
                read_bufsize=READ_BUFFER,
            )
    except aiohttp.ClientConnectorError as exc:
        reason = exc.os_error.strerror or type(exc.os_error).__name__
        raise unreachable(upstream.server, reason) from exc
    except TimeoutError as exc:
        raise timed_out(upstream.server, header_timeout or upstream.timeout) from exc
    except aiohttp.ClientConnectionError as exc:
        raise connection_lost(upstream.server) from exc


async def _prime(session: aiohttp.ClientSession, upstream: Upstream, auth: TvhAuth) -> None:
    """Learn a fresh Digest nonce with a bodiless request, before sending a body that cannot be resent."""
    url = upstream.url("api/serverinfo")
    resp = await _send(session, upstream, auth, "GET", url, CIMultiDict(), None, upstream.timeout)
    try:
        if resp.status == 401:
            auth.learn(resp.headers.getall("WWW-Authenticate", ()))
    finally:
        resp.release()


async def open_upstream(
    upstream: Upstream,
    auth: TvhAuth,
    method: str,
    tail: str,
    query: str,
    headers: CIMultiDict[str],
    *,
    with_body: bool,
) -> aiohttp.ClientResponse:
    """Send the request to TVHeadend and return its reply once the headers are in (body not read)."""
    svc = services()
    session = svc.http.proxy
    url = upstream.url(tail, query)
    length = request.content_length
    data: Any = None
    guard: _UploadGuard | None = None
    if with_body and length is not None and length <= SMALL_BODY:
        data = await request.get_data(cache=False)
        headers["Content-Length"] = str(len(data))
    elif with_body:
        guard = _UploadGuard(svc.config.max_upload_bytes)
        data = guard.stream()
        if length is not None:
            # TVHeadend drops POSTs without a Content-Length, so a known length is never sent chunked.
            headers["Content-Length"] = str(length)
        if auth.needs_priming():
            await _prime(session, upstream, auth)
    timeout = None if guard is not None else _header_timeout(upstream, tail)
    try:
        resp = await _send(session, upstream, auth, method, url, headers, data, timeout)
    except ProxyError:
        if guard is not None and guard.too_large:
            raise PayloadTooLarge(
                f"The request body is larger than {guard.limit} bytes", code="PAYLOAD_TOO_LARGE"
            ) from None
        raise
    if resp.status == 401 and auth.learn(resp.headers.getall("WWW-Authenticate", ())) and guard is None:
        resp.release()
        resp = await _send(session, upstream, auth, method, url, headers, data, timeout)
    if resp.status in (401, 403):
        resp.release()
        raise auth_rejected(resp.status, auth.username)
    return resp


def relay_response(resp: aiohttp.ClientResponse, upstream: Upstream) -> Response:
    """TVHeadend's status and headers (hop-by-hop ones removed) with the body streamed as it arrives."""
    pairs = response_headers(resp.headers.items(), upstream)
    response = Response(UpstreamBody(resp), status=resp.status)
    response.headers.clear()
    for name, value in pairs:
        response.headers.add(name, value)
    # Endless streams and long downloads must not be cut by Quart's default response timeout.
    response.timeout = None
    return response


async def relay_http(
    upstream: Upstream, auth: TvhAuth, tail: str, query: str, headers: CIMultiDict[str]
) -> Response:
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    with_body = (request.content_length or 0) > 0 or chunked
    resp = await open_upstream(upstream, auth, request.method, tail, query, headers, with_body=with_body)
    return relay_response(resp, upstream)


async def error_response(exc: AppError) -> Response:
    """A proxy failure as JSON for API clients and scripts, or as a page that says what to fix."""
    accept = request.accept_mimetypes
    as_json = (
        wants_json()
        or request.headers.get("X-Requested-With", "").lower() == "xmlhttprequest"
        or accept.best_match(["text/html", "application/json"]) == "application/json"
    )
    if as_json:
        response = Response(json.dumps(exc.to_dict()), status=exc.status, content_type="application/json")
    else:
        body = await render_template(
            "tvheadend/proxy_error.html",
            user=g.get("user"),
            csrf_token=g.get("csrf_token"),
            status=exc.status,
            code=exc.code,
            message=exc.message,
        )
        response = Response(body, status=exc.status, content_type="text/html; charset=utf-8")
    for name, value in exc.headers.items():
        response.headers[name] = value
    return response


# ---------------------------------------------------------------------------------------------------
# Websockets
# ---------------------------------------------------------------------------------------------------


def ws_error_response(exc: AppError) -> Response:
    """Sent instead of the 101 when the handshake is refused; browsers only see the status."""
    response = Response(json.dumps(exc.to_dict()), status=exc.status, content_type="application/json")
    # Hypercorn cannot take a second request on a connection whose websocket handshake it refused.
    response.headers["Connection"] = "close"
    return response


async def _ws_connect(
    upstream: Upstream, url: URL, protocols: list[str], headers: CIMultiDict[str]
) -> aiohttp.ClientWebSocketResponse:
    session = services().http.proxy
    heartbeat = float(services().config.extra.get("tvh_ws_heartbeat", WS_HEARTBEAT))
    for attempt in (1, 2):
        out = headers.copy()
        authorization = upstream.auth.header("GET", url)
        if authorization is not None:
            out["Authorization"] = authorization
        try:
            async with asyncio.timeout(upstream.timeout):
                return await session.ws_connect(
                    url,
                    protocols=protocols,
                    headers=out,
                    heartbeat=heartbeat,
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0),
                    max_msg_size=WS_MAX_MESSAGE,
                    autoping=True,
                    autoclose=True,
                )
        except aiohttp.WSServerHandshakeError as exc:
            challenges = exc.headers.getall("WWW-Authenticate", ()) if exc.headers else ()
            if exc.status == 401 and attempt == 1 and upstream.auth.learn(challenges):
                continue
            if exc.status in (401, 403):
                raise auth_rejected(exc.status, upstream.auth.username) from exc
            raise ProxyError(
                f"TVHeadend refused the websocket at {url.path} with HTTP {exc.status}",
                code="TVH_WEBSOCKET_REFUSED",
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            raise unreachable(upstream.server, exc.os_error.strerror or type(exc.os_error).__name__) from exc
        except TimeoutError as exc:
            raise timed_out(upstream.server, upstream.timeout) from exc
        except aiohttp.ClientConnectionError as exc:
            raise connection_lost(upstream.server) from exc
    raise AssertionError("unreachable")  # pragma: no cover


async def bridge_websocket(upstream: Upstream, tail: str, query: str) -> Response | None:
    """Connect to TVHeadend first, then accept the browser with the subprotocol TVHeadend chose, then
    relay frames both ways until either side closes; the other side is then closed at once."""
    svc = services()
    forwarded = websocket.headers.get("X-Forwarded-For", "") if svc.config.trusted_proxies > 0 else ""
    headers = request_headers(
        [(k, v) for k, v in websocket.headers.items() if k.lower() in ("user-agent", "accept-language")],
        client_ip=websocket.remote_addr or "unknown",
        proto="https" if websocket.scheme in ("wss", "https") else "http",
        host=websocket.host,
        forwarded_for=forwarded,
    )
    requested = list(websocket.requested_subprotocols)
    try:
        upstream_ws = await _ws_connect(upstream, upstream.url(tail, query), requested, headers)
    except AppError as exc:
        log.info("Websocket to TVHeadend %s failed: %s", tail, exc.code)
        return ws_error_response(exc)
    chosen = upstream_ws.protocol if upstream_ws.protocol in requested else None
    await websocket.accept(subprotocol=chosen)
    down = asyncio.create_task(_upstream_to_browser(upstream_ws), name="tvh-ws-down")
    up = asyncio.create_task(_browser_to_upstream(upstream_ws), name="tvh-ws-up")
    try:
        done, _pending = await asyncio.wait({down, up}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Also reached when the browser went away: Quart cancels this handler.
        for task in (down, up):
            task.cancel()
        await asyncio.gather(down, up, return_exceptions=True)
        await upstream_ws.close()
    if down in done:
        code = upstream_ws.close_code
        await websocket.close(code if code is not None and _sendable_close_code(code) else 1011)
    return None


def _sendable_close_code(code: int) -> bool:
    # 1005, 1006 and 1015 describe what happened on the wire and must never be sent in a frame.
    return 1000 <= code <= 4999 and code not in (1004, 1005, 1006, 1015)


async def _upstream_to_browser(upstream_ws: aiohttp.ClientWebSocketResponse) -> None:
    async for msg in upstream_ws:
        if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            await websocket.send(msg.data)
        elif msg.type == aiohttp.WSMsgType.ERROR:
            log.info("TVHeadend websocket failed: %s", upstream_ws.exception())
            return


async def _browser_to_upstream(upstream_ws: aiohttp.ClientWebSocketResponse) -> None:
    while True:
        data = await websocket.receive()
        try:
            if isinstance(data, str):
                await upstream_ws.send_str(data)
            else:
                await upstream_ws.send_bytes(data)
        except ConnectionResetError:
            # TVHeadend is closing; the other direction ends the bridge.
            return
