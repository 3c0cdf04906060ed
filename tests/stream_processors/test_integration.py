"""Workers on the real Kafka, checked against an answer computed independently in pandas.

The raw events come as the collector writes them (blocks of a request's events per partition,
under the block header), except in the rename test, whose records are single events without it.

At-least-once: after a ``kill -9`` the output may repeat events that were produced but whose
offsets and state were not yet committed. What must be identical to an uninterrupted run is the
de-duplicated output (each distinct ``event_id`` with its session) and the final summary of every
session (its highest version); that is what these tests compare.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest
from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from funnelstream.blocks import BLOCK_HEADERS, Block, join_documents, split_block
from funnelstream.contract import FUNNEL_STEP_OF, EventType
from funnelstream.deadletter import decode
from funnelstream.kafka import DeliveryReport, flush_or_raise, make_consumer, make_producer, private_group, produce
from ops.bench.stream import faust_topics, produce_all
from ops.journeys import RawStream, raw_blocks, raw_stream
from stream_processors.dimensions import SEED_FILE

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PARTITIONS = 4
GAP_MS = 30 * 60 * 1000
POISON = 10


@dataclass
class Topics:
    raw: str
    enriched: str
    sessions: str
    dlq: str
    tools: str
    inferences: str


@dataclass
class Stack:
    kafka: Any
    topics: Topics
    app_id: str
    data_dir: Path
    logs: Path
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    tracker_requests: bool = True
    """Whether the raw blocks include trackers' requests (see :meth:`env`)."""

    def env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("FS_STREAM__")}
        env |= {
            "FS_KAFKA__BOOTSTRAP_SERVERS": self.kafka.bootstrap_servers,
            "FS_KAFKA__PARTITIONS": str(PARTITIONS),
            "FS_LOG_LEVEL": "WARNING",
            "FS_STREAM__APP_ID": self.app_id,
            "FS_STREAM__INPUT_TOPIC": self.topics.raw,
            "FS_STREAM__ENRICHED_TOPIC": self.topics.enriched,
            "FS_STREAM__SESSIONS_TOPIC": self.topics.sessions,
            "FS_STREAM__DLQ_TOPIC": self.topics.dlq,
            "FS_STREAM__TOOLS_TOPIC": self.topics.tools,
            "FS_STREAM__INFERENCES_TOPIC": self.topics.inferences,
            "FS_STREAM__DATA_DIR": str(self.data_dir),
            "FS_STREAM__TIMER_INTERVAL_S": "1",
            "FS_STREAM__CONSUMER_SESSION_TIMEOUT_S": "8",
        }
        if self.tracker_requests:
            # A tracker's request holds its device's events until it is full or a minute old, so
            # some events arrive behind their partition's newest by more than the default
            # lateness; the reference (sorted, no late events) is the answer for one that covers it.
            env["FS_STREAM__ALLOWED_LATENESS_S"] = "3600"
        return env

    def dims_load(self, path: Path) -> None:
        subprocess.run(
            [sys.executable, "-m", "stream_processors", "dims", "load", str(path)],
            env=self.env(),
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start_worker(self) -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        log = open(self.logs / f"worker-{len(self.workers)}.log", "ab")  # noqa: SIM115 -- owned by the child
        worker = subprocess.Popen(
            [sys.executable, "-m", "stream_processors", "stream", "worker", "--web-port", str(port)],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.workers.append(worker)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert worker.poll() is None, (self.logs / f"worker-{len(self.workers) - 1}.log").read_text()[-3000:]
            try:
                get_json(port, "/healthz")
                return worker, port
            except OSError:
                time.sleep(0.3)
        raise AssertionError("worker did not answer /healthz")

    def stop_all(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in self.workers:
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_json(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return json.loads(response.read())


@pytest.fixture
def stack(kafka: Any, tmp_path: Path) -> Iterator[Stack]:
    run = uuid.uuid4().hex[:10]
    topics = Topics(
        raw=f"test.{run}.events.raw",
        enriched=f"test.{run}.events.enriched",
        sessions=f"test.{run}.sessions",
        dlq=f"test.{run}.events.dlq",
        tools=f"test.{run}.dimensions.tools",
        inferences=f"test.{run}.dimensions.inferences",
    )
    compacted = {topics.sessions, topics.tools, topics.inferences}
    admin = AdminClient(kafka.client_config())
    names = list(vars(topics).values())
    new = [
        NewTopic(
            name,
            num_partitions=PARTITIONS,
            replication_factor=1,
            config={"cleanup.policy": "compact"} if name in compacted else {},
        )
        for name in names
    ]
    for future in admin.create_topics(new).values():
        future.result()
    (tmp_path / "logs").mkdir()
    result = Stack(kafka, topics, f"test-stream-{run}", tmp_path / "state", tmp_path / "logs")
    result.dims_load(SEED_FILE)
    yield result
    result.stop_all()
    existing = set(admin.list_topics(timeout=10).topics)
    doomed = [name for name in [*names, *faust_topics(result.app_id)] if name in existing]
    for future in admin.delete_topics(doomed).values():
        future.result()


class Reader:
    """Reads a topic from the beginning, outside any consumer group."""

    def __init__(self, kafka: Any, topic: str) -> None:
        self.consumer = make_consumer(kafka, private_group("reader"))
        partitions = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        self.messages: list[tuple[bytes | None, bytes]] = []

    def read_until(self, done: Callable[[], bool], timeout_s: float, quiet_s: float = 0.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not done():
            assert time.monotonic() < deadline, f"timed out with {len(self.messages)} messages"
            self._poll(0.5)
        quiet_until = time.monotonic() + quiet_s
        while time.monotonic() < quiet_until:
            if self._poll(0.3):
                quiet_until = time.monotonic() + quiet_s

    def _poll(self, timeout: float) -> int:
        got = 0
        for message in self.consumer.consume(num_messages=10_000, timeout=timeout):
            if message.error() is None:
                self.messages.append((message.key(), message.value() or b""))
                got += 1
        return got

    def close(self) -> None:
        self.consumer.close()


class EnrichedReader(Reader):
    def __init__(self, kafka: Any, topic: str) -> None:
        super().__init__(kafka, topic)
        self.session_of: dict[str, str] = {}
        self.rows: dict[str, dict[str, Any]] = {}
        self.count = 0

    def _poll(self, timeout: float) -> int:
        before = len(self.messages)
        got = super()._poll(timeout)
        for _, value in self.messages[before:]:
            for document in split_block(value):
                row = orjson.loads(document)
                self.count += 1
                previous = self.session_of.setdefault(row["event_id"], row["session_id"])
                assert previous == row["session_id"], f"event {row['event_id']} repeated with another session"
                self.rows.setdefault(row["event_id"], row)
        return got


def final_sessions(messages: list[tuple[bytes | None, bytes]]) -> dict[str, dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for _, value in messages:
        summary = orjson.loads(value)
        current = latest.get(summary["session_id"])
        if current is None or current["version"] < summary["version"]:
            latest[summary["session_id"]] = summary
        elif current["version"] == summary["version"]:
            assert {k: v for k, v in current.items() if k != "updated_at"} == {
                k: v for k, v in summary.items() if k != "updated_at"
            }, "one version of a session with two contents"
    return latest


def comparable(sessions: dict[str, dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    return {
        sid: (
            s["anonymous_id"],
            s["started_at"],
            s["last_event_at"],
            s["event_count"],
            s["late_event_count"],
            s["deepest_step"],
            tuple(sorted(s["input_ids"])),
            s["closed"],
            s["version"],
        )
        for sid, s in sessions.items()
        if s["event_count"] > 0
    }


def reference_sessions(workload: RawStream) -> tuple[set[frozenset[str]], dict[frozenset[str], tuple[Any, ...]]]:
    """Sessions of the distinct events computed on sorted data: split after more than 30 min."""
    frame = pd.DataFrame(
        {
            "event_id": [e["event_id"] for e in workload.events],
            "anonymous_id": [e["anonymous_id"] for e in workload.events],
            "ts": pd.to_datetime([e["event_ts"] for e in workload.events], utc=True, format="ISO8601"),
            "step": [int(FUNNEL_STEP_OF.get(EventType(e["event_type"]), 0)) for e in workload.events],
            "input_id": [e.get("input_id") for e in workload.events],
        }
    ).sort_values(["anonymous_id", "ts"])
    gap = frame.groupby("anonymous_id")["ts"].diff() > pd.Timedelta(milliseconds=GAP_MS)
    new_device = frame["anonymous_id"] != frame["anonymous_id"].shift()
    frame["session"] = (gap | new_device).cumsum()
    groups: set[frozenset[str]] = set()
    facts: dict[frozenset[str], tuple[Any, ...]] = {}
    for _, session in frame.groupby("session"):
        ids = frozenset(session["event_id"])
        groups.add(ids)
        facts[ids] = (
            # Sessions keep event time in milliseconds.
            session["ts"].min().floor("ms"),
            session["ts"].max().floor("ms"),
            len(session),
            int(session["step"].max()),
            frozenset(session["input_id"].dropna()),
        )
    return groups, facts


def check_against_reference(workload: RawStream, enriched: EnrichedReader, sessions: dict[str, dict[str, Any]]) -> None:
    assert set(enriched.session_of) == {e["event_id"] for e in workload.events}
    groups, facts = reference_sessions(workload)
    produced: dict[str, set[str]] = {}
    for event_id, session_id in enriched.session_of.items():
        produced.setdefault(session_id, set()).add(event_id)
    assert {frozenset(ids) for ids in produced.values()} == groups
    live = {sid: s for sid, s in sessions.items() if s["event_count"] > 0}
    assert set(live) == set(produced)
    for session_id, ids in produced.items():
        start, last, count, deepest, inputs = facts[frozenset(ids)]
        summary = live[session_id]
        assert pd.Timestamp(summary["started_at"]) == start
        assert pd.Timestamp(summary["last_event_at"]) == last
        assert (summary["event_count"], summary["deepest_step"]) == (count, deepest)
        assert set(summary["input_ids"]) == inputs
        assert summary["late_event_count"] == 0


def produce_blocks(config: Any, topic: str, blocks: list[Block]) -> None:
    """Write blocks as the collector does: to their partition, under the block header."""
    producer = make_producer(config, **{"linger.ms": 20})
    report = DeliveryReport()
    for block in blocks:
        produce(producer, topic, block.value, block.key, report, headers=list(BLOCK_HEADERS), partition=block.partition)
    flush_or_raise(producer, report, 120)


def event_ids(blocks: list[Block]) -> set[str]:
    return {orjson.loads(document)["event_id"] for block in blocks for document in split_block(block.value)}


def poisoned(blocks: list[Block]) -> list[Block]:
    """A bad document in the middle of some blocks, between good ones."""
    blocks = list(blocks)
    bad = b'{"event_type": "image_uploaded"'
    many = [index for index, block in enumerate(blocks) if block.count >= 2]
    for index in many[:: max(len(many) // POISON, 1)][:POISON]:
        block = blocks[index]
        documents = split_block(block.value)
        documents.insert(len(documents) // 2, bad)
        blocks[index] = Block(block.partition, block.key, join_documents(documents), block.count + 1)
    return blocks


@pytest.fixture(scope="module")
def workload() -> RawStream:
    return raw_stream(100_000, 20_000, seed=11)


def run_to_completion(stack: Stack, workload: RawStream, port: int) -> tuple[EnrichedReader, dict[str, Any]]:
    enriched = EnrichedReader(stack.kafka, stack.topics.enriched)
    enriched.read_until(lambda: len(enriched.session_of) >= len(workload.events), timeout_s=240, quiet_s=1)
    # The timer closes what the final watermark allows; wait until the worker is idle.
    previous = None
    for _ in range(40):
        state = get_json(port, "/healthz")
        if previous is not None and state == previous:
            break
        previous = state
        time.sleep(1.5)
    sessions = Reader(stack.kafka, stack.topics.sessions)
    sessions.read_until(lambda: True, timeout_s=10, quiet_s=2)
    final = final_sessions(sessions.messages)
    sessions.close()
    enriched.close()
    return enriched, final


RESULTS: dict[str, Any] = {}


def sdk_blocks(workload: RawStream) -> list[Block]:
    """The workload in server SDKs' requests of 500 events of many devices: blocks without a key,
    in the order the events arrived, so that the idle timer closes sessions at the default
    lateness (the two tests that compare their answers use these)."""
    return raw_blocks(workload, PARTITIONS, sdk_share=1.0)


def test_each_event_once_sessions_match_pandas_and_poison_goes_to_the_dlq(stack: Stack, workload: RawStream) -> None:
    stack.tracker_requests = False
    produce_blocks(stack.kafka, stack.topics.raw, poisoned(sdk_blocks(workload)))
    _, port = stack.start_worker()
    enriched, sessions = run_to_completion(stack, workload, port)
    assert enriched.count == len(workload.events), "an uninterrupted run writes each event once"
    check_against_reference(workload, enriched, sessions)
    assert any(s["closed"] for s in sessions.values()) and any(not s["closed"] for s in sessions.values())
    tools = {row["tool_id"]: row.get("tool_name") for row in enriched.rows.values() if "tool_id" in row}
    assert tools == {1: "rectangle", 2: "brush", 3: "segmentation", 42: None}
    assert all(row["unknown_dimension"] == (row.get("tool_id") == 42) for row in enriched.rows.values())

    dlq = Reader(stack.kafka, stack.topics.dlq)
    dlq.read_until(lambda: len(dlq.messages) >= POISON, timeout_s=30)
    letters = [decode(value) for _, value in dlq.messages]
    dlq.close()
    assert len(letters) == POISON
    assert all(letter.stage == "stream" and letter.topic == stack.topics.raw for letter in letters)
    assert all(letter.partition is not None and letter.offset is not None for letter in letters)
    assert all("invalid JSON" in letter.reason for letter in letters)
    health = get_json(port, "/healthz")
    assert health["duplicates"] == workload.duplicates and health["dead_letters"] == POISON
    RESULTS["uninterrupted"] = (enriched.session_of, comparable(sessions))


def test_kill_9_and_restart_give_the_uninterrupted_answer(stack: Stack, workload: RawStream) -> None:
    stack.tracker_requests = False
    produce_blocks(stack.kafka, stack.topics.raw, sdk_blocks(workload))
    worker, _ = stack.start_worker()
    enriched = EnrichedReader(stack.kafka, stack.topics.enriched)
    enriched.read_until(lambda: len(enriched.session_of) >= len(workload.events) // 2, timeout_s=180)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    enriched.close()
    _, port = stack.start_worker()
    enriched, sessions = run_to_completion(stack, workload, port)
    check_against_reference(workload, enriched, sessions)
    if "uninterrupted" in RESULTS:
        session_of, final = RESULTS["uninterrupted"]
        assert enriched.session_of == session_of
        assert comparable(sessions) == final


def test_a_second_worker_takes_over_partitions_mid_stream_and_the_answer_holds(stack: Stack) -> None:
    small = raw_stream(20_000, 4_000, seed=5)
    blocks = raw_blocks(small, PARTITIONS)
    half = len(blocks) // 2
    first_half = event_ids(blocks[:half])
    _, port_a = stack.start_worker()
    produce_blocks(stack.kafka, stack.topics.raw, blocks[:half])
    enriched = EnrichedReader(stack.kafka, stack.topics.enriched)
    enriched.read_until(lambda: len(enriched.session_of) >= len(first_half), timeout_s=120)
    enriched.close()
    # Sessions open on every partition now; the second worker must take some of them over
    # from the changelog, and the first must keep the rest.
    _, port_b = stack.start_worker()
    deadline = time.monotonic() + 60
    while True:
        assigned_a = set(get_json(port_a, "/healthz")["assigned"])
        assigned_b = set(get_json(port_b, "/healthz")["assigned"])
        if assigned_a and assigned_b and assigned_a | assigned_b == set(range(PARTITIONS)):
            break
        assert time.monotonic() < deadline, (assigned_a, assigned_b)
        time.sleep(0.5)
    assert not assigned_a & assigned_b
    produce_blocks(stack.kafka, stack.topics.raw, blocks[half:])
    enriched, sessions = run_to_completion(stack, small, port_a)
    check_against_reference(small, enriched, sessions)
    assert get_json(port_b, "/healthz")["accepted"] > 0


def test_workers_joining_and_leaving_mid_stream_lose_nothing(stack: Stack) -> None:
    # Partitions move while records are in flight, several times, and some stay with the first
    # worker through every rebalance: its consumer can then skip a range of offsets (a fetch made
    # before the seek to the committed offset), which the worker must notice and read again.
    small = raw_stream(20_000, 4_000, seed=5)
    produce_blocks(stack.kafka, stack.topics.raw, raw_blocks(small, PARTITIONS))
    _, port_a = stack.start_worker()
    enriched = EnrichedReader(stack.kafka, stack.topics.enriched)
    enriched.read_until(lambda: len(enriched.session_of) >= 2_000, timeout_s=120)
    worker_b, _ = stack.start_worker()
    enriched.read_until(lambda: len(enriched.session_of) >= 6_000, timeout_s=120)
    stack.start_worker()
    enriched.read_until(lambda: len(enriched.session_of) >= 10_000, timeout_s=120)
    worker_b.send_signal(signal.SIGTERM)
    enriched.close()
    enriched, sessions = run_to_completion(stack, small, port_a)
    check_against_reference(small, enriched, sessions)
    assert worker_b.wait(30) == 0


def test_a_rename_through_dims_load_applies_from_the_next_events(stack: Stack, tmp_path: Path) -> None:
    before = raw_stream(300, 50, seed=1)
    after = raw_stream(300, 50, seed=2)
    worker, port = stack.start_worker()
    produce_all(stack.kafka, stack.topics.raw, before.messages)
    enriched = EnrichedReader(stack.kafka, stack.topics.enriched)
    enriched.read_until(lambda: len(enriched.rows) >= len(before.events), timeout_s=180)
    renamed = json.loads(SEED_FILE.read_text())
    renamed["tools"][0]["tool_name"] = "box"
    (tmp_path / "renamed.json").write_text(json.dumps(renamed))
    stack.dims_load(tmp_path / "renamed.json")
    deadline = time.monotonic() + 30
    while get_json(port, "/dimensions")["tools"]["1"]["name"] != "box":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    produce_all(stack.kafka, stack.topics.raw, after.messages)
    total = len(before.events) + len(after.events)
    enriched.read_until(lambda: len(enriched.rows) >= total, timeout_s=180)
    enriched.close()
    names = {event_id: row.get("tool_name") for event_id, row in enriched.rows.items() if row.get("tool_id") == 1}
    before_ids = {e["event_id"] for e in before.events}
    assert {name for event_id, name in names.items() if event_id in before_ids} == {"rectangle"}
    assert {name for event_id, name in names.items() if event_id not in before_ids} == {"box"}
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0, "SIGTERM drains and exits cleanly"
