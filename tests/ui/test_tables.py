"""Long lists page on the server: the task history and the stream browser keep filters and page in the URL."""

from __future__ import annotations

import html as htmllib
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, update

from backend.playlists.models import Stream
from backend.tasks.models import FAILED, SUCCEEDED, TaskRun
from tests.conftest import ApiClient
from tests.ui.seed import seed_lineup

HISTORY_ROW = re.compile(r'<tr class="status-(\w+)"><td>(\d+)</td><td>(\w+)</td>')
STREAM_ROW = re.compile(r"<td>(Channel \d+)</td>")


async def text(resp: Any) -> str:
    assert resp.status_code == 200, await resp.get_data(as_text=True)
    return str(await resp.get_data(as_text=True))


def links(page: str, rel: str) -> list[str]:
    return [htmllib.unescape(h) for h in re.findall(rf'href="([^"]+)" rel="{rel}"', page)]


async def seed_history(svc: Any, count: int) -> list[int]:
    """Finished runs: every third failed, names alternating between two jobs; returns their ids, oldest first."""
    stamp = datetime.now(UTC) - timedelta(hours=1)
    async with svc.db.transaction() as session:
        runs = [
            TaskRun(
                key=f"seed-{i}",
                name="refresh_epg" if i % 2 else "import_playlist",
                args={},
                status=FAILED if i % 3 == 0 else SUCCEEDED,
                progress=100,
                message=f"seeded run {i}",
                created_at=stamp + timedelta(seconds=i),
                started_at=stamp + timedelta(seconds=i),
                finished_at=stamp + timedelta(seconds=i + 1),
            )
            for i in range(count)
        ]
        session.add_all(runs)
        await session.flush()
        return [r.id for r in runs]


async def test_task_history_pages_on_the_server(admin: ApiClient, svc: Any) -> None:
    ids = await seed_history(svc, 60)
    first = await text(await admin.get("/tasks"))
    shown = [int(m[1]) for m in HISTORY_ROW.findall(first)]
    # Newest first, fifty to a page, with a link to the rest that keeps the page size.
    assert shown == sorted(ids, reverse=True)[:50]
    assert "Tasks 1–50 of 60" in first
    assert links(first, "next") == ["/tasks?offset=50&limit=50"] and not links(first, "prev")
    second = await text(await admin.get("/tasks?offset=50&limit=50"))
    assert [int(m[1]) for m in HISTORY_ROW.findall(second)] == sorted(ids, reverse=True)[50:]
    assert links(second, "prev") == ["/tasks?offset=0&limit=50"] and not links(second, "next")
    # The live refresh asks for the partial with the page's query string and gets the same page.
    partial = await text(await admin.get("/tasks/partial?offset=50&limit=50"))
    assert [int(m[1]) for m in HISTORY_ROW.findall(partial)] == sorted(ids, reverse=True)[50:]
    assert "<h1>" not in partial
    # Another page size from the form; a size the form does not offer falls back to the default.
    small = await text(await admin.get("/tasks?limit=25&offset=25"))
    assert [int(m[1]) for m in HISTORY_ROW.findall(small)] == sorted(ids, reverse=True)[25:50]
    assert '<option value="25" selected>' in small
    odd = await text(await admin.get("/tasks?limit=7&offset=-3"))
    assert len(HISTORY_ROW.findall(odd)) == 50
    past = await text(await admin.get("/tasks?offset=500"))
    assert not HISTORY_ROW.findall(past) and "past the end" in past and links(past, "prev")


async def test_task_history_filters_stay_in_the_query_string(admin: ApiClient, svc: Any) -> None:
    await seed_history(svc, 60)
    failed = await text(await admin.get("/tasks?status=failed&limit=25"))
    rows = HISTORY_ROW.findall(failed)
    assert len(rows) == 20 and {status for status, _id, _name in rows} == {"failed"}
    assert "matching the filters" in failed and '<option value="failed" selected>' in failed
    both = await text(await admin.get("/tasks?status=failed&name=refresh_epg&limit=25"))
    rows = HISTORY_ROW.findall(both)
    assert len(rows) == 10 and {(s, n) for s, _id, n in rows} == {("failed", "refresh_epg")}
    succeeded = await text(await admin.get("/tasks?status=succeeded&limit=25"))
    assert links(succeeded, "next") == ["/tasks?status=succeeded&offset=25&limit=25"]
    nothing = await text(await admin.get("/tasks?status=running"))
    assert not HISTORY_ROW.findall(nothing) and "No task matches these filters" in nothing
    # A status the history does not know is ignored rather than an error page.
    unknown = await text(await admin.get("/tasks?status=bogus"))
    assert len(HISTORY_ROW.findall(unknown)) == 50


async def test_stream_browser_pages_with_its_search_and_group(admin: ApiClient, svc: Any) -> None:
    await seed_lineup(svc, channels=130, mapped=0, hours=1, tag=None)
    async with svc.db.transaction() as session:
        # The seed writes rows directly; an import would fill the search column like this (ASCII names).
        await session.execute(update(Stream).values(search_name=func.lower(Stream.name)))
    first = await text(await admin.get("/playlists/streams?limit=50"))
    assert (
        STREAM_ROW.findall(first)[:2] == ["Channel 1", "Channel 2"] and len(STREAM_ROW.findall(first)) == 50
    )
    assert "Streams 1–50 of 130" in first
    assert links(first, "next") == ["/playlists/streams?q=&group=%2A&offset=50&limit=50"]
    last = await text(await admin.get("/playlists/streams?limit=50&offset=100"))
    assert len(STREAM_ROW.findall(last)) == 30 and STREAM_ROW.findall(last)[-1] == "Channel 130"
    assert links(last, "prev") == ["/playlists/streams?q=&group=%2A&offset=50&limit=50"]
    # The search and the group travel with the pages ("Channel 1" matches 1, 10-19 and 100-130: 42 streams,
    # of which the News group holds the odd-numbered ones, 21).
    news = await text(await admin.get("/playlists/streams?q=Channel+1&group=News&limit=50"))
    names = STREAM_ROW.findall(news)
    assert len(names) == 21 and "Channel 1" in names and "Channel 2" not in names
    assert 'value="Channel 1"' in news and '<option value="50" selected>' in news
    paged = await text(await admin.get("/playlists/streams?q=Channel&group=Sport&limit=50"))
    assert links(paged, "next") == ["/playlists/streams?q=Channel&group=Sport&offset=50&limit=50"]
    # A page size the form does not offer falls back to the default of 100.
    odd = await text(await admin.get("/playlists/streams?limit=3"))
    assert len(STREAM_ROW.findall(odd)) == 100


async def test_short_lists_use_the_shared_table_component(admin: ApiClient, svc: Any) -> None:
    await seed_lineup(svc, channels=2, mapped=2, hours=1)
    for path, table in (("/users", "users-table"), ("/playlists", "playlists"), ("/epgs", "epgs")):
        page = await text(await admin.get(path))
        tag = re.search(rf'<table id="{table}"[^>]*>', page)
        assert tag is not None, path
        assert "data-table" in tag.group(0) and "data-filter=" in tag.group(0), path
        assert page.count("data-sortable") >= 4, path
        # Times sort by their instant, not by the text the browser shows.
        assert re.search(r'data-sort="\d{4}-\d\d-\d\dT', page) or path == "/users", path
