"""The logo cache: fetched by a job from a fake provider, checked, served to anyone by channel id."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.channels.conftest import Data, create
from tests.conftest import ApiClient
from tests.fakes.upstream import FakeProvider

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(200)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF" + bytes(300)


async def refresh_logos(admin: ApiClient, svc: Any) -> dict[str, Any]:
    """Queue the logo job through the API, let the broker run the queue, wait for the run to end."""
    resp = await admin.post("/tic-api/channels/logos/refresh")
    assert resp.status_code == 202
    task_id = (await resp.get_json())["task_id"]
    svc.broker.wake_enabled = True
    svc.broker.tick()
    for _ in range(600):
        task = await (await admin.get(f"/tic-api/tasks/{task_id}")).get_json()
        if task["status"] not in ("queued", "running"):
            svc.broker.wake_enabled = False
            return dict(task)
        await asyncio.sleep(0.05)
    raise AssertionError(f"the logo job did not finish: {task}")


async def test_logos_are_cached_checked_and_served_with_fallback(
    app: Any, admin: ApiClient, data: Data, svc: Any
) -> None:
    resp = await admin.patch("/tic-api/settings", json={"logo_max_bytes": 2048})
    assert resp.status_code == 200
    async with FakeProvider() as provider:
        provider.add_file("/logo/good.png", PNG, content_type="image/png")
        provider.add_file("/logo/page.png", b"<!doctype html><html>login</html>", content_type="text/html")
        provider.add_file("/logo/big.png", PNG + bytes(4096), content_type="image/png")
        provider.add_file("/logo/vector.svg", b"<svg onload='alert(1)'/>", content_type="image/svg+xml")
        provider.add_file("/logo/liar.png", b"GIF? no, text", content_type="image/png")
        provider.add_file("/logo/untyped.png", PNG, content_type="text/plain")
        provider.add_file("/icons/guide.jpg", JPEG, content_type="image/jpeg")
        guide = await data.guide()
        await data.guide_channel(guide, "Mapped.uk", "Mapped", icon=provider.url("/icons/guide.jpg"))
        good = await create(admin, {"name": "Good", "logo_url": provider.url("/logo/good.png")})
        fallback = await create(
            admin,
            {
                "name": "Broken",
                "logo_url": provider.url("/logo/page.png"),
                "epg_id": guide.id,
                "epg_channel_id": "Mapped.uk",
            },
        )
        others = [
            await create(admin, {"name": name, "logo_url": provider.url(path)})
            for name, path in (
                ("Big", "/logo/big.png"),
                ("Svg", "/logo/vector.svg"),
                ("Liar", "/logo/liar.png"),
                ("Untyped", "/logo/untyped.png"),
                ("404", "/logo/none.png"),
            )
        ]
        plain = await create(admin, {"name": "No logo"})
        task = await refresh_logos(admin, svc)
        assert task["status"] == "succeeded", task
        assert "2 logos fetched, 6 failed" in task["message"]
        fetched = len(provider.requests)

    anonymous = app.test_client()
    resp = await anonymous.get(f"/tic-api/logos/{good['id']}")
    assert resp.status_code == 200
    assert resp.content_type == "image/png" and await resp.get_data() == PNG
    assert resp.headers["Cache-Control"] == "public, max-age=86400"
    etag = resp.headers["ETag"]
    again = await anonymous.get(f"/tic-api/logos/{good['id']}", headers={"If-None-Match": etag})
    assert again.status_code == 304
    resp = await anonymous.get(f"/tic-api/logos/{fallback['id']}")
    assert resp.status_code == 200 and resp.content_type == "image/jpeg" and await resp.get_data() == JPEG
    for channel in [*others, plain]:
        resp = await anonymous.get(f"/tic-api/logos/{channel['id']}")
        assert resp.status_code == 404 and (await resp.get_json())["code"] == "LOGO_NOT_FOUND"
    assert (await anonymous.get("/tic-api/logos/987654")).status_code == 404
    states = {
        c["name"]: (c["logo_status"], c["logo"])
        for c in (await (await admin.get("/tic-api/channels")).get_json())["items"]
    }
    assert states["Good"] == ("cached", f"/tic-api/logos/{good['id']}")
    assert states["Broken"] == ("fallback", f"/tic-api/logos/{fallback['id']}")
    assert states["Svg"] == ("failed", None) and states["No logo"] == (None, None)
    # Serving never fetches: the provider saw the job's requests and nothing since.
    assert fetched == 8

    # A logo no channel uses any more is forgotten and its file removed.
    resp = await admin.patch(f"/tic-api/channels/{good['id']}", json={"logo_url": None})
    assert resp.status_code == 200
    task = await refresh_logos(admin, svc)
    assert task["status"] == "succeeded"
    assert (await anonymous.get(f"/tic-api/logos/{good['id']}")).status_code == 404
    files = [p for p in (svc.config.data_dir / "logos").glob("*/*") if p.parent.name != "tmp"]
    assert len(files) == 1 and files[0].read_bytes() == JPEG
