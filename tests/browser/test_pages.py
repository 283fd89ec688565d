"""Every page in real Chromium: loads clean (no console errors, no failed requests), at desktop and phone width."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import ADMIN, DESKTOP, PHONE, STREAMER, login, new_page, shoot

pytestmark = pytest.mark.browser

#: Admin pages; a path the running TIC does not have yet is reported, not silently passed.
ADMIN_PAGES = [
    ("dashboard", "/"),
    ("guide", "/guide"),
    ("connect", "/connect"),
    ("wizard", "/welcome"),
    ("wizard-playlist", "/welcome/playlist"),
    ("wizard-epg", "/welcome/epg"),
    ("wizard-channels", "/welcome/channels"),
    ("wizard-match", "/welcome/match"),
    ("wizard-tvheadend", "/welcome/tvheadend"),
    ("wizard-publish", "/welcome/publish"),
    ("wizard-finish", "/welcome/finish"),
    ("account", "/account"),
    ("users", "/users"),
    ("settings", "/settings"),
    ("tasks", "/tasks"),
    ("playlists", "/playlists"),
    ("epgs", "/epgs"),
    ("channels", "/channels"),
    ("dvr", "/dvr"),
    ("tvheadend", "/tvheadend"),
]


@pytest.mark.parametrize("width", ["desktop", "phone"])
def test_admin_pages_load_clean(
    browser: Any, seeded_server: dict[str, Any], screenshots: Path, width: str
) -> None:
    server = seeded_server["server"]
    context, page, watch = new_page(browser, server.base, DESKTOP if width == "desktop" else PHONE)
    try:
        login(page, *ADMIN)
        failures = []
        for name, path in ADMIN_PAGES:
            response = page.goto(path)
            assert response is not None
            if response.status != 200:
                failures.append(f"{path}: HTTP {response.status}")
                watch.problems.clear()
                continue
            page.wait_for_load_state("load")
            page.wait_for_timeout(150)
            assert page.locator("h1").first.is_visible(), f"{path} has no visible heading"
            shoot(page, screenshots, f"{name}-{width}")
            try:
                watch.check()
            except AssertionError as exc:
                failures.append(f"{path}: {exc}")
        assert not failures, "\n".join(failures)
    finally:
        context.close()


def test_login_page_and_logged_out_redirect(
    browser: Any, seeded_server: dict[str, Any], screenshots: Path
) -> None:
    server = seeded_server["server"]
    for width, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        context, page, watch = new_page(browser, server.base, viewport)
        try:
            page.goto("/guide")
            assert "/login?next=/guide" in page.url
            shoot(page, screenshots, f"login-{width}")
            # A wrong password is refused (401) with a message; the user name stays filled in.
            watch.allowed_status.add(401)
            page.get_by_label("User name").fill(ADMIN[0])
            page.get_by_label("Password").fill("wrong-password")
            page.get_by_role("button", name="Log in").click()
            assert page.get_by_role("alert").inner_text() == "Wrong user name or password"
            assert page.get_by_label("User name").input_value() == ADMIN[0]
            watch.allowed_status.clear()
            watch.problems.clear()
            page.get_by_label("Password").fill(ADMIN[1])
            page.get_by_role("button", name="Log in").click()
            page.wait_for_url("**/guide")
            watch.check()
        finally:
            context.close()


def test_streamer_sees_only_streamer_pages(
    browser: Any, seeded_server: dict[str, Any], screenshots: Path
) -> None:
    server = seeded_server["server"]
    context, page, watch = new_page(browser, server.base, DESKTOP)
    try:
        login(page, *STREAMER)
        assert page.url.endswith("/account")
        page.goto("/connect")
        nav = page.get_by_role("navigation", name="Main")
        labels = [t.strip() for t in nav.get_by_role("link").all_inner_texts()]
        assert set(labels) <= {"Client URLs", "Guide", "DVR", "My account"}, labels
        assert "Client URLs" in labels and "My account" in labels
        assert page.locator("#task-indicator").count() == 0
        shoot(page, screenshots, "streamer-connect-desktop")
        # Every link the streamer is shown opens without an error.
        for href in nav.get_by_role("link").evaluate_all("els => els.map(e => e.getAttribute('href'))"):
            assert page.goto(href).status == 200, href  # type: ignore[union-attr]
        watch.check()
        watch.allowed_status.add(403)
        for path in ("/users", "/settings", "/tasks", "/welcome", "/connect/1"):
            response = page.goto(path)
            assert response is not None and response.status == 403, path
            assert "Not allowed" in page.locator("h1").inner_text()
        shoot(page, screenshots, "streamer-forbidden-desktop")
    finally:
        context.close()
