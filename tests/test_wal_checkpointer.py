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


def _write(conn: sqlite3.Connection, rows: int) -> None:
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO t VALUES (?)", [("x" * 500,) for _ in range(rows)])
    conn.execute("COMMIT")


async def test_commits_leave_the_wal_and_the_checkpointer_copies_it_only_after_writes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "db.sqlite"
    conn = _writer(path)
    checkpointer = WalCheckpointer(path)
    try:
        assert await checkpointer.look()  # the table's creation
        assert not await checkpointer.look()  # nothing written since
        size_before = path.stat().st_size
        # ~6 MB: past SQLite's automatic checkpoint (1000 pages), which would copy it on commit.
        _write(conn, 12000)
        assert path.stat().st_size == size_before  # the commit left everything in the WAL
        assert await checkpointer.look()
        assert path.stat().st_size > size_before + 5_000_000  # now it is in the database file
        busy, in_wal, copied = await checkpointer.checkpoint()
        assert busy == 0 and in_wal == copied > 0
        assert not await checkpointer.look()  # its own checkpoints do not call for another
        conn.execute("INSERT INTO t VALUES ('y')")
        assert await checkpointer.look()
    finally:
        conn.close()


async def test_the_running_checkpointer_copies_writes_by_itself(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    conn = _writer(path)
    size_before = path.stat().st_size
    checkpointer = WalCheckpointer(path, interval=0.05)
    checkpointer.start()
    try:
        _write(conn, 12000)
        for _ in range(500):
            # The count goes up once the checkpoint's thread has returned; the file grows during it.
            if checkpointer.checkpoints and path.stat().st_size > size_before + 5_000_000:
                break
            await asyncio.sleep(0.02)
        assert path.stat().st_size > size_before + 5_000_000
        assert checkpointer.checkpoints >= 1
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
