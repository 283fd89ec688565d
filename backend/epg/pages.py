"""Admin pages for EPG sources: the list with status and import progress, add/edit, upload, channels."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, flash, g, render_template, request
from quart import redirect as _redirect
from quart_schema import hide

from backend.edge import page_args, services
from backend.epg import api, service
from backend.errors import AppError
from backend.tasks.models import ACTIVE_STATUSES, TaskRun

bp = Blueprint("epg_pages", __name__)

KIND_LABELS = {"xmltv_url": "XMLTV URL", "xmltv_file": "Uploaded XMLTV file"}
_NUMBERS = ("refresh_interval_minutes", "past_days", "future_days")


def redirect(location: str) -> Response:
    return _redirect(location)  # type: ignore[return-value]


def _ctx(**extra: Any) -> dict[str, Any]:
    base = {
        "user": g.get("user"),
        "csrf_token": g.get("csrf_token"),
        "errors": {},
        "form": {},
        "kinds": KIND_LABELS,
    }
    base.update(extra)
    return base


async def _page(template: str, status: int = 200, **values: Any) -> Response:
    body = await render_template(template, **_ctx(**values))
    return Response(body, status=status, content_type="text/html; charset=utf-8")


async def _active_tasks() -> dict[int, int]:
    """Source id -> id of its queued or running import, so the list can follow it live."""
    from sqlalchemy import select

    async with services().db.session() as session:
        rows = await session.execute(
            select(TaskRun.key, TaskRun.id).where(
                TaskRun.key.like("epg:%"), TaskRun.status.in_(ACTIVE_STATUSES)
            )
        )
        active: dict[int, int] = {}
        for key, task_id in rows:
            suffix = key.split(":", 1)[1]
            if suffix.isdigit():
                active[int(suffix)] = task_id
        return active


def _form_values(form: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """The submitted source fields as API values, plus errors for numbers that are not numbers."""
    values: dict[str, Any] = {
        "name": form.get("name", ""),
        "kind": form.get("kind", "xmltv_url"),
        "enabled": form.get("enabled") == "true",
        "url": form.get("url") or None,
        "user_agent": form.get("user_agent") or None,
        "preferred_language": form.get("preferred_language") or None,
    }
    errors: dict[str, str] = {}
    for name in _NUMBERS:
        raw = (form.get(name) or "").strip()
        if raw == "":
            values[name] = None
            continue
        try:
            values[name] = int(raw)
        except ValueError:
            errors[name] = "expected a whole number"
    return values, errors


@bp.get("/epgs")
@hide
async def epgs_page() -> Any:
    svc = services()
    async with svc.db.session() as session:
        sources, _total = await service.list_sources(session, 500, 0)
        items = [service.source_out(s) for s in sources]
    return await _page("epgs/list.html", sources=items, active=await _active_tasks())


@bp.get("/epgs/new")
@hide
async def new_epg_page() -> Any:
    form = {
        "kind": "xmltv_url",
        "enabled": True,
        "refresh_interval_minutes": 720,
        "past_days": 1,
        "future_days": 14,
    }
    return await _page("epgs/form.html", form=form, source=None)


@bp.post("/epgs/new")
@hide
async def create_epg_submit() -> Any:
    svc = services()
    form = await request.form
    values, errors = _form_values(form)
    if not errors:
        try:
            async with svc.db.transaction() as session:
                source = await service.create_source(session, values)
                source_id, kind, enabled = source.id, source.kind, source.enabled
        except AppError as exc:
            errors = exc.fields or {"name": exc.message}
    if errors:
        return await _page("epgs/form.html", status=400, form=dict(form), errors=errors, source=None)
    if kind == "xmltv_file":
        await flash("Guide source added. Upload its XMLTV file below.", "success")
        return redirect(f"/epgs/{source_id}")
    if enabled:
        await api.queue_import(source_id, force=False)
        await flash("Guide source added; its import has started.", "success")
    return redirect("/epgs")


@bp.get("/epgs/<int:epg_id>")
@hide
async def edit_epg_page(epg_id: int) -> Any:
    async with services().db.session() as session:
        source = service.source_out(await service.get_source(session, epg_id))
    active = (await _active_tasks()).get(epg_id)
    return await _page("epgs/form.html", form=source, source=source, task_id=active)


@bp.post("/epgs/<int:epg_id>")
@hide
async def update_epg_submit(epg_id: int) -> Any:
    svc = services()
    form = await request.form
    values, errors = _form_values(form)
    source: dict[str, Any] | None = None
    async with svc.db.session() as session:
        source = service.source_out(await service.get_source(session, epg_id))
    if not errors:
        try:
            async with svc.db.transaction() as session:
                row = await service.get_source(session, epg_id)
                await service.update_source(session, row, values)
            await flash("Guide source saved.", "success")
            return redirect("/epgs")
        except AppError as exc:
            errors = exc.fields or {"name": exc.message}
    return await _page("epgs/form.html", status=400, form=dict(form), errors=errors, source=source)


@bp.post("/epgs/<int:epg_id>/import")
@hide
async def import_epg_submit(epg_id: int) -> Any:
    async with services().db.session() as session:
        await service.get_source(session, epg_id)
    await api.queue_import(epg_id, force=(await request.form).get("force") == "true")
    return redirect("/epgs")


@bp.post("/epgs/<int:epg_id>/upload")
@hide
async def upload_epg_submit(epg_id: int) -> Any:
    try:
        await api.receive_guide_file(epg_id)
    except AppError as exc:
        await flash(exc.message, "error")
        return redirect(f"/epgs/{epg_id}")
    await flash("Guide file received; its import has started.", "success")
    return redirect("/epgs")


@bp.post("/epgs/<int:epg_id>/delete")
@hide
async def delete_epg_submit(epg_id: int) -> Any:
    svc = services()
    async with svc.db.transaction() as session:
        source = await service.get_source(session, epg_id)
        name = source.name
        await service.delete_source(session, source)
    await flash(f"Guide source {name} deleted.", "success")
    return redirect("/epgs")


@bp.get("/epgs/<int:epg_id>/channels")
@hide
async def epg_channels_page(epg_id: int) -> Any:
    limit, offset = page_args(default_limit=200, max_limit=1000)
    text = request.args.get("q") or None
    async with services().db.session() as session:
        source = service.source_out(await service.get_source(session, epg_id))
        channels, total = await service.list_epg_channels(session, epg_id, limit, offset, text)
        items = [service.epg_channel_out(c) for c in channels]
    return await _page(
        "epgs/channels.html",
        source=source,
        channels=items,
        total=total,
        limit=limit,
        offset=offset,
        q=text or "",
    )
