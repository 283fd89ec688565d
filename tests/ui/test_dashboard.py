"""The dashboard: first-run redirect to the wizard, sources with their results, coverage, attention items."""

from __future__ import annotations

from typing import Any

from tests.conftest import ApiClient
from tests.ui.seed import seed_lineup


async def text(resp: Any) -> str:
    return str(await resp.get_data(as_text=True))


async def test_empty_lineup_sends_admin_to_the_wizard_until_dismissed(admin: ApiClient) -> None:
    first = await admin.get("/")
    assert first.status_code == 302 and first.headers["Location"] == "/welcome"
    assert (await admin.post("/welcome/dismiss")).status_code == 302
    dash = await admin.get("/")
    assert dash.status_code == 200
    html = await text(dash)
    assert "Dashboard" in html and "task-indicator" in html
    # An empty install still says what to do next, with links.
    assert "No playlist yet" in html and 'href="/playlists"' in html


async def test_streamer_goes_to_their_account(streamer: ApiClient) -> None:
    resp = await streamer.get("/")
    assert resp.status_code == 302 and resp.headers["Location"] == "/account"


async def test_dashboard_shows_sources_coverage_and_failures(admin: ApiClient, svc: Any) -> None:
    await seed_lineup(svc, channels=4, mapped=3, failed_playlist=True)
    html = await text(await admin.get("/"))
    assert "Provider A" in html and "Guide A" in html
    # The failed import is shown in red with its message, and listed as needing attention with a fix link.
    assert '<span class="error-text small">HTTP 500 from the provider</span>' in html
    assert "Playlist “Provider A” failed to import: HTTP 500 from the provider" in html
    assert "75%" in html and "3 of 4 enabled channels" in html
    assert "1 enabled channel(s) have no guide mapped." in html
    assert "The DVR is not part of this TIC yet." in html or "Recordings" in html
    assert "Data directory" in html and "HLS cache" in html


async def test_dashboard_lists_failed_tasks_and_paused_queue(admin: ApiClient, svc: Any) -> None:
    await seed_lineup(svc, channels=1)
    resp = await admin.post("/tasks/pause", form={"csrf_token": admin.csrf})
    assert resp.status_code == 302
    html = await text(await admin.get("/"))
    assert "The task queue is paused" in html and 'href="/tasks"' in html


async def test_nav_shows_only_installed_pages(admin: ApiClient, streamer: ApiClient, svc: Any) -> None:
    await seed_lineup(svc, channels=1)
    admin_html = await text(await admin.get("/"))
    assert 'href="/guide"' in admin_html and 'href="/connect"' in admin_html and 'href="/users"' in admin_html
    viewer_html = await text(await streamer.get("/connect"))
    nav = viewer_html.split('id="main-nav"')[1].split("</nav>")[0]
    assert 'href="/connect"' in nav and 'href="/account"' in nav and 'href="/guide"' in nav
    assert 'href="/users"' not in nav and 'href="/settings"' not in nav and 'href="/tasks"' not in nav
    assert 'data-time-format="24h"' in viewer_html
