"""Request and response models of the playlists API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from backend.schemas import RequestModel

Kind = Literal["m3u_url", "m3u_file", "xtream"]


class PlaylistIn(RequestModel):
    """A new playlist source. m3u_url needs url; xtream needs xc_server, xc_username and xc_password;
    m3u_file gets its file through POST /tic-api/playlists/<id>/upload."""

    name: str
    kind: Kind
    enabled: bool = True
    url: str | None = None
    xc_server: str | None = None
    xc_username: str | None = None
    xc_password: str | None = None
    user_agent: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    connection_limit: int | None = None
    refresh_interval_minutes: int | None = None


class PlaylistPatch(RequestModel):
    """Fields to change; omitted fields stay. xc_password "********" (the mask) or omitted keeps it."""

    name: str | None = None
    kind: Kind | None = None
    enabled: bool | None = None
    url: str | None = None
    xc_server: str | None = None
    xc_username: str | None = None
    xc_password: str | None = None
    user_agent: str | None = None
    headers: dict[str, str] | None = None
    connection_limit: int | None = None
    refresh_interval_minutes: int | None = None


class PlaylistOut(BaseModel):
    id: int
    name: str
    enabled: bool
    kind: str
    url: str | None
    xc_server: str | None
    xc_username: str | None
    #: "********" when a password is stored, else null; the password itself is never returned.
    xc_password: str | None
    user_agent: str | None
    headers: dict[str, str]
    connection_limit: int | None
    refresh_interval_minutes: int | None
    position: int
    has_file: bool
    stream_count: int
    last_import_at: str | None
    last_import_status: str | None
    last_import_error: str | None
    last_import_report: dict[str, Any] | None
    created_at: str | None
    updated_at: str | None


class PlaylistList(BaseModel):
    items: list[PlaylistOut]
    total: int


class ConnectionTestIn(RequestModel):
    """The source settings to try. With playlist_id, a missing xc_password is taken from that source."""

    kind: Kind
    url: str | None = None
    xc_server: str | None = None
    xc_username: str | None = None
    xc_password: str | None = None
    user_agent: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    playlist_id: int | None = None


class ConnectionTestOut(BaseModel):
    ok: bool
    code: str | None
    message: str
    details: dict[str, Any]


class StreamOut(BaseModel):
    id: int
    playlist_id: int
    name: str
    url: str
    tvg_id: str | None
    tvg_name: str | None
    tvg_logo: str | None
    group_title: str | None
    tvg_chno: str | None
    attributes: dict[str, str]
    catchup: str | None
    catchup_source: str | None
    catchup_days: int | None
    headers: dict[str, str]
    is_vod: bool
    provider_stream_id: str | None
    line_no: int | None
    first_seen_at: str | None
    updated_at: str | None


class StreamList(BaseModel):
    items: list[StreamOut]
    total: int


class GroupOut(BaseModel):
    #: null for streams without a group; filter them with `group=` (empty).
    name: str | None
    count: int


class GroupList(BaseModel):
    items: list[GroupOut]
    total: int
