"""The inference service under test: an in-memory object store, jobs, a tiny-SAM config, Kafka round trips.

``MemoryStore`` stands in for ``funnelstream.objectstore.ObjectStore`` with the same errors; the Kafka
helpers submit jobs and read a topic back from a real broker.
"""

from __future__ import annotations

import hashlib
import io
import mimetypes
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import Consumer, Producer

from funnelstream import objectstore
from funnelstream.contract import InferenceJob, JobKind
from funnelstream.objectstore import ObjectNotFound, ObjectTooLarge, StoredObject
from funnelstream.settings import KafkaConfig
from inference_service.settings import InferenceConfig
from tests.helpers.images import png


class MemoryStore:
    """The object store boundary, in memory, for the processing tests.

    An object set straight into ``objects`` has the content type its key's extension names, as if
    uploaded under the policy of its key; ``content_types`` overrides it.
    """

    def __init__(self, bucket: str = "test-bucket") -> None:
        self.bucket = bucket
        self.objects: dict[str, bytes] = {}
        self.content_types: dict[str, str] = {}
        self.puts = 0

    def get(self, key: str) -> bytes:
        if key not in self.objects:
            raise ObjectNotFound(key)
        return self.objects[key]

    def read(self, key: str, max_bytes: int) -> StoredObject:
        data = self.get(key)
        if len(data) > max_bytes:
            raise ObjectTooLarge(key, len(data), max_bytes)
        etag = hashlib.md5(data, usedforsecurity=False).hexdigest()
        return StoredObject(data, self.content_types.get(key) or mimetypes.guess_type(key)[0], etag)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self.puts += 1
        self.objects[key] = data
        self.content_types[key] = content_type


def make_job(
    *,
    kind: JobKind = JobKind.RESTORE,
    inference_id: int | None = 2,
    inference_name: str | None = None,
    input_key: str = "inputs/2026/01/02/in.png",
    mask_key: str | None = None,
    anonymous_id: str = "device-1",
    submitted_at: datetime = datetime(2026, 1, 2, 10, 0, tzinfo=UTC),
    **extra: object,
) -> InferenceJob:
    return InferenceJob(
        job_id=uuid.uuid4(),
        kind=kind,
        input_id=uuid.uuid4(),
        input_key=input_key,
        anonymous_id=anonymous_id,
        inference_id=inference_id if kind is JobKind.RESTORE else None,
        inference_name=inference_name,
        mask_key=mask_key,
        submitted_at=submitted_at,
        **extra,
    )


def restore_job(input_id: uuid.UUID, input_key: str, submitted_at: datetime, **fields: Any) -> InferenceJob:
    return InferenceJob(
        job_id=uuid.uuid4(),
        kind=JobKind.RESTORE,
        input_id=input_id,
        input_key=input_key,
        anonymous_id=f"device-{uuid.uuid4().hex[:8]}",
        inference_id=fields.pop("inference_id", 2),
        submitted_at=submitted_at,
        **fields,
    )


def sam_config(checkpoint: Path, **overrides: object) -> InferenceConfig:
    # Random weights predict low IoU; the thresholds are lowered so the generator keeps something.
    values: dict[str, object] = {
        "sam_model_type": "tiny",
        "sam_checkpoint": checkpoint,
        "sam_points_per_side": 4,
        "sam_pred_iou_thresh": 0.0,
        "sam_stability_score_thresh": 0.0,
        "device": "cpu",
        **overrides,
    }
    return InferenceConfig.model_validate(values)


def submit(kafka: KafkaConfig, topic: str, payloads: list[tuple[str, bytes]]) -> None:
    producer = Producer(kafka.client_config())
    for key, value in payloads:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0


def read_topic(kafka: KafkaConfig, topic: str, count: int, timeout_s: float = 60) -> list[Any]:
    """At least ``count`` messages of ``topic`` from its beginning, or an assertion error after ``timeout_s``."""
    consumer = Consumer(
        {**kafka.client_config(), "group.id": f"reader-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    messages: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(messages) < count and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                messages.append(message)
    finally:
        consumer.close()
    assert len(messages) >= count, f"{topic}: {len(messages)} of {count} messages after {timeout_s}s"
    return messages


def upload_input(minio_client: Any, bucket: str, image: np.ndarray, submitted_at: datetime) -> tuple[uuid.UUID, str]:
    input_id = uuid.uuid4()
    key = objectstore.input_key(input_id, submitted_at, "png")
    data = png(image)
    minio_client.put_object(bucket, key, io.BytesIO(data), len(data), content_type="image/png")
    return input_id, key
