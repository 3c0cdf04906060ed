"""The heartbeat travels as a contract event; ``status`` turns consumer offsets and heartbeats in
the warehouse into lag and health, and shows a stopped loader falling behind and catching up."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from clickhouse.backend import ChdbWarehouse
from clickhouse.loader import Loader
from clickhouse.qa.settings import QAConfig, QASettings
from clickhouse.settings import LoaderConfig, WarehouseSettings
from funnelstream.blocks import BLOCK_HEADERS, block_version
from funnelstream.contract import PipelineHeartbeat, parse_event_json
from funnelstream.kafka import consumer_group_lag
from ops.heartbeat import (
    CONSUMER_GROUP_LAG,
    FRESHNESS_PROBE_FAILURES,
    HEARTBEAT_END_TO_END,
    HEARTBEATS_SENT,
    PIPELINE_FRESHNESS,
    HeartbeatEmitter,
    make_heartbeat,
)
from ops.status import Freshness, Health, StageStatus, collect_status
from stream_processors.dimensions import DimensionStore
from stream_processors.enrich import Enricher, UserAgentParser
from stream_processors.processor import MemoryStateStore, RawRecord, StreamProcessor
from tests.helpers.heartbeats import enriched
from tests.helpers.kafka_topics import read_events
from tests.helpers.qa_warehouse import load_events, open_warehouse

pytestmark = pytest.mark.integration


def _consumer(kafka, group: str) -> Consumer:  # type: ignore[no-untyped-def]
    return Consumer(
        {**kafka.client_config(), "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False}
    )


def test_heartbeats_reach_the_raw_topic_as_contract_events(kafka, kafka_topic) -> None:  # type: ignore[no-untyped-def]
    topic = kafka_topic("events.raw")
    settings = QASettings(kafka=kafka, qa=QAConfig(heartbeat_interval_s=0.05))
    reads = iter([Freshness(1, 1.5, 0.25), RuntimeError("warehouse away"), Freshness(2, 0.5, 0.125)])

    def freshness() -> Freshness:
        value = next(reads)
        if isinstance(value, Exception):
            raise value
        return value

    emitter = HeartbeatEmitter(settings, topic=topic, freshness=freshness)
    sent_before = HEARTBEATS_SENT._value.get()
    probe_failures_before = FRESHNESS_PROBE_FAILURES._value.get()
    try:
        assert emitter.run(count=3) == 3
    finally:
        emitter.close()
    assert HEARTBEATS_SENT._value.get() - sent_before == 3
    # A failed read leaves the last value and is counted; beats go on regardless.
    assert FRESHNESS_PROBE_FAILURES._value.get() - probe_failures_before == 1
    assert PIPELINE_FRESHNESS._value.get() == 0.5
    assert HEARTBEAT_END_TO_END._value.get() == 0.125
    consumer = _consumer(kafka, f"qa-test-{uuid.uuid4().hex[:8]}")
    consumer.subscribe([topic])
    received = []
    deadline = time.monotonic() + 20
    while len(received) < 3 and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            received.append((message.key(), parse_event_json(message.value())))
    consumer.close()
    assert len(received) == 3
    for key, event in received:
        assert isinstance(event, PipelineHeartbeat)
        assert key == b"funnelstream-heartbeat"
        assert event.source == "heartbeat" and event.received_at is not None
        assert event.emitted_by.startswith("heartbeat@")


def test_consumer_group_lag_counts_what_is_not_committed(kafka, kafka_topic) -> None:  # type: ignore[no-untyped-def]
    topic = kafka_topic("lag", partitions=2)
    producer = Producer(kafka.client_config())
    for index in range(10):
        producer.produce(topic, value=b"x", partition=index % 2)
    producer.flush(10)
    group = f"qa-lag-{uuid.uuid4().hex[:8]}"
    consumer = _consumer(kafka, group)
    consumer.commit(offsets=[TopicPartition(topic, 0, 2), TopicPartition(topic, 1, 2)], asynchronous=False)
    lag = consumer_group_lag(kafka, group)
    assert lag.per_partition == {(topic, 0): 3, (topic, 1): 3}
    assert lag.by_topic() == {topic: 6}
    emitter = HeartbeatEmitter(
        QASettings(kafka=kafka, qa=QAConfig(consumer_groups={"loader": group})), topic=topic, watch_lag=True
    )
    emitter.observe_lag()
    assert CONSUMER_GROUP_LAG.labels("loader", group, topic, "1")._value.get() == 3
    consumer.commit(offsets=[TopicPartition(topic, 0, 5), TopicPartition(topic, 1, 5)], asynchronous=False)
    assert consumer_group_lag(kafka, group).total == 0
    emitter.observe_lag()
    assert CONSUMER_GROUP_LAG.labels("loader", group, topic, "1")._value.get() == 0
    consumer.close()


def _freshness(stages: list[StageStatus]) -> StageStatus:
    return next(stage for stage in stages if stage.probe == "heartbeat freshness")


def test_freshness_follows_the_newest_heartbeat(tmp_path: Path) -> None:
    warehouse = open_warehouse(tmp_path / "chdb")
    settings = QASettings(qa=QAConfig(consumer_groups={}, freshness_degraded_s=60, freshness_down_s=300))

    def status(now: datetime) -> StageStatus:
        return _freshness(
            collect_status(settings, lambda: contextlib.nullcontext(warehouse), now=now, probe_services=False)
        )

    try:
        assert status(datetime.now(UTC)).health is Health.DOWN
        emitted = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
        load_events(warehouse, [enriched(make_heartbeat("test", emitted))])
        fresh = status(emitted + timedelta(seconds=10))
        assert fresh.health is Health.OK and fresh.value == pytest.approx(10, abs=0.01)
        assert status(emitted + timedelta(seconds=120)).health is Health.DEGRADED
        assert status(emitted + timedelta(seconds=400)).health is Health.DOWN
    finally:
        warehouse.close()


class _StreamStage(threading.Thread):
    """The stream processors' logic (dedup, sessionize, enrich) between two test topics; the
    Faust runtime around it is left out, the processing is the real one."""

    def __init__(self, kafka, raw_topic: str, enriched_topic: str) -> None:  # type: ignore[no-untyped-def]
        super().__init__(daemon=True)
        self.consumer = _consumer(kafka, f"qa-stream-{uuid.uuid4().hex[:8]}")
        self.consumer.subscribe([raw_topic])
        self.producer = Producer(kafka.client_config())
        self.enriched_topic = enriched_topic
        self.processor = StreamProcessor(MemoryStateStore(), Enricher(DimensionStore(), UserAgentParser()))
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            messages = [m for m in self.consumer.consume(100, timeout=0.2) if m.error() is None]
            if not messages:
                continue
            out = self.processor.process(
                RawRecord(m.partition() or 0, m.offset() or 0, m.key(), m.value(), block=block_version(m.headers()))
                for m in messages
            )
            for key, value in out.enriched:
                self.producer.produce(self.enriched_topic, value=value, key=key, headers=BLOCK_HEADERS)
            self.producer.flush(10)
            self.processor.commit(out)
            self.consumer.commit(asynchronous=False)
        self.consumer.close()


@contextlib.contextmanager
def _running_loader(settings: WarehouseSettings, warehouse: ChdbWarehouse) -> Iterator[Loader]:
    loader = Loader(settings, warehouse)
    loader.setup()
    thread = threading.Thread(target=loader.run, daemon=True)
    thread.start()
    try:
        yield loader
    finally:
        loader.stop.set()
        thread.join(30)
        loader.close()


def _wait_for(predicate, timeout_s: float, what: str) -> list[StageStatus]:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    stages: list[StageStatus] = []
    while time.monotonic() < deadline:
        stages = predicate()
        if stages:
            return stages
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_a_stopped_loader_shows_as_growing_heartbeat_lag_then_recovers(kafka, kafka_topic, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    raw_topic = kafka_topic("events.raw")
    enriched_topic = kafka_topic("events.enriched")
    group = f"qa-loader-{uuid.uuid4().hex[:8]}"
    loader_settings = WarehouseSettings(
        kafka=kafka,
        loader=LoaderConfig(
            group_id=group,
            events_topic=enriched_topic,
            sessions_topic="",
            dlq_topic="",
            tools_topic="",
            inferences_topic="",
            batch_seconds=0.2,
        ),
    )
    settings = QASettings(
        kafka=kafka,
        qa=QAConfig(consumer_groups={"loader": group}, freshness_degraded_s=4, freshness_down_s=60, lag_degraded=3),
    )
    warehouse = open_warehouse(tmp_path / "chdb")
    stream = _StreamStage(kafka, raw_topic, enriched_topic)
    stream.start()
    emitter = HeartbeatEmitter(QASettings(kafka=kafka, qa=QAConfig(heartbeat_interval_s=0.5)), topic=raw_topic)
    beating = threading.Thread(target=emitter.run, daemon=True)
    beating.start()

    def status() -> dict[str, StageStatus]:
        stages = collect_status(settings, lambda: contextlib.nullcontext(warehouse), probe_services=False)
        return {stage.stage: stage for stage in stages}

    def healthy() -> list[StageStatus]:
        stages = status()
        ok = stages["end to end"].health is Health.OK and stages["loader"].health is Health.OK
        return list(stages.values()) if ok else []

    try:
        with _running_loader(loader_settings, warehouse):
            _wait_for(healthy, 30, "the pipeline to be fresh")
        stopped = time.monotonic()
        first = status()
        _wait_for(lambda: [1] if time.monotonic() - stopped > 6 else [], 10, "time to pass")
        later = status()
        assert later["end to end"].value is not None and first["end to end"].value is not None
        assert later["end to end"].value > first["end to end"].value + 4
        assert later["end to end"].health is not Health.OK
        assert later["loader"].value is not None and later["loader"].value >= 8
        assert later["loader"].health is Health.DEGRADED
        with _running_loader(loader_settings, warehouse):
            recovered = _wait_for(healthy, 30, "the pipeline to catch up")
        freshness = next(s for s in recovered if s.stage == "end to end")
        assert freshness.value is not None and freshness.value < 4
    finally:
        emitter.stop.set()
        beating.join(10)
        emitter.close()
        stream.stop.set()
        stream.join(10)
        warehouse.close()


def test_the_heartbeat_command_beats_and_stops(kafka, kafka_topic, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from ops.cli import _mount_service_commands, app

    if not any(group.name == "qa" for group in app.registered_groups):
        _mount_service_commands()
    topic = kafka_topic("events.raw")
    monkeypatch.setenv("FS_KAFKA__BOOTSTRAP_SERVERS", kafka.bootstrap_servers)
    monkeypatch.setenv("FS_QA__HEARTBEAT_TOPIC", topic)
    monkeypatch.setenv("FS_QA__HEARTBEAT_INTERVAL_S", "0.1")
    monkeypatch.setenv("FS_QA__HEARTBEAT_METRICS_PORT", "0")
    monkeypatch.setenv("FS_QA__CONSUMER_GROUPS", "{}")
    monkeypatch.setenv("FS_LOG_JSON", "false")
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        result = CliRunner().invoke(app, ["qa", "heartbeat", "--count", "2"])
    finally:
        # The command points the root logger at the runner's stderr, which closes after the call.
        root.handlers[:] = handlers
        root.setLevel(level)
    assert result.exit_code == 0, result.output
    assert "2 heartbeat(s) sent" in result.output
    consumer = _consumer(kafka, f"qa-cli-{uuid.uuid4().hex[:8]}")
    consumer.subscribe([topic])
    seen = 0
    deadline = time.monotonic() + 20
    while seen < 2 and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            assert isinstance(parse_event_json(message.value()), PipelineHeartbeat)
            seen += 1
    consumer.close()
    assert seen == 2


def test_heartbeats_can_enter_through_the_collector(kafka, kafka_topic) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient
    from pydantic import SecretStr

    from clickhouse.qa.errors import HeartbeatRejected
    from ingest.app import create_app
    from ingest.settings import IngestSettings, hash_write_key

    raw = kafka_topic("events.raw")
    ingest_settings = IngestSettings(
        _env_file=None,  # type: ignore[call-arg]
        kafka=kafka,
        ingest={
            "sources": {"monitoring": {"write_key_sha256": [hash_write_key("heartbeat-key")]}},
            "results_consumer": False,
            "events_topic": raw,
            "dlq_topic": kafka_topic("events.dlq"),
        },
    )
    with TestClient(create_app(ingest_settings)) as client:
        qa = QAConfig(heartbeat_ingest_url="http://testserver", heartbeat_write_key=SecretStr("heartbeat-key"))
        emitter = HeartbeatEmitter(QASettings(kafka=kafka, qa=qa), http=client)
        sent = emitter.beat()
        wrong_key = QAConfig(heartbeat_ingest_url="http://testserver", heartbeat_write_key=SecretStr("nope"))
        with pytest.raises(HeartbeatRejected) as refused:
            HeartbeatEmitter(QASettings(kafka=kafka, qa=wrong_key), http=client).beat()
        assert refused.value.status == 401
    # The collector writes a block of events; a heartbeat is the one event of its block.
    [(_, document)] = read_events(kafka, raw, expect=1, timeout_s=20)
    received = parse_event_json(document)
    assert isinstance(received, PipelineHeartbeat)
    assert received.event_id == sent.event_id
    # Stamped by the collector, not by the emitter.
    assert received.source == "monitoring"
    assert received.received_at is not None and received.received_at >= sent.client_ts


@pytest.mark.integration
def test_readiness_probes_tell_ready_from_unready_and_unreachable() -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from ops.status import probe_ready

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code = 200 if self.path == "/readyz" else 503
            self.send_response(code)
            self.end_headers()
            self.wfile.write(b'{"status": "loading models"}' if code == 503 else b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        assert probe_ready(f"{base}/readyz", 2)[0] is Health.OK
        health, detail = probe_ready(f"{base}/starting", 2)
        assert health is Health.DOWN and "503" in detail and "loading models" in detail
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    health, detail = probe_ready(f"{base}/readyz", 2)
    assert health is Health.DOWN and "ConnectError" in detail
