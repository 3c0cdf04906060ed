"""The collector's Kafka producer: requests await the broker's confirmation of every message.

A request's events go out as blocks (``funnelstream.blocks``): one record per partition of the
events topic they go to, in order, marked with the block header; other topics get one record per
message. Delivery reports are polled on the event loop itself while anything is in flight.
Invariant: each request holds one :class:`PendingDelivery`, which completes once all its records
are confirmed or as soon as one has failed; the request is answered 202 only in the first case.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from confluent_kafka import KafkaError, Message

from funnelstream.blocks import BLOCK_HEADERS, Block, blocks_by_partition
from funnelstream.kafka import producer_config
from funnelstream.settings import KafkaConfig
from ingest.errors import Unavailable
from ingest.settings import IngestConfig

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.001
PARTITIONS_REFRESH_S = 30.0
"""How often the events topic's partition count is asked again once known (a second until then)."""


class ProducerLike(Protocol):
    """The part of ``confluent_kafka.Producer`` the collector uses; tests fake it at this boundary."""

    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        *,
        on_delivery: Callable[..., None],
        partition: int = -1,
        headers: list[tuple[str, str | bytes | None]] | None = None,
    ) -> None: ...
    def poll(self, timeout: float) -> int: ...
    def flush(self, timeout: float) -> int: ...
    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any: ...
    def __len__(self) -> int: ...


Message_ = tuple[str, bytes | None, bytes]
"""(topic, key, value)"""


def collector_producer_config(kafka: KafkaConfig, ingest: IngestConfig) -> dict[str, Any]:
    return producer_config(
        kafka,
        **{
            "linger.ms": ingest.linger_ms,
            # librdkafka's own deadline is the bound after which a request is answered 503: the
            # answer then reflects the broker's verdict, not a guess made before it.
            "message.timeout.ms": int(ingest.delivery_timeout_s * 1000),
            "queue.buffering.max.messages": ingest.producer_queue_max_messages,
            "queue.buffering.max.kbytes": 1_048_576,
            # librdkafka's own messages go through logging (JSON lines), served by poll().
            "logger": logging.getLogger("ingest.librdkafka"),
        },
    )


class PendingDelivery:
    """Delivery callback shared by the messages of one request; runs on the event loop's thread."""

    __slots__ = ("error", "expired", "fatal", "future", "remaining")

    def __init__(self, loop: asyncio.AbstractEventLoop, count: int) -> None:
        self.future: asyncio.Future[None] = loop.create_future()
        self.remaining = count
        self.error: str | None = None
        self.fatal = False
        self.expired = False

    def __call__(self, err: KafkaError | None, msg: Message) -> None:
        self.remaining -= 1
        if err is not None and self.error is None:
            self.error = f"{msg.topic()}: {err.str()}"
            self.fatal = err.fatal()
        if self.remaining == 0 or self.error is not None:
            self.settle()

    def settle(self) -> None:
        if not self.future.done():
            self.future.set_result(None)

    def expire(self) -> None:
        """Called on the request's own loop when the wait is over, whatever the poller's loop."""
        if not self.future.done():
            self.expired = True
            self.future.set_result(None)


class ForeignLoopDelivery(PendingDelivery):
    """For a request served on another event loop than the poller's (some test clients do that)."""

    __slots__ = ()

    def settle(self) -> None:
        self.future.get_loop().call_soon_threadsafe(super().settle)


class CollectorProducer:
    def __init__(self, producer: ProducerLike, config: IngestConfig) -> None:
        self.producer = producer
        self.queue_limit = config.producer_queue_max_messages
        self.retry_after_s = config.retry_after_s
        # librdkafka reports within message.timeout.ms; the margin only guards against a lost report.
        self.wait_timeout_s = config.delivery_timeout_s + 5.0
        self._in_flight = asyncio.Event()
        self._poller: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready_checked_at = 0.0
        self._ready = False
        self._failure_logged_at = 0.0
        self.fatal_error: str | None = None
        self._failures_unlogged = 0
        self.events_topic = config.events_topic
        self.metadata_timeout_s = config.readiness_timeout_s
        self.partitions: int | None = None
        """The events topic's partition count; None until known, and then events go out one
        plain record each, keyed by device, the partitioner choosing (the same partition)."""
        self._refresher: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start polling delivery reports and following the events topic's partition count; call
        from the running event loop (the lifespan)."""
        self._loop = asyncio.get_running_loop()
        self._poller = self._loop.create_task(self._poll_loop(), name="ingest-producer-poll")
        self._refresher = self._loop.create_task(self._refresh_loop(), name="ingest-producer-partitions")

    async def learn_partitions(self) -> int | None:
        """Ask the events topic's partition count now, off the event loop; the lifespan awaits it
        once so that a collector whose broker answers writes blocks from its first request."""
        return await asyncio.to_thread(self.refresh_partitions)

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(PARTITIONS_REFRESH_S if self.partitions else 1.0)
            try:
                await self.learn_partitions()
            except Exception:  # the next turn asks again; until then the last count holds
                log.exception("partition count refresh failed")

    def refresh_partitions(self) -> int | None:
        """The events topic's partition count from the producer's metadata (a blocking call: run it
        in a thread). A broker that does not answer leaves the last count; a topic without
        metadata (not created yet) sets None, so events go out as plain records."""
        try:
            metadata = self.producer.list_topics(self.events_topic, timeout=self.metadata_timeout_s)
        except Exception:
            return self.partitions
        topic = metadata.topics.get(self.events_topic) if getattr(metadata, "topics", None) else None
        partitions = getattr(topic, "partitions", None) if topic is not None else None
        if topic is None or getattr(topic, "error", None) is not None or not partitions:
            self.partitions = None
        else:
            self.partitions = len(partitions)
        return self.partitions

    async def _poll_loop(self) -> None:
        poll = self.producer.poll
        while True:
            try:
                poll(0)
            except Exception:  # a failing callback must not stop delivery reports for everyone else
                log.exception("producer poll failed")
            if len(self.producer):
                await asyncio.sleep(POLL_INTERVAL_S)
            else:
                self._in_flight.clear()
                await self._in_flight.wait()

    def queue_depth(self) -> int:
        return len(self.producer)

    async def send(self, messages: Sequence[Message_]) -> float:
        """Produce ``messages`` and wait until the broker confirmed all of them; returns seconds waited.

        Messages for the events topic become one block per partition once the partition count is
        known; a block's documents are those messages' values, in order.

        Raises :class:`Unavailable` when the queue cannot take them all, when one is refused, or
        when the broker stays away past the delivery timeout.
        """
        if not messages:
            return 0.0
        partitions = self.partitions
        blocks, others = self._blocks(messages, partitions) if partitions else ((), messages)
        count = len(blocks) + len(others)
        if len(self.producer) + count > self.queue_limit:
            raise Unavailable("producer queue is full", retry_after_s=self.retry_after_s)
        started = time.perf_counter()
        loop, poller_loop = asyncio.get_running_loop(), self._loop
        if poller_loop is None:
            raise RuntimeError("CollectorProducer.start() was not called")
        same_loop = loop is poller_loop
        pending = PendingDelivery(loop, count) if same_loop else ForeignLoopDelivery(loop, count)
        produce = self.producer.produce
        queued = 0
        try:
            if blocks:
                topic = self.events_topic
                for block in blocks:
                    produce(
                        topic,
                        block.value,
                        block.key,
                        on_delivery=pending,
                        partition=block.partition,
                        headers=BLOCK_HEADERS,
                    )
                    queued += 1
            for topic, key, value in others:
                produce(topic, value, key, on_delivery=pending)
                queued += 1
        except BufferError:
            # What was queued may still be stored; the client's retry carries the same event_ids
            # and the stream processors' dedup collapses it.
            pending.remaining -= count - queued
            raise Unavailable("producer queue is full", retry_after_s=self.retry_after_s) from None
        finally:
            # Woken only once the messages are queued: a poller on another loop's thread woken
            # before would find nothing in flight, go back to sleep, and leave this request waiting.
            if same_loop:
                self._in_flight.set()
            else:
                poller_loop.call_soon_threadsafe(self._in_flight.set)
        # A bare timer rather than asyncio.wait_for, which costs a second future and a callback chain
        # per request; the delivery future is this request's alone.
        timer = loop.call_later(self.wait_timeout_s, pending.expire)
        try:
            await pending.future
        finally:
            timer.cancel()
        if pending.expired:
            raise Unavailable("broker did not confirm in time", retry_after_s=self.retry_after_s)
        if pending.error is not None:
            if pending.fatal and self.fatal_error is None:
                # An idempotent producer cannot recover from a fatal error; /healthz fails so the
                # process is replaced, and every request until then is answered 503.
                self.fatal_error = pending.error
                log.critical("producer failed fatally", extra={"reason": pending.error})
            self._log_failure(pending.error)
            raise Unavailable(f"broker did not store the events: {pending.error}", retry_after_s=self.retry_after_s)
        return time.perf_counter() - started

    def _blocks(self, messages: Sequence[Message_], partitions: int) -> tuple[list[Block], list[Message_]]:
        """The events topic's messages as blocks per partition, in order; every other message as is."""
        events_topic = self.events_topic
        documents: list[tuple[bytes, bytes]] = []
        others: list[Message_] = []
        for message in messages:
            topic, key, value = message
            # A keyless event has no partition of its own: the partitioner places it, as before.
            if topic == events_topic and key is not None:
                documents.append((key, value))
            else:
                others.append(message)
        return (blocks_by_partition(documents, partitions) if documents else []), others

    def _log_failure(self, reason: str) -> None:
        # During an outage every request fails the same way: one line a second says it all.
        self._failures_unlogged += 1
        now = time.monotonic()
        if now - self._failure_logged_at >= 1.0:
            log.warning("delivery failed", extra={"reason": reason, "failed_requests": self._failures_unlogged})
            self._failure_logged_at = now
            self._failures_unlogged = 0

    def ready(self, timeout_s: float) -> bool:
        """Whether the cluster answers a metadata request; cached for a second to spare the broker."""
        now = time.monotonic()
        if now - self._ready_checked_at < 1.0:
            return self._ready
        try:
            metadata = self.producer.list_topics(timeout=timeout_s)
            self._ready = bool(metadata.brokers)
        except Exception:
            self._ready = False
        self._ready_checked_at = time.monotonic()
        return self._ready

    async def close(self, timeout_s: float) -> int:
        """Stop polling and flush; returns how many messages were still unconfirmed."""
        for task in (self._refresher, self._poller):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        # On the loop's thread, so delivery callbacks may complete request futures directly;
        # by now the server has stopped taking requests, and blocking the loop costs nothing.
        remaining = self.producer.flush(timeout_s)
        if remaining:
            log.error("producer closed with unconfirmed messages", extra={"remaining": remaining})
        return remaining
