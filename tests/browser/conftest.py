"""Browser-test fixtures: a real TIC server process, Debian's Chromium through Playwright, page watchers."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import REPO, free_port

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
SCREENSHOTS = Path(os.environ.get("TIC_SCREENSHOT_DIR", REPO / "test-artifacts" / "screenshots"))
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
ADMIN = ("admin", "admin-password-1")
STREAMER = ("viewer", "viewer-password-1")

import playwright.sync_api as playwright_api  # noqa: E402  (a dev dependency, like pytest)


class TicServer:
    """TIC as a real process on a free port with its own data dir (run.py, scheduler and all)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.database_url = f"sqlite+aiosqlite:///{self.data_dir / 'tic.db'}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = root / "server.log"
        self._log: Any = None

    def start(self) -> TicServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "TIC_DATA_DIR": str(self.data_dir),
            "TIC_PORT": str(self.port),
            "TIC_HOST": "127.0.0.1",
            "DATABASE_URL": self.database_url,
            "TIC_LOG_LEVEL": "WARNING",
        }
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "run.py"], cwd=REPO, env=env, stdout=self._log, stderr=self._log
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"TIC exited early:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.base + "/tic-api/health", timeout=2) as resp:
                    if resp.status in (200, 503):
                        return self
            except urllib.error.HTTPError:
                return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        raise AssertionError(f"TIC did not start:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def seed(self, **kwargs: Any) -> dict[str, Any]:
        """Write a lineup into this server's database (WAL lets a second connection write beside it)."""
        from backend.app import load_domains
        from backend.db import Database
        from tests.ui.seed import seed_lineup

        load_domains()

        @dataclass
        class _Svc:
            db: Database

        async def run() -> dict[str, Any]:
            db = Database(self.database_url)
            try:
                return await seed_lineup(_Svc(db), **kwargs)
            finally:
                await db.dispose()

        # Playwright's sync API keeps an event loop on this thread, so the seeding runs on its own thread.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, run()).result(timeout=120)


# Package scope: Playwright's sync API keeps a loop on this thread while it runs, so it must be closed
# before other packages' browser tests (tests/dvr, tests/proxy) start their own Playwright.
@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is needed for the browser tests: {CHROMIUM} is missing (make system-deps)")
    with playwright_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


def api_call(
    base: str, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> Any:
    """A JSON call to the server from the test process (no browser), for setting up state."""
    import json

    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    with urllib.request.urlopen(req, timeout=10) as resp:
        text = resp.read().decode()
        return json.loads(text) if text else None


def admin_token(base: str) -> str:
    """Create the admin (once) and return a personal API token for setup calls."""
    import http.cookiejar
    import json

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

    def call(path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
        req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST")
        req.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        with opener.open(req, timeout=10) as resp:
            return json.loads(resp.read().decode())

    try:
        call("/tic-api/setup", {"username": ADMIN[0], "password": ADMIN[1]})
    except urllib.error.HTTPError as exc:
        if exc.code != 409:
            raise
    login = call("/tic-api/auth/login", {"username": ADMIN[0], "password": ADMIN[1]})
    token = call("/tic-api/auth/tokens", {"name": "browser tests"}, {"X-CSRF-Token": login["csrf_token"]})
    return str(token["token"])


@pytest.fixture(scope="session")
def seeded_server(tmp_path_factory: Any) -> Iterator[dict[str, Any]]:
    """One server for the page tests: an admin, a streamer, a seeded lineup, the wizard dismissed."""
    server = TicServer(tmp_path_factory.mktemp("tic-browser")).start()
    try:
        token = admin_token(server.base)
        auth = {"Authorization": f"Bearer {token}"}
        api_call(
            server.base,
            "POST",
            "/tic-api/users",
            {"username": STREAMER[0], "password": STREAMER[1], "role": "streamer", "dvr_access": "own"},
            auth,
        )
        ids = server.seed(channels=60, mapped=50)
        api_call(server.base, "PATCH", "/tic-api/settings", {"ui_wizard_progress": "dismissed"}, auth)
        yield {"server": server, "token": token, "ids": ids}
    finally:
        server.stop()


@dataclass
class Watch:
    """Console errors, page errors and failed same-origin requests seen by one page."""

    origin: str
    problems: list[str] = field(default_factory=list)
    allowed_status: set[int] = field(default_factory=set)

    def attach(self, page: Any) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        page.on("requestfailed", self._failed)
        page.on("response", self._response)

    def _same_origin(self, url: str) -> bool:
        return url.startswith(self.origin)

    def _console(self, msg: Any) -> None:
        if msg.type != "error":
            return
        url = (msg.location or {}).get("url", "")
        # Provider logos and programme art live on the internet, which tests never reach.
        if url and not self._same_origin(url):
            return
        if "Failed to load resource" in msg.text and not url:
            return
        if re.search(r"status of (\d+)", msg.text):
            code = int(re.search(r"status of (\d+)", msg.text).group(1))  # type: ignore[union-attr]
            if code in self.allowed_status:
                return
        self.problems.append(f"console error: {msg.text} ({url})")

    def _failed(self, request: Any) -> None:
        if not self._same_origin(request.url):
            return
        failure = request.failure or ""
        # Navigating away aborts the long-poll of the task indicator; that is not a failure.
        if "ERR_ABORTED" in failure or "NS_BINDING_ABORTED" in failure:
            return
        self.problems.append(f"request failed: {request.method} {request.url} {failure}")

    def _response(self, response: Any) -> None:
        if (
            self._same_origin(response.url)
            and response.status >= 400
            and response.status not in self.allowed_status
        ):
            self.problems.append(
                f"HTTP {response.status}: {response.request.method} {urlsplit(response.url).path}"
            )

    def check(self) -> None:
        problems, self.problems = self.problems, []
        assert not problems, "the page had problems:\n" + "\n".join(problems)


def new_page(
    browser: Any, base: str, viewport: dict[str, int] | None = None, **ctx: Any
) -> tuple[Any, Any, Watch]:
    context = browser.new_context(viewport=viewport or DESKTOP, base_url=base, **ctx)
    context.set_default_timeout(10_000)
    page = context.new_page()
    watch = Watch(base)
    watch.attach(page)
    return context, page, watch


def login(page: Any, username: str, password: str) -> None:
    page.goto("/login")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/login" not in url)


def shoot(page: Any, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"{name}.png"), full_page=False)


def clean_screenshots(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
