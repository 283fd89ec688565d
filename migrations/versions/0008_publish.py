"""publish: managed TVHeadend objects, publish runs, users' TVHeadend logins

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import backend.db


revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tvh_managed_object",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("tic_key", sa.String(length=100), nullable=False),
        sa.Column("tvh_uuid", sa.String(length=32), nullable=False),
        sa.Column("fields_digest", sa.JSON(), nullable=False),
        sa.Column("updated_at", backend.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tvh_managed_object")),
        sa.UniqueConstraint("kind", "tic_key", name="uq_tvh_managed_object_kind_key"),
    )
    op.create_table(
        "tvh_publish_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_run_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("started_at", backend.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", backend.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("operations", sa.JSON(), nullable=False),
        sa.Column("drift", sa.JSON(), nullable=False),
        sa.Column("problems", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("read_calls", sa.Integer(), nullable=False),
        sa.Column("write_calls", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tvh_publish_run")),
    )
    op.create_table(
        "tvh_user_login",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("tvh_username", sa.String(length=64), nullable=False),
        sa.Column("password_enc", sa.LargeBinary(), nullable=False),
        sa.Column("access_uuid", sa.String(length=32), nullable=True),
        sa.Column("passwd_uuid", sa.String(length=32), nullable=True),
        sa.Column("sync_error", sa.Text(), nullable=True),
        sa.Column("synced_at", backend.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", backend.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("rotated_at", backend.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name=op.f("fk_tvh_user_login_user_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tvh_user_login")),
        sa.UniqueConstraint("tvh_username", name=op.f("uq_tvh_user_login_tvh_username")),
        sa.UniqueConstraint("user_id", name=op.f("uq_tvh_user_login_user_id")),
    )


def downgrade() -> None:
    op.drop_table("tvh_user_login")
    op.drop_table("tvh_publish_run")
    op.drop_table("tvh_managed_object")
