"""Models and migrations agree (the equivalent of `alembic check`) on the database under test."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from backend.db import Base


async def test_models_match_migrations(svc: Any) -> None:
    def diff(connection: Any) -> list[Any]:
        ctx = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(ctx, Base.metadata)

    async with svc.db.engine.connect() as conn:
        changes = await conn.run_sync(diff)
    assert changes == [], f"models and migrations differ; run alembic revision --autogenerate: {changes}"


async def test_sqlite_pragmas(svc: Any) -> None:
    if svc.db.dialect != "sqlite":
        return
    from sqlalchemy import text

    async with svc.db.session() as session:
        assert (await session.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
        assert (await session.execute(text("PRAGMA foreign_keys"))).scalar() == 1
        assert (await session.execute(text("PRAGMA busy_timeout"))).scalar() == 10000
        # Commits leave checkpoints to the background WalCheckpointer.
        assert (await session.execute(text("PRAGMA wal_autocheckpoint"))).scalar() == 0
        assert (await session.execute(text("PRAGMA page_size"))).scalar() == 16384
