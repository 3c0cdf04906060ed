"""Reading a topic back from a real broker, from the beginning: what a service under test produced.

``read_topic`` gives records as they are; ``read_events`` splits the collector's blocks of events
(``funnelstream.blocks``) into one document each, so a test counts events whatever the framing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from funnelstream.blocks import block_version, split_block
from funnelstream.settings import KafkaConfig


@dataclass(frozen=True)
class Record:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] | None

    def documents(self) -> list[bytes]:
        """The record's documents: a block's, or the one of a plain record."""
        return split_block(self.value) if block_version(self.headers) is not None else [self.value]


def read_topic(
    kafka: KafkaConfig, topic: str, *, expect: int | None = None, timeout_s: float = 30
) -> list[tuple[bytes | None, bytes]]:
    """Every (key, value) on ``topic`` from the beginning; stops at ``expect`` messages or when idle."""
    return [(r.key, r.value) for r in read_records(kafka, topic, expect=expect, timeout_s=timeout_s, per_record=True)]


def read_events(
    kafka: KafkaConfig, topic: str, *, expect: int | None = None, timeout_s: float = 30
) -> list[tuple[bytes | None, bytes]]:
    """Every (key, document) on ``topic`` from the beginning, blocks split into their events (a
    block's key, None when it mixes devices, goes with each); stops at ``expect`` events or when
    idle. Events of one partition keep their order."""
    return [(r.key, d) for r in read_records(kafka, topic, expect=expect, timeout_s=timeout_s) for d in r.documents()]


def read_records(
    kafka: KafkaConfig, topic: str, *, expect: int | None = None, timeout_s: float = 30, per_record: bool = False
) -> list[Record]:
    """Every record on ``topic`` from the beginning; stops once ``expect`` documents are read (or
    records, with ``per_record``), or when idle at the end of every partition."""
    count: Callable[[Record], int] = (lambda _: 1) if per_record else (lambda r: len(r.documents()))
    return _read(kafka, topic, expect, timeout_s, count)


def _record(msg: Message) -> Record:
    headers = msg.headers()
    return Record(
        msg.partition() or 0,
        msg.offset() or 0,
        msg.key(),
        msg.value() or b"",
        [(str(pair[0]), _header_value(pair[1])) for pair in headers] if headers else None,
    )


def _header_value(value: object) -> bytes:
    return value if isinstance(value, bytes) else str(value or "").encode()


def _read(
    kafka: KafkaConfig, topic: str, expect: int | None, timeout_s: float, count: Callable[[Record], int]
) -> list[Record]:
    consumer = Consumer(
        {
            **kafka.client_config(),
            "group.id": f"test-ingest-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    metadata = consumer.list_topics(topic, timeout=10)
    partitions = list(metadata.topics[topic].partitions)
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    messages: list[Record] = []
    read = 0
    at_end: set[int] = set()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition() or 0)
                    if expect is None and len(at_end) == len(partitions):
                        break
                continue
            at_end.discard(msg.partition())
            record = _record(msg)
            messages.append(record)
            read += count(record)
            if expect is not None and read >= expect:
                break
    finally:
        consumer.close()
    return messages
