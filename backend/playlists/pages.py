"""Admin pages for playlists: the list with import progress, add/edit with a connection test, the stream browser."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from quart import Blueprint, Response, flash, render_template, request
from quart_schema import hide

from backend.download import redact_url
from backend.edge import services
from backend.errors import AppError
from backend.playlists import importer, service
from backend.playlists.api import published_values, queue_import, queue_lineup_publish, receive_playlist_file
from backend.playlists.models import KINDS
from backend.web.pages import _ctx, redirect

bp = Blueprint("playlists_pages", __name__)

PAGE_SIZE = 100
#: Rows per page the stream browser offers; the API pages with the same limit/offset.
PAGE_SIZES = (50, 100, 200, 500)
KIND_LABELS = {"m3u_url": "M3U playlist URL", "xtream": "Xtream Codes login", "m3u_file": "Uploaded M3U file"}
_FORM_FIELDS = (
    "name",
    "kind",
    "url",
    "xc_server",
    "xc_username",
    "user_agent",
    "headers",
    "connection_limit",
    "refresh_interval_minutes",
)


def _html(body: str, status: int = 200) -> Response:
    return Response(body, status=status, content_type="text/html; charset=utf-8")


def _form_values(form: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """Turn the submitted form into API values; fields that do not even parse get an error here."""
    errors: dict[str, str] = {}
    values: dict[str, Any] = {key: (form.get(key) or "").strip() for key in _FORM_FIELDS}
    values["enabled"] = form.get("enabled") == "true"
    values["xc_password"] = form.get("xc_password") or None
    for key in ("connection_limit", "refresh_interval_minutes"):
        raw = values[key]
        if raw == "":
            values[key] = None
        else:
            try:
                values[key] = int(raw)
            except ValueError:
                errors[key] = "Must be a whole number, or empty"
                values[key] = None
    headers: dict[str, str] = {}
    for number, line in enumerate(str(values["headers"]).splitlines(), 1):
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            errors["headers"] = f"Line {number} is not 'Name: value'"
            break
        headers[name.strip()] = value.strip()
    values["headers"] = headers
    return values, errors


def _all_errors(values: dict[str, Any], errors: dict[str, str], *, password_stored: bool) -> dict[str, str]:
    """When some fields did not parse, still check the others, so the form shows every problem at once."""
    if not errors:
        return errors
    try:
        service.clean_source(values, password_stored=password_stored)
    except AppError as exc:
        return {**(exc.fields or {}), **errors}
    return errors


def _form_echo(values: dict[str, Any], form: Any) -> dict[str, Any]:
    """What the form shows after a failed submit: exactly what was typed (never the password)."""
    echo = {key: form.get(key, "") for key in _FORM_FIELDS}
    echo["enabled"] = values.get("enabled", True)
    return echo


def _source_form(source: dict[str, Any]) -> dict[str, Any]:
    form = {key: source.get(key) or "" for key in _FORM_FIELDS}
    form["headers"] = "\n".join(f"{k}: {v}" for k, v in (source.get("headers") or {}).items())
    form["connection_limit"] = source.get("connection_limit") or ""
    form["refresh_interval_minutes"] = source.get("refresh_interval_minutes") or ""
    form["enabled"] = source.get("enabled", True)
    return form


async def _form_page(
    *,
    source: dict[str, Any] | None,
    form: dict[str, Any],
    errors: dict[str, str] | None = None,
    test: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    body = await render_template(
        "playlists/form.html",
        **_ctx(
            source=source,
            form=form,
            errors=errors or {},
            test=test,
            kinds=[(k, KIND_LABELS[k]) for k in KINDS],
            min_refresh=service.MIN_REFRESH_MINUTES,
        ),
    )
    return _html(body, status)


@bp.get("/playlists")
@hide
async def playlists_page() -> Response:
    async with services().db.session() as session:
        sources, _total = await service.list_sources(session, 500, 0)
        items = [service.source_out(s) for s in sources]
    for item in items:
        item["kind_label"] = KIND_LABELS.get(item["kind"], item["kind"])
        item["safe_url"] = redact_url(item["url"]) if item["url"] else None
    body = await render_template(
        "playlists/list.html",
        **_ctx(
            sources=items,
            task_id=request.args.get("task", type=int),
            task_playlist=request.args.get("playlist", type=int),
        ),
    )
    return _html(body)


@bp.get("/playlists/new")
@hide
async def new_playlist_page() -> Response:
    return await _form_page(source=None, form={"kind": request.args.get("kind", "m3u_url"), "enabled": True})


@bp.post("/playlists/new")
@hide
async def create_playlist_submit() -> Response:
    svc = services()
    form = await request.form
    values, errors = _form_values(form)
    if form.get("action") == "test":
        return await _form_page(source=None, form=_form_echo(values, form), test=await _test(values, None))
    errors = _all_errors(values, errors, password_stored=False)
    if not errors:
        try:
            async with svc.db.transaction() as session:
                created = service.source_out(await service.create_source(session, svc.keyring, values))
        except AppError as exc:
            errors = exc.fields or {"_": exc.message}
    if errors:
        return await _form_page(source=None, form=_form_echo(values, form), errors=errors, status=400)
    if created["kind"] == "m3u_file":
        await flash(f"Playlist {created['name']} added. Now upload its file.", "success")
        return redirect(f"/playlists/{created['id']}")
    task_id = await queue_import(created["id"], force=True)
    await flash(f"Playlist {created['name']} added; its first import is running.", "success")
    return redirect(f"/playlists?task={task_id}&playlist={created['id']}")


@bp.get("/playlists/<int:playlist_id>")
@hide
async def edit_playlist_page(playlist_id: int) -> Response:
    async with services().db.session() as session:
        source = service.source_out(await service.get_source(session, playlist_id))
    return await _form_page(source=source, form=_source_form(source))


@bp.post("/playlists/<int:playlist_id>")
@hide
async def edit_playlist_submit(playlist_id: int) -> Response:
    svc = services()
    form = await request.form
    values, errors = _form_values(form)
    async with svc.db.session() as session:
        source = service.source_out(await service.get_source(session, playlist_id))
    if form.get("action") == "test":
        test = await _test(values, playlist_id)
        return await _form_page(source=source, form=_form_echo(values, form), test=test)
    errors = _all_errors(values, errors, password_stored=source["xc_password"] is not None)
    republish = False
    if not errors:
        try:
            async with svc.db.transaction() as session:
                row = await service.get_source(session, playlist_id)
                before = published_values(row)
                await service.update_source(session, svc.keyring, row, values)
                republish = published_values(row) != before
        except AppError as exc:
            errors = exc.fields or {"_": exc.message}
    if errors:
        return await _form_page(source=source, form=_form_echo(values, form), errors=errors, status=400)
    if republish:
        await queue_lineup_publish()
    await flash("Playlist saved.", "success")
    return redirect("/playlists")


async def _test(values: dict[str, Any], playlist_id: int | None) -> dict[str, Any]:
    svc = services()
    stored = None
    if playlist_id is not None:
        async with svc.db.session() as session:
            row = await service.get_source(session, playlist_id)
            values = service.restore_secrets(row, values)
            if row.xc_password_enc and not values.get("xc_password"):
                stored = svc.keyring.decrypt(row.xc_password_enc)
    try:
        clean, _pw = service.clean_source(
            {**values, "name": values.get("name") or "test"},
            password_stored=stored is not None or values.get("kind") != "xtream",
        )
    except AppError as exc:
        return {
            "ok": False,
            "code": exc.code,
            "message": exc.message,
            "details": {"fields": exc.fields or {}},
        }
    clean["xc_password"] = values.get("xc_password")
    return await importer.test_connection(svc, clean, stored)


@bp.post("/playlists/<int:playlist_id>/delete")
@hide
async def delete_playlist_submit(playlist_id: int) -> Response:
    svc = services()
    try:
        async with svc.db.transaction() as session:
            source = await service.get_source(session, playlist_id)
            name = source.name
            await service.delete_source(session, source)
        await queue_lineup_publish()
        await flash(f"Playlist {name} and its streams were deleted.", "success")
    except AppError as exc:
        await flash(exc.message, "error")
    return redirect("/playlists")


@bp.post("/playlists/<int:playlist_id>/import")
@hide
async def import_playlist_submit(playlist_id: int) -> Response:
    """The no-JavaScript form of "Import now"; the page's script calls the API and follows the task."""
    try:
        async with services().db.session() as session:
            await service.get_source(session, playlist_id)
        task_id = await queue_import(playlist_id, force=True)
    except AppError as exc:
        await flash(exc.message, "error")
        return redirect("/playlists")
    return redirect(f"/playlists?task={task_id}&playlist={playlist_id}")


@bp.post("/playlists/<int:playlist_id>/upload")
@hide
async def upload_playlist_submit(playlist_id: int) -> Response:
    try:
        task_id = await receive_playlist_file(playlist_id)
    except AppError as exc:
        async with services().db.session() as session:
            source = service.source_out(await service.get_source(session, playlist_id))
        errors = {"file": (exc.fields or {}).get("file", exc.message)}
        return await _form_page(source=source, form=_source_form(source), errors=errors, status=exc.status)
    await flash("File uploaded; importing it now.", "success")
    return redirect(f"/playlists?task={task_id}&playlist={playlist_id}")


@bp.get("/playlists/streams")
@hide
async def all_streams_page() -> Response:
    return await _streams_page(None)


@bp.get("/playlists/<int:playlist_id>/streams")
@hide
async def playlist_streams_page(playlist_id: int) -> Response:
    return await _streams_page(playlist_id)


#: The group filter's "all groups" choice; a real group is its title, "" means "no group".
ALL_GROUPS = "*"


async def _streams_page(playlist_id: int | None) -> Response:
    query = (request.args.get("q") or "").strip()[:200]
    group = request.args.get("group")
    if group == ALL_GROUPS:
        group = None
    offset = max(0, request.args.get("offset", 0, type=int) or 0)
    limit = request.args.get("limit", PAGE_SIZE, type=int) or PAGE_SIZE
    if limit not in PAGE_SIZES:
        limit = PAGE_SIZE
    # The pager's links keep the search and the group; it adds offset and limit itself.
    filter_url = f"{request.path}?{urlencode({'q': query, 'group': ALL_GROUPS if group is None else group})}"

    async with services().db.session() as session:
        source = service.source_out(await service.get_source(session, playlist_id)) if playlist_id else None
        sources, _total = await service.list_sources(session, 500, 0)
        names = {s.id: s.name for s in sources}
        groups = await service.list_groups(session, playlist_id=playlist_id)
        items, total = await service.list_streams(
            session, playlist_id=playlist_id, query=query or None, group=group, limit=limit, offset=offset
        )
    for item in items:
        item["safe_url"] = redact_url(item["url"])
        item["playlist_name"] = names.get(item["playlist_id"], "")
    body = await render_template(
        "playlists/streams.html",
        **_ctx(
            source=source,
            streams=items,
            total=total,
            groups=groups,
            query=query,
            group=group,
            offset=offset,
            limit=limit,
            page_sizes=PAGE_SIZES,
            filter_url=filter_url,
            all_groups=ALL_GROUPS,
        ),
    )
    return _html(body)
