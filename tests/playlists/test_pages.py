"""The /playlists admin pages: list with status and errors, forms that keep input, test, upload, browser."""

from __future__ import annotations

import io
import re
from html import unescape
from typing import Any

from werkzeug.datastructures import FileStorage

from tests.conftest import ApiClient
from tests.fakes.upstream import FakeProvider
from tests.playlists.conftest import create_playlist, json_of, playlist, run_import, wait_task


async def page(client: ApiClient, path: str, status: int = 200, **kw: Any) -> str:
    resp = await client.get(path, **kw)
    assert resp.status_code == status, path
    return unescape(await resp.get_data(as_text=True))


async def submit(client: ApiClient, path: str, form: dict[str, str], status: int = 302) -> Any:
    resp = await client.post(path, form=form)
    assert resp.status_code == status, (path, await resp.get_data(as_text=True))
    return resp


def field_error(html: str, name: str) -> str:
    match = re.search(rf'<p class="field-error" id="f-{name}-error">([^<]*)</p>', html)
    assert match, f"no error shown for {name}"
    return match.group(1)


async def test_empty_list_explains_what_to_do(admin: ApiClient) -> None:
    html = await page(admin, "/playlists")
    assert "No playlists yet" in html and 'href="/playlists/new"' in html


async def test_list_shows_status_counts_and_errors_in_red(admin: ApiClient, provider: FakeProvider) -> None:
    provider.add_corpus_file("/a.m3u", "m3u/ipytv__m3u_plus.m3u")
    good = await create_playlist(admin, name="Good one", url=provider.url("/a.m3u"))
    bad = await create_playlist(admin, name="Broken one", url=provider.url("/missing.m3u?password=s3cret"))
    await create_playlist(admin, name="New one", kind="m3u_file")
    await run_import(admin, good["id"])
    await run_import(admin, bad["id"], status="failed")
    html = await page(admin, "/playlists")
    good_row = html[html.index(f'id="playlist-{good["id"]}"') :].split("</tr>")[0]
    assert 'badge-succeeded">imported' in good_row and "4 streams: 4 added" in good_row
    bad_row = html[html.index(f'id="playlist-{bad["id"]}"') :].split("</tr>")[0]
    assert 'badge-failed">failed' in bad_row
    assert re.search(r'<span class="error-text">The provider has nothing at [^<]*HTTP 404', bad_row)
    assert "s3cret" not in html
    assert "never imported" in html


async def test_add_form_keeps_input_and_shows_errors_next_to_fields(admin: ApiClient) -> None:
    form = {
        "name": "My list",
        "kind": "xtream",
        "xc_server": "ftp://nope",
        "xc_username": "",
        "xc_password": "typed-secret",
        "refresh_interval_minutes": "soon",
        "headers": "Referer: https://x/\nnot a header",
        "enabled": "true",
    }
    resp = await submit(admin, "/playlists/new", form, status=400)
    html = unescape(await resp.get_data(as_text=True))
    assert field_error(html, "xc_server") == "Not an http(s) address such as http://provider.example:8080"
    assert field_error(html, "xc_username") == "Enter the username the provider gave you"
    assert field_error(html, "refresh_interval_minutes") == "Must be a whole number, or empty"
    assert field_error(html, "headers") == "Line 2 is not 'Name: value'"
    assert 'value="My list"' in html and 'value="ftp://nope"' in html and 'value="soon"' in html
    assert "Referer: https://x/\nnot a header" in html
    assert "typed-secret" not in html
    assert (await json_of(await admin.get("/tic-api/playlists"), 200))["total"] == 0


async def test_add_form_creates_and_starts_the_first_import(admin: ApiClient, provider: FakeProvider) -> None:
    provider.add_corpus_file("/a.m3u", "m3u/ipytv__m3u_plus.m3u")
    form = {"name": "Provider", "kind": "m3u_url", "url": provider.url("/a.m3u"), "enabled": "true",
            "headers": "Referer: https://provider.example/", "refresh_interval_minutes": "720"}  # fmt: skip
    resp = await submit(admin, "/playlists/new", form)
    location = resp.headers["Location"]
    match = re.fullmatch(r"/playlists\?task=(\d+)&playlist=(\d+)", location)
    assert match
    task = await wait_task(admin, int(match.group(1)))
    assert task["status"] == "succeeded"
    created = await playlist(admin, int(match.group(2)))
    assert created["headers"] == {"Referer": "https://provider.example/"}
    assert (created["refresh_interval_minutes"], created["stream_count"]) == (720, 4)
    # The list page then follows that task with a progress bar.
    html = await page(admin, location)
    assert f'data-task="{match.group(1)}"' in html and "<progress" in html


async def test_edit_keeps_the_password_and_duplicate_names_are_refused(admin: ApiClient, svc: Any) -> None:
    await create_playlist(admin, name="Taken", kind="m3u_file")
    source = await create_playlist(
        admin, name="Mine", kind="xtream", xc_server="http://p:8080", xc_username="u", xc_password="pw1"
    )
    html = await page(admin, f"/playlists/{source['id']}")
    assert "A password is stored; leave this empty to keep it." in html and "pw1" not in html
    form = {
        "name": "Taken",
        "kind": "xtream",
        "xc_server": "http://p:8080",
        "xc_username": "u2",
        "enabled": "true",
    }
    resp = await submit(admin, f"/playlists/{source['id']}", form, status=400)
    assert (
        field_error(unescape(await resp.get_data(as_text=True)), "name")
        == "Another playlist already has this name"
    )
    await submit(admin, f"/playlists/{source['id']}", {**form, "name": "Renamed"})
    after = await playlist(admin, source["id"])
    assert (after["name"], after["xc_username"], after["xc_password"], after["enabled"]) == (
        "Renamed",
        "u2",
        "********",
        True,
    )
    await submit(admin, f"/playlists/{source['id']}", {**form, "name": "Renamed"} | {"enabled": ""})
    assert (await playlist(admin, source["id"]))["enabled"] is False


async def test_test_connection_button_without_javascript(admin: ApiClient, provider: FakeProvider) -> None:
    provider.add_corpus_file("/a.m3u", "m3u/ipytv__m3u_plus.m3u")
    provider.fault("/login", "html_login")
    ok = await submit(
        admin,
        "/playlists/new",
        {"action": "test", "name": "x", "kind": "m3u_url", "url": provider.url("/a.m3u")},
        status=200,
    )
    html = unescape(await ok.get_data(as_text=True))
    assert "Connection works." in html and "it looks like an M3U playlist" in html
    bad = await submit(
        admin,
        "/playlists/new",
        {"action": "test", "name": "x", "kind": "m3u_url", "url": provider.url("/login")},
        status=200,
    )
    html = unescape(await bad.get_data(as_text=True))
    assert "Connection test failed." in html and "an HTML page (a login or error page?)" in html
    assert 'value="' + provider.url("/login") + '"' in html  # nothing typed is lost
    assert (await json_of(await admin.get("/tic-api/playlists"), 200))["total"] == 0


async def test_upload_page_form(admin: ApiClient) -> None:
    source = await create_playlist(admin, name="File", kind="m3u_file")
    html = await page(admin, f"/playlists/{source['id']}")
    assert 'enctype="multipart/form-data"' in html and "No file yet" in html
    bad = await admin.post(
        f"/playlists/{source['id']}/upload",
        files={"file": FileStorage(io.BytesIO(b"<html>login</html>"), filename="x.m3u")},
    )
    assert bad.status_code == 400
    assert "the provider returned an HTML page" in field_error(
        unescape(await bad.get_data(as_text=True)), "file"
    )
    good = await admin.post(
        f"/playlists/{source['id']}/upload",
        files={"file": FileStorage(io.BytesIO(b"#EXTM3U\n#EXTINF:-1,One\nhttp://h/1\n"), filename="x.m3u")},
    )
    assert good.status_code == 302
    task_id = int(re.search(r"task=(\d+)", good.headers["Location"]).group(1))
    assert (await wait_task(admin, task_id))["status"] == "succeeded"
    assert (await playlist(admin, source["id"]))["stream_count"] == 1


async def test_import_now_without_javascript_and_report_section(
    admin: ApiClient, provider: FakeProvider
) -> None:
    provider.add_corpus_file("/r.m3u", "m3u/fanmingming-live__radio_index.m3u")
    source = await create_playlist(admin, url=provider.url("/r.m3u"))
    resp = await submit(admin, f"/playlists/{source['id']}/import", {})
    task_id = int(re.search(r"task=(\d+)", resp.headers["Location"]).group(1))
    assert (await wait_task(admin, task_id))["status"] == "succeeded"
    html = await page(admin, f"/playlists/{source['id']}")
    assert "450 streams: 450 added" in html and "3 entries skipped" in html
    assert "<td>376</td><td>#EXTINF has no URL (next #EXTINF is on line 377)</td>" in html


async def test_stream_browser_search_group_and_paging(admin: ApiClient, provider: FakeProvider) -> None:
    provider.add_corpus_file("/org.m3u", "m3u/ipytv__iptv-org-index-2022.m3u")
    source = await create_playlist(admin, name="Org", url=provider.url("/org.m3u"))
    await run_import(admin, source["id"])
    html = await page(admin, f"/playlists/{source['id']}/streams")
    assert "Streams 1–100 of 4601" in html and 'rel="next"' in html and 'rel="prev"' not in html
    assert "(no group) (3028)" in html
    html = await page(admin, f"/playlists/{source['id']}/streams", query_string={"offset": "4600"})
    assert "Streams 4601–4601 of 4601" in html and 'rel="prev"' in html
    html = await page(admin, f"/playlists/{source['id']}/streams", query_string={"q": "CNN", "group": "News"})
    assert re.search(r"Streams 1–\d+ of \d+", html) and "CNN" in html
    html = await page(admin, "/playlists/streams", query_string={"q": "zzzz-nothing"})
    assert "No streams match." in html
    await page(admin, "/playlists/999/streams", status=404)


async def test_pages_are_for_admins_only(streamer: ApiClient, admin: ApiClient) -> None:
    for path in ("/playlists", "/playlists/new", "/playlists/streams"):
        resp = await streamer.get(path)
        assert resp.status_code == 403, path
