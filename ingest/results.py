"""Job outcomes for GET /v1/jobs/{job_id}: every collector follows all of inference.results.

Each instance must see every result, whichever instance accepted the job, so the consumer assigns
itself every partition instead of joining a shared group, and commits nothing: on start it reads
back ``results_lookback_s``. The cache is bounded; the oldest results leave first.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable

from confluent_kafka import OFFSET_END, Consumer, KafkaError, TopicPartition
from pydantic import ValidationError

from funnelstream.contract import InferenceResult
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
    """decode → cache; a message that is not a result is logged and counted, then skipped."""

    def __init__(
        self,
        kafka: KafkaConfig,
        topic: str,
        cache: ResultCache,
        *,
        lookback_s: int,
        on_undecodable: Callable[[], None] = lambda: None,
    ) -> None:
        self.topic = topic
        self.cache = cache
        self.lookback_s = lookback_s
        self.on_undecodable = on_undecodable
        self._consumer = Consumer(
            {
                **kafka.client_config(),
                # Never used to join a group (assign, no commits); librdkafka requires one.
                "group.id": f"ingest-results-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "latest",
            }
        )
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
        # No message since then: start at the end of the partition.
        self._consumer.assign(
            [TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_END) for tp in offsets]
        )
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self._assign():
                    break
            except Exception as exc:  # broker away at start: keep trying, the API answers "queued" meanwhile
                log.warning("cannot assign inference.results yet", extra={"reason": str(exc)})
            self._stop.wait(2.0)
        while not self._stop.is_set():
            msg = self._consumer.poll(0.5)
            if msg is None:
                continue
            error = msg.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("inference.results consumer error", extra={"reason": error.str()})
                continue
            try:
                self.cache.put(InferenceResult.model_validate_json(msg.value() or b""))
            except ValidationError as exc:
                self.on_undecodable()
                log.warning(
                    "undecodable inference result",
                    extra={"partition": msg.partition(), "offset": msg.offset(), "reason": str(exc)[:500]},
                )

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._consumer.close()
