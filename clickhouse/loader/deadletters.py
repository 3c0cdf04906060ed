"""The dead-letter step: each rejected message to the DLQ topic, acknowledged before the commit."""

from __future__ import annotations

from collections.abc import Iterable

from confluent_kafka import Producer

from clickhouse.loader.messages import Rejected
from funnelstream.deadletter import dead_letter
from funnelstream.kafka import DeliveryReport, flush_or_raise, produce


def send_dead_letters(producer: Producer, topic: str, rejected: Iterable[Rejected]) -> int:
    """Produce a dead letter per rejected message and wait for every acknowledgement; returns
    how many were sent. A delivery failure raises, so the batch is not committed."""
    report = DeliveryReport()
    sent = 0
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
        produce(producer, topic, letter.encode(), item.message.key, report)
        sent += 1
    flush_or_raise(producer, report, timeout_s=30)
    return sent
