"""Reading a topic back from a real broker, from the beginning: what a service under test produced."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, KafkaError, TopicPartition

from funnelstream.settings import KafkaConfig


def read_topic(
    kafka: KafkaConfig, topic: str, *, expect: int | None = None, timeout_s: float = 30
) -> list[tuple[bytes | None, bytes]]:
    """Every (key, value) on ``topic`` from the beginning; stops at ``expect`` messages or when idle."""
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
    messages: list[tuple[bytes | None, bytes]] = []
    at_end: set[int] = set()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error() is not None:
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition())
                    if expect is None and len(at_end) == len(partitions):
                        break
                continue
            at_end.discard(msg.partition())
            messages.append((msg.key(), msg.value() or b""))
            if expect is not None and len(messages) >= expect:
                break
    finally:
        consumer.close()
    return messages
