"""Request and response bodies as documented in the OpenAPI."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from funnelstream.contract import JobKind, JobStatus, Key, ShortId


class FieldErrorOut(BaseModel):
    field: str = Field(description="Dotted path of the field, e.g. `score` or `context.page_url`")
    reason: str


class RejectedEvent(BaseModel):
    index: int = Field(description="Position of the event in `batch`")
    event_id: str | None = None
    errors: list[FieldErrorOut]


class BatchAccepted(BaseModel):
    """Every accepted event is durable in Kafka; every rejected one is in events.dlq with its reason."""

    accepted: int
    rejected: list[RejectedEvent]


class EventAccepted(BaseModel):
    accepted: Literal[1]
    event_id: str


class ErrorBody(BaseModel):
    error: str = Field(description="Stable code: unauthorized, origin_not_allowed, rate_limited, ...")
    detail: str
    errors: list[FieldErrorOut] = Field(default_factory=list)


UPLOAD_EXTENSIONS: dict[str, str] = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


class UploadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content_type: Literal["image/png", "image/jpeg", "image/webp"]


class UploadTicket(BaseModel):
    input_id: UUID
    input_key: str = Field(description="Object key to pass as `input_key` to POST /v1/jobs")
    upload_url: str = Field(description="Presigned URL: PUT the image bytes here, nothing else")
    method: Literal["PUT"] = "PUT"
    headers: dict[str, str]
    expires_at: datetime


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: JobKind
    input_id: UUID
    input_key: Annotated[str, StringConstraints(min_length=1, max_length=512, pattern=r"^inputs/[A-Za-z0-9/._-]+$")]
    anonymous_id: ShortId
    user_id: ShortId | None = None
    job_id: UUID | None = Field(default=None, description="Send one to make retries of this request idempotent")
    event_id: UUID | None = Field(default=None, description="event_id of the inference_requested event (restore)")
    client_ts: AwareDatetime | None = None
    inference_id: Annotated[int, Field(ge=1, le=2**31 - 1)] | None = None
    inference_name: Annotated[str, StringConstraints(max_length=64)] | None = None
    mask_key: Annotated[str, StringConstraints(min_length=1, max_length=512)] | None = None
    points: list[tuple[float, float]] = Field(default_factory=list, max_length=64)
    box: tuple[float, float, float, float] | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    experiments: dict[Key, Key] = Field(default_factory=dict, max_length=32)


class JobAccepted(BaseModel):
    job_id: UUID
    status: JobStatus
    status_url: str


class JobState(BaseModel):
    job_id: UUID
    status: JobStatus
    kind: JobKind | None = None
    input_id: UUID | None = None
    result_url: str | None = None
    mask_url: str | None = None
    proposals_url: str | None = None
    proposal_count: int | None = None
    model_name: str | None = None
    model_version: str | None = None
    latency_ms: float | None = None
    error: str | None = None
    completed_at: datetime | None = None
