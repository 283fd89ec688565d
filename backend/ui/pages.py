"""Dashboard page and the admin UI's shared template helpers; mounts the guide, wizard and connection pages."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from quart import Blueprint, g, render_template
from quart_schema import hide

from backend import __version__
from backend.auth.guard import user_required
from backend.auth.models import ADMIN
from backend.db import iso_z, utcnow
from backend.edge import services
from backend.settings import service as settings_service
from backend.tasks import service as task_service
from backend.tasks.offload import run_blocking
from backend.ui import attention, overview
from backend.ui.connect import bp as connect_bp
from backend.ui.guide import bp as guide_bp
from backend.ui.routes import has_route, user_may_open
from backend.ui.wizard import bp as wizard_bp
from backend.ui.wizard_state import parse_progress
from backend.web.pages import _ctx, redirect

bp = Blueprint("ui", __name__)
bp.register_blueprint(guide_bp)
bp.register_blueprint(wizard_bp)
bp.register_blueprint(connect_bp)

ADMIN_NAV = (
    ("/", "Dashboard"),
    ("/playlists", "Playlists"),
    ("/epgs", "EPGs"),
    ("/channels", "Channels"),
    ("/guide", "Guide"),
    ("/dvr", "DVR"),
    ("/tvheadend", "TVHeadend"),
    ("/tasks", "Tasks"),
    ("/users", "Users"),
    ("/settings", "Settings"),
    ("/connect", "Client URLs"),
    ("/account", "My account"),
)
#: Pages a streamer may have, shown only when the route exists and lets streamers in.
STREAMER_NAV = (("/connect", "Client URLs"), ("/guide", "Guide"), ("/dvr", "DVR"), ("/account", "My account"))
#: Seconds the data-dir walk is reused for, so reloading the dashboard does not rescan a large HLS cache.
DISK_CACHE_SECONDS = 30.0


def nav_links(user: Any) -> list[tuple[str, str]]:
    if user is None:
        return []
    if user.role == ADMIN:
        return [(href, label) for href, label in ADMIN_NAV if has_route(href)]
    links = []
    for href, label in STREAMER_NAV:
        if href == "/dvr" and getattr(user, "dvr_access", "none") == "none":
            continue
        if user_may_open(href, user.role):
            links.append((href, label))
    return links


@bp.app_context_processor
def ui_helpers() -> dict[str, Any]:
    return {
        "ui_nav_links": nav_links,
        "human_size": overview.human_size,
        "iso_z": iso_z,
        "timedelta": timedelta,
    }


async def _disk(svc: Any, settings: dict[str, Any]) -> overview.DiskUse:
    cached = svc.extras.get("ui_disk")
    if cached is not None and time.monotonic() - cached[0] < DISK_CACHE_SECONDS:
        disk: overview.DiskUse = cached[1]
        return disk
    data_dir = svc.config.data_dir
    disk = await run_blocking(overview.disk_use, data_dir, overview.hls_cache_dir(data_dir, settings))
    svc.extras["ui_disk"] = (time.monotonic(), disk)
    return disk


def _without_credentials(url: str) -> str:
    """A URL as safe to show: any user:password@ part is dropped."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


@bp.get("/")
@user_required
@hide
async def dashboard() -> Any:
    if g.user.role != ADMIN:
        return redirect("/account")
    svc = services()
    now = utcnow()
    async with svc.db.session() as session:
        settings = await settings_service.get_settings(session, svc.keyring)
        lineup = await overview.lineup_counts(session, now)
        wizard = parse_progress(settings.get("ui_wizard_progress"))
        if lineup["total"] == 0 and wizard.active:
            return redirect("/welcome")
        tasks = await task_service.overview(session, svc.broker, limit=10, offset=0, status=None, name=None)
        playlists = await overview.playlist_sources(session)
        epgs = await overview.epg_sources(session)
        last_publish = await overview.last_publish(session)
        failures = await overview.recent_failures(session, now - timedelta(days=1))
    # Its own session: a DVR table that is not migrated yet must not spoil the reads above (PostgreSQL).
    async with svc.db.session() as session:
        recordings = await overview.recordings(session, now)
    disk = await _disk(svc, settings)
    tvh_configured = bool(settings.get("tvh_url")) if "tvh_url" in settings_service.REGISTRY else None
    items = attention.build(
        playlists=playlists,
        epgs=epgs,
        lineup=lineup,
        tvh_configured=tvh_configured,
        last_publish=last_publish,
        failures=failures,
        paused=tasks["paused"],
        recordings=recordings,
        disk=disk,
        wizard_active=wizard.active,
    )
    return await render_template(
        "dashboard.html",
        **_ctx(
            tasks=tasks,
            playlists=playlists,
            epgs=epgs,
            lineup=lineup,
            tvh_configured=tvh_configured,
            tvh_url=_without_credentials(settings.get("tvh_url") or ""),
            last_publish=last_publish,
            recordings=recordings,
            disk=disk,
            attention=items,
            wizard=wizard,
            version=__version__,
            database=svc.db.dialect,
        ),
    )
