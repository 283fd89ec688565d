"""The /channels pages: table, edit form with server-side errors next to fields, add and match pages."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from tests.channels.conftest import Data, create, listing
from tests.conftest import ApiClient


async def page(admin: ApiClient, path: str, expect: int = 200) -> str:
    resp = await admin.get(path)
    assert resp.status_code == expect, path
    return str(await resp.get_data(as_text=True))


async def test_lineup_table_escapes_names_and_pages(admin: ApiClient, data: Data) -> None:
    assert "Your lineup is empty" in await page(admin, "/channels")
    channels = [
        {"guide_id": "first", "name": '<script>alert("x")</script> & Co', "number": 1, "tags": ["News"]}
    ]
    channels += [{"guide_id": f"c{n}", "name": f"Channel {n}", "number": n} for n in range(2, 60)]
    resp = await admin.post(
        "/tic-api/channels/import", json={"format": "tic-lineup", "version": 1, "channels": channels}
    )
    assert resp.status_code == 200
    html = await page(admin, "/channels?limit=50&sort=number")
    assert "<script>alert" not in html and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; Co" in html
    assert "1–50 of 59" in html and 'rel="next"' in html
    assert "Channel 49" in html and "Channel 51" not in html
    html = await page(admin, "/channels?limit=50&offset=50")
    assert "Channel 51" in html and "Channel 49" not in html
    assert "No channel matches" in await page(admin, "/channels?q=nothing-like-this")
    html = await page(admin, "/channels?tag=News")
    assert "Channel 2<" not in html and "&amp; Co" in html


async def test_failed_save_keeps_everything_typed_and_shows_errors_by_the_fields(
    admin: ApiClient, data: Data
) -> None:
    playlist = await data.playlist()
    stream = await data.stream(playlist, "Stream One")
    await create(admin, {"name": "Taken", "number": 5})
    form = {
        "name": "   ",
        "number": "5",
        "enabled": "true",
        "tags": "Kids, Fun",
        "logo_url": "http://logos.invalid/a.png",
        "guide_offset_minutes": "15",
        "source_ref": f"stream:{stream.id}",
        "source_label": "Stream One",
        "source_enabled": "yes",
        "new_url": "rtsp://cam.invalid/1",
    }
    resp = await admin.post("/channels/new", form=form)
    html = await resp.get_data(as_text=True)
    assert resp.status_code == 400
    assert 'id="f-name-error"' in html and 'aria-invalid="true"' in html
    for kept in (
        'value="Kids, Fun"',
        'value="http://logos.invalid/a.png"',
        'value="15"',
        "Stream One",
        "rtsp://cam.invalid/1",
    ):
        assert kept in html, kept
    resp = await admin.post("/channels/new", form=form | {"name": "Fun TV"})
    html = await resp.get_data(as_text=True)
    assert resp.status_code == 409 and 'id="f-number-error"' in html and 'value="Fun TV"' in html
    resp = await admin.post("/channels/new", form=form | {"name": "Fun TV", "number": "abc"})
    assert resp.status_code == 400 and "a whole number" in await resp.get_data(as_text=True)
    resp = await admin.post("/channels/new", form=form | {"name": "Fun TV", "shift": "yes"})
    assert resp.status_code == 302
    channels = {c["name"]: c for c in (await listing(admin))["items"]}
    made = channels["Fun TV"]
    assert (made["number"], channels["Taken"]["number"]) == (5, 6)
    assert made["tags"] == ["Fun", "Kids"] and made["guide_offset_minutes"] == 15
    assert [(s["kind"], s["stream_id"], s["url"]) for s in made["sources"]] == [
        ("stream", stream.id, None),
        ("url", None, "rtsp://cam.invalid/1"),
    ]


async def test_edit_reorders_sources_and_deletes_with_the_form(admin: ApiClient, data: Data) -> None:
    made = await create(
        admin,
        {"name": "Two Sources", "sources": [{"url": "http://a.invalid/1"}, {"url": "http://a.invalid/2"}]},
    )
    first, second = made["sources"]
    html = await page(admin, f"/channels/{made['id']}")
    assert made["guide_id"] in html and "http://a.invalid/2" in html
    form = {
        "name": "Two Sources",
        "number": "",
        "enabled": "true",
        "tags": "",
        "source_ref": [f"id:{second['id']}", f"id:{first['id']}"],
        "source_label": ["b", "a"],
        "source_enabled": ["yes", "no"],
    }
    # Repeated fields, as a browser posts them.
    body = urlencode(form, doseq=True).encode()
    resp = await admin.post(
        f"/channels/{made['id']}", data=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert resp.status_code == 302, await resp.get_data(as_text=True)
    after = await (await admin.get(f"/tic-api/channels/{made['id']}")).get_json()
    assert [(s["id"], s["enabled"]) for s in after["sources"]] == [(second["id"], True), (first["id"], False)]
    assert after["number"] == made["number"] and after["enabled"] is True
    resp = await admin.post(f"/channels/{made['id']}/delete")
    assert resp.status_code == 302
    assert (await admin.get(f"/tic-api/channels/{made['id']}")).status_code == 404
    await page(admin, f"/channels/{made['id']}", expect=404)


async def test_add_and_match_pages(admin: ApiClient, data: Data) -> None:
    assert "No playlists yet" in await page(admin, "/channels/add")
    playlist = await data.playlist("My IPTV")
    await data.stream(playlist, "Kids & <Teens>", group_title="Kids")
    await data.stream(playlist, "News 24", group_title="News")
    html = await page(admin, "/channels/add")
    assert "Kids &amp; &lt;Teens&gt;" in html and "News 24" in html and "(1)" in html
    html = await page(admin, "/channels/add?group=News")
    assert (
        "News 24" in html and "Teens" not in html.split("data-stream-table")[1].split("data-group-table")[0]
    )
    assert "No guides yet" in await page(admin, "/channels/match")
    await data.guide()
    html = await page(admin, "/channels/match?ids=1,2")
    assert "Matching the 2 selected channels" in html


async def test_pages_need_an_admin_and_a_csrf_token(app: Any, admin: ApiClient, streamer: ApiClient) -> None:
    anonymous = app.test_client()
    resp = await anonymous.get("/channels")
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/login")
    assert (await streamer.get("/channels")).status_code == 403
    resp = await admin.client.post("/channels/new", form={"name": "No token"})
    assert resp.status_code == 403
    assert (await listing(admin))["total"] == 0
