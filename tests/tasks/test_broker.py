"""TaskQueueBroker behaviour: priority, one at a time, skipped ticks, dedupe, pause, timeout, retry, cancel."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from sqlalchemy import select

from backend.errors import Invalid, UpstreamError
from backend.tasks.broker import JobContext
from backend.tasks.models import TaskRun
from backend.tasks.registry import JobSpec
from tests.conftest import ApiClient


async def wait_status(svc: Any, run_id: int, statuses: set[str], timeout: float = 10) -> TaskRun:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        async with svc.db.session() as session:
            run = await session.get(TaskRun, run_id)
            assert run is not None
            if run.status in statuses:
                return run
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"run {run_id} stayed {run.status}")
        await asyncio.sleep(0.02)


class Recorder:
    def __init__(self) -> None:
        self.order: list[str] = []
        self.active = 0
        self.max_active = 0
        self.release = asyncio.Event()

    def spec(self, name: str, *, block: bool = False, **kw: Any) -> JobSpec:
        async def handler(ctx: JobContext) -> str:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.order.append(ctx.args.get("label", name))
            try:
                await ctx.progress(50, "half way")
                if block:
                    await self.release.wait()
                await asyncio.sleep(0.01)
            finally:
                self.active -= 1
            return f"did {ctx.args.get('label', name)}"

        return JobSpec(name=name, handler=handler, **kw)


async def test_a_task_queued_while_the_runner_finds_the_queue_empty_still_starts(svc: Any) -> None:
    """An enqueue that commits while the runner is reading an empty queue wakes a busy runner; the
    runner must look again rather than leave the task for the next scheduler tick (10 s away)."""
    rec = Recorder()
    svc.broker.register(rec.spec("first"))
    svc.broker.register(rec.spec("late"))
    claim = svc.broker._claim_next
    late: list[int] = []

    async def claim_then_enqueue() -> Any:
        run = await claim()
        if run is None and not late:
            # The claim read the queue as empty; "late" commits before the runner ends.
            late.append((await svc.broker.enqueue("late")).task_id)
        return run

    svc.broker._claim_next = claim_then_enqueue
    first = (await svc.broker.enqueue("first")).task_id
    await wait_status(svc, first, {"succeeded"})
    for _ in range(100):
        if late:
            break
        await asyncio.sleep(0.01)
    assert late, "the runner never found the queue empty"
    await wait_status(svc, late[0], {"succeeded"}, timeout=5)
    assert rec.order == ["first", "late"]


async def test_priority_order_and_one_at_a_time(svc: Any) -> None:
    rec = Recorder()
    svc.broker.register(rec.spec("low", priority=80))
    svc.broker.register(rec.spec("high", priority=5))
    await svc.broker.pause()
    ids = [
        (await svc.broker.enqueue("low", key=f"low{i}", args={"label": f"low{i}"})).task_id for i in range(3)
    ]
    ids.append((await svc.broker.enqueue("high", key="high", args={"label": "high"})).task_id)
    await svc.broker.resume()
    for run_id in ids:
        run = await wait_status(svc, run_id, {"succeeded"})
        assert run.progress == 100 and run.finished_at is not None
    assert rec.order == ["high", "low0", "low1", "low2"]
    assert rec.max_active == 1


async def test_tick_skipped_while_running_logs_debug(svc: Any, caplog: Any) -> None:
    rec = Recorder()
    svc.broker.register(rec.spec("blocker", block=True))
    run_id = (await svc.broker.enqueue("blocker")).task_id
    await wait_status(svc, run_id, {"running"})
    caplog.set_level(logging.DEBUG, logger="backend.tasks.broker")
    assert svc.broker.tick() is False
    skipped = [r for r in caplog.records if "Tick skipped" in r.getMessage()]
    assert skipped and all(r.levelno == logging.DEBUG for r in skipped)
    rec.release.set()
    await wait_status(svc, run_id, {"succeeded"})
    # The drain loop looks for more work after recording the result; a tick starts only once it is done.
    for _ in range(500):
        if not svc.broker.running:
            break
        await asyncio.sleep(0.02)
    assert svc.broker.tick() is True


async def test_dedupe_by_key_while_queued_or_running(svc: Any) -> None:
    rec = Recorder()
    svc.broker.register(rec.spec("refresh", block=True))
    first = await svc.broker.enqueue("refresh", key="refresh:1")
    await wait_status(svc, first.task_id, {"running"})
    again = await svc.broker.enqueue("refresh", key="refresh:1")
    assert again.created is False and again.task_id == first.task_id
    other = await svc.broker.enqueue("refresh", key="refresh:2")
    assert other.created is True
    rec.release.set()
    await wait_status(svc, other.task_id, {"succeeded"})
    after = await svc.broker.enqueue("refresh", key="refresh:1")
    assert after.created is True and after.task_id != first.task_id
    await wait_status(svc, after.task_id, {"succeeded"})


async def test_pause_holds_queue_and_resume_runs_it(svc: Any, admin: ApiClient) -> None:
    rec = Recorder()
    svc.broker.register(rec.spec("job"))
    assert (await admin.post("/tic-api/tasks/pause")).status_code == 200
    run_id = (await svc.broker.enqueue("job")).task_id
    svc.broker.tick()
    await asyncio.sleep(0.2)
    async with svc.db.session() as session:
        assert (await session.get(TaskRun, run_id)).status == "queued"
    body = await (await admin.get("/tic-api/tasks")).get_json()
    assert body["paused"] is True and [q["id"] for q in body["queue"]] == [run_id]
    assert (await admin.post("/tic-api/tasks/resume")).status_code == 200
    await wait_status(svc, run_id, {"succeeded"})


async def test_timeout_marks_failed(svc: Any) -> None:
    async def slow(ctx: JobContext) -> None:
        await asyncio.sleep(30)

    svc.broker.register(JobSpec(name="slow", handler=slow, timeout=0.3))
    run = await wait_status(svc, (await svc.broker.enqueue("slow")).task_id, {"failed"})
    assert "Timed out" in (run.error or "")


async def test_transient_errors_retry_with_backoff_then_fail(svc: Any) -> None:
    calls: list[float] = []

    async def flaky(ctx: JobContext) -> None:
        calls.append(asyncio.get_running_loop().time())
        raise UpstreamError("provider answered 503", transient=True, code="UPSTREAM_SERVER_ERROR")

    svc.broker.register(JobSpec(name="flaky", handler=flaky, max_attempts=3, backoff_base=0.2, backoff_max=1))
    run_id = (await svc.broker.enqueue("flaky")).task_id
    for _ in range(60):
        svc.broker.tick()
        async with svc.db.session() as session:
            run = await session.get(TaskRun, run_id)
        if run.status == "failed":
            break
        await asyncio.sleep(0.1)
    assert run.status == "failed" and run.attempts == 3
    assert "UPSTREAM_SERVER_ERROR" in (run.error or "")
    assert len(calls) == 3
    # Backoff doubles: the second gap is longer than the first.
    assert calls[1] - calls[0] >= 0.2 and calls[2] - calls[1] >= 0.4


async def test_permanent_errors_do_not_retry(svc: Any) -> None:
    calls = 0

    async def bad(ctx: JobContext) -> None:
        nonlocal calls
        calls += 1
        raise Invalid("the playlist is an HTML page", code="M3U_NOT_PLAYLIST")

    svc.broker.register(JobSpec(name="bad", handler=bad, max_attempts=5, backoff_base=0.01))
    run = await wait_status(svc, (await svc.broker.enqueue("bad")).task_id, {"failed"})
    assert calls == 1 and run.attempts == 1
    assert run.error == "the playlist is an HTML page [M3U_NOT_PLAYLIST]"


async def test_crash_is_recorded_without_internals(svc: Any) -> None:
    async def boom(ctx: JobContext) -> None:
        raise KeyError("secret-internal-detail")

    svc.broker.register(JobSpec(name="boom", handler=boom))
    run = await wait_status(svc, (await svc.broker.enqueue("boom")).task_id, {"failed"})
    assert "KeyError" in (run.error or "") and "secret-internal-detail" not in (run.error or "")


async def test_cancel_queued_and_running(svc: Any, admin: ApiClient) -> None:
    rec = Recorder()
    svc.broker.register(rec.spec("long", block=True))
    running = (await svc.broker.enqueue("long", key="a")).task_id
    queued = (await svc.broker.enqueue("long", key="b")).task_id
    await wait_status(svc, running, {"running"})
    resp = await admin.post(f"/tic-api/tasks/{queued}/cancel")
    assert resp.status_code == 200 and (await resp.get_json())["status"] == "cancelled"
    resp = await admin.post(f"/tic-api/tasks/{running}/cancel")
    assert resp.status_code == 200
    run = await wait_status(svc, running, {"cancelled"})
    assert run.finished_at is not None
    again = await admin.post(f"/tic-api/tasks/{running}/cancel")
    assert again.status_code == 409
    assert (await admin.post("/tic-api/tasks/999999/cancel")).status_code == 404


async def test_progress_visible_and_long_poll(svc: Any, admin: ApiClient) -> None:
    rec = Recorder()
    svc.broker.register(rec.spec("prog", block=True))
    start = await (await admin.get("/tic-api/tasks")).get_json()
    version = start["version"]
    run_id = (await svc.broker.enqueue("prog")).task_id
    body = await (await admin.get(f"/tic-api/tasks?wait=5&since={version}")).get_json()
    assert body["version"] > version
    await wait_status(svc, run_id, {"running"})
    await asyncio.sleep(0.05)
    one = await (await admin.get(f"/tic-api/tasks/{run_id}")).get_json()
    assert one["status"] == "running" and one["progress"] == 50 and one["message"] == "half way"
    assert one["created_at"].endswith("Z") and one["started_at"].endswith("Z")
    # A long poll with nothing changing waits about as long as asked, then answers.
    v = (await (await admin.get("/tic-api/tasks")).get_json())["version"]
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    waited = await (await admin.get(f"/tic-api/tasks?wait=0.5&since={v}")).get_json()
    assert loop.time() - t0 >= 0.45 and waited["version"] == v
    rec.release.set()
    await wait_status(svc, run_id, {"succeeded"})
    assert (await admin.get("/tic-api/tasks/424242")).status_code == 404


async def test_rapid_progress_wakes_long_polls_a_few_times_and_ends_on_the_latest(
    svc: Any, admin: ApiClient
) -> None:
    """A job reporting every couple of milliseconds wakes watchers about five times a second, and
    the last report still reaches them although it came within the quiet interval."""
    done = asyncio.Event()

    async def chatty(ctx: JobContext) -> str:
        for i in range(1, 201):
            await ctx.progress(i / 2, f"step {i}")
            await asyncio.sleep(0.004)
        done.set()
        await asyncio.sleep(0.6)  # still running, quiet: only the trailing wake may come now
        return "ok"

    svc.broker.register(JobSpec(name="chatty", handler=chatty))
    version = (await (await admin.get("/tic-api/tasks")).get_json())["version"]
    run_id = (await svc.broker.enqueue("chatty")).task_id
    wakes = 0
    last: dict[str, Any] | None = None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while loop.time() < deadline:
        body = await (await admin.get(f"/tic-api/tasks?wait=2&since={version}")).get_json()
        if body["version"] == version:
            break  # a quiet long poll: nothing more is coming
        version = body["version"]
        wakes += 1
        if body["current"] and body["current"]["id"] == run_id:
            last = body["current"]
        if done.is_set() and last is not None and last["message"] == "step 200":
            break
    assert done.is_set()
    assert last is not None and last["message"] == "step 200" and last["progress"] == 100
    # 200 reports over about a second (sleeps of 4 ms or more): without the interval that is 200 wakes.
    assert wakes <= 15, wakes
    await wait_status(svc, run_id, {"succeeded"})


async def test_history_filters_and_prune(svc: Any, admin: ApiClient) -> None:
    rec = Recorder()
    svc.broker.register(rec.spec("tiny"))
    ids = [(await svc.broker.enqueue("tiny", key=f"t{i}")).task_id for i in range(3)]
    for run_id in ids:
        await wait_status(svc, run_id, {"succeeded"})
    body = await (await admin.get("/tic-api/tasks?status=succeeded&name=tiny&limit=2")).get_json()
    assert body["total"] == 3 and len(body["items"]) == 2
    assert (await admin.get("/tic-api/tasks?status=bogus")).status_code == 400
    from datetime import timedelta

    from backend.db import utcnow

    async with svc.db.transaction() as session:
        old = await session.get(TaskRun, ids[0])
        old.finished_at = utcnow() - timedelta(days=30)
    assert await svc.broker.prune(14) == 1
    async with svc.db.session() as session:
        left = (await session.execute(select(TaskRun.id).where(TaskRun.name == "tiny"))).scalars().all()
    assert sorted(left) == ids[1:]


async def test_unknown_job_name_is_rejected(svc: Any) -> None:
    from backend.errors import NotFound

    with pytest.raises(NotFound):
        await svc.broker.enqueue("no_such_job")


async def test_prune_job_is_registered_and_runs(svc: Any) -> None:
    run = await wait_status(svc, (await svc.broker.enqueue("prune_task_history")).task_id, {"succeeded"})
    assert "older than 14 days" in run.message
