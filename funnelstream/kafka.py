"""Kafka clients configured the one way every service needs them.

Clients are built by these functions when a service starts (a lifespan or ``setup()``), never at
import time.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_exponential

from funnelstream.contract import MAX_DEAD_LETTER_BYTES, DeadLetter
from funnelstream.errors import DeliveryError, FieldError, TransientError
from funnelstream.settings import KafkaConfig
from funnelstream.topics import TOPIC_SPECS, Topic, TopicSpec

BUFFER_FULL_RETRIES = 20
BUFFER_FULL_POLL_S = 0.05


def producer_config(config: KafkaConfig, **overrides: Any) -> dict[str, Any]:
    """Durable by default: an acknowledged message is on every in-sync replica, once."""
    settings: dict[str, Any] = {
        **config.client_config(),
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
    value: bytes,
    key: bytes | str | None,
    on_delivery: DeliveryReport,
    headers: list[tuple[str, str | bytes | None]] | None = None,
) -> None:
    """Hand one message to the producer, waiting a bounded time while its queue is full."""
    on_delivery.expected += 1
    for _ in range(BUFFER_FULL_RETRIES):
        try:
            producer.produce(str(topic), value=value, key=key, on_delivery=on_delivery, headers=headers)
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


# Every field of a dead letter but its payload is bounded, so the payload gets what is left.
MAX_LETTER_ERRORS = 20
MAX_LETTER_FIELD = 256
MAX_LETTER_KEY = 512


def dead_letter(
    *,
    stage: str,
    reason: str,
    payload: bytes,
    errors: Iterable[FieldError] = (),
    original_key: bytes | str | None = None,
    topic: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
    source: str | None = None,
    event_id: str | None = None,
) -> DeadLetter:
    """The one way a stage builds a dead letter; :meth:`DeadLetter.encode` is at most
    :data:`MAX_DEAD_LETTER_BYTES`, the payload cut to fit and its original size kept."""
    try:
        text, encoding = payload.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(payload).decode(), "base64"
    key = original_key.decode("utf-8", "replace") if isinstance(original_key, bytes) else original_key
    letter = DeadLetter.model_validate(
        {
            "stage": stage,
            "reason": reason[:1024],
            "errors": [
                FieldError(e.field[:MAX_LETTER_FIELD], e.reason[:1024]) for e in list(errors)[:MAX_LETTER_ERRORS]
            ],
            "payload": "",
            "payload_encoding": encoding,
            "original_key": None if key is None else key[:MAX_LETTER_KEY],
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "source": None if source is None else source[:MAX_LETTER_FIELD],
            "event_id": None if event_id is None else event_id[:MAX_LETTER_FIELD],
            "failed_at": datetime.now(UTC),
        }
    )
    # Room for the payload as JSON text, and for the two fields that mark it truncated.
    room = MAX_DEAD_LETTER_BYTES - len(letter.encode()) - 64
    quoted = len(orjson.dumps(text))
    if quoted <= room:
        return letter.model_copy(update={"payload": text})
    # The longest prefix that fits once escaped (a character takes one to six bytes as JSON).
    low, high = 0, min(len(text), room)
    while low < high:
        middle = (low + high + 1) // 2
        if len(orjson.dumps(text[:middle])) <= room:
            low = middle
        else:
            high = middle - 1
    cut = low
    return letter.model_copy(update={"payload": text[:cut], "payload_truncated": True, "payload_bytes": len(payload)})


def _new_topic(spec: TopicSpec, config: KafkaConfig) -> NewTopic:
    topic_config = {"cleanup.policy": "compact"} if spec.compacted else {"retention.ms": str(config.retention_ms)}
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
    try:
        metadata = AdminClient(config.client_config()).list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise TransientError("kafka", str(exc)) from exc
    return len(metadata.brokers)


def ensure_topics(config: KafkaConfig, specs: Iterable[TopicSpec] = TOPIC_SPECS) -> list[str]:
    """Create the topics that are missing; returns the names created. Safe to run again."""
    admin = AdminClient(config.client_config())
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
