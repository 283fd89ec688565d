"""TVHeadend connection: the saved settings, and a TvheadendClient built from them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from yarl import URL

from backend.db import iso_z, utcnow
from backend.keys import Keyring
from backend.publish.models import TvhManagedObject
from backend.settings.service import get_settings
from backend.tvheadend.client import ConnectionCheck, TvheadendClient, TvheadendError, TvheadendUnavailable

#: The HTTP root TVHeadend must run with (`--http_root /tic-tvh`) so that its UI works through TIC's
#: proxy at the same path without rewriting URLs.
PROXY_ROOT = "/tic-tvh"
#: The kinds of TVHeadend object TIC manages, in the order people read them.
MANAGED_KINDS = ("network", "mux", "channel", "tag")
#: Drift entries of the last publish that the status lists (its count is always complete).
MAX_STATUS_DRIFT = 100


@dataclass(frozen=True)
class TvhSettings:
    """The saved TVHeadend connection; `url` includes the HTTP root and never carries credentials."""

    url: str
    username: str
    password: str
    timeout: float

    @property
    def configured(self) -> bool:
        return bool(self.url)

    @property
    def server(self) -> str:
        """host:port, for messages."""
        url = URL(self.url)
        return f"{url.host}:{url.port}"


async def load_tvh_settings(session: AsyncSession, keyring: Keyring) -> TvhSettings:
    values = await get_settings(session, keyring)
    return TvhSettings(
        url=str(values["tvh_url"] or "").rstrip("/"),
        username=str(values["tvh_username"] or ""),
        password=str(values["tvh_password"] or ""),
        timeout=float(values["tvh_timeout_seconds"]),
    )


def same_server(a: str, b: str) -> bool:
    """Whether two TVHeadend URLs point at the same scheme, host and port (the path may differ)."""
    if not a or not b:
        return False
    ua, ub = URL(a), URL(b)
    return (ua.scheme, (ua.host or "").lower(), ua.port) == (ub.scheme, (ub.host or "").lower(), ub.port)


def client_for(settings: TvhSettings, http_session: aiohttp.ClientSession) -> TvheadendClient:
    return TvheadendClient(
        http_session, settings.url, settings.username, settings.password, timeout=settings.timeout
    )


async def client_from_settings(
    session: AsyncSession, keyring: Keyring, http_session: aiohttp.ClientSession
) -> TvheadendClient | None:
    """A client for the saved TVHeadend, or None when no TVHeadend URL is set."""
    settings = await load_tvh_settings(session, keyring)
    if not settings.configured:
        return None
    return client_for(settings, http_session)


def check_out(check: ConnectionCheck) -> dict[str, Any]:
    return {
        "sw_version": check.sw_version,
        # The same value under the name the dashboard and the setup wizard read.
        "version": check.sw_version,
        "api_version": check.api_version,
        "auth_mode": check.auth_mode,
        "is_admin": check.is_admin,
        "has_dvr": check.has_dvr,
        "webroot": check.webroot,
        "proxy_ready": check.webroot == PROXY_ROOT,
        "warnings": check_warnings(check),
    }


def check_warnings(check: ConnectionCheck) -> list[str]:
    warnings = []
    if check.webroot != PROXY_ROOT:
        root = check.webroot or "none"
        warnings.append(
            f"TVHeadend's HTTP root is {root}: start TVHeadend with --http_root {PROXY_ROOT} so that its web "
            f"UI works through TIC at {PROXY_ROOT}/"
        )
    if not check.is_admin:
        warnings.append(
            "TIC's TVHeadend user has no admin rights: TIC cannot publish channels or configure TVHeadend"
        )
    if not check.has_dvr:
        warnings.append("TIC's TVHeadend user has no DVR rights: recordings will not work")
    if check.auth_mode == "none":
        warnings.append("No TVHeadend username is set: TVHeadend lets anyone in; consider requiring a login")
    return warnings


async def connection_status(settings: TvhSettings, http_session: aiohttp.ClientSession) -> dict[str, Any]:
    """A live check of the saved TVHeadend: reachable?, version, auth mode and rights, or why not.

    `error`/`error_code` say why TVHeadend is not usable; `warnings` list what works but needs attention.
    """
    out: dict[str, Any] = {
        "configured": settings.configured,
        "url": settings.url,
        "username": settings.username,
        "proxy_url": f"{PROXY_ROOT}/",
        "reachable": False,
        "ok": False,
        "error": None,
        "error_code": None,
        "warnings": [],
        "checked_at": iso_z(utcnow()),
    }
    if not settings.configured:
        out["error"] = "TVHeadend is not configured: set its URL, username and password in Settings"
        out["error_code"] = "TVH_NOT_CONFIGURED"
        return out
    try:
        check = await client_for(settings, http_session).test_connection()
    except TvheadendError as exc:
        # Any HTTP answer (a refused login, a 404 for a wrong root) means the server is reachable.
        out["reachable"] = not isinstance(exc, TvheadendUnavailable)
        out["error"], out["error_code"] = exc.message, exc.code
        return out
    out.update(check_out(check), reachable=True, ok=True)
    return out


async def managed_counts(session: AsyncSession) -> dict[str, int]:
    """How many TVHeadend objects TIC manages, by kind (every kind present), and their `total`."""
    rows = await session.execute(select(TvhManagedObject.kind, func.count()).group_by(TvhManagedObject.kind))
    counts = dict.fromkeys(MANAGED_KINDS, 0)
    for kind, count in rows.all():
        counts[str(kind)] = int(count)
    counts["total"] = sum(counts.values())
    return counts


def publish_status(last: dict[str, Any] | None) -> dict[str, Any]:
    """The status's view of the last publish (a `last_publish` record): its result, plan summary and drift.

    The full list of applied operations stays with `GET /tic-api/tvheadend/publish/last`.
    """
    if last is None:
        return {"last_publish": None, "drift": [], "drift_total": 0}
    drift = list(last.get("drift") or [])
    summary = dict(last.get("summary") or {})
    return {
        "last_publish": {
            "id": last["id"],
            "task_run_id": last["task_run_id"],
            "status": last["status"],
            "started_at": last["started_at"],
            "finished_at": last["finished_at"],
            "error": last["error"],
            "summary": {
                "created": int(summary.get("created", 0)),
                "updated": int(summary.get("updated", 0)),
                "deleted": int(summary.get("deleted", 0)),
                "by_kind": summary.get("by_kind") or {"create": {}, "update": {}, "delete": {}},
                "drift_repaired": int(summary.get("drift_repaired", len(drift))),
                "problems": int(summary.get("problems", len(last.get("problems") or []))),
            },
            "read_calls": last["read_calls"],
            "write_calls": last["write_calls"],
        },
        "drift": drift[:MAX_STATUS_DRIFT],
        "drift_total": len(drift),
    }
