"""The Faust application: thin agents around :class:`StreamProcessor`.

At-least-once plus dedup. A batch's outputs (enriched events, sessions, dead letters) are
acknowledged before its state changes are written to the changelogged table, and those before the
worker commits the batch's progress as the group's offsets: a crash repeats output, never loses it.
The committed offset is the processor's durable progress, never Faust's own offset bookkeeping.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import faust
import orjson
from confluent_kafka import Producer
from faust.types import TP

from funnelstream.blocks import BLOCK_HEADERS, SEPARATOR, block_version
from funnelstream.errors import DeliveryError
from funnelstream.kafka import (
    DeliveryReport,
    consumer_group_lag,
    flush_or_raise,
    make_producer,
    produce,
)
from stream_processors.dimensions import DimensionStore
from stream_processors.enrich import Enricher, UserAgentParser
from stream_processors.feed import DimensionFeed
from stream_processors.processor import Output, RawRecord, SessionRules, StreamProcessor
from stream_processors.settings import StreamSettings

log = logging.getLogger(__name__)
STATE_TABLE = "state"
ENRICHED_HEADERS: list[tuple[str, str | bytes | None]] = list(BLOCK_HEADERS)
"""An ``events.enriched`` message is a block of rows, as the loader reads it."""


class TableStateStore:
    """The processor's store interface over a Faust table whose partitions we choose.

    Faust declares the table, creates its changelog topic and restores a partition from it when
    the partition is assigned. Writes go around ``table[key] = value`` for two reasons: that call
    takes the partition from the current stream event and refuses outside of one (in a timer, or
    in a ``take_events`` batch), and Faust's producer buffer sends one message per await, which
    costs more than the whole processing of an event. So a write updates the table's store and
    queues the changelog record (same key and value encoding as Faust's json codec); the runtime
    produces the queue with librdkafka and waits for it before the batch's offsets can commit.
    """

    def __init__(self, table: Any) -> None:
        self.table = table
        self.pending: list[tuple[int, bytes, bytes | None]] = []

    def get(self, key: str) -> Any | None:
        return self.table.data.get(key)

    def put(self, partition: int, key: str, value: Any) -> None:
        self.table.data[key] = value
        self.pending.append((partition, orjson.dumps(key), orjson.dumps(value)))

    def delete(self, partition: int, key: str) -> None:
        self.table.data.pop(key, None)
        self.pending.append((partition, orjson.dumps(key), None))

    def drain(self) -> list[tuple[int, bytes, bytes | None]]:
        pending, self.pending = self.pending, []
        return pending

    @property
    def changelog_topic(self) -> str:
        return str(self.table.changelog_topic.get_topic_name())

    def items(self) -> list[tuple[str, Any]]:
        return list(self.table.data.items())

    def key_snapshot(self) -> list[str]:
        return list(self.table.data)

    def evict(self, key: str) -> None:
        self.table.data.pop(key, None)


class CountingReport(DeliveryReport):
    """Counts acknowledgements and keeps the first failure, like :class:`DeliveryReport`, but
    keeps no offsets: it is called once per output message, several per event."""

    def __call__(self, err: Any, msg: Any) -> None:
        if err is None:
            self.delivered += 1
        elif self.first_error is None:
            self.first_error = DeliveryError(msg.topic() or "?", err.str(), retriable=err.retriable())


@dataclass
class Runtime:
    """What the agents share: the processor, the output producer and the dimension feed."""

    settings: StreamSettings
    processor: StreamProcessor
    dimensions: DimensionStore
    producer: Producer | None = None
    feed: DimensionFeed | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    batches: int = 0
    assigned: set[int] | None = None
    """Partitions of the input topic this worker owns; None until the first assignment."""
    consumer: ConsumerControl | None = None
    """The group consumer, once the worker runs; None in memory (tests)."""
    gap_retries: dict[int, tuple[tuple[int, int], int, float]] = field(default_factory=dict)
    """partition -> (the gap, seeks made for it, when the last one was made)."""

    async def start(self) -> None:
        if self.producer is not None:
            return
        config = self.settings.kafka
        stream = self.settings.stream
        self.producer = make_producer(config)
        self.feed = DimensionFeed(config, self.dimensions, stream.tools_topic, stream.inferences_topic)
        self.feed.start()
        # Events enriched before the dimensions are loaded would be flagged unknown for no reason.
        loop = asyncio.get_running_loop()
        caught_up = await loop.run_in_executor(None, self.feed.caught_up.wait, 60.0)
        if self.feed.error is not None:
            raise self.feed.error
        if not caught_up:
            log.warning("dimension topics not read to their end after 60 s; unknown ids will be flagged meanwhile")

    async def stop(self) -> None:
        if self.feed is not None:
            self.feed.stop()
        if self.producer is not None:
            self.producer.flush(self.settings.stream.delivery_timeout_s)

    async def deliver(self, out: Output) -> None:
        assert self.producer is not None
        stream = self.settings.stream
        report = CountingReport()
        # Each enriched message is the block of rows of one input record.
        for row_key, rows in out.enriched:
            produce(self.producer, stream.enriched_topic, rows, row_key, report, headers=ENRICHED_HEADERS)
        self.producer.poll(0)
        for topic, messages in ((stream.sessions_topic, out.sessions), (stream.dlq_topic, out.dead_letters)):
            for key, value in messages:
                produce(self.producer, topic, value, key, report)
            self.producer.poll(0)
        loop = asyncio.get_running_loop()
        if report.expected:
            await loop.run_in_executor(None, flush_or_raise, self.producer, report, stream.delivery_timeout_s)
        self.processor.commit(out)
        store = self.processor.store
        if isinstance(store, TableStateStore):
            changelog = store.changelog_topic
            state_report = CountingReport()
            for partition, state_key, state_value in store.drain():
                produce(self.producer, changelog, state_value, state_key, state_report, partition=partition)
            if state_report.expected:
                await loop.run_in_executor(None, flush_or_raise, self.producer, state_report, stream.delivery_timeout_s)

    async def handle(self, events: list[Any]) -> None:
        async with self.lock:
            try:
                await self._handle(events)
            finally:
                # Faust acks the batch when the loop comes back and would commit it; the offsets
                # this worker commits are its durable progress, so Faust's bookkeeping gets none.
                # Marked only now: a rebalance waits for unacked messages before it goes on.
                for event in events:
                    event.message.acked = True

    async def _handle(self, events: list[Any]) -> None:
        consumer = self.consumer
        owned = consumer.owned() if consumer is not None else None
        generation = consumer.generation() if consumer is not None else None
        records = []
        for event in events:
            message = event.message
            # A record fetched before a rebalance, or of a partition that moved away, is not
            # ours to process: the owner of its partition reads it again.
            if owned is not None and message.partition not in owned:
                continue
            if generation is not None and message.generation_id != generation:
                continue
            records.append(
                RawRecord(
                    message.partition,
                    message.offset,
                    message.key,
                    message.value,
                    message.topic,
                    block_version(message.headers),
                )
            )
        gaps: dict[int, tuple[int, int]] = {}
        for part in sub_batches(records, self.settings.stream.batch_events):
            out = self.processor.process(part)
            progress = dict(out.progress)
            for partition, gap in out.gaps.items():
                gaps.setdefault(partition, gap)
            await self.deliver(out)
            self.batches += 1
            if consumer is not None and progress:
                await consumer.commit(progress)
        if consumer is not None:
            for partition, gap in gaps.items():
                await self.resume_at(consumer, partition, gap)

    async def resume_at(self, consumer: ConsumerControl, partition: int, gap: tuple[int, int]) -> None:
        """Move a partition back to where its processing stopped, after records were skipped.

        Records fetched before the seek may still arrive and show a gap; the seek is repeated
        until the partition continues where it stopped. Records are never skipped on purpose,
        except those that no longer exist: below the partition's earliest offset (retention), or
        a hole that stays exactly the same through several seeks (transaction markers).
        """
        expected, delivered = gap
        previous_gap, seeks, last_seek = self.gap_retries.get(partition, (gap, 0, 0.0))
        if previous_gap != gap:
            seeks = 0
        now = asyncio.get_running_loop().time()
        if seeks and now - last_seek < GAP_SEEK_INTERVAL_S:
            return
        earliest = await consumer.earliest(partition)
        resume = earliest if earliest > expected else delivered if seeks >= GAP_SEEKS_BEFORE_SKIP else None
        if resume is not None:
            log.warning("partition %d: offsets %d..%d do not exist; continuing at %d", partition, expected,
                        resume - 1, resume)  # fmt: skip
            await self.deliver(self.processor.skip_gap(partition, resume))
            await consumer.commit({partition: resume})
            self.gap_retries.pop(partition, None)
            if resume == delivered:
                return
            expected = resume
        log.warning("partition %d: expected offset %d, got %d; seeking back", partition, expected, delivered)
        await consumer.seek(partition, expected)
        self.gap_retries[partition] = (gap, seeks + 1, now)

    async def close_idle(self) -> None:
        async with self.lock:
            out = self.processor.close_idle()
            if out.sessions or out.state_writes:
                await self.deliver(out)

    def health(self) -> dict[str, Any]:
        counters = self.processor.counters
        return {
            "status": "ok" if self.feed is None or self.feed.error is None else "degraded",
            "batches": self.batches,
            "assigned": sorted(self.assigned or ()),
            "accepted": counters.accepted,
            "duplicates": counters.duplicates,
            "late": counters.late,
            "dead_letters": counters.dead_letters,
            "merges": counters.merges,
            "sessions_closed": counters.sessions_closed,
            "unknown_tool": self.processor.enricher.counters.unknown_tool,
            "unknown_inference": self.processor.enricher.counters.unknown_inference,
            "open_sessions": self.processor.open_sessions(),
            "watermarks": {str(p): w for p, w in sorted(self.processor.watermarks.items())},
        }


def sub_batches(records: list[RawRecord], events: int) -> list[list[RawRecord]]:
    """Whole records in runs of about ``events`` events each (a run ends with the record that
    reaches it): what one take holds can be hundreds of thousands of events, processed, delivered
    and committed a run at a time so that a batch's output and state stay bounded."""
    runs: list[list[RawRecord]] = []
    run: list[RawRecord] = []
    count = 0
    for record in records:
        run.append(record)
        value = record.value
        count += value.count(SEPARATOR) + 1 if record.block is not None and value else 1
        if count >= events:
            runs.append(run)
            run, count = [], 0
    if run or not runs:
        runs.append(run)
    return runs


GAP_SEEKS_BEFORE_SKIP = 5
GAP_SEEK_INTERVAL_S = 1.0


class ConsumerControl:
    """What the runtime needs of the worker's group consumer: ownership, commits and seeks."""

    def __init__(self, app: faust.App, topic: str) -> None:
        self.app = app
        self.topic = topic

    def owned(self) -> set[int]:
        return {tp.partition for tp in self.app.consumer.assignment() if tp.topic == self.topic}

    def generation(self) -> int:
        return int(self.app.consumer_generation_id)

    async def commit(self, offsets: dict[int, int]) -> None:
        # The consumer's own commit goes through its ack bookkeeping; this one commits exactly
        # these offsets (partitions no longer assigned are left out by the consumer).
        consumer: Any = self.app.consumer  # the transport consumer; its interface type lacks _commit
        await consumer._commit({TP(self.topic, partition): offset for partition, offset in offsets.items()})

    async def seek(self, partition: int, offset: int) -> None:
        await self.app.consumer.seek(TP(self.topic, partition), offset)

    async def earliest(self, partition: int) -> int:
        tp = TP(self.topic, partition)
        try:
            offsets = await self.app.consumer.earliest_offsets(tp)
        except Exception as exc:  # only decides whether a hole is retention's; seeking is safe
            log.warning("earliest offset of partition %d unknown: %s", partition, exc)
            return 0
        return int(offsets.get(tp) or 0)


def _group_lag(settings: StreamSettings) -> dict[tuple[str, int], int]:
    """Uncommitted messages per partition of this app's consumer group; empty when Kafka is away."""
    try:
        return consumer_group_lag(settings.kafka, settings.stream.app_id, timeout_s=2.0).per_partition
    except Exception as exc:  # a scrape must answer even when the broker does not
        log.warning("consumer lag unavailable: %s", exc)
        return {}


def prometheus_text(health: dict[str, Any], lag: dict[tuple[str, int], int] | None = None) -> str:
    """The worker's counters in Prometheus text format; events/s is ``rate(stream_events_total)``."""
    counters = {
        "stream_events_total": ("counter", "events accepted and enriched", health["accepted"]),
        "stream_dedup_hits_total": (
            "counter",
            "events dropped as duplicates of an earlier event_id",
            health["duplicates"],
        ),
        "stream_late_events_total": ("counter", "events kept but flagged late", health["late"]),
        "stream_dead_letters_total": ("counter", "messages sent to the dead-letter topic", health["dead_letters"]),
        "stream_session_merges_total": ("counter", "sessions merged by an out-of-order event", health["merges"]),
        "stream_sessions_closed_total": ("counter", "sessions closed by the idle timer", health["sessions_closed"]),
        "stream_batches_total": ("counter", "batches processed", health["batches"]),
        "stream_open_sessions": ("gauge", "sessions open on this worker", health["open_sessions"]),
    }
    lines = []
    for name, (kind, description, value) in counters.items():
        lines += [f"# HELP {name} {description}", f"# TYPE {name} {kind}", f"{name} {value}"]
    lines += ["# HELP stream_unknown_dimension_total events whose dimension id is unknown",
              "# TYPE stream_unknown_dimension_total counter",
              f'stream_unknown_dimension_total{{dimension="tool"}} {health["unknown_tool"]}',
              f'stream_unknown_dimension_total{{dimension="inference"}} {health["unknown_inference"]}',
              "# HELP stream_assigned_partitions partitions of the input topic this worker owns",
              "# TYPE stream_assigned_partitions gauge",
              f"stream_assigned_partitions {len(health['assigned'])}",
              "# HELP stream_consumer_lag messages of each partition the group has not committed yet",
              "# TYPE stream_consumer_lag gauge"]  # fmt: skip
    for (topic, partition), behind in sorted((lag or {}).items()):
        lines.append(f'stream_consumer_lag{{topic="{topic}",partition="{partition}"}} {behind}')
    return "\n".join(lines) + "\n"


def reading_options(settings: StreamSettings) -> dict[str, Any]:
    """How the worker's app reads ``events.raw``; the benchmark's bare agent reads the same way."""
    stream = settings.stream
    return {
        "broker": [f"kafka://{server}" for server in settings.kafka.bootstrap_servers.split(",")],
        "consumer_auto_offset_reset": "earliest",
        # A few takes ahead, not Faust's default of 4,096 buffered records plus whatever one poll
        # returns: what waits in buffers is memory, and a record can be a block of 500 events.
        "stream_buffer_maxsize": stream.read_ahead_records,
        "broker_max_poll_records": stream.batch_size,
        "consumer_max_fetch_size": stream.fetch_max_bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
        # The project's topics are made by `funnelstream setup`; Faust declares only its changelog.
        "topic_allow_declare": True,
    }


def create_app(settings: StreamSettings) -> tuple[faust.App, Runtime]:
    """Build the app; nothing connects until a worker starts it."""
    stream = settings.stream
    kafka = settings.kafka
    app = faust.App(
        stream.app_id,
        datadir=str(stream.data_dir),
        topic_partitions=kafka.partitions,
        topic_replication_factor=kafka.replication_factor,
        processing_guarantee="at_least_once",
        broker_commit_interval=stream.commit_interval_s,
        broker_session_timeout=stream.consumer_session_timeout_s,
        web_port=stream.web_port,
        web_bind=stream.web_host,
        web_host=stream.web_host,
        table_standby_replicas=0,
        **reading_options(settings),
    )
    raw_topic = app.topic(stream.input_topic, key_type=bytes, value_type=bytes, value_serializer="raw")
    table = app.Table(
        STATE_TABLE,
        default=None,
        partitions=kafka.partitions,
        key_type=str,
    )
    dimensions = DimensionStore()
    enricher = Enricher(dimensions, UserAgentParser(stream.user_agent_cache_size))
    rules = SessionRules(
        gap_ms=int(stream.session_gap_s * 1000),
        max_ms=int(stream.session_max_s * 1000),
        lateness_ms=int(stream.allowed_lateness_s * 1000),
        dedup_window_ms=int(stream.dedup_window_s * 1000),
    )
    runtime = Runtime(settings, StreamProcessor(TableStateStore(table), enricher, rules), dimensions)

    @app.agent(raw_topic, name="process-events")
    async def process_events(events: Any) -> None:
        await runtime.start()
        try:
            async for batch in events.take_events(stream.batch_size, within=stream.batch_within_s):
                await runtime.handle(list(batch))
        finally:
            await runtime.stop()

    @app.timer(stream.timer_interval_s, name="close-idle-sessions")  # type: ignore[untyped-decorator]
    async def close_idle_sessions() -> None:
        # While the worker rebalances, Faust restores table partitions from their changelog:
        # their values are older than the state until the restore ends.
        if runtime.producer is not None and not app.rebalancing:
            await runtime.close_idle()

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def on_assigned(app: faust.App, assigned: set[Any], **kwargs: Any) -> None:
        # The revocation signal names every partition (eager rebalancing), also those that stay:
        # their state must stay too, as Faust only reads their changelog from where it stopped.
        # Only partitions that went to another worker are forgotten; Faust restores such a
        # partition from the start of its changelog if it ever comes back.
        owned = {tp.partition for tp in assigned if tp.topic == stream.input_topic}
        if runtime.consumer is None:
            runtime.consumer = ConsumerControl(app, stream.input_topic)
        async with runtime.lock:
            for partition in (runtime.assigned or set()) - owned:
                runtime.processor.drop_partition(partition)
                runtime.gap_retries.pop(partition, None)
            runtime.assigned = owned

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json(runtime.health())

    @app.page("/dimensions")
    async def dimensions_view(web: Any, request: Any) -> Any:
        return web.json(dimensions.snapshot())

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        lag = await asyncio.to_thread(_group_lag, settings)
        return web.text(prometheus_text(runtime.health(), lag), content_type="text/plain; version=0.0.4")

    return app, runtime
