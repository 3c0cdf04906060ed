"""POST /v1/jobs submits a segment or restore job; GET /v1/jobs/{job_id} tells how it went.

Invariant: the write key is admitted before any body byte is read, and at most
``max_job_body_bytes`` are read; a job runs only on uploads made for its own ``anonymous_id`` (with
their upload tokens), on the object whose ETag was checked at submit; job ids are made here, never
by the client, so no request can aim at another job's objects or result.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError

from funnelstream.contract import EventType, InferenceJob, InferenceResult, JobKind, JobStatus
from funnelstream.errors import ContractError, FieldError, TransientError
from funnelstream.objectstore import ObjectNotFound, input_id_of_key
from ingest.access import Source
from ingest.errors import InvalidEvent, Unavailable, UploadTokenRefused
from ingest.pipeline import prepare_event
from ingest.routes.common import KeyFirstRoute, admitted_source, authorized_source, error_responses, field_errors
from ingest.schemas import UPLOAD_EXTENSIONS, JobAccepted, JobRequest, JobState
from ingest.state import IngestState, state_of
from ingest.upload_tokens import token_matches
from ingest.web import cors_headers, json_response, preflight

router = APIRouter(tags=["jobs"], route_class=KeyFirstRoute)

CONTENT_TYPES = {extension: content_type for content_type, extension in UPLOAD_EXTENSIONS.items()}
# What a job record takes from its request as it is; the rest (ids, times, ETags) is made here.
JOB_FIELDS_FROM_REQUEST = (set(InferenceJob.model_fields) & set(JobRequest.model_fields)) - {"job_id"}


async def uploaded_etag(state: IngestState, field: str, key: str) -> str:
    """The ETag of the object at an upload's key, once it is there with its key's type and within the limit."""
    try:
        stat = await asyncio.to_thread(state.store.stat, key)
    except ObjectNotFound:
        reason = "nothing is uploaded at this key yet: post the image to the ticket's upload_url first"
        raise InvalidEvent(f"{field} is not uploaded", errors=[FieldError(field, reason)]) from None
    except TransientError as exc:
        raise Unavailable(f"object store: {exc.detail}", retry_after_s=state.config.retry_after_s) from exc
    expected = CONTENT_TYPES[key.rsplit(".", 1)[1]]
    if stat.content_type != expected or not stat.size or stat.size > state.config.max_upload_bytes:
        reason = f"stored as {stat.content_type!r} of {stat.size} bytes; must be {expected} of at most "
        reason += f"{state.config.max_upload_bytes} bytes"
        raise InvalidEvent(f"{field} is not an upload this collector admits", errors=[FieldError(field, reason)])
    return str(stat.etag)


def check_uploads(state: IngestState, job: JobRequest) -> None:
    """The job's input, and its mask if any, are uploads made for the job's anonymous_id."""
    if input_id_of_key(job.input_key) != job.input_id:
        raise InvalidEvent(
            "input_key does not name input_id",
            errors=[FieldError("input_key", "must be the key returned by POST /v1/uploads for this input_id")],
        )
    if (job.mask_key is None) != (job.mask_token is None):
        field = "mask_token" if job.mask_token is None else "mask_key"
        raise InvalidEvent("a mask needs both mask_key and mask_token", errors=[FieldError(field, "required")])
    secret = state.config.upload_token_secret
    uploads = [("input_token", job.input_token, job.input_id, job.input_key)]
    if job.mask_key is not None and job.mask_token is not None:
        mask_id = input_id_of_key(job.mask_key)
        assert mask_id is not None  # the model's pattern admits input keys only
        uploads.append(("mask_token", job.mask_token, mask_id, job.mask_key))
    for field, token, input_id, key in uploads:
        if not token_matches(secret, token, input_id, key, job.anonymous_id):
            raise UploadTokenRefused(
                f"{field} is not the token of {key} for this anonymous_id",
                errors=[FieldError(field, "must be the upload_token that POST /v1/uploads gave this key and device")],
            )


@router.post(
    "/v1/jobs",
    status_code=202,
    summary="Submit a segment or restore job",
    description=(
        "The job goes to inference.jobs keyed by input_id. A restore job also records an "
        "`inference_requested` event; a segment job records none (the inference service emits "
        "`segments_proposed` when it finishes). 202 means both are stored in Kafka. The input (and a "
        "mask) must come with the `upload_token` of its upload, made for the same `anonymous_id` "
        "(403 otherwise); the job id is made here and returned."
    ),
    response_model=JobAccepted,
    responses=error_responses(401, 403, 413, 429, 503),
)
async def submit_job(
    request: Request, job: JobRequest, source: Annotated[Source, Depends(admitted_source)]
) -> Response:
    state = state_of(request)
    config = state.config
    check_uploads(state, job)
    input_etag = await uploaded_etag(state, "input_key", job.input_key)
    mask_etag = await uploaded_etag(state, "mask_key", job.mask_key) if job.mask_key else None
    now = datetime.now(UTC)
    job_id = uuid.uuid4()
    try:
        record = InferenceJob(
            **job.model_dump(include=JOB_FIELDS_FROM_REQUEST),
            job_id=job_id,
            submitted_at=now,
            input_etag=input_etag,
            mask_etag=mask_etag,
        )
    except ValidationError as exc:
        raise InvalidEvent("the job is not valid", errors=field_errors(exc)) from None
    messages = [(config.jobs_topic, str(job.input_id).encode(), record.model_dump_json(exclude_none=True).encode())]
    if job.kind is JobKind.RESTORE:
        requested: dict[str, Any] = {
            "event_id": str(job.event_id or uuid.uuid4()),
            "event_type": str(EventType.INFERENCE_REQUESTED),
            "anonymous_id": job.anonymous_id,
            "user_id": job.user_id,
            "input_id": str(job.input_id),
            "client_ts": (job.client_ts or now).isoformat(),
            "inference_id": job.inference_id,
            "job_id": str(job_id),
            "mask_url": job.mask_key,
            "experiments": job.experiments,
        }
        try:
            event, value = prepare_event(
                {k: v for k, v in requested.items() if v is not None},
                state.stamp(request, source),
                config.max_event_bytes,
            )
        except ContractError as exc:
            raise InvalidEvent("the inference_requested event is not valid", errors=exc.errors) from None
        messages.append((config.events_topic, event.anonymous_id.encode(), value))
    await state.producer.send(messages)
    state.metrics.requests.labels("jobs", "202").inc()
    accepted = JobAccepted(job_id=job_id, status=JobStatus.QUEUED, status_url=f"/v1/jobs/{job_id}")
    return json_response(
        accepted.model_dump(mode="json"), 202, cors_headers(state.access, request.headers.get("origin"))
    )


def _url(state: IngestState, value: str | None) -> str | None:
    """Object keys and ``s3://`` URLs of our bucket become presigned GET URLs; others pass as they are."""
    if value is None:
        return value
    own_bucket = f"s3://{state.settings.s3.bucket}/"
    if value.startswith(own_bucket):
        value = value.removeprefix(own_bucket)
    elif "://" in value:
        return value
    return state.presigner.presigned_get_object(
        state.settings.s3.bucket, value, expires=timedelta(seconds=state.config.result_url_ttl_s)
    )


def job_state(state: IngestState, job_id: UUID, result: InferenceResult | None) -> JobState:
    if result is None:
        # Unknown here may be accepted by another instance and not finished yet: both read "queued".
        return JobState(job_id=job_id, status=JobStatus.QUEUED)
    urls = {name: _url(state, getattr(result, name)) for name in ("result_url", "mask_url", "proposals_url")}
    return JobState(**{**dict(result), **urls})


@router.get(
    "/v1/jobs/{job_id}",
    summary="Status of a job, with its result URLs once finished",
    response_model=JobState,
    responses=error_responses(401, 403, 429),
)
async def get_job(request: Request, job_id: UUID, source: Annotated[Source, Depends(authorized_source)]) -> Response:
    state = state_of(request)
    answer = job_state(state, job_id, state.results.get(str(job_id)))
    return json_response(answer.model_dump(mode="json"), 200, cors_headers(state.access, request.headers.get("origin")))


@router.options("/v1/jobs", include_in_schema=False)
@router.options("/v1/jobs/{job_id}", include_in_schema=False)
async def jobs_preflight(request: Request) -> Response:
    return preflight(state_of(request).access, request, "GET, POST")
