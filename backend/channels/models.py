"""Channels, their ordered sources (failover priority), tags and the on-disk logo cache."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
)
from sqlalchemy.orm import Mapped, foreign, mapped_column, relationship

from backend.db import Base, UTCDateTime
from backend.epg.models import EpgChannel, EpgSource
from backend.playlists.models import PlaylistSource, Stream

channel_tag_link = Table(
    "channel_tag_link",
    Base.metadata,
    Column("channel_id", ForeignKey("channel.id", ondelete="CASCADE"), primary_key=True),
    Column("tag_id", ForeignKey("channel_tag.id", ondelete="CASCADE"), primary_key=True),
    # Filtering the lineup by tag starts from the tag.
    Index("ix_channel_tag_link_tag", "tag_id"),
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
    # How the guide mapping was made (tvg_id, tvg_id_ci, name, manual, import) and the match score.
    epg_match_method: Mapped[str | None] = mapped_column(String(20), nullable=True)
    epg_match_score: Mapped[int | None] = mapped_column(Integer, nullable=True)
    guide_offset_minutes: Mapped[int] = mapped_column(Integer, default=0)
    # One stable guide id used everywhere (M3U tvg-id, XMLTV channel id, TVH iptv_epgid); never changes.
    guide_id: Mapped[str] = mapped_column(String(255), unique=True)
    tvh_uuid: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    # Read-only views for loading with selectinload; writes go through the channels service as SQL,
    # and the database's ON DELETE cascades remove sources and tag links with their channel.
    sources: Mapped[list[ChannelSource]] = relationship(
        "ChannelSource",
        order_by="ChannelSource.position",
        lazy="raise",
        viewonly=True,
    )
    tags: Mapped[list[ChannelTag]] = relationship(
        ChannelTag,
        secondary=channel_tag_link,
        order_by=ChannelTag.name,
        lazy="raise",
        viewonly=True,
    )
    epg_source: Mapped[EpgSource | None] = relationship(EpgSource, lazy="raise", viewonly=True)
    epg_channel: Mapped[EpgChannel | None] = relationship(
        EpgChannel,
        primaryjoin=lambda: and_(
            foreign(Channel.epg_source_id) == EpgChannel.source_id,
            foreign(Channel.epg_channel_id) == EpgChannel.xmltv_id,
        ),
        lazy="raise",
        viewonly=True,
        uselist=False,
    )

    __table_args__ = (Index("ix_channel_epg", "epg_source_id", "epg_channel_id"),)


class ChannelSource(Base):
    """One way to play a channel: an imported stream or a manual URL. Lower position = tried first.

    A stream source has `stream_id` and `playlist_source_id` and no `url`; a manual source has only
    `url`. A stream source whose stream vanished (stream_id set to NULL by the foreign key) is
    "missing": it stays so the UI can show it, and outputs skip it.
    """

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

    stream: Mapped[Stream | None] = relationship(Stream, lazy="raise", viewonly=True)
    playlist: Mapped[PlaylistSource | None] = relationship(PlaylistSource, lazy="raise", viewonly=True)

    __table_args__ = (
        UniqueConstraint("channel_id", "position", name="uq_channel_source_position"),
        Index("ix_channel_source_stream", "stream_id"),
    )

    @property
    def missing(self) -> bool:
        """A stream source whose stream is gone (or whose playlist was deleted)."""
        return self.stream_id is None and not self.url


class LogoCache(Base):
    """One logo URL fetched into the data dir; files are named by content hash, so copies are shared."""

    __tablename__ = "logo_cache"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # SHA-256 of the URL: the lookup key (URLs can be longer than an index allows).
    url_hash: Mapped[str] = mapped_column(String(64), unique=True)
    url: Mapped[str] = mapped_column(Text)
    # ok: a cached file exists (it may be older than the last failed refresh); failed: never fetched.
    status: Mapped[str] = mapped_column(String(20))
    content_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    content_type: Mapped[str | None] = mapped_column(String(100), nullable=True)
    size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    fetched_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_logo_cache_checked", "checked_at"),)
