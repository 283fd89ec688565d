"""Jobs are registered by name with their defaults; routes and the scheduler enqueue them by that name."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backend.tasks.broker import JobContext

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
