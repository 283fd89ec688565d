"""Health, version, Prometheus metrics and a self-contained API docs page."""

from __future__ import annotations

import platform
import time
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from quart import Blueprint, Response, current_app, render_template
from sqlalchemy import func, select, text

from backend import __version__
from backend.auth.guard import _identify, public
from backend.edge import services
from backend.errors import Forbidden, Unauthorized
from backend.settings import service as settings_service
from backend.tasks.models import QUEUED, TaskRun

bp = Blueprint("ops", __name__)


@bp.get("/tic-api/health")
@public
async def health() -> tuple[dict[str, Any], int]:
    """200 when the database answers and the scheduler ticks; 503 with the reason otherwise."""
    svc = services()
    checks: dict[str, Any] = {}
    healthy = True
    try:
        async with svc.db.session() as session:
            await session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
        healthy = False
    scheduler = svc.scheduler
    if scheduler is None:
        checks["scheduler"] = "not started"
    elif not scheduler.running:
        checks["scheduler"] = "stopped"
        healthy = False
    else:
        last = svc.broker.last_tick_at
        age = None if last is None else time.monotonic() - last
        if age is not None and age > 60:
            checks["scheduler"] = f"no tick for {int(age)} s"
            healthy = False
        else:
            checks["scheduler"] = "ok"
    checks["broker"] = {
        "paused": svc.broker.paused,
        "running": svc.broker.current.name if svc.broker.current else None,
    }
    lag = svc.extras.get("loop_lag")
    if lag is not None:
        checks["loop_lag_seconds"] = round(lag.last, 4)
    return {"status": "ok" if healthy else "unavailable", "checks": checks}, 200 if healthy else 503


@bp.get("/tic-api/version")
@public
async def version() -> dict[str, Any]:
    svc = services()
    return {
        "version": __version__,
        "python": platform.python_version(),
        "database": svc.db.dialect,
        "uptime_seconds": int(time.time() - svc.started_at),
    }


@bp.get("/metrics")
@public
async def metrics() -> Response:
    """Prometheus metrics. Needs an admin login or token unless the metrics_public setting is on."""
    svc = services()
    async with svc.db.session() as session:
        open_metrics = await settings_service.get_setting(session, svc.keyring, "metrics_public")
        queued = (
            await session.execute(select(func.count()).select_from(TaskRun).where(TaskRun.status == QUEUED))
        ).scalar_one()
    if not open_metrics:
        from quart import g

        await _identify()
        if g.user is None:
            raise Unauthorized("Metrics need an admin API token (or turn on the metrics_public setting)")
        if g.user.role != "admin":
            raise Forbidden("Metrics are for admins", code="ADMIN_REQUIRED")
    m = svc.extras["metrics"]
    m.queue_length.set(queued)
    return Response(generate_latest(m.registry), content_type=CONTENT_TYPE_LATEST)


@bp.get("/docs")
@public
async def api_docs() -> str:
    """A readable list of every documented route, built from /openapi.json (no CDN needed)."""
    spec = current_app.extensions["QUART_SCHEMA"].openapi_provider.schema()
    return await render_template("api_docs.html", spec=spec)
