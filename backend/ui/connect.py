"""Connection details: each user's client URLs (M3U, XMLTV, HDHomeRun) with copy buttons, and key rotation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from quart import Blueprint, flash, g, render_template, request
from quart_schema import hide
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth import service as auth_service
from backend.auth.guard import user_required
from backend.auth.models import ADMIN, User
from backend.edge import services
from backend.errors import AppError
from backend.playlists.models import PlaylistSource
from backend.settings import service as settings_service
from backend.web.pages import _ctx, redirect

bp = Blueprint("connect", __name__)


def base_url(public_base_url: str) -> str:
    """The address clients use: the public_base_url setting, else the host this request came to."""
    if public_base_url:
        return public_base_url.rstrip("/")
    return request.host_url.rstrip("/")


def client_urls(base: str, key: str, playlists: Sequence[tuple[int, str]]) -> dict[str, Any]:
    """Every client URL of one user: the combined lineup and one set per playlist source."""
    combined = {
        "m3u": f"{base}/tic-api/playlist/combined.m3u?stream_key={key}",
        "xmltv": f"{base}/tic-api/epg/xmltv.xml?stream_key={key}",
        "xmltv_gz": f"{base}/tic-api/epg/xmltv.xml.gz?stream_key={key}",
        "hdhr": f"{base}/tic-api/hdhr_device/{key}/combined",
    }
    per_source = [
        {
            "id": pid,
            "name": name,
            "m3u": f"{base}/tic-api/playlist/{pid}.m3u?stream_key={key}",
            "hdhr": f"{base}/tic-api/hdhr_device/{key}/{pid}",
        }
        for pid, name in playlists
    ]
    return {"combined": combined, "sources": per_source}


async def connection_context(session: AsyncSession, user: User) -> dict[str, Any]:
    """What the connection-details partial needs for `user` (also used by the wizard's last step)."""
    svc = services()
    public = await settings_service.get_setting(session, svc.keyring, "public_base_url")
    playlists = list(
        (
            await session.execute(
                select(PlaylistSource.id, PlaylistSource.name)
                .where(PlaylistSource.enabled)
                .order_by(PlaylistSource.position, PlaylistSource.id)
            )
        ).all()
    )
    key = auth_service.reveal_stream_key(svc.keyring, user)
    return {
        "target": user,
        "urls": client_urls(base_url(public or ""), key, playlists),
        "public_base_url": public or "",
    }


async def _page(user_id: int) -> Any:
    svc = services()
    async with svc.db.session() as session:
        user = await auth_service.get_user(session, user_id)
        ctx = await connection_context(session, user)
        others: list[tuple[int, str]] = []
        if g.user.role == ADMIN:
            others = list(
                (await session.execute(select(User.id, User.username).order_by(User.username))).all()
            )
    own = user.id == g.user.id
    rotate = "/connect/rotate" if own else f"/connect/{user.id}/rotate"
    return await render_template(
        "ui/connect.html", **_ctx(own=own, rotate_action=rotate, users=others, **ctx)
    )


@bp.get("/connect")
@user_required
@hide
async def connect_own() -> Any:
    return await _page(g.user.id)


@bp.get("/connect/<int:user_id>")
@hide
async def connect_user(user_id: int) -> Any:
    return await _page(user_id)


async def _rotate(user_id: int) -> None:
    svc = services()
    async with svc.db.transaction() as session:
        user = await auth_service.get_user(session, user_id)
        await auth_service.rotate_stream_key(session, svc.keyring, user)


@bp.post("/connect/rotate")
@user_required
@hide
async def connect_rotate_own() -> Any:
    await _rotate(g.user.id)
    await flash(
        "Your stream key was rotated: the old URLs stopped working. Give your clients the new ones below.",
        "success",
    )
    return redirect("/connect")


@bp.post("/connect/<int:user_id>/rotate")
@hide
async def connect_rotate_user(user_id: int) -> Any:
    try:
        await _rotate(user_id)
    except AppError as exc:
        await flash(exc.message, "error")
        return redirect("/connect")
    await flash("Stream key rotated: that user's old client URLs stopped working.", "success")
    return redirect(f"/connect/{user_id}")
