"""CollectorProducer: a request completes only when all of its messages are confirmed."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest
from confluent_kafka import KafkaError

from ingest.errors import Unavailable
from ingest.producer import CollectorProducer
from tests.ingest.conftest import FakeProducer, unit_settings


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


def test_a_request_on_another_event_loop_is_woken_there() -> None:
    fake = FakeProducer()
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
        waited = asyncio.run(asyncio.wait_for(holder["producer"].send([("t", None, b"x")]), 5))
        assert waited >= 0 and len(fake.delivered) == 1
    finally:
        stop.set()
        thread.join(5)


class SlowToQueue(FakeProducer):
    """Takes a while to queue each message, as librdkafka can under load."""

    def produce(self, topic: str, value: bytes, key: bytes | None, on_delivery: Callable[..., None]) -> None:
        time.sleep(0.05)
        super().produce(topic, value, key, on_delivery)


def test_a_request_on_another_loop_is_woken_though_its_poller_looked_before_it_was_queued() -> None:
    fake = SlowToQueue()
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
        asyncio.run(asyncio.wait_for(holder["producer"].send([("t", None, b"x"), ("t", None, b"y")]), 5))
        assert [m.value() for m in fake.delivered] == [b"x", b"y"]
    finally:
        stop.set()
        thread.join(5)
