"""Fakes at the collector's Kafka and object-store boundaries, and the unit-test settings (keys, origins) they share."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from confluent_kafka import KafkaError

from funnelstream.blocks import block_version, split_block
from funnelstream.objectstore import ObjectNotFound
from ingest.settings import IngestSettings, hash_write_key

WEB_KEY = "web-test-key"
LIMITED_KEY = "limited-test-key"
WEB_ORIGIN = "https://edit.example.com"
OTHER_ORIGIN = "https://partner.example.org"


@dataclass
class FakeMessage:
    _topic: str
    _key: bytes | None
    _value: bytes
    _partition: int = -1
    """-1: the producer left the choice to the partitioner."""
    _headers: list[tuple[str, bytes]] | None = field(default=None)

    def topic(self) -> str:
        return self._topic

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes:
        return self._value

    def partition(self) -> int:
        return self._partition

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers

    def offset(self) -> int:
        return 0


@dataclass
class FakeTopic:
    partitions: dict[int, object]
    error: KafkaError | None = None


class FakeMetadata:
    def __init__(self, brokers: int, topics: dict[str, FakeTopic] | None = None) -> None:
        self.brokers = {i: object() for i in range(brokers)}
        self.topics = topics or {}


class FakeProducer:
    """Stands in for confluent_kafka.Producer: keeps what it was given, reports deliveries on poll.

    ``fail_with`` makes every delivery report an error, as librdkafka does when the broker stays
    away past message.timeout.ms; ``queue_full`` makes produce raise BufferError. Every topic asked
    for has ``partitions`` partitions (None: no topic metadata, as for a topic not created yet).
    ``delivered`` holds the records; :meth:`on` splits the collector's blocks into their events.
    """

    def __init__(self) -> None:
        self.delivered: list[FakeMessage] = []
        self._pending: list[tuple[FakeMessage, Callable[..., None]]] = []
        self._lock = threading.Lock()
        self.fail_with: KafkaError | None = None
        self.queue_full = False
        self.hold = False
        self.reachable = True
        self.flushed = False
        self.partitions: int | None = 4

    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        *,
        on_delivery: Callable[..., None],
        partition: int = -1,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        if self.queue_full:
            raise BufferError("Local: Queue full")
        with self._lock:
            self._pending.append((FakeMessage(topic, key, value, partition, headers), on_delivery))

    def poll(self, timeout: float) -> int:
        if self.hold:
            time.sleep(min(timeout, 0.01))
            return 0
        with self._lock:
            pending, self._pending = self._pending, []
        for message, callback in pending:
            if self.fail_with is None:
                self.delivered.append(message)
            callback(self.fail_with, message)
        if not pending:
            time.sleep(min(timeout, 0.002))
        return len(pending)

    def flush(self, timeout: float) -> int:
        self.flushed = True
        self.hold = False
        self.poll(0)
        return len(self._pending)

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> FakeMetadata:
        if not self.reachable:
            raise RuntimeError("KafkaException: Local: Broker transport failure")
        if topic is None or self.partitions is None:
            return FakeMetadata(1)
        return FakeMetadata(1, {topic: FakeTopic({p: object() for p in range(self.partitions)})})

    def __len__(self) -> int:
        return len(self._pending)

    def records(self, topic: str) -> list[FakeMessage]:
        """The records delivered to ``topic``, blocks as they were produced."""
        return [m for m in self.delivered if m.topic() == topic]

    def on(self, topic: str) -> list[FakeMessage]:
        """One message per event (or other document) delivered to ``topic``: each block split into
        its documents, which keep the block's key, partition and headers."""
        messages: list[FakeMessage] = []
        for record in self.records(topic):
            if block_version(record.headers()) is None:
                messages.append(record)
            else:
                messages.extend(replace(record, _value=document) for document in split_block(record.value()))
        return messages


def unit_settings(**ingest: Any) -> IngestSettings:
    sources = {
        "web": {
            "write_key_sha256": [hash_write_key(WEB_KEY)],
            "cors_origins": [WEB_ORIGIN],
            "rate_per_s": 1_000_000,
            "burst": 1_000_000,
        },
        "partner": {
            "write_key_sha256": [hash_write_key(LIMITED_KEY)],
            "cors_origins": [OTHER_ORIGIN],
            "rate_per_s": 1,
            # The least a source may hold: one full batch.
            "burst": 500,
        },
    }
    config: dict[str, Any] = {
        "sources": sources,
        "results_consumer": False,
        "delivery_timeout_s": 1.0,
        "experiments_enabled": False,
        **ingest,
    }
    return IngestSettings(_env_file=None, ingest=config)  # type: ignore[call-arg]


@dataclass
class FakeStat:
    size: int
    content_type: str
    etag: str


class FakeObjectStore:
    """Stands in for the collector's object store, which only stats uploads: ``objects`` are what was posted."""

    def __init__(self) -> None:
        self.objects: dict[str, FakeStat] = {}

    def stat(self, key: str) -> FakeStat:
        if key not in self.objects:
            raise ObjectNotFound(key)
        return self.objects[key]
