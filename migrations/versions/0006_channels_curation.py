"""channels: guide match info, tag link index, logo cache

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import backend.db


revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("channel", schema=None) as batch_op:
        batch_op.add_column(sa.Column("epg_match_method", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("epg_match_score", sa.Integer(), nullable=True))

    with op.batch_alter_table("channel_tag_link", schema=None) as batch_op:
        batch_op.create_index("ix_channel_tag_link_tag", ["tag_id"], unique=False)

    op.create_table(
        "logo_cache",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("url_hash", sa.String(length=64), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=True),
        sa.Column("content_type", sa.String(length=100), nullable=True),
        sa.Column("size", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("fetched_at", backend.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("checked_at", backend.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_logo_cache")),
        sa.UniqueConstraint("url_hash", name=op.f("uq_logo_cache_url_hash")),
    )
    with op.batch_alter_table("logo_cache", schema=None) as batch_op:
        batch_op.create_index("ix_logo_cache_checked", ["checked_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("logo_cache", schema=None) as batch_op:
        batch_op.drop_index("ix_logo_cache_checked")
    op.drop_table("logo_cache")

    with op.batch_alter_table("channel_tag_link", schema=None) as batch_op:
        batch_op.drop_index("ix_channel_tag_link_tag")

    with op.batch_alter_table("channel", schema=None) as batch_op:
        batch_op.drop_column("epg_match_score")
        batch_op.drop_column("epg_match_method")
