"""Interrupted-run recovery across real restarts of a real server process (SIGKILL and SIGTERM)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import REPO, free_port

SCRIPT = REPO / "tests" / "support" / "serve_with_jobs.py"


class Server:
    def __init__(self, data_dir: Path, database_url: str, port: int) -> None:
        self.data_dir = data_dir
        self.database_url = database_url
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None
        self.base = f"http://127.0.0.1:{port}"

    async def start(self, **env: str) -> None:
        full_env = {
            **os.environ,
            "TIC_DATA_DIR": str(self.data_dir),
            "DATABASE_URL": self.database_url,
            "TIC_PORT": str(self.port),
            **env,
        }
        self.log = open(self.data_dir.parent / f"server-{self.port}.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, str(SCRIPT)], cwd=REPO, env=full_env, stdout=self.log, stderr=self.log
        )
        async with aiohttp.ClientSession() as http:
            # Generous: a loaded CI machine can take a while to import and migrate before it listens.
            for _ in range(1200):
                try:
                    async with http.get(self.base + "/tic-api/health") as resp:
                        if resp.status in (200, 503):
                            return
                except aiohttp.ClientError:
                    pass
                assert self.proc.poll() is None, "server exited early"
                await asyncio.sleep(0.05)
        raise AssertionError("server did not start")

    def stop(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=30)
        self.log.close()
        return code


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    """Every server a test starts is killed at teardown, even when the test fails midway."""
    started: list[Server] = []
    yield started
    for server in started:
        if server.proc is not None and server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(timeout=30)


async def tasks(http: aiohttp.ClientSession, base: str, token: str) -> dict[str, Any]:
    async with http.get(
        base + "/tic-api/tasks?limit=20", headers={"Authorization": f"Bearer {token}"}
    ) as resp:
        assert resp.status == 200
        return await resp.json()


async def until(pred: Any, timeout: float = 20) -> Any:
    for _ in range(int(timeout / 0.05)):
        value = await pred()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


async def bootstrap_token(http: aiohttp.ClientSession, base: str) -> str:
    async with http.post(
        base + "/tic-api/setup", json={"username": "admin", "password": "password-123"}
    ) as r:
        assert r.status == 201
    async with http.post(
        base + "/tic-api/auth/login", json={"username": "admin", "password": "password-123"}
    ) as r:
        csrf = (await r.json())["csrf_token"]
    async with http.post(
        base + "/tic-api/auth/tokens", json={"name": "t"}, headers={"X-CSRF-Token": csrf}
    ) as r:
        return (await r.json())["token"]


async def test_sigkill_during_task_then_restart(
    tmp_path: Path, database_url: str, servers: list[Server]
) -> None:
    server = Server(tmp_path / "data", database_url, free_port())
    servers.append(server)
    await server.start(TIC_TEST_ENQUEUE="1")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        token = await bootstrap_token(http, server.base)

        async def running() -> Any:
            body = await tasks(http, server.base, token)
            return body["current"] if body["current"] and body["current"]["name"] == "sleepy" else None

        first = await until(running)
        server.stop(signal.SIGKILL)

        await server.start(TIC_TEST_SLEEP="0.1")

        async def settled() -> Any:
            body = await tasks(http, server.base, token)
            by_id = {t["id"]: t for t in body["items"]}
            retry = [t for t in body["items"] if t["retry_of"] == first["id"]]
            if (
                by_id.get(first["id"], {}).get("status") == "interrupted"
                and retry
                and retry[0]["status"] == "succeeded"
            ):
                return body
            return None

        body = await until(settled)
        sleepy_runs = [t for t in body["items"] if t["name"] == "sleepy"]
        assert len(sleepy_runs) == 2, "retried exactly once, nothing duplicated"
        interrupted = next(t for t in sleepy_runs if t["id"] == first["id"])
        assert "crash or kill" in interrupted["error"]
    assert server.stop(signal.SIGTERM) == 0


async def test_sigterm_interrupts_requeues_once_and_exits_cleanly(
    tmp_path: Path, database_url: str, servers: list[Server]
) -> None:
    server = Server(tmp_path / "data", database_url, free_port())
    servers.append(server)
    await server.start(TIC_TEST_ENQUEUE="1")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        token = await bootstrap_token(http, server.base)

        async def running() -> Any:
            body = await tasks(http, server.base, token)
            return body["current"]

        first = await until(running)
        assert server.stop(signal.SIGTERM) == 0

        # The requeued run starts again and is killed too: it is interrupted but not queued a third time.
        await server.start()
        second = await until(running)
        assert second["retry_of"] == first["id"]
        server.stop(signal.SIGKILL)
        await server.start()

        async def final() -> Any:
            body = await tasks(http, server.base, token)
            statuses = {t["id"]: t["status"] for t in body["items"]}
            if statuses.get(second["id"]) == "interrupted":
                return body
            return None

        body = await final_body(final)
        assert [t["status"] for t in body["items"] if t["name"] == "sleepy"] == ["interrupted", "interrupted"]
        assert body["queue"] == [] and body["current"] is None
    assert server.stop(signal.SIGTERM) == 0


async def final_body(pred: Any) -> Any:
    return await until(pred)
