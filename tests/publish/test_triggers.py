"""What queues TVHeadend work: playlist edits and deletes queue the publish (deduped with the channels
domain's), guide imports that changed the guide queue the guide push. Checked through the tasks API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import CORPUS, ApiClient
from tests.fakes.upstream import FakeProvider

PUBLISH = "publish_tvheadend"
PUSH_GUIDE = "push_tvheadend_guide"
FINAL = {"succeeded", "failed", "cancelled", "interrupted"}
GUIDE = (CORPUS / "xmltv" / "iptv-org-epg__x1co.com.br.xml").read_bytes()
PLAYLIST = (
    b"#EXTM3U\n"
    b'#EXTINF:-1 tvg-id="a.tic" group-title="News",Alpha\nhttp://streams.invalid/a.ts\n'
    b'#EXTINF:-1 tvg-id="b.tic" group-title="News",Bravo\nhttp://streams.invalid/b.ts\n'
)


@pytest.fixture
async def provider() -> AsyncIterator[FakeProvider]:
    async with FakeProvider(max_stall=5) as fake:
        yield fake


async def runs(admin: ApiClient, name: str) -> list[dict[str, Any]]:
    body = await (await admin.get(f"/tic-api/tasks?name={name}&limit=100")).get_json()
    items: list[dict[str, Any]] = body["items"]
    return items


async def queued(admin: ApiClient, name: str) -> list[dict[str, Any]]:
    return [r for r in await runs(admin, name) if r["status"] == "queued"]


async def wait_task(admin: ApiClient, task_id: int, timeout: float = 60) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        overview = await (await admin.get("/tic-api/tasks?limit=1")).get_json()
        task: dict[str, Any] = await (await admin.get(f"/tic-api/tasks/{task_id}")).get_json()
        if task["status"] in FINAL:
            return task
        assert asyncio.get_running_loop().time() < deadline, f"task {task_id} still {task['status']}"
        await admin.get(f"/tic-api/tasks?limit=1&wait=2&since={overview['version']}")


async def pause(admin: ApiClient) -> None:
    """Hold the queue so queued runs stay visible (the publish would otherwise run at once)."""
    assert (await admin.post("/tic-api/tasks/pause")).status_code == 200


async def create_playlist(admin: ApiClient, **fields: Any) -> dict[str, Any]:
    body = {"name": "Provider", "kind": "m3u_url", "url": "http://provider.invalid/p.m3u", **fields}
    resp = await admin.post("/tic-api/playlists", json=body)
    assert resp.status_code == 201, await resp.get_data(as_text=True)
    out: dict[str, Any] = await resp.get_json()
    return out


async def patch_playlist(admin: ApiClient, playlist_id: int, **fields: Any) -> None:
    resp = await admin.patch(f"/tic-api/playlists/{playlist_id}", json=fields)
    assert resp.status_code == 200, await resp.get_data(as_text=True)


@pytest.mark.parametrize(
    "change",
    [
        {"connection_limit": 3},
        {"user_agent": "Kodi/21"},
        {"headers": {"Referer": "http://r.invalid/"}},
        {"enabled": False},
        {"name": "Renamed"},
    ],
    ids=lambda c: next(iter(c)),
)
async def test_a_playlist_edit_tvheadend_sees_queues_a_publish(
    admin: ApiClient, change: dict[str, Any]
) -> None:
    source = await create_playlist(admin)
    await pause(admin)
    assert await queued(admin, PUBLISH) == [], "creating an unused playlist changes nothing in TVHeadend"
    await patch_playlist(admin, source["id"], **change)
    [run] = await queued(admin, PUBLISH)
    assert run["key"] == PUBLISH and run["requested_by"] == "admin"


async def test_edits_tvheadend_does_not_see_queue_nothing(admin: ApiClient) -> None:
    source = await create_playlist(admin, connection_limit=2)
    await pause(admin)
    await patch_playlist(admin, source["id"], refresh_interval_minutes=120)
    await patch_playlist(admin, source["id"], connection_limit=2)  # the same value: no change
    assert await runs(admin, PUBLISH) == []


async def test_a_burst_of_edits_makes_one_publish_shared_with_channel_edits(admin: ApiClient) -> None:
    source = await create_playlist(admin)
    await pause(admin)
    await patch_playlist(admin, source["id"], connection_limit=4)
    await patch_playlist(admin, source["id"], user_agent="Kodi/21")
    await patch_playlist(admin, source["id"], enabled=False)
    resp = await admin.post("/tic-api/channels", json={"name": "One", "number": 1})
    assert resp.status_code == 201, await resp.get_data(as_text=True)
    [run] = await runs(admin, PUBLISH)
    assert run["status"] == "queued" and run["key"] == PUBLISH

    # Once that run has ended, the next change queues a new one.
    assert (await admin.post("/tic-api/tasks/resume")).status_code == 200
    assert (await wait_task(admin, run["id"]))["status"] == "succeeded"
    await pause(admin)
    await patch_playlist(admin, source["id"], connection_limit=5)
    assert [r["id"] for r in await queued(admin, PUBLISH)] != [run["id"]]
    assert len(await queued(admin, PUBLISH)) == 1


async def test_deleting_a_playlist_queues_a_publish(admin: ApiClient) -> None:
    source = await create_playlist(admin)
    await pause(admin)
    assert (await admin.delete(f"/tic-api/playlists/{source['id']}")).status_code == 204
    [run] = await queued(admin, PUBLISH)
    assert run["key"] == PUBLISH


async def test_a_playlist_import_that_changed_streams_queues_a_publish(
    admin: ApiClient, provider: FakeProvider
) -> None:
    provider.add_file("/p.m3u", PLAYLIST)
    source = await create_playlist(admin, url=provider.url("/p.m3u"))
    resp = await admin.post(f"/tic-api/playlists/update/{source['id']}")
    assert resp.status_code == 202
    assert (await wait_task(admin, (await resp.get_json())["task_id"]))["status"] == "succeeded"
    assert [r["key"] for r in await runs(admin, PUBLISH)] == [PUBLISH]


async def test_a_guide_import_that_changed_the_guide_queues_the_guide_push(
    admin: ApiClient, provider: FakeProvider
) -> None:
    provider.add_file("/g.xml", GUIDE)
    resp = await admin.post(
        "/tic-api/epgs",
        json={
            "name": "Guide",
            "kind": "xmltv_url",
            "url": provider.url("/g.xml"),
            "past_days": 36500,
            "future_days": 36500,
        },
    )
    assert resp.status_code == 201, await resp.get_data(as_text=True)
    source_id = (await resp.get_json())["id"]

    async def run_import(force: bool) -> None:
        resp = await admin.post(f"/tic-api/epgs/update/{source_id}" + ("?force=true" if force else ""))
        assert resp.status_code == 202
        assert (await wait_task(admin, (await resp.get_json())["task_id"]))["status"] == "succeeded"

    await run_import(force=False)
    [push] = await runs(admin, PUSH_GUIDE)
    assert push["requested_by"] == f"epg:{source_id}" and push["key"] == PUSH_GUIDE
    # TVHeadend is not configured here, so the push itself has nothing to do; it must not fail.
    assert (await wait_task(admin, push["id"]))["status"] == "succeeded"

    await run_import(force=True)
    assert [r["id"] for r in await runs(admin, PUSH_GUIDE)] == [push["id"]], (
        "an import that did not change the guide queues no push"
    )


async def test_the_playlists_page_queues_a_publish_on_edit_and_delete(admin: ApiClient) -> None:
    source = await create_playlist(admin)
    await pause(admin)
    form = {
        "name": "Provider",
        "kind": "m3u_url",
        "url": source["url"],
        "connection_limit": "",
        "refresh_interval_minutes": "",
        "enabled": "true",
    }
    # Saving the form unchanged is not a change TVHeadend sees.
    resp = await admin.post(f"/playlists/{source['id']}", form=form)
    assert resp.status_code == 302, await resp.get_data(as_text=True)
    assert await queued(admin, PUBLISH) == []
    resp = await admin.post(f"/playlists/{source['id']}", form={**form, "connection_limit": "4"})
    assert resp.status_code == 302
    [run] = await queued(admin, PUBLISH)
    assert run["key"] == PUBLISH
    await admin.post(f"/tic-api/tasks/{run['id']}/cancel")
    assert (await admin.post(f"/playlists/{source['id']}/delete")).status_code == 302
    assert [r["key"] for r in await queued(admin, PUBLISH)] == [PUBLISH]
