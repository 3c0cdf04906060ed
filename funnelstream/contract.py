"""The event contract every Funnelstream service speaks (docs/design.md, "Event contract").

Frontends, the collector, the stream processors, the warehouse loader and the inference service
all import these models; nothing else defines the shape of an event on the wire.
"""

from __future__ import annotations

import enum
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal
from uuid import UUID

import orjson
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from funnelstream.errors import ContractError, FieldError

SCHEMA_VERSION: Final = 1
MAX_ID_LENGTH: Final = 128
MAX_URL_LENGTH: Final = 2048
MAX_TEXT_LENGTH: Final = 1024
# Clocks on devices can be wrong by hours; a timestamp this far off is a bug, not skew.
MAX_CLIENT_CLOCK_AHEAD: Final = timedelta(days=365)
EARLIEST_CLIENT_TS: Final = datetime(2015, 1, 1, tzinfo=UTC)
# An event cannot have happened after its batch was sent; allow for sub-second rounding.
SENT_BEFORE_CLIENT_TOLERANCE: Final = timedelta(seconds=1)
_EARLIEST_S: Final = EARLIEST_CLIENT_TS.timestamp()
_MAX_AHEAD_S: Final = MAX_CLIENT_CLOCK_AHEAD.total_seconds()
_SENT_BEFORE_CLIENT_S: Final = SENT_BEFORE_CLIENT_TOLERANCE.total_seconds()

# Free-form JSON (``properties``, the context's extra keys) nests at most this deep; a JSON
# document is level 1, each object or array inside it one more. Deeper values break the JSON
# writers downstream (orjson stops at 254) and serve no analysis.
MAX_JSON_DEPTH: Final = 32
# An identifier is printable text: control characters (NUL, newlines, C1) and the Unicode
# bidirectional formatting characters would let an id forge log lines or render as another id.
ID_FORBIDDEN_CHARACTERS: Final = "\\x00-\\x1f\\x7f-\\x9f\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069"
ID_PATTERN: Final = f"^[^{ID_FORBIDDEN_CHARACTERS}]*$"
ID_CHARACTERS_REASON: Final = "must not contain control characters or bidirectional formatting characters"
MAX_REPORTED_ERRORS: Final = 20

ShortId = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH, strip_whitespace=True, pattern=ID_PATTERN)
]
Label = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=ID_PATTERN)]
Url = Annotated[str, StringConstraints(min_length=1, max_length=MAX_URL_LENGTH)]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT_LENGTH)]
Key = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]


class EventType(enum.StrEnum):
    IMAGE_UPLOADED = "image_uploaded"
    TOOL_SELECTED = "tool_selected"
    SEGMENTS_PROPOSED = "segments_proposed"
    INFERENCE_REQUESTED = "inference_requested"
    INFERENCE_COMPLETED = "inference_completed"
    IMAGE_SAVED = "image_saved"
    SCORE_SUBMITTED = "score_submitted"
    EXPERIMENT_EXPOSURE = "experiment_exposure"
    PIPELINE_HEARTBEAT = "pipeline_heartbeat"


class FunnelStep(enum.IntEnum):
    """Funnel depth reached; the order analysts read the funnel in."""

    NONE = 0
    UPLOAD = 1
    TOOL = 2
    INFERENCE = 3
    SAVE = 4
    SCORE = 5


FUNNEL_STEP_OF: Final[dict[EventType, FunnelStep]] = {
    EventType.IMAGE_UPLOADED: FunnelStep.UPLOAD,
    EventType.TOOL_SELECTED: FunnelStep.TOOL,
    EventType.SEGMENTS_PROPOSED: FunnelStep.TOOL,
    EventType.INFERENCE_REQUESTED: FunnelStep.INFERENCE,
    EventType.INFERENCE_COMPLETED: FunnelStep.INFERENCE,
    EventType.IMAGE_SAVED: FunnelStep.SAVE,
    EventType.SCORE_SUBMITTED: FunnelStep.SCORE,
}


class TimestampFlag(enum.StrEnum):
    OK = "ok"
    FUTURE = "future"
    TOO_OLD = "too_old"


def nests_deeper_than(value: Any, limit: int) -> bool:
    """Whether a decoded JSON value holds objects or arrays more than ``limit`` levels deep (the
    value itself is level 1). Stops descending at the limit, so any depth costs at most that."""
    if isinstance(value, dict):
        items: Any = value.values()
    elif isinstance(value, list):
        items = value
    else:
        return False
    if limit <= 0:
        return True
    return any(nests_deeper_than(item, limit - 1) for item in items)


def _shallow_json(value: dict[str, Any]) -> dict[str, Any]:
    # The fast path (ingest.pipeline) checks the same limit in its own walk over these values.
    if nests_deeper_than(value, MAX_JSON_DEPTH):
        raise ValueError(f"nests deeper than {MAX_JSON_DEPTH} levels")
    return value


FreeJson = Annotated[dict[str, Any], AfterValidator(_shallow_json)]
"""A JSON object of any keys whose values nest at most :data:`MAX_JSON_DEPTH` levels."""


class Context(BaseModel):
    """Where the event happened. Unknown keys are kept: trackers add fields faster than we do."""

    model_config = ConfigDict(extra="allow", frozen=True)

    page_url: Url | None = None
    page_path: Text | None = None
    referrer: Url | None = None
    user_agent: Text | None = None
    locale: Annotated[str, StringConstraints(max_length=35)] | None = None
    app_version: Annotated[str, StringConstraints(max_length=64)] | None = None
    library_name: Annotated[str, StringConstraints(max_length=64)] | None = None
    library_version: Annotated[str, StringConstraints(max_length=64)] | None = None
    ip: Annotated[str, StringConstraints(max_length=64)] | None = None

    @model_validator(mode="after")
    def _extra_keys_are_shallow(self) -> Context:
        extra = self.__pydantic_extra__
        if extra and nests_deeper_than(extra, MAX_JSON_DEPTH):
            raise ValueError(f"nests deeper than {MAX_JSON_DEPTH} levels")
        return self


class Envelope(BaseModel):
    """Fields every event carries. Client fields first, then the ones ingest stamps."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)

    event_id: UUID
    schema_version: Annotated[int, Field(ge=1, le=SCHEMA_VERSION)] = SCHEMA_VERSION
    anonymous_id: ShortId
    user_id: ShortId | None = None
    input_id: UUID | None = None
    client_ts: AwareDatetime
    sent_at: AwareDatetime | None = None
    context: Context = Field(default_factory=Context)
    experiments: dict[Key, Key] = Field(default_factory=dict, max_length=32)
    properties: FreeJson = Field(default_factory=dict)

    # Stamped by ingest; a value sent by a client is overwritten there.
    received_at: AwareDatetime | None = None
    event_ts: AwareDatetime | None = None
    timestamp_flag: TimestampFlag | None = None
    source: Annotated[str, StringConstraints(max_length=64)] | None = None

    @model_validator(mode="after")
    def _client_clock_is_plausible(self) -> Envelope:
        problem = client_clock_problem(self.client_ts, self.sent_at, time.time())
        if problem is not None:
            raise ValueError(problem)
        return self


def client_clock_problem(client_ts: datetime, sent_at: datetime | None, now_s: float) -> str | None:
    """Why a device's two clock readings cannot be right ("field: reason"), or None when they can.

    The rule every event is held to; the collector's fast path applies it outside the models.
    Runs for every event the collector and the stream processor see: epoch seconds compare much
    faster than aware datetimes with different tzinfo objects, and time.time() than now().
    """
    latest = now_s + _MAX_AHEAD_S
    client_s = client_ts.timestamp()
    if not (_EARLIEST_S <= client_s <= latest):
        return f"client_ts: {client_ts.isoformat()} is outside {EARLIEST_CLIENT_TS:%Y}..now+365d"
    if sent_at is not None:
        # Exact and cheap: both readings usually share one tzinfo object, and then the difference
        # needs no UTC offset (``timestamp()`` needs one per call).
        sent_s = client_s + (sent_at - client_ts).total_seconds()
        if not (_EARLIEST_S <= sent_s <= latest):
            return f"sent_at: {sent_at.isoformat()} is outside {EARLIEST_CLIENT_TS:%Y}..now+365d"
        if client_s > sent_s + _SENT_BEFORE_CLIENT_S:
            return "client_ts: later than sent_at; an event cannot happen after its batch was sent"
    return None


class FunnelEnvelope(Envelope):
    input_id: UUID


class ImageUploaded(FunnelEnvelope):
    event_type: Literal[EventType.IMAGE_UPLOADED]
    input_url: Url
    width: Annotated[int, Field(gt=0, le=65_535)]
    height: Annotated[int, Field(gt=0, le=65_535)]
    size_bytes: Annotated[int, Field(ge=0, le=2**40)]
    content_type: Annotated[str, StringConstraints(pattern=r"^image/[a-z0-9.+-]+$", max_length=64)]


class ToolSelected(FunnelEnvelope):
    event_type: Literal[EventType.TOOL_SELECTED]
    tool_id: Annotated[int, Field(ge=1, le=2**31 - 1)]


class SegmentsProposed(FunnelEnvelope):
    event_type: Literal[EventType.SEGMENTS_PROPOSED]
    job_id: UUID
    proposal_count: Annotated[int, Field(ge=0, le=10_000)]
    latency_ms: Annotated[float, Field(ge=0, le=3_600_000)]


class InferenceRequested(FunnelEnvelope):
    event_type: Literal[EventType.INFERENCE_REQUESTED]
    inference_id: Annotated[int, Field(ge=1, le=2**31 - 1)]
    job_id: UUID
    mask_url: Url | None = None


class InferenceCompleted(FunnelEnvelope):
    event_type: Literal[EventType.INFERENCE_COMPLETED]
    inference_id: Annotated[int, Field(ge=1, le=2**31 - 1)]
    job_id: UUID
    status: Literal["succeeded", "failed"]
    inference_url: Url | None = None
    mask_url: Url | None = None
    latency_ms: Annotated[float, Field(ge=0, le=3_600_000)]
    model_name: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    model_version: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    error: Text | None = None


class ImageSaved(FunnelEnvelope):
    event_type: Literal[EventType.IMAGE_SAVED]
    job_id: UUID


class ScoreSubmitted(FunnelEnvelope):
    event_type: Literal[EventType.SCORE_SUBMITTED]
    job_id: UUID
    score: Annotated[int, Field(ge=1, le=5)]


class ExperimentExposure(Envelope):
    event_type: Literal[EventType.EXPERIMENT_EXPOSURE]
    experiment_key: Key
    variant: Key


class PipelineHeartbeat(Envelope):
    """Sent through the whole pipeline on a timer to measure end-to-end freshness."""

    event_type: Literal[EventType.PIPELINE_HEARTBEAT]
    emitted_by: Label


EVENT_MODELS: Final[dict[EventType, type[Envelope]]] = {
    EventType.IMAGE_UPLOADED: ImageUploaded,
    EventType.TOOL_SELECTED: ToolSelected,
    EventType.SEGMENTS_PROPOSED: SegmentsProposed,
    EventType.INFERENCE_REQUESTED: InferenceRequested,
    EventType.INFERENCE_COMPLETED: InferenceCompleted,
    EventType.IMAGE_SAVED: ImageSaved,
    EventType.SCORE_SUBMITTED: ScoreSubmitted,
    EventType.EXPERIMENT_EXPOSURE: ExperimentExposure,
    EventType.PIPELINE_HEARTBEAT: PipelineHeartbeat,
}

Event = Annotated[
    ImageUploaded
    | ToolSelected
    | SegmentsProposed
    | InferenceRequested
    | InferenceCompleted
    | ImageSaved
    | ScoreSubmitted
    | ExperimentExposure
    | PipelineHeartbeat,
    Field(discriminator="event_type"),
]
EVENT_ADAPTER: Final[TypeAdapter[Event]] = TypeAdapter(Event)
_KNOWN_FIELDS: Final[dict[str, frozenset[str]]] = {
    str(kind): frozenset(model.model_fields) | {"event_type"} for kind, model in EVENT_MODELS.items()
}


def _errors_of(exc: ValidationError, prefix: str = "") -> list[FieldError]:
    errors = []
    # A hostile event can fail thousands of dict keys at once; the first few say what is wrong.
    for err in exc.errors(include_url=False)[:MAX_REPORTED_ERRORS]:
        # The discriminator adds the tag to the path; the user cares about the field name only.
        loc = [str(part)[:MAX_ID_LENGTH] for part in err["loc"] if part not in _KNOWN_FIELDS]
        field = ".".join(loc) or "event"
        if err["type"] == "string_pattern_mismatch" and err.get("ctx", {}).get("pattern") == ID_PATTERN:
            message = ID_CHARACTERS_REASON
        else:
            message = err["msg"].removeprefix("Value error, ")
        if ":" in message and field == "event" and message.split(":", 1)[0].isidentifier():
            field, message = message.split(":", 1)
            message = message.strip()
        errors.append(FieldError(field=f"{prefix}{field}", reason=message))
    return errors


def parse_event(raw: Any) -> Event:
    """Validate one decoded JSON object into its event model.

    Unknown top-level fields move into ``properties`` so that a newer tracker never loses data;
    an unknown ``event_type`` is refused by name. Raises :class:`ContractError` listing every
    field that failed.
    """
    if not isinstance(raw, dict):
        raise ContractError([FieldError("event", f"expected a JSON object, got {type(raw).__name__}")])
    event_type = raw.get("event_type")
    if event_type is None:
        raise ContractError([FieldError("event_type", "field required")])
    if not isinstance(event_type, str) or event_type not in _KNOWN_FIELDS:
        known = ", ".join(sorted(_KNOWN_FIELDS))
        raise ContractError([FieldError("event_type", f"unknown event type {event_type!r}; expected one of {known}")])
    known_fields = _KNOWN_FIELDS[event_type]
    extras = {key: value for key, value in raw.items() if key not in known_fields}
    if extras:
        properties = raw.get("properties")
        if properties is not None and not isinstance(properties, dict):
            raise ContractError([FieldError("properties", "expected a JSON object")])
        raw = {key: value for key, value in raw.items() if key in known_fields}
        raw["properties"] = {**extras, **(properties or {})}
    try:
        return EVENT_ADAPTER.validate_python(raw)
    except ValidationError as exc:
        raise ContractError(_errors_of(exc)) from None


def parse_event_json(data: bytes | str) -> Event:
    try:
        decoded = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ContractError([FieldError("event", f"invalid JSON: {exc}")]) from None
    return parse_event(decoded)


def event_to_json(event: Envelope) -> bytes:
    return event.model_dump_json(exclude_none=True).encode()


# --- records other than funnel events that cross a topic -----------------------------------------


class ToolDimension(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tool_id: Annotated[int, Field(ge=1)]
    tool_name: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    tool_type: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    updated_at: AwareDatetime


class InferenceDimension(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    inference_id: Annotated[int, Field(ge=1)]
    inference_name: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    inference_type: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    updated_at: AwareDatetime


class JobKind(enum.StrEnum):
    SEGMENT = "segment"
    RESTORE = "restore"


class InferenceJob(BaseModel):
    """A unit of work on ``inference.jobs``; ``job_id`` fixes every object key it writes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job_id: UUID
    kind: JobKind
    input_id: UUID
    input_key: Url
    anonymous_id: ShortId
    user_id: ShortId | None = None
    inference_id: Annotated[int, Field(ge=1)] | None = None
    inference_name: Annotated[str, StringConstraints(max_length=64)] | None = None
    mask_key: Url | None = None
    points: list[tuple[float, float]] = Field(default_factory=list, max_length=64)
    box: tuple[float, float, float, float] | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    experiments: dict[Key, Key] = Field(default_factory=dict)
    submitted_at: AwareDatetime
    input_etag: Annotated[str, StringConstraints(max_length=128)] | None = None
    """The input's ETag when the job was accepted: the job runs on that object or fails, not on one
    posted over it later (an upload's policy admits several posts to its key while it lasts)."""
    mask_etag: Annotated[str, StringConstraints(max_length=128)] | None = None

    @model_validator(mode="after")
    def _restore_names_an_inference(self) -> InferenceJob:
        if self.kind is JobKind.RESTORE and self.inference_id is None:
            raise ValueError("inference_id: required for a restore job")
        return self


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class JobReport(BaseModel):
    """A job's identity and, once it finished, its outcome; before that only ``job_id`` and ``status``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job_id: UUID
    kind: JobKind | None = None
    input_id: UUID | None = None
    status: JobStatus
    result_url: Url | None = None
    mask_url: Url | None = None
    proposals_url: Url | None = None
    proposal_count: int | None = None
    model_name: str | None = None
    model_version: str | None = None
    latency_ms: float | None = None
    error: Text | None = None
    completed_at: AwareDatetime | None = None


class InferenceResult(JobReport):
    """A finished job on ``inference.results``."""

    kind: JobKind
    input_id: UUID
    completed_at: AwareDatetime


# A dead letter is at most this large encoded, well inside Kafka's message size (1 MB by default),
# whatever was refused: a longer payload is stored truncated, with its size (docs/design.md, "Failure semantics").
MAX_DEAD_LETTER_BYTES: Final = 256 * 1024


class DeadLetter(BaseModel):
    """What ``events.dlq`` holds: enough to see why, and to replay the original bytes.

    Built by ``funnelstream.deadletter.dead_letter`` and written by :meth:`encode`, the one encoding
    every stage uses. ``payload_truncated`` marks a payload cut to keep the letter within
    :data:`MAX_DEAD_LETTER_BYTES`; ``payload_bytes`` is then the original payload's size.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    stage: Literal["ingest", "stream", "loader", "inference"]
    reason: Text
    errors: list[FieldError] = Field(default_factory=list)
    payload: str
    payload_encoding: Literal["utf-8", "base64"] = "utf-8"
    payload_truncated: bool = False
    payload_bytes: int | None = None
    original_key: str | None = None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    source: str | None = None
    event_id: str | None = None
    failed_at: AwareDatetime

    def encode(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


class EnrichedEvent(BaseModel):
    """One row of ``events.enriched`` and of the ClickHouse ``events`` table: flat and wide.

    Written by the stream processors after dedup, enrichment and sessionization; read by the
    warehouse loader. Dimension names are copied in at write time so a later rename does not
    rewrite history.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: UUID
    event_type: EventType
    schema_version: int
    anonymous_id: str
    user_id: str | None = None
    input_id: UUID | None = None
    session_id: str
    client_ts: AwareDatetime
    sent_at: AwareDatetime | None = None
    received_at: AwareDatetime
    event_ts: AwareDatetime
    timestamp_flag: TimestampFlag = TimestampFlag.OK
    is_late: bool = False
    """Arrived after the allowed lateness of its session window; kept, counted, not merged."""
    source: str = ""
    funnel_step: int = 0
    # dimensions, resolved at write time
    tool_id: int | None = None
    tool_name: str | None = None
    tool_type: str | None = None
    inference_id: int | None = None
    inference_name: str | None = None
    inference_type: str | None = None
    unknown_dimension: bool = False
    """A tool or inference id the dimension tables did not know when the event was enriched; its names are null."""
    # event-specific fields, null where the type has none
    job_id: UUID | None = None
    input_url: str | None = None
    mask_url: str | None = None
    inference_url: str | None = None
    width: int | None = None
    height: int | None = None
    size_bytes: int | None = None
    content_type: str | None = None
    proposal_count: int | None = None
    status: str | None = None
    latency_ms: float | None = None
    model_name: str | None = None
    model_version: str | None = None
    error: str | None = None
    score: int | None = None
    experiment_key: str | None = None
    variant: str | None = None
    experiments: dict[str, str] = Field(default_factory=dict)
    # context, with the user agent parsed
    page_url: str | None = None
    referrer: str | None = None
    user_agent: str | None = None
    browser: str | None = Field(default=None, description="Parsed from user_agent at enrichment.")
    os: str | None = Field(default=None, description="Parsed from user_agent at enrichment.")
    device: str | None = Field(default=None, description="Parsed from user_agent at enrichment.")
    is_bot: bool = False
    locale: str | None = None
    app_version: str | None = None
    library_name: str | None = None
    library_version: str | None = None
    ip: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)
    enriched_at: AwareDatetime


class SessionSummary(BaseModel):
    """One message on ``sessions`` per update of a session; the latest ``version`` wins."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    session_id: str
    anonymous_id: str
    user_id: str | None = None
    started_at: AwareDatetime
    last_event_at: AwareDatetime
    duration_s: float
    event_count: int
    late_event_count: int = 0
    input_ids: list[UUID] = Field(default_factory=list)
    deepest_step: int = 0
    deepest_step_name: str = "none"
    experiments: dict[str, str] = Field(default_factory=dict)
    closed: bool = False
    version: int
    """Monotonic per session (e.g. update count or a timestamp in ms); the loader keeps the max."""
    updated_at: AwareDatetime
