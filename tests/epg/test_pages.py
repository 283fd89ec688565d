"""The /epgs admin pages: status with errors, add/edit keeping input on errors, import now, channels."""

from __future__ import annotations

from typing import Any

from tests.conftest import CORPUS, ApiClient
from tests.epg.conftest import WIDE, create_source, get_source, run_import, wait_task
from tests.fakes.upstream import FakeProvider

SMALL = (CORPUS / "xmltv" / "iptv-org-epg__x1co.com.br.xml").read_bytes()


async def page(client: ApiClient, path: str, status: int = 200) -> str:
    resp = await client.get(path)
    assert resp.status_code == status, path
    return await resp.get_data(as_text=True)


async def test_list_shows_each_source_with_its_status_and_error(
    admin: ApiClient, provider: FakeProvider, quiet: Any
) -> None:
    provider.add_file("/good.xml", SMALL)
    provider.fault("/bad.xml", "html_login")
    good = await create_source(admin, name="Good guide", url=provider.url("/good.xml"), **WIDE)
    bad = await create_source(admin, name="Bad guide", url=provider.url("/bad.xml"), **WIDE)
    await run_import(admin, good["id"])
    await run_import(admin, bad["id"])

    html = await page(admin, "/epgs")

    good_row = html.split(f'id="epg-{good["id"]}"', 1)[1].split("</tr>", 1)[0]
    bad_row = html.split(f'id="epg-{bad["id"]}"', 1)[1].split("</tr>", 1)[0]
    assert "badge-succeeded" in good_row and ">91<" in good_row and ">1<" in good_row
    assert "badge-failed" in bad_row and 'class="error-text"' in bad_row
    assert "Expected an XMLTV guide but got an HTML page" in bad_row
    assert f'href="/epgs/{good["id"]}/channels"' in good_row


async def test_add_form_keeps_what_was_typed_when_it_has_errors(admin: ApiClient, quiet: Any) -> None:
    form = {
        "csrf_token": admin.csrf,
        "name": "My guide",
        "kind": "xmltv_url",
        "url": "ftp://example.org/guide.xml",
        "past_days": "two",
        "future_days": "14",
        "preferred_language": "fr",
        "user_agent": "Kodi/20",
        "enabled": "true",
    }

    resp = await admin.post("/epgs/new", form=form)

    assert resp.status_code == 400
    html = await resp.get_data(as_text=True)
    assert "Nothing was saved" in html
    assert 'value="My guide"' in html and 'value="ftp://example.org/guide.xml"' in html
    assert 'value="Kodi/20"' in html and 'value="fr"' in html and 'value="two"' in html
    assert html.count('class="field-error"') == 1 and "expected a whole number" in html
    resp = await admin.post("/epgs/new", form={**form, "past_days": "2"})
    assert resp.status_code == 400
    assert "must be an http:// or https:// URL" in await resp.get_data(as_text=True)
    assert (await (await admin.get("/tic-api/epgs")).get_json())["total"] == 0


async def test_add_then_import_now_then_edit(admin: ApiClient, provider: FakeProvider, quiet: Any) -> None:
    provider.add_file("/g.xml", SMALL)
    await quiet.broker.pause()
    form = {
        "csrf_token": admin.csrf,
        "name": "Nick",
        "kind": "xmltv_url",
        "url": provider.url("/g.xml"),
        "past_days": "36500",
        "future_days": "36500",
        "refresh_interval_minutes": "",
        "enabled": "true",
    }

    resp = await admin.post("/epgs/new", form=form)

    assert resp.status_code == 302 and resp.headers["Location"].endswith("/epgs")
    [source] = (await (await admin.get("/tic-api/epgs")).get_json())["items"]
    assert source["refresh_interval_minutes"] is None
    html = await page(admin, "/epgs")
    # The queued import is shown with a live progress bar (followed by tic.js).
    task = (await (await admin.get("/tic-api/tasks")).get_json())["queue"][0]
    assert f'data-task-progress="{task["id"]}"' in html and "disabled" in html
    await quiet.broker.resume()
    assert (await wait_task(admin, task["id"]))["status"] == "succeeded"

    resp = await admin.post(f"/epgs/{source['id']}/import", form={"csrf_token": admin.csrf, "force": "true"})
    assert resp.status_code == 302
    tasks = (await (await admin.get("/tic-api/tasks?name=refresh_epg")).get_json())["items"]
    assert len(tasks) == 2
    await wait_task(admin, tasks[0]["id"])

    edit = await page(admin, f"/epgs/{source['id']}")
    assert 'value="Nick"' in edit and "Last import" in edit and "91 programmes kept" in edit
    resp = await admin.post(f"/epgs/{source['id']}", form={**form, "name": "Nick BR", "future_days": "0"})
    assert resp.status_code == 400 and 'value="Nick BR"' in await resp.get_data(as_text=True)
    resp = await admin.post(f"/epgs/{source['id']}", form={**form, "name": "Nick BR"})
    assert resp.status_code == 302
    assert (await get_source(admin, source["id"]))["name"] == "Nick BR"


async def test_channel_list_and_delete(admin: ApiClient, provider: FakeProvider, quiet: Any) -> None:
    provider.add_corpus_file("/pbs.xml", "xmltv/i-mjh-nz__PBS_all.xml")
    source = await create_source(admin, url=provider.url("/pbs.xml"), **WIDE)
    await run_import(admin, source["id"])

    html = await page(admin, f"/epgs/{source['id']}/channels?q=WTTW")

    assert "<code>WTTW</code>" in html and ">1 channel(s).</p>" in html
    full = await page(admin, f"/epgs/{source['id']}/channels?limit=50")
    assert "146 channel(s)" in full and 'rel="next"' in full

    resp = await admin.post(f"/epgs/{source['id']}/delete", form={"csrf_token": admin.csrf})
    assert resp.status_code == 302
    assert (await admin.get(f"/tic-api/epgs/{source['id']}")).status_code == 404


async def test_streamers_cannot_open_the_epg_pages(streamer: ApiClient, quiet: Any) -> None:
    resp = await streamer.get("/epgs")
    assert resp.status_code in (302, 403)
