"""The ground's Kafka factory and its one commit-failure policy, without a broker."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from funnelstream.errors import FunnelstreamError
from funnelstream.kafka import (
    COVERED_COMMIT_ERRORS,
    CommitFailed,
    commit,
    commit_failure_is_covered,
    consumer_config,
    private_group,
)
from funnelstream.settings import KafkaConfig


class FakeConsumer:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.commits: list[list[TopicPartition]] = []

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> Any:
        assert asynchronous is False
        if self.error is not None:
            raise self.error
        self.commits.append(offsets)
        return offsets


OFFSETS = [TopicPartition("events.raw", 0, 10)]


def test_a_consumer_never_commits_on_its_own_and_overrides_win() -> None:
    config = consumer_config(KafkaConfig(), "group-a", **{"auto.offset.reset": "latest", "fetch.max.bytes": 1})
    assert config["group.id"] == "group-a"
    assert config["enable.auto.commit"] is False
    assert config["auto.offset.reset"] == "latest"
    assert config["fetch.max.bytes"] == 1
    assert config["bootstrap.servers"] == KafkaConfig().bootstrap_servers
    assert consumer_config(KafkaConfig(), "g")["auto.offset.reset"] == "earliest"


def test_private_groups_are_never_shared() -> None:
    first, second = private_group("reader"), private_group("reader")
    assert first.startswith("reader-")
    assert first != second


def test_a_successful_commit_says_so() -> None:
    consumer = FakeConsumer()
    assert commit(consumer, OFFSETS) is True  # type: ignore[arg-type]
    assert consumer.commits == [OFFSETS]


@pytest.mark.parametrize(
    "code",
    [
        KafkaError._WAIT_COORD,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.NOT_COORDINATOR,
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError._NO_OFFSET,
        KafkaError._MAX_POLL_EXCEEDED,
    ],
)
def test_a_failure_the_next_commit_covers_is_reported_not_raised(code: int) -> None:
    consumer = FakeConsumer(KafkaException(KafkaError(code)))
    assert commit(consumer, OFFSETS) is False  # type: ignore[arg-type]


def test_any_retriable_error_is_covered() -> None:
    error = KafkaError(KafkaError.NOT_ENOUGH_REPLICAS, retriable=True)
    assert error.code() not in COVERED_COMMIT_ERRORS
    assert commit_failure_is_covered(error)
    assert commit(FakeConsumer(KafkaException(error)), OFFSETS) is False  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "error",
    [
        KafkaError(KafkaError.GROUP_AUTHORIZATION_FAILED),
        KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED),
        KafkaError(KafkaError.FENCED_INSTANCE_ID),
        KafkaError(KafkaError._UNKNOWN_PARTITION),
        KafkaError(KafkaError.OFFSET_METADATA_TOO_LARGE),
        KafkaError(KafkaError._STATE),
        # Fatal wins over a code that is otherwise covered.
        KafkaError(KafkaError._TRANSPORT, fatal=True),
    ],
)
def test_a_failure_no_commit_makes_good_raises(error: KafkaError) -> None:
    with pytest.raises(CommitFailed) as raised:
        commit(FakeConsumer(KafkaException(error)), OFFSETS)  # type: ignore[arg-type]
    assert raised.value.code == error.code()
    assert isinstance(raised.value, FunnelstreamError)


def test_a_kafka_exception_without_an_error_raises() -> None:
    with pytest.raises(CommitFailed):
        commit(FakeConsumer(KafkaException("no error object")), OFFSETS)  # type: ignore[arg-type]
    assert not commit_failure_is_covered(None)
