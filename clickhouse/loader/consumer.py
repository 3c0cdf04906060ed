"""The loader's consumer: one group member that batches messages and runs them through the steps.

Owns the batch/deadline loop, backpressure (pause, wait, retry) and the statistics. A record of
the events topic marked as a block (``funnelstream.blocks``) is one message per row. Invariants: a
batch's offsets are committed only after its rows are inserted and its rejects acknowledged by
the DLQ topic, so a crash replays rather than loses; replayed rows collapse on each table's key; a
batch holds all of a record's rows or none, so no record is committed half loaded.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Producer

from clickhouse.backend import Warehouse
from clickhouse.errors import LoaderError
from clickhouse.loader.commit import commit_batch
from clickhouse.loader.deadletters import send_dead_letters
from clickhouse.loader.decode import decode_batch
from clickhouse.loader.insert import Backpressure, insert_table
from clickhouse.loader.messages import Message, record_messages
from clickhouse.settings import WarehouseSettings
from funnelstream.blocks import block_version
from funnelstream.kafka import make_consumer, make_producer, wait_for_broker

log = logging.getLogger("funnelstream.warehouse.loader")


def flush_deadline(now_monotonic: float, now_wall: float, produced_at_ms: int | None, batch_seconds: float) -> float:
    """When a batch holding this message must be inserted, on the monotonic clock.

    ``batch_seconds`` counts from when the message was produced, not from when this consumer saw
    it: time spent in the broker and in a fetch that waited for more messages is part of the
    staleness an analyst sees. A timestamp from the future (clock skew) counts as now.
    """
    age = 0.0 if produced_at_ms is None else now_wall - produced_at_ms / 1000
    return now_monotonic + batch_seconds - min(max(age, 0.0), batch_seconds)


def record_boundary(batch: list[Message], limit: int) -> int:
    """The length of the longest head of ``batch`` of at most ``limit`` messages that ends with a
    whole record (a block's rows share topic, partition and offset and sit together); when the
    first record alone is longer, that record."""
    cut = min(limit, len(batch))
    if cut == len(batch):
        return cut

    def same_record(a: Message, b: Message) -> bool:
        return a.offset == b.offset and a.partition == b.partition and a.topic == b.topic

    head = cut
    while head > 0 and same_record(batch[head - 1], batch[head]):
        head -= 1
    if head:
        return head
    while cut < len(batch) and same_record(batch[cut - 1], batch[cut]):
        cut += 1
    return cut


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


class Loader:
    """One consumer group member. ``run`` until ``stop`` is set; SIGTERM sets it."""

    def __init__(self, settings: WarehouseSettings, warehouse: Warehouse, *, consumer: Any = None) -> None:
        self.settings = settings
        self.warehouse = warehouse
        self.stats = LoaderStats()
        self.stop = threading.Event()
        self._consumer = consumer
        self._producer: Producer | None = None
        self._batch: list[Message] = []
        self._deadline = math.inf
        """When the open batch is due: its oldest message's time is up then."""
        self._rows_per_record = float(settings.loader.batch_rows)
        """Rows per record in the last consume: how many records to ask for to fill a batch. It
        starts as if a record could fill a batch, so the first consume asks for one record rather
        than ``batch_rows`` blocks of up to hundreds of rows each."""
        self._topic_kind = {
            settings.loader.events_topic: "events",
            settings.loader.sessions_topic: "sessions",
            settings.loader.dlq_topic: "dlq",
            settings.loader.tools_topic: "tools",
            settings.loader.inferences_topic: "inferences",
        }

    # lifecycle

    def setup(self) -> None:
        wait_for_broker(self.settings.kafka)
        if self._consumer is None:
            self._consumer = make_consumer(
                self.settings.kafka,
                self.settings.loader.group_id,
                **{
                    "enable.partition.eof": False,
                    # A long ClickHouse outage keeps the member in the group: poll() runs while paused.
                    "max.poll.interval.ms": 300_000,
                    # A crashed member gives its partitions back after 10 s rather than 45 s.
                    "session.timeout.ms": 10_000,
                    "fetch.max.bytes": 64 * 1024 * 1024,
                },
            )
        self._producer = make_producer(self.settings.kafka)
        topics = [topic for topic in self.settings.loader.topics if topic]
        self._consumer.subscribe(topics, on_revoke=self._on_revoke)
        log.info("loader subscribed to %s as %s", topics, self.settings.loader.group_id)

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
        """Consume into a batch until it is full or due, then :meth:`process` it; repeat until
        stopped, flushing the last batch first. A batch is due ``loader_batch_seconds`` after its
        oldest message was produced (:func:`flush_deadline`). A block of the events topic adds a
        message per row, so the records asked for are the rows wanted over the rows per record
        of the last consume; what passes ``batch_rows`` waits for the next batch."""
        assert self._consumer is not None, "call setup() first"
        batch_seconds = self.settings.loader.batch_seconds
        events_topic = self.settings.loader.events_topic
        while not self.stop.is_set():
            wanted = self.settings.loader.batch_rows - len(self._batch)
            if self._batch:
                remaining = self._deadline - time.monotonic()
                if remaining <= 0 or wanted <= 0:
                    self._flush(everything=remaining <= 0)
                    continue
                timeout = min(remaining, 0.5)
            else:
                timeout = 0.5
            records = max(1, math.ceil(wanted / self._rows_per_record))
            messages = self._consumer.consume(num_messages=records, timeout=timeout)
            now_monotonic, now_wall = time.monotonic(), time.time()
            held = len(self._batch)
            for raw in messages:
                error = raw.error()
                if error is not None:
                    if error.fatal():
                        raise LoaderError(f"fatal Kafka error: {error.str()}")
                    log.warning("loader consumer error: %s", error.str())
                    continue
                kind, stamp = raw.timestamp()
                produced_at_ms = stamp if kind != TIMESTAMP_NOT_AVAILABLE else None
                topic, value = raw.topic(), raw.value() or b""
                if topic == events_topic and block_version(raw.headers()) is not None:
                    self._batch.extend(
                        record_messages(
                            topic, raw.partition(), raw.offset(), raw.key(), value, produced_at_ms, block=True
                        )
                    )
                else:
                    self._batch.append(Message(topic, raw.partition(), raw.offset(), raw.key(), value, produced_at_ms))
                self._deadline = min(
                    self._deadline, flush_deadline(now_monotonic, now_wall, produced_at_ms, batch_seconds)
                )
            if messages:
                self._rows_per_record = max(1.0, (len(self._batch) - held) / len(messages))
        self._flush()

    def _flush(self, *, everything: bool = True) -> None:
        """Process the open batch in batches of at most ``batch_rows`` rows (more only for one
        record that alone is longer), each ending with a whole record; ``everything=False`` keeps
        a last part shorter than ``batch_rows`` open. Cutting the consume order at a record keeps
        each partition's records in offset order across batches, so each commit covers only
        records already loaded."""
        limit = self.settings.loader.batch_rows
        while self._batch and (everything or len(self._batch) >= limit):
            cut = record_boundary(self._batch, limit)
            batch, self._batch = self._batch[:cut], self._batch[cut:]
            if not self._batch:
                self._deadline = math.inf
            self.process(batch)

    def _on_revoke(self, _consumer: Any, _partitions: Any) -> None:
        # Load and commit what was read before another member takes these partitions over.
        self._flush()

    def process(self, batch: list[Message]) -> None:
        """The pipeline of one batch, in this order:

        1. decode: each message into its table's rows, or a reject (``decode.decode_batch``);
        2. insert every table, waiting out backpressure (:meth:`_insert`);
        3. dead letters: every reject produced to the DLQ topic and acknowledged;
        4. commit the batch's offsets — only now, after the insert; a failure before this point
           leaves them uncommitted and the next start re-reads the batch.
        """
        by_kind: dict[str, list[Message]] = defaultdict(list)
        for message in batch:
            by_kind[self._topic_kind.get(message.topic, "events")].append(message)
        decoded = decode_batch(by_kind)
        for table, data in decoded.tables:
            if data.num_rows:
                self._insert(table, data)
                self.stats.rows_inserted[table] += data.num_rows
        self.stats.last_batch_rows = sum(data.num_rows for _, data in decoded.tables)
        if decoded.rejected:
            assert self._producer is not None, "call setup() first"
            self.stats.rejected += send_dead_letters(self._producer, self.settings.loader.dlq_topic, decoded.rejected)
        if self._consumer is not None and not commit_batch(self._consumer, batch):
            self.stats.commit_failures += 1
        self.stats.batches += 1
        self.stats.last_insert_at = time.time()

    def _insert(self, table: str, data: pa.Table) -> None:
        """Insert until the warehouse takes the rows. On :class:`Backpressure` (a transient error,
        the only kind retried) consumption is paused, the loop waits with exponential backoff and
        keeps its group membership by polling; a stop request meanwhile raises the error, leaving
        the batch uncommitted."""
        delay = self.settings.loader.retry_initial_s
        while isinstance(result := insert_table(self.warehouse, table, data), Backpressure):
            self.stats.insert_retries += 1
            self.stats.last_error = str(result.error)
            if not self.stats.paused:
                self._set_paused(True)
            log.warning("insert into %s failed (%s); retrying in %.1fs", table, result.error, delay)
            if self.stop.wait(delay):
                raise result.error
            if self._consumer is not None:
                self._consumer.poll(0)  # keeps the group membership alive while paused
            delay = min(delay * 2, self.settings.loader.retry_max_s)
        self.stats.insert_seconds[table] += result.seconds
        self.stats.inserts[table] += 1
        if self.stats.paused:
            self._set_paused(False)

    def _set_paused(self, paused: bool) -> None:
        if self._consumer is not None:
            assignment = self._consumer.assignment()
            if assignment:
                (self._consumer.pause if paused else self._consumer.resume)(assignment)
        self.stats.paused = paused
