"""Base classes for request/response schemas: strict input (unknown fields and wrong types are errors)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class RequestModel(BaseModel):
    """Requests reject unknown fields and do not coerce types ("5" is not an integer)."""

    model_config = ConfigDict(extra="forbid", strict=True, str_max_length=10_000)


class ResponseModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ErrorOut(BaseModel):
    code: str
    message: str
    fields: dict[str, str] | None = None


class TaskQueued(BaseModel):
    task_id: int
