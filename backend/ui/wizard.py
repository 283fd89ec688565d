"""The first-run wizard: playlist → guide → channels → guide matching → TVHeadend → publish → client URLs.

Each step's page talks to the domain's JSON API from the browser (the paths below); the wizard itself only
records which steps are done or skipped, so it can be left and resumed at any point.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, g, render_template
from quart_schema import hide
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.channels.models import Channel
from backend.db import utcnow
from backend.edge import services
from backend.errors import NotFound
from backend.playlists.models import PlaylistSource, Stream
from backend.settings import service as settings_service
from backend.settings.hooks import run_change_hooks
from backend.ui import overview
from backend.ui.connect import connection_context
from backend.ui.wizard_state import STEP_SLUGS, STEPS, WizardProgress, parse_progress
from backend.web.pages import _ctx, redirect

bp = Blueprint("wizard", __name__)

SETTING = "ui_wizard_progress"

#: The domain API calls each step makes (method, path); a step whose call is missing says so and can be skipped.
API: dict[str, tuple[str, str]] = {
    "create_playlist": ("POST", "/tic-api/playlists"),
    "import_playlist": ("POST", "/tic-api/playlists/update/{id}"),
    "create_epg": ("POST", "/tic-api/epgs"),
    "import_epg": ("POST", "/tic-api/epgs/update/{id}"),
    "channels_from_groups": ("POST", "/tic-api/channels/from-groups"),
    "match_epg": ("POST", "/tic-api/channels/epg-match"),
    "save_settings": ("PATCH", "/tic-api/settings"),
    "tvh_status": ("GET", "/tic-api/tvheadend/status"),
    "publish": ("POST", "/tic-api/tvheadend/publish"),
    "publish_preview": ("GET", "/tic-api/tvheadend/publish/preview"),
}
#: Groups listed per playlist in the channels step; more than this is a job for the channels page.
MAX_GROUPS = 500


async def load_progress(session: AsyncSession) -> WizardProgress:
    svc = services()
    return parse_progress(await settings_service.get_setting(session, svc.keyring, SETTING))


async def save_progress(progress: WizardProgress) -> None:
    svc = services()
    async with svc.db.transaction() as session:
        changed = await settings_service.update_settings(session, svc.keyring, {SETTING: progress.encode()})
    await run_change_hooks(svc, changed)


async def _groups(session: AsyncSession) -> list[dict[str, Any]]:
    """Each enabled playlist with its stream groups and counts, largest first."""
    sources = list(
        (
            await session.execute(
                select(PlaylistSource.id, PlaylistSource.name)
                .where(PlaylistSource.enabled)
                .order_by(PlaylistSource.position, PlaylistSource.id)
            )
        ).all()
    )
    out = []
    for pid, name in sources:
        counts = (
            await session.execute(
                select(Stream.group_title, func.count())
                .where(Stream.source_id == pid, Stream.is_vod.is_(False))
                .group_by(Stream.group_title)
                .order_by(func.count().desc())
                .limit(MAX_GROUPS)
            )
        ).all()
        out.append({"id": pid, "name": name, "groups": [(grp or "", n) for grp, n in counts]})
    return out


async def _step_context(session: AsyncSession, slug: str) -> dict[str, Any]:
    if slug == "playlist":
        sources = await overview.playlist_sources(session)
        return {"sources": sources, "can_continue": bool(sources)}
    if slug == "epg":
        sources = await overview.epg_sources(session)
        return {"sources": sources, "can_continue": bool(sources)}
    channel_count = int((await session.execute(select(func.count()).select_from(Channel))).scalar_one())
    if slug == "channels":
        next_number = int((await session.execute(select(func.max(Channel.number)))).scalar_one() or 0) + 1
        return {
            "playlists": await _groups(session),
            "channel_count": channel_count,
            "next_number": next_number,
            "can_continue": channel_count > 0,
        }
    if slug == "match":
        lineup = await overview.lineup_counts(session, utcnow())
        return {
            "lineup": lineup,
            "channel_count": channel_count,
            "can_continue": lineup["mapped"] > 0,
        }
    if slug == "tvheadend":
        svc = services()
        values = settings_service.public_view(await settings_service.get_settings(session, svc.keyring))
        keys = ("tvh_url", "tvh_username", "tvh_password")
        return {
            "values": {k: values.get(k, "") for k in keys},
            "can_continue": bool(values.get("tvh_url")),
        }
    if slug == "publish":
        svc = services()
        tvh_url = await settings_service.get_setting(session, svc.keyring, "tvh_url")
        return {
            "tvh_configured": bool(tvh_url),
            "channel_count": channel_count,
        }
    return {}


def _steps_view(progress: WizardProgress, current: str | None) -> list[dict[str, Any]]:
    return [
        {"slug": slug, "title": title, "mark": progress.marks.get(slug), "current": slug == current}
        for slug, title in STEPS
    ]


@bp.get("/welcome")
@hide
async def wizard_start() -> Any:
    async with services().db.session() as session:
        progress = await load_progress(session)
    return await render_template(
        "ui/wizard.html",
        **_ctx(steps=_steps_view(progress, None), progress=progress, next_step=progress.next_step()),
    )


@bp.get("/welcome/<slug>")
@hide
async def wizard_step(slug: str) -> Any:
    if slug == "finish":
        return await _finish_page()
    if slug not in STEP_SLUGS:
        raise NotFound("The wizard has no such step", code="WIZARD_STEP_NOT_FOUND")
    async with services().db.session() as session:
        progress = await load_progress(session)
        ctx = await _step_context(session, slug)
    index = STEP_SLUGS.index(slug)
    return await render_template(
        f"ui/wizard_{slug}.html",
        **_ctx(
            steps=_steps_view(progress, slug),
            slug=slug,
            step_number=index + 1,
            step_count=len(STEP_SLUGS),
            title=dict(STEPS)[slug],
            mark=progress.marks.get(slug),
            api={name: path for name, (_method, path) in API.items()},
            **ctx,
        ),
    )


async def _finish_page() -> Any:
    async with services().db.session() as session:
        progress = await load_progress(session)
        ctx = await connection_context(session, g.user)
    return await render_template(
        "ui/wizard_finish.html", **_ctx(steps=_steps_view(progress, None), progress=progress, own=True, **ctx)
    )


async def _mark(slug: str, how: str) -> Any:
    if slug not in STEP_SLUGS:
        raise NotFound("The wizard has no such step", code="WIZARD_STEP_NOT_FOUND")
    async with services().db.session() as session:
        progress = await load_progress(session)
    progress.mark(slug, how)
    await save_progress(progress)
    following = progress.next_step()
    # After the last step, or once everything is marked, the wizard ends on the client URLs.
    index = STEP_SLUGS.index(slug)
    if index + 1 < len(STEP_SLUGS) and STEP_SLUGS[index + 1] not in progress.marks:
        return redirect(f"/welcome/{STEP_SLUGS[index + 1]}")
    return redirect(f"/welcome/{following}" if following else "/welcome/finish")


@bp.post("/welcome/<slug>/done")
@hide
async def wizard_step_done(slug: str) -> Any:
    return await _mark(slug, "done")


@bp.post("/welcome/<slug>/skip")
@hide
async def wizard_step_skip(slug: str) -> Any:
    return await _mark(slug, "skipped")


@bp.post("/welcome/dismiss")
@hide
async def wizard_dismiss() -> Any:
    async with services().db.session() as session:
        progress = await load_progress(session)
    progress.ending = "dismissed"
    await save_progress(progress)
    return redirect("/")


@bp.post("/welcome/restart")
@hide
async def wizard_restart() -> Any:
    await save_progress(WizardProgress())
    return redirect("/welcome")
