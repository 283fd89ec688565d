"""Publish bookkeeping: what TIC last published to TVHeadend, each publish run, and TVH logins of users."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from backend.db import Base, UTCDateTime


class TvhManagedObject(Base):
    """One TVHeadend object TIC manages: its uuid and a digest of each field TIC last wrote to it.

    `kind` is network, mux, channel or tag; `tic_key` names the TIC row it stands for ("source:3",
    "manual", "marker", or a channel, channel-source or tag id). A field that differs in TVHeadend while
    TIC still wants what it wrote last is drift (changed in TVHeadend), not a lineup change (in TIC).
    """

    __tablename__ = "tvh_managed_object"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    tic_key: Mapped[str] = mapped_column(String(100))
    tvh_uuid: Mapped[str] = mapped_column(String(32))
    fields_digest: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (UniqueConstraint("kind", "tic_key", name="uq_tvh_managed_object_kind_key"),)


class TvhPublishRun(Base):
    """One publish (or its failure): counts, the plan it applied, the drift it repaired, what is pending."""

    __tablename__ = "tvh_publish_run"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_run_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str] = mapped_column(String(20))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The applied operations (capped), the drift repaired and the problems found (muxes without services).
    operations: Mapped[list[Any]] = mapped_column(JSON, default=list)
    drift: Mapped[list[Any]] = mapped_column(JSON, default=list)
    problems: Mapped[list[Any]] = mapped_column(JSON, default=list)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    read_calls: Mapped[int] = mapped_column(Integer, default=0)
    write_calls: Mapped[int] = mapped_column(Integer, default=0)


class TvhUserLogin(Base):
    """A TIC user's own TVHeadend login (access + password entry) for HTSP clients such as Kodi.

    The password is distinct from the stream key, kept encrypted with the app secret so a later sync
    can put it back, and shown to its owner only when it is created or rotated. `user_id` becomes NULL
    when the TIC user is deleted; the next sync then removes the login from TVHeadend and this row.
    """

    __tablename__ = "tvh_user_login"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL"), nullable=True, unique=True
    )
    tvh_username: Mapped[str] = mapped_column(String(64), unique=True)
    password_enc: Mapped[bytes] = mapped_column(LargeBinary)
    access_uuid: Mapped[str | None] = mapped_column(String(32), nullable=True)
    passwd_uuid: Mapped[str | None] = mapped_column(String(32), nullable=True)
    sync_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    rotated_at: Mapped[datetime] = mapped_column(UTCDateTime())
