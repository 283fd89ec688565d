"""The proxy's upstream: TIC's TVHeadend login (Basic or Digest), header filtering and error mapping."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from multidict import CIMultiDict
from yarl import URL

from backend.errors import AppError
from backend.tvheadend.auth import TvhAuth
from backend.tvheadend.service import TvhSettings

# RFC 9110 §7.6.1 connection-specific headers, plus the ones a proxy must never pass on.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
#: Request headers the browser sends for TIC, never for TVHeadend: TIC's session and CSRF token, the
#: browser's own credentials, and forwarding headers a client could forge (TIC sets its own).
DROPPED_REQUEST_HEADERS = frozenset(
    {
        "host",
        "cookie",
        "authorization",
        "x-csrf-token",
        "remote-addr",  # added by Quart, not sent by the client
        "content-length",  # set again from the body TIC actually sends
        "expect",
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-real-ip",
    }
)
#: Response headers that must not reach the browser: a TVHeadend login challenge would make the
#: browser prompt for TVHeadend's password, which TIC holds instead.
DROPPED_RESPONSE_HEADERS = frozenset({"www-authenticate"})


# ---------------------------------------------------------------------------------------------------
# Errors: what the browser (HTML) or an API client (JSON) is told when TVHeadend cannot be used
# ---------------------------------------------------------------------------------------------------


class ProxyError(AppError):
    """TVHeadend could not serve a proxied request; 502 unless it timed out (504)."""

    status = 502
    code = "TVH_PROXY_ERROR"


def not_configured() -> ProxyError:
    return ProxyError(
        "TVHeadend is not configured: set its URL (with the HTTP root, e.g. http://tvheadend:9981/tic-tvh), "
        "username and password in Settings",
        code="TVH_NOT_CONFIGURED",
    )


def unreachable(server: str, reason: str) -> ProxyError:
    return ProxyError(
        f"Cannot reach TVHeadend at {server} ({reason}): check that it is running and that the TVHeadend "
        "URL in Settings is right",
        code="TVH_UNREACHABLE",
    )


def timed_out(server: str, seconds: float) -> ProxyError:
    return ProxyError(
        f"TVHeadend at {server} did not answer within {seconds:g} s: it may be overloaded or stuck, or "
        "the TVHeadend URL in Settings points at a host that drops connections",
        code="TVH_TIMEOUT",
        status=504,
    )


def connection_lost(server: str) -> ProxyError:
    return ProxyError(
        f"TVHeadend at {server} closed the connection without answering: it does this for methods it "
        "does not support and for channels without a working service",
        code="TVH_CONNECTION_LOST",
    )


def auth_rejected(status: int, username: str) -> ProxyError:
    if status == 401 and not username:
        return ProxyError(
            "TVHeadend asked for a login: set the TVHeadend username and password in Settings",
            code="TVH_AUTH_REQUIRED",
        )
    if status == 401:
        return ProxyError(
            "TVHeadend did not accept TIC's login: check the TVHeadend username and password in Settings "
            "and that TVHeadend's authentication type is Digest or 'Both plain and digest'",
            code="TVH_AUTH_REQUIRED",
        )
    return ProxyError(
        f"TVHeadend refused TIC's user '{username}': the password in Settings is wrong, the user does not "
        "exist, or it lacks the right for this page (TIC needs admin, web interface, streaming and DVR "
        "rights)",
        code="TVH_FORBIDDEN",
    )


# ---------------------------------------------------------------------------------------------------
# The upstream and its headers
# ---------------------------------------------------------------------------------------------------


@dataclass
class Upstream:
    """One configured TVHeadend as the proxy sees it: base URL (with the HTTP root), timeout, login."""

    settings: TvhSettings
    auth: TvhAuth
    base: URL = field(init=False)
    loaded_at: float = field(default_factory=time.monotonic)
    #: Users' own TVHeadend logins for their streams, by (user id, digest of the credentials).
    user_auth: dict[tuple[int, str], TvhAuth] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.base = URL(self.settings.url.rstrip("/"))

    @classmethod
    def from_settings(cls, settings: TvhSettings) -> Upstream:
        return cls(settings=settings, auth=TvhAuth(settings.username, settings.password))

    @property
    def server(self) -> str:
        return f"{self.base.host}:{self.base.port}"

    @property
    def timeout(self) -> float:
        return self.settings.timeout

    @property
    def origin(self) -> str:
        return str(self.base.origin())

    def url(self, tail: str, query: str = "") -> URL:
        """`<base>/<tail>?<query>`; `tail` and `query` are already percent-encoded and kept byte for byte."""
        path = f"{self.base.raw_path.rstrip('/')}/{tail.lstrip('/')}"
        return URL.build(
            scheme=self.base.scheme,
            host=self.base.raw_host or "",
            port=self.base.explicit_port,
            path=path,
            query_string=query,
            encoded=True,
        )


def request_headers(
    incoming: Iterable[tuple[str, str]], *, client_ip: str, proto: str, host: str, forwarded_for: str = ""
) -> CIMultiDict[str]:
    """The browser's headers minus hop-by-hop ones and TIC's own credentials, plus X-Forwarded-*."""
    pairs = list(incoming)
    listed = {
        token.strip().lower()
        for name, value in pairs
        if name.lower() == "connection"
        for token in value.split(",")
    }
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in pairs:
        lower = name.lower()
        if lower in HOP_BY_HOP or lower in DROPPED_REQUEST_HEADERS or lower in listed:
            continue
        out.add(name, value)
    out["X-Forwarded-For"] = f"{forwarded_for}, {client_ip}" if forwarded_for else client_ip
    out["X-Forwarded-Proto"] = proto
    out["X-Forwarded-Host"] = host
    return out


def response_headers(incoming: Iterable[tuple[str, str]], upstream: Upstream) -> list[tuple[str, str]]:
    """TVHeadend's reply headers minus hop-by-hop ones; redirects to TVHeadend's origin stay on TIC."""
    pairs = list(incoming)
    listed = {
        token.strip().lower()
        for name, value in pairs
        if name.lower() == "connection"
        for token in value.split(",")
    }
    out: list[tuple[str, str]] = []
    for name, value in pairs:
        lower = name.lower()
        if lower in HOP_BY_HOP or lower in DROPPED_RESPONSE_HEADERS or lower in listed:
            continue
        if lower == "location":
            value = rewrite_location(value, upstream)
        out.append((name, value))
    return out


def rewrite_location(location: str, upstream: Upstream) -> str:
    """An absolute redirect to TVHeadend's own origin becomes a path on TIC; anything else is kept."""
    origin = upstream.origin
    if location.startswith(origin + "/") or location == origin:
        return location[len(origin) :] or "/"
    return location
