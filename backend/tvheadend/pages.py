"""The /tvheadend admin page (connection, managed objects, configure) and the TVHeadend login on /account."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, flash, g, render_template
from quart_schema import hide

from backend.auth import service as auth_service
from backend.auth.guard import user_required
from backend.edge import services
from backend.errors import AppError
from backend.publish import users
from backend.publish.jobs import CONFIGURE, SYNC_USERS
from backend.tvheadend.service import PROXY_ROOT, connection_status, load_tvh_settings, managed_counts
from backend.web.pages import _ctx, redirect, render_account

bp = Blueprint("tvheadend_pages", __name__)


@bp.get("/tvheadend")
@hide
async def tvheadend_page() -> Any:
    svc = services()
    async with svc.db.session() as session:
        settings = await load_tvh_settings(session, svc.keyring)
        managed = await managed_counts(session)
    # The live check is loaded by the page itself (htmx), so a slow TVHeadend never delays the page.
    return await render_template(
        "tvheadend/page.html",
        **_ctx(settings=settings, proxy_url=f"{PROXY_ROOT}/", managed=managed),
    )


@bp.get("/tvheadend/status")
@hide
async def tvheadend_status_partial() -> Any:
    return await _status_partial()


@bp.post("/tvheadend/test")
@hide
async def tvheadend_test_partial() -> Any:
    return await _status_partial()


@bp.post("/tvheadend/configure")
@hide
async def configure_now() -> Any:
    """Queue the configure task (the same job the API's POST /tic-api/tvheadend/configure queues)."""
    result = await services().broker.enqueue(CONFIGURE, priority=10, requested_by=g.user.username)
    return await render_template(
        "tvheadend/_configure_queued.html", **_ctx(task_id=result.task_id, created=result.created)
    )


async def _status_partial() -> Any:
    svc = services()
    async with svc.db.session() as session:
        settings = await load_tvh_settings(session, svc.keyring)
    status = await connection_status(settings, svc.http.api)
    return await render_template("tvheadend/_status.html", **_ctx(status=status))


# -- the user's own TVHeadend login, on /account ------------------------------------------------------


@bp.post("/account/tvheadend-login")
@user_required
@hide
async def issue_own_tvheadend_login() -> Response:
    """Create the user's TVHeadend login or rotate its password, and show the password this once."""
    svc = services()
    try:
        async with svc.db.transaction() as session:
            user = await auth_service.get_user(session, g.user.id)
            _username, password = await users.issue_login(session, svc.keyring, user)
    except AppError as exc:
        await flash(exc.message, "error")
        return redirect("/account")
    await svc.broker.enqueue(SYNC_USERS, requested_by=g.user.username)
    # Rendered, not redirected to: the password is shown once and kept nowhere in the browser.
    return await render_account(new_tvh_password=password)


@bp.post("/account/tvheadend-login/revoke")
@user_required
@hide
async def revoke_own_tvheadend_login() -> Response:
    svc = services()
    try:
        async with svc.db.transaction() as session:
            await users.revoke_login(session, g.user.id)
    except AppError as exc:
        await flash(exc.message, "error")
        return redirect("/account")
    await svc.broker.enqueue(SYNC_USERS, requested_by=g.user.username)
    await flash("Your TVHeadend login was revoked; it is removed from TVHeadend shortly.", "success")
    return redirect("/account")
