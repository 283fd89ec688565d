"""Health, version, OpenAPI, docs page, UTC serialisation and the access log's redaction."""

from __future__ import annotations

import logging
from typing import Any

from backend.observability import redact_target
from tests.conftest import ApiClient


async def test_health_and_version(client: Any) -> None:
    resp = await client.get("/tic-api/health")
    assert resp.status_code == 200
    body = await resp.get_json()
    assert body["checks"]["database"] == "ok" and body["status"] == "ok"
    version = await (await client.get("/tic-api/version")).get_json()
    assert version["version"] and version["database"] in {"sqlite", "postgresql"}


async def test_openapi_documents_routes(client: Any) -> None:
    spec = await (await client.get("/openapi.json")).get_json()
    paths = spec["paths"]
    for path in ("/tic-api/setup", "/tic-api/auth/login", "/tic-api/users", "/tic-api/tasks"):
        assert path in paths
    body = paths["/tic-api/users"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"username", "password", "role"} <= set(body["properties"])
    assert body["additionalProperties"] is False
    docs = await client.get("/docs")
    assert docs.status_code == 200 and "/tic-api/users" in await docs.get_data(as_text=True)


async def test_timestamps_are_utc_with_z(admin: ApiClient) -> None:
    users = await (await admin.get("/tic-api/users")).get_json()
    stamp = users["items"][0]["created_at"]
    assert stamp.endswith("Z") and "+" not in stamp


def test_redaction_of_secrets_in_targets() -> None:
    assert redact_target("/tic-api/playlist/combined.m3u?stream_key=abc123") == (
        "/tic-api/playlist/combined.m3u?stream_key=***"
    )
    assert redact_target("/tic-api/hdhr_device/abcdef/combined/lineup.json") == (
        "/tic-api/hdhr_device/***/combined/lineup.json"
    )
    assert "pw" not in redact_target("/x?username=me&password=pw")


async def test_access_log_never_prints_stream_keys(admin: ApiClient, caplog: Any) -> None:
    key = (await (await admin.get("/tic-api/users/self/stream-key")).get_json())["stream_key"]
    caplog.set_level(logging.INFO, logger="tic.access")
    await admin.client.get(f"/tic-api/playlist/combined.m3u?stream_key={key}")
    await admin.client.get("/tic-api/users?token=tic_abcdef")
    lines = [r.getMessage() for r in caplog.records if r.name == "tic.access"]
    assert lines and all(key not in line and "tic_abcdef" not in line for line in lines)


async def test_pages_render_for_admin(admin: ApiClient) -> None:
    # Leave the first-run wizard so "/" shows the dashboard.
    assert (await admin.post("/welcome/dismiss")).status_code == 302
    for path in ("/", "/tasks", "/users", "/settings", "/account", "/playlists", "/tasks/partial"):
        resp = await admin.get(path)
        assert resp.status_code == 200, path
        html = await resp.get_data(as_text=True)
        assert "<" in html
    dash = await (await admin.get("/")).get_data(as_text=True)
    assert 'name="csrf-token"' in dash and "task-indicator" in dash


async def test_users_page_form_errors_keep_input(admin: ApiClient) -> None:
    resp = await admin.post("/users", form={"username": "new person!", "password": "pw", "role": "admin"})
    assert resp.status_code == 400
    html = await resp.get_data(as_text=True)
    assert "new person!" in html and "field-error" in html
    ok = await admin.post(
        "/users", form={"username": "newperson", "password": "password99", "role": "streamer"}
    )
    assert ok.status_code == 302
    users = await (await admin.get("/tic-api/users")).get_json()
    assert "newperson" in [u["username"] for u in users["items"]]


async def test_settings_page_saves(admin: ApiClient) -> None:
    resp = await admin.post("/settings", form={"task_history_days": "abc"})
    assert resp.status_code == 400
    ok = await admin.post("/settings", form={"task_history_days": "21"})
    assert ok.status_code == 302
    values = (await (await admin.get("/tic-api/settings")).get_json())["values"]
    assert values["task_history_days"] == 21


async def test_account_clock_preference_changes_how_times_render(admin: ApiClient) -> None:
    page = await (await admin.get("/account")).get_data(as_text=True)
    assert 'data-time-format="24h"' in page and 'name="time_format"' in page
    assert (await admin.post("/account/preferences", form={"time_format": "12h"})).status_code == 302
    page = await (await admin.get("/account")).get_data(as_text=True)
    assert 'data-time-format="12h"' in page
    assert (await (await admin.get("/tic-api/users/self")).get_json())["time_format"] == "12h"
    bad = await admin.post("/account/preferences", form={"time_format": "13h"}, follow_redirects=True)
    assert "time_format must be 12h or 24h" in await bad.get_data(as_text=True)
    assert (await (await admin.get("/tic-api/users/self")).get_json())["time_format"] == "12h"
