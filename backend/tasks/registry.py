"""Jobs are registered by name with their defaults; routes and the scheduler enqueue them by that name."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from backend.errors import AppError, NotFound

if TYPE_CHECKING:
    from backend.tasks.broker import JobContext

log = logging.getLogger(__name__)

JobHandler = Callable[["JobContext"], Awaitable[str | dict[str, Any] | None]]


@dataclass(frozen=True)
class JobSpec:
    name: str
    handler: JobHandler
    title: str = ""
    # Lower runs first: user requests (10) beat periodic upkeep (50) and housekeeping (90).
    priority: int = 50
    # Seconds; None takes the task_timeout_seconds setting.
    timeout: float | None = None
    # Attempts in all, counting the first, for transient upstream errors.
    max_attempts: int = 3
    backoff_base: float = 30.0
    backoff_max: float = 900.0


@dataclass(frozen=True)
class PeriodicJob:
    """A job the scheduler enqueues on an interval (deduped by key like any other enqueue)."""

    name: str
    seconds: float
    key: str | None = None
    args: dict[str, Any] = field(default_factory=dict)


JOBS: dict[str, JobSpec] = {}
PERIODIC: list[PeriodicJob] = []


def register_job(spec: JobSpec) -> JobSpec:
    JOBS[spec.name] = spec
    return spec


def job(
    name: str, *, title: str = "", priority: int = 50, timeout: float | None = None, max_attempts: int = 3
) -> Callable[[JobHandler], JobHandler]:
    """Decorator form of register_job for a domain's jobs.py."""

    def wrap(handler: JobHandler) -> JobHandler:
        register_job(
            JobSpec(
                name=name,
                handler=handler,
                title=title or name.replace("_", " ").capitalize(),
                priority=priority,
                timeout=timeout,
                max_attempts=max_attempts,
            )
        )
        return handler

    return wrap


def register_periodic(periodic: PeriodicJob) -> None:
    PERIODIC.append(periodic)


#: Records why a job failed on the job's own rows: (message for the user, status).
FailureRecorder = Callable[[str, str], Awaitable[None]]


@asynccontextmanager
async def failures_recorded(record: FailureRecorder, what: str, kept: str) -> AsyncIterator[None]:
    """Around an import job's work: on failure, record a message the user can act on, then re-raise.

    `what` names the thing for the log ("playlist 3"); `kept` says what stayed in use ("the previous
    streams were kept"). NotFound (the source was deleted) records nothing. A failure to record is
    logged, never raised over the job's own error: the task run keeps that error either way.
    """

    async def safely(message: str, status: str) -> None:
        try:
            await record(message, status)
        except Exception as exc:
            log.warning("Could not record the failed import of %s: %s", what, exc)

    try:
        yield
    except NotFound:
        raise
    except AppError as exc:
        await safely(f"{exc.message} [{exc.code}]", "failed")
        raise
    except asyncio.CancelledError:
        await safely(f"The import was stopped before it finished; {kept}.", "cancelled")
        raise
    except Exception:
        await safely("The import failed with an internal error; see the server log.", "failed")
        raise
