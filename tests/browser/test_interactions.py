"""What people do in the browser: the guide grid and its dialog, forms with server-side errors, confirmations,
copy buttons, themes, keyboard focus and the 12/24 h preference."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import ADMIN, DESKTOP, PHONE, login, new_page, shoot

pytestmark = pytest.mark.browser


@pytest.fixture
def admin_page(browser: Any, seeded_server: dict[str, Any]) -> Any:
    context, page, watch = new_page(
        browser, seeded_server["server"].base, DESKTOP, permissions=["clipboard-read", "clipboard-write"]
    )
    login(page, *ADMIN)
    yield page, watch
    context.close()


def test_guide_grid_dialog_search_and_more_rows(admin_page: Any, screenshots: Path) -> None:
    page, watch = admin_page
    page.goto("/guide")
    rows = page.locator(".guide-row")
    assert rows.count() == 40
    assert page.locator(".guide-now").is_visible()
    # Scrolling the grid to its end loads the next rows (60 seeded channels).
    page.locator(".guide-more").scroll_into_view_if_needed()
    page.wait_for_function("document.querySelectorAll('.guide-row').length === 60")
    # A programme opens its details in a dialog, by keyboard too; Escape closes it.
    first = page.locator(".prog.now").first
    first.focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog")
    dialog.wait_for(state="visible")
    assert dialog.locator("h2").inner_text().strip()
    assert dialog.get_by_role("button", name="Close", exact=True).is_visible()
    shoot(page, screenshots, "guide-programme-desktop")
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
    # Title search lists upcoming matches; one opens the same dialog.
    page.get_by_label("Search titles").fill("News at")
    results = page.locator("#search-results li")
    results.first.wait_for()
    assert "News at" in results.first.inner_text()
    shoot(page, screenshots, "guide-search-desktop")
    results.first.get_by_role("button").click()
    dialog.wait_for(state="visible")
    page.keyboard.press("Escape")
    # The tag filter keeps every other channel (the seed tags channels 1, 3, 5, ...).
    page.get_by_label("Tag").select_option(label="News")
    page.wait_for_url(re.compile(r"tag=\d+"))
    assert page.locator(".guide-corner").inner_text().startswith("30 channels")
    watch.check()


def test_guide_on_a_phone(browser: Any, seeded_server: dict[str, Any], screenshots: Path) -> None:
    context, page, watch = new_page(browser, seeded_server["server"].base, PHONE)
    try:
        login(page, *ADMIN)
        page.goto("/guide?hours=3")
        page.locator(".prog").first.click()
        page.get_by_role("dialog").wait_for(state="visible")
        shoot(page, screenshots, "guide-programme-phone")
        page.get_by_role("dialog").get_by_role("button", name="Close", exact=True).last.click()
        # The phone menu opens from its button and is reachable.
        page.get_by_role("button", name="Menu").click()
        assert page.get_by_role("navigation", name="Main").get_by_role("link", name="Dashboard").is_visible()
        shoot(page, screenshots, "menu-open-phone")
        watch.check()
    finally:
        context.close()


def test_form_errors_show_next_to_fields_and_keep_input(admin_page: Any, screenshots: Path) -> None:
    page, watch = admin_page
    # An API-backed wizard form: the settings API refuses a non-HTTP address with a field error.
    page.goto("/welcome/tvheadend")
    watch.allowed_status.add(400)
    page.get_by_label("TVHeadend address").fill("ftp://tvheadend.local/")
    page.get_by_role("button", name="Save and check").click()
    error = page.locator("#f-tvh_url-error")
    error.wait_for()
    assert "http" in error.inner_text()
    assert page.get_by_label("TVHeadend address").get_attribute("aria-invalid") == "true"
    assert page.get_by_label("TVHeadend address").input_value() == "ftp://tvheadend.local/"
    assert page.get_by_role("alert").first.is_visible()
    shoot(page, screenshots, "form-error-desktop")
    # A server-rendered form: the users page keeps what was typed and marks the field.
    page.goto("/users")
    page.get_by_label("User name", exact=True).fill("bad name!")
    page.get_by_label("Password (at least 8 characters)").fill("short")
    page.get_by_role("button", name="Add user").click()
    assert page.locator(".field-error").first.is_visible()
    assert page.get_by_label("User name", exact=True).input_value() == "bad name!"
    watch.allowed_status.clear()
    watch.problems.clear()


def test_copy_button_and_confirmed_rotation(admin_page: Any) -> None:
    page, watch = admin_page
    page.goto("/connect")
    url = page.get_by_label("Playlist (M3U)", exact=True).input_value()
    assert "/tic-api/playlist/combined.m3u?stream_key=" in url
    page.get_by_role("button", name="Copy Playlist (M3U)", exact=True).click()
    assert page.evaluate("navigator.clipboard.readText()") == url
    # Rotating asks first; cancelling changes nothing, confirming gives new URLs.
    page.get_by_role("button", name="Rotate the stream key").click()
    confirm = page.get_by_role("dialog")
    confirm.wait_for(state="visible")
    confirm.get_by_role("button", name="Cancel").click()
    assert page.get_by_label("Playlist (M3U)", exact=True).input_value() == url
    page.get_by_role("button", name="Rotate the stream key").click()
    page.get_by_role("dialog").get_by_role("button", name="Rotate the stream key").click()
    page.wait_for_load_state("load")
    page.get_by_text("Your stream key was rotated").wait_for()
    assert page.get_by_label("Playlist (M3U)", exact=True).input_value() != url
    watch.check()


def test_theme_keyboard_focus_and_time_format(admin_page: Any, seeded_server: dict[str, Any]) -> None:
    page, watch = admin_page
    page.goto("/connect")
    page.get_by_role("button", name="Switch between dark and light theme").click()
    theme = page.evaluate("document.documentElement.dataset.theme")
    assert theme in ("dark", "light")
    page.reload()
    assert page.evaluate("document.documentElement.dataset.theme") == theme
    # The first Tab reaches the skip link, which becomes visible, with a visible focus ring.
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.textContent")
    assert focused == "Skip to content"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"
    # The 12 h preference shows times with AM/PM.
    page.evaluate(
        """async () => {
          const csrf = document.querySelector('meta[name=csrf-token]').content;
          await fetch('/tic-api/users/self', {method: 'PATCH', headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf},
            body: JSON.stringify({time_format: '12h'})});
        }"""
    )
    page.goto("/guide")
    label = page.locator(".guide-times time").first.inner_text()
    assert re.search(r"AM|PM", label, re.I), label
    page.evaluate(
        """async () => {
          const csrf = document.querySelector('meta[name=csrf-token]').content;
          await fetch('/tic-api/users/self', {method: 'PATCH', headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf},
            body: JSON.stringify({time_format: '24h'})});
        }"""
    )
    watch.check()
