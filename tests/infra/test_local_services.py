"""Round trips against the real local services: Kafka, the S3 server, and chdb."""

from __future__ import annotations

import datetime as dt
import io
import urllib.request
import uuid

from confluent_kafka import Consumer

from funnelstream.contract import parse_event, parse_event_json
from funnelstream.kafka import DeliveryReport, flush_or_raise, make_producer, produce
from funnelstream.topics import TOPIC_SPECS
from tests.helpers.examples import example


def test_project_topics_exist_with_compaction_where_stated(kafka) -> None:
    from confluent_kafka.admin import AdminClient, ConfigResource

    admin = AdminClient(kafka.client_config())
    topics = admin.list_topics(timeout=10).topics
    for spec in TOPIC_SPECS:
        assert str(spec.topic) in topics
    resources = [ConfigResource("topic", str(spec.topic)) for spec in TOPIC_SPECS]
    for resource, future in admin.describe_configs(resources).items():
        policy = future.result()["cleanup.policy"].value
        spec = next(s for s in TOPIC_SPECS if str(s.topic) == resource.name)
        assert policy == ("compact" if spec.compacted else "delete"), resource.name


def test_events_survive_a_produce_consume_round_trip(kafka, kafka_topic) -> None:
    topic = kafka_topic(partitions=3)
    events = [parse_event(example("tool_selected", anonymous_id=f"device-{i % 5}")) for i in range(50)]
    producer = make_producer(kafka)
    report = DeliveryReport()
    for event in events:
        produce(producer, topic, event.model_dump_json().encode(), event.anonymous_id, report)
    flush_or_raise(producer, report, timeout_s=30)
    assert report.delivered == 50

    consumer = Consumer({**kafka.client_config(), "group.id": f"g-{uuid.uuid4()}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    received = []
    try:
        deadline = dt.datetime.now() + dt.timedelta(seconds=30)
        while len(received) < 50 and dt.datetime.now() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            received.append((message.key().decode(), parse_event_json(message.value())))
    finally:
        consumer.close()
    assert sorted(e.event_id for _, e in received) == sorted(e.event_id for e in events)
    assert all(key == event.anonymous_id for key, event in received)


def test_delivery_failure_is_surfaced(kafka) -> None:
    producer = make_producer(kafka, **{"message.timeout.ms": 3000})
    report = DeliveryReport()
    produce(producer, "topic.that.does.not.exist", b"{}", None, report)
    try:
        flush_or_raise(producer, report, timeout_s=15)
    except Exception as exc:
        assert "topic.that.does.not.exist" in str(exc)
    else:
        raise AssertionError("a message to a missing topic was reported as delivered")


def test_s3_put_get_and_presigned_urls(s3, minio_client) -> None:
    key = f"tests/{uuid.uuid4()}.bin"
    body = uuid.uuid4().bytes * 1000
    minio_client.put_object(s3.bucket, key, io.BytesIO(body), len(body), content_type="application/octet-stream")
    response = minio_client.get_object(s3.bucket, key)
    try:
        assert response.read() == body
    finally:
        response.close()
        response.release_conn()

    put_url = minio_client.presigned_put_object(s3.bucket, key + ".upload", expires=dt.timedelta(minutes=5))
    request = urllib.request.Request(put_url, data=b"browser bytes", method="PUT")
    assert urllib.request.urlopen(request, timeout=10).status == 200
    get_url = minio_client.presigned_get_object(s3.bucket, key + ".upload", expires=dt.timedelta(minutes=5))
    assert urllib.request.urlopen(get_url, timeout=10).read() == b"browser bytes"


def test_s3_refuses_a_wrong_secret(s3) -> None:
    from minio import Minio
    from minio.error import S3Error

    intruder = Minio(s3.endpoint, access_key=s3.access_key, secret_key="not-the-secret", secure=False, region=s3.region)
    try:
        intruder.list_objects(s3.bucket)
        next(iter(intruder.list_objects(s3.bucket)), None)
    except S3Error as exc:
        assert exc.code in {"SignatureDoesNotMatch", "AccessDenied", "InvalidAccessKeyId"}
    else:
        raise AssertionError("the S3 server accepted a request signed with the wrong secret")
