"""GET /tic-api/tvheadend/status and the /tvheadend page: managed objects, the last publish and its drift."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import ApiClient
from tests.fakes.tvheadend import FakeTvheadend
from tests.publish.conftest import make_lineup
from tests.publish.test_api import configure, wait_run

ADMIN = {"admin": ("admin", {"admin", "dvr", "streaming", "webui"})}


@pytest.fixture
async def tvh() -> AsyncIterator[FakeTvheadend]:
    async with FakeTvheadend(auth_mode=2, users=ADMIN, scan_delay=0.02, mapper_delay=0.01) as fake:
        yield fake


async def status(admin: ApiClient) -> dict[str, Any]:
    resp = await admin.get("/tic-api/tvheadend/status")
    assert resp.status_code == 200, await resp.get_data(as_text=True)
    body: dict[str, Any] = await resp.get_json()
    return body


async def publish(admin: ApiClient) -> dict[str, Any]:
    resp = await admin.post("/tic-api/tvheadend/publish")
    assert resp.status_code == 202
    run = await wait_run(admin, (await resp.get_json())["task_id"])
    assert run["status"] == "succeeded", run
    return run


async def test_status_before_anything_was_published(admin: ApiClient) -> None:
    body = await status(admin)
    assert body["configured"] is False and body["error_code"] == "TVH_NOT_CONFIGURED"
    assert body["managed"] == {"network": 0, "mux": 0, "channel": 0, "tag": 0, "total": 0}
    assert body["last_publish"] is None
    assert body["drift"] == [] and body["drift_total"] == 0
    # Fields only a successful check fills are present (null), so clients need not test for them.
    assert body["sw_version"] is None and body["auth_mode"] is None


async def test_status_counts_managed_objects_and_reports_the_last_publish(
    admin: ApiClient, svc: Any, tvh: FakeTvheadend
) -> None:
    await make_lineup(svc.db)
    await configure(admin, tvh)
    run = await publish(admin)

    body = await status(admin)
    assert body["ok"] is True and body["sw_version"] == "4.3-2715~g80729d2f6"
    # Two tags (the TIC marker and News), three networks (Alpha, Beta, Manual), four muxes, three channels.
    assert body["managed"] == {"network": 3, "mux": 4, "channel": 3, "tag": 2, "total": 12}
    last = body["last_publish"]
    assert last["status"] == "succeeded" and last["task_run_id"] == run["id"] and last["error"] is None
    assert last["finished_at"].endswith("Z")
    summary = last["summary"]
    assert (summary["created"], summary["updated"], summary["deleted"]) == (12, 0, 0)
    assert summary["by_kind"]["create"] == {"tag": 2, "network": 3, "mux": 4, "channel": 3}
    assert summary["drift_repaired"] == 0 and last["write_calls"] >= 12
    assert body["drift"] == [] and body["drift_total"] == 0
    assert "operations" not in last, "the applied operations stay with /publish/last"

    # Change a managed channel in TVHeadend's UI: the next publish puts it back and reports the drift.
    one = next(u for u, c in tvh.state.channels.items() if c["name"] == "One")
    tvh.state.nodes[one].fields["name"] = "Renamed in the TVH UI"
    await publish(admin)
    body = await status(admin)
    assert body["drift_total"] == 1
    assert body["drift"] == [
        {"kind": "channel", "name": "One", "uuid": one, "what": "changed in TVHeadend", "fields": ["name"]}
    ]
    last = body["last_publish"]
    assert last["summary"]["drift_repaired"] == 1
    assert (last["summary"]["created"], last["summary"]["updated"]) == (0, 1)
    assert body["managed"]["total"] == 12


async def test_page_shows_managed_counts(admin: ApiClient, svc: Any, tvh: FakeTvheadend) -> None:
    await configure(admin, tvh)
    page = await (await admin.get("/tvheadend")).get_data(as_text=True)
    assert "TIC manages nothing in TVHeadend yet" in page

    await make_lineup(svc.db)
    await publish(admin)
    page = await (await admin.get("/tvheadend")).get_data(as_text=True)
    assert "TIC manages <strong>12</strong> object(s)" in page
    for label, count in (("Networks", 3), ("Muxes", 4), ("Channels", 3), ("Channel tags", 2)):
        assert f"<dt>{label}</dt><dd>{count}</dd>" in page
    # The last publish is still loaded by the page from its own fragment.
    assert 'hx-get="/tvheadend/publish"' in page
