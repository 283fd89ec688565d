"""JSON API for first-run setup, login/logout, users, stream keys and personal API tokens."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, g, jsonify, request
from quart_schema import document_response, validate_request, validate_response

from backend.auth import service
from backend.auth.guard import (
    SESSION_COOKIE,
    clear_session_cookie,
    login_with_password,
    public,
    set_session_cookie,
    user_required,
)
from backend.auth.models import ADMIN, User
from backend.auth.schemas import (
    LoginIn,
    LoginOut,
    SelfPatchIn,
    SetupIn,
    StreamKeyOut,
    TokenCreatedOut,
    TokenCreateIn,
    TokenList,
    UserCreateIn,
    UserList,
    UserOut,
    UserPatchIn,
)
from backend.db import iso_z
from backend.edge import listing, page_args, services
from backend.errors import Conflict, Forbidden, Unauthorized

bp = Blueprint("auth", __name__, url_prefix="/tic-api")


def user_out(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "role": user.role,
        "enabled": user.enabled,
        "dvr_access": user.dvr_access,
        "time_format": user.time_format,
        "created_at": iso_z(user.created_at),
        "last_login_at": iso_z(user.last_login_at),
    }


@bp.post("/setup")
@public
@validate_request(SetupIn)
@validate_response(UserOut, 201)
async def create_first_admin(data: SetupIn) -> tuple[dict[str, Any], int]:
    """Create the first admin. Only works while TIC has no users at all."""
    svc = services()
    async with svc.db.transaction() as session:
        if await service.count_users(session) > 0:
            raise Conflict("Setup is already done; log in instead", code="SETUP_DONE")
        user = await service.create_user(
            session, svc.keyring, username=data.username, password=data.password, role=ADMIN
        )
        out = user_out(user)
    svc.setup_done = True
    return out, 201


@bp.post("/auth/login")
@public
@validate_request(LoginIn)
@document_response(LoginOut, 200)
async def login(data: LoginIn) -> Any:
    """Log in with a password; sets the session cookie and returns the CSRF token for later writes."""
    user, token, csrf = await login_with_password(data.username, data.password)
    response = jsonify({"csrf_token": csrf, "user": user_out(user)})
    set_session_cookie(response, token)
    return response


@bp.post("/auth/logout")
@user_required
async def logout() -> Any:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        async with services().db.transaction() as session:
            await service.end_session(session, cookie)
    response = jsonify({})
    clear_session_cookie(response)
    return response


@bp.get("/auth/me")
@user_required
@validate_response(UserOut, 200)
async def get_me() -> dict[str, Any]:
    return user_out(g.user)


@bp.get("/auth/tokens")
@user_required
@validate_response(TokenList, 200)
async def list_tokens() -> dict[str, Any]:
    async with services().db.session() as session:
        rows = await service.list_api_tokens(session, g.user)
    items = [
        {"id": r.id, "name": r.name, "created_at": iso_z(r.created_at), "last_used_at": iso_z(r.last_used_at)}
        for r in rows
    ]
    return listing(items, len(items))


@bp.post("/auth/tokens")
@user_required
@validate_request(TokenCreateIn)
@validate_response(TokenCreatedOut, 201)
async def create_token(data: TokenCreateIn) -> tuple[dict[str, Any], int]:
    """Create a personal API token; the token is shown only in this response."""
    async with services().db.transaction() as session:
        token, row = await service.create_api_token(session, g.user, data.name)
        return {"id": row.id, "name": row.name, "token": token}, 201


@bp.delete("/auth/tokens/<int:token_id>")
@user_required
async def delete_token(token_id: int) -> tuple[str, int]:
    async with services().db.transaction() as session:
        await service.delete_api_token(session, g.user, token_id)
    return "", 204


@bp.get("/users")
@validate_response(UserList, 200)
async def list_users() -> dict[str, Any]:
    limit, offset = page_args()
    async with services().db.session() as session:
        users, total = await service.list_users(session, limit, offset)
    return listing([user_out(u) for u in users], total)


@bp.post("/users")
@validate_request(UserCreateIn)
@validate_response(UserOut, 201)
async def create_user(data: UserCreateIn) -> tuple[dict[str, Any], int]:
    svc = services()
    async with svc.db.transaction() as session:
        user = await service.create_user(
            session,
            svc.keyring,
            username=data.username,
            password=data.password,
            role=data.role,
            dvr_access=data.dvr_access,
        )
        return user_out(user), 201


@bp.get("/users/<int:user_id>")
@validate_response(UserOut, 200)
async def get_user(user_id: int) -> dict[str, Any]:
    async with services().db.session() as session:
        return user_out(await service.get_user(session, user_id))


@bp.patch("/users/<int:user_id>")
@validate_request(UserPatchIn)
@validate_response(UserOut, 200)
async def update_user(user_id: int, data: UserPatchIn) -> dict[str, Any]:
    async with services().db.transaction() as session:
        user = await service.get_user(session, user_id)
        await service.update_user(session, user, **data.model_dump(exclude_none=True))
        return user_out(user)


@bp.delete("/users/<int:user_id>")
async def delete_user(user_id: int) -> tuple[str, int]:
    svc = services()
    async with svc.db.transaction() as session:
        await service.delete_user(session, await service.get_user(session, user_id))
    # The user's TVHeadend login (if TIC issued one) goes too; the job is registered by the publish domain.
    await svc.broker.enqueue("sync_tvheadend_users", requested_by=g.user.username)
    return "", 204


@bp.post("/users/<int:user_id>/rotate-stream-key")
@validate_response(StreamKeyOut, 200)
async def rotate_user_stream_key(user_id: int) -> dict[str, Any]:
    """Give a user a new stream key; their old client URLs stop working at once."""
    svc = services()
    async with svc.db.transaction() as session:
        user = await service.get_user(session, user_id)
        return {"stream_key": await service.rotate_stream_key(session, svc.keyring, user)}


@bp.get("/users/<int:user_id>/stream-key")
@validate_response(StreamKeyOut, 200)
async def get_user_stream_key(user_id: int) -> dict[str, Any]:
    svc = services()
    async with svc.db.session() as session:
        user = await service.get_user(session, user_id)
        return {"stream_key": service.reveal_stream_key(svc.keyring, user)}


@bp.get("/users/self")
@user_required
@validate_response(UserOut, 200)
async def get_self() -> dict[str, Any]:
    return user_out(g.user)


@bp.patch("/users/self")
@user_required
@validate_request(SelfPatchIn)
@validate_response(UserOut, 200)
async def update_self(data: SelfPatchIn) -> dict[str, Any]:
    """Change your own password (the current one is required) or time format."""
    async with services().db.transaction() as session:
        user = await service.get_user(session, g.user.id)
        if data.password is not None:
            if (
                data.current_password is None
                or await service.authenticate(session, user.username, data.current_password) is None
            ):
                raise Forbidden("The current password is wrong", code="BAD_CURRENT_PASSWORD")
        await service.update_user(session, user, password=data.password, time_format=data.time_format)
        return user_out(user)


@bp.get("/users/self/stream-key")
@user_required
@validate_response(StreamKeyOut, 200)
async def get_own_stream_key() -> dict[str, Any]:
    return {"stream_key": service.reveal_stream_key(services().keyring, g.user)}


@bp.post("/users/self/rotate-stream-key")
@user_required
@validate_response(StreamKeyOut, 200)
async def rotate_own_stream_key() -> dict[str, Any]:
    svc = services()
    async with svc.db.transaction() as session:
        user = await service.get_user(session, g.user.id)
        if user is None:
            raise Unauthorized("Log in first")
        return {"stream_key": await service.rotate_stream_key(session, svc.keyring, user)}
