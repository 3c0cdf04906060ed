"""The worker's bookkeeping, in memory: which offset is safe to commit while jobs run out of order, and what a
failed commit does."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from funnelstream.kafka import CommitFailed
from inference_service.settings import InferenceSettings
from inference_service.worker import InferenceWorker, OffsetTracker


def test_commit_stops_below_the_lowest_job_still_running() -> None:
    tracker = OffsetTracker()
    for offset in (10, 11, 12):
        tracker.started(0, offset)
    tracker.started(1, 5)

    tracker.finished(0, 11)
    tracker.finished(0, 12)
    assert tracker.committable() == {0: 10, 1: 5}
    tracker.mark_committed({0: 10, 1: 5})
    assert tracker.committable() == {}, "nothing new is safe while offset 10 runs"

    tracker.finished(0, 10)
    assert tracker.committable() == {0: 13}
    assert tracker.busy({1}) and not tracker.busy({0})


def test_a_revoked_partition_is_forgotten() -> None:
    tracker = OffsetTracker()
    tracker.started(3, 100)
    tracker.forget({3})
    assert tracker.committable() == {} and not tracker.busy()


class FakeConsumer:
    def __init__(self, error: KafkaError | None = None) -> None:
        self.error = error
        self.commits: list[list[TopicPartition]] = []

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> None:
        if self.error is not None:
            raise KafkaException(self.error)
        self.commits.append(offsets)


def _worker_with(consumer: FakeConsumer) -> InferenceWorker:
    worker = InferenceWorker(InferenceSettings(), processor=None)  # type: ignore[arg-type]
    worker._consumer = consumer  # type: ignore[assignment]
    worker.tracker.started(0, 7)
    worker.tracker.finished(0, 7)
    return worker


def test_a_commit_a_later_one_covers_is_counted_and_retried() -> None:
    consumer = FakeConsumer(KafkaError(KafkaError.REBALANCE_IN_PROGRESS))
    worker = _worker_with(consumer)
    worker._commit()
    assert worker.commit_failures == 1
    assert worker.tracker.committable() == {0: 8}, "still to commit"
    consumer.error = None
    worker._commit()
    assert [(tp.partition, tp.offset) for tp in consumer.commits[0]] == [(0, 8)]
    assert worker.tracker.committable() == {}


def test_a_commit_no_later_one_can_make_good_stops_the_worker() -> None:
    worker = _worker_with(FakeConsumer(KafkaError(KafkaError.GROUP_AUTHORIZATION_FAILED)))
    with pytest.raises(CommitFailed):
        worker._commit()
