"""The /dvr page in real Chromium against a real TIC process: live updates, and playing a recording with hls.js."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, free_port

pytestmark = pytest.mark.browser
import playwright.sync_api as playwright_api  # noqa: E402  (a dev dependency, like pytest)

CHROMIUM = os.environ.get("TIC_CHROMIUM", "/usr/bin/chromium")
ADMIN = ("admin", "admin-password-1")


class FakeTvhThread:
    """The fake TVHeadend on its own loop and thread (Playwright's sync API owns this thread's loop)."""

    def __init__(self, payload: bytes) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.payload = payload
        self.fake: Any = self.run(self._start())

    async def _start(self) -> Any:
        from tests.fakes.tvheadend import FakeTvheadend

        return await FakeTvheadend(dvr_payload=self.payload).start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def close(self) -> None:
        self.run(self.fake.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def call(base: str, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    req = urllib.request.Request(
        base + path, data=None if body is None else json.dumps(body).encode(), method=method
    )
    req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    with urllib.request.urlopen(req, timeout=20) as resp:
        text = resp.read().decode()
        return json.loads(text) if text else None


@pytest.fixture(scope="module")
def h264_recording(tmp_path_factory: Any) -> bytes:
    """Browsers decode H.264 + AAC (the usual IPTV codecs), not MPEG-2: the browser test records those."""
    out = tmp_path_factory.mktemp("media") / "h264.ts"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
         "-f", "lavfi", "-i", "sine", "-t", "12", "-c:v", "libx264", "-preset", "ultrafast", "-g", "25",
         "-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "mpegts", str(out)],
        check=True,
        timeout=120,
    )  # fmt: skip
    return out.read_bytes()


@pytest.fixture(scope="module")
def server(tmp_path_factory: Any, h264_recording: bytes) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("tic-dvr-browser")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    database_url = f"sqlite+aiosqlite:///{root / 'data' / 'tic.db'}"
    env = {
        **os.environ,
        "TIC_DATA_DIR": str(root / "data"),
        "TIC_PORT": str(port),
        "TIC_HOST": "127.0.0.1",
        "DATABASE_URL": database_url,
        "TIC_LOG_LEVEL": "WARNING",
    }
    (root / "data").mkdir()
    log = open(root / "server.log", "ab")
    proc = subprocess.Popen([sys.executable, "run.py"], cwd=REPO, env=env, stdout=log, stderr=log)
    tvh = FakeTvhThread(h264_recording)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(base + "/tic-api/health", timeout=2):
                    break
            except urllib.error.HTTPError:
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                assert proc.poll() is None and time.monotonic() < deadline, (root / "server.log").read_text()
                time.sleep(0.1)
        call(base, "POST", "/tic-api/setup", {"username": ADMIN[0], "password": ADMIN[1]})
        token = call(base, "POST", "/tic-api/auth/tokens", {"name": "t"}, _login_headers(base))["token"]
        auth = {"Authorization": f"Bearer {token}"}
        call(
            base,
            "PATCH",
            "/tic-api/settings",
            {"tvh_url": tvh.fake.url, "tvh_username": "admin", "tvh_password": "admin"},
            auth,
        )
        seeded = _seed(tvh, database_url)
        yield {"base": base, "auth": auth, "tvh": tvh, **seeded}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
        tvh.close()


def _login_headers(base: str) -> dict[str, str]:
    import http.cookiejar

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    req = urllib.request.Request(
        base + "/tic-api/auth/login",
        data=json.dumps({"username": ADMIN[0], "password": ADMIN[1]}).encode(),
        method="POST",
    )
    req.add_header("Content-Type", "application/json")
    with opener.open(req, timeout=20) as resp:
        csrf = json.loads(resp.read())["csrf_token"]
    cookie = "; ".join(f"{c.name}={c.value}" for c in jar)
    return {"X-CSRF-Token": csrf, "Cookie": cookie}


def _seed(tvh: FakeTvhThread, database_url: str) -> dict[str, Any]:
    """A published channel and a finished recording of it, in TVHeadend and in TIC."""

    async def add_to_fake() -> tuple[str, str]:
        ch = tvh.fake.state.add_channel("Browser TV", 1)
        now = int(tvh.fake.state.now())
        return ch, tvh.fake.state.add_dvr_entry(ch, now - 600, now - 580, "Browser Film")

    tvh_channel, entry = tvh.run(add_to_fake())

    async def add_to_tic() -> dict[str, Any]:
        from backend.app import load_domains
        from backend.channels.models import Channel
        from backend.db import Database
        from backend.dvr.models import Recording
        from backend.dvr.service import new_marker

        load_domains()
        db = Database(database_url)
        now = datetime.now(UTC)
        try:
            async with db.transaction() as session:
                ch = Channel(name="Browser TV", number=1, enabled=True, guide_id="browser.1", tvh_uuid=tvh_channel,
                             guide_offset_minutes=0, created_at=now, updated_at=now)  # fmt: skip
                session.add(ch)
                await session.flush()
                rec = Recording(
                    marker=new_marker(), channel_id=ch.id, channel_name=ch.name, owner_id=1, title="Browser Film",
                    start=now - timedelta(minutes=10), stop=now - timedelta(minutes=9), padding_before=0,
                    padding_after=0, status="completed", tvh_uuid=entry, file_size=1, created_at=now, updated_at=now,
                )  # fmt: skip
                session.add(rec)
                await session.flush()
                return {"channel_id": ch.id, "recording_id": rec.id}
        finally:
            await db.dispose()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, add_to_tic()).result(timeout=60)


def test_dvr_page_updates_live_and_plays_a_recording(server: dict[str, Any]) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is needed for the browser tests: {CHROMIUM} is missing (make system-deps)")
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--autoplay-policy=no-user-gesture-required",
            ],
        )
        page = browser.new_page(base_url=server["base"])
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto("/login?next=/dvr")
        page.fill("#username", ADMIN[0])
        page.fill("#password", ADMIN[1])
        page.press("#password", "Enter")
        page.wait_for_url("**/dvr")
        assert page.locator("text=Browser Film").count() >= 1

        # A recording scheduled elsewhere (here: through the API) shows up without a reload.
        start = datetime.now(UTC) + timedelta(hours=3)
        call(server["base"], "POST", "/tic-api/recordings",
             {"channel_id": server["channel_id"], "title": "Appears Live", "start": start.isoformat(),
              "stop": (start + timedelta(minutes=30)).isoformat()}, server["auth"])  # fmt: skip
        page.wait_for_selector("#dvr-live >> text=Appears Live", timeout=10_000)

        # Play: hls.js (or native HLS) plays the remuxed recording.
        page.click(f"[data-play='/tic-api/recordings/{server['recording_id']}/hls.m3u8']")
        page.wait_for_function("document.getElementById('dvr-video').currentTime > 1.5", timeout=30_000)
        note = page.text_content("#dvr-player-note") or ""
        assert "error" not in note.lower(), note
        assert errors == []
        browser.close()
