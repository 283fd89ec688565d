"""The /tvheadend admin page: connection state, a "test connection" button and TVHeadend's own UI."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, render_template
from quart_schema import hide

from backend.edge import services
from backend.tvheadend.service import PROXY_ROOT, connection_status, load_tvh_settings
from backend.web.pages import _ctx

bp = Blueprint("tvheadend_pages", __name__)


@bp.get("/tvheadend")
@hide
async def tvheadend_page() -> Any:
    svc = services()
    async with svc.db.session() as session:
        settings = await load_tvh_settings(session, svc.keyring)
    # The live check is loaded by the page itself (htmx), so a slow TVHeadend never delays the page.
    return await render_template(
        "tvheadend/page.html",
        **_ctx(settings=settings, proxy_url=f"{PROXY_ROOT}/"),
    )


@bp.get("/tvheadend/status")
@hide
async def tvheadend_status_partial() -> Any:
    return await _status_partial()


@bp.post("/tvheadend/test")
@hide
async def tvheadend_test_partial() -> Any:
    return await _status_partial()


async def _status_partial() -> Any:
    svc = services()
    async with svc.db.session() as session:
        settings = await load_tvh_settings(session, svc.keyring)
    status = await connection_status(settings, svc.http.api)
    return await render_template("tvheadend/_status.html", **_ctx(status=status))
