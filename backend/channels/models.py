"""Channels, their ordered sources (failover priority) and tags."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Column, ForeignKey, Index, Integer, String, Table, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from backend.db import Base, UTCDateTime

channel_tag_link = Table(
    "channel_tag_link",
    Base.metadata,
    Column("channel_id", ForeignKey("channel.id", ondelete="CASCADE"), primary_key=True),
    Column("tag_id", ForeignKey("channel_tag.id", ondelete="CASCADE"), primary_key=True),
)


class ChannelTag(Base):
    __tablename__ = "channel_tag"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    tvh_uuid: Mapped[str | None] = mapped_column(String(32), nullable=True)


class Channel(Base):
    __tablename__ = "channel"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    number: Mapped[int] = mapped_column(Integer, unique=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # The logo as given (provider or user URL); the cached copy is served by TIC.
    logo_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    epg_source_id: Mapped[int | None] = mapped_column(
        ForeignKey("epg_source.id", ondelete="SET NULL"), nullable=True
    )
    # The XMLTV <channel id> within that EPG source.
    epg_channel_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    guide_offset_minutes: Mapped[int] = mapped_column(Integer, default=0)
    # One stable guide id used everywhere (M3U tvg-id, XMLTV channel id, TVH iptv_epgid); never changes.
    guide_id: Mapped[str] = mapped_column(String(255), unique=True)
    tvh_uuid: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_channel_epg", "epg_source_id", "epg_channel_id"),)


class ChannelSource(Base):
    """One way to play a channel: an imported stream or a manual URL. Lower position = tried first."""

    __tablename__ = "channel_source"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channel.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer, default=0)
    # Null when the stream vanished from its playlist; the row stays so the UI can show it.
    stream_id: Mapped[int | None] = mapped_column(ForeignKey("stream.id", ondelete="SET NULL"), nullable=True)
    url: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Snapshot of the stream's name and playlist when linked, to show what went missing.
    label: Mapped[str | None] = mapped_column(String(500), nullable=True)
    playlist_source_id: Mapped[int | None] = mapped_column(
        ForeignKey("playlist_source.id", ondelete="SET NULL"), nullable=True
    )
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    tvh_mux_uuid: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("channel_id", "position", name="uq_channel_source_position"),
        Index("ix_channel_source_stream", "stream_id"),
    )
