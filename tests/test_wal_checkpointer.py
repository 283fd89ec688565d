"""The background WAL checkpointer: commits do not checkpoint; the checkpointer does, only after writes."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from backend.db import WalCheckpointer


def _writer(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE IF NOT EXISTS t (v TEXT)")
    return conn


async def _settled(checkpointer: WalCheckpointer) -> int:
    """Wait until the checkpointer has nothing left to do; its checkpoint count then."""
    while True:
        seen = checkpointer.checkpoints
        await asyncio.sleep(0.3)
        if checkpointer.checkpoints == seen:
            return seen


async def test_checkpointer_copies_the_wal_after_writes_and_idles_without_them(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    conn = _writer(path)
    checkpointer = WalCheckpointer(path, interval=0.05)
    checkpointer.start()
    try:
        before = await _settled(checkpointer)  # it checkpointed the table's creation, then went idle
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO t VALUES (?)", [("x" * 500,) for _ in range(5000)])
        conn.execute("COMMIT")
        wal = path.with_name(path.name + "-wal")
        assert wal.stat().st_size > 1_000_000  # the commit did not checkpoint (autocheckpoint is off)
        done = await _settled(checkpointer)
        assert done == before + 1  # one checkpoint for the writes, none while nothing changed
        busy, in_wal, copied = await checkpointer.checkpoint()
        assert busy == 0 and in_wal == copied > 0  # everything written is in the database file
        done += 1
        conn.execute("INSERT INTO t VALUES ('y')")
        for _ in range(100):
            if checkpointer.checkpoints > done:
                break
            await asyncio.sleep(0.02)
        assert checkpointer.checkpoints == done + 1
    finally:
        await checkpointer.stop()
        conn.close()


async def test_app_database_has_a_running_checkpointer(svc: Any) -> None:
    if svc.db.dialect != "sqlite":
        assert svc.db.checkpointer is None
        return
    assert svc.db.checkpointer is not None
    busy, in_wal, copied = await svc.db.checkpointer.checkpoint()
    assert busy == 0 and in_wal == copied
