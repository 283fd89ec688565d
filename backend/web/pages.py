"""The Jinja admin pages: setup, login, dashboard, tasks, users, settings, account."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from quart import Blueprint, Response, flash, g, render_template, request
from quart import redirect as _redirect
from quart_schema import hide

from backend.auth import service as auth_service
from backend.auth.api import user_out
from backend.auth.guard import (
    SESSION_COOKIE,
    clear_session_cookie,
    login_with_password,
    public,
    set_session_cookie,
    user_required,
)
from backend.auth.models import ADMIN
from backend.db import iso_z
from backend.edge import services
from backend.errors import AppError, Forbidden
from backend.publish import users as tvh_users
from backend.settings import service as settings_service
from backend.settings.hooks import run_change_hooks
from backend.tasks import service as task_service
from backend.tasks.models import STATUSES
from backend.tasks.registry import JOBS
from backend.tvheadend.service import load_tvh_settings

bp = Blueprint("web", __name__)

FORM_CSRF_COOKIE = "tic_form_csrf"


def redirect(location: str) -> Response:
    """A 302 typed as Quart's Response (werkzeug's helper is typed with its own class)."""
    return _redirect(location)  # type: ignore[return-value]


def _ctx(**extra: Any) -> dict[str, Any]:
    base = {"user": g.get("user"), "csrf_token": g.get("csrf_token"), "errors": {}, "form": {}}
    base.update(extra)
    return base


def _form_csrf() -> str:
    return request.cookies.get(FORM_CSRF_COOKIE) or secrets.token_urlsafe(32)


def _with_form_cookie(body: str, token: str, status: int = 200) -> Response:
    response = Response(body, status=status, content_type="text/html; charset=utf-8")
    response.set_cookie(FORM_CSRF_COOKIE, token, httponly=True, samesite="Strict", path="/")
    return response


def _check_form_csrf(form: Any) -> None:
    """Pre-login forms use a double-submit cookie, since there is no session to hold a token yet."""
    cookie = request.cookies.get(FORM_CSRF_COOKIE, "")
    given = form.get("csrf_token", "")
    if not cookie or not hmac.compare_digest(cookie.encode(), given.encode()):
        raise Forbidden("The form expired: reload the page and try again", code="CSRF_FAILED")


def _safe_next(target: str | None) -> str:
    # Only same-site relative paths, so a crafted link cannot bounce a user to another site.
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


@bp.get("/setup")
@public
@hide
async def setup_page() -> Any:
    svc = services()
    async with svc.db.session() as session:
        if await auth_service.count_users(session) > 0:
            return redirect("/login")
    token = _form_csrf()
    return _with_form_cookie(await render_template("setup.html", **_ctx(form_csrf=token)), token)


@bp.post("/setup")
@public
@hide
async def setup_submit() -> Any:
    svc = services()
    form = await request.form
    _check_form_csrf(form)
    errors: dict[str, str] = {}
    if form.get("password", "") != form.get("password2", ""):
        errors["password2"] = "The two passwords differ"
    if not errors:
        try:
            async with svc.db.transaction() as session:
                if await auth_service.count_users(session) > 0:
                    return redirect("/login")
                await auth_service.create_user(
                    session,
                    svc.keyring,
                    username=form.get("username", ""),
                    password=form.get("password", ""),
                    role=ADMIN,
                )
            svc.setup_done = True
        except AppError as exc:
            errors.update(exc.fields or {"username": exc.message})
    if errors:
        token = _form_csrf()
        body = await render_template(
            "setup.html", **_ctx(form_csrf=token, errors=errors, form={"username": form.get("username", "")})
        )
        return _with_form_cookie(body, token, 400)
    user, token, _csrf = await login_with_password(form["username"], form["password"])
    await flash(f"Welcome, {user.username}. Start by adding a playlist.", "success")
    response = redirect("/")
    set_session_cookie(response, token)
    return response


@bp.get("/login")
@public
@hide
async def login_page() -> Any:
    svc = services()
    async with svc.db.session() as session:
        if await auth_service.count_users(session) == 0:
            return redirect("/setup")
    token = _form_csrf()
    body = await render_template("login.html", **_ctx(form_csrf=token, next=request.args.get("next", "")))
    return _with_form_cookie(body, token)


@bp.post("/login")
@public
@hide
async def login_submit() -> Any:
    form = await request.form
    _check_form_csrf(form)
    try:
        _user, session_token, _csrf = await login_with_password(
            form.get("username", ""), form.get("password", "")
        )
    except AppError as exc:
        token = _form_csrf()
        body = await render_template(
            "login.html",
            **_ctx(
                form_csrf=token, error=exc.message, username=form.get("username", ""), next=form.get("next")
            ),
        )
        response = _with_form_cookie(body, token, exc.status)
        for name, value in exc.headers.items():
            response.headers[name] = value
        return response
    response = redirect(_safe_next(form.get("next")))
    set_session_cookie(response, session_token)
    return response


@bp.post("/logout")
@user_required
@hide
async def logout_submit() -> Any:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        async with services().db.transaction() as session:
            await auth_service.end_session(session, cookie)
    response = redirect("/login")
    clear_session_cookie(response)
    return response


#: Rows per page the task history offers; the API pages with the same limit/offset.
TASK_PAGE_SIZES = (25, 50, 100, 200)


def _task_history_args() -> dict[str, Any]:
    """The history's filters and page from the query string; values it does not know fall back to the defaults."""
    status = request.args.get("status") or None
    name = (request.args.get("name") or "").strip()[:100] or None
    limit = request.args.get("limit", 50, type=int) or 50
    return {
        "status": status if status in STATUSES else None,
        "name": name,
        "limit": limit if limit in TASK_PAGE_SIZES else 50,
        "offset": max(0, request.args.get("offset", 0, type=int) or 0),
    }


async def _task_context() -> dict[str, Any]:
    svc = services()
    args = _task_history_args()
    async with svc.db.session() as session:
        overview = await task_service.overview(session, svc.broker, **args)
    filters = urlencode({key: args[key] for key in ("status", "name") if args[key]})
    return _ctx(
        overview=overview,
        history=args,
        history_url="/tasks" + (f"?{filters}" if filters else ""),
        task_names=sorted(JOBS),
        task_statuses=STATUSES,
        page_sizes=TASK_PAGE_SIZES,
    )


@bp.get("/tasks")
@hide
async def tasks_page() -> Any:
    return await render_template("tasks.html", **await _task_context())


@bp.get("/tasks/partial")
@hide
async def tasks_partial() -> Any:
    return await render_template("partials/task_tables.html", **await _task_context())


async def _set_paused(paused: bool) -> None:
    svc = services()
    async with svc.db.transaction() as session:
        changed = await settings_service.update_settings(session, svc.keyring, {"broker_paused": paused})
    await run_change_hooks(svc, changed)
    await (svc.broker.pause() if paused else svc.broker.resume())


@bp.post("/tasks/pause")
@hide
async def tasks_pause() -> Any:
    await _set_paused(True)
    await flash("The queue is paused.", "success")
    return redirect("/tasks")


@bp.post("/tasks/resume")
@hide
async def tasks_resume() -> Any:
    await _set_paused(False)
    await flash("The queue is running again.", "success")
    return redirect("/tasks")


@bp.post("/tasks/<int:task_id>/cancel")
@hide
async def tasks_cancel(task_id: int) -> Any:
    try:
        await services().broker.cancel(task_id)
        await flash(f"Task {task_id} cancelled.", "success")
    except AppError as exc:
        await flash(exc.message, "error")
    return redirect("/tasks")


async def _users_page(errors: dict[str, str] | None = None, form: Any = None, status: int = 200) -> Any:
    async with services().db.session() as session:
        users, _total = await auth_service.list_users(session, 500, 0)
    body = await render_template(
        "users.html", **_ctx(users=[user_out(u) for u in users], errors=errors or {}, form=form or {})
    )
    return Response(body, status=status, content_type="text/html; charset=utf-8")


@bp.get("/users")
@hide
async def users_page() -> Any:
    return await _users_page()


@bp.post("/users")
@hide
async def users_create() -> Any:
    svc = services()
    form = await request.form
    try:
        async with svc.db.transaction() as session:
            await auth_service.create_user(
                session,
                svc.keyring,
                username=form.get("username", ""),
                password=form.get("password", ""),
                role=form.get("role", "streamer"),
                dvr_access=form.get("dvr_access", "none"),
            )
    except AppError as exc:
        return await _users_page(exc.fields or {"username": exc.message}, dict(form), 400)
    await flash(f"User {form.get('username')} added.", "success")
    return redirect("/users")


async def _user_action(user_id: int, action: Callable[[Any, Any], Awaitable[Any]], done: str) -> Any:
    """Run one change on a user in a transaction, flash the outcome, and go back to the list."""
    try:
        async with services().db.transaction() as session:
            await action(session, await auth_service.get_user(session, user_id))
        await flash(done, "success")
    except AppError as exc:
        await flash(exc.message, "error")
    return redirect("/users")


@bp.post("/users/<int:user_id>")
@hide
async def users_update(user_id: int) -> Any:
    form = await request.form
    return await _user_action(
        user_id,
        lambda s, u: auth_service.update_user(s, u, role=form.get("role"), dvr_access=form.get("dvr_access")),
        "User saved.",
    )


@bp.post("/users/<int:user_id>/password")
@hide
async def users_password(user_id: int) -> Any:
    form = await request.form
    return await _user_action(
        user_id,
        lambda s, u: auth_service.update_user(s, u, password=form.get("password", "")),
        "Password changed; that user's sessions were ended.",
    )


@bp.post("/users/<int:user_id>/rotate-stream-key")
@hide
async def users_rotate(user_id: int) -> Any:
    keyring = services().keyring
    return await _user_action(
        user_id,
        lambda s, u: auth_service.rotate_stream_key(s, keyring, u),
        "Stream key rotated; the old client URLs no longer work.",
    )


@bp.post("/users/<int:user_id>/delete")
@hide
async def users_delete(user_id: int) -> Any:
    return await _user_action(user_id, auth_service.delete_user, "User deleted.")


async def _settings_page(errors: dict[str, str] | None = None, status: int = 200) -> Any:
    svc = services()
    async with svc.db.session() as session:
        values = settings_service.public_view(await settings_service.get_settings(session, svc.keyring))
    definitions = {
        k: {"type": d.type.__name__, "description": d.description, "secret": d.secret, "choices": d.choices}
        for k, d in settings_service.REGISTRY.items()
    }
    body = await render_template(
        "settings.html", **_ctx(values=values, definitions=definitions, errors=errors or {})
    )
    return Response(body, status=status, content_type="text/html; charset=utf-8")


@bp.get("/settings")
@hide
async def settings_page() -> Any:
    return await _settings_page()


@bp.post("/settings")
@hide
async def settings_submit() -> Any:
    svc = services()
    form = await request.form
    bool_keys = set(form.getlist("__bool__"))
    changes: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for key, defn in settings_service.REGISTRY.items():
        if key in bool_keys:
            changes[key] = form.get(key) == "true"
        elif key in form:
            raw = form[key]
            if defn.type is int:
                try:
                    changes[key] = int(raw)
                except ValueError:
                    errors[key] = "expected a whole number"
            elif defn.type is float:
                try:
                    changes[key] = float(raw)
                except ValueError:
                    errors[key] = "expected a number"
            else:
                changes[key] = raw
    if not errors:
        try:
            async with svc.db.transaction() as session:
                changed = await settings_service.update_settings(session, svc.keyring, changes)
            await run_change_hooks(svc, changed)
            await flash(f"Saved ({len(changed)} changed).", "success")
            return redirect("/settings")
        except AppError as exc:
            errors = exc.fields or {"_": exc.message}
    return await _settings_page(errors, 400)


@bp.get("/account")
@user_required
@hide
async def account_page() -> Any:
    return await render_account()


async def render_account(*, new_token: str | None = None, new_tvh_password: str | None = None) -> Response:
    """The /account page; a new API token or TVHeadend password is shown in it once, never stored."""
    svc = services()
    async with svc.db.session() as session:
        tokens = await auth_service.list_api_tokens(session, g.user)
        tvh_login = await tvh_users.get_login(session, g.user.id)
        tvh_configured = (await load_tvh_settings(session, svc.keyring)).configured
    items = [
        {"id": t.id, "name": t.name, "created_at": iso_z(t.created_at), "last_used_at": iso_z(t.last_used_at)}
        for t in tokens
    ]
    key = auth_service.reveal_stream_key(svc.keyring, g.user)
    body = await render_template(
        "account.html",
        **_ctx(
            stream_key=key,
            tokens=items,
            new_token=new_token,
            tvh_login=tvh_login,
            tvh_configured=tvh_configured,
            new_tvh_password=new_tvh_password,
        ),
    )
    response = Response(body, content_type="text/html; charset=utf-8")
    if new_token is not None or new_tvh_password is not None:
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/account/rotate-stream-key")
@user_required
@hide
async def account_rotate() -> Any:
    svc = services()
    async with svc.db.transaction() as session:
        user = await auth_service.get_user(session, g.user.id)
        await auth_service.rotate_stream_key(session, svc.keyring, user)
    await flash("Your stream key was rotated; update your clients with the new URLs.", "success")
    return redirect("/account")


@bp.post("/account/preferences")
@user_required
@hide
async def account_preferences() -> Any:
    """Save the user's display preferences (12 or 24 h clock; times are always shown in local time)."""
    form = await request.form
    try:
        async with services().db.transaction() as session:
            user = await auth_service.get_user(session, g.user.id)
            await auth_service.update_user(session, user, time_format=form.get("time_format", ""))
    except AppError as exc:
        await flash(exc.message, "error")
        return redirect("/account")
    await flash("Preferences saved.", "success")
    return redirect("/account")


@bp.post("/account/tokens")
@user_required
@hide
async def account_token_create() -> Any:
    svc = services()
    form = await request.form
    try:
        async with svc.db.transaction() as session:
            token, _row = await auth_service.create_api_token(session, g.user, form.get("name", ""))
    except AppError as exc:
        await flash(exc.message, "error")
        return redirect("/account")
    # Render directly instead of redirecting: the token must be shown once and never stored.
    return await render_account(new_token=token)


@bp.post("/account/tokens/<int:token_id>/delete")
@user_required
@hide
async def account_token_delete(token_id: int) -> Any:
    try:
        async with services().db.transaction() as session:
            await auth_service.delete_api_token(session, g.user, token_id)
        await flash("Token revoked.", "success")
    except AppError as exc:
        await flash(exc.message, "error")
    return redirect("/account")
