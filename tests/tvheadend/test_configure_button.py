"""The /tvheadend page's "Run configure now" button queues the configure task by its name."""

from __future__ import annotations

from typing import Any

from tests.conftest import ApiClient


async def tasks_named(admin: ApiClient, name: str) -> list[dict[str, Any]]:
    body = await (await admin.get(f"/tic-api/tasks?name={name}")).get_json()
    items: list[dict[str, Any]] = body["items"]
    return items


async def test_run_configure_now(admin: ApiClient, streamer: ApiClient) -> None:
    page = await (await admin.get("/tvheadend")).get_data(as_text=True)
    assert "Run configure now" not in page, "no button while TVHeadend is not configured"
    resp = await admin.patch("/tic-api/settings", json={"tvh_url": "http://127.0.0.1:9/tic-tvh"})
    assert resp.status_code == 200
    page = await (await admin.get("/tvheadend")).get_data(as_text=True)
    assert 'hx-post="/tvheadend/configure"' in page and "Run configure now" in page

    # Hold the queue so the runs stay visible, then clear what saving the settings queued.
    assert (await admin.post("/tic-api/tasks/pause")).status_code == 200
    for run in await tasks_named(admin, "configure_tvheadend"):
        if run["status"] == "queued":
            await admin.post(f"/tic-api/tasks/{run['id']}/cancel")
    before = {run["id"] for run in await tasks_named(admin, "configure_tvheadend")}

    resp = await admin.post("/tvheadend/configure")
    assert resp.status_code == 200
    text = await resp.get_data(as_text=True)
    assert "Configure queued" in text
    queued = [r for r in await tasks_named(admin, "configure_tvheadend") if r["id"] not in before]
    assert len(queued) == 1 and queued[0]["status"] == "queued"
    assert queued[0]["requested_by"] == "admin" and queued[0]["key"] == "configure_tvheadend"
    assert f"task #{queued[0]['id']}" in text

    # A second click finds the queued run instead of queueing another.
    again = await (await admin.post("/tvheadend/configure")).get_data(as_text=True)
    assert "already queued" in again and f"task #{queued[0]['id']}" in again
    assert len([r for r in await tasks_named(admin, "configure_tvheadend") if r["id"] not in before]) == 1

    # Admins only, and like every form post it needs the CSRF token.
    assert (await streamer.post("/tvheadend/configure")).status_code == 403
    no_csrf = await admin.client.post("/tvheadend/configure")
    assert no_csrf.status_code == 403
    await admin.post("/tic-api/tasks/resume")
