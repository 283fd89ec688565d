"""The TVHeadend login card on /account: create (password shown once), rotate and revoke."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import ApiClient
from tests.fakes.tvheadend import FakeTvheadend
from tests.publish.test_api import wait_run

ADMIN = {"admin": ("admin", {"admin", "dvr", "streaming", "webui"})}
PASSWORD = re.compile(r'<code id="new-tvh-password">([^<]+)</code>')


@pytest.fixture
async def tvh() -> AsyncIterator[FakeTvheadend]:
    async with FakeTvheadend(auth_mode=2, users=ADMIN) as fake:
        yield fake


def managed(rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows.values() if str(r.get("comment", "")).startswith("Managed by TIC")]


async def form_post(user: ApiClient, path: str) -> Any:
    """A browser form post: the session's CSRF token as a form field, not a header."""
    return await user.client.post(path, form={"csrf_token": user.csrf})


async def synced(admin: ApiClient, requested_by: str) -> None:
    """Wait for every TVHeadend login sync the user queued."""
    body = await (await admin.get("/tic-api/tasks?name=sync_tvheadend_users&limit=100")).get_json()
    runs = [r for r in body["items"] if r["requested_by"] == requested_by]
    assert runs, "the page action queued no sync"
    for run in runs:
        assert (await wait_run(admin, run["id"]))["status"] == "succeeded"


async def test_create_rotate_and_revoke_from_the_account_page(
    admin: ApiClient, streamer: ApiClient, tvh: FakeTvheadend
) -> None:
    resp = await admin.patch(
        "/tic-api/settings", json={"tvh_url": tvh.url, "tvh_username": "admin", "tvh_password": "admin"}
    )
    assert resp.status_code == 200
    page = await (await streamer.get("/account")).get_data(as_text=True)
    assert "TVHeadend login" in page and "You have no TVHeadend login" in page
    assert 'action="/account/tvheadend-login"' in page and "Create my TVHeadend login" in page

    resp = await form_post(streamer, "/account/tvheadend-login")
    assert resp.status_code == 200 and resp.headers["Cache-Control"] == "no-store"
    page = await resp.get_data(as_text=True)
    [password] = PASSWORD.findall(page)
    assert len(password) >= 20 and "shown only once" in page
    assert "<code>viewer</code>" in page and "Rotate the password" in page
    view = await (await streamer.get("/tic-api/tvheadend/users/self/login")).get_json()
    assert view["exists"] is True and view["tvh_username"] == "viewer"

    await synced(admin, "viewer")
    [passwd] = managed(tvh.state.passwd_entries)
    assert passwd["username"] == "viewer" and passwd["password"] == password
    page = await (await streamer.get("/account")).get_data(as_text=True)
    assert password not in page and "new-tvh-password" not in page, "the password is shown only once"
    assert re.search(r"<dt>In TVHeadend</dt><dd>yes", page)

    rotated_page = await (await form_post(streamer, "/account/tvheadend-login")).get_data(as_text=True)
    [rotated] = PASSWORD.findall(rotated_page)
    assert rotated != password
    await synced(admin, "viewer")
    assert managed(tvh.state.passwd_entries)[0]["password"] == rotated

    resp = await form_post(streamer, "/account/tvheadend-login/revoke")
    assert resp.status_code == 302 and resp.headers["Location"] == "/account"
    page = await (await streamer.get("/account")).get_data(as_text=True)
    assert "TVHeadend login was revoked" in page and "You have no TVHeadend login" in page
    await synced(admin, "viewer")
    assert managed(tvh.state.passwd_entries) == [] and managed(tvh.state.access_entries) == []
    assert (await (await streamer.get("/tic-api/tvheadend/users/self/login")).get_json()) == {"exists": False}

    # Revoking what is not there says so instead of failing.
    resp = await form_post(streamer, "/account/tvheadend-login/revoke")
    assert resp.status_code == 302
    assert "This user has no TVHeadend login" in await (await streamer.get("/account")).get_data(as_text=True)


async def test_account_login_forms_need_csrf_and_a_login(app: Any, streamer: ApiClient) -> None:
    for path in ("/account/tvheadend-login", "/account/tvheadend-login/revoke"):
        assert (await streamer.client.post(path, form={"csrf_token": "wrong"})).status_code == 403
        anonymous = await app.test_client().post(path)
        assert anonymous.status_code == 302 and anonymous.headers["Location"].startswith("/login")
    view = await (await streamer.get("/tic-api/tvheadend/users/self/login")).get_json()
    assert view == {"exists": False}, "a refused form changes nothing"
    page = await (await streamer.get("/account")).get_data(as_text=True)
    assert "TVHeadend is not set up in TIC yet" in page
