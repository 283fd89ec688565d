"""Recordings and recurring recording rules."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from backend.db import Base, UTCDateTime

SCHEDULED = "scheduled"
RECORDING = "recording"
COMPLETED = "completed"
FAILED = "failed"
MISSED = "missed"
CANCELLED = "cancelled"
STATUSES = (SCHEDULED, RECORDING, COMPLETED, FAILED, MISSED, CANCELLED)
#: Statuses TVHeadend may still change; the others are final.
ACTIVE = (SCHEDULED, RECORDING)

#: pending_action values: what the user asked for and reconcile has not yet told TVHeadend.
ACTION_CANCEL = "cancel"
ACTION_STOP = "stop"


class RecordingRule(Base):
    """ "Record every (new) episode of X": expanded against the guide into recordings."""

    __tablename__ = "dvr_rule"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    title_pattern: Mapped[str] = mapped_column(Text)
    # "contains" or "regex"; both case-insensitive.
    match_mode: Mapped[str] = mapped_column(String(10), default="contains")
    # TIC channel ids; empty means any channel.
    channel_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # 0 = Monday … 6 = Sunday in the rule's time zone; empty means every day.
    weekdays: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # "HH:MM" window for the programme start in the rule's time zone; wraps past midnight when from > to.
    time_from: Mapped[str | None] = mapped_column(String(5), nullable=True)
    time_to: Mapped[str | None] = mapped_column(String(5), nullable=True)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    new_episodes_only: Mapped[bool] = mapped_column(Boolean, default=False)
    # Keep only the newest N completed recordings of this rule; None keeps all.
    keep_last: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Minutes; None takes the defaults from settings.
    padding_before: Mapped[int | None] = mapped_column(Integer, nullable=True)
    padding_after: Mapped[int | None] = mapped_column(Integer, nullable=True)
    owner_id: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Recording(Base):
    """One recording as TIC sees it; TVHeadend holds the matching DVR entry (found by `marker`)."""

    __tablename__ = "dvr_recording"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Written into the TVH entry's comment, so an entry can be matched back even when the reply to
    # its creation was lost; unique per recording and per installation.
    marker: Mapped[str] = mapped_column(String(64), unique=True)
    channel_id: Mapped[int | None] = mapped_column(
        ForeignKey("channel.id", ondelete="SET NULL"), nullable=True
    )
    # Snapshot, so a recording still says what it was after its channel is gone.
    channel_name: Mapped[str] = mapped_column(String(300))
    # The guide programme it was scheduled from. Programme ids change on every guide import, so this
    # is informational only; rule matching keys on channel + title + episode + time instead.
    programme_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    rule_id: Mapped[int | None] = mapped_column(ForeignKey("dvr_rule.id", ondelete="SET NULL"), nullable=True)
    owner_id: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL"), nullable=True
    )
    title: Mapped[str] = mapped_column(Text)
    sub_title: Mapped[str | None] = mapped_column(Text, nullable=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Normalised episode identity ("s1e4", "ep:<xmltv_ns>", "sub:<subtitle>") for "new episodes only".
    episode_key: Mapped[str | None] = mapped_column(String(300), nullable=True)
    episode_label: Mapped[str | None] = mapped_column(String(100), nullable=True)
    # The programme's own times; padding is added by TVHeadend (start_extra / stop_extra).
    start: Mapped[datetime] = mapped_column(UTCDateTime())
    stop: Mapped[datetime] = mapped_column(UTCDateTime())
    padding_before: Mapped[int] = mapped_column(Integer, default=0)
    padding_after: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(20), default=SCHEDULED)
    status_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    pending_action: Mapped[str | None] = mapped_column(String(10), nullable=True)
    # Times, title or padding changed after the TVH entry was created: reconcile pushes them.
    needs_update: Mapped[bool] = mapped_column(Boolean, default=False)
    # Deleted by the user: hidden everywhere; reconcile removes the TVH entry and file, then the row.
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    tvh_uuid: Mapped[str | None] = mapped_column(String(32), nullable=True)
    tvh_filename: Mapped[str | None] = mapped_column(Text, nullable=True)
    file_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    real_start: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    real_stop: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("ix_dvr_recording_status", "status"),
        Index("ix_dvr_recording_rule", "rule_id"),
        Index("ix_dvr_recording_channel_start", "channel_id", "start"),
        Index("ix_dvr_recording_owner", "owner_id"),
    )
