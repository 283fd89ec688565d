"""The EPG API: sources, uploads, queueing, follow-ups, the guide grid, search, and the atomic swap."""

from __future__ import annotations

import asyncio
import gzip
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from backend.channels.models import Channel
from backend.db import utcnow
from backend.epg.models import EpgChannel, Programme
from backend.tasks.broker import JobContext
from backend.tasks.registry import JobSpec
from tests.conftest import CORPUS, ApiClient
from tests.epg.conftest import FINAL, WIDE, create_source, get_source, run_import, wait_task
from tests.fakes.upstream import FakeProvider, generate_corpus

SMALL = (CORPUS / "xmltv" / "iptv-org-epg__x1co.com.br.xml").read_bytes()

# A hand-made guide for the grid: times in UTC, one programme running for two months.
GRID = b"""<?xml version="1.0" encoding="UTF-8"?>
<tv>
  <channel id="a.ch"><display-name>A</display-name></channel>
  <channel id="b.ch"><display-name>B</display-name></channel>
  <programme start="20260101090000 +0000" stop="20260101100000 +0000" channel="a.ch"><title>Morning News</title></programme>
  <programme start="20260101100000 +0000" stop="20260101113000 +0000" channel="a.ch"><title>Film</title><new/></programme>
  <programme start="20260101113000 +0000" stop="20260101120000 +0000" channel="a.ch"><title>Noon News</title></programme>
  <programme start="20251201000000 +0000" stop="20260201000000 +0000" channel="b.ch"><title>Marathon</title></programme>
  <programme start="20260101060000 +0100" stop="20260101070000 +0100" channel="c.ch"><title>Evening News</title></programme>
</tv>
"""


async def add_channel(svc: Any, number: int, source_id: int | None, epg_id: str | None, **fields: Any) -> int:
    now = utcnow()
    async with svc.db.transaction() as session:
        channel = Channel(
            name=fields.pop("name", f"Channel {number}"),
            number=number,
            enabled=fields.pop("enabled", True),
            epg_source_id=source_id,
            epg_channel_id=epg_id,
            guide_offset_minutes=fields.pop("offset", 0),
            guide_id=f"guide-{number}",
            created_at=now,
            updated_at=now,
        )
        session.add(channel)
        await session.flush()
        return channel.id


# --- sources ---------------------------------------------------------------------------------------


async def test_source_crud_and_validation(admin: ApiClient, quiet: Any) -> None:
    bad = await admin.post(
        "/tic-api/epgs", json={"name": " ", "kind": "xmltv_url", "url": "ftp://x/guide.xml", "past_days": -1}
    )
    assert bad.status_code == 400
    body = await bad.get_json()
    assert body["code"] == "EPG_INVALID" and set(body["fields"]) == {"name", "url", "past_days"}
    missing = await (await admin.post("/tic-api/epgs", json={"name": "No URL"})).get_json()
    assert missing["fields"] == {"url": "a guide URL is required"}
    unknown = await admin.post("/tic-api/epgs", json={"name": "X", "url": "http://h/g.xml", "colour": "red"})
    assert unknown.status_code == 400 and "colour" in (await unknown.get_json())["fields"]
    wrong_type = await admin.post(
        "/tic-api/epgs", json={"name": "X", "url": "http://h/g.xml", "past_days": "2"}
    )
    assert wrong_type.status_code == 400

    created = await create_source(admin, name="Sky", url="http://h/g.xml.gz", preferred_language="en_NZ")
    assert created["past_days"] == 1 and created["future_days"] == 14 and created["programme_count"] == 0
    assert created["last_import_status"] is None and created["created_at"].endswith("Z")
    clash = await admin.post("/tic-api/epgs", json={"name": "sky", "url": "http://h/other.xml"})
    assert clash.status_code == 409 and (await clash.get_json())["code"] == "EPG_NAME_TAKEN"
    upload = await create_source(admin, name="File", kind="xmltv_file", url="http://ignored/")
    assert upload["url"] is None

    patched = await admin.patch(f"/tic-api/epgs/{created['id']}", json={"future_days": 7, "enabled": False})
    assert patched.status_code == 200
    assert (await patched.get_json())["future_days"] == 7
    rejected = await admin.patch(f"/tic-api/epgs/{created['id']}", json={"refresh_interval_minutes": 1})
    assert rejected.status_code == 400 and "refresh_interval_minutes" in (await rejected.get_json())["fields"]
    listed = await (await admin.get("/tic-api/epgs?limit=1")).get_json()
    assert listed["total"] == 2 and len(listed["items"]) == 1

    assert (await admin.get("/tic-api/epgs/999")).status_code == 404
    assert (await admin.post("/tic-api/epgs/update/999")).status_code == 404
    assert (await admin.delete(f"/tic-api/epgs/{upload['id']}")).status_code == 204
    assert (await admin.get(f"/tic-api/epgs/{upload['id']}")).status_code == 404


async def test_delete_removes_the_guide_and_unlinks_channels(
    admin: ApiClient, provider: FakeProvider, quiet: Any
) -> None:
    provider.add_file("/g.xml", SMALL)
    source = await create_source(admin, url=provider.url("/g.xml"), **WIDE)
    await run_import(admin, source["id"])
    channel_id = await add_channel(quiet, 1, source["id"], "nickonline.br")

    assert (await admin.delete(f"/tic-api/epgs/{source['id']}")).status_code == 204

    async with quiet.db.session() as session:
        assert await session.scalar(select(func.count()).select_from(Programme)) == 0
        assert await session.scalar(select(func.count()).select_from(EpgChannel)) == 0
        channel = await session.get(Channel, channel_id)
        assert channel is not None and channel.epg_source_id is None


async def test_only_admins_manage_sources_and_users_may_browse(
    admin: ApiClient, streamer: ApiClient, client: Any, quiet: Any
) -> None:
    assert (await streamer.get("/tic-api/epgs")).status_code == 403
    assert (await streamer.post("/tic-api/epgs", json={"name": "x", "url": "http://h/"})).status_code == 403
    assert (await streamer.get("/tic-api/guide")).status_code == 200
    assert (await streamer.get("/tic-api/programmes?q=news")).status_code == 200
    assert (await client.get("/tic-api/guide")).status_code == 401
    # A logged-in browser without the CSRF header cannot change anything.
    no_csrf = await admin.client.post("/tic-api/epgs", json={"name": "x", "url": "http://h/g.xml"})
    assert no_csrf.status_code == 403


async def test_an_import_is_queued_once_per_source(
    admin: ApiClient, provider: FakeProvider, quiet: Any
) -> None:
    provider.add_file("/g.xml", SMALL)
    source = await create_source(admin, url=provider.url("/g.xml"), **WIDE)
    await quiet.broker.pause()
    first = await (await admin.post(f"/tic-api/epgs/update/{source['id']}")).get_json()
    second = await (await admin.post(f"/tic-api/epgs/update/{source['id']}")).get_json()
    assert first["task_id"] == second["task_id"]
    task = await (await admin.get(f"/tic-api/tasks/{first['task_id']}")).get_json()
    assert (
        task["key"] == f"epg:{source['id']}" and task["name"] == "refresh_epg" and task["status"] == "queued"
    )
    await quiet.broker.resume()
    done = await wait_task(admin, first["task_id"])
    assert done["status"] == "succeeded" and done["progress"] == 100


async def test_follow_up_jobs_are_queued_after_a_change(
    admin: ApiClient, provider: FakeProvider, svc: Any
) -> None:
    ran: list[str] = []

    def recorder(name: str) -> JobSpec:
        async def handler(ctx: JobContext) -> str:
            ran.append(f"{name} by {ctx.broker.current.name if ctx.broker.current else '?'}")
            return "recorded"

        return JobSpec(name=name, handler=handler)

    svc.broker.register(recorder("build_xmltv"))
    svc.broker.register(recorder("apply_dvr_rules"))
    provider.add_file("/g.xml", SMALL)
    source = await create_source(admin, url=provider.url("/g.xml"), **WIDE)

    await run_import(admin, source["id"])
    await wait_tasks_idle(admin)
    assert sorted(ran) == ["apply_dvr_rules by apply_dvr_rules", "build_xmltv by build_xmltv"]

    ran.clear()
    await run_import(admin, source["id"], force=True)
    await wait_tasks_idle(admin)
    assert ran == [], "an import that changed nothing queues nothing"


async def wait_tasks_idle(admin: ApiClient) -> None:
    for _ in range(100):
        body = await (await admin.get("/tic-api/tasks?limit=1")).get_json()
        if not body["queue"] and body["current"] is None:
            return
        await admin.get(f"/tic-api/tasks?limit=1&wait=1&since={body['version']}")
    raise AssertionError("tasks did not settle")


async def test_due_sources_are_queued_by_the_periodic_job(
    admin: ApiClient, provider: FakeProvider, quiet: Any
) -> None:
    provider.add_file("/g.xml", SMALL)
    due = await create_source(
        admin, name="Due", url=provider.url("/g.xml"), refresh_interval_minutes=60, **WIDE
    )
    await create_source(admin, name="Off", url=provider.url("/g.xml"), enabled=False, **WIDE)
    await create_source(
        admin, name="Manual", url=provider.url("/g.xml"), refresh_interval_minutes=None, **WIDE
    )

    run = await quiet.broker.enqueue("refresh_due_epgs")
    finished = await wait_task(admin, run.task_id)
    assert finished["message"] == "Queued 1 EPG refresh(es)"
    await wait_tasks_idle(admin)
    imports = (await (await admin.get("/tic-api/tasks?name=refresh_epg")).get_json())["items"]
    assert [t["key"] for t in imports] == [f"epg:{due['id']}"] and imports[0]["status"] == "succeeded"
    # Imported just now, so not due again.
    again = await wait_task(admin, (await quiet.broker.enqueue("refresh_due_epgs")).task_id)
    assert again["message"] == "No EPG is due for a refresh"


# --- uploads ---------------------------------------------------------------------------------------


async def test_upload_multipart_or_raw_body_and_import(admin: ApiClient, quiet: Any, tmp_path: Path) -> None:
    source = await create_source(admin, name="File", kind="xmltv_file", **WIDE)
    never = await run_import(admin, source["id"])
    assert never["status"] == "failed" and "[EPG_NO_FILE]" in never["error"]

    from quart.datastructures import FileStorage

    gz = gzip.compress(SMALL)
    resp = await admin.post(
        f"/tic-api/epgs/{source['id']}/upload",
        files={"file": FileStorage(stream=__import__("io").BytesIO(gz), filename="nick.xml.gz")},
    )
    assert resp.status_code == 202, await resp.get_data(as_text=True)
    task = await wait_task(admin, (await resp.get_json())["task_id"])
    assert task["status"] == "succeeded", task["error"]
    after = await get_source(admin, source["id"])
    assert after["upload_name"] == "nick.xml.gz" and after["programme_count"] == 91

    raw = SMALL.replace(b"Bob Esponja", b"Patrick")
    resp = await admin.post(f"/tic-api/epgs/{source['id']}/upload?filename=raw.xml", data=raw)
    assert resp.status_code == 202
    assert (await wait_task(admin, (await resp.get_json())["task_id"]))["status"] == "succeeded"
    assert (await get_source(admin, source["id"]))["upload_name"] == "raw.xml"

    html = await admin.post(
        f"/tic-api/epgs/{source['id']}/upload", data=b"<!DOCTYPE html><html><body>Login</body></html>"
    )
    assert html.status_code == 400 and (await html.get_json())["code"] == "XMLTV_NOT_XMLTV"
    url_kind = await create_source(admin, name="URL", url="http://h/g.xml")
    wrong = await admin.post(f"/tic-api/epgs/{url_kind['id']}/upload", data=SMALL)
    assert wrong.status_code == 409
    # The last good file is still the one in use.
    assert (await get_source(admin, source["id"]))["programme_count"] == 91


# --- the guide and search --------------------------------------------------------------------------


async def test_guide_grid_for_mapped_channels(admin: ApiClient, provider: FakeProvider, quiet: Any) -> None:
    provider.add_file("/grid.xml", GRID)
    source = await create_source(admin, url=provider.url("/grid.xml"), **WIDE)
    assert (await run_import(admin, source["id"]))["status"] == "succeeded"
    sid = source["id"]
    a = await add_channel(quiet, 101, sid, "a.ch", name="Alpha")
    b = await add_channel(quiet, 102, sid, "b.ch", name="Bravo", offset=60)
    await add_channel(quiet, 103, None, None, name="Unmapped")
    off = await add_channel(quiet, 104, sid, "a.ch", name="Off", enabled=False)

    grid = await (
        await admin.get("/tic-api/guide?start=2026-01-01T10:00:00Z&end=2026-01-01T11:45:00Z")
    ).get_json()

    assert grid["start"] == "2026-01-01T10:00:00Z" and grid["end"] == "2026-01-01T11:45:00Z"
    assert [c["id"] for c in grid["channels"]] == [a, b]
    alpha, bravo = grid["channels"]
    assert [(p["title"], p["start"], p["stop"]) for p in alpha["programmes"]] == [
        ("Film", "2026-01-01T10:00:00Z", "2026-01-01T11:30:00Z"),
        ("Noon News", "2026-01-01T11:30:00Z", "2026-01-01T12:00:00Z"),
    ]
    assert alpha["programmes"][0]["flags"] == ["new"]
    # A programme that began a month earlier still shows; the channel's offset moves it an hour.
    assert [(p["title"], p["start"]) for p in bravo["programmes"]] == [("Marathon", "2025-12-01T01:00:00Z")]

    chosen = await (
        await admin.get(f"/tic-api/guide?start=2026-01-01T09:00:00Z&end=2026-01-01T09:30:00Z&channels={off}")
    ).get_json()
    assert [c["name"] for c in chosen["channels"]] == ["Off"]
    assert [p["title"] for p in chosen["channels"][0]["programmes"]] == ["Morning News"]

    for query, field in (
        ("start=2026-01-01T10:00:00Z&end=2026-01-01T09:00:00Z", "end"),
        ("start=2026-01-01T10:00:00Z&end=2026-01-20T09:00:00Z", "end"),
        ("start=2026-01-01T10:00:00", "start"),
        ("start=yesterday", "start"),
        ("channels=a,b", "channels"),
    ):
        resp = await admin.get(f"/tic-api/guide?{query}")
        assert resp.status_code == 400 and field in (await resp.get_json())["fields"], query


async def test_programme_search_by_title(admin: ApiClient, provider: FakeProvider, quiet: Any) -> None:
    provider.add_file("/grid.xml", GRID)
    source = await create_source(admin, url=provider.url("/grid.xml"), **WIDE)
    await run_import(admin, source["id"])
    a = await add_channel(quiet, 7, source["id"], "a.ch")

    found = await (await admin.get("/tic-api/programmes?q=news&limit=2")).get_json()

    assert found["total"] == 3 and [p["title"] for p in found["items"]] == ["Evening News", "Morning News"]
    # "Evening News" is at 06:00 +0100, so 05:00 UTC; its channel is not in the lineup.
    assert found["items"][0]["start"] == "2026-01-01T05:00:00Z" and found["items"][0]["channel_ids"] == []
    assert found["items"][1]["channel_ids"] == [a]
    rest = await (await admin.get("/tic-api/programmes?q=NEWS&limit=2&offset=2")).get_json()
    assert [p["title"] for p in rest["items"]] == ["Noon News"]
    windowed = await (
        await admin.get("/tic-api/programmes?q=news&start=2026-01-01T09:30:00Z&end=2026-01-01T11:45:00Z")
    ).get_json()
    assert [p["title"] for p in windowed["items"]] == ["Morning News", "Noon News"]
    assert (await admin.get("/tic-api/programmes?q=100%25")).status_code == 200
    assert (await admin.get("/tic-api/programmes")).status_code == 400


# --- the atomic swap -------------------------------------------------------------------------------


async def test_guide_stays_whole_while_an_import_runs_and_after_one_fails(
    admin: ApiClient, provider: FakeProvider, quiet: Any, tmp_path: Path
) -> None:
    provider.add_file("/g.xml", SMALL)
    source = await create_source(admin, url=provider.url("/g.xml"), **WIDE)
    await run_import(admin, source["id"])
    big = await generate_corpus("xmltv", tmp_path / "big.xml", channels=200, days=4, port=provider.port)
    provider.add_file("/g.xml", big, content_type="application/xml")

    counts, progress_seen = await watch_import(admin, quiet, source["id"])

    new_total = (await get_source(admin, source["id"]))["programme_count"]
    assert new_total > 10_000
    # Every look during the import saw the whole old guide, or (once committed) the whole new one.
    assert set(counts) <= {91, new_total}, sorted(set(counts))
    assert counts[0] == 91 and counts[-1] == new_total
    assert any(p > 25 for p in progress_seen), "no look happened while the worker was loading"

    broken = big.read_bytes()
    cut = broken.index(b"<programme", len(broken) // 2)
    provider.add_file(
        "/g.xml", broken[:cut] + b"<programme start='x'><title>oops</programme>\n" + broken[cut:]
    )
    counts, _ = await watch_import(admin, quiet, source["id"], expect="failed")
    assert set(counts) == {new_total}
    assert (await get_source(admin, source["id"]))["programme_count"] == new_total


async def watch_import(
    admin: ApiClient, svc: Any, source_id: int, expect: str = "succeeded"
) -> tuple[list[int], list[int]]:
    """Queue an import and count the source's programmes in the database until it ends."""
    resp = await admin.post(f"/tic-api/epgs/update/{source_id}?force=true")
    task_id = (await resp.get_json())["task_id"]
    counts: list[int] = []
    progress: list[int] = []
    while True:
        task = await (await admin.get(f"/tic-api/tasks/{task_id}")).get_json()
        async with svc.db.session() as session:
            counts.append(await session.scalar(select(func.count()).where(Programme.source_id == source_id)))
        if task["status"] in FINAL:
            assert task["status"] == expect, task["error"]
            return counts, progress
        progress.append(task["progress"])
        await asyncio.sleep(0.02)
