"""AppError and its subclasses: the one error shape every layer raises and the API renders."""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    """A failure with a stable UPPER_SNAKE code, an HTTP status and a message a user can act on."""

    status: int = 400
    code: str = "BAD_REQUEST"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        fields: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.fields = fields
        self.headers = headers or {}

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.fields:
            body["fields"] = self.fields
        return body


class Invalid(AppError):
    """The request or input is malformed; `fields` names what is wrong."""

    status = 400
    code = "INVALID"


class Unauthorized(AppError):
    status = 401
    code = "UNAUTHORIZED"


class Forbidden(AppError):
    status = 403
    code = "FORBIDDEN"


class NotFound(AppError):
    status = 404
    code = "NOT_FOUND"


class Conflict(AppError):
    status = 409
    code = "CONFLICT"


class PayloadTooLarge(AppError):
    status = 413
    code = "PAYLOAD_TOO_LARGE"


class Unprocessable(AppError):
    status = 422
    code = "UNPROCESSABLE"


class RateLimited(AppError):
    status = 429
    code = "RATE_LIMITED"


class UpstreamError(AppError):
    """An upstream (provider, TVHeadend) answered, but with something we cannot use."""

    status = 502
    code = "UPSTREAM_ERROR"
    #: Whether retrying later may help (5xx, truncated transfer); the broker retries only these.
    transient: bool = False

    def __init__(self, message: str, *, transient: bool = False, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.transient = transient


class UpstreamUnavailable(UpstreamError):
    """An upstream could not be reached (refused, timed out, DNS); usually transient."""

    status = 503
    code = "UPSTREAM_UNAVAILABLE"

    def __init__(self, message: str, *, transient: bool = True, **kwargs: Any) -> None:
        super().__init__(message, transient=transient, **kwargs)


class ServiceUnavailable(AppError):
    status = 503
    code = "SERVICE_UNAVAILABLE"
