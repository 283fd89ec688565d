"""Request and response shapes for setup, login, users and API tokens."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from backend.schemas import RequestModel


class SetupIn(RequestModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class LoginIn(RequestModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class UserOut(BaseModel):
    id: int
    username: str
    role: str
    enabled: bool
    dvr_access: str
    time_format: str
    created_at: str
    last_login_at: str | None


class LoginOut(BaseModel):
    csrf_token: str
    user: UserOut


class UserCreateIn(RequestModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    role: Literal["admin", "streamer"] = "streamer"
    dvr_access: Literal["none", "own", "all"] = "none"


class UserPatchIn(RequestModel):
    role: Literal["admin", "streamer"] | None = None
    enabled: bool | None = None
    dvr_access: Literal["none", "own", "all"] | None = None
    password: str | None = Field(default=None, min_length=1, max_length=1024)
    time_format: Literal["12h", "24h"] | None = None


class SelfPatchIn(RequestModel):
    current_password: str | None = None
    password: str | None = Field(default=None, min_length=1, max_length=1024)
    time_format: Literal["12h", "24h"] | None = None


class UserList(BaseModel):
    items: list[UserOut]
    total: int


class StreamKeyOut(BaseModel):
    stream_key: str


class TokenCreateIn(RequestModel):
    name: str = Field(min_length=1, max_length=100)


class TokenCreatedOut(BaseModel):
    id: int
    name: str
    token: str


class TokenOut(BaseModel):
    id: int
    name: str
    created_at: str
    last_used_at: str | None


class TokenList(BaseModel):
    items: list[TokenOut]
    total: int
