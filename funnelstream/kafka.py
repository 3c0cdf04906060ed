"""Kafka clients configured the one way every service needs them: producers, consumers, the
offset-commit failure policy, topic setup and consumer-group lag.

Clients are built by these functions when a service starts (a lifespan or ``setup()``), never at
import time. A consumer built here never commits on its own: its owner commits through :func:`commit`.

Every client built here hands librdkafka's own log lines (``%3|...|FAIL|rdkafka#...``) to the
Python logger :data:`RDKAFKA_LOG` at their syslog level mapped to logging's, instead of librdkafka
writing them to stderr from its threads: they land in the process's log, formatted like the rest,
and never on a console. confluent-kafka serves them on ``poll()`` (a consumer's ``poll()``/``consume()``,
a producer's ``poll()``/``flush()``); an admin client is polled here after each request
(:func:`serve_logs`), so its lines are not left queued.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec  # type: ignore[attr-defined]
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_exponential

from funnelstream.errors import DeliveryError, FunnelstreamError, TransientError
from funnelstream.settings import KafkaConfig
from funnelstream.topics import TOPIC_SPECS, Topic, TopicSpec

log = logging.getLogger(__name__)
RDKAFKA_LOG: Final = logging.getLogger(f"{__name__}.librdkafka")
"""Where librdkafka's log lines go, at their level (3 ERROR, 4 WARNING, 5-6 INFO, 7 DEBUG)."""

BUFFER_FULL_RETRIES = 20
BUFFER_FULL_POLL_S = 0.05
ANY_PARTITION: Final = -1
"""librdkafka's RD_KAFKA_PARTITION_UA: the partitioner chooses."""


def client_config(config: KafkaConfig, **overrides: Any) -> dict[str, Any]:
    """What every client of this cluster is built with: the cluster's settings and the logger that
    keeps librdkafka's lines off stderr (see the module)."""
    return {**config.client_config(), "logger": RDKAFKA_LOG, **overrides}


def make_admin(config: KafkaConfig, **overrides: Any) -> AdminClient:
    """An admin client; after a request, :func:`serve_logs` hands what librdkafka logged to logging."""
    return AdminClient(client_config(config, **overrides))


def serve_logs(admin: AdminClient) -> None:
    """Hand the admin client's queued log lines to :data:`RDKAFKA_LOG` (confluent-kafka serves a
    client's logs only on ``poll()``, which nothing else calls on an admin client)."""
    admin.poll(0)


def producer_config(config: KafkaConfig, **overrides: Any) -> dict[str, Any]:
    """Durable by default: an acknowledged message is on every in-sync replica, once."""
    settings: dict[str, Any] = {
        **client_config(config),
        "acks": "all",
        "enable.idempotence": True,
        "compression.type": "lz4",
        "linger.ms": 5,
        "batch.num.messages": 10_000,
        "queue.buffering.max.messages": 200_000,
        "message.timeout.ms": 30_000,
    }
    settings.update(overrides)
    return settings


def make_producer(config: KafkaConfig, **overrides: Any) -> Producer:
    return Producer(producer_config(config, **overrides))


def consumer_config(config: KafkaConfig, group_id: str, **overrides: Any) -> dict[str, Any]:
    """The owner commits (through :func:`commit`); a group with no committed offset starts at the earliest."""
    settings: dict[str, Any] = {
        **client_config(config),
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }
    settings.update(overrides)
    return settings


def make_consumer(config: KafkaConfig, group_id: str, **overrides: Any) -> Consumer:
    return Consumer(consumer_config(config, group_id, **overrides))


def private_group(purpose: str) -> str:
    """A group id no other client shares: for a reader that assigns itself partitions and never
    commits (librdkafka still requires a group id)."""
    return f"{purpose}-{uuid.uuid4().hex}"


class CommitFailed(FunnelstreamError):
    """An offset commit failed in a way no later commit makes good; the consumer must stop."""

    def __init__(self, reason: str, code: int | None = None) -> None:
        self.reason = reason
        self.code = code
        super().__init__(f"offset commit failed: {reason}")


# Commit failures a later commit makes good. The broker or the group coordinator is away or moving
# (the next commit, once it is back, carries the same or higher offsets), or a rebalance took the
# partitions (their new owner re-reads from the last commit, and every consumer here tolerates a
# replay). _NO_OFFSET: there was nothing to commit.
COVERED_COMMIT_ERRORS: Final = frozenset(
    {
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
        KafkaError._MAX_POLL_EXCEEDED,
        KafkaError._ASSIGNMENT_LOST,
    }
)


def commit_failure_is_covered(error: KafkaError | None) -> bool:
    """Whether a later commit makes this failure good: a listed code, or any error librdkafka calls
    retriable, never a fatal one. Everything else (authorization, an unknown partition, a fenced
    instance, a closed consumer) would fail again on every commit."""
    if error is None or error.fatal():
        return False
    return error.code() in COVERED_COMMIT_ERRORS or error.retriable()


def commit(consumer: Consumer, offsets: Sequence[TopicPartition]) -> bool:
    """Commit ``offsets`` synchronously, the one commit-failure policy: True once committed; False
    when it failed and a later commit covers it (logged; the caller counts it); else raises
    :class:`CommitFailed`."""
    try:
        consumer.commit(offsets=list(offsets), asynchronous=False)
    except KafkaException as exc:
        error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
        if not commit_failure_is_covered(error):
            raise CommitFailed(str(error or exc), error.code() if error is not None else None) from exc
        log.warning("offset commit failed; the next commit covers it", extra={"reason": str(error)})
        return False
    return True


@dataclass
class DeliveryReport:
    """Collects delivery callbacks for a group of messages and keeps the first failure."""

    expected: int = 0
    delivered: int = 0
    first_error: DeliveryError | None = None
    offsets: list[tuple[int, int]] = field(default_factory=list)

    def __call__(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            if self.first_error is None:
                self.first_error = DeliveryError(msg.topic() or "?", err.str(), retriable=err.retriable())
            return
        self.delivered += 1
        self.offsets.append((msg.partition() or 0, msg.offset() or 0))

    @property
    def done(self) -> bool:
        return self.first_error is not None or self.delivered >= self.expected


def produce(
    producer: Producer,
    topic: Topic | str,
    value: bytes | None,
    key: bytes | str | None,
    on_delivery: DeliveryReport,
    headers: list[tuple[str, str | bytes | None]] | None = None,
    partition: int = ANY_PARTITION,
) -> None:
    """Hand one message to the producer, waiting a bounded time while its queue is full.

    ``partition``: the producer's partitioner picks one unless named (a changelog record must land
    in the partition of the state it belongs to); a None ``value`` is a tombstone."""
    on_delivery.expected += 1
    for _ in range(BUFFER_FULL_RETRIES):
        try:
            producer.produce(
                str(topic), value=value, key=key, partition=partition, on_delivery=on_delivery, headers=headers
            )
            return
        except BufferError:
            producer.poll(BUFFER_FULL_POLL_S)
    on_delivery.expected -= 1
    raise TransientError("kafka", f"producer queue full after {BUFFER_FULL_RETRIES} waits")


def flush_or_raise(producer: Producer, report: DeliveryReport, timeout_s: float) -> None:
    """Wait until every message in ``report`` is acknowledged; surface the first failure."""
    deadline = time.monotonic() + timeout_s
    while not report.done:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TransientError(
                "kafka", f"{report.expected - report.delivered} messages unacknowledged after {timeout_s}s"
            )
        producer.poll(min(remaining, 0.1))
    if report.first_error is not None:
        raise report.first_error


def _new_topic(spec: TopicSpec, config: KafkaConfig) -> NewTopic:
    topic_config = {"cleanup.policy": "compact"} if spec.compacted else {"retention.ms": str(config.retention_ms)}
    topic_config["min.insync.replicas"] = str(config.min_insync_replicas)
    return NewTopic(
        str(spec.topic),
        num_partitions=config.partitions,
        replication_factor=config.replication_factor,
        config=topic_config,
    )


@retry(
    retry=retry_if_exception_type(TransientError),
    wait=wait_exponential(multiplier=0.2, max=2),
    stop=stop_after_delay(60),
    reraise=True,
)
def wait_for_broker(config: KafkaConfig, timeout_s: float = 2.0) -> int:
    """Block until the cluster answers a metadata request; returns its broker count."""
    admin = make_admin(config)
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise TransientError("kafka", str(exc)) from exc
    finally:
        serve_logs(admin)
    return len(metadata.brokers)


def ensure_topics(config: KafkaConfig, specs: Iterable[TopicSpec] = TOPIC_SPECS) -> list[str]:
    """Create the topics that are missing; returns the names created. Safe to run again."""
    admin = make_admin(config)
    try:
        existing = set(admin.list_topics(timeout=10).topics)
        missing = [_new_topic(spec, config) for spec in specs if str(spec.topic) not in existing]
        if not missing:
            return []
        created = []
        for name, future in admin.create_topics(missing, operation_timeout=30).items():
            try:
                future.result()
                created.append(name)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
        return created
    finally:
        serve_logs(admin)


@dataclass(frozen=True, slots=True)
class GroupLag:
    group: str
    per_partition: dict[tuple[str, int], int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.per_partition.values())

    def by_topic(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for (topic, _), lag in self.per_partition.items():
            totals[topic] = totals.get(topic, 0) + lag
        return totals


def consumer_group_lag(
    config: KafkaConfig, group: str, timeout_s: float = 5.0, *, admin: AdminClient | None = None
) -> GroupLag:
    """Messages the group has not committed yet, per partition it has committed to.

    A partition the group has no committed offset for counts from its earliest offset.
    """
    admin = admin or make_admin(config)
    try:
        return _group_lag(admin, group, timeout_s)
    finally:
        serve_logs(admin)


def _group_lag(admin: AdminClient, group: str, timeout_s: float) -> GroupLag:
    request = [ConsumerGroupTopicPartitions(group)]
    committed = admin.list_consumer_group_offsets(request, request_timeout=timeout_s)[group].result()
    partitions = [tp for tp in committed.topic_partitions or [] if tp.error is None]
    if not partitions:
        return GroupLag(group)
    latest_spec = OffsetSpec.latest()  # type: ignore[no-untyped-call]
    earliest_spec = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
    latest = admin.list_offsets(
        {TopicPartition(tp.topic, tp.partition): latest_spec for tp in partitions}, request_timeout=timeout_s
    )
    earliest = admin.list_offsets(
        {TopicPartition(tp.topic, tp.partition): earliest_spec for tp in partitions}, request_timeout=timeout_s
    )
    end = {(tp.topic, tp.partition): future.result().offset for tp, future in latest.items()}
    start = {(tp.topic, tp.partition): future.result().offset for tp, future in earliest.items()}
    lag = {}
    for tp in partitions:
        key = (tp.topic, tp.partition)
        position = tp.offset if tp.offset >= 0 else start[key]
        lag[key] = max(end[key] - position, 0)
    return GroupLag(group, lag)
