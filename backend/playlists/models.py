"""Playlist sources and the streams imported from them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from backend.db import Base, UTCDateTime

KINDS = ("m3u_url", "m3u_file", "xtream")


class PlaylistSource(Base):
    __tablename__ = "playlist_source"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    kind: Mapped[str] = mapped_column(String(20))
    url: Mapped[str | None] = mapped_column(Text, nullable=True)
    xc_server: Mapped[str | None] = mapped_column(Text, nullable=True)
    xc_username: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # Encrypted with the app secret (backend.keys.Keyring); never returned in full by the API.
    xc_password_enc: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(500), nullable=True)
    headers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Becomes the TVH network's max streams.
    connection_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    refresh_interval_minutes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Source order: a lower position means a higher failover priority for its streams.
    position: Mapped[int] = mapped_column(Integer, default=0)
    stream_count: Mapped[int] = mapped_column(Integer, default=0)
    last_import_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_import_status: Mapped[str | None] = mapped_column(String(20), nullable=True)
    last_import_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_import_report: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # The original name of the uploaded file of an m3u_file source (the file lives in the data dir).
    upload_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # SHA-256 of the last imported raw content, to skip unchanged downloads.
    content_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Stream(Base):
    """One playlist entry. `stream_key` keeps its id stable across refreshes so channel links survive."""

    __tablename__ = "stream"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("playlist_source.id", ondelete="CASCADE"))
    stream_key: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(500))
    # The name folded for search: lower case, accents and repeated spaces removed (SQLite has no unaccent).
    search_name: Mapped[str] = mapped_column(String(500), default="", server_default="")
    url: Mapped[str] = mapped_column(Text)
    tvg_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    tvg_name: Mapped[str | None] = mapped_column(String(500), nullable=True)
    tvg_logo: Mapped[str | None] = mapped_column(Text, nullable=True)
    tvg_chno: Mapped[str | None] = mapped_column(String(32), nullable=True)
    group_title: Mapped[str | None] = mapped_column(String(255), nullable=True)
    catchup: Mapped[str | None] = mapped_column(String(50), nullable=True)
    catchup_source: Mapped[str | None] = mapped_column(Text, nullable=True)
    catchup_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    headers: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # Everything else the playlist said about the entry (all attributes, VLC options, Kodi props).
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    is_vod: Mapped[bool] = mapped_column(Boolean, default=False)
    provider_stream_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The entry's line in the import that last wrote this row (an entry that only moved keeps its old one).
    line_no: Mapped[int | None] = mapped_column(Integer, nullable=True)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("source_id", "stream_key", name="uq_stream_source_key"),
        Index("ix_stream_source_group", "source_id", "group_title"),
        # The stream browser pages through a source in id order (= the order streams first appeared).
        Index("ix_stream_source_id", "source_id", "id"),
        # Substring search scans this narrow index instead of the wide table rows.
        Index("ix_stream_search_name", "search_name"),
    )
