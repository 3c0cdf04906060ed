"""Request and response bodies as documented in the OpenAPI."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_validator
from pydantic.json_schema import SkipJsonSchema, WithJsonSchema
from pydantic_core import PydanticCustomError

from funnelstream.contract import JobKind, JobReport, JobStatus, Key, ShortId
from funnelstream.objectstore import INPUT_KEY_PATTERN, input_id_of_key


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
    anonymous_id: ShortId = Field(description="The device that uploads; only its jobs may use this upload")


class UploadTicket(BaseModel):
    input_id: UUID
    input_key: str = Field(description="Object key to pass as `input_key` (or `mask_key`) to POST /v1/jobs")
    upload_token: str = Field(
        description="Pass as `input_token` (or `mask_token`) to POST /v1/jobs, with the same anonymous_id"
    )
    upload_url: str = Field(
        description="POST a multipart/form-data body here: every field of `fields`, then the image as `file`"
    )
    method: Literal["POST"] = "POST"
    fields: dict[str, str] = Field(description="Form fields of the signed policy: key, Content-Type, policy, ...")
    max_bytes: int = Field(description="Largest image the policy admits")
    expires_at: datetime


def _upload_key(value: str) -> str:
    if input_id_of_key(value) is None:
        raise PydanticCustomError("upload_key", "must be an input_key that POST /v1/uploads returned")
    return value


InputKey = Annotated[
    str,
    StringConstraints(max_length=128),
    AfterValidator(_upload_key),
    WithJsonSchema({"type": "string", "maxLength": 128, "pattern": INPUT_KEY_PATTERN}),
]
UploadToken = Annotated[str, StringConstraints(min_length=1, max_length=128)]
# Pixel coordinates: finite, and within any image the service can take.
Coordinate = Annotated[float, Field(ge=0, le=65_536, allow_inf_nan=False)]
ParamName = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
ParamValue = (
    bool
    | Annotated[int, Field(ge=-(2**53), le=2**53)]
    | Annotated[float, Field(allow_inf_nan=False)]
    | Annotated[str, StringConstraints(max_length=256)]
    | None
)


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: JobKind
    input_id: UUID
    input_key: InputKey = Field(description="`input_key` of the upload's ticket")
    input_token: UploadToken = Field(description="`upload_token` of the upload's ticket")
    anonymous_id: ShortId = Field(description="The device the upload was made for")
    user_id: ShortId | None = None
    event_id: UUID | None = Field(default=None, description="event_id of the inference_requested event (restore)")
    client_ts: AwareDatetime | None = None
    inference_id: Annotated[int, Field(ge=1, le=2**31 - 1)] | None = None
    inference_name: Annotated[str, StringConstraints(max_length=64)] | None = None
    mask_key: InputKey | None = Field(default=None, description="`input_key` of the mask's own upload")
    mask_token: UploadToken | None = Field(default=None, description="`upload_token` of the mask's upload")
    points: list[tuple[Coordinate, Coordinate]] = Field(default_factory=list, max_length=64)
    box: tuple[Coordinate, Coordinate, Coordinate, Coordinate] | None = None
    params: dict[ParamName, ParamValue] = Field(default_factory=dict, max_length=16)
    experiments: dict[Key, Key] = Field(default_factory=dict, max_length=32)
    job_id: SkipJsonSchema[None] = None
    """Refused: job ids are made by the server, so no one can aim a job at another's results."""

    @field_validator("job_id", mode="before")
    @classmethod
    def _no_client_job_id(cls, value: Any) -> None:
        raise PydanticCustomError("job_id_refused", "job ids are made by the server: send none, read the answer's")


class JobAccepted(BaseModel):
    job_id: UUID
    status: JobStatus
    status_url: str


class JobState(JobReport):
    """A job as ``GET /v1/jobs/{job_id}`` answers it; its URLs are presigned."""
