"""Shared fixtures: a fresh database per test (SQLite, or PostgreSQL with TIC_TEST_DB=postgres), the app, clients."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from quart import Quart

from backend.app import create_app

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("TIC_SHARED_DIR", REPO.parent / "shared"))
CORPUS = SHARED / "corpus"
TEST_DB = os.environ.get("TIC_TEST_DB", "sqlite")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresCluster:
    """A throwaway PostgreSQL cluster from the Debian binaries, on a private port and socket dir."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tic-pg-"))
        self.port = free_port()
        self.bindir = self._find_bindir()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root; the Debian package provides the postgres account.
            shutil.chown(self.dir, "postgres", "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]

    @staticmethod
    def _find_bindir() -> Path:
        candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
        for c in candidates:
            if (c / "initdb").exists():
                return c
        found = shutil.which("initdb")
        if found:
            return Path(found).parent
        raise RuntimeError("PostgreSQL binaries not found: run `make test` (it installs postgresql)")

    def _run(self, *args: str) -> None:
        subprocess.run([*self.as_user, *args], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        data = self.dir / "data"
        self._run(str(self.bindir / "initdb"), "-D", str(data), "-U", "tic", "--auth=trust", "-E", "UTF8")
        opts = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        )
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            opts,
            "-w",
            "-l",
            str(self.dir / "log"),
            "start",
        )

    def url(self, dbname: str) -> str:
        return f"postgresql+asyncpg://tic@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str, template: str | None = None) -> None:
        sql = f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")
        subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "tic", "-d", "postgres", "-c", sql],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def stop(self) -> None:
        subprocess.run(
            [
                *self.as_user,
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.dir / "data"),
                "-m",
                "immediate",
                "stop",
            ],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster | None]:
    if TEST_DB != "postgres":
        yield None
        return
    cluster = PostgresCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def _migrate(url: str) -> None:
    """Bring a database to the head of every migration branch (once per session, then copied)."""
    import asyncio

    from backend.app import load_domains
    from backend.db import Database

    load_domains()

    async def run() -> None:
        db = Database(url)
        try:
            await db.upgrade()
        finally:
            await db.dispose()

    asyncio.run(run())


@pytest.fixture(scope="session")
def template_database(pg_cluster: PostgresCluster | None, tmp_path_factory: Any) -> str:
    """A migrated database that each test copies, so migrations run once per session, not per test."""
    if pg_cluster is None:
        path = tmp_path_factory.mktemp("template") / "tic.db"
        _migrate(f"sqlite+aiosqlite:///{path}")
        return str(path)
    pg_cluster.create_database("tic_template")
    _migrate(pg_cluster.url("tic_template"))
    return "tic_template"


@pytest.fixture
def database_url(pg_cluster: PostgresCluster | None, template_database: str, tmp_path: Path) -> str:
    """A new database for each test, already migrated (the app still checks migrations at start)."""
    if pg_cluster is None:
        target = tmp_path / "tic.db"
        shutil.copyfile(template_database, target)
        wal = Path(template_database + "-wal")
        if wal.exists():
            shutil.copyfile(wal, str(target) + "-wal")
        return f"sqlite+aiosqlite:///{target}"
    name = "t_" + uuid.uuid4().hex[:16]
    pg_cluster.create_database(name, template=template_database)
    return pg_cluster.url(name)


def make_app(data_dir: Path, database_url: str, **overrides: Any) -> Quart:
    return create_app({"data_dir": data_dir, "database_url": database_url, "testing": True, **overrides})


@pytest.fixture
async def app(tmp_path: Path, database_url: str) -> AsyncIterator[Quart]:
    application = make_app(tmp_path / "data", database_url)
    async with application.test_app():
        yield application


@pytest.fixture
def svc(app: Quart) -> Any:
    return app.extensions["tic"]


@pytest.fixture
def client(app: Quart) -> Any:
    return app.test_client()


ADMIN_USER = "admin"
ADMIN_PASSWORD = "correct horse battery"


class ApiClient:
    """A test client that is logged in and sends the CSRF header on writes, like the browser UI."""

    def __init__(self, client: Any, csrf: str, user: dict[str, Any]) -> None:
        self.client = client
        self.csrf = csrf
        self.user = user

    def _headers(self, method: str, headers: dict[str, str] | None) -> dict[str, str]:
        out = dict(headers or {})
        if method not in ("GET", "HEAD", "OPTIONS"):
            out.setdefault("X-CSRF-Token", self.csrf)
        return out

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        kwargs["headers"] = self._headers(method, kwargs.get("headers"))
        return await self.client.open(path, method=method, **kwargs)

    async def get(self, path: str, **kwargs: Any) -> Any:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> Any:
        return await self.request("POST", path, **kwargs)

    async def patch(self, path: str, **kwargs: Any) -> Any:
        return await self.request("PATCH", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> Any:
        return await self.request("DELETE", path, **kwargs)


async def login(app: Quart, username: str, password: str) -> ApiClient:
    client = app.test_client()
    resp = await client.post("/tic-api/auth/login", json={"username": username, "password": password})
    assert resp.status_code == 200, await resp.get_data(as_text=True)
    body = await resp.get_json()
    return ApiClient(client, body["csrf_token"], body["user"])


@pytest.fixture
async def admin(app: Quart) -> ApiClient:
    client = app.test_client()
    resp = await client.post("/tic-api/setup", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD})
    assert resp.status_code == 201
    return await login(app, ADMIN_USER, ADMIN_PASSWORD)


@pytest.fixture
async def streamer(app: Quart, admin: ApiClient) -> ApiClient:
    resp = await admin.post(
        "/tic-api/users", json={"username": "viewer", "password": "viewer-password", "role": "streamer"}
    )
    assert resp.status_code == 201
    return await login(app, "viewer", "viewer-password")


def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    """On the PostgreSQL pass, run only the tests that touch a database; the rest ran on the SQLite pass."""
    if TEST_DB != "postgres":
        return
    selected, deselected = [], []
    for item in items:
        uses_db = "database_url" in getattr(item, "fixturenames", ())
        is_browser = item.get_closest_marker("browser") is not None
        (selected if uses_db and not is_browser else deselected).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = selected
