"""stream: drop the tvg_id index, which no query uses and every import paid for

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23 20:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Streams are matched to guides in Python (backend.channels.matching) and found by name, group or
    # source; nothing looks a stream up by tvg_id. Each index costs every import of 100k streams about
    # a tenth of a second.
    with op.batch_alter_table("stream", schema=None) as batch_op:
        batch_op.drop_index("ix_stream_tvg_id")


def downgrade() -> None:
    with op.batch_alter_table("stream", schema=None) as batch_op:
        batch_op.create_index("ix_stream_tvg_id", ["tvg_id"], unique=False)
