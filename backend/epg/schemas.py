"""Request and response models of the EPG API: guide sources, their channels, the guide grid and search."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from backend.schemas import RequestModel

Kind = Literal["xmltv_url", "xmltv_file"]


class EpgIn(RequestModel):
    """A new guide source. xmltv_url needs url; xmltv_file gets its file through
    POST /tic-api/epgs/<id>/upload."""

    name: str
    kind: Kind = "xmltv_url"
    enabled: bool = True
    url: str | None = None
    user_agent: str | None = None
    refresh_interval_minutes: int | None = 720
    past_days: int = 1
    future_days: int = 14
    preferred_language: str | None = None


class EpgPatch(RequestModel):
    """Fields to change; omitted fields stay. Sending back the URL exactly as shown (credentials as
    ***) keeps the stored one."""

    name: str | None = None
    kind: Kind | None = None
    enabled: bool | None = None
    url: str | None = None
    user_agent: str | None = None
    refresh_interval_minutes: int | None = None
    past_days: int | None = None
    future_days: int | None = None
    preferred_language: str | None = None


class EpgOut(BaseModel):
    id: int
    name: str
    enabled: bool
    kind: str
    #: The guide URL with any credentials (user:pass@, token=…, Xtream user/pass) shown as ***.
    url: str | None
    user_agent: str | None
    refresh_interval_minutes: int | None
    past_days: int
    future_days: int
    preferred_language: str | None
    upload_name: str | None
    channel_count: int
    programme_count: int
    last_import_at: str | None
    #: succeeded or failed (null before the first import).
    last_import_status: str | None
    last_import_error: str | None
    last_import_report: dict[str, Any] | None
    created_at: str
    updated_at: str


class EpgList(BaseModel):
    items: list[EpgOut]
    total: int


class EpgChannelOut(BaseModel):
    #: The XMLTV <channel id>, the value a channel's epg_channel_id refers to.
    channel_id: str
    #: [[name, lang or null], ...] in file order; empty for ids only programmes mention.
    display_names: list[list[str | None]]
    icon: str | None
    url: str | None
    number: str | None
    programme_count: int
    first_start: str | None
    last_stop: str | None


class EpgChannelList(BaseModel):
    items: list[EpgChannelOut]
    total: int


class ProgrammeOut(BaseModel):
    id: int
    source_id: int
    xmltv_channel_id: str
    #: Times in UTC, shifted by the lineup channel's guide offset where the programme is shown on one.
    start: str
    stop: str
    title: str
    sub_title: str | None
    description: str | None
    categories: list[str]
    episode_num: str | None
    season: int | None
    episode: int | None
    icon: str | None
    #: new, premiere, live, previously_shown when the guide says so.
    flags: list[str]


class GuideChannelOut(BaseModel):
    id: int
    name: str
    number: int
    logo_url: str | None
    epg_source_id: int
    epg_channel_id: str
    guide_offset_minutes: int
    programmes: list[ProgrammeOut]


class GuideOut(BaseModel):
    start: str
    end: str
    channels: list[GuideChannelOut]


class ProgrammeHit(ProgrammeOut):
    #: The lineup channels that show this programme (none when its guide channel is not mapped).
    channel_ids: list[int]


class ProgrammeList(BaseModel):
    items: list[ProgrammeHit]
    total: int
