"""GET /tic-api/tvheadend/status and POST /tic-api/tvheadend/test-connection against the fake TVHeadend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import ApiClient, free_port
from tests.fakes.tvheadend import FakeTvheadend

ADMIN_RIGHTS = {"admin", "dvr", "streaming", "webui"}
SECRET = "tvh-Secret-42"


@pytest.fixture
async def tvh() -> AsyncIterator[FakeTvheadend]:
    users = {"tic": (SECRET, ADMIN_RIGHTS), "viewer": ("viewer-pw", {"webui", "streaming"})}
    async with FakeTvheadend(auth_mode=1, users=users) as fake:
        yield fake


async def save(
    admin: ApiClient, url: str, username: str = "tic", password: str = SECRET, **more: Any
) -> None:
    resp = await admin.patch(
        "/tic-api/settings", json={"tvh_url": url, "tvh_username": username, "tvh_password": password, **more}
    )
    assert resp.status_code == 200, await resp.get_json()


async def status(admin: ApiClient) -> dict[str, Any]:
    resp = await admin.get("/tic-api/tvheadend/status")
    assert resp.status_code == 200
    body: dict[str, Any] = await resp.get_json()
    assert SECRET not in str(body)
    return body


async def test_status_not_configured_and_admin_only(app: Any, admin: ApiClient, streamer: ApiClient) -> None:
    assert (await streamer.get("/tic-api/tvheadend/status")).status_code == 403
    assert (await streamer.post("/tic-api/tvheadend/test-connection", json={})).status_code == 403
    assert (await streamer.get("/tvheadend")).status_code == 403
    assert (await app.test_client().get("/tic-api/tvheadend/status")).status_code == 401
    body = await status(admin)
    assert body["configured"] is False and body["reachable"] is False and body["ok"] is False
    assert body["error_code"] == "TVH_NOT_CONFIGURED" and "Settings" in body["error"]
    assert body["checked_at"].endswith("Z")


async def test_status_of_a_healthy_server(admin: ApiClient, tvh: FakeTvheadend) -> None:
    await save(admin, tvh.url)
    body = await status(admin)
    assert body["configured"] and body["reachable"] and body["ok"]
    assert body["url"] == tvh.url and body["username"] == "tic"
    assert body["sw_version"] == body["version"] == "4.3-2715~g80729d2f6"
    assert body["api_version"] == 19
    assert body["auth_mode"] == "digest"
    assert body["is_admin"] is True and body["has_dvr"] is True
    assert body["webroot"] == "/tic-tvh" and body["proxy_ready"] is True
    assert body["warnings"] == [] and body["error"] is None
    assert body["proxy_url"] == "/tic-tvh/"
    await save(admin, tvh.url, password="wrong")
    body = await status(admin)
    assert body["reachable"] is True and body["ok"] is False
    assert body["error_code"] == "TVH_FORBIDDEN"
    await save(admin, f"http://127.0.0.1:{free_port()}/tic-tvh", password=SECRET)
    body = await status(admin)
    assert body["reachable"] is False and body["error_code"] == "TVH_UNREACHABLE"
    # "Test connection" with the saved settings.
    await save(admin, tvh.url)
    resp = await admin.post("/tic-api/tvheadend/test-connection")
    assert resp.status_code == 200
    body = await resp.get_json()
    assert body["ok"] is True and body["auth_mode"] == "digest" and body["is_admin"] and body["has_dvr"]
    assert body["sw_version"] == "4.3-2715~g80729d2f6" and body["api_version"] == 19
    assert SECRET not in await resp.get_data(as_text=True)


async def test_test_connection_before_saving(admin: ApiClient, tvh: FakeTvheadend) -> None:
    # Nothing saved yet: the body's values are tested, and nothing is stored.
    async with FakeTvheadend(auth_mode=0, users={"basic": ("pw-basic", ADMIN_RIGHTS)}) as other:
        resp = await admin.post(
            "/tic-api/tvheadend/test-connection",
            json={"url": other.url, "username": "basic", "password": "pw-basic"},
        )
        assert resp.status_code == 200, await resp.get_json()
        assert (await resp.get_json())["auth_mode"] == "basic"
    assert (await status(admin))["configured"] is False
    # A user without admin and DVR rights: works, with warnings.
    resp = await admin.post(
        "/tic-api/tvheadend/test-connection",
        json={"url": tvh.url, "username": "viewer", "password": "viewer-pw"},
    )
    body = await resp.get_json()
    assert body["is_admin"] is False and body["has_dvr"] is False
    assert any("admin rights" in w for w in body["warnings"])
    # A TVHeadend without the HTTP root TIC's proxy needs: usable, with a warning.
    async with FakeTvheadend(http_root="", users={"tic": (SECRET, ADMIN_RIGHTS)}) as rootless:
        await save(admin, rootless.url)
        body = await status(admin)
    assert body["ok"] is True and body["proxy_ready"] is False and body["webroot"] is None
    assert any("--http_root /tic-tvh" in w for w in body["warnings"])


async def test_saved_password_only_goes_to_the_saved_server(admin: ApiClient, tvh: FakeTvheadend) -> None:
    await save(admin, tvh.url)
    # Same server, other path, masked password: the saved password is used.
    resp = await admin.post(
        "/tic-api/tvheadend/test-connection", json={"url": tvh.url + "/", "password": "********"}
    )
    assert resp.status_code == 200
    async with FakeTvheadend(auth_mode=1, users={"tic": (SECRET, ADMIN_RIGHTS)}) as elsewhere:
        resp = await admin.post("/tic-api/tvheadend/test-connection", json={"url": elsewhere.url})
        assert resp.status_code == 502
        assert (await resp.get_json())["code"] == "TVH_FORBIDDEN"
        # With the password typed in, the other server is fine.
        resp = await admin.post(
            "/tic-api/tvheadend/test-connection", json={"url": elsewhere.url, "password": SECRET}
        )
        assert resp.status_code == 200


async def test_test_connection_errors(admin: ApiClient, tvh: FakeTvheadend) -> None:
    resp = await admin.post("/tic-api/tvheadend/test-connection")
    assert resp.status_code == 400 and (await resp.get_json())["code"] == "TVH_NOT_CONFIGURED"
    resp = await admin.post(
        "/tic-api/tvheadend/test-connection", json={"url": f"http://tic:{SECRET}@{tvh.url[7:]}"}
    )
    assert resp.status_code == 400
    assert "url" in (await resp.get_json())["fields"] and SECRET not in await resp.get_data(as_text=True)
    resp = await admin.post("/tic-api/tvheadend/test-connection", json={"url": tvh.url, "bogus": 1})
    assert resp.status_code == 400 and "bogus" in (await resp.get_json())["fields"]
    resp = await admin.post("/tic-api/tvheadend/test-connection", json={"url": 5})
    assert resp.status_code == 400
    resp = await admin.post(
        "/tic-api/tvheadend/test-connection", data="not json", headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 400
    resp = await admin.post(
        "/tic-api/tvheadend/test-connection", json={"url": f"http://127.0.0.1:{free_port()}/tic-tvh"}
    )
    assert resp.status_code == 503 and (await resp.get_json())["code"] == "TVH_UNREACHABLE"
    resp = await admin.post(
        "/tic-api/tvheadend/test-connection",
        json={"url": tvh.url, "username": "tic", "password": "wrong"},
    )
    assert resp.status_code == 502 and (await resp.get_json())["code"] == "TVH_FORBIDDEN"
    # A URL without TVHeadend's HTTP root: the API is not where TIC looks.
    resp = await admin.post(
        "/tic-api/tvheadend/test-connection",
        json={"url": tvh.url.removesuffix("/tic-tvh"), "username": "tic", "password": SECRET},
    )
    assert resp.status_code == 502


async def test_tvheadend_page(admin: ApiClient, tvh: FakeTvheadend) -> None:
    page = await (await admin.get("/tvheadend")).get_data(as_text=True)
    assert "not configured" in page and "/settings#s-tvh_url" in page and "<iframe" not in page
    await save(admin, tvh.url)
    page = await (await admin.get("/tvheadend")).get_data(as_text=True)
    assert 'src="/tic-tvh/"' in page and tvh.url in page and SECRET not in page
    assert 'hx-get="/tvheadend/publish"' in page  # the last publish and the preview button load in place
    partial = await (await admin.post("/tvheadend/test")).get_data(as_text=True)
    assert "Connected" in partial and "4.3-2715" in partial
    await save(admin, tvh.url, password="wrong")
    partial = await (await admin.get("/tvheadend/status")).get_data(as_text=True)
    assert "TVH_FORBIDDEN" in partial
