"""playlists: upload_name; search_name and browser indexes on stream

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 12:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("playlist_source", schema=None) as batch_op:
        batch_op.add_column(sa.Column("upload_name", sa.String(length=255), nullable=True))
    with op.batch_alter_table("stream", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("search_name", sa.String(length=500), server_default="", nullable=False)
        )
        batch_op.create_index("ix_stream_source_id", ["source_id", "id"], unique=False)
        batch_op.create_index("ix_stream_search_name", ["search_name"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("stream", schema=None) as batch_op:
        batch_op.drop_index("ix_stream_search_name")
        batch_op.drop_index("ix_stream_source_id")
        batch_op.drop_column("search_name")
    with op.batch_alter_table("playlist_source", schema=None) as batch_op:
        batch_op.drop_column("upload_name")
