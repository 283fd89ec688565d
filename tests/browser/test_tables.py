"""The shared table component in real Chromium: sort by header, filter by typing, server pages, keyboard, phone."""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.browser.conftest import ADMIN, DESKTOP, PHONE, TicServer, admin_token, api_call, login, new_page

pytestmark = pytest.mark.browser

EXTRA_USERS = (("carol", "streamer"), ("bob", "admin"), ("dave", "streamer"), ("alice", "streamer"))


def seed_task_history(server: TicServer, count: int) -> None:
    """Finished task runs straight into the server's database (WAL lets a second connection write beside it)."""
    from backend.app import load_domains
    from backend.db import Database
    from backend.tasks.models import FAILED, SUCCEEDED, TaskRun

    load_domains()

    async def run() -> None:
        db = Database(server.database_url)
        stamp = datetime.now(UTC) - timedelta(hours=1)
        try:
            async with db.transaction() as session:
                session.add_all(
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
                )
        finally:
            await db.dispose()

    # Playwright's sync API keeps an event loop on this thread, so the seeding runs on its own thread.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result(timeout=60)


@pytest.fixture(scope="module")
def table_server(tmp_path_factory: Any) -> Iterator[dict[str, Any]]:
    """Its own server, so the extra users and task history change nothing for the other browser tests."""
    server = TicServer(tmp_path_factory.mktemp("tic-tables")).start()
    try:
        auth = {"Authorization": f"Bearer {admin_token(server.base)}"}
        for name, role in EXTRA_USERS:
            body = {"username": name, "password": f"{name}-password-1", "role": role, "dvr_access": "none"}
            api_call(server.base, "POST", "/tic-api/users", body, auth)
        server.seed(channels=60, mapped=0, hours=1, tag=None)
        seed_task_history(server, 60)
        api_call(server.base, "PATCH", "/tic-api/settings", {"ui_wizard_progress": "dismissed"}, auth)
        yield {"server": server, "auth": auth}
    finally:
        server.stop()


@pytest.fixture
def admin_page(browser: Any, table_server: dict[str, Any]) -> Iterator[tuple[Any, Any]]:
    context, page, watch = new_page(browser, table_server["server"].base, DESKTOP)
    login(page, *ADMIN)
    yield page, watch
    context.close()


def column(page: Any, table: str, index: int) -> list[str]:
    """The visible rows' text in one column (hidden rows are filtered out or on another page)."""
    return [
        t.strip() for t in page.locator(f"#{table} tbody tr:visible td:nth-child({index})").all_inner_texts()
    ]


def focused(page: Any) -> dict[str, str]:
    return dict(
        page.evaluate(
            """() => { const el = document.activeElement; const s = getComputedStyle(el);
                 return {id: el.id, text: el.textContent.trim(), outline: s.outlineStyle, width: s.outlineWidth}; }"""
        )
    )


def test_sort_by_header_and_filter_by_typing(admin_page: tuple[Any, Any]) -> None:
    page, watch = admin_page
    page.goto("/users")
    header = page.locator("#users-table th", has_text="User").first
    assert header.get_attribute("aria-sort") == "none"
    # A click on the header sorts ascending, a second click descending; aria-sort says which.
    page.get_by_role("button", name="User", exact=True).click()
    assert header.get_attribute("aria-sort") == "ascending"
    assert column(page, "users-table", 1) == ["admin", "alice", "bob", "carol", "dave"]
    page.get_by_role("button", name="User", exact=True).click()
    assert header.get_attribute("aria-sort") == "descending"
    assert column(page, "users-table", 1) == sorted(column(page, "users-table", 1), reverse=True)
    # Typing in the filter keeps the rows that match (the role's select options do not count as text).
    box = page.get_by_label("Filter users")
    box.press_sequentially("streamer")
    assert sorted(column(page, "users-table", 1)) == ["alice", "carol", "dave"]
    assert page.locator("#users-table-count").inner_text() == "3 of 5 rows"
    # Enter in the filter submits nothing; clearing it brings every row back.
    box.press("Enter")
    assert page.url.endswith("/users")
    box.fill("")
    assert len(column(page, "users-table", 1)) == 5
    watch.check()


def test_tables_work_from_the_keyboard(admin_page: tuple[Any, Any]) -> None:
    page, watch = admin_page
    page.goto("/users")
    page.get_by_label("Filter users").focus()
    page.keyboard.type("a")
    # Tab leads from the filter into the table's sort buttons, which show a focus ring.
    page.keyboard.press("Tab")
    state = focused(page)
    assert state["id"] == "users-table-sort-0" and state["text"] == "User"
    assert state["outline"] != "none" and state["width"] != "0px"
    page.keyboard.press("Tab")
    assert focused(page)["text"] == "Role"
    page.keyboard.press("Enter")
    assert page.locator("#users-table th", has_text="Role").first.get_attribute("aria-sort") == "ascending"
    roles = [r for r in page.locator("#users-table tbody tr:visible td:nth-child(2)").evaluate_all(
        "cells => cells.map((c) => c.dataset.sort)")]  # fmt: skip
    assert roles == sorted(roles) and roles[0] == "admin"
    page.keyboard.press("Space")
    assert page.locator("#users-table th", has_text="Role").first.get_attribute("aria-sort") == "descending"
    watch.check()


def test_task_history_pages_on_the_server_and_survives_live_refresh(
    admin_page: tuple[Any, Any], table_server: dict[str, Any]
) -> None:
    page, watch = admin_page
    page.goto("/tasks")
    assert page.get_by_role("status").filter(has_text="Tasks 1–50 of").count() == 1
    page.get_by_label("Rows per page").select_option("25")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(re.compile(r"limit=25"))
    ids = column(page, "task-history-table", 1)
    assert len(ids) == 25 and ids == sorted(ids, key=int, reverse=True)
    # The next page by keyboard: the pager's link, then Enter.
    page.keyboard.press("Shift")  # a key press first, as a keyboard user would: the focus ring is for them
    page.locator("#task-pager-next").focus()
    assert focused(page)["outline"] != "none"
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"offset=25"))
    second = column(page, "task-history-table", 1)
    assert len(second) == 25 and int(second[0]) == int(ids[-1]) - 1
    # A change in the queue re-renders the tables live; the page and its size stay as the URL says.
    page.evaluate("document.getElementById('task-history-table').dataset.before = '1'")
    server = table_server["server"]
    api_call(server.base, "POST", "/tic-api/tasks/pause", {}, table_server["auth"])
    try:
        page.wait_for_function("!document.getElementById('task-history-table')?.dataset.before")
        assert column(page, "task-history-table", 1) == second
        assert page.locator("#task-pager-prev").is_visible()
    finally:
        api_call(server.base, "POST", "/tic-api/tasks/resume", {}, table_server["auth"])
    # The status filter goes into the URL and the pages keep it.
    page.get_by_label("Status").select_option("failed")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(re.compile(r"status=failed"))
    statuses = column(page, "task-history-table", 3)
    assert statuses and set(statuses) == {"failed"}
    watch.check()


def test_stream_browser_pages_on_a_phone(browser: Any, table_server: dict[str, Any]) -> None:
    context, page, watch = new_page(browser, table_server["server"].base, PHONE)
    try:
        login(page, *ADMIN)
        page.goto("/playlists/streams")
        page.get_by_label("Rows per page").select_option("50")
        page.get_by_role("button", name="Show").click()
        page.wait_for_url(re.compile(r"limit=50"))
        assert "Streams 1–50 of 60" in page.get_by_role("status").first.inner_text()
        assert len(column(page, "streams", 2)) == 50
        # The page itself never scrolls sideways on a phone: wide tables scroll inside their frame.
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
        page.get_by_role("link", name="Next →").click()
        page.wait_for_url(re.compile(r"offset=50"))
        assert column(page, "streams", 2) == [f"Channel {n}" for n in range(51, 61)]
        page.get_by_role("link", name="← Previous").click()
        page.wait_for_url(re.compile(r"offset=0"))
        # The users table filters on a phone too, and still fits the screen.
        page.goto("/users")
        page.get_by_label("Filter users").fill("bob")
        assert column(page, "users-table", 1) == ["bob"]
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
        watch.check()
    finally:
        context.close()
