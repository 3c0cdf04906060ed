"""The collector's follower of inference.results, against a consumer faked at librdkafka's API."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from confluent_kafka import TopicPartition

from funnelstream.contract import InferenceResult, JobKind, JobStatus
from funnelstream.settings import KafkaConfig
from ingest.results import ResultCache, ResultFollower

TOPIC = "inference.results"


class Partition:
    """One partition's log, shared by every consumer the follower creates."""

    def __init__(self) -> None:
        self.values: list[bytes] = []
        self.lock = threading.Lock()

    def append(self, value: bytes) -> None:
        with self.lock:
            self.values.append(value)


class Message:
    def __init__(self, offset: int, value: bytes) -> None:
        self._offset, self._value = offset, value

    def error(self) -> None:
        return None

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return self._value


class FakeConsumer:
    """Delivers what the partition holds from its assigned offset, unless ``stuck``: then it
    never delivers again, like a librdkafka consumer whose fetcher stopped after a broker restart."""

    def __init__(self, log: Partition, stuck: bool) -> None:
        self.log = log
        self.stuck = stuck
        self.position: int | None = None
        self.assigned: list[tuple[int, int]] = []
        self.closed = False

    def list_topics(self, topic: str, timeout: float) -> Any:
        return SimpleNamespace(topics={topic: SimpleNamespace(error=None, partitions={0: None})})

    def offsets_for_times(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, -1) for tp in partitions]

    def get_watermark_offsets(self, partition: TopicPartition, timeout: float, cached: bool = False) -> tuple[int, int]:
        with self.log.lock:
            return 0, len(self.log.values)

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.assigned = [(tp.partition, tp.offset) for tp in partitions]
        self.position = partitions[0].offset

    def poll(self, timeout: float) -> Message | None:
        with self.log.lock:
            if not self.stuck and self.position is not None and self.position < len(self.log.values):
                message = Message(self.position, self.log.values[self.position])
                self.position += 1
                return message
        time.sleep(0.005)
        return None

    def close(self) -> None:
        self.closed = True


def result_bytes() -> tuple[str, bytes]:
    job_id = uuid.uuid4()
    result = InferenceResult(
        job_id=job_id,
        kind=JobKind.RESTORE,
        input_id=uuid.uuid4(),
        status=JobStatus.SUCCEEDED,
        result_url=f"results/2026/11/27/{job_id}.png",
        completed_at=datetime.now(UTC),
    )
    return str(job_id), result.model_dump_json().encode()


def follow(log: Partition, stuck_consumers: int) -> tuple[ResultFollower, ResultCache, list[FakeConsumer]]:
    consumers: list[FakeConsumer] = []

    def factory(_config: dict[str, Any]) -> FakeConsumer:
        consumers.append(FakeConsumer(log, stuck=len(consumers) < stuck_consumers))
        return consumers[-1]

    cache = ResultCache(100)
    follower = ResultFollower(
        KafkaConfig(), TOPIC, cache, lookback_s=3600, stall_check_s=0.05, consumer_factory=factory
    )
    follower.start()
    return follower, cache, consumers


def wait_for(condition: Any, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_consumer_that_stopped_fetching_is_recreated_where_it_stood_and_nothing_is_missed() -> None:
    log = Partition()
    earlier_id, earlier = result_bytes()
    log.append(earlier)  # before the follower starts: not read back, the lookback found nothing newer
    follower, cache, consumers = follow(log, stuck_consumers=1)
    try:
        wait_for(lambda: consumers and consumers[0].assigned)
        assert consumers[0].assigned == [(0, 1)]  # the partition's end, as an absolute offset
        job_ids = []
        for _ in range(3):
            job_id, value = result_bytes()
            log.append(value)
            job_ids.append(job_id)
        wait_for(lambda: all(cache.get(job_id) is not None for job_id in job_ids))
        assert follower.reconnects == 1
        assert consumers[0].closed
        assert consumers[1].assigned == [(0, 1)]
        assert cache.get(earlier_id) is None
    finally:
        follower.close()


def test_a_consumer_that_keeps_up_is_left_alone() -> None:
    log = Partition()
    follower, cache, consumers = follow(log, stuck_consumers=0)
    try:
        wait_for(lambda: consumers and consumers[0].assigned)
        for _ in range(5):
            job_id, value = result_bytes()
            log.append(value)
            wait_for(lambda job_id=job_id: cache.get(job_id) is not None)
            time.sleep(0.12)  # idle past two stall checks, fully caught up
        assert follower.reconnects == 0
        assert len(consumers) == 1
    finally:
        follower.close()
