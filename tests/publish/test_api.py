"""The publish API: queue a publish (202), preview, last result, errors when TVHeadend is not set up."""

from __future__ import annotations

import asyncio
from typing import Any

from backend.db import Database
from tests.conftest import ApiClient
from tests.fakes.tvheadend import FakeTvheadend
from tests.publish.conftest import make_lineup


async def wait_run(admin: ApiClient, task_id: int, timeout: float = 30.0) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        run = await (await admin.get(f"/tic-api/tasks/{task_id}")).get_json()
        if run["status"] in ("succeeded", "failed", "cancelled"):
            return dict(run)
        await asyncio.sleep(0.05)
    raise AssertionError("task did not finish")


async def configure(admin: ApiClient, tvh: FakeTvheadend) -> None:
    resp = await admin.patch(
        "/tic-api/settings",
        json={
            "tvh_url": tvh.url,
            "tvh_username": "admin",
            "tvh_password": "admin",
            "tvh_publish_debounce_seconds": 0,
            "tvh_scan_timeout_seconds": 10,
        },
    )
    assert resp.status_code == 200, await resp.get_data(as_text=True)


async def test_not_configured(admin: ApiClient) -> None:
    resp = await admin.get("/tic-api/tvheadend/publish/preview")
    assert resp.status_code == 409
    assert (await resp.get_json())["code"] == "TVH_NOT_CONFIGURED"
    assert (await (await admin.get("/tic-api/tvheadend/publish/last")).get_json()) == {"run": None}


async def test_preview_then_publish_then_nothing_left(
    admin: ApiClient, db: Database, tvh: FakeTvheadend
) -> None:
    await make_lineup(db)
    await configure(admin, tvh)
    preview = await (await admin.get("/tic-api/tvheadend/publish/preview?limit=3")).get_json()
    assert preview["summary"]["create"] == 12  # 2 tags, 3 networks, 4 muxes, 3 channels
    assert preview["total_operations"] == 12 and len(preview["operations"]) == 3
    assert preview["operations"][0] == {
        "action": "create",
        "kind": "tag",
        "name": "News",
        "uuid": None,
        "drift": None,
        "changes": {
            "name": {"from": None, "to": "News"},
            "enabled": {"from": None, "to": True},
            "internal": {"from": None, "to": False},
            "comment": {"from": None, "to": "Managed by TIC"},
        },
    }

    resp = await admin.post("/tic-api/tvheadend/publish")
    assert resp.status_code == 202
    run = await wait_run(admin, (await resp.get_json())["task_id"])
    assert run["status"] == "succeeded", run
    assert len(tvh.state.channels) == 3

    last = (await (await admin.get("/tic-api/tvheadend/publish/last")).get_json())["run"]
    assert last["status"] == "succeeded" and last["task_run_id"] == run["id"]
    assert last["summary"]["created"] == 12 and last["write_calls"] >= 12
    after = await (await admin.get("/tic-api/tvheadend/publish/preview")).get_json()
    assert after["total_operations"] == 0 and after["operations"] == []


async def test_publish_is_admin_only(streamer: ApiClient) -> None:
    for method, path in (
        ("POST", "/tic-api/tvheadend/publish"),
        ("GET", "/tic-api/tvheadend/publish/preview"),
        ("GET", "/tic-api/tvheadend/publish/last"),
        ("POST", "/tic-api/tvheadend/configure"),
        ("GET", "/tic-api/tvheadend/tv_grab_tic"),
    ):
        resp = await streamer.request(method, path)
        assert resp.status_code == 403, path


async def test_grabber_download(admin: ApiClient) -> None:
    resp = await admin.get("/tic-api/tvheadend/tv_grab_tic")
    assert resp.status_code == 200
    assert (await resp.get_data(as_text=True)).startswith("#!/bin/sh")


async def test_page_fragments(admin: ApiClient, db: Database, tvh: FakeTvheadend) -> None:
    await make_lineup(db)
    empty = await admin.get("/tvheadend/publish")
    assert empty.status_code == 200 and "Nothing has been published" in await empty.get_data(as_text=True)
    unset = await (await admin.get("/tvheadend/publish/preview")).get_data(as_text=True)
    assert "TVH_NOT_CONFIGURED" in unset
    await configure(admin, tvh)
    preview = await (await admin.get("/tvheadend/publish/preview")).get_data(as_text=True)
    assert "12</strong> to create" in preview and "Publish now" in preview
    queued = await admin.post("/tvheadend/publish")
    assert "Publish queued" in await queued.get_data(as_text=True)
