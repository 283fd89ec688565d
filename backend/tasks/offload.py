"""Run CPU-heavy work in a child process and blocking file work in a thread, without blocking the loop."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from backend import errors
from backend.download import redact_urls_in_text
from backend.errors import AppError

log = logging.getLogger(__name__)

T = TypeVar("T")

ProgressCallback = Callable[[float, str], Awaitable[None] | None]

# At most this many blocking file jobs run in threads at once, so a burst cannot starve the pool.
_THREAD_SLOTS = asyncio.Semaphore(4)


class SubprocessFailed(AppError):
    status = 500
    code = "SUBPROCESS_FAILED"


async def run_blocking(func: Callable[..., T], *args: Any) -> T:
    """Run a blocking function (file or SQLite work) in a worker thread."""
    async with _THREAD_SLOTS:
        return await asyncio.to_thread(func, *args)


async def run_in_subprocess(
    target: str,
    *args: Any,
    timeout: float | None = None,
    on_progress: ProgressCallback | None = None,
    **kwargs: Any,
) -> Any:
    """Call `module:function` with JSON-able arguments in a fresh Python process and return its result.

    The child reports progress as JSON lines; cancelling the awaiting task kills the child at once.
    A child that raises an AppError re-raises the same kind here; one that dies says how it died.
    """
    payload = json.dumps(
        {"target": target, "args": list(args), "kwargs": kwargs, "progress": on_progress is not None}
    ).encode()
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "backend.tasks.child",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        limit=16 * 1024 * 1024,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    result: dict[str, Any] = {}
    stderr_tail: list[bytes] = []

    async def feed() -> None:
        assert proc.stdin is not None
        proc.stdin.write(payload)
        await proc.stdin.drain()
        proc.stdin.close()

    async def read_stdout() -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            try:
                msg = json.loads(raw)
            except ValueError:
                continue
            if "progress" in msg and on_progress is not None:
                maybe = on_progress(float(msg["progress"]), str(msg.get("message", "")))
                if maybe is not None:
                    await maybe
            elif "result" in msg or "error" in msg:
                result.update(msg)

    async def read_stderr() -> None:
        assert proc.stderr is not None
        async for raw in proc.stderr:
            stderr_tail.append(raw)
            del stderr_tail[:-20]

    async def communicate() -> int:
        await asyncio.gather(feed(), read_stdout(), read_stderr())
        return await proc.wait()

    try:
        returncode = await asyncio.wait_for(communicate(), timeout)
    except BaseException:
        # Cancellation or timeout: the child must not outlive the request for its work.
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    if "error" in result:
        err = result["error"]
        cls = getattr(errors, str(err.get("class", "")), None)
        if isinstance(cls, type) and issubclass(cls, AppError):
            raise cls(str(err.get("message", "")), code=err.get("code"))
        log.error("Worker process for %s raised %s:\n%s", target, err.get("type"), err.get("traceback", ""))
        # The message reaches the task history and the UI: URLs in it lose their credentials.
        detail = redact_urls_in_text(f"{err.get('type')}: {err.get('message')}")
        raise SubprocessFailed(
            f"The worker process for {target.rsplit(':', 1)[-1]} failed ({detail}); nothing was changed. "
            "See the server log for details, then retry"
        )
    if returncode != 0 or "result" not in result:
        tail = b"".join(stderr_tail).decode(errors="replace")[-1500:]
        log.error("Worker process for %s exited with code %s: %s", target, returncode, tail)
        how = f"was killed by signal {-returncode}" if returncode < 0 else f"exited with code {returncode}"
        hint = " (out of memory?)" if returncode == -9 else ""
        raise SubprocessFailed(
            f"The worker process {how}{hint} before finishing its work, so nothing was changed. "
            "See the server log for details, then retry"
        )
    return result["result"]
