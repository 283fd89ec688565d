"""Page fragments for the /tvheadend page: the last publish, the plan preview and the publish button."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, g, render_template
from quart_schema import hide

from backend.edge import services
from backend.errors import AppError
from backend.publish import service
from backend.publish.jobs import PUBLISH
from backend.web.pages import _ctx

bp = Blueprint("publish_pages", __name__)


@bp.get("/tvheadend/publish")
@hide
async def publish_fragment() -> Any:
    """The last publish and a button to preview the next one (no call to TVHeadend)."""
    async with services().db.session() as session:
        last = await service.last_publish(session)
    return await render_template("publish/_last.html", **_ctx(last=last))


@bp.get("/tvheadend/publish/preview")
@hide
async def preview_fragment() -> Any:
    """The plan a publish would apply now, with the button that queues it."""
    svc = services()
    try:
        client = await service.tvh_client(svc)
        preview = await service.preview_plan(svc.db, client, limit=200)
    except AppError as exc:
        return await render_template("publish/_preview.html", **_ctx(preview=None, error=exc))
    return await render_template("publish/_preview.html", **_ctx(preview=preview, error=None))


@bp.post("/tvheadend/publish")
@hide
async def publish_now() -> Any:
    result = await services().broker.enqueue(PUBLISH, priority=10, requested_by=g.user.username)
    return await render_template("publish/_queued.html", **_ctx(task_id=result.task_id))
