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
from tests.helpers.collector_fakes import FakeProducer, unit_settings


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

    def produce(self, topic: str, value: bytes, key: bytes | None, on_delivery: Callable[..., None]) -> None:
        time.sleep(0.05)
        super().produce(topic, value, key, on_delivery)


def test_a_request_on_another_loop_is_woken_though_its_poller_looked_before_it_was_queued() -> None:
    fake = SlowToQueue()
    send_from_another_loop(fake, [("t", None, b"x"), ("t", None, b"y")])
    assert [m.value() for m in fake.delivered] == [b"x", b"y"]
