"""The golden path in real Chromium, against a fresh TIC, the fake provider and the fake TVHeadend:
setup → wizard (playlist, guide, channels, matching, TVHeadend, publish) → guide → record → DVR live status →
playback with hls.js → the client M3U downloads.

Each step names what it needs; when a feature has not landed yet the test fails at that step saying so.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.browser.background import BackgroundLoop
from tests.browser.conftest import DESKTOP, TicServer, new_page, shoot
from tests.fakes.tvheadend import FakeTvheadend
from tests.fakes.upstream import FakeProvider

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ADMIN_NAME, ADMIN_PASSWORD = "owner", "owner-password-1"


@contextlib.contextmanager
def step(name: str, needs: str) -> Iterator[None]:
    """Run one golden-path step; a failure says which step and which feature it depends on."""
    try:
        yield
    except Exception as exc:
        raise AssertionError(f"golden path step '{name}' failed (needs: {needs}): {exc}") from exc


def h264_ts(path: Path, seconds: int = 6) -> bytes:
    """A small real MPEG-TS (H.264 + AAC) for the fake TVHeadend's recordings, so hls.js can play it."""
    subprocess.run(
        [
            "ffmpeg", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc=size=320x180:rate=25:duration={seconds}",
            "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
            "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-f", "mpegts", str(path),
        ],
        check=True,
        timeout=60,
    )  # fmt: skip
    return path.read_bytes()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict[str, Any]]:
    loop = BackgroundLoop()
    provider = FakeProvider()
    tvh = FakeTvheadend(dvr_payload=h264_ts(tmp_path / "rec.ts"))
    server = TicServer(tmp_path / "tic")
    try:
        loop.run(provider.__aenter__())
        loop.run(tvh.start())
        today = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")
        loop.run(provider.add_generated("/lineup.m3u", "m3u", tmp_path, entries=300, vod_ratio=0))
        # As many guide channels as playlist entries, so whichever group the wizard picks has guide data.
        loop.run(provider.add_generated("/guide.xml", "xmltv", tmp_path, channels=300, days=3, start=today))
        server.start()
        yield {"server": server, "provider": provider, "tvh": tvh, "loop": loop}
    finally:
        server.stop()
        loop.run(tvh.close())
        loop.run(provider.__aexit__(None, None, None))
        loop.close()


def continue_wizard(page: Any, done_text: re.Pattern[str], timeout: float = 60_000) -> None:
    """Wait for the step's work to finish (or its error), check what it said, then press Continue."""
    page.wait_for_function(
        "() => !document.getElementById('step-done').hidden || "
        "[...document.querySelectorAll('.form-alert')].some(a => !a.hidden && a.textContent.trim())",
        timeout=timeout,
    )
    alert = page.locator(".form-alert:not([hidden])")
    assert not alert.count(), alert.first.inner_text()
    said = page.locator(".task-area .ok-text").last.inner_text()
    assert done_text.search(said), said
    page.get_by_role("button", name="Continue →").click()


def test_golden_path(browser: Any, world: dict[str, Any], screenshots: Path) -> None:
    server, provider, tvh = world["server"], world["provider"], world["tvh"]
    context, page, watch = new_page(browser, server.base, DESKTOP)
    page.set_default_timeout(20_000)
    try:
        with step("first-run setup", "the platform's /setup page"):
            page.goto("/")
            page.wait_for_url("**/setup")
            shoot(page, screenshots, "setup-desktop")
            page.get_by_label("Admin user name").fill(ADMIN_NAME)
            page.get_by_label("Password (at least 8 characters)").fill(ADMIN_PASSWORD)
            page.get_by_label("Repeat the password").fill(ADMIN_PASSWORD)
            page.get_by_role("button", name="Create admin and continue").click()
            page.wait_for_url("**/welcome")
            page.get_by_role("link", name="Start").click()

        with step(
            "wizard: add a playlist", "POST /tic-api/playlists and /tic-api/playlists/update/<id> (issue 4)"
        ):
            assert page.locator("#wizard-form").count(), "the playlist step says the playlists API is missing"
            page.get_by_label("Name", exact=True).fill("Fake provider")
            page.get_by_label("Playlist URL", exact=True).fill(provider.url("/lineup.m3u"))
            page.get_by_role("button", name="Add and import").click()
            continue_wizard(page, re.compile("Imported"))

        with step("wizard: add a guide", "POST /tic-api/epgs and /tic-api/epgs/update/<id> (issue 5)"):
            page.wait_for_url("**/welcome/epg")
            assert page.locator("#wizard-form").count(), "the guide step says the EPG API is missing"
            page.get_by_label("Name", exact=True).fill("Fake guide")
            page.get_by_label("Guide URL (XMLTV, .xml or .xml.gz)").fill(provider.url("/guide.xml"))
            page.get_by_role("button", name="Add and import").click()
            continue_wizard(page, re.compile("Imported"), timeout=120_000)

        with step("wizard: channels from groups", "POST /tic-api/channels/from-groups (issue 6)"):
            page.wait_for_url("**/welcome/channels")
            assert page.locator("#wizard-form").count(), "the channels step says the channels API is missing"
            page.locator("tbody input[data-select]").first.check()
            page.get_by_role("button", name="Create channels").click()
            continue_wizard(page, re.compile("Created|created"))

        with step("wizard: auto-match guides", "POST /tic-api/channels/epg-match (issue 6)"):
            page.wait_for_url("**/welcome/match")
            assert page.locator("#wizard-form").count(), "the match step says the matching API is missing"
            page.get_by_role("button", name="Match guides automatically").click()
            continue_wizard(page, re.compile("Done|matched"))

        with step("wizard: connect TVHeadend", "tvh_* settings and GET /tic-api/tvheadend/status (issue 7)"):
            page.wait_for_url("**/welcome/tvheadend")
            page.get_by_label("TVHeadend address").fill(tvh.url)
            page.get_by_label("TVHeadend admin user").fill("admin")
            page.get_by_label("Password").fill("admin")
            page.get_by_role("button", name="Save and check").click()
            continue_wizard(page, re.compile("Connected|Saved"))

        with step("wizard: publish", "POST /tic-api/tvheadend/publish (issue 7)"):
            page.wait_for_url("**/welcome/publish")
            page.get_by_role("button", name="Publish to TVHeadend").click()
            continue_wizard(page, re.compile("Published"), timeout=120_000)
            page.wait_for_url("**/welcome/finish")
            shoot(page, screenshots, "golden-finish-desktop")
            m3u_url = page.get_by_label("Playlist (M3U)", exact=True).input_value()

        with step("the guide shows programmes", "guide data for the mapped channels (issues 5 and 6)"):
            page.goto("/guide")
            page.locator(".prog").first.wait_for()
            shoot(page, screenshots, "golden-guide-desktop")

        with step("record a programme", "POST /tic-api/recordings (issue 9)"):
            page.locator(".prog.now").first.click()
            page.get_by_role("dialog").get_by_role("button", name=re.compile("Record")).first.click()
            page.get_by_role("dialog").get_by_role("status").get_by_text("Scheduled").wait_for()

        with step(
            "the DVR page shows it recording, then completed, live",
            "the /dvr page and recordings/poll (issue 9)",
        ):
            page.goto("/dvr")
            # The row itself, not headings like "Schedule a recording" or "Completed (0)".
            page.locator("section[aria-labelledby=dvr-now] tr[data-recording-id] .badge-running").wait_for(
                timeout=60_000
            )
            tvh.state.advance(3 * 3600)
            # No reload: the page's long poll moves the row into the Completed section.
            page.locator("section[aria-labelledby=dvr-done] tr[data-recording-id]").first.wait_for(
                timeout=60_000
            )
            assert not page.locator("section[aria-labelledby=dvr-now] tr[data-recording-id]").count()
            shoot(page, screenshots, "golden-dvr-desktop")

        with step(
            "play the recording with hls.js",
            "GET /tic-api/recordings/<id>/hls.m3u8 and the DVR player (issue 9)",
        ):
            page.get_by_role("button", name=re.compile("Play", re.I)).first.click()
            page.wait_for_function(
                "document.querySelector('video') && document.querySelector('video').readyState >= 2",
                timeout=60_000,
            )

        with step("the client M3U downloads", "GET /tic-api/playlist/combined.m3u (issue 6)"):
            resp = page.request.get(m3u_url)
            assert resp.status == 200 and resp.text().startswith("#EXTM3U")
        watch.check()
    finally:
        context.close()
