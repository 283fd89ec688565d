"""Auth for every route: secure by default (admin), with explicit public, user and stream-key routes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

from quart import Response, current_app, g, redirect, request

from backend.auth import service as auth_service
from backend.auth.models import ADMIN
from backend.edge import client_ip, services, wants_json
from backend.errors import Forbidden, RateLimited, ServiceUnavailable, Unauthorized

F = TypeVar("F", bound=Callable[..., Any])

AUTH_ATTR = "_tic_auth"
SESSION_COOKIE = "tic_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Endpoints registered by libraries that are safe to serve without a login.
PUBLIC_ENDPOINTS = frozenset({"static", "openapi"})


def _mark(policy: str) -> Callable[[F], F]:
    def wrap(func: F) -> F:
        setattr(func, AUTH_ATTR, policy)
        return func

    return wrap


#: No login needed (setup, login, health, version, static assets).
public = _mark("public")
#: Any logged-in user (admin or streamer).
user_required = _mark("user")
#: Admins only; also the default for any route that says nothing.
admin_required = _mark("admin")
#: Client outputs: a valid stream key in the path (`stream_key`) or `?stream_key=`; nothing else.
stream_key_required = _mark("stream_key")
#: Admins only, for the TVHeadend proxy: TVHeadend's own UI cannot send TIC's CSRF header, so a
#: cookie-authenticated unsafe request must instead come from TIC's own origin (Origin, else Referer).
admin_proxy = _mark("admin_same_origin")
#: Media a browser plays while logged in and an IPTV client fetches with `?stream_key=` (recordings' HLS).
user_or_stream_key = _mark("user_or_stream_key")


def route_policy(view_functions: dict[str, Any], endpoint: str | None) -> str:
    """The auth policy of an endpoint: public, user, admin (the default), stream_key, user_or_stream_key
    or admin_same_origin."""
    if endpoint is None:
        return "public"
    if endpoint in PUBLIC_ENDPOINTS or endpoint.endswith(".static"):
        return "public"
    return getattr(view_functions.get(endpoint), AUTH_ATTR, "admin")


async def enforce_auth() -> Response | None:
    """before_request hook: identify the caller, gate setup, check role and CSRF."""
    svc = services()
    g.user = None
    g.auth_method = None
    g.csrf_token = None
    policy = route_policy(current_app.view_functions, request.endpoint)
    if policy == "public":
        return None
    if not svc.setup_done:
        async with svc.db.session() as session:
            svc.setup_done = await auth_service.count_users(session) > 0
        if not svc.setup_done:
            if wants_json():
                raise ServiceUnavailable(
                    "TIC has no admin yet: open /setup in a browser or POST /tic-api/setup",
                    code="SETUP_REQUIRED",
                )
            return redirect("/setup")  # type: ignore[return-value]
    if policy == "stream_key":
        await _authenticate_stream_key()
        return None
    await _identify()
    if policy == "user_or_stream_key":
        if g.user is None:
            if not request.args.get("stream_key"):
                raise Unauthorized("Log in, or add your stream key to the URL (?stream_key=…)")
            await _authenticate_stream_key()
        return None
    if g.user is None:
        if wants_json():
            raise Unauthorized("Log in first, or send an API token as 'Authorization: Bearer …'")
        return redirect("/login?next=" + quote(request.full_path.rstrip("?"), safe="/?=&"))  # type: ignore[return-value]
    if policy == "admin_same_origin":
        _enforce_admin_same_origin()
        return None
    if policy == "admin" and g.user.role != ADMIN:
        raise Forbidden("This needs an admin account", code="ADMIN_REQUIRED")
    if g.auth_method == "session" and request.method not in SAFE_METHODS:
        given = request.headers.get(CSRF_HEADER)
        if given is None and request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            given = (await request.form).get("csrf_token")
        if not auth_service.csrf_matches(g.csrf_token, given):
            raise Forbidden("Missing or wrong CSRF token: reload the page and try again", code="CSRF_FAILED")
    return None


# -- admin_same_origin: the TVHeadend proxy (a separate policy branch; nothing above depends on it) -------


def _enforce_admin_same_origin() -> None:
    if g.user.role != ADMIN:
        raise Forbidden("This needs an admin account", code="ADMIN_REQUIRED")
    if g.auth_method == "session" and request.method not in SAFE_METHODS:
        given = request.headers.get(CSRF_HEADER)
        if given is not None and auth_service.csrf_matches(g.csrf_token, given):
            return
        if not same_origin(request.headers, request.host):
            raise Forbidden(
                "This request did not come from TIC's own pages (Origin/Referer mismatch)",
                code="CROSS_ORIGIN",
            )


def _netloc(value: str, scheme: str) -> str:
    """host[:port] in lower case, without the scheme's default port."""
    value = value.strip().lower()
    for suffix, default_for in ((":80", "http"), (":443", "https")):
        if value.endswith(suffix) and scheme in (default_for, ""):
            return value[: -len(suffix)]
    return value


def same_origin(headers: Any, host: str) -> bool:
    """Whether the browser says the request comes from a page served by this host.

    Browsers send Origin on every cross-origin request and on all non-GET fetches and form posts; Referer
    is the fallback for old browsers. Neither, or "null" (sandboxed or privacy-stripped), is refused.
    Behind trusted reverse proxies the forwarded host counts too.
    """
    source = headers.get("Origin") or headers.get("Referer") or ""
    if not source or source == "null":
        return False
    parts = urlsplit(source)
    if not parts.netloc:
        return False
    origin = _netloc(parts.netloc, parts.scheme)
    allowed = {_netloc(host, "")}
    if services().config.trusted_proxies > 0 and headers.get("X-Forwarded-Host"):
        allowed.add(_netloc(headers["X-Forwarded-Host"].split(",")[-1], ""))
    return origin in allowed


async def _identify() -> None:
    svc = services()
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        token = header[7:].strip()
        async with svc.db.transaction() as session:
            user = await auth_service.resolve_api_token(session, token)
        if user is None:
            raise Unauthorized("The API token is unknown or revoked", code="BAD_TOKEN")
        g.user, g.auth_method = user, "token"
        return
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        async with svc.db.transaction() as session:
            info = await auth_service.resolve_session(session, cookie)
        if info is not None:
            g.user, g.auth_method, g.csrf_token = info.user, "session", info.session.csrf_token


async def _authenticate_stream_key() -> None:
    svc = services()
    ip = client_ip()
    wait = svc.limiters.stream_key_ip.retry_after(ip)
    if wait is not None:
        raise RateLimited(
            "Too many wrong stream keys from this address; try again later",
            headers={"Retry-After": str(wait)},
        )
    key = (request.view_args or {}).get("stream_key") or request.args.get("stream_key", "")
    async with svc.db.session() as session:
        user = await auth_service.resolve_stream_key(session, svc.keyring, key)
    if user is None:
        svc.limiters.stream_key_ip.record_failure(ip)
        raise Unauthorized(
            "Unknown stream key: copy the URL again from your TIC account page", code="BAD_STREAM_KEY"
        )
    g.user, g.auth_method = user, "stream_key"


def current_user_or_error() -> Any:
    if g.get("user") is None:
        raise Unauthorized("Log in first")
    return g.user


def set_session_cookie(response: Response, token: str) -> None:
    svc = services()
    secure = svc.config.secure_cookies or request.scheme == "https"
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=svc.config.session_days * 86400,
        httponly=True,
        samesite="Lax",
        secure=secure,
        path="/",
    )


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/")


async def login_with_password(username: str, password: str) -> tuple[Any, str, str]:
    """Check the rate limits and the password; returns (user, session token, csrf token)."""
    svc = services()
    ip = client_ip()
    user_key = username.strip().lower()
    wait = svc.limiters.login_ip.retry_after(ip) or svc.limiters.login_user.retry_after(user_key)
    if wait is not None:
        raise RateLimited(
            f"Too many failed logins; try again in {wait} s", headers={"Retry-After": str(wait)}
        )
    async with svc.db.transaction() as session:
        user = await auth_service.authenticate(session, username, password)
        if user is None:
            svc.limiters.login_ip.record_failure(ip)
            svc.limiters.login_user.record_failure(user_key)
            raise Unauthorized("Wrong user name or password", code="BAD_CREDENTIALS")
        token, row = await auth_service.create_session(session, user, days=svc.config.session_days, ip=ip)
        csrf = row.csrf_token
    svc.limiters.login_user.reset(user_key)
    return user, token, csrf
