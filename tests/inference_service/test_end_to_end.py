"""The service on the real local Kafka and S3: jobs in, objects, results, events and dead letters out."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from confluent_kafka import Consumer, TopicPartition

from clickhouse.client import DirectReader
from clickhouse.retraining import DatasetFilter, select_pairs
from funnelstream import objectstore
from funnelstream.contract import (
    DeadLetter,
    InferenceJob,
    InferenceResult,
    JobKind,
    JobStatus,
    SegmentsProposed,
    parse_event_json,
)
from funnelstream.objectstore import MinioStore
from funnelstream.settings import KafkaConfig, ObjectStoreConfig
from inference_service.models.registry import ModelRegistry
from inference_service.pipeline import JobProcessor
from inference_service.settings import InferenceConfig, InferenceSettings
from inference_service.worker import InferenceWorker, JobRecord
from tests.helpers.images import png, read_png, scene
from tests.helpers.inference import read_topic, restore_job, submit, upload_input
from tests.helpers.warehouse import enrich_raw, load, open_test_warehouse


class Topics:
    def __init__(self, kafka_topic: Callable[..., str]) -> None:
        self.jobs = kafka_topic("inference-jobs", partitions=2)
        self.results = kafka_topic("inference-results")
        self.events = kafka_topic("events-raw")
        self.dlq = kafka_topic("events-dlq")


class RunningWorker:
    def __init__(self, settings: InferenceSettings, processor: JobProcessor) -> None:
        self.records: list[JobRecord] = []
        self.worker = InferenceWorker(settings, processor, on_job_done=self.records.append)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.worker.run()
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        self.worker.stop()
        self.thread.join(60)
        assert not self.thread.is_alive(), "the worker did not drain"
        assert self.error is None, self.error


@pytest.fixture
def service_options() -> dict[str, Any]:
    """Overrides of the worker's settings; a test changes them with ``@pytest.mark.parametrize``."""
    return {}


@pytest.fixture
def service(
    kafka: KafkaConfig,
    s3: ObjectStoreConfig,
    minio_client: Any,
    kafka_topic: Callable[..., str],
    tiny_sam_checkpoint: Path,
    service_options: dict[str, Any],
) -> Iterator[tuple[Topics, InferenceSettings, RunningWorker]]:
    topics = Topics(kafka_topic)
    options: dict[str, Any] = {"max_in_flight": 2, **service_options}
    config = InferenceConfig(
        sam_model_type="tiny",
        sam_checkpoint=tiny_sam_checkpoint,
        sam_points_per_side=4,
        sam_pred_iou_thresh=0.0,
        sam_stability_score_thresh=0.0,
        jobs_topic=topics.jobs,
        results_topic=topics.results,
        events_topic=topics.events,
        dlq_topic=topics.dlq,
        consumer_group=f"inference-test-{uuid.uuid4().hex}",
        device="cpu",
        warmup=False,
        **options,
    )
    settings = InferenceSettings(kafka=kafka, s3=s3, inference=config)
    processor = JobProcessor(ModelRegistry.load(config), MinioStore(minio_client, s3.bucket), config)
    running = RunningWorker(settings, processor)
    running.thread.start()
    yield topics, settings, running
    if running.thread.is_alive():
        running.stop()


def test_jobs_give_objects_results_and_events_and_a_poison_job_stops_nothing(
    service: tuple[Topics, InferenceSettings, RunningWorker],
    kafka: KafkaConfig,
    minio_client: Any,
    s3: Any,
    tmp_path: Path,
) -> None:
    topics, settings, running = service
    submitted_at = datetime.now(UTC).replace(microsecond=0)
    input_id, input_key = upload_input(minio_client, s3.bucket, scene(), submitted_at)
    good = restore_job(input_id, input_key, submitted_at, inference_id=2, params={"scale": 2})
    missing = restore_job(uuid.uuid4(), "inputs/never/uploaded.png", submitted_at, inference_id=3)
    after = restore_job(input_id, input_key, submitted_at, inference_id=3)
    segment = InferenceJob(
        job_id=uuid.uuid4(),
        kind=JobKind.SEGMENT,
        input_id=input_id,
        input_key=input_key,
        anonymous_id=good.anonymous_id,
        submitted_at=submitted_at,
    )
    submit(
        kafka,
        topics.jobs,
        [
            (str(good.input_id), good.model_dump_json().encode()),
            (str(good.input_id), b"{not json"),
            (str(missing.input_id), missing.model_dump_json().encode()),
            (str(good.input_id), good.model_dump_json().encode()),  # redelivered
            (str(after.input_id), after.model_dump_json().encode()),
            (str(segment.input_id), segment.model_dump_json().encode()),
        ],
    )

    results = [InferenceResult.model_validate_json(m.value()) for m in read_topic(kafka, topics.results, 5)]
    by_job: dict[uuid.UUID, list[InferenceResult]] = {}
    for result in results:
        by_job.setdefault(result.job_id, []).append(result)
    assert [r.status for r in by_job[good.job_id]] == [JobStatus.SUCCEEDED, JobStatus.SUCCEEDED]
    assert by_job[after.job_id][0].status is JobStatus.SUCCEEDED, "the job after the poison ones ran"
    assert by_job[missing.job_id][0].status is JobStatus.FAILED
    assert "inputs/never/uploaded.png" in (by_job[missing.job_id][0].error or "")
    segmented = by_job[segment.job_id][0]
    assert segmented.status is JobStatus.SUCCEEDED and segmented.proposal_count
    index_key = f"proposals/{segment.job_id}/proposals.json"
    assert segmented.proposals_url == f"s3://{s3.bucket}/{index_key}"
    assert minio_client.stat_object(s3.bucket, index_key).size > 0

    result_key = objectstore.result_key(good.job_id, submitted_at)
    stored = read_png(minio_client.get_object(s3.bucket, result_key).read())
    assert stored.shape == (192, 256, 3)
    assert by_job[good.job_id][0].result_url == f"s3://{s3.bucket}/{result_key}"

    raw = read_topic(kafka, topics.events, 5)
    events = [parse_event_json(m.value()) for m in raw]
    good_events = [e for e in events if getattr(e, "job_id", None) == good.job_id]
    assert len(good_events) == 2 and good_events[0].event_id == good_events[1].event_id
    assert all(m.key() == good.anonymous_id.encode() for m in raw if parse_event_json(m.value()) in good_events)
    failed = next(e for e in events if getattr(e, "job_id", None) == missing.job_id)
    assert getattr(failed, "status", None) == "failed"
    proposed = [e for e in events if isinstance(e, SegmentsProposed)]
    assert len(proposed) == 1 and proposed[0].proposal_count == segmented.proposal_count

    letters = [DeadLetter.model_validate_json(m.value()) for m in read_topic(kafka, topics.dlq, 2)]
    reasons = sorted(letter.reason for letter in letters)
    assert any("not found" in reason for reason in reasons)
    assert any(letter.payload == "{not json" for letter in letters)
    assert all(letter.stage == "inference" and letter.topic == topics.jobs for letter in letters)

    running.stop()
    consumer = Consumer({**kafka.client_config(), "group.id": settings.inference.consumer_group})
    committed = consumer.committed([TopicPartition(topics.jobs, p) for p in (0, 1)], timeout=10)
    consumer.close()
    assert sum(max(tp.offset, 0) for tp in committed) == 6, "every job committed after its side effects"
    overheads = [record.timings.overhead_s for record in running.records]
    assert len(overheads) == 6 and all(o >= 0 for o in overheads)

    # Downstream: the emitted events through enrichment and the warehouse loader into ClickHouse.
    warehouse = open_test_warehouse(tmp_path / "chdb")
    try:
        load(warehouse, [enrich_raw(m.value()) for m in raw])
        rows = warehouse.query_rows(
            "SELECT event_type, status, inference_type, inference_url FROM events FINAL WHERE job_id = {job:UUID}",
            {"job": good.job_id},
        )
        assert len(rows) == 1, "the redelivered job collapsed to one event"
        assert rows[0]["inference_type"] == "super_resolution" and rows[0]["status"] == "succeeded"
        assert rows[0]["inference_url"] == f"s3://{s3.bucket}/{result_key}"
        today = submitted_at.date()
        pairs = select_pairs(DirectReader(warehouse), DatasetFilter(today, today + timedelta(days=1))).to_pylist()
        by_pair = {row["job_id"]: row for row in pairs}
        assert set(by_pair) == {str(good.job_id), str(after.job_id)}
        assert by_pair[str(good.job_id)]["input_url"] == f"s3://{s3.bucket}/{input_key}"
    finally:
        warehouse.close()


def test_remove_object_job_writes_mask_and_result_pair(
    service: tuple[Topics, InferenceSettings, RunningWorker], kafka: KafkaConfig, minio_client: Any, s3: Any
) -> None:
    topics, _, running = service
    submitted_at = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    image = scene(64, 96)
    input_id, input_key = upload_input(minio_client, s3.bucket, image, submitted_at)
    mask = np.zeros((64, 96), np.uint8)
    mask[10:30, 20:40] = 255
    mask_upload = f"uploads/{uuid.uuid4()}.png"
    import io

    minio_client.put_object(s3.bucket, mask_upload, io.BytesIO(png(mask)), len(png(mask)))
    job = restore_job(input_id, input_key, submitted_at, inference_id=1, mask_key=mask_upload)
    submit(kafka, topics.jobs, [(str(input_id), job.model_dump_json().encode())])

    result = InferenceResult.model_validate_json(read_topic(kafka, topics.results, 1)[0].value())
    assert result.status is JobStatus.SUCCEEDED, result.error
    stored_mask = read_png(minio_client.get_object(s3.bucket, objectstore.mask_key(job.job_id, submitted_at)).read())
    assert np.array_equal(stored_mask > 0, mask > 0)
    assert result.mask_url and result.mask_url.endswith(f"masks/2026/03/04/{job.job_id}.png")
    running.stop()


# The slow job's output (6000x6000) is over the default output limit, which would fail it at once.
@pytest.mark.parametrize(
    "service_options", [{"job_timeout_s": 0.3, "max_in_flight": 1, "max_output_pixels": 40_000_000}]
)
def test_a_job_past_its_timeout_is_failed_and_the_next_one_runs(
    service: tuple[Topics, InferenceSettings, RunningWorker], kafka: KafkaConfig, minio_client: Any, s3: Any
) -> None:
    topics, _, running = service
    submitted_at = datetime.now(UTC)
    big_id, big_key = upload_input(minio_client, s3.bucket, scene(1500, 1500), submitted_at)
    small_id, small_key = upload_input(minio_client, s3.bucket, scene(32, 32), submitted_at)
    slow = restore_job(big_id, big_key, submitted_at, inference_id=2, params={"scale": 4})
    quick = restore_job(small_id, small_key, submitted_at, inference_id=3)
    submit(
        kafka,
        topics.jobs,
        [(str(big_id), slow.model_dump_json().encode()), (str(big_id), quick.model_dump_json().encode())],
    )

    results = {
        r.job_id: r
        for r in (InferenceResult.model_validate_json(m.value()) for m in read_topic(kafka, topics.results, 2))
    }
    assert results[slow.job_id].status is JobStatus.FAILED
    assert "did not finish within 0.3s" in (results[slow.job_id].error or "")
    assert results[quick.job_id].status is JobStatus.SUCCEEDED
    letter = DeadLetter.model_validate_json(read_topic(kafka, topics.dlq, 1)[0].value())
    assert letter.errors[0].field == "job"
    running.stop()
    assert len([r for r in running.records if r.job_id == str(slow.job_id)]) == 1, "reported once, not twice"
