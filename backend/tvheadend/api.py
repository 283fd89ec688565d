"""JSON API for the TVHeadend connection: its status and a "test connection" action."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError
from quart import Blueprint, request
from quart_schema import document_request, validate_response

from backend.edge import services
from backend.errors import Invalid
from backend.publish import service as publish_service
from backend.schemas import RequestModel
from backend.settings.service import MASK
from backend.tvheadend.service import (
    TvhSettings,
    check_out,
    client_for,
    connection_status,
    load_tvh_settings,
    managed_counts,
    publish_status,
    same_server,
)
from backend.tvheadend.settings import tvh_url_problem

bp = Blueprint("tvheadend", __name__, url_prefix="/tic-api/tvheadend")


class ConnectionTestIn(RequestModel):
    """Values to try instead of the saved ones; a missing (or masked) password means the saved one."""

    url: str | None = None
    username: str | None = None
    password: str | None = None


class ManagedCounts(BaseModel):
    """TVHeadend objects TIC manages (recorded by its publishes), by kind."""

    network: int
    mux: int
    channel: int
    tag: int
    total: int


class PublishSummaryOut(BaseModel):
    """What a publish applied: counts, per action and kind in `by_kind`, drift put back, problems."""

    created: int
    updated: int
    deleted: int
    by_kind: dict[str, dict[str, int]]
    drift_repaired: int
    problems: int


class LastPublishOut(BaseModel):
    id: int
    task_run_id: int | None
    #: running, succeeded or failed.
    status: str
    started_at: str
    finished_at: str | None
    error: str | None
    summary: PublishSummaryOut
    read_calls: int
    write_calls: int


class DriftOut(BaseModel):
    """An object TIC manages that was changed or deleted in TVHeadend (`what`), and put back."""

    kind: str
    name: str
    uuid: str | None
    what: str | None
    fields: list[str]


class TvheadendStatus(BaseModel):
    configured: bool
    url: str
    username: str
    proxy_url: str
    reachable: bool
    ok: bool
    error: str | None
    error_code: str | None
    warnings: list[str]
    checked_at: str
    #: Known once TVHeadend answered the check (`ok`).
    sw_version: str | None = None
    version: str | None = None
    api_version: int | None = None
    auth_mode: str | None = None
    is_admin: bool | None = None
    has_dvr: bool | None = None
    webroot: str | None = None
    proxy_ready: bool | None = None
    managed: ManagedCounts
    last_publish: LastPublishOut | None
    #: The drift the last publish found (at most 100 entries; `drift_total` counts them all).
    drift: list[DriftOut]
    drift_total: int


@bp.get("/status")
@validate_response(TvheadendStatus, 200)
async def get_tvheadend_status() -> dict[str, Any]:
    """Whether TVHeadend is configured and reachable, its version and what TIC's user may do there; the
    objects TIC manages in it, by kind; the last publish with its summary, and the drift it found.

    The connection is checked live on every call. `error`/`error_code` say why it is not usable;
    `warnings` list what works but needs attention (for example a missing `--http_root /tic-tvh`).
    """
    svc = services()
    async with svc.db.session() as session:
        settings = await load_tvh_settings(session, svc.keyring)
        managed = await managed_counts(session)
        last = await publish_service.last_publish(session)
    status = await connection_status(settings, svc.http.api)
    return {**status, "managed": managed, **publish_status(last)}


@bp.post("/test-connection")
@document_request(ConnectionTestIn)
async def test_tvheadend_connection() -> dict[str, Any]:
    """Test the saved connection, or the `url`/`username`/`password` in the body before saving them.

    The saved password is only sent to the saved server: testing another URL needs its password.
    Answers the version, API version, auth mode and rights, or TVHeadend's error with its code
    (TVH_UNREACHABLE, TVH_TIMEOUT, TVH_AUTH_REQUIRED, TVH_FORBIDDEN, TVH_NOT_FOUND, TVH_BAD_RESPONSE).
    """
    svc = services()
    body = await _optional_body()
    async with svc.db.session() as session:
        saved = await load_tvh_settings(session, svc.keyring)
    url = (body.url.strip() if body.url is not None else saved.url).rstrip("/")
    problem = tvh_url_problem(url)
    if problem:
        raise Invalid(f"url: {problem}", fields={"url": problem})
    if not url:
        raise Invalid(
            "TVHeadend is not configured: send a url or save one in Settings",
            code="TVH_NOT_CONFIGURED",
            fields={"url": "required"},
        )
    password = body.password
    if password is None or password == MASK:
        password = saved.password if same_server(url, saved.url) else ""
    settings = TvhSettings(
        url=url,
        username=(body.username if body.username is not None else saved.username).strip(),
        password=password,
        timeout=saved.timeout,
    )
    check = await client_for(settings, svc.http.api).test_connection()
    return {"ok": True, "url": settings.url, "username": settings.username, **check_out(check)}


async def _optional_body() -> ConnectionTestIn:
    raw = await request.get_data(as_text=True)
    if not raw.strip():
        return ConnectionTestIn()
    data = await request.get_json(silent=True)
    if not isinstance(data, dict):
        raise Invalid("The request body must be a JSON object", code="INVALID_JSON")
    try:
        return ConnectionTestIn.model_validate(data)
    except ValidationError as exc:
        fields = {".".join(str(p) for p in e["loc"]) or "body": e["msg"] for e in exc.errors()}
        raise Invalid(f"Invalid request: check {', '.join(sorted(fields))}", fields=fields) from exc
