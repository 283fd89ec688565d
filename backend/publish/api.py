"""JSON API: queue a publish or configure, preview the plan, the last result, users' TVHeadend logins."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, g, request
from quart_schema import validate_response

from backend.auth import service as auth_service
from backend.auth.guard import user_required
from backend.edge import services
from backend.errors import Invalid
from backend.publish import service, users
from backend.publish.guide import TV_GRAB_TIC
from backend.publish.jobs import CONFIGURE, PUBLISH, SYNC_USERS
from backend.schemas import TaskQueued

bp = Blueprint("publish", __name__, url_prefix="/tic-api/tvheadend")


async def _queue(name: str) -> tuple[dict[str, Any], int]:
    user = g.get("user")
    result = await services().broker.enqueue(
        name, priority=10, requested_by=user.username if user is not None else None
    )
    return {"task_id": result.task_id}, 202


@bp.post("/publish")
@validate_response(TaskQueued, 202)
async def publish_lineup() -> tuple[dict[str, Any], int]:
    """Queue a publish of the lineup to TVHeadend (a reconcile: only differences are written)."""
    return await _queue(PUBLISH)


@bp.post("/configure")
@validate_response(TaskQueued, 202)
async def configure_tvheadend() -> tuple[dict[str, Any], int]:
    """Queue the configure task (server name, EPG grabber, DVR profile)."""
    return await _queue(CONFIGURE)


@bp.get("/publish/preview")
async def preview_publish() -> dict[str, Any]:
    """What a publish would change now (creates, updates, deletes, drift), without changing anything.

    `limit` caps the listed operations (default 500, at most 10000); the summary always counts all.
    """
    try:
        limit = int(request.args.get("limit", 500))
    except ValueError as exc:
        raise Invalid("limit must be a whole number", fields={"limit": "integer"}) from exc
    if not 0 <= limit <= 10_000:
        raise Invalid("limit must be between 0 and 10000", fields={"limit": "out of range"})
    svc = services()
    client = await service.tvh_client(svc)
    return await service.preview_plan(svc.db, client, limit)


@bp.get("/publish/last")
async def last_publish() -> dict[str, Any]:
    """The last publish: status, counts, applied operations, drift repaired, problems (or `{"run": null}`)."""
    async with services().db.session() as session:
        return {"run": await service.last_publish(session)}


@bp.get("/tv_grab_tic")
async def download_grabber() -> Response:
    """The tv_grab_tic grabber script, to install where TVHeadend runs."""
    return Response(
        TV_GRAB_TIC,
        content_type="text/x-shellscript; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="tv_grab_tic"'},
    )


# -- TVHeadend logins -------------------------------------------------------------------------------


@bp.get("/users")
async def list_logins() -> dict[str, Any]:
    """Every TIC user's TVHeadend login (never the password)."""
    async with services().db.session() as session:
        items = await users.list_logins(session)
    return {"items": items, "total": len(items)}


@bp.delete("/users/<int:user_id>/login")
async def revoke_user_login(user_id: int) -> tuple[str, int]:
    """Take a user's TVHeadend login away; it is removed from TVHeadend by the sync task."""
    svc = services()
    async with svc.db.transaction() as session:
        await users.revoke_login(session, user_id)
    await svc.broker.enqueue(SYNC_USERS, requested_by=g.user.username)
    return "", 204


@bp.get("/users/self/login")
@user_required
async def get_own_login() -> dict[str, Any]:
    async with services().db.session() as session:
        return await users.get_login(session, g.user.id)


@bp.post("/users/self/login")
@user_required
async def issue_own_login() -> tuple[dict[str, Any], int, dict[str, str]]:
    """Create your TVHeadend login, or rotate its password. The password is shown only in this answer."""
    svc = services()
    async with svc.db.transaction() as session:
        user = await auth_service.get_user(session, g.user.id)
        username, password = await users.issue_login(session, svc.keyring, user)
    await svc.broker.enqueue(SYNC_USERS, requested_by=g.user.username)
    return {"tvh_username": username, "password": password}, 201, {"Cache-Control": "no-store"}


@bp.delete("/users/self/login")
@user_required
async def revoke_own_login() -> tuple[str, int]:
    svc = services()
    async with svc.db.transaction() as session:
        await users.revoke_login(session, g.user.id)
    await svc.broker.enqueue(SYNC_USERS, requested_by=g.user.username)
    return "", 204
