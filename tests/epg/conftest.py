"""Helpers for the EPG tests: a fake provider, sources made through the API, waiting on tasks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from backend.epg.jobs import FOLLOW_UPS
from tests.conftest import ApiClient
from tests.fakes.upstream import FakeProvider

FINAL = {"succeeded", "failed", "cancelled", "interrupted"}
#: A window wide enough for every sample guide of the corpus (2000 to 2099): 100 years each way.
WIDE = {"past_days": 36500, "future_days": 36500}


@pytest.fixture
def quiet(svc: Any) -> Any:
    """The app with the jobs other domains run after an import unregistered, so a test's imports do
    not queue behind XMLTV builds; the follow-up hook has a test of its own."""
    for name in FOLLOW_UPS:
        svc.broker.jobs.pop(name, None)
    return svc


@pytest.fixture
async def provider() -> AsyncIterator[FakeProvider]:
    async with FakeProvider(max_stall=5) as fake:
        yield fake


async def create_source(client: ApiClient, **fields: Any) -> dict[str, Any]:
    body = {"name": fields.pop("name", "Guide"), "kind": "xmltv_url", **fields}
    resp = await client.post("/tic-api/epgs", json=body)
    assert resp.status_code == 201, await resp.get_data(as_text=True)
    return await resp.get_json()


async def wait_task(client: ApiClient, task_id: int, timeout: float = 60) -> dict[str, Any]:
    """Wait for a task to end, long-polling the task API (no fixed sleeps)."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        overview = await (await client.get("/tic-api/tasks?limit=1")).get_json()
        task = await (await client.get(f"/tic-api/tasks/{task_id}")).get_json()
        if task["status"] in FINAL:
            return task
        if loop.time() > deadline:
            raise AssertionError(f"task {task_id} still {task['status']}: {task['message']}")
        await client.get(f"/tic-api/tasks?limit=1&wait=2&since={overview['version']}")


async def run_import(client: ApiClient, source_id: int, *, force: bool = False) -> dict[str, Any]:
    """Queue an import through the API and wait for it; returns the finished task."""
    suffix = "?force=true" if force else ""
    resp = await client.post(f"/tic-api/epgs/update/{source_id}{suffix}")
    assert resp.status_code == 202, await resp.get_data(as_text=True)
    return await wait_task(client, (await resp.get_json())["task_id"])


async def get_source(client: ApiClient, source_id: int) -> dict[str, Any]:
    resp = await client.get(f"/tic-api/epgs/{source_id}")
    assert resp.status_code == 200
    return await resp.get_json()


async def epg_channels(client: ApiClient, source_id: int) -> dict[str, dict[str, Any]]:
    body = await (await client.get(f"/tic-api/epgs/{source_id}/channels?limit=1000")).get_json()
    return {item["channel_id"]: item for item in body["items"]}
