"""Keeps a :class:`DimensionStore` in step with the compacted dimension topics.

Every worker needs every tool and inference, whatever partitions of ``events.raw`` it owns, so
the dimension topics are read outside the consumer group: all partitions, from the beginning,
for as long as the worker runs. A record published by ``funnelstream dims load`` is applied
within one poll interval and changes enrichment from the next batch on.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from funnelstream.kafka import make_consumer, private_group
from funnelstream.settings import KafkaConfig
from stream_processors.dimensions import DimensionStore

log = logging.getLogger(__name__)
POLL_S = 0.2


class DimensionFeed:
    def __init__(self, config: KafkaConfig, store: DimensionStore, tools_topic: str, inferences_topic: str) -> None:
        self.config = config
        self.store = store
        self.topics = {tools_topic: store.apply_tool, inferences_topic: store.apply_inference}
        self.caught_up = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="dimension-feed", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _consumer(self) -> Consumer:
        # Never committed: every start reads the compacted topics from the beginning.
        return make_consumer(self.config, private_group("dimension-feed"), **{"enable.partition.eof": True})

    def _run(self) -> None:
        try:
            consumer = self._consumer()
        except Exception as exc:
            self.error = exc
            self.caught_up.set()
            return
        try:
            metadata = consumer.list_topics(timeout=10)
            partitions: list[TopicPartition] = []
            for topic in self.topics:
                described = metadata.topics.get(topic)
                if described is None or described.error is not None:
                    raise RuntimeError(f"dimension topic {topic} does not exist; run `funnelstream setup`")
                partitions += [TopicPartition(topic, p, OFFSET_BEGINNING) for p in described.partitions]
            pending: set[tuple[str, int]] = set()
            for tp in partitions:
                low, high = consumer.get_watermark_offsets(tp, timeout=10)
                if high > low:
                    pending.add((tp.topic, tp.partition))
            consumer.assign(partitions)
            if not pending:
                self.caught_up.set()
            while not self._stop.is_set():
                for message in consumer.consume(num_messages=500, timeout=POLL_S):
                    self._handle(message, pending)
        except Exception as exc:
            log.exception("dimension feed stopped")
            self.error = exc
            self.caught_up.set()
        finally:
            consumer.close()

    def _handle(self, message: Any, pending: set[tuple[str, int]]) -> None:
        error = message.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                pending.discard((message.topic(), message.partition()))
                if not pending:
                    self.caught_up.set()
                return
            log.warning("dimension feed: %s", error.str())
            return
        self.topics[message.topic()](message.key(), message.value())
