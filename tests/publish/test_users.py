"""TVHeadend logins for TIC users: issued once to their owner, synced, rotated, removed with the user."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from backend.publish.users import sync_logins
from backend.tvheadend.client import TvheadendClient
from tests.conftest import ApiClient
from tests.fakes.tvheadend import FakeTvheadend


def managed(rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows.values() if str(r.get("comment", "")).startswith("Managed by TIC")]


async def test_login_lifecycle(
    svc: Any,
    admin: ApiClient,
    streamer: ApiClient,
    client: TvheadendClient,
    tvh: FakeTvheadend,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    assert (await (await streamer.get("/tic-api/tvheadend/users/self/login")).get_json()) == {"exists": False}
    resp = await streamer.post("/tic-api/tvheadend/users/self/login")
    assert resp.status_code == 201 and resp.headers["Cache-Control"] == "no-store"
    issued = await resp.get_json()
    assert issued["tvh_username"] == "viewer" and len(issued["password"]) >= 20

    await sync_logins(svc.db, client, svc.keyring)
    [access] = managed(tvh.state.access_entries)
    [passwd] = managed(tvh.state.passwd_entries)
    assert access["username"] == "viewer" and access["admin"] is False and access["webui"] is False
    assert "htsp" in access["streaming"] and access["dvr"] == []
    assert passwd["password"] == issued["password"]
    # The owner's new login works against TVHeadend (HTSP clients use the same credentials).
    assert tvh.state.rights_for("viewer", "127.0.0.1") >= {"streaming"}

    view = await (await streamer.get("/tic-api/tvheadend/users/self/login")).get_json()
    assert view["in_tvheadend"] is True and "password" not in view
    listing = await (await admin.get("/tic-api/tvheadend/users")).get_json()
    assert [i["tvh_username"] for i in listing["items"]] == ["viewer"]

    tvh.clear_calls()
    await sync_logins(svc.db, client, svc.keyring)
    assert tvh.write_calls() == []

    rotated = await (await streamer.post("/tic-api/tvheadend/users/self/login")).get_json()
    assert rotated["password"] != issued["password"]
    await sync_logins(svc.db, client, svc.keyring)
    assert managed(tvh.state.passwd_entries)[0]["password"] == rotated["password"]
    assert issued["password"] not in caplog.text and rotated["password"] not in caplog.text

    user_id = streamer.user["id"]
    assert (await admin.delete(f"/tic-api/users/{user_id}")).status_code == 204
    result = await sync_logins(svc.db, client, svc.keyring)
    assert result["removed"] == 2
    assert managed(tvh.state.access_entries) == [] and managed(tvh.state.passwd_entries) == []
    assert (await (await admin.get("/tic-api/tvheadend/users")).get_json())["items"] == []
    assert [r["username"] for r in tvh.state.access_entries.values()] == ["admin"]


async def test_revoke_and_a_clash_with_an_unmanaged_tvh_user(
    svc: Any, admin: ApiClient, streamer: ApiClient, client: TvheadendClient, tvh: FakeTvheadend
) -> None:
    tvh.state.add_user("viewer", "theirs", {"streaming"})
    before = {u: dict(r) for u, r in tvh.state.passwd_entries.items()}
    await streamer.post("/tic-api/tvheadend/users/self/login")
    await sync_logins(svc.db, client, svc.keyring)
    view = await (await streamer.get("/tic-api/tvheadend/users/self/login")).get_json()
    assert view["in_tvheadend"] is False and "does not manage" in view["sync_error"]
    assert {u: dict(r) for u, r in tvh.state.passwd_entries.items()} == before

    user_id = streamer.user["id"]
    assert (await admin.delete(f"/tic-api/tvheadend/users/{user_id}/login")).status_code == 204
    await sync_logins(svc.db, client, svc.keyring)
    assert (await (await streamer.get("/tic-api/tvheadend/users/self/login")).get_json()) == {"exists": False}
    assert {u: dict(r) for u, r in tvh.state.passwd_entries.items()} == before
