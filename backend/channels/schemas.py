"""Request and response models of the channels API (pydantic, strict input)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from backend.channels.numbering import MAX_NUMBER, MIN_NUMBER
from backend.schemas import RequestModel

MAX_IDS = 50_000


class SourceIn(RequestModel):
    """One source: an imported stream, a manual URL, or (`id`) an existing source kept as it is."""

    stream_id: int | None = None
    url: str | None = Field(default=None, max_length=4000)
    id: int | None = None
    enabled: bool = True

    @model_validator(mode="after")
    def exactly_one(self) -> SourceIn:
        given = [v for v in (self.stream_id, self.url, self.id) if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of stream_id, url or id")
        return self


class ChannelCreateIn(RequestModel):
    name: str = Field(max_length=1000)
    number: int | None = Field(default=None, ge=MIN_NUMBER, le=MAX_NUMBER)
    enabled: bool = True
    tags: list[str] = Field(default_factory=list, max_length=50)
    logo_url: str | None = Field(default=None, max_length=4000)
    epg_id: int | None = None
    epg_channel_id: str | None = Field(default=None, max_length=255)
    guide_offset_minutes: int = Field(default=0, ge=-1440, le=1440)
    sources: list[SourceIn] = Field(default_factory=list, max_length=100)


class ChannelPatchIn(RequestModel):
    """Only the fields given change; `null` clears logo_url and the guide mapping."""

    name: str | None = Field(default=None, max_length=1000)
    number: int | None = Field(default=None, ge=MIN_NUMBER, le=MAX_NUMBER)
    enabled: bool | None = None
    tags: list[str] | None = Field(default=None, max_length=50)
    logo_url: str | None = Field(default=None, max_length=4000)
    epg_id: int | None = None
    epg_channel_id: str | None = Field(default=None, max_length=255)
    guide_offset_minutes: int | None = Field(default=None, ge=-1440, le=1440)
    sources: list[SourceIn] | None = Field(default=None, max_length=100)


class SourceOut(BaseModel):
    id: int
    position: int
    kind: Literal["stream", "url"]
    stream_id: int | None
    url: str | None
    name: str | None
    playlist_id: int | None
    playlist_name: str | None
    group: str | None
    tvg_id: str | None
    enabled: bool
    missing: bool


class EpgOut(BaseModel):
    source_name: str | None
    display_name: str | None
    icon: str | None
    programme_count: int | None
    missing: bool
    method: str | None
    score: int | None


class ChannelOut(BaseModel):
    id: int
    name: str
    number: int
    enabled: bool
    tags: list[str]
    logo_url: str | None
    logo: str | None
    logo_status: str | None
    epg_id: int | None
    epg_channel_id: str | None
    epg: EpgOut | None
    guide_offset_minutes: int
    guide_id: str
    tvh_uuid: str | None
    sources: list[SourceOut]
    problems: list[str]
    created_at: str | None
    updated_at: str | None


class ChannelList(BaseModel):
    items: list[ChannelOut]
    total: int


class TagOut(BaseModel):
    id: int
    name: str
    channel_count: int


class TagList(BaseModel):
    items: list[TagOut]
    total: int


class StreamOut(BaseModel):
    id: int
    name: str
    group: str | None
    tvg_id: str | None
    tvg_name: str | None
    logo: str | None
    is_vod: bool
    playlist_id: int
    playlist_name: str
    in_lineup: bool


class StreamList(BaseModel):
    items: list[StreamOut]
    total: int


class GroupOut(BaseModel):
    playlist_id: int
    playlist_name: str
    group: str
    count: int
    in_lineup: int


class GroupList(BaseModel):
    items: list[GroupOut]
    total: int


class CreateOptions(RequestModel):
    start_number: int | None = Field(default=None, ge=MIN_NUMBER, le=MAX_NUMBER)
    enabled: bool = True
    #: Tag each new channel with its stream's group title.
    tag_with_group: bool = True
    tags: list[str] = Field(default_factory=list, max_length=20)
    #: Leave out streams that are already a source of some channel.
    skip_existing: bool = True
    #: Streams with the same tvg-id or normalised name become one channel with several sources.
    merge_duplicates: bool = False


class FromStreamsIn(CreateOptions):
    stream_ids: list[int] = Field(min_length=1, max_length=MAX_IDS)


class FromGroupsIn(CreateOptions):
    playlist_id: int
    #: Group titles; "" selects the streams without a group.
    groups: list[str] = Field(min_length=1, max_length=5000)
    include_vod: bool = False


class CreatedOut(BaseModel):
    created: int
    skipped_existing: int
    merged: int
    first_number: int | None
    last_number: int | None
    channel_ids: list[int]


class IdsIn(RequestModel):
    ids: list[int] = Field(min_length=1, max_length=MAX_IDS)


class TagBulkIn(IdsIn):
    add: list[str] = Field(default_factory=list, max_length=50)
    remove: list[str] = Field(default_factory=list, max_length=50)


class RenumberIn(IdsIn):
    start_number: int = Field(ge=MIN_NUMBER, le=MAX_NUMBER)


class MergeIn(RequestModel):
    #: Channels to consider; all channels when left out.
    ids: list[int] | None = Field(default=None, max_length=MAX_IDS)
    by: list[Literal["tvg_id", "name"]] = Field(default=["tvg_id", "name"], min_length=1)
    dry_run: bool = False


class MergeGroupOut(BaseModel):
    keep: int
    keep_name: str
    merge: list[int]
    merge_names: list[str]
    reason: str


class MergeOut(BaseModel):
    groups: list[MergeGroupOut]
    merged: int
    dry_run: bool


class BulkOut(BaseModel):
    changed: int


class MatchIn(RequestModel):
    #: Channels to match; with `all_unmapped` (the default when no ids are given) every channel
    #: without a working guide mapping.
    channel_ids: list[int] | None = Field(default=None, max_length=MAX_IDS)
    all_unmapped: bool | None = None
    threshold: int | None = Field(default=None, ge=50, le=100)
    apply: bool = False


class SuggestionOut(BaseModel):
    epg_id: int
    epg_source_name: str
    epg_channel_id: str
    display_name: str
    score: int
    method: str
    reason: str
    ambiguous: bool
    apply: bool


class MatchItemOut(BaseModel):
    channel_id: int
    channel_name: str
    number: int
    current_epg_id: int | None
    current_epg_channel_id: str | None
    suggestion: SuggestionOut | None
    alternatives: list[SuggestionOut]


class MatchOut(BaseModel):
    items: list[MatchItemOut]
    total: int
    matched: int
    applied: int
    unmatched: int
    threshold: int
    guide_channels: int
    seconds: float


class MappingIn(RequestModel):
    channel_id: int
    #: Null for both clears the channel's mapping.
    epg_id: int | None
    epg_channel_id: str | None = Field(max_length=255)
    method: Literal["tvg_id", "tvg_id_ci", "tvg_id_feed", "name", "manual"] = "manual"
    score: int | None = Field(default=None, ge=0, le=100)


class ApplyIn(RequestModel):
    mappings: list[MappingIn] = Field(min_length=1, max_length=MAX_IDS)


class ApplyOut(BaseModel):
    applied: int


class EpgChannelOut(BaseModel):
    epg_id: int
    epg_source_name: str
    epg_channel_id: str
    display_names: list[str]
    icon: str | None
    programme_count: int


class EpgChannelList(BaseModel):
    items: list[EpgChannelOut]
    total: int


class ImportOut(BaseModel):
    channels: int
    created: int
    updated: int
    deleted: int
    tags: int
    sources: int
    missing_sources: int
    missing_guides: int
    warnings: list[str]
