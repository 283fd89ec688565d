"""Functions the subprocess-helper tests run in a child process."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from backend.errors import Invalid


def add(a: int, b: int) -> dict[str, int]:
    return {"sum": a + b, "pid": os.getpid()}


def count_with_progress(n: int, progress: Callable[[float, str], None]) -> int:
    for i in range(n):
        progress(100 * (i + 1) / n, f"step {i + 1}")
    return n


def raise_invalid() -> None:
    raise Invalid("bad guide file at line 7", code="XMLTV_MALFORMED")


def raise_crash() -> None:
    raise ZeroDivisionError("division by zero in child")


def die_hard() -> None:
    os._exit(3)


def sleep_forever(pid_file: str) -> None:
    with open(pid_file, "w") as fh:
        fh.write(str(os.getpid()))
    time.sleep(120)


def burn_cpu(seconds: float) -> float:
    end = time.monotonic() + seconds
    x = 0.0
    while time.monotonic() < end:
        x += 1.0
    return x


def raise_with_url() -> None:
    raise ValueError(
        "cannot read http://alice:s3cret@provider.invalid/get.php?username=alice&password=s3cret"
    )
