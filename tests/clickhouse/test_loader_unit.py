"""The loader's batch pipeline without a broker: decoding paths and the transient-error pause."""

from __future__ import annotations

from typing import Any

import orjson
import pyarrow as pa
import pytest

from clickhouse.dataset import generate
from clickhouse.errors import QueryError, WarehouseUnavailable
from clickhouse.loader import EVENT_SCHEMA, FastPathRefused, Loader, Message, decode_events, decode_events_fast
from clickhouse.settings import WarehouseSettings


class FlakyWarehouse:
    """Away for the first ``failures`` inserts, then takes everything."""

    database = "test"
    embedded = True

    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or WarehouseUnavailable("connection refused")
        self.inserted: dict[str, int] = {}

    def insert_arrow(self, table: str, data: pa.Table) -> int:
        if self.failures:
            self.failures -= 1
            raise self.error
        self.inserted[table] = self.inserted.get(table, 0) + data.num_rows
        return data.num_rows


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
    events = generate(images=30, devices=5, seed=2).events[:count]
    return [Message("events.enriched", 0, 100 + i, None, e.model_dump_json().encode()) for i, e in enumerate(events)]


def test_insert_waits_out_an_outage_then_commits_once() -> None:
    warehouse = FlakyWarehouse(failures=3)
    consumer = RecordingConsumer()
    settings = WarehouseSettings(loader_retry_initial_s=0.01, loader_retry_max_s=0.02)
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
