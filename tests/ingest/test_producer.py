"""CollectorProducer: a request completes only when all of its messages are confirmed."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest
from confluent_kafka import KafkaError

from funnelstream.blocks import BLOCK_HEADERS, partition_for, split_block
from ingest.errors import Unavailable
from ingest.producer import CollectorProducer
from tests.helpers.collector_fakes import FakeProducer, unit_settings

RAW = unit_settings().ingest.events_topic
DLQ = unit_settings().ingest.dlq_topic


def test_send_returns_after_every_message_is_confirmed() -> None:
    fake = FakeProducer()

    async def scenario() -> None:
        producer = CollectorProducer(fake, unit_settings().ingest)
        producer.start()
        await producer.send([("t", b"k", b"1"), ("t", b"k", b"2")])
        assert [m.value() for m in fake.delivered] == [b"1", b"2"]
        fake.fail_with = KafkaError(KafkaError._MSG_TIMED_OUT)
        with pytest.raises(Unavailable, match="did not store"):
            await producer.send([("t", b"k", b"3")])
        assert await producer.close(1.0) == 0

    asyncio.run(scenario())
    assert fake.flushed


def send_from_another_loop(fake: FakeProducer, messages: list[tuple[str, bytes | None, bytes]]) -> float:
    """Send on this thread's event loop while the producer polls on another thread's loop, as a
    test client serving requests on a loop of its own does."""
    started = threading.Event()
    stop = threading.Event()
    holder: dict[str, CollectorProducer] = {}

    async def poller_side() -> None:
        holder["producer"] = CollectorProducer(fake, unit_settings().ingest)
        holder["producer"].start()
        started.set()
        await asyncio.to_thread(stop.wait)
        await holder["producer"].close(1.0)

    thread = threading.Thread(target=asyncio.run, args=(poller_side(),))
    thread.start()
    started.wait(5)
    try:
        return asyncio.run(asyncio.wait_for(holder["producer"].send(messages), 5))
    finally:
        stop.set()
        thread.join(5)


def test_a_request_on_another_event_loop_is_woken_there() -> None:
    fake = FakeProducer()
    waited = send_from_another_loop(fake, [("t", None, b"x")])
    assert waited >= 0 and len(fake.delivered) == 1


class SlowToQueue(FakeProducer):
    """Takes a while to queue each message, as librdkafka can under load."""

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
        time.sleep(0.05)
        super().produce(topic, value, key, on_delivery=on_delivery, partition=partition, headers=headers)


def test_a_request_on_another_loop_is_woken_though_its_poller_looked_before_it_was_queued() -> None:
    fake = SlowToQueue()
    send_from_another_loop(fake, [("t", None, b"x"), ("t", None, b"y")])
    assert [m.value() for m in fake.delivered] == [b"x", b"y"]


class CountingMetadata(FakeProducer):
    """Counts metadata requests, which must never be made per request."""

    def __init__(self) -> None:
        super().__init__()
        self.metadata_requests = 0

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> object:
        self.metadata_requests += 1
        return super().list_topics(topic, timeout)


def test_a_requests_events_go_out_as_one_block_per_partition_in_order_other_topics_as_they_are() -> None:
    fake = CountingMetadata()
    fake.partitions = 3
    devices = [f"device-{n}".encode() for n in range(12)]
    messages = [(RAW, devices[n % 12], b'{"n":%d}' % n) for n in range(60)]
    messages.insert(5, (DLQ, b"device-0", b"letter"))

    async def scenario() -> None:
        producer = CollectorProducer(fake, unit_settings().ingest)
        producer.start()
        assert await producer.learn_partitions() == 3
        asked = fake.metadata_requests
        await producer.send(messages)
        await producer.send([(RAW, b"device-1", b'{"n":60}')])
        assert fake.metadata_requests == asked
        await producer.close(1.0)

    asyncio.run(scenario())
    [letter] = fake.records(DLQ)
    assert letter.value() == b"letter" and letter.headers() is None and letter.partition() == -1
    blocks = fake.records(RAW)
    assert all(b.headers() == BLOCK_HEADERS for b in blocks)
    first_request = blocks[:-1]
    # One block per partition the request's devices go to, each keyless as it mixes devices.
    assert sorted(b.partition() for b in first_request) == sorted({partition_for(d, 3) for d in devices})
    assert all(b.key() is None for b in first_request)
    for block in first_request:
        expected = [v for t, k, v in messages if t == RAW and partition_for(k, 3) == block.partition()]
        assert split_block(block.value()) == expected
    # A block of one device's events carries that device as its key.
    assert blocks[-1].key() == b"device-1" and blocks[-1].partition() == partition_for(b"device-1", 3)


def test_events_go_out_one_plain_record_each_while_the_partition_count_is_unknown() -> None:
    fake = FakeProducer()
    fake.partitions = None

    async def scenario() -> None:
        producer = CollectorProducer(fake, unit_settings().ingest)
        producer.start()
        assert await producer.learn_partitions() is None
        await producer.send([(RAW, b"a", b"1"), (RAW, b"b", b"2"), (RAW, b"a", b"3")])
        await producer.close(1.0)

    asyncio.run(scenario())
    records = fake.records(RAW)
    assert [(m.key(), m.value(), m.partition(), m.headers()) for m in records] == [
        (b"a", b"1", -1, None),
        (b"b", b"2", -1, None),
        (b"a", b"3", -1, None),
    ]


def test_a_broker_away_keeps_the_last_partition_count_and_a_missing_topic_forgets_it() -> None:
    fake = FakeProducer()
    fake.partitions = 6
    producer = CollectorProducer(fake, unit_settings().ingest)
    assert producer.refresh_partitions() == 6
    fake.reachable = False
    assert producer.refresh_partitions() == 6
    fake.reachable = True
    fake.partitions = None
    assert producer.refresh_partitions() is None


def test_one_refused_block_fails_the_whole_request() -> None:
    fake = FakeProducer()
    fake.partitions = 2

    async def scenario() -> None:
        producer = CollectorProducer(fake, unit_settings().ingest)
        producer.start()
        await producer.learn_partitions()
        fake.fail_with = KafkaError(KafkaError._MSG_TIMED_OUT)
        with pytest.raises(Unavailable, match="did not store"):
            await producer.send([(RAW, f"d{n}".encode(), b"{}") for n in range(20)])
        await producer.close(1.0)

    asyncio.run(scenario())
    assert fake.delivered == []
