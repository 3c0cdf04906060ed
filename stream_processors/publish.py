"""``funnelstream dims load``: publish a dimension file to the compacted dimension topics."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from funnelstream.kafka import DeliveryReport, flush_or_raise, make_producer, produce
from stream_processors.dimensions import DimensionFile, dimension_records, read_dimension_file
from stream_processors.settings import StreamSettings


@dataclass(frozen=True, slots=True)
class Published:
    tools: int
    inferences: int


def load_dimension_file(path: Path) -> DimensionFile:
    """The whole file is validated before anything is published: a bad file publishes nothing."""
    return read_dimension_file(path, updated_at=datetime.now(UTC))


def publish_dimensions(file: DimensionFile, settings: StreamSettings, timeout_s: float = 30.0) -> Published:
    topics = {"tools": settings.stream.tools_topic, "inferences": settings.stream.inferences_topic}
    producer = make_producer(settings.kafka)
    report = DeliveryReport()
    for kind, key, value in dimension_records(file):
        produce(producer, topics[kind], value, key, report)
    flush_or_raise(producer, report, timeout_s)
    return Published(tools=len(file.tools), inferences=len(file.inferences))
