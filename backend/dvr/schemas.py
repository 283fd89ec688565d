"""Request and response shapes for recordings, recording rules, the long poll and the rule preview."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, Field

from backend.schemas import RequestModel

# JSON carries timestamps as ISO-8601 text; the strict base model would refuse text for a datetime.
Timestamp = Annotated[AwareDatetime, Field(strict=False)]
Padding = Annotated[int, Field(ge=0, le=240)]
Status = Literal["scheduled", "recording", "completed", "failed", "missed", "cancelled"]


class RecordingIn(RequestModel):
    """Either `programme_id` (optionally with the `channel_id` showing it) or `channel_id` + `start` + `stop`."""

    channel_id: int | None = None
    start: Timestamp | None = None
    stop: Timestamp | None = None
    programme_id: int | None = None
    title: str | None = Field(default=None, max_length=1000)
    padding_before: Padding | None = None
    padding_after: Padding | None = None


class RecordingPatch(RequestModel):
    title: str | None = Field(default=None, min_length=1, max_length=1000)
    start: Timestamp | None = None
    stop: Timestamp | None = None
    padding_before: Padding | None = None
    padding_after: Padding | None = None


class RecordingOut(BaseModel):
    id: int
    channel_id: int | None
    channel_name: str
    programme_id: int | None
    rule_id: int | None
    title: str
    sub_title: str | None
    description: str | None
    episode: str | None
    start: str
    stop: str
    padding_before: int
    padding_after: int
    status: Status
    status_reason: str | None
    pending_action: str | None
    tvh_uuid: str | None
    file_size: int | None
    real_start: str | None
    real_stop: str | None
    owner_id: int | None
    owner: str | None
    playable: bool
    hls_url: str | None
    created_at: str
    updated_at: str
    warnings: list[str]


class RecordingList(BaseModel):
    items: list[RecordingOut]
    total: int
    version: int


class PollOut(BaseModel):
    version: int
    changed: bool


class RuleIn(RequestModel):
    name: str | None = Field(default=None, max_length=200)
    enabled: bool = True
    title_pattern: str = Field(min_length=1, max_length=500)
    match_mode: Literal["contains", "regex"] = "contains"
    channel_ids: list[int] = Field(default_factory=list, max_length=5000)
    weekdays: list[Annotated[int, Field(ge=0, le=6)]] = Field(default_factory=list, max_length=7)
    time_from: str | None = Field(default=None, max_length=5)
    time_to: str | None = Field(default=None, max_length=5)
    timezone: str = Field(default="UTC", max_length=64)
    new_episodes_only: bool = False
    keep_last: Annotated[int, Field(ge=1, le=10000)] | None = None
    padding_before: Padding | None = None
    padding_after: Padding | None = None


class RulePatch(RequestModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    enabled: bool | None = None
    title_pattern: str | None = Field(default=None, min_length=1, max_length=500)
    match_mode: Literal["contains", "regex"] | None = None
    channel_ids: list[int] | None = Field(default=None, max_length=5000)
    weekdays: list[Annotated[int, Field(ge=0, le=6)]] | None = Field(default=None, max_length=7)
    time_from: str | None = Field(default=None, max_length=5)
    time_to: str | None = Field(default=None, max_length=5)
    timezone: str | None = Field(default=None, max_length=64)
    new_episodes_only: bool | None = None
    keep_last: Annotated[int, Field(ge=1, le=10000)] | None = None
    padding_before: Padding | None = None
    padding_after: Padding | None = None


class RuleOut(BaseModel):
    id: int
    name: str
    enabled: bool
    title_pattern: str
    match_mode: str
    channel_ids: list[int]
    weekdays: list[int]
    time_from: str | None
    time_to: str | None
    timezone: str
    new_episodes_only: bool
    keep_last: int | None
    padding_before: int | None
    padding_after: int | None
    owner_id: int | None
    owner: str | None
    created_at: str
    updated_at: str


class RuleList(BaseModel):
    items: list[RuleOut]
    total: int


class PreviewItem(BaseModel):
    programme_id: int
    channel_id: int
    channel_name: str
    title: str
    sub_title: str | None
    episode: str | None
    start: str
    stop: str
    would_record: bool
    recording_id: int | None
    reason: str | None


class PreviewOut(BaseModel):
    items: list[PreviewItem]
    total: int
    days: int
