"""The loader's batch pipeline without a broker: decoding paths and the transient-error pause."""

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
)
from clickhouse.loader.schema import EVENT_DEFAULTS, JSON_READER_SCHEMA, REQUIRED_EVENT_COLUMNS
from clickhouse.settings import LoaderConfig, WarehouseSettings
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
    def __init__(self, value: bytes, offset: int, produced_at_ms: int) -> None:
        self._value, self._offset, self._produced_at_ms = value, offset, produced_at_ms

    def error(self) -> None:
        return None

    def timestamp(self) -> tuple[int, int]:
        return 1, self._produced_at_ms  # TIMESTAMP_CREATE_TIME

    def topic(self) -> str:
        return "events.enriched"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> None:
        return None

    def value(self) -> bytes:
        return self._value


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
