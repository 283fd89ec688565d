"""Fetching playlists: M3U downloads and the Xtream Codes player_api, into files; takes an aiohttp session."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from backend.download import Download, download_to_file, looks_like_html, open_decompressed
from backend.errors import UpstreamError
from backend.playlists.xtream import check_account, player_api_url
from backend.tasks.offload import run_blocking

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int | None], Awaitable[None] | None]

#: The account answer of player_api.php is a few hundred bytes; anything much larger is not one.
_ACCOUNT_MAX_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class FetchLimits:
    """Download limits from the settings."""

    max_bytes: int
    connect_timeout: float
    read_timeout: float
    user_agent: str | None
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class XtreamFiles:
    """The player_api answers an import needs, on disk."""

    account: dict[str, Any]
    categories: Path
    streams: Path
    size: int
    sha256: str


async def download_playlist(
    session: aiohttp.ClientSession, url: str, dest: Path, limits: FetchLimits, progress: ProgressFn | None
) -> Download:
    """Download an M3U playlist (any size up to the limit, gzip or not) into dest."""
    return await download_to_file(
        session,
        url,
        dest,
        headers=limits.headers,
        user_agent=limits.user_agent,
        max_bytes=limits.max_bytes,
        connect_timeout=limits.connect_timeout,
        read_timeout=limits.read_timeout,
        progress=progress,
        limit_setting="the download_max_bytes setting",
    )


async def xtream_account(
    session: aiohttp.ClientSession, server: str, username: str, password: str, dest: Path, limits: FetchLimits
) -> dict[str, Any]:
    """The account and server info of an Xtream login; raises when the login or account is not usable."""
    download = await download_to_file(
        session,
        player_api_url(server, username, password),
        dest,
        headers=limits.headers,
        user_agent=limits.user_agent,
        max_bytes=min(limits.max_bytes, _ACCOUNT_MAX_BYTES),
        connect_timeout=limits.connect_timeout,
        read_timeout=limits.read_timeout,
        limit_setting="the size of an Xtream account answer",
    )
    payload = await run_blocking(_read_json, download.path)
    if not isinstance(payload, dict):
        raise UpstreamError(
            "The Xtream server did not answer with account details; check the server address.",
            code="XTREAM_BAD_RESPONSE",
        )
    check_account(payload)
    if not isinstance(payload.get("user_info"), dict):
        raise UpstreamError(
            "The Xtream server's answer has no account details; check the server address.",
            code="XTREAM_BAD_RESPONSE",
        )
    expires = _expiry(payload["user_info"].get("exp_date"))
    if expires is not None and expires < datetime.now(UTC):
        raise UpstreamError(
            f"The Xtream account expired on {expires:%Y-%m-%d}; renew it with the provider.",
            code="XTREAM_ACCOUNT_EXPIRED",
        )
    return payload


async def fetch_xtream(
    session: aiohttp.ClientSession,
    server: str,
    username: str,
    password: str,
    dest: Path,
    limits: FetchLimits,
    progress: ProgressFn | None,
) -> XtreamFiles:
    """Check the account, then download the live categories and live streams lists."""
    account = await xtream_account(session, server, username, password, dest, limits)
    common: dict[str, Any] = {
        "headers": limits.headers,
        "user_agent": limits.user_agent,
        "max_bytes": limits.max_bytes,
        "connect_timeout": limits.connect_timeout,
        "read_timeout": limits.read_timeout,
        "limit_setting": "the download_max_bytes setting",
    }
    categories = await download_to_file(
        session, player_api_url(server, username, password, "get_live_categories"), dest, **common
    )
    streams = await download_to_file(
        session,
        player_api_url(server, username, password, "get_live_streams"),
        dest,
        progress=progress,
        **common,
    )
    digest = hashlib.sha256(f"{categories.sha256}:{streams.sha256}".encode()).hexdigest()
    return XtreamFiles(account, categories.path, streams.path, categories.size + streams.size, digest)


def account_summary(account: Mapping[str, Any]) -> dict[str, Any]:
    """What the UI shows about an Xtream account: status, expiry and connections; never the password."""
    info = account.get("user_info") if isinstance(account.get("user_info"), dict) else {}
    assert isinstance(info, dict)
    expires = _expiry(info.get("exp_date"))
    return {
        "status": str(info.get("status") or "unknown")[:40],
        "expires_at": expires.isoformat().replace("+00:00", "Z") if expires else None,
        "max_connections": _small_int(info.get("max_connections")),
        "active_connections": _small_int(info.get("active_cons")),
        "trial": str(info.get("is_trial", "0")) in ("1", "true", "True"),
    }


def _read_json(path: Path) -> Any:
    with open_decompressed(path) as f:
        data = f.read(_ACCOUNT_MAX_BYTES + 1)
    if looks_like_html(data[:4096]):
        raise UpstreamError(
            "The Xtream server answered with an HTML page (a login or error page?) instead of JSON; "
            "check the server address.",
            code="XTREAM_BAD_RESPONSE",
        )
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise UpstreamError(
            "The Xtream server's answer is not valid JSON; check the server address.",
            code="XTREAM_BAD_RESPONSE",
        ) from None


def _expiry(value: object) -> datetime | None:
    """exp_date is a Unix time as a string or number; null or "" means it never expires."""
    if value is None or isinstance(value, bool):
        return None
    try:
        seconds = int(float(str(value).strip()))
    except (ValueError, OverflowError):
        return None
    if seconds <= 0:
        return None
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _small_int(value: object) -> int | None:
    try:
        number = int(str(value).strip())
    except (ValueError, TypeError):
        return None
    return number if 0 <= number < 1_000_000 else None
