"""The subprocess and thread helpers: results, progress, errors, cancellation, and a loop that stays free."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from backend.errors import Invalid
from backend.tasks.offload import SubprocessFailed, run_blocking, run_in_subprocess


async def test_result_comes_back_from_another_process() -> None:
    out = await run_in_subprocess("tests.support.child_funcs:add", 2, 3)
    assert out["sum"] == 5 and out["pid"] != os.getpid()


async def test_progress_is_reported() -> None:
    seen: list[tuple[float, str]] = []

    async def on_progress(pct: float, msg: str) -> None:
        seen.append((pct, msg))

    assert (
        await run_in_subprocess("tests.support.child_funcs:count_with_progress", 4, on_progress=on_progress)
        == 4
    )
    assert seen == [(25.0, "step 1"), (50.0, "step 2"), (75.0, "step 3"), (100.0, "step 4")]


async def test_app_errors_keep_their_code() -> None:
    with pytest.raises(Invalid) as info:
        await run_in_subprocess("tests.support.child_funcs:raise_invalid")
    assert info.value.code == "XMLTV_MALFORMED" and "line 7" in info.value.message


async def test_unexpected_errors_and_dead_children_are_clear() -> None:
    with pytest.raises(SubprocessFailed) as info:
        await run_in_subprocess("tests.support.child_funcs:raise_crash")
    assert "ZeroDivisionError" in info.value.message
    with pytest.raises(SubprocessFailed) as died:
        await run_in_subprocess("tests.support.child_funcs:die_hard")
    assert "exited with code 3" in died.value.message
    assert "nothing was changed" in died.value.message and "server log" in died.value.message


async def test_crash_messages_lose_the_credentials_in_urls() -> None:
    with pytest.raises(SubprocessFailed) as info:
        await run_in_subprocess("tests.support.child_funcs:raise_with_url")
    assert "ValueError" in info.value.message and "provider.invalid" in info.value.message
    assert "s3cret" not in info.value.message and "alice" not in info.value.message


async def test_cancellation_kills_the_child(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    task = asyncio.create_task(run_in_subprocess("tests.support.child_funcs:sleep_forever", str(pid_file)))
    for _ in range(200):
        if pid_file.exists() and pid_file.read_text():
            break
        await asyncio.sleep(0.02)
    pid = int(pid_file.read_text())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_timeout_kills_the_child(tmp_path: Path) -> None:
    with pytest.raises(TimeoutError):
        await run_in_subprocess("tests.support.child_funcs:sleep_forever", str(tmp_path / "p"), timeout=1.0)
    pid = int((tmp_path / "p").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_loop_stays_responsive_while_child_burns_cpu() -> None:
    lags: list[float] = []
    stop = False

    async def probe() -> None:
        while not stop:
            t0 = time.monotonic()
            await asyncio.sleep(0.01)
            lags.append(time.monotonic() - t0 - 0.01)

    prober = asyncio.create_task(probe())
    await run_in_subprocess("tests.support.child_funcs:burn_cpu", 1.0)
    stop = True
    await prober
    assert len(lags) > 20
    assert max(lags) < 0.5


async def test_run_blocking_uses_a_thread() -> None:
    import threading

    main = threading.get_ident()
    assert await run_blocking(threading.get_ident) != main
