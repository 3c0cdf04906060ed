"""The collector over HTTP with a fake at the Kafka boundary: what a sender relies on."""

from __future__ import annotations

import base64
import gzip
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import KafkaError
from fastapi import APIRouter, Request
from fastapi.testclient import TestClient

from funnelstream.blocks import BLOCK_HEADERS, partition_for
from funnelstream.contract import DeadLetter, InferenceJob, InferenceResult, JobKind, JobStatus, parse_event_json
from funnelstream.errors import ConfigurationError
from funnelstream.topics import Topic
from ingest.app import create_app
from ingest.settings import DEV_SERVER_WRITE_KEY, DEV_WRITE_KEY, IngestSettings, SourceConfig, hash_write_key
from tests.helpers.collector_fakes import (
    LIMITED_KEY,
    OTHER_ORIGIN,
    WEB_KEY,
    WEB_ORIGIN,
    FakeProducer,
    FakeStat,
    unit_settings,
)
from tests.helpers.examples import example

RAW = str(Topic.EVENTS_RAW)
DLQ = str(Topic.EVENTS_DLQ)
KEY = {"X-Write-Key": WEB_KEY}


def post_batch(client: TestClient, events: list[Any], headers: dict[str, str] | None = None, **extra: Any) -> Any:
    return client.post(
        "/v1/batch",
        content=orjson.dumps({"batch": events, **extra}),
        headers={"content-type": "application/json", **KEY, **(headers or {})},
    )


# --- write keys ------------------------------------------------------------------------------------


def test_missing_write_key_is_401_and_nothing_is_produced(client: TestClient, fake_producer: FakeProducer) -> None:
    response = client.post("/v1/batch", content=orjson.dumps({"batch": [example("tool_selected")]}))
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert fake_producer.delivered == []


def test_unknown_write_key_is_401(client: TestClient, fake_producer: FakeProducer) -> None:
    response = post_batch(client, [example("tool_selected")], headers={"X-Write-Key": "not-a-key"})
    assert response.status_code == 401
    assert response.json()["detail"] == "unknown write key"
    assert client.post("/v1/event", json=example("tool_selected"), headers={"X-Write-Key": "x"}).status_code == 401
    assert fake_producer.delivered == []


def test_the_dev_key_works_only_where_configured(make_client: Callable[..., TestClient]) -> None:
    dev_client = make_client(IngestSettings(_env_file=None, ingest={"results_consumer": False}))  # type: ignore[call-arg]
    ok = dev_client.post("/v1/event", json=example("tool_selected"), headers={"X-Write-Key": DEV_WRITE_KEY})
    assert ok.status_code == 202
    configured = make_client()
    refused = configured.post("/v1/event", json=example("tool_selected"), headers={"X-Write-Key": DEV_WRITE_KEY})
    assert refused.status_code == 401


def test_prod_refuses_the_dev_write_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FS_ENVIRONMENT", "prod")
    monkeypatch.setenv("FS_S3__SECRET_KEY", "a-real-secret")
    monkeypatch.setenv("FS_INGEST__UPLOAD_TOKEN_SECRET", "a-real-upload-secret")
    monkeypatch.setenv("FS_INGEST__READ_KEY_SHA256", '["' + "b" * 64 + '"]')
    with pytest.raises((ConfigurationError, ValueError), match="dev write key"):
        IngestSettings(_env_file=None)  # type: ignore[call-arg]
    sources = '{"web": {"write_key_sha256": ["' + "a" * 64 + '"]}}'
    monkeypatch.setenv("FS_INGEST__SOURCES", sources)
    settings = IngestSettings(_env_file=None)  # type: ignore[call-arg]
    assert list(settings.ingest.sources) == ["web"]
    server = '{"backend": {"write_key_sha256": ["' + hash_write_key(DEV_SERVER_WRITE_KEY) + '"]}}'
    monkeypatch.setenv("FS_INGEST__SOURCES", server)
    with pytest.raises((ConfigurationError, ValueError), match="dev write key"):
        IngestSettings(_env_file=None)  # type: ignore[call-arg]


def test_only_a_source_marked_for_it_binds_user_ids() -> None:
    assert not SourceConfig(write_key_sha256=["a" * 64]).may_bind_user_id
    dev = IngestSettings(_env_file=None).ingest.sources  # type: ignore[call-arg]
    assert {name: source.may_bind_user_id for name, source in dev.items()} == {"dev": False, "dev-server": True}


# --- CORS ------------------------------------------------------------------------------------------


def test_cors_allows_the_source_origin_and_refuses_others(client: TestClient, fake_producer: FakeProducer) -> None:
    allowed = post_batch(client, [example("tool_selected")], headers={"Origin": WEB_ORIGIN})
    assert allowed.status_code == 202
    assert allowed.headers["access-control-allow-origin"] == WEB_ORIGIN

    # The partner's origin is known, but not for the web source's key.
    refused = post_batch(client, [example("tool_selected")], headers={"Origin": OTHER_ORIGIN})
    assert refused.status_code == 403
    assert refused.json()["error"] == "origin_not_allowed"
    assert "access-control-allow-origin" not in refused.headers
    stranger = post_batch(client, [example("tool_selected")], headers={"Origin": "https://evil.example.net"})
    assert stranger.status_code == 403
    assert len(fake_producer.on(RAW)) == 1


def test_preflight_answers_known_origins_only(client: TestClient) -> None:
    ok = client.options("/v1/batch", headers={"Origin": WEB_ORIGIN, "Access-Control-Request-Method": "POST"})
    assert ok.status_code == 204
    assert ok.headers["access-control-allow-origin"] == WEB_ORIGIN
    assert "x-write-key" in ok.headers["access-control-allow-headers"].lower()
    refused = client.options(
        "/v1/event", headers={"Origin": "https://evil.example.net", "Access-Control-Request-Method": "POST"}
    )
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers


# --- rate limit and sizes --------------------------------------------------------------------------


def test_rate_limit_answers_429_with_retry_after(client: TestClient, fake_producer: FakeProducer) -> None:
    headers = {"X-Write-Key": LIMITED_KEY}
    # The bucket holds 500 events; a batch of 497 leaves three, charged per event.
    assert post_batch(client, [example("image_saved") for _ in range(497)], headers).status_code == 202
    statuses = [client.post("/v1/event", json=example("tool_selected"), headers=headers).status_code for _ in range(5)]
    assert statuses[:3] == [202, 202, 202]
    assert statuses[3:] == [429, 429]
    limited = client.post("/v1/event", json=example("tool_selected"), headers=headers)
    assert limited.json()["error"] == "rate_limited"
    assert int(limited.headers["retry-after"]) >= 1
    assert len(fake_producer.on(RAW)) == 500
    # Another key has its own bucket.
    assert client.post("/v1/event", json=example("tool_selected"), headers=KEY).status_code == 202


def test_batch_over_500_events_is_413(client: TestClient, fake_producer: FakeProducer) -> None:
    response = post_batch(client, [example("image_saved") for _ in range(501)])
    assert response.status_code == 413
    assert "501" in response.json()["detail"]
    assert fake_producer.delivered == []


def test_body_over_1mb_is_413(client: TestClient) -> None:
    big = example("tool_selected", properties={"blob": "x" * 1_100_000})
    assert post_batch(client, [big]).status_code == 413


def test_gzip_bomb_is_413_not_inflated(client: TestClient) -> None:
    body = gzip.compress(orjson.dumps({"batch": [example("tool_selected", properties={"z": "0" * 3_000_000})]}))
    assert len(body) < 100_000
    response = client.post("/v1/batch", content=body, headers={**KEY, "content-encoding": "gzip"})
    assert response.status_code == 413


def test_single_event_over_32kb_is_413(client: TestClient, fake_producer: FakeProducer) -> None:
    response = client.post("/v1/event", json=example("tool_selected", properties={"blob": "x" * 40_000}), headers=KEY)
    assert response.status_code == 413
    assert fake_producer.delivered == []


def test_event_over_32kb_in_a_batch_is_rejected_alone(client: TestClient, fake_producer: FakeProducer) -> None:
    events = [example("tool_selected"), example("tool_selected", properties={"blob": "x" * 40_000})]
    response = post_batch(client, events)
    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 1
    assert body["rejected"][0]["index"] == 1
    assert "limit is 32768" in body["rejected"][0]["errors"][0]["reason"]
    assert len(fake_producer.on(DLQ)) == 1


# --- partial batches, DLQ --------------------------------------------------------------------------


def test_partial_batch_accepts_valid_events_and_reports_each_invalid_one(
    client: TestClient, fake_producer: FakeProducer
) -> None:
    good = [example("tool_selected"), example("image_saved"), example("score_submitted")]
    bad_score = example("score_submitted", score=9)
    no_type = {k: v for k, v in example("image_saved").items() if k != "event_type"}
    not_object = ["just", "a", "list"]
    events = [good[0], bad_score, good[1], no_type, not_object, good[2]]
    response = post_batch(client, events)
    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 3
    rejected = {r["index"]: r for r in body["rejected"]}
    assert set(rejected) == {1, 3, 4}
    assert rejected[1]["event_id"] == bad_score["event_id"]
    assert rejected[1]["errors"] == [{"field": "score", "reason": "Input should be less than or equal to 5"}]
    assert rejected[3]["errors"][0]["field"] == "event_type"
    assert rejected[4]["errors"][0]["field"] == "event"

    stored = [parse_event_json(m.value()) for m in fake_producer.on(RAW)]
    assert [str(e.event_id) for e in stored] == [e["event_id"] for e in good]
    letters = [DeadLetter.model_validate_json(m.value()) for m in fake_producer.on(DLQ)]
    assert len(letters) == 3
    by_event = {letter.event_id: letter for letter in letters}
    score_letter = by_event[bad_score["event_id"]]
    assert score_letter.stage == "ingest"
    assert score_letter.source == "web"
    assert "score" in score_letter.reason
    assert orjson.loads(score_letter.payload) == bad_score
    assert {m.key() for m in fake_producer.on(DLQ)} >= {b"device-7f3a"}


def test_invalid_single_event_is_422_and_dead_lettered(client: TestClient, fake_producer: FakeProducer) -> None:
    event = example("tool_selected", tool_id=0)
    response = client.post("/v1/event", json=event, headers=KEY)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "tool_id"
    [letter] = [DeadLetter.model_validate_json(m.value()) for m in fake_producer.on(DLQ)]
    assert letter.event_id == event["event_id"]
    assert fake_producer.on(RAW) == []


def test_malformed_bodies_are_400_or_415(client: TestClient) -> None:
    assert client.post("/v1/batch", content=b"{not json", headers=KEY).status_code == 400
    assert client.post("/v1/batch", content=b'{"events": []}', headers=KEY).json()["errors"][0]["field"] == "batch"
    assert client.post("/v1/batch", content=b"[1, 2]", headers=KEY).status_code == 400
    bad_gzip = client.post("/v1/batch", content=b"not gzip", headers={**KEY, "content-encoding": "gzip"})
    assert bad_gzip.status_code == 400
    form = client.post(
        "/v1/batch", content=b"a=b", headers={**KEY, "content-type": "application/x-www-form-urlencoded"}
    )
    assert form.status_code == 415


def test_json_numbers_outside_the_standard_are_400_for_the_whole_body(
    client: TestClient, fake_producer: FakeProducer
) -> None:
    """NaN and Infinity are not JSON; a body carrying one is refused whole, on every path."""
    valid = orjson.dumps(example("tool_selected", properties={"ratio": 0}))
    for literal in (b"NaN", b"Infinity"):
        event = valid.replace(b'"ratio":0', b'"ratio":' + literal)
        batch = client.post("/v1/batch", content=b'{"batch": [' + valid + b"," + event + b"]}", headers=KEY)
        assert batch.status_code == 400 and batch.json()["error"] == "bad_request"
        assert client.post("/v1/event", content=event, headers=KEY).status_code == 400
    assert fake_producer.on(RAW) == [] and fake_producer.on(DLQ) == []


# --- encodings -------------------------------------------------------------------------------------


def test_gzip_batch_is_accepted(client: TestClient, fake_producer: FakeProducer) -> None:
    events = [example("tool_selected") for _ in range(20)]
    body = gzip.compress(orjson.dumps({"batch": events}))
    response = client.post(
        "/v1/batch", content=body, headers={**KEY, "content-type": "application/json", "content-encoding": "gzip"}
    )
    assert response.status_code == 202
    assert response.json() == {"accepted": 20, "rejected": []}
    assert len(fake_producer.on(RAW)) == 20


def test_text_plain_beacon_with_write_key_in_body(client: TestClient, fake_producer: FakeProducer) -> None:
    events = [example("image_saved"), example("score_submitted")]
    beacon = orjson.dumps({"batch": events, "writeKey": WEB_KEY})
    response = client.post(
        "/v1/batch", content=beacon, headers={"content-type": "text/plain;charset=UTF-8", "Origin": WEB_ORIGIN}
    )
    assert response.status_code == 202
    assert response.headers["access-control-allow-origin"] == WEB_ORIGIN
    single = orjson.dumps({**example("tool_selected"), "writeKey": WEB_KEY})
    assert client.post("/v1/event", content=single, headers={"content-type": "text/plain"}).status_code == 202
    stored = [orjson.loads(m.value()) for m in fake_producer.on(RAW)]
    assert len(stored) == 3
    # The key is a credential: it never reaches Kafka, not even under properties.
    assert all(WEB_KEY.encode() not in m.value() for m in fake_producer.delivered)
    assert all("writeKey" not in event.get("properties", {}) for event in stored)


# --- stamping --------------------------------------------------------------------------------------


def test_stamping_overrides_server_fields_and_applies_the_skew_rule(
    client: TestClient, fake_producer: FakeProducer
) -> None:
    # The device clock is two hours fast; the event happened 30 s before the batch was sent.
    device_now = datetime.now(UTC) + timedelta(hours=2)
    event = example(
        "tool_selected",
        client_ts=(device_now - timedelta(seconds=30)).isoformat(),
        sent_at=device_now.isoformat(),
        received_at="2020-01-01T00:00:00Z",
        source="forged",
        context={"page_url": "https://edit.example.com/"},
    )
    before = datetime.now(UTC)
    assert post_batch(client, [event], headers={"User-Agent": "Mozilla/5.0 test"}).status_code == 202
    after = datetime.now(UTC)
    [message] = fake_producer.on(RAW)
    stored = parse_event_json(message.value())
    assert message.key() == b"device-7f3a"
    assert stored.source == "web"
    assert stored.received_at is not None and before <= stored.received_at <= after
    assert stored.event_ts is not None
    assert abs((stored.received_at - stored.event_ts) - timedelta(seconds=30)) < timedelta(milliseconds=5)
    assert stored.timestamp_flag == "ok"
    assert stored.context.ip == "203.0.113.0"
    assert stored.context.user_agent == "Mozilla/5.0 test"


def test_future_and_too_old_timestamps_are_flagged_not_trusted(
    make_client: Callable[..., TestClient], fake_producer: FakeProducer
) -> None:
    # The contract allows client_ts up to 1 s after sent_at (rounding); with no tolerance here,
    # that is a future event time, clamped to received_at.
    client = make_client(unit_settings(future_tolerance_s=0))
    now = datetime.now(UTC)
    future = example("image_saved", client_ts=(now + timedelta(milliseconds=900)).isoformat(), sent_at=now.isoformat())
    old = example("image_saved", client_ts=(now - timedelta(days=30)).isoformat(), sent_at=now.isoformat())
    assert post_batch(client, [future, old]).json()["accepted"] == 2
    stored = {str(e.event_id): e for e in (parse_event_json(m.value()) for m in fake_producer.on(RAW))}
    flagged_future = stored[future["event_id"]]
    assert flagged_future.timestamp_flag == "future"
    assert flagged_future.event_ts == flagged_future.received_at
    assert stored[old["event_id"]].timestamp_flag == "too_old"


def test_batch_sent_at_applies_to_events_without_one(client: TestClient, fake_producer: FakeProducer) -> None:
    now = datetime.now(UTC)
    event = {k: v for k, v in example("image_saved").items() if k != "sent_at"}
    event["client_ts"] = (now - timedelta(minutes=5)).isoformat()
    assert post_batch(client, [event], sent_at=now.isoformat()).status_code == 202
    stored = parse_event_json(fake_producer.on(RAW)[0].value())
    assert stored.received_at is not None and stored.event_ts is not None
    assert timedelta(minutes=4, seconds=59) < stored.received_at - stored.event_ts < timedelta(minutes=5, seconds=1)


def test_client_supplied_ip_is_truncated(client: TestClient, fake_producer: FakeProducer) -> None:
    events = [
        example("image_saved", context={"ip": "198.51.100.23"}),
        example("image_saved", context={"ip": "2001:db8:1234:5678::1"}),
        example("image_saved", context={"ip": "not an address"}),
    ]
    assert post_batch(client, events).json()["accepted"] == 3
    ips = [parse_event_json(m.value()).context.ip for m in fake_producer.on(RAW)]
    assert ips == ["198.51.100.0", "2001:db8:1234::", None]


# --- durability ------------------------------------------------------------------------------------


def test_failed_delivery_is_503_with_retry_after_never_202(client: TestClient, fake_producer: FakeProducer) -> None:
    fake_producer.fail_with = KafkaError(KafkaError._MSG_TIMED_OUT)
    response = post_batch(client, [example("tool_selected"), example("image_saved")])
    assert response.status_code == 503
    assert response.json()["error"] == "unavailable"
    assert int(response.headers["retry-after"]) >= 1
    single = client.post("/v1/event", json=example("tool_selected"), headers=KEY)
    assert single.status_code == 503


def test_fatal_producer_error_fails_liveness(client: TestClient, fake_producer: FakeProducer) -> None:
    fake_producer.fail_with = KafkaError(KafkaError._FATAL, "fenced", fatal=True)
    assert post_batch(client, [example("tool_selected")]).status_code == 503
    health = client.get("/healthz")
    assert health.status_code == 503
    assert "fenced" in health.json()["detail"]


def test_full_producer_queue_is_503(client: TestClient, fake_producer: FakeProducer) -> None:
    fake_producer.queue_full = True
    response = post_batch(client, [example("tool_selected")])
    assert response.status_code == 503
    assert "retry-after" in response.headers


def test_a_requests_events_are_one_record_per_partition_and_a_single_event_one_record(
    client: TestClient, fake_producer: FakeProducer
) -> None:
    events = [example("tool_selected", anonymous_id=f"device-{n % 10}") for n in range(40)]
    assert post_batch(client, events).status_code == 202
    assert client.post("/v1/event", json=example("tool_selected"), headers=KEY).status_code == 202
    records = fake_producer.records(RAW)
    partitions = {partition_for(e["anonymous_id"].encode(), 4) for e in events}
    assert len(records) == len(partitions) + 1
    assert all(r.headers() == BLOCK_HEADERS for r in records)
    for record in records[:-1]:
        in_block = [str(parse_event_json(line).event_id) for line in record.value().split(b"\n")]
        of_partition = [
            e["event_id"] for e in events if partition_for(e["anonymous_id"].encode(), 4) == record.partition()
        ]
        assert in_block == of_partition, "a partition's events, in the order sent"


def test_events_are_plain_records_while_the_topic_has_no_metadata(
    make_client: Callable[..., TestClient], fake_producer: FakeProducer
) -> None:
    fake_producer.partitions = None
    client = make_client()
    events = [example("tool_selected", anonymous_id=f"device-{n % 10}") for n in range(12)]
    assert post_batch(client, events).status_code == 202
    records = fake_producer.records(RAW)
    assert [(r.key(), r.partition(), r.headers()) for r in records] == [
        (e["anonymous_id"].encode(), -1, None) for e in events
    ]


def test_queue_depth_bound_refuses_before_producing(
    make_client: Callable[..., TestClient], fake_producer: FakeProducer
) -> None:
    # The bound counts records; without a partition count each event is one, as in a plain topic.
    fake_producer.partitions = None
    client = make_client(unit_settings(producer_queue_max_messages=1000))
    events = [example("image_saved") for _ in range(400)]
    producer_state = client.app.state.ingest.producer  # type: ignore[attr-defined]
    producer_state.producer.hold = True
    # Hold deliveries: two batches fill the queue to 800; a third would pass the bound.
    import threading

    results: list[int] = []
    threads = [
        threading.Thread(target=lambda: results.append(post_batch(client, events).status_code)) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    deadline = datetime.now(UTC) + timedelta(seconds=5)
    while len(producer_state.producer) < 800 and datetime.now(UTC) < deadline:
        pass
    third = post_batch(client, events)
    assert third.status_code == 503
    producer_state.producer.hold = False
    for thread in threads:
        thread.join()
    assert results == [202, 202]


def test_no_answer_before_the_broker_confirms(make_client: Callable[..., TestClient]) -> None:
    client = make_client(unit_settings(delivery_timeout_s=0.3))
    producer = client.app.state.ingest.producer  # type: ignore[attr-defined]
    producer.wait_timeout_s = 0.5
    producer.producer.hold = True
    response = post_batch(client, [example("tool_selected")])
    assert response.status_code == 503


def test_shutdown_flushes_the_producer(make_client: Callable[..., TestClient], fake_producer: FakeProducer) -> None:
    client = make_client()
    client.__exit__(None, None, None)
    assert fake_producer.flushed


# --- uploads and jobs ------------------------------------------------------------------------------


UPLOAD = {"content_type": "image/png", "anonymous_id": "device-7f3a"}


def test_upload_returns_a_post_policy_and_token_for_a_new_input(client: TestClient) -> None:
    response = client.post("/v1/uploads", json=UPLOAD, headers=KEY)
    assert response.status_code == 200
    ticket = response.json()
    input_id = uuid.UUID(ticket["input_id"])
    assert ticket["input_key"].startswith("inputs/") and ticket["input_key"].endswith(f"{input_id}.png")
    assert (
        ticket["method"] == "POST"
        and ticket["upload_url"] == "http://unit-tests-reach-no-service.invalid:9/funnelstream"
    )
    fields = ticket["fields"]
    assert fields["key"] == ticket["input_key"] and fields["Content-Type"] == "image/png"
    policy = orjson.loads(base64.b64decode(fields["policy"]))
    assert ["eq", "$key", ticket["input_key"]] in policy["conditions"]
    assert ["eq", "$Content-Type", "image/png"] in policy["conditions"]
    assert ["content-length-range", 1, ticket["max_bytes"]] in policy["conditions"]
    assert fields["x-amz-signature"] and ticket["upload_token"]
    assert client.post("/v1/uploads", json=UPLOAD).status_code == 401
    assert client.post("/v1/uploads", json={**UPLOAD, "content_type": "text/html"}, headers=KEY).status_code == 422
    anonymous = client.post("/v1/uploads", json={"content_type": "image/png"}, headers=KEY)
    assert anonymous.status_code == 422 and anonymous.json()["errors"][0]["field"] == "anonymous_id"


def test_upload_url_uses_the_public_endpoint(make_client: Callable[..., TestClient]) -> None:
    settings = unit_settings()
    settings.s3.public_endpoint = "images.example.com"
    client = make_client(settings)
    ticket = client.post("/v1/uploads", json={**UPLOAD, "content_type": "image/jpeg"}, headers=KEY).json()
    assert ticket["upload_url"].startswith("http://images.example.com/")


def _upload(client: TestClient, anonymous_id: str = "device-7f3a", posted: bool = True) -> dict[str, Any]:
    """A ticket, and with ``posted`` its image in the (fake) store, as the browser's form post leaves it."""
    ticket = dict(client.post("/v1/uploads", json={**UPLOAD, "anonymous_id": anonymous_id}, headers=KEY).json())
    if posted:
        store = client.app.state.ingest.store  # type: ignore[attr-defined]
        store.objects[ticket["input_key"]] = FakeStat(1234, "image/png", f"etag-{ticket['input_id']}")
    return ticket


def _job(client: TestClient, kind: str, **extra: Any) -> dict[str, Any]:
    ticket = _upload(client)
    return {
        "kind": kind,
        "input_id": ticket["input_id"],
        "input_key": ticket["input_key"],
        "input_token": ticket["upload_token"],
        "anonymous_id": "device-7f3a",
        **extra,
    }


def test_restore_job_goes_to_inference_jobs_and_emits_inference_requested(
    client: TestClient, fake_producer: FakeProducer
) -> None:
    mask = _upload(client)
    request = _job(client, "restore", inference_id=1, mask_key=mask["input_key"], mask_token=mask["upload_token"])
    response = client.post("/v1/jobs", json=request, headers=KEY)
    assert response.status_code == 202
    job_id = response.json()["job_id"]
    assert response.json()["status"] == "queued"
    [job_message] = fake_producer.on(str(Topic.INFERENCE_JOBS))
    job = InferenceJob.model_validate_json(job_message.value())
    assert job_message.key() == request["input_id"].encode()
    assert (job.input_etag, job.mask_etag) == (f"etag-{request['input_id']}", f"etag-{mask['input_id']}")
    assert str(job.job_id) == job_id and job.kind is JobKind.RESTORE and job.inference_id == 1
    [event_message] = fake_producer.on(RAW)
    event = parse_event_json(event_message.value())
    assert event.event_type == "inference_requested"
    assert str(event.job_id) == job_id  # type: ignore[union-attr]
    assert event.source == "web"


def test_segment_job_emits_no_funnel_event(client: TestClient, fake_producer: FakeProducer) -> None:
    response = client.post("/v1/jobs", json=_job(client, "segment", points=[[10, 20]]), headers=KEY)
    assert response.status_code == 202
    assert len(fake_producer.on(str(Topic.INFERENCE_JOBS))) == 1
    assert fake_producer.on(RAW) == []


def test_invalid_jobs_are_422(client: TestClient, fake_producer: FakeProducer) -> None:
    no_inference = client.post("/v1/jobs", json=_job(client, "restore"), headers=KEY)
    assert no_inference.status_code == 422
    assert no_inference.json()["errors"][0]["field"] == "inference_id"
    wrong_key = {**_job(client, "segment"), "input_key": "inputs/2026/11/26/other.png"}
    assert client.post("/v1/jobs", json=wrong_key, headers=KEY).json()["errors"][0]["field"] == "input_key"
    other_input = {**_job(client, "segment"), "input_id": str(uuid.uuid4())}
    assert client.post("/v1/jobs", json=other_input, headers=KEY).json()["errors"][0]["field"] == "input_key"
    mask = _upload(client)
    half_mask = _job(client, "restore", inference_id=1, mask_key=mask["input_key"])
    assert client.post("/v1/jobs", json=half_mask, headers=KEY).json()["errors"][0]["field"] == "mask_token"
    chosen_id = client.post("/v1/jobs", json={**_job(client, "segment"), "job_id": str(uuid.uuid4())}, headers=KEY)
    assert chosen_id.status_code == 422 and chosen_id.json()["errors"][0]["field"] == "job_id"
    assert fake_producer.delivered == []


def test_a_job_needs_the_upload_tokens_of_its_own_device(client: TestClient, fake_producer: FakeProducer) -> None:
    job = _job(client, "segment")
    forged = client.post("/v1/jobs", json={**job, "input_token": "A" * 43}, headers=KEY)
    assert forged.status_code == 403 and forged.json()["errors"][0]["field"] == "input_token"
    other_device = client.post("/v1/jobs", json={**job, "anonymous_id": "someone-else"}, headers=KEY)
    assert other_device.status_code == 403 and other_device.json()["errors"][0]["field"] == "input_token"
    foreign_mask = _upload(client, anonymous_id="someone-else")
    masked = {**job, "kind": "restore", "inference_id": 1}
    refused = client.post(
        "/v1/jobs", json={**masked, "mask_key": foreign_mask["input_key"], "mask_token": foreign_mask["upload_token"]},
        headers=KEY)  # fmt: skip
    assert refused.status_code == 403 and refused.json()["errors"][0]["field"] == "mask_token"
    assert fake_producer.delivered == []


def test_a_job_needs_its_input_uploaded_with_the_type_its_key_names(client: TestClient) -> None:
    ticket = _upload(client, posted=False)
    job = {**_job(client, "segment"), "input_id": ticket["input_id"], "input_key": ticket["input_key"]}
    job["input_token"] = ticket["upload_token"]
    not_posted = client.post("/v1/jobs", json=job, headers=KEY)
    assert not_posted.status_code == 422 and not_posted.json()["errors"][0]["field"] == "input_key"
    store = client.app.state.ingest.store  # type: ignore[attr-defined]
    store.objects[ticket["input_key"]] = FakeStat(1234, "text/html", "etag")
    html = client.post("/v1/jobs", json=job, headers=KEY)
    assert html.status_code == 422 and "stored as 'text/html'" in html.json()["errors"][0]["reason"]
    store.objects[ticket["input_key"]] = FakeStat(1234, "image/png", "etag")
    assert client.post("/v1/jobs", json=job, headers=KEY).status_code == 202


def test_job_fields_are_bounded_and_named(client: TestClient) -> None:
    job = _job(client, "restore", inference_id=2)
    cases = {
        "params": {"params": {f"k{i}": i for i in range(17)}},
        "params.scale": {"params": {"scale": {"nested": [1, 2]}}},
        "points": {"points": [[1, 2]] * 65},
        "box.0": {"box": [-1, 0, 10, 10]},
        "mask_key": {"mask_key": "results/2026/11/26/x.png", "mask_token": "t"},
    }
    for field, change in cases.items():
        response = client.post("/v1/jobs", json={**job, **change}, headers=KEY)
        assert response.status_code == 422, (field, response.text)
        assert any(error["field"].startswith(field) for error in response.json()["errors"]), (field, response.text)
    too_large = client.post("/v1/jobs", json={**job, "params": {"x": "a" * 40_000}}, headers=KEY)
    assert too_large.status_code == 413


def test_prod_refuses_the_dev_upload_token_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FS_ENVIRONMENT", "prod")
    monkeypatch.setenv("FS_S3__SECRET_KEY", "a-real-secret")
    with pytest.raises((ConfigurationError, ValueError), match="FS_INGEST__UPLOAD_TOKEN_SECRET"):
        IngestSettings(_env_file=None)  # type: ignore[call-arg]


def test_job_status_is_queued_until_a_result_arrives(client: TestClient) -> None:
    job_id = uuid.uuid4()
    queued = client.get(f"/v1/jobs/{job_id}", headers=KEY)
    assert queued.status_code == 200
    assert queued.json()["status"] == "queued"
    result = InferenceResult(
        job_id=job_id,
        kind=JobKind.RESTORE,
        input_id=uuid.uuid4(),
        status=JobStatus.SUCCEEDED,
        result_url=f"s3://funnelstream/results/2026/11/26/{job_id}.png",  # as the inference service writes it
        mask_url="https://cdn.example.com/mask.png",
        model_name="lama",
        model_version="1",
        latency_ms=812.0,
        completed_at=datetime.now(UTC),
    )
    client.app.state.ingest.results.put(result)  # type: ignore[attr-defined]
    done = client.get(f"/v1/jobs/{job_id}", headers=KEY).json()
    assert done["status"] == "succeeded"
    assert f"results/2026/11/26/{job_id}.png" in done["result_url"] and "X-Amz-Signature=" in done["result_url"]
    assert done["mask_url"] == "https://cdn.example.com/mask.png"
    assert client.get(f"/v1/jobs/{job_id}").status_code == 401


# --- operations ------------------------------------------------------------------------------------


def test_health_readiness_and_metrics(client: TestClient, fake_producer: FakeProducer) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    post_batch(client, [example("tool_selected"), example("score_submitted", score=0)])
    client.post("/v1/event", json=example("tool_selected"))
    metrics = client.get("/metrics").text
    assert 'ingest_events_accepted_total{source="web"} 1.0' in metrics
    assert 'ingest_events_rejected_total{reason="invalid_event"} 1.0' in metrics
    assert 'ingest_events_rejected_total{reason="unauthorized"} 1.0' in metrics
    assert "ingest_produce_latency_seconds_count 1.0" in metrics
    assert "ingest_producer_queue_depth 0.0" in metrics


def test_readiness_fails_when_kafka_is_unreachable(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    client.app.state.ingest.producer.producer.reachable = False  # type: ignore[attr-defined]
    assert client.get("/readyz").status_code == 503


def test_openapi_documents_the_response_format(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    batch = schema["paths"]["/v1/batch"]["post"]
    accepted = batch["responses"]["202"]["content"]["application/json"]["schema"]["$ref"]
    assert accepted.endswith("/BatchAccepted")
    components = schema["components"]["schemas"]
    assert set(components["BatchAccepted"]["properties"]) == {"accepted", "rejected"}
    assert set(components["RejectedEvent"]["properties"]) == {"index", "event_id", "errors"}
    assert {"400", "401", "403", "413", "429", "503"} <= set(batch["responses"])
    assert "ScoreSubmitted" in components
    assert schema["paths"]["/v1/jobs/{job_id}"]["get"]["security"] == [{"WriteKey": []}]


def test_routers_mounted_later_share_the_app_state(make_client: Callable[..., TestClient]) -> None:
    router = APIRouter()

    @router.get("/v1/custom")
    async def custom(request: Request) -> dict[str, str]:
        return {"source_count": str(len(request.app.state.ingest.settings.ingest.sources))}

    app = create_app(unit_settings(), producer_factory=lambda _: FakeProducer())
    app.include_router(router)
    with TestClient(app) as client:
        assert client.get("/v1/custom").json() == {"source_count": "2"}
        assert post_batch(client, [example("tool_selected")]).status_code == 202
        assert "/v1/custom" in client.get("/openapi.json").json()["paths"]


def test_assignments_are_served_and_the_exposure_is_produced(tmp_path: Path, fake_producer: FakeProducer) -> None:
    settings = unit_settings(experiments_enabled=True)
    settings.experiments.store_path = tmp_path / "assignments.sqlite3"
    app = create_app(settings, producer_factory=lambda _: fake_producer)
    with TestClient(app) as client:
        first = client.get("/v1/assignments", params={"anonymous_id": "device-1"}, headers=KEY)
        again = client.get("/v1/assignments", params={"anonymous_id": "device-1"}, headers=KEY)
    assert first.status_code == 200, first.text
    variant = first.json()["variants"]["segmentation_tool"]
    assert variant in {"control", "treatment"}
    assert again.json()["variants"]["segmentation_tool"] == variant
    exposures = [m for m in fake_producer.delivered if b"experiment_exposure" in m.value()]
    assert len(exposures) == 1  # once per unit and experiment


def test_assignments_refuse_a_user_id_from_a_browser_key_by_name(tmp_path: Path, fake_producer: FakeProducer) -> None:
    settings = unit_settings(experiments_enabled=True)
    settings.experiments.store_path = tmp_path / "assignments.sqlite3"
    app = create_app(settings, producer_factory=lambda _: fake_producer)
    with TestClient(app) as client:
        anonymous = client.get("/v1/assignments", params={"anonymous_id": "device-1"})
        forged = client.get(
            "/v1/assignments",
            params={"anonymous_id": "device-1", "user_id": "victim"},
            headers={**KEY, "Origin": WEB_ORIGIN},
        )
    assert anonymous.status_code == 401
    assert forged.status_code == 403, forged.text
    assert forged.json()["error"] == "user_id_not_allowed"
    assert [e["field"] for e in forged.json()["errors"]] == ["user_id"]
    assert forged.headers["access-control-allow-origin"] == WEB_ORIGIN
    assert fake_producer.delivered == []


def test_the_demo_page_and_tracker_are_served(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    page = client.get("/demo")
    assert page.status_code == 200 and "fs-write-key" in page.text and "__WRITE_KEY__" not in page.text
    tracker = client.get("/tracker.js")
    assert tracker.headers["content-type"].startswith("text/javascript")
    assert b"sendBeacon" in tracker.content


def test_a_page_served_by_the_collector_itself_is_not_cross_origin(make_client: Callable[..., TestClient]) -> None:
    client = make_client()
    own = client.post("/v1/uploads", json=UPLOAD, headers={
        "X-Write-Key": WEB_KEY, "Origin": "http://testserver"})  # fmt: skip
    assert own.status_code == 200, own.text
    foreign = client.post("/v1/uploads", json=UPLOAD, headers={
        "X-Write-Key": WEB_KEY, "Origin": "http://evil.example"})  # fmt: skip
    assert foreign.status_code == 403
