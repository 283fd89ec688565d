"""JSON API for the task queue: overview with long-poll, one run, pause/resume, cancel."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from quart import Blueprint, request
from quart_schema import validate_response

from backend.edge import page_args, services
from backend.errors import Invalid
from backend.settings import service as settings_service
from backend.tasks import service

bp = Blueprint("tasks", __name__, url_prefix="/tic-api/tasks")

MAX_WAIT = 60.0


class TaskOut(BaseModel):
    id: int
    key: str
    name: str
    status: str
    progress: int
    message: str
    error: str | None
    attempts: int
    priority: int
    retry_of: int | None
    requested_by: str | None
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    not_before: str | None


class TaskOverview(BaseModel):
    items: list[TaskOut]
    total: int
    queue: list[TaskOut]
    current: TaskOut | None
    paused: bool
    version: int


class PausedOut(BaseModel):
    paused: bool


@bp.get("")
@validate_response(TaskOverview, 200)
async def list_tasks() -> dict[str, Any]:
    """Queue, current run and history. `?wait=N&since=V` waits up to N s for a change after version V."""
    svc = services()
    limit, offset = page_args(default_limit=50)
    wait_raw = request.args.get("wait")
    if wait_raw is not None:
        try:
            wait = float(wait_raw)
            since = int(request.args.get("since", svc.broker.version))
        except ValueError as exc:
            raise Invalid("wait and since must be numbers", fields={"wait": "number"}) from exc
        await svc.broker.wait_for_change(since, max(0.0, min(wait, MAX_WAIT)))
    async with svc.db.session() as session:
        return await service.overview(
            session,
            svc.broker,
            limit=limit,
            offset=offset,
            status=request.args.get("status"),
            name=request.args.get("name"),
        )


@bp.get("/<int:task_id>")
@validate_response(TaskOut, 200)
async def get_task(task_id: int) -> dict[str, Any]:
    svc = services()
    async with svc.db.session() as session:
        return service.run_out(await service.get_run(session, task_id), svc.broker)


@bp.post("/pause")
@validate_response(PausedOut, 200)
async def pause_tasks() -> dict[str, Any]:
    """Stop starting new tasks (the running one finishes). Survives restarts."""
    svc = services()
    await svc.broker.pause()
    async with svc.db.transaction() as session:
        await settings_service.update_settings(session, svc.keyring, {"broker_paused": True})
    return {"paused": True}


@bp.post("/resume")
@validate_response(PausedOut, 200)
async def resume_tasks() -> dict[str, Any]:
    svc = services()
    async with svc.db.transaction() as session:
        await settings_service.update_settings(session, svc.keyring, {"broker_paused": False})
    await svc.broker.resume()
    return {"paused": False}


@bp.post("/<int:task_id>/cancel")
@validate_response(TaskOut, 200)
async def cancel_task(task_id: int) -> dict[str, Any]:
    svc = services()
    await svc.broker.cancel(task_id)
    async with svc.db.session() as session:
        return service.run_out(await service.get_run(session, task_id), svc.broker)
