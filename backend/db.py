"""Database core: declarative Base, UTC datetime type, engine and session factory, transactions, migrations."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, DateTime, MetaData, event
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

log = logging.getLogger(__name__)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend; SQLite gets naive UTC text, read back as aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; use datetime.now(timezone.utc)")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso_z(value: datetime | None) -> str | None:
    """Serialise an aware datetime as ISO-8601 UTC with a Z, the API's one timestamp format."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


#: Page size of a new SQLite database (bytes).
SQLITE_PAGE_SIZE = 16384


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    # 16 KiB pages for a new database (an existing one keeps its size): imports write 100k-row
    # batches into tables with several indexes, and bigger pages mean fewer B-tree levels and a
    # quarter of the WAL frames; a 100k-stream swap takes 30% less time than with 4 KiB pages.
    cursor.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")
    # WAL lets readers run while the single writer writes; the busy timeout absorbs short lock waits.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # Commits never copy the WAL into the database file themselves: after an import wrote tens of MB,
    # the next commit (a task's status, a click in the UI) would do that copy and its fsyncs before it
    # returned. The WalCheckpointer does it in the background instead.
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()


#: How often the checkpointer looks at the WAL (seconds).
CHECKPOINT_INTERVAL = 2.0


class WalCheckpointer:
    """Copies an SQLite database's WAL into the database file, in a thread, off every request's path.

    Every CHECKPOINT_INTERVAL seconds, if the WAL file changed since the last look, it runs a PASSIVE
    checkpoint: that copies what no reader still needs and waits for nobody, so writers and readers
    carry on meanwhile. (SQLite's own automatic checkpoint is off on the app's connections.) When the
    last connection closes, SQLite checkpoints and removes the WAL by itself.
    """

    def __init__(self, path: Path, interval: float = CHECKPOINT_INTERVAL) -> None:
        self.path = path
        self.wal = path.with_name(path.name + "-wal")
        self.interval = interval
        self.checkpoints = 0
        self._seen: tuple[int, int] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="wal-checkpointer")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def checkpoint(self) -> tuple[int, int, int]:
        """Run one PASSIVE checkpoint now: (busy, frames in the WAL, frames copied)."""
        result = await asyncio.to_thread(self._checkpoint)
        self.checkpoints += 1
        return result

    def _checkpoint(self) -> tuple[int, int, int]:
        conn = sqlite3.connect(self.path, timeout=10)
        try:
            row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            conn.close()
        return int(row[0]), int(row[1]), int(row[2])

    def _wal_state(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.wal)
        except FileNotFoundError:
            return None
        return st.st_size, st.st_mtime_ns

    async def look(self) -> bool:
        """Checkpoint if the WAL changed since the last look; whether it did."""
        state = self._wal_state()
        if state is None or state == self._seen:
            return False
        try:
            await self.checkpoint()
        except sqlite3.Error as exc:
            # Nothing is lost: the WAL keeps the data, and the next look tries again.
            log.warning("WAL checkpoint of %s failed: %s", self.path, exc)
            return False
        # What the checkpoint itself touched counts as seen; only new writes call for another.
        self._seen = self._wal_state()
        return True

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.look()


def make_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        db_path = url.split(":///", 1)[-1]
        if db_path and db_path != ":memory:":
            Path(db_path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 10})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


class Database:
    """The app's engine and session factory; one per app."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)
        path = url.split(":///", 1)[-1].split("?", 1)[0] if url.startswith("sqlite") else ""
        self.checkpointer = WalCheckpointer(Path(path)) if path and path != ":memory:" else None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on success, rolled back on any error."""
        async with self.sessionmaker() as session, session.begin():
            yield session

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A read-mostly session without an explicit transaction block."""
        async with self.sessionmaker() as session:
            yield session

    async def upgrade(self) -> None:
        """Apply Alembic migrations up to head over this engine's connection."""
        async with self.engine.begin() as conn:
            await conn.run_sync(run_alembic_upgrade)

    async def dispose(self) -> None:
        if self.checkpointer is not None:
            await self.checkpointer.stop()
        await self.engine.dispose()


def alembic_config(connection: Connection | None = None) -> Any:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def run_alembic_upgrade(connection: Connection) -> None:
    from alembic import command

    # "heads": domains may add migration branches; all of them are applied.
    command.upgrade(alembic_config(connection), "heads")
