"""Stage imported rows in a temporary table, then swap them into `stream` in one short transaction."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import JSON, bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection

from backend.db import Database, UTCDateTime
from backend.errors import NotFound
from backend.playlists.worker import COMPARED_COLUMNS, ROW_COLUMNS, STAGE_TABLE

log = logging.getLogger(__name__)

# The SQL below is assembled from the constant column names and a generated table name only (hence
# the S608 waivers); every value travels as a bound parameter or through the driver's COPY.

_JSON_COLUMNS = ("headers", "extra")
_INTEGER_COLUMNS = ("catchup_days", "line_no")
# SQLite keeps this many KiB of pages for the swap (the default is 2 MiB): inserting 100k rows into
# five indexes with a small cache rewrites the same pages again and again. Reset after the swap.
_SQLITE_SWAP_CACHE_KIB = 32768
_SQLITE_STAGE_CACHE_KIB = 8192
# PostgreSQL sorts the new rows into playlist order; 64 MB keeps a 100k-row sort off the disk.
_PG_SWAP_WORK_MEM = "64MB"


@dataclass(slots=True)
class SwapCounts:
    """What the swap changed in `stream` for one source."""

    added: int
    updated: int
    removed: int
    unchanged: int
    total: int


class StreamStage:
    """The staged rows of one import (a table per worker part) on one held connection; swap() them
    into `stream`, or just leave.

    On SQLite the workers wrote each part into a stage file of its own (`files`), attached here; on
    PostgreSQL the parts are temporary tables loaded chunk by chunk with add(). Staging takes no lock
    on `stream`, so readers and other writers carry on; only swap() writes the real table, in one
    transaction. Leaving the context drops the stage whatever happened, so a failed import leaves
    `stream` exactly as it was.
    """

    def __init__(self, db: Database, source_id: int, parts: int = 1, files: list[Path] | None = None) -> None:
        self.db = db
        self.source_id = source_id
        self.sqlite = db.dialect == "sqlite"
        if files is not None and not self.sqlite:
            raise ValueError("stage files are SQLite databases")
        self.files = files
        # Unique names per import: PostgreSQL caches statement plans by their text, and a dropped and
        # re-created table under the same name would invalidate them.
        name = f"tic_stage_{uuid.uuid4().hex[:12]}"
        self.tables = [f"{name}_{part}" for part in range(len(files) if files is not None else parts)]
        self.rows = 0
        self._conn: AsyncConnection | None = None

    async def __aenter__(self) -> StreamStage:
        self._conn = await self.db.engine.connect()
        try:
            await self._create()
        except BaseException:
            await self._conn.close()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        conn = self._conn
        if conn is None:
            return
        self._conn = None
        try:
            if self.sqlite:
                # The staged rows live in this connection's own temp database: closing the connection
                # discards it at once, where dropping 100k staged rows would free them page by page
                # (a few tenths of a second before the import could report). The pool opens a fresh one.
                await conn.invalidate()
                return
            if conn.in_transaction():
                await conn.rollback()
            for part in range(len(self.tables)):
                await conn.exec_driver_sql(f"DROP TABLE IF EXISTS {self._qualified(part)}")
            await conn.commit()
        except Exception as drop_error:
            # The connection may be broken (that may be why we are leaving); the tables die with it.
            log.debug("Could not drop staging tables %s: %s", self.tables, drop_error)
            await conn.invalidate()
        finally:
            await conn.close()

    def _qualified(self, part: int) -> str:
        if self.files is not None:
            return f"stage{part}.{STAGE_TABLE}"
        return f"temp.{self.tables[part]}" if self.sqlite else self.tables[part]

    @property
    def conn(self) -> AsyncConnection:
        if self._conn is None:
            raise RuntimeError("the staging tables are not open")
        return self._conn

    async def _create(self) -> None:
        def sql_type(column: str) -> str:
            if column in _INTEGER_COLUMNS:
                return "INTEGER"
            if column == "is_vod":
                return "BOOLEAN"
            return "TEXT"

        if self.files is not None:
            for part, path in enumerate(self.files):
                await self.conn.exec_driver_sql(f"ATTACH DATABASE ? AS stage{part}", (str(path),))
                # The stage files are throw-away: renumbering writes them without a journal.
                await self.conn.exec_driver_sql(f"PRAGMA stage{part}.journal_mode = OFF")
                await self.conn.exec_driver_sql(f"PRAGMA stage{part}.synchronous = OFF")
                await self.conn.exec_driver_sql(f"PRAGMA stage{part}.cache_size = -{_SQLITE_STAGE_CACHE_KIB}")
            await self.conn.commit()
            return
        columns = ", ".join(f"{c} {sql_type(c)}" for c in ROW_COLUMNS)
        if self.sqlite:
            # Temporary tables live in SQLite's separate temp database: loading them takes no lock on
            # the main database file, so task progress and other writes go on meanwhile.
            await self.conn.exec_driver_sql(f"PRAGMA temp.cache_size = -{_SQLITE_STAGE_CACHE_KIB}")
        for table in self.tables:
            await self.conn.exec_driver_sql(f"CREATE TEMP TABLE {table} ({columns})")
        await self.conn.commit()

    async def add(self, rows: list[tuple[Any, ...]], part: int = 0) -> None:
        """Load one chunk of a part's rows (in playlist order) into that part's staging table."""
        if not rows:
            return
        if self.sqlite:
            insert = (
                f"INSERT INTO {self._qualified(part)} ({', '.join(ROW_COLUMNS)}) "  # noqa: S608
                f"VALUES ({', '.join('?' for _ in ROW_COLUMNS)})"
            )
            await self.conn.exec_driver_sql(insert, rows)
        else:
            raw = await self.conn.get_raw_connection()
            driver: Any = raw.driver_connection
            await driver.copy_records_to_table(self.tables[part], records=rows, columns=ROW_COLUMNS)
        await self.conn.commit()
        self.rows += len(rows)

    async def renumber(self, part: int, offsets: dict[str, int]) -> int:
        """Shift the duplicate numbers of a later part's rows past the copies in earlier parts.

        A worker that parsed a later part of a playlist numbered its copies of a key from 1; offsets
        says how many copies of that key earlier parts had. "key" becomes "key#(offset+1)" and "key#n"
        becomes "key#(offset+n)". Returns how many of the part's keys earlier parts also had.
        """
        conn = self.conn
        table = f"{self.tables[part]}_offsets"
        await conn.exec_driver_sql(f"CREATE TEMP TABLE {table} (base TEXT PRIMARY KEY, n INTEGER)")
        records = list(offsets.items())
        if self.sqlite:
            await conn.exec_driver_sql(f"INSERT INTO temp.{table} (base, n) VALUES (?, ?)", records)  # noqa: S608
        else:
            raw = await conn.get_raw_connection()
            driver: Any = raw.driver_connection
            await driver.copy_records_to_table(table, records=records, columns=("base", "n"))
        await self._shift(part, f"temp.{table}" if self.sqlite else table)
        return len(records)

    async def renumber_from_files(self, part: int) -> int:
        """renumber() for stage files, with the offsets counted in the earlier parts' files.

        A part's first copy of a key has the bare key ("key"), so the bases of a part are its keys
        without "#"; the copies an earlier part has are "key" and the range from "key#" to "key$"
        (which the workers' key index finds; an earlier part already renumbered has only the range).
        Keys never hold "#" otherwise.
        """
        table = f"temp.{self.tables[part]}_offsets"
        counts = " + ".join(
            f"(SELECT count(*) FROM {self._qualified(p)} e WHERE e.stream_key = b.stream_key "  # noqa: S608
            f"OR (e.stream_key > b.stream_key || '#' AND e.stream_key < b.stream_key || '$'))"
            for p in range(part)
        )
        await self.conn.exec_driver_sql(f"CREATE TABLE {table} (base TEXT PRIMARY KEY, n INTEGER)")
        result = await self.conn.exec_driver_sql(
            f"INSERT INTO {table} (base, n) SELECT base, n FROM ("  # noqa: S608
            f"SELECT b.stream_key AS base, {counts} AS n "
            f"FROM {self._qualified(part)} b WHERE instr(b.stream_key, '#') = 0) WHERE n > 0"
        )
        await self._shift(part, table)
        return int(getattr(result, "rowcount", 0) or 0)

    async def _shift(self, part: int, offsets_table: str) -> None:
        conn = self.conn
        staged = self._qualified(part)
        key = f"{staged}.stream_key"
        if self.sqlite:
            base = f"(CASE WHEN instr({key}, '#') > 0 THEN substr({key}, 1, instr({key}, '#') - 1) ELSE {key} END)"
            number = f"(CASE WHEN instr({key}, '#') > 0 THEN CAST(substr({key}, instr({key}, '#') + 1) AS INTEGER) ELSE 1 END)"
        else:
            base = f"split_part({key}, '#', 1)"
            number = f"(CASE WHEN strpos({key}, '#') > 0 THEN CAST(split_part({key}, '#', 2) AS INTEGER) ELSE 1 END)"
        await conn.exec_driver_sql(
            f"UPDATE {staged} SET stream_key = o.base || '#' || CAST(o.n + {number} AS TEXT) "  # noqa: S608
            f"FROM {offsets_table} o WHERE o.base = {base}"
        )
        await conn.exec_driver_sql(f"DROP TABLE {offsets_table}")
        await conn.commit()

    async def swap(self, now: datetime, outcome: dict[str, Any]) -> SwapCounts:
        """Make `stream` for this source equal to the staged rows, atomically; record the outcome.

        outcome holds the playlist_source values to set in the same transaction (last_import_*,
        content_sha256); the report gets the counts added.
        """
        conn = self.conn
        started = time.monotonic()
        existing = int(
            (
                await conn.execute(
                    text("SELECT count(*) FROM stream WHERE source_id = :sid"), {"sid": self.source_id}
                )
            ).scalar_one()
        )
        await conn.commit()
        if existing and self.files is None:
            # Only a refresh compares keys; a first import goes straight to the insert. (The workers
            # index their stage files themselves.)
            for table in self.tables:
                await conn.exec_driver_sql(f"CREATE UNIQUE INDEX {table}_key ON {table} (stream_key)")
                if not self.sqlite:
                    await conn.exec_driver_sql(f"ANALYZE {table}")
            await conn.commit()
        if self.sqlite:
            await conn.exec_driver_sql(f"PRAGMA cache_size = -{_SQLITE_SWAP_CACHE_KIB}")
        params = {"sid": self.source_id, "now": now}
        try:
            # On SQLite the first statement must be a write: it takes the write lock before the
            # transaction reads anything, so it cannot fail on a stale snapshot.
            claimed = await self._execute(
                "UPDATE playlist_source SET stream_count = :n WHERE id = :sid", {**params, "n": self.rows}
            )
            if claimed == 0:
                raise NotFound("The playlist was deleted while it was importing", code="PLAYLIST_NOT_FOUND")
            if not self.sqlite:
                await conn.exec_driver_sql(f"SET LOCAL work_mem = '{_PG_SWAP_WORK_MEM}'")
            updated = removed = added = 0
            parts = range(len(self.tables))
            if existing:
                # Unchanged rows are not touched, not even when they only moved in the playlist: on a
                # refresh with a few changes near the top, that would rewrite almost every row.
                for part in parts:
                    updated += await self._execute(self._update_changed_sql(part), params)
                staged = " AND ".join(
                    f"NOT EXISTS (SELECT 1 FROM {self._qualified(p)} s WHERE s.stream_key = stream.stream_key)"  # noqa: S608
                    for p in parts
                )
                removed = await self._execute(
                    f"DELETE FROM stream WHERE source_id = :sid AND {staged}",  # noqa: S608
                    params,
                )
            for part in parts:
                added += await self._execute(self._insert_sql(part, existing=bool(existing)), params)
            counts = SwapCounts(
                added=added,
                updated=updated,
                removed=removed,
                unchanged=self.rows - added - updated,
                total=self.rows,
            )
            report = {**outcome.get("last_import_report", {}), **_counts(counts)}
            await self._execute(
                "UPDATE playlist_source SET last_import_at = :now, last_import_status = 'succeeded', "
                "last_import_error = NULL, last_import_report = :report, content_sha256 = :sha WHERE id = :sid",
                {**params, "report": report, "sha": outcome.get("content_sha256")},
            )
            committing = time.monotonic()
            await conn.commit()
            committed = time.monotonic()
        except BaseException:
            await conn.rollback()
            raise
        log.info(
            "Swapped %d streams into playlist %d in %.2f s (commit %.2f s): %s",
            self.rows,
            self.source_id,
            time.monotonic() - started,
            committed - committing,
            _counts(counts),
        )
        return counts

    async def _execute(self, sql: str, params: dict[str, Any]) -> int:
        statement = text(sql)
        if "now" in params and ":now" in sql:
            statement = statement.bindparams(bindparam("now", type_=UTCDateTime()))
        if ":report" in sql:
            statement = statement.bindparams(bindparam("report", type_=JSON()))
        result = await self.conn.execute(statement, {k: v for k, v in params.items() if f":{k}" in sql})
        return int(getattr(result, "rowcount", 0) or 0)

    def _value(self, column: str) -> str:
        """The staged value of a column as `stream` takes it (the workers cut values to the column
        widths already); JSON is cast on PostgreSQL."""
        if column in _JSON_COLUMNS and not self.sqlite:
            return f"CAST(s.{column} AS JSON)"
        return f"s.{column}"

    def _differs(self, column: str) -> str:
        """SQL that is true when a stored stream's column differs from the staged value (NULLs equal)."""
        if self.sqlite:
            return f"stream.{column} IS NOT s.{column}"
        if column in _JSON_COLUMNS:
            # PostgreSQL's json type keeps the text it was given, and has no equality operator.
            return f"CAST(stream.{column} AS TEXT) IS DISTINCT FROM s.{column}"
        return f"stream.{column} IS DISTINCT FROM s.{column}"

    def _update_changed_sql(self, part: int) -> str:
        assignments = ", ".join(f"{c} = {self._value(c)}" for c in ROW_COLUMNS if c != "stream_key")
        # The comparison runs in the database, on the rows whose keys match: cheaper than a hash of
        # every row built in Python, and it cannot collide.
        changed = " OR ".join(self._differs(c) for c in COMPARED_COLUMNS)
        return (
            f"UPDATE stream SET {assignments}, updated_at = :now FROM {self._qualified(part)} s "  # noqa: S608
            "WHERE stream.source_id = :sid AND stream.stream_key = s.stream_key "
            f"AND ({changed})"
        )

    def _insert_sql(self, part: int, *, existing: bool) -> str:
        columns = ", ".join(ROW_COLUMNS)
        values = ", ".join(self._value(c) for c in ROW_COLUMNS)
        where = (
            " WHERE NOT EXISTS (SELECT 1 FROM stream t WHERE t.source_id = :sid AND t.stream_key = s.stream_key)"
            if existing
            else ""
        )
        # New streams get ids in playlist order: the parts are inserted in order, and SQLite reads a
        # staging table in insertion order for free. PostgreSQL sorts (in memory: the swap raises
        # work_mem for its transaction), since renumbered rows move in its heap.
        order = " ORDER BY s.rowid" if self.sqlite else " ORDER BY s.line_no"
        return (
            f"INSERT INTO stream (source_id, {columns}, first_seen_at, updated_at) "  # noqa: S608
            f"SELECT :sid, {values}, :now, :now FROM {self._qualified(part)} s{where}{order}"
        )


def _counts(counts: SwapCounts) -> dict[str, int]:
    return {
        "added": counts.added,
        "updated": counts.updated,
        "removed": counts.removed,
        "unchanged": counts.unchanged,
        "total": counts.total,
    }
