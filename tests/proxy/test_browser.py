"""TVHeadend's web UI through /tic-tvh/ in a real Chromium: login, the page, its XHR POSTs and comet/ws."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.conftest import ADMIN_PASSWORD, ADMIN_USER
from tests.fakes.tvheadend import FakeTvheadend
from tests.proxy.conftest import Browser, TicServer

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

CHROMIUM = os.environ.get("TIC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
import playwright.async_api as async_api  # noqa: E402  (a dev dependency, like pytest)


@pytest_asyncio.fixture(loop_scope="module")
async def chromium() -> AsyncIterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium is needed for this test: {CHROMIUM} is missing (make system-deps)")
    async with async_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def test_tvheadend_ui_works_through_the_proxy_in_chromium(
    tic: TicServer, proxied: Browser, tvh: FakeTvheadend, chromium: Any
) -> None:
    context = await chromium.new_context()
    page = await context.new_page()
    try:
        # Not logged in: TIC's login page first, then back to TVHeadend's UI.
        await page.goto(tic.base + "/tic-tvh/")
        assert "/login" in page.url
        await page.fill("#username", ADMIN_USER)
        await page.fill("#password", ADMIN_PASSWORD)
        await page.click("button[type=submit]")
        await page.wait_for_url("**/tic-tvh/extjs.html")
        assert await page.text_content("h1") == "Tvheadend"
        # The UI's form POST (no TIC CSRF header, same origin) went through with TIC's TVHeadend login.
        await page.wait_for_function("document.getElementById('api').textContent.length > 0")
        api = await page.text_content("#api")
        assert api is not None and api.startswith("200 ")
        assert json.loads(api[4:])["sw_version"]
        # comet/ws: the first frame carries the mailbox, later ones what TVHeadend pushes.
        await page.wait_for_selector(".comet-message")
        first = json.loads(await page.locator(".comet-message").first.text_content() or "{}")
        assert first["boxid"] and first["messages"][0]["notificationClass"] == "accessUpdate"
        assert await page.get_attribute("#comet", "data-state") == "open"
        tvh.notify("logmessage", logtxt="hello browser")
        await page.wait_for_function(
            "[...document.querySelectorAll('.comet-message')].some(e => e.textContent.includes('hello browser'))"
        )
        # TIC's own TVHeadend page embeds the same UI.
        await page.goto(tic.base + "/tvheadend")
        frame = page.frame_locator("iframe.tvh-frame")
        await frame.locator("h1").wait_for()
        assert await frame.locator("h1").text_content() == "Tvheadend"
        await page.wait_for_selector("#tvh-status .ok-text")
        assert "Connected" in (await page.text_content("#tvh-status") or "")
    finally:
        await context.close()
