"""Dashboard page: tasks, system facts and what needs attention."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from quart import Blueprint, g, render_template
from quart_schema import hide

from backend import __version__
from backend.auth.guard import user_required
from backend.auth.models import ADMIN
from backend.edge import services
from backend.tasks import service as task_service
from backend.tasks.offload import run_blocking
from backend.web.pages import _ctx, redirect

bp = Blueprint("ui", __name__)


def _dir_size(path: Path) -> str:
    total = 0
    for p in path.rglob("*"):
        try:
            if p.is_file():
                total += p.stat().st_size
        except OSError:
            continue
    size = float(total)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024:
            return f"{size:.0f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


@bp.get("/")
@user_required
@hide
async def dashboard() -> Any:
    if g.user.role != ADMIN:
        return redirect("/account")
    svc = services()
    async with svc.db.session() as session:
        overview = await task_service.overview(
            session, svc.broker, limit=20, offset=0, status=None, name=None
        )
    size = await run_blocking(_dir_size, svc.config.data_dir)
    return await render_template(
        "dashboard.html",
        **_ctx(
            overview=overview,
            version=__version__,
            database=svc.db.dialect,
            data_dir=str(svc.config.data_dir.resolve()),
            data_size=size,
        ),
    )
