"""The loader: Kafka → ClickHouse in batches, idempotent, offsets committed only after the insert.

Pipeline per batch: consume (up to ``batch_rows`` or ``batch_seconds``) → decode to Arrow →
insert → commit. Decoding has two paths. The fast one parses a whole batch of ``events.enriched``
in C++ (pyarrow's JSON reader, explicit schema) and checks required columns vectorized; it covers
every well-formed batch. If anything in a batch does not fit, the batch is decoded again message by
message with the contract model, and each message that fails goes to ``events.dlq`` with its
partition, offset and reason while the rest is loaded.

A replay after a crash re-inserts rows that may already be there; every table dedups on the
event's own key (ReplacingMergeTree), so the replay collapses.
"""

from __future__ import annotations

import base64
import io
import logging
import math
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
from pydantic import BaseModel, ValidationError

from clickhouse.backend import TRANSIENT_ERROR_CODES, Warehouse
from clickhouse.errors import LoaderError, QueryError, WarehouseUnavailable
from clickhouse.settings import WarehouseSettings
from funnelstream.contract import (
    DeadLetter,
    EnrichedEvent,
    InferenceDimension,
    SessionSummary,
    ToolDimension,
)
from funnelstream.errors import FieldError, TransientError

log = logging.getLogger("funnelstream.warehouse.loader")

_TIMESTAMP_NOT_AVAILABLE = 0  # confluent_kafka.TIMESTAMP_NOT_AVAILABLE, without importing it here

TIMESTAMP = pa.timestamp("us", tz="UTC")
STRING_MAP = pa.map_(pa.string(), pa.string())

# (column, Arrow type, required). Names and order follow EnrichedEvent; the events table has the
# same columns plus inserted_at, which ClickHouse stamps.
EVENT_COLUMNS: tuple[tuple[str, pa.DataType, bool], ...] = (
    ("event_id", pa.string(), True),
    ("event_type", pa.string(), True),
    ("schema_version", pa.int64(), True),
    ("anonymous_id", pa.string(), True),
    ("user_id", pa.string(), False),
    ("input_id", pa.string(), False),
    ("session_id", pa.string(), True),
    ("client_ts", TIMESTAMP, True),
    ("sent_at", TIMESTAMP, False),
    ("received_at", TIMESTAMP, True),
    ("event_ts", TIMESTAMP, True),
    ("timestamp_flag", pa.string(), False),
    ("is_late", pa.bool_(), False),
    ("source", pa.string(), False),
    ("funnel_step", pa.int64(), False),
    ("tool_id", pa.int64(), False),
    ("tool_name", pa.string(), False),
    ("tool_type", pa.string(), False),
    ("inference_id", pa.int64(), False),
    ("inference_name", pa.string(), False),
    ("inference_type", pa.string(), False),
    ("unknown_dimension", pa.bool_(), False),
    ("job_id", pa.string(), False),
    ("input_url", pa.string(), False),
    ("mask_url", pa.string(), False),
    ("inference_url", pa.string(), False),
    ("width", pa.int64(), False),
    ("height", pa.int64(), False),
    ("size_bytes", pa.int64(), False),
    ("content_type", pa.string(), False),
    ("proposal_count", pa.int64(), False),
    ("status", pa.string(), False),
    ("latency_ms", pa.float64(), False),
    ("model_name", pa.string(), False),
    ("model_version", pa.string(), False),
    ("error", pa.string(), False),
    ("score", pa.int64(), False),
    ("experiment_key", pa.string(), False),
    ("variant", pa.string(), False),
    ("experiments", STRING_MAP, False),
    ("page_url", pa.string(), False),
    ("referrer", pa.string(), False),
    ("user_agent", pa.string(), False),
    ("browser", pa.string(), False),
    ("os", pa.string(), False),
    ("device", pa.string(), False),
    ("is_bot", pa.bool_(), False),
    ("locale", pa.string(), False),
    ("app_version", pa.string(), False),
    ("library_name", pa.string(), False),
    ("library_version", pa.string(), False),
    ("ip", pa.string(), False),
    ("properties", pa.string(), False),
    ("enriched_at", TIMESTAMP, True),
)
EVENT_SCHEMA = pa.schema([pa.field(name, kind) for name, kind, _ in EVENT_COLUMNS])
_REQUIRED = [name for name, _, required in EVENT_COLUMNS if required]
# Defaults for the non-null ClickHouse columns whose contract field has a default.
_DEFAULTS: dict[str, Any] = {
    "timestamp_flag": "ok",
    "is_late": False,
    "source": "",
    "funnel_step": 0,
    "unknown_dimension": False,
    "is_bot": False,
    "properties": "{}",
}
# What the C++ JSON reader parses directly; the two free-form objects are handled after it.
_JSON_SCHEMA = pa.schema([f for f in EVENT_SCHEMA if f.name not in ("experiments", "properties")])
_EVENT_FIELDS = frozenset(EnrichedEvent.model_fields)
# Per-table INSERT settings. `events` collapses replays at merge and every reader tolerates a
# duplicate until then (FINAL, or aggregates a duplicate cannot change); collapsing inside each
# insert block as well re-copies every row of every column and costs more than the rest of the
# insert, materialized views included.
INSERT_SETTINGS: dict[str, dict[str, Any]] = {"events": {"optimize_on_insert": 0}}


class FastPathRefused(Exception):
    """The batch needs message-by-message decoding; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    produced_at_ms: int | None = None
    """The broker timestamp (producer's create time), when the broker gave one."""


def flush_deadline(now_monotonic: float, now_wall: float, produced_at_ms: int | None, batch_seconds: float) -> float:
    """When a batch holding this message must be inserted, on the monotonic clock.

    ``batch_seconds`` counts from when the message was produced, not from when this consumer saw
    it: time spent in the broker and in a fetch that waited for more messages is part of the
    staleness an analyst sees. A timestamp from the future (clock skew) counts as now.
    """
    age = 0.0 if produced_at_ms is None else now_wall - produced_at_ms / 1000
    return now_monotonic + batch_seconds - min(max(age, 0.0), batch_seconds)


@dataclass(frozen=True, slots=True)
class Rejected:
    message: Message
    reason: str
    errors: list[FieldError]
    event_id: str | None = None


# --- decoding -------------------------------------------------------------------------------------


def _struct_to_map(column: pa.ChunkedArray | pa.Array, rows: int) -> pa.Array:
    """An inferred JSON struct (keys seen in the batch as fields) as a map of its non-null keys.

    Vectorized: keys and values are laid out row-major over every field, then the nulls dropped.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    struct_type = column.type
    if pa.types.is_null(struct_type) or (pa.types.is_struct(struct_type) and struct_type.num_fields == 0):
        return pa.MapArray.from_arrays(
            np.zeros(rows + 1, np.int32), pa.array([], pa.string()), pa.array([], pa.string())
        )
    if not pa.types.is_struct(struct_type):
        raise FastPathRefused(f"experiments: expected an object of strings, got {struct_type}")
    width = struct_type.num_fields
    children = []
    for index in range(width):
        child_type = struct_type.field(index).type
        if not (pa.types.is_string(child_type) or pa.types.is_null(child_type)):
            raise FastPathRefused(f"experiments.{struct_type.field(index).name}: expected a string, got {child_type}")
        child = column.field(index)
        if column.null_count:
            child = pc.if_else(column.is_valid(), child, pa.nulls(rows, child.type))
        children.append(child.cast(pa.string()))
    order = (np.arange(width)[None, :] * rows + np.arange(rows)[:, None]).ravel()
    values = pa.concat_arrays(children).take(pa.array(order))
    keys = pa.array(
        np.tile(np.array([struct_type.field(i).name for i in range(width)], dtype=object), rows), pa.string()
    )
    present = values.is_valid()
    counts = np.asarray(present.to_numpy(zero_copy_only=False), dtype=np.int32).reshape(rows, width).sum(axis=1)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    return pa.MapArray.from_arrays(offsets, keys.filter(present), values.filter(present))


def decode_events_fast(payloads: list[bytes]) -> pa.Table:
    """A whole batch of EnrichedEvent JSON parsed in one call; refuses anything unusual."""
    data = b"\n".join(payloads)
    if data.count(b"\n") != len(payloads) - 1:
        raise FastPathRefused("a message spans lines")
    try:
        parsed = pj.read_json(
            io.BytesIO(data),
            read_options=pj.ReadOptions(use_threads=False, block_size=max(len(data) + 1, 1 << 20)),
            parse_options=pj.ParseOptions(explicit_schema=_JSON_SCHEMA, unexpected_field_behavior="infer"),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise FastPathRefused(f"JSON reader: {exc}") from None
    rows = parsed.num_rows
    if rows != len(payloads):
        raise FastPathRefused(f"{rows} rows parsed from {len(payloads)} messages")
    unknown = set(parsed.column_names) - _EVENT_FIELDS
    if unknown:
        raise FastPathRefused(f"unknown fields {sorted(unknown)}")
    for name in _REQUIRED:
        if parsed.column(name).null_count:
            raise FastPathRefused(f"{name}: missing in some messages")
    columns: list[pa.Array | pa.ChunkedArray] = []
    for field_ in EVENT_SCHEMA:
        name = field_.name
        if name == "experiments":
            present = name in parsed.column_names
            columns.append(_struct_to_map(parsed.column(name) if present else pa.nulls(rows), rows))
        elif name == "properties":
            columns.append(_properties_column(parsed, payloads))
        else:
            column = parsed.column(name)
            if name in _DEFAULTS and column.null_count:
                column = pc.fill_null(column, _DEFAULTS[name])
            columns.append(column)
    return pa.table(columns, schema=EVENT_SCHEMA)


def _properties_column(parsed: pa.Table, payloads: list[bytes]) -> pa.Array:
    if "properties" not in parsed.column_names:
        return pa.array(["{}"] * len(payloads), pa.string())
    column = parsed.column("properties").combine_chunks()
    if pa.types.is_struct(column.type) and column.type.num_fields == 0:
        return pa.array(["{}"] * len(payloads), pa.string())
    # Rare: free-form properties are kept as JSON text, re-serialized from the message itself.
    return pa.array(
        [orjson.dumps(orjson.loads(payload).get("properties") or {}).decode() for payload in payloads],
        pa.string(),
    )


def _event_row(event: EnrichedEvent) -> dict[str, Any]:
    row = event.model_dump(mode="python")
    for name in ("event_id", "input_id", "job_id"):
        if row[name] is not None:
            row[name] = str(row[name])
    row["event_type"] = str(event.event_type.value)
    row["timestamp_flag"] = str(event.timestamp_flag.value)
    row["experiments"] = list(event.experiments.items())
    row["properties"] = orjson.dumps(event.properties).decode()
    return row


def _field_errors(exc: ValidationError) -> list[FieldError]:
    return [
        FieldError(".".join(str(part) for part in err["loc"]) or "record", err["msg"])
        for err in exc.errors(include_url=False)
    ]


def _event_id_of(payload: bytes) -> str | None:
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    event_id = value.get("event_id") if isinstance(value, dict) else None
    return str(event_id) if event_id is not None else None


def decode_checked(
    messages: list[Message], model: type[BaseModel], to_row: Callable[[Any, Message], dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[Rejected]]:
    rows, rejected = [], []
    for message in messages:
        try:
            record = model.model_validate_json(message.value)
        except ValidationError as exc:
            errors = _field_errors(exc)
            reason = "; ".join(str(e) for e in errors)[:1000]
            rejected.append(Rejected(message, reason, errors, _event_id_of(message.value)))
            continue
        rows.append(to_row(record, message))
    return rows, rejected


def decode_events(messages: list[Message]) -> tuple[pa.Table, list[Rejected]]:
    try:
        return decode_events_fast([m.value for m in messages]), []
    except FastPathRefused as refused:
        log.info("loader batch decoded message by message: %s", refused.reason)
    rows, rejected = decode_checked(messages, EnrichedEvent, lambda event, _: _event_row(event))
    return pa.Table.from_pylist(rows, schema=EVENT_SCHEMA), rejected


SESSION_SCHEMA = pa.schema(
    [
        ("session_id", pa.string()),
        ("anonymous_id", pa.string()),
        ("user_id", pa.string()),
        ("started_at", TIMESTAMP),
        ("last_event_at", TIMESTAMP),
        ("duration_s", pa.float64()),
        ("event_count", pa.int64()),
        ("late_event_count", pa.int64()),
        ("input_ids", pa.list_(pa.string())),
        ("deepest_step", pa.int64()),
        ("deepest_step_name", pa.string()),
        ("experiments", STRING_MAP),
        ("closed", pa.bool_()),
        ("version", pa.int64()),
        ("updated_at", TIMESTAMP),
    ]
)


def _session_row(summary: SessionSummary, _: Message) -> dict[str, Any]:
    row = summary.model_dump(mode="python")
    row["input_ids"] = [str(value) for value in summary.input_ids]
    row["experiments"] = list(summary.experiments.items())
    return row


DLQ_SCHEMA = pa.schema(
    [
        ("stage", pa.string()),
        ("reason", pa.string()),
        ("errors", pa.list_(pa.struct([("field", pa.string()), ("reason", pa.string())]))),
        ("payload", pa.string()),
        ("payload_encoding", pa.string()),
        ("payload_truncated", pa.bool_()),
        ("payload_bytes", pa.int64()),
        ("original_key", pa.string()),
        ("topic", pa.string()),
        ("partition", pa.int64()),
        ("offset", pa.int64()),
        ("source", pa.string()),
        ("event_id", pa.string()),
        ("failed_at", TIMESTAMP),
        ("dlq_partition", pa.int64()),
        ("dlq_offset", pa.int64()),
    ]
)


def _dlq_row(letter: DeadLetter, message: Message) -> dict[str, Any]:
    row = letter.model_dump(mode="python")
    row["errors"] = [{"field": e.field, "reason": e.reason} for e in letter.errors]
    row["dlq_partition"] = message.partition
    row["dlq_offset"] = message.offset
    return row


def _unreadable_dlq_row(rejected: Rejected) -> dict[str, Any]:
    """A DLQ message that is itself malformed is stored as such, never sent back to the DLQ."""
    try:
        payload, encoding = rejected.message.value.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        payload, encoding = base64.b64encode(rejected.message.value).decode(), "base64"
    return {
        "stage": "loader",
        "reason": f"unreadable dead letter: {rejected.reason}",
        "errors": [{"field": e.field, "reason": e.reason} for e in rejected.errors],
        "payload": payload,
        "payload_encoding": encoding,
        "payload_truncated": False,
        "payload_bytes": None,
        "original_key": rejected.message.key.decode("utf-8", "replace") if rejected.message.key else None,
        "topic": rejected.message.topic,
        "partition": rejected.message.partition,
        "offset": rejected.message.offset,
        "source": None,
        "event_id": rejected.event_id,
        "failed_at": datetime.now(UTC),
        "dlq_partition": rejected.message.partition,
        "dlq_offset": rejected.message.offset,
    }


TOOL_SCHEMA = pa.schema(
    [("tool_id", pa.int64()), ("tool_name", pa.string()), ("tool_type", pa.string()), ("updated_at", TIMESTAMP)]
)
INFERENCE_SCHEMA = pa.schema(
    [
        ("inference_id", pa.int64()),
        ("inference_name", pa.string()),
        ("inference_type", pa.string()),
        ("updated_at", TIMESTAMP),
    ]
)


def _plain_row(record: BaseModel, _: Message) -> dict[str, Any]:
    return record.model_dump(mode="python")


# --- the consumer loop ----------------------------------------------------------------------------


@dataclass
class LoaderStats:
    batches: int = 0
    rows_inserted: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    rejected: int = 0
    insert_retries: int = 0
    insert_seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    inserts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    last_batch_rows: int = 0
    last_insert_at: float | None = None
    paused: bool = False
    last_error: str | None = None
    commit_failures: int = 0


def is_transient(exc: Exception) -> bool:
    if isinstance(exc, TransientError):
        return True
    return isinstance(exc, QueryError) and exc.code in TRANSIENT_ERROR_CODES


class Loader:
    """One consumer group member. ``run`` until ``stop`` is set; SIGTERM sets it."""

    def __init__(self, settings: WarehouseSettings, warehouse: Warehouse, *, consumer: Any = None) -> None:
        self.settings = settings
        self.warehouse = warehouse
        self.stats = LoaderStats()
        self.stop = threading.Event()
        self._consumer = consumer
        self._producer: Any = None
        self._batch: list[Message] = []
        self._deadline = math.inf
        """When the open batch is due: its oldest message's time is up then."""
        self._topic_kind = {
            settings.loader_events_topic: "events",
            settings.loader_sessions_topic: "sessions",
            settings.loader_dlq_topic: "dlq",
            settings.loader_tools_topic: "tools",
            settings.loader_inferences_topic: "inferences",
        }

    # lifecycle

    def setup(self) -> None:
        from confluent_kafka import Consumer

        from funnelstream.kafka import make_producer, wait_for_broker

        wait_for_broker(self.settings.kafka)
        if self._consumer is None:
            self._consumer = Consumer(
                {
                    **self.settings.kafka.client_config(),
                    "group.id": self.settings.loader_group_id,
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "enable.partition.eof": False,
                    # A long ClickHouse outage keeps the member in the group: poll() runs while paused.
                    "max.poll.interval.ms": 300_000,
                    # A crashed member gives its partitions back after 10 s rather than 45 s.
                    "session.timeout.ms": 10_000,
                    "fetch.max.bytes": 64 * 1024 * 1024,
                }
            )
        self._producer = make_producer(self.settings.kafka)
        topics = [topic for topic in self.settings.loader_topics if topic]
        self._consumer.subscribe(topics, on_revoke=self._on_revoke)
        log.info("loader subscribed to %s as %s", topics, self.settings.loader_group_id)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(10)
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def install_signal_handlers(self) -> None:
        def request_stop(signum: int, _frame: Any) -> None:
            log.info("loader got signal %s: draining", signum)
            self.stop.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)

    # the loop

    def run(self) -> None:
        """Consume → decode → insert → commit until stopped; the last batch is flushed first."""
        assert self._consumer is not None, "call setup() first"
        batch_seconds = self.settings.loader_batch_seconds
        while not self.stop.is_set():
            wanted = self.settings.loader_batch_rows - len(self._batch)
            if self._batch:
                remaining = self._deadline - time.monotonic()
                if remaining <= 0 or wanted <= 0:
                    self._flush()
                    continue
                timeout = min(remaining, 0.5)
            else:
                timeout = 0.5
            messages = self._consumer.consume(num_messages=max(1, wanted), timeout=timeout)
            now_monotonic, now_wall = time.monotonic(), time.time()
            for raw in messages:
                error = raw.error()
                if error is not None:
                    if error.fatal():
                        raise LoaderError(f"fatal Kafka error: {error.str()}")
                    log.warning("loader consumer error: %s", error.str())
                    continue
                kind, stamp = raw.timestamp()
                produced_at_ms = stamp if kind != _TIMESTAMP_NOT_AVAILABLE else None
                self._batch.append(
                    Message(raw.topic(), raw.partition(), raw.offset(), raw.key(), raw.value() or b"", produced_at_ms)
                )
                self._deadline = min(
                    self._deadline, flush_deadline(now_monotonic, now_wall, produced_at_ms, batch_seconds)
                )
        self._flush()

    def _flush(self) -> None:
        batch, self._batch = self._batch, []
        self._deadline = math.inf
        if batch:
            self.process(batch)

    def _on_revoke(self, _consumer: Any, _partitions: Any) -> None:
        # Load and commit what was read before another member takes these partitions over.
        self._flush()

    def process(self, batch: list[Message]) -> None:
        """Decode, insert every table, dead-letter the rejects, then commit the batch's offsets."""
        by_kind: dict[str, list[Message]] = defaultdict(list)
        for message in batch:
            by_kind[self._topic_kind.get(message.topic, "events")].append(message)
        inserts: list[tuple[str, pa.Table]] = []
        rejected: list[Rejected] = []
        dlq_rows: list[dict[str, Any]] = []
        if by_kind["events"]:
            events, bad = decode_events(by_kind["events"])
            inserts.append(("events", events))
            rejected.extend(bad)
        for kind, table, model, schema, to_row in (
            ("sessions", "sessions", SessionSummary, SESSION_SCHEMA, _session_row),
            ("tools", "tools", ToolDimension, TOOL_SCHEMA, _plain_row),
            ("inferences", "inferences", InferenceDimension, INFERENCE_SCHEMA, _plain_row),
        ):
            if by_kind[kind]:
                rows, bad = decode_checked(by_kind[kind], model, to_row)
                inserts.append((table, pa.Table.from_pylist(rows, schema=schema)))
                rejected.extend(bad)
        if by_kind["dlq"]:
            rows, bad = decode_checked(by_kind["dlq"], DeadLetter, _dlq_row)
            dlq_rows = rows + [_unreadable_dlq_row(item) for item in bad]
            inserts.append(("dlq_events", pa.Table.from_pylist(dlq_rows, schema=DLQ_SCHEMA)))
        for table, data in inserts:
            if data.num_rows:
                self._insert_with_retry(table, data)
                self.stats.rows_inserted[table] += data.num_rows
        self.stats.last_batch_rows = sum(data.num_rows for _, data in inserts)
        if rejected:
            self._dead_letter(rejected)
        self._commit(batch)
        self.stats.batches += 1
        self.stats.last_insert_at = time.time()

    def _insert_with_retry(self, table: str, data: pa.Table) -> None:
        """Retry only transient failures, pausing consumption meanwhile so nothing piles up or
        is lost; a non-transient error stops the loader with its offsets uncommitted."""
        delay = self.settings.loader_retry_initial_s
        while True:
            try:
                started = time.perf_counter()
                self.warehouse.insert_arrow(table, data, INSERT_SETTINGS.get(table))
                self.stats.insert_seconds[table] += time.perf_counter() - started
                self.stats.inserts[table] += 1
                if self.stats.paused:
                    self._set_paused(False)
                return
            except (WarehouseUnavailable, QueryError, TransientError) as exc:
                if not is_transient(exc):
                    raise
                self.stats.insert_retries += 1
                self.stats.last_error = str(exc)
                if not self.stats.paused:
                    self._set_paused(True)
                log.warning("insert into %s failed (%s); retrying in %.1fs", table, exc, delay)
                if self.stop.wait(delay):
                    # Stopping with the batch uncommitted: the next start re-reads it.
                    raise
                if self._consumer is not None:
                    self._consumer.poll(0)  # keeps the group membership alive while paused
                delay = min(delay * 2, self.settings.loader_retry_max_s)

    def _set_paused(self, paused: bool) -> None:
        if self._consumer is not None:
            assignment = self._consumer.assignment()
            if assignment:
                (self._consumer.pause if paused else self._consumer.resume)(assignment)
        self.stats.paused = paused

    def _dead_letter(self, rejected: Iterable[Rejected]) -> None:
        from funnelstream.kafka import DeliveryReport, dead_letter, flush_or_raise, produce

        report = DeliveryReport()
        for item in rejected:
            letter = dead_letter(
                stage="loader",
                reason=item.reason,
                payload=item.message.value,
                errors=item.errors,
                original_key=item.message.key,
                topic=item.message.topic,
                partition=item.message.partition,
                offset=item.message.offset,
                event_id=item.event_id,
            )
            produce(
                self._producer,
                self.settings.loader_dlq_topic,
                letter.encode(),
                item.message.key,
                report,
            )
            self.stats.rejected += 1
        flush_or_raise(self._producer, report, timeout_s=30)

    def _commit(self, batch: list[Message]) -> None:
        from confluent_kafka import KafkaError, KafkaException, TopicPartition

        outlived = {
            KafkaError._WAIT_COORD,
            KafkaError._TRANSPORT,
            KafkaError._ALL_BROKERS_DOWN,
            KafkaError._TIMED_OUT,
            KafkaError.REQUEST_TIMED_OUT,
            KafkaError.COORDINATOR_NOT_AVAILABLE,
            KafkaError.NOT_COORDINATOR,
            KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
            KafkaError.REBALANCE_IN_PROGRESS,
            KafkaError.ILLEGAL_GENERATION,
            KafkaError.UNKNOWN_MEMBER_ID,
            KafkaError._NO_OFFSET,
        }

        if self._consumer is None:
            return
        highest: dict[tuple[str, int], int] = {}
        for message in batch:
            key = (message.topic, message.partition)
            highest[key] = max(highest.get(key, -1), message.offset)
        offsets = [TopicPartition(topic, partition, offset + 1) for (topic, partition), offset in highest.items()]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # The rows are in already. A commit lost while the broker or coordinator is away (or after
            # a rebalance took the partitions) only means a replay from the last commit, and replayed
            # rows collapse on the dedup key; the next successful commit covers these offsets too.
            error = exc.args[0] if exc.args else None
            code = error.code() if isinstance(error, KafkaError) else None
            if code not in outlived and not (isinstance(error, KafkaError) and error.retriable()):
                raise
            self.stats.commit_failures += 1
            log.warning("offset commit failed; the next commit covers it", extra={"reason": str(error)})
