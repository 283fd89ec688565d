"""The recordings long poll: immediate answer after a change, wake-up on a change, timeout."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

from tests.dvr.conftest import Guide, TokenClient, reconcile, soon


async def poll(client: TokenClient, since: int, timeout: float) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    resp = await client.get(f"/tic-api/recordings/poll?since={since}&timeout={timeout}")
    body = await resp.get_json()
    assert resp.status_code == 200, body
    return body, time.monotonic() - started


async def current_version(client: TokenClient) -> int:
    return int((await (await client.get("/tic-api/recordings")).get_json())["version"])


async def test_times_out_without_change(boss: TokenClient) -> None:
    version = await current_version(boss)
    body, elapsed = await poll(boss, version, 0.4)
    assert body == {"version": version, "changed": False}
    assert 0.35 <= elapsed < 2.0


async def test_answers_at_once_when_behind(boss: TokenClient, guide: Guide, svc: Any) -> None:
    await svc.broker.pause()
    ch = await guide.channel("One")
    version = await current_version(boss)
    start = soon(30)
    payload = {
        "channel_id": ch.id,
        "start": start.isoformat(),
        "stop": (start + timedelta(minutes=5)).isoformat(),
    }
    assert (await boss.post("/tic-api/recordings", json=payload)).status_code == 201
    body, elapsed = await poll(boss, version, 20)
    assert body["changed"] is True and body["version"] > version
    assert elapsed < 1.0
    # A version from before a restart (higher than the current one) also answers at once.
    body, elapsed = await poll(boss, body["version"] + 1000, 20)
    assert body["changed"] is True and elapsed < 1.0


async def test_wakes_within_100_ms_of_a_change(boss: TokenClient, guide: Guide, svc: Any) -> None:
    await svc.broker.pause()
    ch = await guide.channel("One")
    version = await current_version(boss)
    waiters = [asyncio.ensure_future(poll(boss, version, 20)) for _ in range(5)]
    done_at: list[float] = []
    for w in waiters:
        w.add_done_callback(lambda _f: done_at.append(time.monotonic()))
    await asyncio.sleep(0.3)
    assert not done_at
    start = soon(30)
    payload = {
        "channel_id": ch.id,
        "start": start.isoformat(),
        "stop": (start + timedelta(minutes=5)).isoformat(),
    }
    assert (await boss.post("/tic-api/recordings", json=payload)).status_code == 201
    changed_at = time.monotonic()
    results = await asyncio.gather(*waiters)
    assert all(body["changed"] is True and body["version"] > version for body, _ in results)
    assert max(done_at) - changed_at < 0.1


async def test_status_changes_from_tvh_wake_pollers(
    configured: Any, boss: TokenClient, guide: Guide, svc: Any
) -> None:
    tvh = configured
    ch = await guide.channel("One")
    start = soon(1)
    payload = {
        "channel_id": ch.id,
        "start": start.isoformat(),
        "stop": (start + timedelta(minutes=30)).isoformat(),
    }
    assert (await boss.post("/tic-api/recordings", json=payload)).status_code == 201
    await reconcile(svc)
    version = await current_version(boss)
    waiter = asyncio.ensure_future(poll(boss, version, 20))
    await asyncio.sleep(0.2)
    assert not waiter.done()
    tvh.state.advance(5 * 60)  # TVHeadend starts recording
    changed_at = time.monotonic()
    await reconcile(svc)
    body, _ = await waiter
    assert body["changed"] is True
    assert time.monotonic() - changed_at < 1.0
    listed = await (await boss.get("/tic-api/recordings?status=recording")).get_json()
    assert listed["total"] == 1


async def test_bad_arguments(boss: TokenClient) -> None:
    resp = await boss.get("/tic-api/recordings/poll?since=abc")
    assert resp.status_code == 400


async def test_many_waiters_are_released_in_batches_and_timeouts_leave_nothing() -> None:
    from backend.dvr.state import ChangeNotifier

    notifier = ChangeNotifier(batch=16)
    waiters = [asyncio.ensure_future(notifier.wait(0, 5)) for _ in range(200)]
    await asyncio.sleep(0)
    assert notifier.waiting == 200
    notifier.bump()
    counts = []
    for _ in range(40):
        await asyncio.sleep(0)
        counts.append(sum(w.done() for w in waiters))
    # Each loop iteration wakes one batch, not all 200 at once.
    first = next(c for c in counts if c)
    assert first <= 32 and counts[-1] == 200
    assert await asyncio.gather(*waiters) == [1] * 200
    assert notifier.waiting == 0
    assert await notifier.wait(1, 0.01) == 1
    assert notifier.waiting == 0
