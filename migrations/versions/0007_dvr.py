"""dvr: recordings and recurring recording rules

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 12:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import backend.db


revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dvr_rule",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("title_pattern", sa.Text(), nullable=False),
        sa.Column("match_mode", sa.String(length=10), nullable=False),
        sa.Column("channel_ids", sa.JSON(), nullable=False),
        sa.Column("weekdays", sa.JSON(), nullable=False),
        sa.Column("time_from", sa.String(length=5), nullable=True),
        sa.Column("time_to", sa.String(length=5), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("new_episodes_only", sa.Boolean(), nullable=False),
        sa.Column("keep_last", sa.Integer(), nullable=True),
        sa.Column("padding_before", sa.Integer(), nullable=True),
        sa.Column("padding_after", sa.Integer(), nullable=True),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("created_at", backend.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", backend.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["user_account.id"],
            name=op.f("fk_dvr_rule_owner_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dvr_rule")),
    )
    op.create_table(
        "dvr_recording",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("marker", sa.String(length=64), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=True),
        sa.Column("channel_name", sa.String(length=300), nullable=False),
        sa.Column("programme_id", sa.BigInteger(), nullable=True),
        sa.Column("rule_id", sa.Integer(), nullable=True),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("sub_title", sa.Text(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("episode_key", sa.String(length=300), nullable=True),
        sa.Column("episode_label", sa.String(length=100), nullable=True),
        sa.Column("start", backend.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("stop", backend.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("padding_before", sa.Integer(), nullable=False),
        sa.Column("padding_after", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("pending_action", sa.String(length=10), nullable=True),
        sa.Column("needs_update", sa.Boolean(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("tvh_uuid", sa.String(length=32), nullable=True),
        sa.Column("tvh_filename", sa.Text(), nullable=True),
        sa.Column("file_size", sa.BigInteger(), nullable=True),
        sa.Column("real_start", backend.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("real_stop", backend.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", backend.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", backend.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["channel.id"],
            name=op.f("fk_dvr_recording_channel_id_channel"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["user_account.id"],
            name=op.f("fk_dvr_recording_owner_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["rule_id"],
            ["dvr_rule.id"],
            name=op.f("fk_dvr_recording_rule_id_dvr_rule"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dvr_recording")),
        sa.UniqueConstraint("marker", name=op.f("uq_dvr_recording_marker")),
    )
    with op.batch_alter_table("dvr_recording", schema=None) as batch_op:
        batch_op.create_index("ix_dvr_recording_channel_start", ["channel_id", "start"], unique=False)
        batch_op.create_index("ix_dvr_recording_owner", ["owner_id"], unique=False)
        batch_op.create_index("ix_dvr_recording_rule", ["rule_id"], unique=False)
        batch_op.create_index("ix_dvr_recording_status", ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("dvr_recording", schema=None) as batch_op:
        batch_op.drop_index("ix_dvr_recording_status")
        batch_op.drop_index("ix_dvr_recording_rule")
        batch_op.drop_index("ix_dvr_recording_owner")
        batch_op.drop_index("ix_dvr_recording_channel_start")
    op.drop_table("dvr_recording")
    op.drop_table("dvr_rule")
