"""The Faust agents in memory (``agent.test_context()``), with the Kafka producer faked at the edge."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from datetime import timedelta
from typing import Any

import orjson
import pytest

from funnelstream.blocks import BLOCK_HEADERS, BLOCK_VERSION, join_documents, split_block
from funnelstream.contract import DeadLetter, EnrichedEvent, SessionSummary
from stream_processors.app import ENRICHED_HEADERS, create_app, sub_batches
from stream_processors.dimensions import SEED_FILE, apply_all, read_dimension_file
from stream_processors.processor import MemoryStateStore, RawRecord
from stream_processors.settings import StreamConfig, StreamSettings
from tests.helpers.stamped_events import T0, stamped


class FakeMessage:
    def __init__(self, topic: str, partition: int) -> None:
        self._topic, self._partition = topic, partition

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return 0


class AcknowledgingProducer:
    """Stands in for confluent_kafka.Producer: acknowledges everything on the next poll."""

    def __init__(self) -> None:
        self.topics: dict[str, list[tuple[bytes | None, bytes]]] = defaultdict(list)
        self.headers: dict[str, list[Any]] = defaultdict(list)
        self._callbacks: list[Any] = []

    def produce(
        self, topic: str, value: bytes, key: bytes | None, on_delivery: Any, headers: Any = None, partition: int = -1
    ) -> None:
        self.topics[topic].append((key, value))
        self.headers[topic].append(headers)
        self._callbacks.append((on_delivery, FakeMessage(topic, 0)))

    def poll(self, timeout: float = 0) -> int:
        callbacks, self._callbacks = self._callbacks, []
        for callback, message in callbacks:
            callback(None, message)
        return len(callbacks)

    def flush(self, timeout: float = 0) -> int:
        self.poll()
        return 0


@pytest.fixture
def worker(tmp_path: Any) -> Any:
    settings = StreamSettings(stream=StreamConfig(app_id="test-agents", data_dir=tmp_path, batch_within_s=0.01))
    app, runtime = create_app(settings)
    apply_all(runtime.dimensions, read_dimension_file(SEED_FILE, T0))
    runtime.producer = AcknowledgingProducer()  # type: ignore[assignment]
    runtime.processor.store = MemoryStateStore()
    return app, runtime


def test_process_agent_enriches_sessionizes_and_dead_letters(worker: Any) -> None:
    asyncio.run(_process_agent(worker))


async def _process_agent(worker: Any) -> None:
    app, runtime = worker
    agent = app.agents["process-events"]
    events = [
        stamped("image_uploaded", T0),
        stamped("tool_selected", T0 + timedelta(minutes=1)),
        stamped("tool_selected", T0 + timedelta(minutes=1)),
    ]
    events[2]["event_id"] = events[1]["event_id"]
    async with agent.test_context() as agent_under_test:
        for event in events:
            await agent_under_test.put(orjson.dumps(event), key=b"device-1")
        await agent_under_test.put(b"\xff\xfe not an event", key=b"device-1")
        for _ in range(100):
            if runtime.batches and len(runtime.producer.topics[settings_of(runtime).dlq_topic]) == 1:
                break
            await _sleep()
    stream = settings_of(runtime)
    rows = [EnrichedEvent.model_validate_json(value) for _, value in runtime.producer.topics[stream.enriched_topic]]
    assert [str(row.event_id) for row in rows] == [events[0]["event_id"], events[1]["event_id"]]
    assert rows[1].tool_name == "segmentation"
    sessions = [
        SessionSummary.model_validate_json(value) for _, value in runtime.producer.topics[stream.sessions_topic]
    ]
    assert sessions[-1].event_count == 2 and sessions[-1].deepest_step == 2
    (letter,) = [DeadLetter.model_validate_json(value) for _, value in runtime.producer.topics[stream.dlq_topic]]
    assert letter.stage == "stream" and letter.payload_encoding == "base64"
    assert runtime.processor.counters.duplicates == 1


def test_the_timer_closes_idle_sessions(worker: Any) -> None:
    asyncio.run(_timer(worker))


async def _timer(worker: Any) -> None:
    app, runtime = worker
    agent = app.agents["process-events"]
    async with agent.test_context() as agent_under_test:
        await agent_under_test.put(orjson.dumps(stamped("image_uploaded", T0, anonymous_id="quiet")), key=b"quiet")
        await agent_under_test.put(
            orjson.dumps(stamped("image_uploaded", T0 + timedelta(hours=1), anonymous_id="busy")), key=b"busy"
        )
        for _ in range(100):
            if runtime.processor.counters.accepted == 2:
                break
            await _sleep()
    await runtime.close_idle()
    stream = settings_of(runtime)
    summaries = [SessionSummary.model_validate_json(v) for _, v in runtime.producer.topics[stream.sessions_topic]]
    closed = [summary for summary in summaries if summary.closed]
    assert [summary.anonymous_id for summary in closed] == ["quiet"]


def settings_of(runtime: Any) -> StreamConfig:
    return runtime.settings.stream  # type: ignore[no-any-return]


async def _sleep() -> None:
    await asyncio.sleep(0.02)


def test_worker_counters_are_exported_in_prometheus_format() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from stream_processors.app import prometheus_text

    health = {
        "accepted": 120, "duplicates": 6, "late": 2, "dead_letters": 1, "merges": 0, "sessions_closed": 9,
        "batches": 4, "open_sessions": 33, "unknown_tool": 1, "unknown_inference": 0, "assigned": [0, 2],
    }  # fmt: skip
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(prometheus_text(health, {("events.raw", 3): 17}))
        for sample in family.samples
    }
    assert samples[("stream_events_total", ())] == 120
    assert samples[("stream_dedup_hits_total", ())] == 6
    assert samples[("stream_open_sessions", ())] == 33
    assert samples[("stream_unknown_dimension_total", (("dimension", "tool"),))] == 1
    assert samples[("stream_assigned_partitions", ())] == 2
    assert samples[("stream_consumer_lag", (("partition", "3"), ("topic", "events.raw")))] == 17


class RecordingConsumer:
    """Stands in for the group consumer at the edge: owns every partition, records commits and seeks."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.commits: list[dict[int, int]] = []
        self.seeks: list[tuple[int, int]] = []

    def owned(self) -> set[int]:
        return {0}

    def generation(self) -> int:
        return int(self.app.consumer_generation_id)

    async def commit(self, offsets: dict[int, int]) -> None:
        self.commits.append(dict(offsets))

    async def seek(self, partition: int, offset: int) -> None:
        self.seeks.append((partition, offset))

    async def earliest(self, partition: int) -> int:
        return 0


def test_the_worker_commits_only_processed_offsets_and_seeks_back_over_a_gap(worker: Any) -> None:
    asyncio.run(_gap(worker))


async def _gap(worker: Any) -> None:
    app, runtime = worker
    consumer = runtime.consumer = RecordingConsumer(app)
    agent = app.agents["process-events"]
    events = [stamped("image_uploaded", T0 + timedelta(minutes=i)) for i in range(5)]
    stream = settings_of(runtime)

    def output() -> list[str]:
        return [orjson.loads(value)["event_id"] for _, value in runtime.producer.topics[stream.enriched_topic]]

    async def settle(batches: int) -> None:
        for _ in range(100):
            if runtime.batches >= batches:
                return
            await _sleep()

    async with agent.test_context() as agent_under_test:
        for event in events[:2]:
            await agent_under_test.put(orjson.dumps(event), key=b"device-1")
        await settle(1)
        # Offsets 2..3 never reach the agent: the consumer skipped them.
        agent_under_test.sent_offset = 4
        await agent_under_test.put(orjson.dumps(events[4]), key=b"device-1")
        await settle(runtime.batches + 1)
        assert output() == [event["event_id"] for event in events[:2]]
        assert consumer.seeks == [(0, 2)]
        assert max(offset for commit in consumer.commits for offset in commit.values()) == 2
        # After the seek the records come again from offset 2.
        agent_under_test.sent_offset = 2
        for event in events[2:]:
            await agent_under_test.put(orjson.dumps(event), key=b"device-1")
        await settle(runtime.batches + 1)
    assert output() == [event["event_id"] for event in events]
    assert consumer.commits[-1] == {0: 5}


def test_collector_blocks_and_plain_records_go_through_the_agent(worker: Any) -> None:
    asyncio.run(_blocks(worker))


async def _blocks(worker: Any) -> None:
    app, runtime = worker
    agent = app.agents["process-events"]
    stream = settings_of(runtime)
    events = [stamped("image_uploaded", T0 + timedelta(minutes=i)) for i in range(4)]
    forged = orjson.dumps({**events[0], "event_id": str(uuid.uuid4()), "event_ts": None})
    block = join_documents([orjson.dumps(events[0]), forged, orjson.dumps(events[1]), orjson.dumps(events[0])])
    async with agent.test_context() as agent_under_test:
        await agent_under_test.put(block, key=b"device-1", headers=BLOCK_HEADERS)
        await agent_under_test.put(orjson.dumps(events[2]), key=b"device-1")
        # Without the header a record is one event: a block there is not JSON, validated in full.
        await agent_under_test.put(join_documents([orjson.dumps(events[3])] * 2), key=b"device-1")
        for _ in range(100):
            if runtime.processor.counters.dead_letters == 2:
                break
            await _sleep()
    messages = runtime.producer.topics[stream.enriched_topic]
    rows = [EnrichedEvent.model_validate_json(row) for _, value in messages for row in split_block(value)]
    assert [str(row.event_id) for row in rows] == [event["event_id"] for event in events[:3]]
    assert [len(split_block(value)) for _, value in messages] == [2, 1], "one block of rows per record"
    assert all(headers == ENRICHED_HEADERS for headers in runtime.producer.headers[stream.enriched_topic])
    letters = [DeadLetter.model_validate_json(value) for _, value in runtime.producer.topics[stream.dlq_topic]]
    assert [letter.offset for letter in letters] == [0, 2]
    assert letters[0].payload == forged.decode() and "event_ts" in {e.field for e in letters[0].errors}
    assert "invalid JSON" in letters[1].reason
    assert runtime.processor.counters.duplicates == 1


def test_a_take_is_processed_in_runs_of_whole_records_bounded_by_events() -> None:
    def record(offset: int, events: int) -> RawRecord:
        value = join_documents([b"{}"] * events)
        return RawRecord(0, offset, b"k", value, "events.raw", BLOCK_VERSION if events > 1 else None)

    records = [record(0, 500), record(1, 1), record(2, 300), record(3, 300), record(4, 1)]
    runs = sub_batches(records, 600)
    assert [[r.offset for r in run] for run in runs] == [[0, 1, 2], [3, 4]]
    assert sub_batches([], 600) == [[]]
    plain = [RawRecord(0, offset, b"k", b"{}\n{}") for offset in range(5)]
    assert [len(run) for run in sub_batches(plain, 2)] == [2, 2, 1], "a record without the header is one event"
