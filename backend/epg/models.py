"""EPG (XMLTV) sources, their channels and programmes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from backend.db import Base, UTCDateTime

KINDS = ("xmltv_url", "xmltv_file")

# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit id for big guides.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class EpgSource(Base):
    __tablename__ = "epg_source"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    kind: Mapped[str] = mapped_column(String(20))
    url: Mapped[str | None] = mapped_column(Text, nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(500), nullable=True)
    refresh_interval_minutes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    past_days: Mapped[int] = mapped_column(Integer, default=1)
    future_days: Mapped[int] = mapped_column(Integer, default=14)
    preferred_language: Mapped[str | None] = mapped_column(String(20), nullable=True)
    channel_count: Mapped[int] = mapped_column(Integer, default=0)
    programme_count: Mapped[int] = mapped_column(Integer, default=0)
    last_import_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_import_status: Mapped[str | None] = mapped_column(String(20), nullable=True)
    last_import_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_import_report: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    content_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The file name an admin uploaded for an xmltv_file source (the file itself lives in the data dir).
    upload_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class EpgChannel(Base):
    __tablename__ = "epg_channel"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("epg_source.id", ondelete="CASCADE"))
    # The XMLTV <channel id>, as written in the guide.
    xmltv_id: Mapped[str] = mapped_column(String(255))
    # [[name, lang or null], ...] in document order.
    display_names: Mapped[list[Any]] = mapped_column(JSON, default=list)
    icon: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The channel's first <url>, usually the broadcaster's web site.
    url: Mapped[str | None] = mapped_column(Text, nullable=True)
    number: Mapped[str | None] = mapped_column(String(32), nullable=True)
    programme_count: Mapped[int] = mapped_column(Integer, default=0)
    first_start: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_stop: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (UniqueConstraint("source_id", "xmltv_id", name="uq_epg_channel_source_xmltv"),)


class Programme(Base):
    """One guide entry; start/stop are indexed UTC instants."""

    __tablename__ = "programme"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("epg_source.id", ondelete="CASCADE"))
    xmltv_channel_id: Mapped[str] = mapped_column(String(255))
    start: Mapped[datetime] = mapped_column(UTCDateTime())
    stop: Mapped[datetime] = mapped_column(UTCDateTime())
    title: Mapped[str] = mapped_column(Text)
    sub_title: Mapped[str | None] = mapped_column(Text, nullable=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    categories: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    episode_num: Mapped[str | None] = mapped_column(String(100), nullable=True)
    season: Mapped[int | None] = mapped_column(Integer, nullable=True)
    episode: Mapped[int | None] = mapped_column(Integer, nullable=True)
    icon: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Credits, ratings, flags (new, premiere, live, previously-shown) and other-language variants.
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # A 64-bit digest of everything above: a refresh keeps rows whose digest is unchanged and only
    # deletes and inserts the programmes that differ.
    content_hash: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    __table_args__ = (
        Index("ix_programme_channel_start", "source_id", "xmltv_channel_id", "start"),
        Index("ix_programme_start_stop", "start", "stop"),
    )


#: What a programme says (channel, times and content), without ids: the columns the guide grid, the
#: guide search and the XMLTV output read as plain rows.
PROGRAMME_CONTENT_COLUMNS = (
    Programme.xmltv_channel_id,
    Programme.start,
    Programme.stop,
    Programme.title,
    Programme.sub_title,
    Programme.description,
    Programme.categories,
    Programme.episode_num,
    Programme.season,
    Programme.episode,
    Programme.icon,
    Programme.extra,
)
