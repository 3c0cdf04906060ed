"""One job through the named pipeline: decode → fetch → infer → upload → publish (→ commit, in the worker).

Everything here is in memory apart from the object store behind :class:`ObjectStore`; the Kafka worker
(:mod:`inference_service.worker`) owns consuming, publishing and committing.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from funnelstream import objectstore
from funnelstream.contract import (
    EventType,
    InferenceCompleted,
    InferenceJob,
    InferenceResult,
    JobKind,
    JobStatus,
    SegmentsProposed,
    TimestampFlag,
    event_to_json,
)
from funnelstream.deadletter import dead_letter
from funnelstream.errors import FieldError, TransientError
from funnelstream.objectstore import ObjectNotFound, ObjectStore, ObjectTooLarge, StoredObject, object_url
from inference_service.errors import (
    CorruptImage,
    InputMissing,
    InputTooLarge,
    JobAbandoned,
    JobFailed,
    MaskMismatch,
    UndecodableJob,
)
from inference_service.images import IMAGE_FORMATS, RGB, Limits, Mask, decode_image, decode_mask, encode_png
from inference_service.models.registry import ModelRegistry, RestorationModel
from inference_service.settings import InferenceConfig

log = logging.getLogger(__name__)

SOURCE = "inference_service"
# Fixed forever: event ids derived from job ids must stay the same across releases.
EVENT_NAMESPACE = uuid.UUID("6f1f5d0e-8a53-4c1e-9d0b-3f4f6c1b2a7e")


def event_id_for(job_id: uuid.UUID, event_type: EventType) -> uuid.UUID:
    """A redelivered job emits the same event id, so the dedup stage collapses it."""
    return uuid.uuid5(EVENT_NAMESPACE, f"{job_id}/{event_type}")


@dataclass(frozen=True, slots=True)
class OutMessage:
    topic: str
    key: str
    value: bytes


@dataclass
class Timings:
    """Seconds spent in each stage; ``overhead_s`` is everything that is not the model."""

    picked_up: float = field(default_factory=time.perf_counter)
    fetch_s: float = 0.0
    model_s: float = 0.0
    upload_s: float = 0.0
    publish_s: float = 0.0
    finished: float | None = None

    @property
    def total_s(self) -> float:
        return (self.finished or time.perf_counter()) - self.picked_up

    @property
    def overhead_s(self) -> float:
        return self.total_s - self.model_s


@dataclass(frozen=True, slots=True)
class Completed:
    """What a succeeded job produced, before it is published."""

    model_name: str
    model_version: str
    result_url: str | None = None
    mask_url: str | None = None
    proposals_url: str | None = None
    proposal_count: int | None = None


@dataclass(frozen=True, slots=True)
class Source:
    """Where a job message came from, for the dead letter."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    payload: bytes


def decode_job(payload: bytes) -> InferenceJob:
    try:
        return InferenceJob.model_validate_json(payload)
    except ValidationError as exc:
        errors = [f"{'.'.join(str(p) for p in e['loc']) or 'job'}: {e['msg']}" for e in exc.errors(include_url=False)]
        first_field = ".".join(str(p) for p in exc.errors()[0]["loc"]) or "job"
        raise UndecodableJob(first_field, "; ".join(errors)[:900]) from None


class JobProcessor:
    def __init__(
        self,
        registry: ModelRegistry,
        store: ObjectStore,
        config: InferenceConfig,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.registry = registry
        self.store = store
        self.config = config
        self.now = now

    # --- work --------------------------------------------------------------------------------------

    def run(self, job: InferenceJob, timings: Timings, abandoned: Callable[[], bool] = lambda: False) -> Completed:
        """fetch → infer → upload; transient store errors are retried here and only here.

        ``abandoned`` is asked after the model: a job the worker already gave up on writes nothing.
        """
        retrying = Retrying(
            retry=retry_if_exception_type(TransientError),
            stop=stop_after_delay(self.config.transient_retry_s),
            wait=wait_exponential(multiplier=0.2, max=5),
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                if job.kind is JobKind.SEGMENT:
                    return self._segment(job, timings, abandoned)
                return self._restore(job, timings, abandoned)
        raise AssertionError("unreachable: tenacity reraises")

    def _fetch(self, field_name: str, key: str, etag: str | None = None) -> StoredObject:
        """An uploaded object within the byte limit, stored as an image type, and the one the job was
        accepted on (``etag``, when the collector pinned it); not decoded yet."""
        try:
            stored = self.store.read(key, self.config.max_input_bytes)
        except ObjectNotFound:
            raise InputMissing(field_name, key) from None
        except ObjectTooLarge as exc:
            raise InputTooLarge(field_name, key, f"over the limit of {exc.max_bytes} bytes") from None
        if etag is not None and stored.etag != etag:
            raise JobFailed(field_name, f"object {key!r} was replaced after the job was accepted")
        content_type = (stored.content_type or "").split(";", 1)[0].strip().lower()
        if content_type not in IMAGE_FORMATS.values():
            raise CorruptImage(field_name, key, f"stored as {stored.content_type!r}, not as an image type")
        return StoredObject(stored.data, content_type, stored.etag)

    def _fetch_image(self, job: InferenceJob, scale: int = 1) -> RGB:
        field_name, key = "input_key", job.input_key
        stored = self._fetch(field_name, key, job.input_etag)
        limits = Limits(self.config.max_image_pixels, self.config.max_output_pixels, scale)
        return decode_image(stored.data, field=field_name, key=key, limits=limits, content_type=stored.content_type)

    def _fetch_mask(self, key: str, image: RGB, etag: str | None) -> Mask:
        stored = self._fetch("mask_key", key, etag)
        limits = Limits(self.config.max_image_pixels)
        mask = decode_mask(stored.data, field="mask_key", key=key, limits=limits, content_type=stored.content_type)
        if mask.shape != image.shape[:2]:
            raise MaskMismatch((image.shape[1], image.shape[0]), (mask.shape[1], mask.shape[0]))
        return mask

    def _restore(self, job: InferenceJob, timings: Timings, abandoned: Callable[[], bool]) -> Completed:
        model: RestorationModel = self.registry.restoration_for(job.inference_id, job.inference_name)
        started = time.perf_counter()
        image = self._fetch_image(job, model.output_scale(job.params))
        mask = None
        if model.needs_mask:
            if job.mask_key is None:
                raise JobFailed("mask_key", f"required for {model.task}")
            mask = self._fetch_mask(job.mask_key, image, job.mask_etag)
        timings.fetch_s = time.perf_counter() - started

        started = time.perf_counter()
        result = model.run(image, mask, job.params)
        timings.model_s = time.perf_counter() - started
        if abandoned():
            raise JobAbandoned(str(job.job_id))

        started = time.perf_counter()
        result_key = objectstore.result_key(job.job_id, job.submitted_at)
        self.store.put(result_key, encode_png(result), "image/png")
        mask_url = None
        if mask is not None:
            mask_key = objectstore.mask_key(job.job_id, job.submitted_at)
            self.store.put(mask_key, encode_png(mask), "image/png")
            mask_url = object_url(self.store.bucket, mask_key)
        timings.upload_s = time.perf_counter() - started
        return Completed(
            model_name=model.name,
            model_version=model.version,
            result_url=object_url(self.store.bucket, result_key),
            mask_url=mask_url,
        )

    def _segment(self, job: InferenceJob, timings: Timings, abandoned: Callable[[], bool]) -> Completed:
        segmenter = self.registry.segment_model()
        started = time.perf_counter()
        image = self._fetch_image(job)
        timings.fetch_s = time.perf_counter() - started

        started = time.perf_counter()
        proposals = segmenter.propose(image, points=list(job.points), box=job.box)
        timings.model_s = time.perf_counter() - started
        if abandoned():
            raise JobAbandoned(str(job.job_id))

        started = time.perf_counter()
        prefix = objectstore.proposals_prefix(job.job_id)
        described = []
        for index, proposal in enumerate(proposals):
            key = f"{prefix}{index:03d}.png"
            self.store.put(key, encode_png(proposal.mask), "image/png")
            described.append({"index": index, "mask_url": object_url(self.store.bucket, key), **proposal.describe()})
        manifest = {
            "job_id": str(job.job_id),
            "input_id": str(job.input_id),
            "model_name": segmenter.name,
            "model_version": segmenter.version,
            "width": int(image.shape[1]),
            "height": int(image.shape[0]),
            "proposals": described,
        }
        manifest_key = f"{prefix}proposals.json"
        self.store.put(manifest_key, orjson.dumps(manifest), "application/json")
        timings.upload_s = time.perf_counter() - started
        return Completed(
            model_name=segmenter.name,
            model_version=segmenter.version,
            proposals_url=object_url(self.store.bucket, manifest_key),
            proposal_count=len(proposals),
        )

    # --- what gets published -----------------------------------------------------------------------

    def success_messages(self, job: InferenceJob, done: Completed, timings: Timings) -> list[OutMessage]:
        completed_at = self.now()
        latency_ms = round(timings.total_s * 1000, 3)
        result = InferenceResult(
            job_id=job.job_id,
            kind=job.kind,
            input_id=job.input_id,
            status=JobStatus.SUCCEEDED,
            result_url=done.result_url,
            mask_url=done.mask_url,
            proposals_url=done.proposals_url,
            proposal_count=done.proposal_count,
            model_name=done.model_name,
            model_version=done.model_version,
            latency_ms=latency_ms,
            completed_at=completed_at,
        )
        event: InferenceCompleted | SegmentsProposed
        if job.kind is JobKind.SEGMENT:
            event = SegmentsProposed(
                **self._envelope(job, EventType.SEGMENTS_PROPOSED, completed_at),
                job_id=job.job_id,
                proposal_count=done.proposal_count or 0,
                latency_ms=latency_ms,
            )
        else:
            event = self._completed_event(job, completed_at, latency_ms, done.model_name, done.model_version, done)
        return [self._result_message(result), self._event_message(job, event)]

    def failure_messages(
        self,
        job: InferenceJob | None,
        error: JobFailed,
        source: Source,
        timings: Timings | None = None,
        model: tuple[str, str] | None = None,
    ) -> list[OutMessage]:
        """A failed result and, for a restore, a failed inference_completed; always a dead letter."""
        completed_at = self.now()
        latency_ms = round(timings.total_s * 1000, 3) if timings else None
        messages = []
        identity = _identity(job, source.payload)
        if identity is not None:
            job_id, kind, input_id = identity
            result = InferenceResult(
                job_id=job_id,
                kind=kind,
                input_id=input_id,
                status=JobStatus.FAILED,
                model_name=model[0] if model else None,
                model_version=model[1] if model else None,
                latency_ms=latency_ms,
                error=str(error)[:1024],
                completed_at=completed_at,
            )
            messages.append(self._result_message(result))
        if job is not None and job.kind is JobKind.RESTORE:
            name, version = model or ("unresolved", "none")
            event = self._completed_event(job, completed_at, latency_ms or 0.0, name, version, None, error)
            messages.append(self._event_message(job, event))
        letter = dead_letter(
            stage="inference",
            reason=str(error),
            payload=source.payload,
            errors=[FieldError(error.field, error.reason)],
            original_key=source.key,
            topic=source.topic,
            partition=source.partition,
            offset=source.offset,
            source=SOURCE,
        )
        key = source.key.decode("utf-8", "replace") if source.key else ""
        messages.append(OutMessage(self.config.dlq_topic, key, letter.encode()))
        return messages

    def model_of(self, job: InferenceJob) -> tuple[str, str] | None:
        """The model a job would run on, when it can be resolved (for failure reports)."""
        try:
            if job.kind is JobKind.SEGMENT:
                segmenter = self.registry.segment_model()
                return segmenter.name, segmenter.version
            model = self.registry.restoration_for(job.inference_id, job.inference_name)
            return model.name, model.version
        except JobFailed:
            return None

    def _envelope(self, job: InferenceJob, event_type: EventType, completed_at: datetime) -> dict[str, Any]:
        # The service is a trusted server: its completion time is the event time. client_ts is the
        # job's submission time, which a redelivery repeats, so the dedup key (event_id, client_ts)
        # is the same for every delivery of a job.
        return {
            "event_id": event_id_for(job.job_id, event_type),
            "event_type": event_type,
            "anonymous_id": job.anonymous_id,
            "user_id": job.user_id,
            "input_id": job.input_id,
            "client_ts": job.submitted_at,
            "received_at": completed_at,
            "event_ts": completed_at,
            "timestamp_flag": TimestampFlag.OK,
            "source": SOURCE,
            "experiments": job.experiments,
            # The input's location travels with the result so a pair is complete without the upload event.
            "properties": {"input_url": object_url(self.store.bucket, job.input_key)},
        }

    def _completed_event(
        self,
        job: InferenceJob,
        completed_at: datetime,
        latency_ms: float,
        model_name: str,
        model_version: str,
        done: Completed | None,
        error: JobFailed | None = None,
    ) -> InferenceCompleted:
        assert job.inference_id is not None  # a restore job always names one (InferenceJob validates it)
        return InferenceCompleted(
            **self._envelope(job, EventType.INFERENCE_COMPLETED, completed_at),
            inference_id=job.inference_id,
            job_id=job.job_id,
            status="failed" if error else "succeeded",
            inference_url=done.result_url if done else None,
            mask_url=done.mask_url if done else None,
            latency_ms=min(latency_ms, 3_600_000),
            model_name=model_name[:128],
            model_version=model_version[:64],
            error=str(error)[:1024] if error else None,
        )

    def _result_message(self, result: InferenceResult) -> OutMessage:
        return OutMessage(self.config.results_topic, str(result.job_id), result.model_dump_json().encode())

    def _event_message(self, job: InferenceJob, event: InferenceCompleted | SegmentsProposed) -> OutMessage:
        return OutMessage(self.config.events_topic, job.anonymous_id, event_to_json(event))


def _identity(job: InferenceJob | None, payload: bytes) -> tuple[uuid.UUID, JobKind, uuid.UUID] | None:
    """job_id, kind and input_id of a job, salvaged from the raw payload when it did not validate."""
    if job is not None:
        return job.job_id, job.kind, job.input_id
    try:
        raw = orjson.loads(payload)
        return uuid.UUID(str(raw["job_id"])), JobKind(raw["kind"]), uuid.UUID(str(raw["input_id"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
