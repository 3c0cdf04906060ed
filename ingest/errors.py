"""Why the collector refuses a request; each error knows its HTTP answer."""

from __future__ import annotations

from typing import Any

from funnelstream.errors import FieldError, FunnelstreamError


class IngestError(FunnelstreamError):
    """A request the collector answers with an error status; ``code`` is stable for clients."""

    status_code = 400
    code = "bad_request"

    def __init_subclass__(cls, *, status_code: int | None = None, code: str | None = None) -> None:
        super().__init_subclass__()
        if status_code is not None:
            cls.status_code = status_code
        if code is not None:
            cls.code = code

    def __init__(
        self, detail: str, *, errors: list[FieldError] | None = None, retry_after_s: int | None = None
    ) -> None:
        self.detail = detail
        self.errors = errors or []
        self.retry_after_s = retry_after_s
        super().__init__(detail)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "detail": self.detail}
        if self.errors:
            body["errors"] = [{"field": e.field, "reason": e.reason} for e in self.errors]
        return body


class BadRequest(IngestError): ...


class InvalidEvent(IngestError, status_code=422, code="invalid_event"): ...


class RequestTimeout(IngestError, status_code=408, code="request_timeout"):
    """The client went away, or was cut off for sending its body too slowly."""


class UnsupportedMediaType(IngestError, status_code=415, code="unsupported_media_type"): ...


class Unauthorized(IngestError, status_code=401, code="unauthorized"): ...


class OriginRefused(IngestError, status_code=403, code="origin_not_allowed"): ...


class UploadTokenRefused(IngestError, status_code=403, code="upload_token_refused"):
    """A job named an upload without the token POST /v1/uploads gave its device for it."""


class PayloadTooLarge(IngestError, status_code=413, code="payload_too_large"): ...


class RateLimited(IngestError, status_code=429, code="rate_limited"): ...


class Unavailable(IngestError, status_code=503, code="unavailable"):
    """Kafka did not confirm every message in time, or the producer queue is full: retry later."""
