"""Fixtures for playlist tests: a fake provider, and helpers to create sources and wait for imports."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.conftest import ApiClient
from tests.fakes.upstream import FakeProvider

TERMINAL = frozenset({"succeeded", "failed", "cancelled", "interrupted"})


@pytest.fixture
async def provider() -> AsyncIterator[FakeProvider]:
    async with FakeProvider(max_stall=10) as p:
        yield p


async def json_of(resp: Any, status: int) -> Any:
    body = await resp.get_json()
    assert resp.status_code == status, body
    return body


async def create_playlist(admin: ApiClient, **fields: Any) -> dict[str, Any]:
    fields.setdefault("name", "Provider")
    fields.setdefault("kind", "m3u_url")
    return await json_of(await admin.post("/tic-api/playlists", json=fields), 201)


async def set_settings(admin: ApiClient, **values: Any) -> None:
    await json_of(await admin.patch("/tic-api/settings", json=values), 200)


async def wait_task(
    admin: ApiClient,
    task_id: int,
    done: Callable[[dict[str, Any]], bool] = lambda t: t["status"] in TERMINAL,
    timeout: float = 60,
) -> dict[str, Any]:
    """Wait for a task through the tasks API: long-poll for queue changes, never a fixed sleep."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        version = (await json_of(await admin.get("/tic-api/tasks?limit=1"), 200))["version"]
        task = await json_of(await admin.get(f"/tic-api/tasks/{task_id}"), 200)
        if done(task):
            return task
        if loop.time() > deadline:
            raise AssertionError(f"task {task_id} did not finish: {task}")
        await admin.get(f"/tic-api/tasks?limit=1&wait=2&since={version}")


async def run_import(admin: ApiClient, playlist_id: int, status: str = "succeeded") -> dict[str, Any]:
    """Queue an import through the API, wait for it and check how it ended."""
    body = await json_of(await admin.post(f"/tic-api/playlists/update/{playlist_id}"), 202)
    task = await wait_task(admin, body["task_id"])
    assert task["status"] == status, task
    return task


async def playlist(admin: ApiClient, playlist_id: int) -> dict[str, Any]:
    return await json_of(await admin.get(f"/tic-api/playlists/{playlist_id}"), 200)


async def all_streams(admin: ApiClient, playlist_id: int) -> list[dict[str, Any]]:
    """Every stream of a playlist, paging through the API."""
    items: list[dict[str, Any]] = []
    while True:
        page = await json_of(
            await admin.get(f"/tic-api/playlists/{playlist_id}/streams?limit=500&offset={len(items)}"), 200
        )
        items += page["items"]
        if len(items) >= page["total"] or not page["items"]:
            return items
