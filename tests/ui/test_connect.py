"""Connection details: every user's client URLs with copy buttons, the public base URL, key rotation."""

from __future__ import annotations

from typing import Any

from tests.conftest import ApiClient
from tests.ui.seed import seed_lineup


async def key_of(client: ApiClient) -> str:
    return str((await (await client.get("/tic-api/users/self/stream-key")).get_json())["stream_key"])


async def test_own_urls_with_copy_buttons(admin: ApiClient, svc: Any) -> None:
    ids = await seed_lineup(svc, channels=1)
    key = await key_of(admin)
    html = await (await admin.get("/connect")).get_data(as_text=True)
    for url in (
        f"http://localhost/tic-api/playlist/combined.m3u?stream_key={key}",
        f"http://localhost/tic-api/epg/xmltv.xml?stream_key={key}",
        f"http://localhost/tic-api/hdhr_device/{key}/combined",
        f"http://localhost/tic-api/playlist/{ids['playlist_id']}.m3u?stream_key={key}",
    ):
        assert url in html
    assert html.count("data-copy=") >= 6


async def test_public_base_url_is_used(admin: ApiClient) -> None:
    resp = await admin.patch("/tic-api/settings", json={"public_base_url": "https://tv.example.org/"})
    assert resp.status_code == 200
    html = await (await admin.get("/connect")).get_data(as_text=True)
    assert "https://tv.example.org/tic-api/playlist/combined.m3u?stream_key=" in html


async def test_admin_sees_and_rotates_anyones_streamer_only_their_own(
    admin: ApiClient, streamer: ApiClient
) -> None:
    viewer_id = streamer.user["id"]
    old = await key_of(streamer)
    page = await (await admin.get(f"/connect/{viewer_id}")).get_data(as_text=True)
    assert old in page and "Client URLs of viewer" in page
    assert (await streamer.get(f"/connect/{admin.user['id']}")).status_code == 403
    assert (
        await streamer.post(f"/connect/{admin.user['id']}/rotate", form={"csrf_token": streamer.csrf})
    ).status_code == 403
    resp = await admin.post(f"/connect/{viewer_id}/rotate", form={"csrf_token": admin.csrf})
    assert resp.status_code == 302 and resp.headers["Location"] == f"/connect/{viewer_id}"
    assert await key_of(streamer) != old
    own_old = await key_of(streamer)
    mine = await streamer.post("/connect/rotate", form={"csrf_token": streamer.csrf})
    assert mine.status_code == 302
    assert await key_of(streamer) != own_old
    page = await (await streamer.get("/connect")).get_data(as_text=True)
    assert "rotated" in page and "Your client URLs" in page


async def test_rotation_needs_csrf(streamer: ApiClient) -> None:
    resp = await streamer.client.post("/connect/rotate", form={})
    assert resp.status_code == 403
