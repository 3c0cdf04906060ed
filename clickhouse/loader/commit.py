"""The commit step: each partition's offset after the highest message of a batch.

Commit failures follow the one policy of ``funnelstream.kafka.commit``: a failure a later commit
covers returns False (a replay at worst, and replayed rows collapse on each table's key); any
other raises ``CommitFailed`` and stops the loader.
"""

from __future__ import annotations

from confluent_kafka import Consumer, TopicPartition

from clickhouse.loader.messages import Message
from funnelstream.kafka import commit


def next_offsets(batch: list[Message]) -> list[TopicPartition]:
    highest: dict[tuple[str, int], int] = {}
    for message in batch:
        key = (message.topic, message.partition)
        highest[key] = max(highest.get(key, -1), message.offset)
    return [TopicPartition(topic, partition, offset + 1) for (topic, partition), offset in highest.items()]


def commit_batch(consumer: Consumer, batch: list[Message]) -> bool:
    """True once committed; False when it failed and the next commit covers it."""
    return commit(consumer, next_offsets(batch))
