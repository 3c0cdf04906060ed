"""The loader's batch pipeline without a broker: decoding paths, the transient-error pause, and
records that are blocks of rows beside plain one-row records."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson
import pyarrow as pa
import pytest
from confluent_kafka import KafkaError, KafkaException

from clickhouse.errors import QueryError, WarehouseUnavailable
from clickhouse.loader import (
    EVENT_SCHEMA,
    Backpressure,
    FastPathRefused,
    Inserted,
    Loader,
    Message,
    decode_events,
    decode_events_fast,
    flush_deadline,
    insert_table,
    record_boundary,
    record_messages,
)
from clickhouse.loader.schema import EVENT_DEFAULTS, JSON_READER_SCHEMA, REQUIRED_EVENT_COLUMNS
from clickhouse.settings import LoaderConfig, WarehouseSettings
from funnelstream.blocks import BLOCK_HEADERS, join_documents
from funnelstream.contract import DeadLetter
from funnelstream.deadletter import decode_payload
from ops.journeys import clickstream


class FlakyWarehouse:
    """Away for the first ``failures`` inserts, then takes everything."""

    database = "test"
    embedded = True

    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or WarehouseUnavailable("connection refused")
        self.inserted: dict[str, int] = {}

    def insert_arrow(self, table: str, data: pa.Table, settings: Mapping[str, Any] | None = None) -> int:
        if self.failures:
            self.failures -= 1
            raise self.error
        self.inserted[table] = self.inserted.get(table, 0) + data.num_rows
        return int(data.num_rows)


class RecordingConsumer:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.committed: list[Any] = []

    def assignment(self) -> list[str]:
        return ["events.enriched[0]"]

    def pause(self, _: Any) -> None:
        self.calls.append("pause")

    def resume(self, _: Any) -> None:
        self.calls.append("resume")

    def poll(self, _: float) -> None:
        self.calls.append("poll")

    def commit(self, offsets: Any, asynchronous: bool) -> None:
        assert not asynchronous
        self.calls.append("commit")
        self.committed.extend((tp.topic, tp.partition, tp.offset) for tp in offsets)


def _messages(count: int) -> list[Message]:
    events = clickstream(images=30, devices=5, seed=2).events[:count]
    return [Message("events.enriched", 0, 100 + i, None, e.model_dump_json().encode()) for i, e in enumerate(events)]


def test_insert_waits_out_an_outage_then_commits_once() -> None:
    warehouse = FlakyWarehouse(failures=3)
    consumer = RecordingConsumer()
    settings = WarehouseSettings(loader=LoaderConfig(retry_initial_s=0.01, retry_max_s=0.02))
    loader = Loader(settings, warehouse, consumer=consumer)  # type: ignore[arg-type]
    batch = _messages(40)
    loader.process(batch)
    assert warehouse.inserted == {"events": 40}
    assert loader.stats.insert_retries == 3
    # Paused during the outage, resumed after, and the offsets committed only after the insert.
    assert consumer.calls[0] == "pause" and consumer.calls.index("resume") < consumer.calls.index("commit")
    assert consumer.calls.count("commit") == 1
    assert consumer.committed == [("events.enriched", 0, 140)]
    assert not loader.stats.paused


def test_a_non_transient_error_stops_without_committing() -> None:
    warehouse = FlakyWarehouse(failures=1, error=QueryError("Code: 60. Unknown table", sql="INSERT", code=60))
    consumer = RecordingConsumer()
    loader = Loader(WarehouseSettings(), warehouse, consumer=consumer)  # type: ignore[arg-type]
    with pytest.raises(QueryError):
        loader.process(_messages(5))
    assert "commit" not in consumer.calls


class RebalancedConsumer(RecordingConsumer):
    def commit(self, offsets: Any, asynchronous: bool) -> None:
        raise KafkaException(KafkaError(KafkaError.REBALANCE_IN_PROGRESS))


def test_a_commit_the_next_one_covers_is_counted_not_raised() -> None:
    warehouse = FlakyWarehouse(failures=0)
    loader = Loader(WarehouseSettings(), warehouse, consumer=RebalancedConsumer())  # type: ignore[arg-type]
    loader.process(_messages(4))
    assert warehouse.inserted == {"events": 4}
    assert loader.stats.commit_failures == 1 and loader.stats.batches == 1


def test_the_insert_step_returns_backpressure_for_a_transient_error_only() -> None:
    data = decode_events(_messages(3))[0]
    pressure = insert_table(FlakyWarehouse(failures=1), "events", data)  # type: ignore[arg-type]
    assert isinstance(pressure, Backpressure) and pressure.table == "events"
    busy = QueryError("Code: 241. Memory limit exceeded", sql="INSERT", code=241)
    assert isinstance(insert_table(FlakyWarehouse(1, busy), "events", data), Backpressure)  # type: ignore[arg-type]
    inserted = insert_table(FlakyWarehouse(failures=0), "events", data)  # type: ignore[arg-type]
    assert isinstance(inserted, Inserted) and inserted.rows == 3
    unknown_table = QueryError("Code: 60. Unknown table", sql="INSERT", code=60)
    with pytest.raises(QueryError):
        insert_table(FlakyWarehouse(1, unknown_table), "events", data)  # type: ignore[arg-type]


def test_the_fast_decoder_s_column_rules_follow_the_contract() -> None:
    # Required: the contract fields without a default; defaults: those of the non-null columns.
    assert REQUIRED_EVENT_COLUMNS == (
        "event_id", "event_type", "schema_version", "anonymous_id", "session_id",
        "client_ts", "received_at", "event_ts", "enriched_at",
    )  # fmt: skip
    assert EVENT_DEFAULTS == {
        "timestamp_flag": "ok", "is_late": False, "source": "", "funnel_step": 0,
        "unknown_dimension": False, "is_bot": False, "properties": "{}",
    }  # fmt: skip
    assert [f.name for f in JSON_READER_SCHEMA] == [
        f.name for f in EVENT_SCHEMA if f.name not in ("experiments", "properties")
    ]


def test_fast_path_equals_the_checked_path() -> None:
    messages = _messages(60)
    fast = decode_events_fast([m.value for m in messages])
    checked, rejected = decode_events([*messages, Message("e", 0, 1, None, b"{}")])
    assert len(rejected) == 1 and "event_id" in rejected[0].reason
    assert fast.schema == EVENT_SCHEMA
    assert fast.to_pylist() == checked.to_pylist()


def test_fast_path_refuses_what_it_cannot_vouch_for() -> None:
    good = _messages(2)[0].value
    missing = orjson.loads(good)
    del missing["session_id"]
    with pytest.raises(FastPathRefused, match="session_id"):
        decode_events_fast([good, orjson.dumps(missing)])
    extra = {**orjson.loads(good), "surprise": 1}
    with pytest.raises(FastPathRefused, match="surprise"):
        decode_events_fast([orjson.dumps(extra)])


def test_free_form_properties_survive_as_json_text() -> None:
    raw = orjson.loads(_messages(1)[0].value)
    raw["properties"] = {"campaign": "black-friday", "depth": 3}
    table = decode_events_fast([orjson.dumps(raw)])
    assert orjson.loads(table.column("properties")[0].as_py()) == {"campaign": "black-friday", "depth": 3}


def test_the_batch_time_counts_from_when_a_message_was_produced() -> None:
    # Produced 0.4 s ago with a 1 s batch time: 0.6 s are left; an unknown or future time counts as now.
    assert flush_deadline(100.0, 5_000.0, 4_999_600, 1.0) == pytest.approx(100.6)
    assert flush_deadline(100.0, 5_000.0, None, 1.0) == pytest.approx(101.0)
    assert flush_deadline(100.0, 5_000.0, 5_003_000, 1.0) == pytest.approx(101.0)
    # Older than the batch time (a backlog): due at once, never in the past beyond it.
    assert flush_deadline(100.0, 5_000.0, 4_990_000, 1.0) == pytest.approx(100.0)


class _RawMessage:
    """A consumed record as confluent-kafka hands it out."""

    def __init__(
        self,
        value: bytes,
        offset: int,
        produced_at_ms: int,
        partition: int = 0,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        self._value, self._offset, self._produced_at_ms = value, offset, produced_at_ms
        self._partition, self._headers = partition, headers

    def error(self) -> None:
        return None

    def timestamp(self) -> tuple[int, int]:
        return 1, self._produced_at_ms  # TIMESTAMP_CREATE_TIME

    def topic(self) -> str:
        return "events.enriched"

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> None:
        return None

    def value(self) -> bytes:
        return self._value

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers


class ScriptedConsumer(RecordingConsumer):
    """Hands out one message produced ``age_s`` ago, then nothing; records each wait it is asked for."""

    def __init__(self, message: Message, age_s: float, loader: Loader | None = None) -> None:
        super().__init__()
        produced_at_ms = int((time.time() - age_s) * 1000)
        self.pending = [_RawMessage(message.value, message.offset, produced_at_ms)]
        self.timeouts: list[float] = []
        self.loader = loader

    def consume(self, num_messages: int, timeout: float) -> list[_RawMessage]:
        self.timeouts.append(timeout)
        out, self.pending = self.pending, []
        if not out and self.loader is not None and "commit" in self.calls:
            self.loader.stop.set()
        return out


def test_a_message_that_waited_in_the_broker_is_loaded_within_the_batch_time_of_its_production() -> None:
    warehouse = FlakyWarehouse(failures=0)
    consumer = ScriptedConsumer(_messages(1)[0], age_s=0.9)
    loader = Loader(WarehouseSettings(loader=LoaderConfig(batch_seconds=1.0)), warehouse, consumer=consumer)  # type: ignore[arg-type]
    consumer.loader = loader
    loader.run()
    assert warehouse.inserted == {"events": 1}
    # After the message arrived the loader waited at most what was left of its 1 s, not a fresh 1 s.
    assert consumer.timeouts[0] == 0.5
    assert consumer.timeouts[1] <= 0.1 + 1e-6
    assert consumer.committed == [("events.enriched", 0, 101)]


# --- blocks of rows ---------------------------------------------------------------------------------


def _event_documents(count: int) -> list[bytes]:
    events = clickstream(images=120, devices=10, seed=4).events
    assert len(events) >= count
    return [e.model_dump_json().encode() for e in events[:count]]


def test_a_block_is_a_message_per_row_and_a_plain_record_one_message_even_with_newlines() -> None:
    rows = _event_documents(3)
    block = record_messages("events.enriched", 2, 41, b"device", join_documents(rows), 1234, block=True)
    assert [m.value for m in block] == rows
    assert {(m.topic, m.partition, m.offset, m.key, m.produced_at_ms) for m in block} == {
        ("events.enriched", 2, 41, b"device", 1234)
    }
    pretty = orjson.dumps(orjson.loads(rows[0]), option=orjson.OPT_INDENT_2)
    assert b"\n" in pretty
    [plain] = record_messages("events.enriched", 2, 42, None, pretty, block=False)
    assert plain.value == pretty
    # A plain record spread over lines is still its one event.
    table, rejected = decode_events([plain])
    assert rejected == [] and table.column("event_id").to_pylist() == [orjson.loads(rows[0])["event_id"]]


def test_a_batch_is_cut_after_a_whole_record() -> None:
    def batch(*records: tuple[int, int]) -> list[Message]:
        return [Message("t", 0, offset, None, b"") for offset, rows in records for _ in range(rows)]

    assert record_boundary(batch((1, 3), (2, 3), (3, 3)), 7) == 6  # not inside offset 3's rows
    assert record_boundary(batch((1, 3), (2, 3)), 6) == 6
    assert record_boundary(batch((1, 3), (2, 3)), 10) == 6
    assert record_boundary(batch((1, 5), (2, 1)), 3) == 5  # a record longer than the limit goes whole
    # The same offset in another partition is another record.
    other = [Message("t", 0, 1, None, b""), Message("t", 1, 1, None, b"")]
    assert record_boundary(other, 1) == 1


class RecordingWarehouse(FlakyWarehouse):
    """Takes everything and keeps each insert's event ids."""

    def __init__(self) -> None:
        super().__init__(failures=0)
        self.batches: list[list[str]] = []

    def insert_arrow(self, table: str, data: pa.Table, settings: Mapping[str, Any] | None = None) -> int:
        self.batches.append([str(value) for value in data.column("event_id").to_pylist()])
        return super().insert_arrow(table, data, settings)


class QueueConsumer(RecordingConsumer):
    """Hands out queued records, at most the number asked for, and stops the loader once they are
    all out; checks at every commit that every record below the committed offsets was inserted."""

    def __init__(self, records: list[_RawMessage], warehouse: RecordingWarehouse, events: dict[int, list[str]]) -> None:
        super().__init__()
        self.pending = list(records)
        self.warehouse = warehouse
        self.events = events
        """The event ids of each record, by (partition, offset) packed as partition * 10_000 + offset."""
        self.asked: list[int] = []
        self.loader: Loader | None = None

    def consume(self, num_messages: int, timeout: float) -> list[_RawMessage]:
        self.asked.append(num_messages)
        out, self.pending = self.pending[:num_messages], self.pending[num_messages:]
        if not out and self.loader is not None:
            self.loader.stop.set()
        return out

    def commit(self, offsets: Any, asynchronous: bool) -> None:
        inserted = {event_id for batch in self.warehouse.batches for event_id in batch}
        for tp in offsets:
            for packed, ids in self.events.items():
                if packed // 10_000 == tp.partition and packed % 10_000 < tp.offset:
                    assert set(ids) <= inserted, f"committed past record {packed} before loading it"
        super().commit(offsets, asynchronous)


def test_blocks_and_plain_records_mixed_load_every_row_once_in_batches_of_whole_records() -> None:
    sizes = [1, 4, 1, 7, 2, 15, 1, 3, 5, 1, 6, 9, 1, 2, 1, 8, 3, 1, 4, 1, 10, 1, 2, 5, 1, 3, 1, 2, 4, 2]
    documents = _event_documents(sum(sizes))
    now_ms = int(time.time() * 1000)
    records: list[_RawMessage] = []
    events: dict[int, list[str]] = {}
    offsets = {0: 0, 1: 0}
    taken = 0
    for number, size in enumerate(sizes):
        rows = documents[taken : taken + size]
        taken += size
        partition = number % 2
        offset = offsets[partition]
        offsets[partition] += 1
        # Every other one-row record is plain (the old shape); the rest, a one-row block included, have the header.
        plain = size == 1 and number % 4 == 0
        headers = None if plain else BLOCK_HEADERS
        records.append(_RawMessage(join_documents(rows), offset, now_ms, partition, headers))
        events[partition * 10_000 + offset] = [orjson.loads(row)["event_id"] for row in rows]
    assert taken == len(documents)
    warehouse = RecordingWarehouse()
    consumer = QueueConsumer(records, warehouse, events)
    settings = WarehouseSettings(loader=LoaderConfig(batch_rows=10, batch_seconds=30.0))
    loader = Loader(settings, warehouse, consumer=consumer)  # type: ignore[arg-type]
    consumer.loader = loader
    loader.run()

    loaded = [event_id for batch in warehouse.batches for event_id in batch]
    assert sorted(loaded) == sorted(orjson.loads(d)["event_id"] for d in documents)  # each once
    for ids in events.values():  # never half a record in one batch and the rest in another
        assert any(set(ids) <= set(batch) for batch in warehouse.batches)
    for batch in warehouse.batches:  # at most batch_rows, unless one record alone is longer
        assert len(batch) <= 10 or any(set(batch) == set(ids) for ids in events.values())
    assert len(warehouse.batches) > 1
    final = {p: max(o for t, q, o in consumer.committed if q == p) for p in (0, 1)}
    assert final == {0: offsets[0], 1: offsets[1]}
    assert loader.stats.rows_inserted["events"] == len(documents) and loader.stats.rejected == 0
    # A first consume of batch_rows blocks could hold hundreds of times batch_rows rows: it asks for
    # one record; after records of several rows, fewer records are asked for than rows wanted.
    assert consumer.asked[0] == 1 and min(consumer.asked[1:]) < 10 and max(consumer.asked) > 1


class AcknowledgingProducer:
    """Acknowledges every message at once and keeps them."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def produce(self, topic: str, value: bytes, key: bytes | None, on_delivery: Any, **_: Any) -> None:
        self.sent.append((topic, value))
        on_delivery(None, self)

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return len(self.sent)

    def poll(self, _: float) -> int:
        return 0

    def flush(self, _: float) -> int:
        return 0


def test_one_bad_row_of_a_block_is_dead_lettered_alone_and_its_neighbours_load() -> None:
    rows = _event_documents(5)
    bad_event = orjson.loads(rows[2])
    del bad_event["session_id"]
    bad = orjson.dumps(bad_event)
    block = record_messages(
        "events.enriched", 1, 77, b"device", join_documents([*rows[:2], bad, *rows[3:]]), block=True
    )
    warehouse = FlakyWarehouse(failures=0)
    consumer = RecordingConsumer()
    loader = Loader(WarehouseSettings(), warehouse, consumer=consumer)  # type: ignore[arg-type]
    producer = AcknowledgingProducer()
    loader._producer = producer  # type: ignore[assignment]
    loader.process(block)

    assert warehouse.inserted == {"events": 4} and loader.stats.rejected == 1
    [(topic, value)] = producer.sent
    letter = DeadLetter.model_validate_json(value)
    assert topic == loader.settings.loader.dlq_topic
    assert decode_payload(letter.payload, letter.payload_encoding) == bad  # the row, not the block
    assert (letter.partition, letter.offset, str(letter.event_id)) == (1, 77, bad_event["event_id"])
    assert "session_id" in letter.reason
    # The dead letter is acknowledged before the record's offset is committed.
    assert consumer.committed == [("events.enriched", 1, 78)]
