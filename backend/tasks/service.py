"""Reading task history and shaping task runs for the API."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.db import iso_z
from backend.errors import Invalid, NotFound
from backend.tasks.broker import TaskQueueBroker
from backend.tasks.models import QUEUED, RUNNING, STATUSES, TaskRun


def run_out(run: TaskRun, broker: TaskQueueBroker | None = None) -> dict[str, Any]:
    progress, message = run.progress, run.message
    current = broker.current if broker is not None else None
    if current is not None and current.run_id == run.id and run.status == RUNNING:
        # The live copy is fresher than the throttled database write.
        progress, message = current.progress_value, current.message or message
    return {
        "id": run.id,
        "key": run.key,
        "name": run.name,
        "status": run.status,
        "progress": progress,
        "message": message,
        "error": run.error,
        "attempts": run.attempts,
        "priority": run.priority,
        "retry_of": run.retry_of,
        "requested_by": run.requested_by,
        "created_at": iso_z(run.created_at),
        "started_at": iso_z(run.started_at),
        "finished_at": iso_z(run.finished_at),
        "not_before": iso_z(run.not_before),
    }


async def get_run(session: AsyncSession, run_id: int) -> TaskRun:
    run = await session.get(TaskRun, run_id)
    if run is None:
        raise NotFound(f"Task {run_id} does not exist", code="TASK_NOT_FOUND")
    return run


async def overview(
    session: AsyncSession,
    broker: TaskQueueBroker,
    *,
    limit: int,
    offset: int,
    status: str | None,
    name: str | None,
) -> dict[str, Any]:
    """The queue, the current run and recent history (filtered and paged), in one read."""
    if status is not None and status not in STATUSES:
        raise Invalid(f"status must be one of {', '.join(STATUSES)}", fields={"status": "unknown status"})
    queue = (
        await session.execute(
            select(TaskRun).where(TaskRun.status == QUEUED).order_by(TaskRun.priority, TaskRun.id).limit(200)
        )
    ).scalars()
    current = (
        await session.execute(select(TaskRun).where(TaskRun.status == RUNNING).order_by(TaskRun.id).limit(1))
    ).scalar_one_or_none()
    hist = select(TaskRun)
    count = select(func.count()).select_from(TaskRun)
    if status is not None:
        hist = hist.where(TaskRun.status == status)
        count = count.where(TaskRun.status == status)
    if name is not None:
        hist = hist.where(TaskRun.name == name)
        count = count.where(TaskRun.name == name)
    total = int((await session.execute(count)).scalar_one())
    items = (await session.execute(hist.order_by(TaskRun.id.desc()).limit(limit).offset(offset))).scalars()
    return {
        "items": [run_out(r, broker) for r in items],
        "total": total,
        "queue": [run_out(r, broker) for r in queue],
        "current": run_out(current, broker) if current is not None else None,
        "paused": broker.paused,
        "version": broker.version,
    }
