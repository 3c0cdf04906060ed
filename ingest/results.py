"""Job outcomes for GET /v1/jobs/{job_id}: every collector follows all of inference.results.

Each instance must see every result, whichever instance accepted the job, so the consumer assigns
itself every partition instead of joining a shared group, and commits nothing: on start it reads
back ``results_lookback_s``. The cache is bounded; the oldest results leave first.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition
from pydantic import ValidationError

from funnelstream.contract import InferenceResult
from funnelstream.kafka import consumer_config, private_group
from funnelstream.settings import KafkaConfig

log = logging.getLogger(__name__)


class ResultCache:
    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._items: OrderedDict[str, InferenceResult] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, result: InferenceResult) -> None:
        key = str(result.job_id)
        with self._lock:
            self._items[key] = result
            self._items.move_to_end(key)
            while len(self._items) > self.max_size:
                self._items.popitem(last=False)

    def get(self, job_id: str) -> InferenceResult | None:
        with self._lock:
            return self._items.get(job_id)

    def __len__(self) -> int:
        return len(self._items)


class ResultFollower:
    """decode → cache; a message that is not a result is logged and counted, then skipped.

    librdkafka's consumer can stop fetching assigned partitions after a broker restart and never
    resume until it is recreated. Collectors would then answer
    "queued" for every job finished since, so the follower keeps its own position per partition
    and, while it receives nothing, compares it with the partitions' high watermarks: behind on
    two checks in a row with nothing received in between, it recreates the consumer at its own
    positions. Nothing is skipped and nothing read twice by that.
    """

    def __init__(
        self,
        kafka: KafkaConfig,
        topic: str,
        cache: ResultCache,
        *,
        lookback_s: int,
        on_undecodable: Callable[[], None] = lambda: None,
        stall_check_s: float = 10.0,
        consumer_factory: Callable[[dict[str, Any]], Any] = Consumer,
    ) -> None:
        self.topic = topic
        self.cache = cache
        self.lookback_s = lookback_s
        self.on_undecodable = on_undecodable
        self.stall_check_s = stall_check_s
        self.reconnects = 0
        # Never used to join a group: it assigns itself partitions and commits nothing.
        self._consumer_config = consumer_config(
            kafka,
            private_group("ingest-results"),
            **{"enable.auto.offset.store": False, "auto.offset.reset": "latest"},
        )
        self._consumer_factory = consumer_factory
        self._consumer = consumer_factory(self._consumer_config)
        # The next offset to read, per partition: absolute, so the consumer can be recreated there.
        self._next_offsets: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ingest-results", daemon=True)
        self._thread.start()

    def _assign(self) -> bool:
        metadata = self._consumer.list_topics(self.topic, timeout=5)
        topic = metadata.topics.get(self.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            return False
        since_ms = int((time.time() - self.lookback_s) * 1000)
        wanted = [TopicPartition(self.topic, p, since_ms) for p in sorted(topic.partitions)]
        offsets = self._consumer.offsets_for_times(wanted, timeout=10)
        next_offsets = {}
        for tp in offsets:
            if tp.offset >= 0:
                next_offsets[tp.partition] = tp.offset
            else:
                # No message since then: start at the partition's current end.
                _, high = self._consumer.get_watermark_offsets(TopicPartition(self.topic, tp.partition), timeout=10)
                next_offsets[tp.partition] = high
        self._next_offsets = next_offsets
        self._assign_at_next_offsets()
        return True

    def _assign_at_next_offsets(self) -> None:
        self._consumer.assign([TopicPartition(self.topic, p, offset) for p, offset in self._next_offsets.items()])

    def _behind(self) -> list[int]:
        """Partitions holding results past this follower's position; raises while Kafka is away."""
        behind = []
        for partition, next_offset in self._next_offsets.items():
            _, high = self._consumer.get_watermark_offsets(
                TopicPartition(self.topic, partition), timeout=5, cached=False
            )
            if high > next_offset:
                behind.append(partition)
        return behind

    def _reconnect(self, behind: list[int]) -> None:
        log.warning(
            "inference.results consumer stalled behind the partitions' ends; recreating it",
            extra={"partitions": behind, "next_offsets": dict(self._next_offsets)},
        )
        self._consumer.close()
        self._consumer = self._consumer_factory(self._consumer_config)
        self._assign_at_next_offsets()
        self.reconnects += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self._assign():
                    break
            except Exception as exc:  # broker away at start: keep trying, the API answers "queued" meanwhile
                log.warning("cannot assign inference.results yet", extra={"reason": str(exc)})
            self._stop.wait(2.0)
        idle_since = time.monotonic()
        behind_before: list[int] = []
        while not self._stop.is_set():
            msg = self._consumer.poll(0.5)
            if msg is None:
                if time.monotonic() - idle_since >= self.stall_check_s:
                    idle_since = time.monotonic()
                    behind_before = self._check_stall(behind_before)
                continue
            idle_since = time.monotonic()
            behind_before = []
            error = msg.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("inference.results consumer error", extra={"reason": error.str()})
                continue
            self._next_offsets[msg.partition()] = msg.offset() + 1
            try:
                self.cache.put(InferenceResult.model_validate_json(msg.value() or b""))
            except ValidationError as exc:
                self.on_undecodable()
                log.warning(
                    "undecodable inference result",
                    extra={"partition": msg.partition(), "offset": msg.offset(), "reason": str(exc)[:500]},
                )

    def _check_stall(self, behind_before: list[int]) -> list[int]:
        """One stall check after ``stall_check_s`` without a message; returns what is behind now."""
        try:
            behind = self._behind()
        except Exception as exc:  # Kafka away: nothing to compare with, and nothing to fetch either
            log.info("cannot compare inference.results positions", extra={"reason": str(exc)})
            return []
        # Behind once may be a result produced a moment ago; behind twice with nothing received
        # in between is a consumer that stopped fetching.
        if behind and set(behind) & set(behind_before):
            self._reconnect(behind)
            return []
        return behind

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._consumer.close()
