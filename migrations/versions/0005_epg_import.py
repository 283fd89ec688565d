"""epg import: programme content hash, channel url, upload name

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 12:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("epg_source", schema=None) as batch_op:
        batch_op.add_column(sa.Column("upload_name", sa.String(length=255), nullable=True))
    with op.batch_alter_table("epg_channel", schema=None) as batch_op:
        batch_op.add_column(sa.Column("url", sa.Text(), nullable=True))
    with op.batch_alter_table("programme", schema=None) as batch_op:
        batch_op.add_column(sa.Column("content_hash", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("programme", schema=None) as batch_op:
        batch_op.drop_column("content_hash")
    with op.batch_alter_table("epg_channel", schema=None) as batch_op:
        batch_op.drop_column("url")
    with op.batch_alter_table("epg_source", schema=None) as batch_op:
        batch_op.drop_column("upload_name")
