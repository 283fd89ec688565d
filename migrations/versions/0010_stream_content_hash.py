"""stream: drop content_hash; a refresh compares the columns themselves

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23 23:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The import used to hash every entry's fields in Python (about a tenth of a parse worker's time
    # on a 100k-entry playlist) so that a refresh could skip unchanged rows; the swap now compares the
    # columns of the rows whose keys match, in the database.
    with op.batch_alter_table("stream", schema=None) as batch_op:
        batch_op.drop_column("content_hash")


def downgrade() -> None:
    # Rows get an empty hash: the older code's next refresh rewrites each of them once.
    with op.batch_alter_table("stream", schema=None) as batch_op:
        batch_op.add_column(sa.Column("content_hash", sa.String(length=40), nullable=False, server_default=""))
