"""Helpers shared by the edges (API blueprints, pages, proxy): services, client address, paging."""

from __future__ import annotations

import re
from typing import Any

from quart import current_app, request

from backend.errors import Invalid
from backend.runtime import AppServices

API_PREFIXES = ("/tic-api/", "/metrics", "/openapi.json")

#: Path patterns whose request bodies may be as large as the upload limit (file uploads, the TVH proxy).
#: Every other body is capped at Config.max_json_bytes while it is read, chunked or not.
LARGE_BODY_PATHS: list[re.Pattern[str]] = []


def allow_large_bodies(pattern: str) -> None:
    LARGE_BODY_PATHS.append(re.compile(pattern))


def body_limit(path: str, small: int, large: int) -> int:
    return large if any(p.match(path) for p in LARGE_BODY_PATHS) else small


def services() -> AppServices:
    svc: AppServices = current_app.extensions["tic"]
    return svc


def wants_json() -> bool:
    """API paths always answer JSON; pages answer HTML."""
    return request.path.startswith(API_PREFIXES)


def client_ip() -> str:
    trusted = services().config.trusted_proxies
    if trusted > 0:
        forwarded = [p.strip() for p in request.headers.get("X-Forwarded-For", "").split(",") if p.strip()]
        if len(forwarded) >= trusted:
            return forwarded[-trusted]
    return request.remote_addr or "unknown"


def page_args(default_limit: int = 50, max_limit: int = 500) -> tuple[int, int]:
    """limit/offset from the query string, validated."""
    try:
        limit = int(request.args.get("limit", default_limit))
        offset = int(request.args.get("offset", 0))
    except ValueError as exc:
        raise Invalid("limit and offset must be whole numbers", fields={"limit": "integer"}) from exc
    if not 1 <= limit <= max_limit:
        raise Invalid(f"limit must be between 1 and {max_limit}", fields={"limit": "out of range"})
    if offset < 0:
        raise Invalid("offset must not be negative", fields={"offset": "out of range"})
    return limit, offset


def listing(items: list[Any], total: int) -> dict[str, Any]:
    return {"items": items, "total": total}
