"""Where an import's rows wait (a private SQLite file, or PostgreSQL temp tables) and the one-transaction swap."""

# The stages run in import workers, with their own event loop (asyncpg needs one), where blocking
# SQLite calls stall nothing else; their SQL is assembled from constant column lists, never from
# input. Hence these rules are off here.
# ruff: noqa: S608

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.epg.rows import CHANNEL_COLUMNS, PROGRAMME_COLUMNS
from backend.errors import NotFound

#: SQLite page cache of the swap connection (KiB). The swap inserts into two indexes at random
#: places; with the indexes in cache each page is written once at commit instead of spilling.
SWAP_CACHE_KIB = 32 * 1024
#: Page cache for the attached stage during the swap, where a refresh looks up every kept row.
STAGE_CACHE_KIB = 16 * 1024

# --- the stages ------------------------------------------------------------------------------------


@dataclass
class SwapResult:
    inserted: int
    deleted: int
    channels: int


#: Builds the epg_source values of the swap once its row counts are known (inside its transaction).
SourceValues = Callable[[SwapResult], tuple[Any, ...]]


def _swap_statements(sid: str, sp: str, sc: str, had_rows: bool) -> list[str]:
    """The SQL of the swap, shared by SQLite and PostgreSQL; `sid` is the source id placeholder."""
    cols = ", ".join(PROGRAMME_COLUMNS)
    scols = ", ".join(f"s.{c}" for c in PROGRAMME_COLUMNS)
    ccols = ", ".join(CHANNEL_COLUMNS)
    sccols = ", ".join(f"s.{c}" for c in CHANNEL_COLUMNS)
    statements = []
    if had_rows:
        # Keep every programme whose content is unchanged; drop the rest; add what is new. A daily
        # refresh so touches a day's worth of rows instead of rewriting the whole guide.
        statements.append(
            f"DELETE FROM programme WHERE source_id = {sid} AND NOT EXISTS ("
            f"SELECT 1 FROM {sp} s WHERE s.xmltv_channel_id = programme.xmltv_channel_id "
            "AND s.start = programme.start AND s.content_hash = programme.content_hash)"
        )
        statements.append(
            f"INSERT INTO programme (source_id, {cols}) SELECT {sid}, {scols} FROM {sp} s WHERE NOT EXISTS ("
            f"SELECT 1 FROM programme p WHERE p.source_id = {sid} AND p.xmltv_channel_id = s.xmltv_channel_id "
            "AND p.start = s.start AND p.content_hash = s.content_hash)"
        )
    else:
        statements.append("")
        statements.append(f"INSERT INTO programme (source_id, {cols}) SELECT {sid}, {scols} FROM {sp} s")
    statements += [
        f"DELETE FROM epg_channel WHERE source_id = {sid} AND xmltv_id NOT IN (SELECT xmltv_id FROM {sc})",
        "UPDATE epg_channel SET "
        + ", ".join(f"{c} = s.{c}" for c in CHANNEL_COLUMNS[1:])
        + f" FROM {sc} s WHERE epg_channel.source_id = {sid} AND epg_channel.xmltv_id = s.xmltv_id",
        f"INSERT INTO epg_channel (source_id, {ccols}) SELECT {sid}, {sccols} FROM {sc} s WHERE NOT EXISTS ("
        f"SELECT 1 FROM epg_channel c WHERE c.source_id = {sid} AND c.xmltv_id = s.xmltv_id)",
    ]
    return statements


_SOURCE_UPDATE = (
    "UPDATE epg_source SET channel_count = {p[0]}, programme_count = {p[1]}, content_sha256 = {p[2]}, "
    "last_import_at = {p[3]}, last_import_status = 'succeeded', last_import_error = NULL, "
    "last_import_report = {p[4]}, updated_at = {p[3]} WHERE id = {p[5]}"
)


class SqliteStage:
    """A private SQLite file for the staged rows, attached to the live database for the swap.

    Loading it never touches the live database, so the app's single writer is free the whole time;
    the swap is then one transaction on the live database.
    """

    def __init__(self, database: str, stage_path: Path) -> None:
        self.database = database
        self.path = stage_path
        self.conn = sqlite3.connect(stage_path, isolation_level=None)
        # A throw-away file: no journal, no syncs. A crash loses it, and the import starts over.
        self.conn.execute("PRAGMA journal_mode=OFF")
        self.conn.execute("PRAGMA synchronous=OFF")
        self.conn.execute(
            "CREATE TABLE stage_programme (xmltv_channel_id TEXT NOT NULL, start DATETIME NOT NULL, stop DATETIME NOT NULL, "
            "title TEXT NOT NULL, sub_title TEXT, description TEXT, categories TEXT, episode_num TEXT, "
            "season INTEGER, episode INTEGER, icon TEXT, extra TEXT, content_hash INTEGER)"
        )
        self.conn.execute(
            "CREATE TABLE stage_channel (xmltv_id TEXT NOT NULL, display_names TEXT NOT NULL, icon TEXT, url TEXT, "
            "number TEXT, programme_count INTEGER NOT NULL, first_start DATETIME, last_stop DATETIME)"
        )
        self.conn.execute("BEGIN")
        marks = ", ".join("?" * len(PROGRAMME_COLUMNS))
        self._insert = f"INSERT INTO stage_programme ({', '.join(PROGRAMME_COLUMNS)}) VALUES ({marks})"

    async def add(self, rows: list[tuple[Any, ...]]) -> None:
        self.conn.executemany(self._insert, rows)

    async def reset(self) -> None:
        """Empty the stage, to read the guide again from the start."""
        self.conn.execute("DELETE FROM stage_programme")

    async def drop_part(self, other: str) -> None:
        """Forget a second half's stage (its file goes with the work folder)."""

    async def merge(self, other: str) -> None:
        """Append the programmes another process staged (the second half of the guide)."""
        self.conn.execute("COMMIT")
        self.conn.execute("ATTACH DATABASE ? AS part", (other,))
        self.conn.execute("BEGIN")
        columns = ", ".join(PROGRAMME_COLUMNS)
        self.conn.execute(
            f"INSERT INTO stage_programme ({columns}) SELECT {columns} FROM part.stage_programme"
        )
        self.conn.execute("COMMIT")
        self.conn.execute("DETACH DATABASE part")
        self.conn.execute("BEGIN")

    def close(self) -> None:
        """Close the stage after a failed parse; the file goes with the import's work folder."""
        self.conn.close()

    async def finish(self, channels: list[tuple[Any, ...]], index: bool) -> None:
        marks = ", ".join("?" * len(CHANNEL_COLUMNS))
        self.conn.executemany(
            f"INSERT INTO stage_channel ({', '.join(CHANNEL_COLUMNS)}) VALUES ({marks})", channels
        )
        self.conn.execute("COMMIT")
        if index:
            self.conn.execute(
                "CREATE INDEX stage_programme_key ON stage_programme (xmltv_channel_id, start, content_hash)"
            )
        self.conn.close()

    async def had_rows(self, source_id: int) -> bool:
        conn = sqlite3.connect(self.database, timeout=30)
        try:
            return (
                conn.execute("SELECT 1 FROM programme WHERE source_id = ? LIMIT 1", (source_id,)).fetchone()
                is not None
            )
        finally:
            conn.close()

    async def swap(self, source_id: int, source_values: SourceValues, had_rows: bool) -> SwapResult:
        conn = sqlite3.connect(self.database, timeout=30, isolation_level=None)
        try:
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute(f"PRAGMA cache_size=-{SWAP_CACHE_KIB}")
            # Like the app's own connections: the commit leaves the WAL to the app's checkpointer
            # (backend.db.WalCheckpointer) instead of copying the new guide into the file itself.
            conn.execute("PRAGMA wal_autocheckpoint=0")
            conn.execute("ATTACH DATABASE ? AS stage", (str(self.path),))
            conn.execute(f"PRAGMA stage.cache_size=-{STAGE_CACHE_KIB}")
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = self._swap(conn, source_id, source_values, had_rows)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("DETACH DATABASE stage")
            return result
        finally:
            conn.close()

    def _swap(
        self, conn: sqlite3.Connection, source_id: int, source_values: SourceValues, had_rows: bool
    ) -> SwapResult:
        if conn.execute("SELECT 1 FROM epg_source WHERE id = ?", (source_id,)).fetchone() is None:
            raise NotFound(
                "The EPG source was deleted while its guide was being imported", code="EPG_NOT_FOUND"
            )
        # The decision taken before the lock is rechecked under it: another writer may have run.
        had_rows = (
            had_rows
            or conn.execute("SELECT 1 FROM programme WHERE source_id = ? LIMIT 1", (source_id,)).fetchone()
            is not None
        )
        counts = []
        for statement in _swap_statements("?1", "stage.stage_programme", "stage.stage_channel", had_rows):
            if not statement:
                counts.append(0)
                continue
            cursor = conn.execute(statement, (source_id,))
            counts.append(max(cursor.rowcount, 0))
        result = SwapResult(inserted=counts[1], deleted=counts[0], channels=counts[4] + counts[3])
        conn.execute(_SOURCE_UPDATE.format(p=[f"?{i}" for i in range(1, 7)]), source_values(result))
        return result


class PostgresStage:
    """Session temp tables filled with binary COPY, then one transaction swaps them into the live tables.

    The second half of a guide read in two processes goes to an unlogged table of its own instead
    (a temp table is visible to its session only), which the first merges and drops.
    """

    def __init__(self, conn: Any, table: str) -> None:
        self.conn = conn
        self.table = table

    @classmethod
    async def open(cls, database_url: str, part_table: str | None = None) -> PostgresStage:
        import asyncpg

        conn = await asyncpg.connect(driver_url(database_url, "postgresql"))
        columns = (
            "(xmltv_channel_id varchar(255) NOT NULL, start timestamptz NOT NULL, "
            "stop timestamptz NOT NULL, title text NOT NULL, sub_title text, description text, categories json, "
            "episode_num varchar(100), season integer, episode integer, icon text, extra json, content_hash bigint)"
        )
        if part_table is not None:
            await conn.execute(f"CREATE UNLOGGED TABLE {part_table} {columns}")
            return cls(conn, part_table)
        await conn.execute(f"CREATE TEMP TABLE stage_programme {columns}")
        await conn.execute(
            "CREATE TEMP TABLE stage_channel (xmltv_id varchar(255) NOT NULL, display_names json NOT NULL, "
            "icon text, url text, number varchar(32), programme_count integer NOT NULL, "
            "first_start timestamptz, last_stop timestamptz)"
        )
        # Part tables left by a worker that was killed: imports run one at a time, so none is in use.
        stale = await conn.fetch("SELECT tablename FROM pg_tables WHERE tablename LIKE 'epg_stage_part_%'")
        for row in stale:
            await conn.execute(f'DROP TABLE IF EXISTS "{row["tablename"]}"')
        return cls(conn, "stage_programme")

    async def add(self, rows: list[tuple[Any, ...]]) -> None:
        await self.conn.copy_records_to_table(self.table, records=rows, columns=PROGRAMME_COLUMNS)

    async def reset(self) -> None:
        await self.conn.execute("TRUNCATE stage_programme")

    async def drop_part(self, other: str) -> None:
        await self.conn.execute(f"DROP TABLE IF EXISTS {other}")

    async def merge(self, other: str) -> None:
        columns = ", ".join(PROGRAMME_COLUMNS)
        await self.conn.execute(f"INSERT INTO stage_programme ({columns}) SELECT {columns} FROM {other}")
        await self.conn.execute(f"DROP TABLE {other}")

    async def finish(self, channels: list[tuple[Any, ...]], index: bool) -> None:
        await self.conn.copy_records_to_table("stage_channel", records=channels, columns=CHANNEL_COLUMNS)
        if index:
            await self.conn.execute("CREATE INDEX ON stage_programme (xmltv_channel_id, start)")
        # Temp tables have no statistics until analysed; without them the anti-joins plan badly.
        await self.conn.execute("ANALYZE stage_programme")
        await self.conn.execute("ANALYZE stage_channel")

    async def had_rows(self, source_id: int) -> bool:
        found = await self.conn.fetchval("SELECT 1 FROM programme WHERE source_id = $1 LIMIT 1", source_id)
        return found is not None

    async def swap(self, source_id: int, source_values: SourceValues, had_rows: bool) -> SwapResult:
        async with self.conn.transaction():
            # Serialise imports of one source (and meet a concurrent delete of it) on its row.
            if (
                await self.conn.fetchval("SELECT 1 FROM epg_source WHERE id = $1 FOR UPDATE", source_id)
                is None
            ):
                raise NotFound(
                    "The EPG source was deleted while its guide was being imported", code="EPG_NOT_FOUND"
                )
            had_rows = had_rows or await self.had_rows(source_id)
            counts = []
            for statement in _swap_statements("$1", "stage_programme", "stage_channel", had_rows):
                if not statement:
                    counts.append(0)
                    continue
                status = await self.conn.execute(statement, source_id)
                counts.append(int(status.rsplit(" ", 1)[-1]))
            result = SwapResult(inserted=counts[1], deleted=counts[0], channels=counts[4] + counts[3])
            await self.conn.execute(
                _SOURCE_UPDATE.format(p=[f"${i}" for i in range(1, 7)]), *source_values(result)
            )
        return result

    async def close(self) -> None:
        await self.conn.close()


def driver_url(database_url: str, kind: str) -> str:
    """What the bare driver takes from the app's SQLAlchemy URL: the SQLite file path, or a
    postgresql:// DSN for asyncpg. (Importing SQLAlchemy just to parse it would add half a second
    to every worker's start.)"""
    _scheme, sep, rest = database_url.partition("://")
    if not sep:
        raise ValueError("not a database URL")
    if kind == "sqlite":
        # sqlite+aiosqlite:///relative/path or sqlite+aiosqlite:////absolute/path
        return rest[1:].split("?", 1)[0]
    return f"postgresql://{rest}"
