"""Malformed JSON, wrong types, unknown fields, oversize bodies and unknown ids: clear 4xx, never a 500."""

from __future__ import annotations

from typing import Any

from tests.conftest import ApiClient


async def test_malformed_json(admin: ApiClient) -> None:
    resp = await admin.post(
        "/tic-api/users", data=b'{"username": "x", ', headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 400
    body = await resp.get_json()
    assert body["code"].startswith("INVALID") and body["message"]


async def test_wrong_types_name_the_field(admin: ApiClient) -> None:
    resp = await admin.post("/tic-api/users", json={"username": 42, "password": "password1"})
    assert resp.status_code == 400
    body = await resp.get_json()
    assert body["code"] == "INVALID" and "username" in body["fields"]
    resp = await admin.patch("/tic-api/settings", json={"task_history_days": "7"})
    assert resp.status_code == 400
    assert "task_history_days" in (await resp.get_json())["fields"]


async def test_unknown_fields_are_rejected(admin: ApiClient) -> None:
    resp = await admin.post(
        "/tic-api/users", json={"username": "a1", "password": "password1", "is_god": True}
    )
    assert resp.status_code == 400
    assert (await resp.get_json())["fields"] == {"is_god": "unknown field"}
    resp = await admin.patch("/tic-api/settings", json={"no_such_setting": 1})
    assert resp.status_code == 400 and "no_such_setting" in (await resp.get_json())["fields"]


async def test_non_object_body(admin: ApiClient) -> None:
    resp = await admin.post("/tic-api/users", json=[1, 2, 3])
    assert resp.status_code == 400
    resp = await admin.patch("/tic-api/settings", json=[1])
    assert resp.status_code == 400


async def test_oversize_json_body(admin: ApiClient) -> None:
    huge = {"username": "u" * 10, "password": "p" * (2 * 1024 * 1024)}
    resp = await admin.post("/tic-api/users", json=huge)
    assert resp.status_code == 413
    assert (await resp.get_json())["code"] in {"BODY_TOO_LARGE", "PAYLOAD_TOO_LARGE"}


async def test_unknown_ids_are_404(admin: ApiClient) -> None:
    for path in ("/tic-api/users/9999", "/tic-api/tasks/9999"):
        resp = await admin.get(path)
        assert resp.status_code == 404
        assert (await resp.get_json())["code"].endswith("NOT_FOUND")
    resp = await admin.get("/tic-api/no/such/route")
    assert resp.status_code == 404 and (await resp.get_json())["code"] == "NOT_FOUND"


async def test_bad_paging_arguments(admin: ApiClient) -> None:
    assert (await admin.get("/tic-api/users?limit=abc")).status_code == 400
    assert (await admin.get("/tic-api/users?limit=100000")).status_code == 400
    assert (await admin.get("/tic-api/users?offset=-1")).status_code == 400


async def test_wrong_method(admin: ApiClient) -> None:
    resp = await admin.request("PUT", "/tic-api/users")
    assert resp.status_code == 405
    assert (await resp.get_json())["code"] == "METHOD_NOT_ALLOWED"


async def test_settings_roundtrip_and_validation(admin: ApiClient) -> None:
    got = await (await admin.get("/tic-api/settings")).get_json()
    assert got["values"]["task_history_days"] == 14
    resp = await admin.patch("/tic-api/settings", json={"task_history_days": 0})
    assert resp.status_code == 400
    resp = await admin.patch("/tic-api/settings", json={"task_history_days": 30})
    assert resp.status_code == 200 and (await resp.get_json())["changed"] == ["task_history_days"]
    again = await (await admin.get("/tic-api/settings")).get_json()
    assert again["values"]["task_history_days"] == 30


async def test_database_unreachable_gives_503(app: Any, admin: ApiClient, svc: Any) -> None:
    # Point the app at a database that cannot be opened: requests get a clear 503, not a 500.
    from backend.db import Database

    real = svc.db
    broken = Database("sqlite+aiosqlite:////proc/tic.db")
    svc.db = broken
    try:
        resp = await admin.get("/tic-api/users")
        assert resp.status_code == 503
        body = await resp.get_json()
        assert body["code"] == "DATABASE_UNAVAILABLE"
        health = await app.test_client().get("/tic-api/health")
        assert health.status_code == 503
        # The broker keeps living: a tick with no database just waits for the next one.
        svc.broker.db = broken
        assert svc.broker.tick() is True
        import asyncio

        await asyncio.sleep(0.2)
        assert not svc.broker.running
    finally:
        svc.db = real
        svc.broker.db = real
        await broken.dispose()
    assert (await admin.get("/tic-api/users")).status_code == 200
