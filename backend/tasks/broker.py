"""TaskQueueBroker: a durable priority queue in task_run that runs one job at a time on the app's loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import DBAPIError, OperationalError

from backend.db import Database, utcnow
from backend.errors import AppError, NotFound, UpstreamError
from backend.tasks.models import (
    ACTIVE_STATUSES,
    CANCELLED,
    FAILED,
    INTERRUPTED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    TaskRun,
)
from backend.tasks.registry import JOBS, JobSpec

log = logging.getLogger(__name__)

# Progress is written to the database at most this often; the in-memory copy is always current.
PROGRESS_WRITE_INTERVAL = 1.0
# Long polls wake for a running job's progress at most this often: a progress bar moving five times a
# second looks live, and a job that reports every few milliseconds must not make every watching
# browser re-read the task list that often. Every other change (queued, started, finished) wakes them
# at once.
PROGRESS_NOTIFY_INTERVAL = 0.2


class JobCancelled(Exception):
    """Raised inside a job by ctx.check() when the user cancelled it."""


@dataclass
class EnqueueResult:
    task_id: int
    created: bool


class JobContext:
    """What a running job sees: its arguments, the app's services and a way to report progress."""

    def __init__(self, broker: TaskQueueBroker, run_id: int, name: str, args: Mapping[str, Any]) -> None:
        self.broker = broker
        self.run_id = run_id
        self.name = name
        self.args = dict(args)
        self.services: Any = broker.services
        self.db = broker.db
        self.progress_value = 0
        self.message = ""
        self._last_write = 0.0
        self._last_notify = 0.0
        self._notify_later: asyncio.TimerHandle | None = None

    async def progress(self, percent: float, message: str | None = None) -> None:
        """Report progress 0-100 with a short message; cheap to call often."""
        self.progress_value = max(0, min(100, int(percent)))
        if message is not None:
            self.message = message[:500]
        now = time.monotonic()
        wait = self._last_notify + PROGRESS_NOTIFY_INTERVAL - now
        if wait <= 0:
            self._notify_progress()
        elif self._notify_later is None:
            # The latest progress still reaches the watchers, a moment later.
            self._notify_later = asyncio.get_running_loop().call_later(wait, self._notify_progress)
        if now - self._last_write >= PROGRESS_WRITE_INTERVAL:
            self._last_write = now
            await self.broker._write_progress(self.run_id, self.progress_value, self.message)

    def _notify_progress(self) -> None:
        if self._notify_later is not None:
            self._notify_later.cancel()
            self._notify_later = None
        self._last_notify = time.monotonic()
        self.broker._notify()


class TaskQueueBroker:
    """Runs queued jobs one at a time. Every run is a task_run row, so nothing is lost on restart."""

    def __init__(self, db: Database, services: Any = None, jobs: Mapping[str, JobSpec] | None = None) -> None:
        self.db = db
        self.services = services
        self.jobs: dict[str, JobSpec] = dict(JOBS if jobs is None else jobs)
        self.paused = False
        self.default_timeout = 3600.0
        self.last_tick_at: float | None = None
        self.current: JobContext | None = None
        self._runner: asyncio.Task[None] | None = None
        self._job_task: asyncio.Task[Any] | None = None
        self._cancel_reason: str | None = None
        self._stopping = False
        self._enqueue_lock = asyncio.Lock()
        self._version = 0
        self._changed = asyncio.Event()
        self._db_failing = False
        # Set by a wake that found the runner busy: the runner looks at the queue once more before it
        # ends, so a task queued while it was finding the queue empty does not wait for the next tick.
        self._wake_pending = False
        self.wake_enabled = True
        # Called with (job name, final status) after each run ends; used for metrics.
        self.on_finish: list[Any] = []

    # -- registration ------------------------------------------------------------------------------

    def register(self, spec: JobSpec) -> None:
        self.jobs[spec.name] = spec

    # -- change notification (for long polls) -----------------------------------------------------

    @property
    def version(self) -> int:
        return self._version

    def _notify(self) -> None:
        self._version += 1
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def wait_for_change(self, since: int, timeout: float) -> int:
        """Return as soon as the version moves past `since`, or after `timeout` seconds."""
        if self._version > since:
            return self._version
        # A timeout is the normal "no change" answer of a long poll.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)
        return self._version

    # -- queueing ------------------------------------------------------------------------------------

    async def enqueue(
        self,
        name: str,
        *,
        key: str | None = None,
        args: Mapping[str, Any] | None = None,
        priority: int | None = None,
        requested_by: str | None = None,
    ) -> EnqueueResult:
        """Queue a job unless one with the same key is already queued or running."""
        spec = self.jobs.get(name)
        if spec is None:
            raise NotFound(f"No job named {name!r}", code="JOB_NOT_FOUND")
        key = key or name
        async with self._enqueue_lock, self.db.transaction() as session:
            existing = (
                await session.execute(
                    select(TaskRun.id)
                    .where(TaskRun.key == key, TaskRun.status.in_(ACTIVE_STATUSES))
                    .order_by(TaskRun.id)
                    .limit(1)
                )
            ).scalar_one_or_none()
            if existing is not None:
                return EnqueueResult(existing, False)
            run = TaskRun(
                key=key,
                name=name,
                args=dict(args or {}),
                priority=spec.priority if priority is None else priority,
                status=QUEUED,
                progress=0,
                message="Waiting in the queue",
                attempts=0,
                requeues=0,
                requested_by=requested_by,
                created_at=utcnow(),
            )
            session.add(run)
            await session.flush()
            run_id = run.id
        log.info("Queued task %s (%s) as run %d", name, key, run_id)
        self._notify()
        self.wake()
        return EnqueueResult(run_id, True)

    def wake(self) -> None:
        """Start work now rather than at the next 10 s tick, when nothing is running."""
        if self.wake_enabled and not self._stopping:
            self.tick()

    def tick(self) -> bool:
        """Called by the scheduler every 10 s: start draining the queue unless a run is active."""
        self.last_tick_at = time.monotonic()
        if self._stopping:
            return False
        if self._runner is not None and not self._runner.done():
            log.debug("Tick skipped: a task is already running")
            self._wake_pending = True
            return False
        if self.paused:
            return False
        self._runner = asyncio.get_running_loop().create_task(self._drain(), name="tic-broker")
        return True

    async def pause(self) -> None:
        self.paused = True
        self._notify()

    async def resume(self) -> None:
        self.paused = False
        self._notify()
        self.wake()

    @property
    def running(self) -> bool:
        return self._runner is not None and not self._runner.done()

    # -- the run loop -------------------------------------------------------------------------------

    async def _drain(self) -> None:
        while not self.paused and not self._stopping:
            self._wake_pending = False
            try:
                run = await self._claim_next()
            except (OperationalError, DBAPIError, OSError) as exc:
                if not self._db_failing:
                    log.warning("Task queue cannot reach the database (%s); retrying on the next tick", exc)
                    self._db_failing = True
                return
            if self._db_failing:
                log.info("Task queue reached the database again")
                self._db_failing = False
            if run is None:
                if self._wake_pending:
                    # Something was queued while the claim read an empty queue: look again.
                    continue
                return
            await self._execute(run)

    async def _claim_next(self) -> TaskRun | None:
        async with self.db.transaction() as session:
            now = utcnow()
            candidates = (
                await session.execute(
                    select(TaskRun)
                    .where(
                        TaskRun.status == QUEUED,
                        or_(TaskRun.not_before.is_(None), TaskRun.not_before <= now),
                    )
                    .order_by(TaskRun.priority, TaskRun.id)
                    .limit(5)
                )
            ).scalars()
            for run in candidates:
                # The conditional update makes the claim atomic even with several replicas.
                claimed = await session.execute(
                    update(TaskRun)
                    .where(TaskRun.id == run.id, TaskRun.status == QUEUED)
                    .values(
                        status=RUNNING,
                        started_at=now,
                        finished_at=None,
                        attempts=TaskRun.attempts + 1,
                        progress=0,
                        message="Started",
                    )
                    .execution_options(synchronize_session=False)
                )
                if claimed.rowcount == 1:  # type: ignore[attr-defined]
                    await session.refresh(run)
                    return run
        return None

    async def _execute(self, run: TaskRun) -> None:
        spec = self.jobs.get(run.name)
        if spec is None:
            await self._finish(
                run.id,
                FAILED,
                error=f"No job named {run.name!r} is registered in this version",
                name=run.name,
            )
            return
        ctx = JobContext(self, run.id, run.name, run.args or {})
        self.current = ctx
        self._cancel_reason = None
        self._notify()
        timeout = spec.timeout or self.default_timeout
        log.info("Task %s (run %d) started, attempt %d", run.name, run.id, run.attempts)
        started = time.monotonic()
        self._job_task = asyncio.ensure_future(spec.handler(ctx))
        try:
            done, _ = await asyncio.wait({self._job_task}, timeout=timeout)
            if not done:
                self._job_task.cancel()
                await asyncio.gather(self._job_task, return_exceptions=True)
                await self._finish(
                    run.id,
                    FAILED,
                    error=f"Timed out after {int(timeout)} s; the work was stopped",
                    name=run.name,
                )
                log.warning("Task %s (run %d) timed out after %d s", run.name, run.id, int(timeout))
                return
            await self._record_outcome(run, spec, ctx, self._job_task)
        except asyncio.CancelledError:
            # The broker itself is being torn down (loop shutdown); treat like an interruption.
            self._job_task.cancel()
            await asyncio.gather(self._job_task, return_exceptions=True)
            await self._interrupt(run.id, "TIC stopped while this task was running")
            raise
        finally:
            log.debug("Task %s (run %d) took %.2f s", run.name, run.id, time.monotonic() - started)
            self.current = None
            self._job_task = None
            self._notify()

    async def _record_outcome(
        self, run: TaskRun, spec: JobSpec, ctx: JobContext, task: asyncio.Task[Any]
    ) -> None:
        if task.cancelled():
            if self._cancel_reason == "shutdown":
                await self._interrupt(run.id, "TIC stopped while this task was running")
            else:
                await self._finish(
                    run.id,
                    CANCELLED,
                    message="Cancelled by a user",
                    progress=ctx.progress_value,
                    name=run.name,
                )
            return
        exc = task.exception()
        if exc is None:
            result = task.result()
            message = result if isinstance(result, str) else (ctx.message or "Done")
            payload = result if isinstance(result, dict) else None
            if isinstance(payload, dict) and isinstance(payload.get("message"), str):
                message = payload["message"]
            await self._finish(
                run.id, SUCCEEDED, message=message, progress=100, result=payload, name=run.name
            )
            log.info("Task %s (run %d) succeeded: %s", run.name, run.id, message)
            return
        if isinstance(exc, JobCancelled):
            await self._finish(
                run.id, CANCELLED, message="Cancelled by a user", progress=ctx.progress_value, name=run.name
            )
            return
        transient = (isinstance(exc, UpstreamError) and exc.transient) or isinstance(exc, OperationalError)
        if isinstance(exc, AppError):
            error = f"{exc.message} [{exc.code}]"
        elif isinstance(exc, OperationalError):
            error = "The database was busy or unreachable"
        else:
            error = f"Internal error ({type(exc).__name__}); see the server log"
            log.error("Task %s (run %d) crashed", run.name, run.id, exc_info=exc)
        if transient and run.attempts < spec.max_attempts:
            delay = min(spec.backoff_max, spec.backoff_base * (2 ** (run.attempts - 1)))
            await self._requeue_later(run.id, delay, error)
            log.warning(
                "Task %s (run %d) failed with a transient error, retry %d/%d in %d s: %s",
                run.name,
                run.id,
                run.attempts,
                spec.max_attempts - 1,
                int(delay),
                error,
            )
            return
        await self._finish(run.id, FAILED, error=error, progress=ctx.progress_value, name=run.name)
        if isinstance(exc, AppError):
            log.warning("Task %s (run %d) failed: %s", run.name, run.id, error)

    # -- persistence helpers ---------------------------------------------------------------------------

    async def _with_db_retry(self, what: str, op: Any) -> None:
        """Finishing a run must not be lost to a momentarily locked database."""
        for attempt in range(5):
            try:
                async with self.db.transaction() as session:
                    await op(session)
                return
            except (OperationalError, DBAPIError) as exc:
                if attempt == 4:
                    log.error("Could not %s after 5 attempts: %s", what, exc)
                    return
                await asyncio.sleep(0.2 * (attempt + 1))

    async def _finish(
        self,
        run_id: int,
        status: str,
        *,
        message: str | None = None,
        error: str | None = None,
        progress: int | None = None,
        result: dict[str, Any] | None = None,
        name: str | None = None,
    ) -> None:
        values: dict[str, Any] = {"status": status, "finished_at": utcnow()}
        if message is not None:
            values["message"] = message
        elif error is not None:
            values["message"] = "Failed"
        if error is not None:
            values["error"] = error
        if progress is not None:
            values["progress"] = progress
        if result is not None:
            values["result"] = result

        async def op(session: Any) -> None:
            await session.execute(update(TaskRun).where(TaskRun.id == run_id).values(**values))

        await self._with_db_retry(f"record the end of run {run_id}", op)
        for listener in self.on_finish:
            listener(name or "unknown", status)
        self._notify()

    async def _requeue_later(self, run_id: int, delay: float, error: str) -> None:
        values = {
            "status": QUEUED,
            "not_before": utcnow() + timedelta(seconds=delay),
            "error": error,
            "message": f"Retrying in {int(delay)} s after: {error}",
            "started_at": None,
        }

        async def op(session: Any) -> None:
            await session.execute(update(TaskRun).where(TaskRun.id == run_id).values(**values))

        await self._with_db_retry(f"re-queue run {run_id}", op)
        self._notify()

    async def _write_progress(self, run_id: int, progress: int, message: str) -> None:
        try:
            async with self.db.transaction() as session:
                await session.execute(
                    update(TaskRun)
                    .where(TaskRun.id == run_id, TaskRun.status == RUNNING)
                    .values(progress=progress, message=message)
                )
        except (OperationalError, DBAPIError) as exc:
            # Progress is advisory; the in-memory copy still serves the API.
            log.debug("Progress write for run %d skipped: %s", run_id, exc)

    async def _interrupt(self, run_id: int, reason: str) -> None:
        """Mark a run interrupted and queue the same request again, once."""

        async def op(session: Any) -> None:
            run = await session.get(TaskRun, run_id)
            if run is None:
                return
            run.status = INTERRUPTED
            run.finished_at = utcnow()
            run.error = reason
            run.message = "Interrupted"
            if run.requeues >= 1:
                return
            busy = (
                await session.execute(
                    select(func.count())
                    .select_from(TaskRun)
                    .where(TaskRun.key == run.key, TaskRun.status.in_(ACTIVE_STATUSES), TaskRun.id != run.id)
                )
            ).scalar_one()
            if busy:
                return
            session.add(
                TaskRun(
                    key=run.key,
                    name=run.name,
                    args=run.args,
                    priority=run.priority,
                    status=QUEUED,
                    progress=0,
                    message=f"Queued again after run {run.id} was interrupted",
                    attempts=0,
                    requeues=run.requeues + 1,
                    retry_of=run.id,
                    requested_by=run.requested_by,
                    created_at=utcnow(),
                )
            )

        await self._with_db_retry(f"mark run {run_id} interrupted", op)
        self._notify()

    # -- lifecycle ----------------------------------------------------------------------------------

    async def recover(self) -> int:
        """At start-up: runs left `running` by a crash become `interrupted` and are queued again once."""
        async with self.db.session() as session:
            stale = (
                (await session.execute(select(TaskRun.id).where(TaskRun.status == RUNNING))).scalars().all()
            )
        for run_id in stale:
            log.warning("Run %d was left running by a previous process; marking it interrupted", run_id)
            await self._interrupt(run_id, "TIC stopped while this task was running (crash or kill)")
        return len(stale)

    async def cancel(self, run_id: int) -> str:
        """Cancel a queued run, or stop the running one. Returns the new status."""
        if self.current is not None and self.current.run_id == run_id and self._job_task is not None:
            self._cancel_reason = "user"
            self._job_task.cancel()
            return CANCELLED
        async with self.db.transaction() as session:
            run = await session.get(TaskRun, run_id)
            if run is None:
                raise NotFound(f"Task {run_id} does not exist", code="TASK_NOT_FOUND")
            if run.status != QUEUED:
                from backend.errors import Conflict

                raise Conflict(
                    f"Task {run_id} is {run.status} and cannot be cancelled", code="TASK_NOT_ACTIVE"
                )
            run.status = CANCELLED
            run.finished_at = utcnow()
            run.message = "Cancelled by a user"
        self._notify()
        return CANCELLED

    async def prune(self, older_than_days: int) -> int:
        cutoff = utcnow() - timedelta(days=older_than_days)
        async with self.db.transaction() as session:
            result = await session.execute(
                delete(TaskRun).where(TaskRun.finished_at.is_not(None), TaskRun.finished_at < cutoff)
            )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def shutdown(self, timeout: float = 10.0) -> None:
        """Stop taking work; a running job is cancelled, marked interrupted and queued again once."""
        self._stopping = True
        if self._job_task is not None and not self._job_task.done():
            self._cancel_reason = "shutdown"
            self._job_task.cancel()
        if self._runner is not None and not self._runner.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._runner), timeout)
            except TimeoutError:
                log.warning("Task runner did not stop within %s s", timeout)
                self._runner.cancel()
                await asyncio.gather(self._runner, return_exceptions=True)
