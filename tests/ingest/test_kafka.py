"""The collector against the real local broker: what a 202 promises is in Kafka, once."""

from __future__ import annotations

import io
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import uvicorn
from confluent_kafka import Producer
from fastapi.testclient import TestClient

from funnelstream.blocks import BLOCK_VERSION, block_version, partition_for
from funnelstream.contract import DeadLetter, InferenceResult, JobKind, JobStatus, parse_event_json
from funnelstream.settings import KafkaConfig, ObjectStoreConfig
from ingest.app import create_app
from ingest.producer import collector_producer_config
from ingest.sdk import Client
from ingest.settings import IngestSettings, hash_write_key
from ops.sample_images import sample_png
from tests.helpers.examples import example
from tests.helpers.kafka_topics import read_events, read_records, read_topic

KEY = "integration-key"


def settings_for(kafka: KafkaConfig, topics: dict[str, str]) -> IngestSettings:
    return IngestSettings(  # type: ignore[call-arg]
        _env_file=None,
        kafka=kafka,
        ingest={
            "sources": {"backend": {"write_key_sha256": [hash_write_key(KEY)], "rate_per_s": 1e6, "burst": 1e6}},
            "results_lookback_s": 600,
            **topics,
        },
    )


@pytest.fixture
def topics(kafka_topic: Callable[..., str]) -> dict[str, str]:
    return {
        "events_topic": kafka_topic("ingest.raw", partitions=4),
        "dlq_topic": kafka_topic("ingest.dlq"),
        "jobs_topic": kafka_topic("ingest.jobs"),
        "results_topic": kafka_topic("ingest.results", partitions=2),
    }


@pytest.fixture
def live_client(kafka: KafkaConfig, topics: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(settings_for(kafka, topics))) as client:
        yield client


def test_accepted_events_are_in_kafka_keyed_by_device_and_invalid_ones_in_the_dlq(
    live_client: TestClient, kafka: KafkaConfig, topics: dict[str, str]
) -> None:
    good = [example("tool_selected", anonymous_id=f"device-{i}") for i in range(50)]
    bad = example("score_submitted", score=6)
    response = live_client.post(
        "/v1/batch", content=orjson.dumps({"batch": [*good, bad]}), headers={"X-Write-Key": KEY}
    )
    assert response.status_code == 202
    assert response.json()["accepted"] == 50
    stored = read_events(kafka, topics["events_topic"], expect=50)
    assert sorted(str(parse_event_json(v).event_id) for _, v in stored) == sorted(e["event_id"] for e in good)
    # Blocks mixing devices carry no key; one device's block carries the device.
    assert all(key in (None, parse_event_json(value).anonymous_id.encode()) for key, value in stored)
    [(_, letter_bytes)] = read_topic(kafka, topics["dlq_topic"], expect=1)
    letter = DeadLetter.model_validate_json(letter_bytes)
    assert letter.event_id == bad["event_id"] and "score" in letter.reason and letter.source == "backend"
    assert live_client.get("/readyz").status_code == 200


def test_job_results_from_inference_results_are_served(
    live_client: TestClient, kafka: KafkaConfig, topics: dict[str, str], minio_client: Any, s3: ObjectStoreConfig
) -> None:
    ticket = live_client.post(
        "/v1/uploads", json={"content_type": "image/png", "anonymous_id": "device-1"}, headers={"X-Write-Key": KEY}
    ).json()
    image = sample_png(8, 8, seed=0)
    minio_client.put_object(s3.bucket, ticket["input_key"], io.BytesIO(image), len(image), content_type="image/png")
    input_id = uuid.UUID(ticket["input_id"])
    submitted = live_client.post(
        "/v1/jobs",
        json={
            "kind": "segment",
            "input_id": str(input_id),
            "input_key": ticket["input_key"],
            "input_token": ticket["upload_token"],
            "anonymous_id": "device-1",
            "points": [[1.0, 2.0]],
        },
        headers={"X-Write-Key": KEY},
    )
    assert submitted.status_code == 202
    job_id = submitted.json()["job_id"]
    [(key, job)] = read_topic(kafka, topics["jobs_topic"], expect=1)
    assert key == str(input_id).encode() and orjson.loads(job)["job_id"] == job_id
    assert live_client.get(f"/v1/jobs/{job_id}", headers={"X-Write-Key": KEY}).json()["status"] == "queued"

    result = InferenceResult(
        job_id=uuid.UUID(job_id),
        kind=JobKind.SEGMENT,
        input_id=input_id,
        status=JobStatus.SUCCEEDED,
        proposals_url=f"proposals/{job_id}/proposals.json",
        proposal_count=7,
        completed_at=datetime.now(UTC),
    )
    producer = Producer(kafka.client_config())
    producer.produce(topics["results_topic"], result.model_dump_json().encode(), job_id.encode())
    producer.produce(topics["results_topic"], b"not a result", b"x")
    assert producer.flush(10) == 0
    deadline = time.monotonic() + 20
    answer: dict = {}  # type: ignore[type-arg]
    while time.monotonic() < deadline:
        answer = live_client.get(f"/v1/jobs/{job_id}", headers={"X-Write-Key": KEY}).json()
        if answer["status"] != "queued":
            break
        time.sleep(0.2)
    assert answer["status"] == "succeeded"
    assert answer["proposal_count"] == 7 and f"proposals/{job_id}/proposals.json" in answer["proposals_url"]


def test_sdk_through_a_real_server_stores_every_event_once(kafka: KafkaConfig, topics: dict[str, str]) -> None:
    app = create_app(settings_for(kafka, topics))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        with Client(f"http://127.0.0.1:{port}", write_key=KEY, batch_size=200, flush_interval_s=0.1) as sdk:
            ids = [sdk.track(example("image_saved", anonymous_id=f"d-{i % 7}")) for i in range(1000)]
            sdk.flush()
            assert sdk.failed_events == 0
    finally:
        server.should_exit = True
        thread.join(timeout=20)
    stored = Counter(
        str(parse_event_json(v).event_id) for _, v in read_events(kafka, topics["events_topic"], expect=1000)
    )
    assert set(stored) == set(ids)
    assert max(stored.values()) == 1


def test_partition_for_agrees_with_librdkafkas_default_partitioner(
    kafka: KafkaConfig, topics: dict[str, str], kafka_topic: Callable[..., str]
) -> None:
    """Older collectors, the inference service and the heartbeat let librdkafka choose; the
    collector chooses itself: a device's events must land in the same partition either way."""
    topic = kafka_topic("ingest.partitioner", partitions=7)
    settings = settings_for(kafka, topics)
    producer = Producer(collector_producer_config(settings.kafka, settings.ingest))
    keys = [f"device-{uuid.uuid4()}".encode() for _ in range(300)] + [b"a", b"device-1", "é".encode()]
    for key in keys:
        producer.produce(topic, key, key)
    assert producer.flush(10) == 0
    records = read_records(kafka, topic, expect=len(keys))
    assert len(records) == len(keys)
    assert {r.key: r.partition for r in records} == {key: partition_for(key, 7) for key in keys}


def test_a_requests_events_arrive_as_blocks_in_their_devices_partitions_in_order(
    live_client: TestClient, kafka: KafkaConfig, topics: dict[str, str]
) -> None:
    devices = [f"device-{n}" for n in range(9)]
    first = [example("tool_selected", anonymous_id=devices[n % 9]) for n in range(45)]
    # A client's retry in another request: the same events again, plus one new.
    resent = [*first[:5], example("image_saved", anonymous_id=devices[0])]
    for batch in (first, resent):
        answer = live_client.post("/v1/batch", content=orjson.dumps({"batch": batch}), headers={"X-Write-Key": KEY})
        assert answer.status_code == 202 and answer.json()["accepted"] == len(batch)
    records = read_records(kafka, topics["events_topic"], expect=len(first) + len(resent))
    assert all(block_version(r.headers) == BLOCK_VERSION for r in records)
    # One record per partition each request's devices go to: not one per event.
    partitions_of = [{partition_for(e["anonymous_id"].encode(), 4) for e in batch} for batch in (first, resent)]
    assert len(records) == sum(len(p) for p in partitions_of)
    seen: dict[int, list[str]] = {}
    for record in records:
        events = [parse_event_json(document) for document in record.documents()]
        assert {partition_for(e.anonymous_id.encode(), 4) for e in events} == {record.partition}
        devices_in = {e.anonymous_id for e in events}
        assert record.key == (events[0].anonymous_id.encode() if len(devices_in) == 1 else None)
        # Each event keeps its own id and its own stamps.
        assert all(e.received_at is not None and e.event_ts is not None and e.source == "backend" for e in events)
        seen.setdefault(record.partition, []).extend(str(e.event_id) for e in events)
    for partition, ids in seen.items():
        expected = [
            e["event_id"]
            for batch in (first, resent)
            for e in batch
            if partition_for(e["anonymous_id"].encode(), 4) == partition
        ]
        assert ids == expected, "a partition's events are in the order they were accepted"
    # Resends in another request stay separate events (the stream's dedup collapses them).
    ids = Counter(i for ids in seen.values() for i in ids)
    assert {i for i, n in ids.items() if n == 2} == {e["event_id"] for e in first[:5]}
