"""``make bench-stream``: throughput of one stream worker against two ceilings, on the local Kafka.

The input is a raw stream as the collector writes it from realistic requests (``raw_blocks``):
blocks of a tracker's 5-20 events of one device and of an SDK's 500 events, one record per target
partition, with the collector's block header. Each run uses its own topics and app id and deletes
them at the end. The worker runs pinned to one core; its rate is enriched events (rows, counted in
the blocks it writes) over the span of their broker timestamps. The ceilings: a bare confluent-kafka
consume-to-produce passthrough of the same block records (counting events), and a Faust agent with
the worker's loop and batches that does nothing, on single-event records (the old shape) of the
same stream on a topic of its own. The last line of the output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import faust
from confluent_kafka import KafkaError
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

from funnelstream.blocks import BLOCK_HEADERS, Block, block_version, split_block
from funnelstream.kafka import (
    DeliveryReport,
    flush_or_raise,
    make_admin,
    make_consumer,
    make_producer,
    private_group,
    produce,
    wait_for_broker,
)
from funnelstream.settings import KafkaConfig
from ops.journeys import TRACKER_BATCH_EVENTS, raw_blocks, raw_stream
from stream_processors.app import reading_options
from stream_processors.dimensions import SEED_FILE
from stream_processors.settings import StreamSettings
from stream_processors.worker import use_worker_loop


def create_topics(config: KafkaConfig, names: dict[str, bool], partitions: int) -> None:
    admin = make_admin(config)
    new = [
        NewTopic(
            name, num_partitions=partitions, replication_factor=1, config={"cleanup.policy": "compact"} if c else {}
        )
        for name, c in names.items()
    ]
    for future in admin.create_topics(new).values():
        future.result()


def delete_topics(config: KafkaConfig, names: list[str]) -> None:
    admin = make_admin(config)
    existing = set(admin.list_topics(timeout=10).topics)
    doomed = [name for name in names if name in existing]
    if doomed:
        for future in admin.delete_topics(doomed).values():
            try:
                future.result()
            except Exception as exc:
                print(f"could not delete {exc}", file=sys.stderr)


def faust_topics(app_id: str) -> list[str]:
    """The topics Faust creates for an app: the table's changelog and the assignor's."""
    return [f"{app_id}-state-changelog", f"{app_id}-__assignor-__leader"]


def produce_all(config: KafkaConfig, topic: str, messages: Sequence[tuple[bytes, bytes]]) -> None:
    """Single-event records, the partition chosen by the producer from the key."""
    producer = make_producer(config, **{"linger.ms": 20})
    report = DeliveryReport()
    for key, value in messages:
        produce(producer, topic, value, key, report)
    flush_or_raise(producer, report, 120)


def produce_blocks(config: KafkaConfig, topic: str, blocks: Sequence[Block]) -> None:
    """Block records as the collector writes them: its partition, its key (None for several
    devices) and the header that marks a block it validated."""
    producer = make_producer(config, **{"linger.ms": 20})
    report = DeliveryReport()
    for block in blocks:
        produce(producer, topic, block.value, block.key, report, headers=list(BLOCK_HEADERS), partition=block.partition)
    flush_or_raise(producer, report, 120)


def block_mix(blocks: Sequence[Block]) -> dict[str, Any]:
    """What the input records hold: their number, events per record, and the share of events in
    blocks larger than any tracker request (an SDK request's share of one partition)."""
    counts = [block.count for block in blocks]
    events = sum(counts)
    largest_tracker = TRACKER_BATCH_EVENTS[1]
    return {
        "records": len(counts),
        "events": events,
        "events_per_record_median": statistics.median(counts) if counts else None,
        "events_per_record_mean": round(events / len(counts), 2) if counts else None,
        "sdk_sized_event_share": round(sum(c for c in counts if c > largest_tracker) / events, 3) if events else None,
    }


def record_rows(headers: Any, value: bytes) -> int:
    """Documents in one record: a block (with the header) splits into its lines; a record without
    the header holds one."""
    return len(split_block(value)) if block_version(headers) is not None else 1


def rows_per_s(records: Sequence[tuple[int, int]]) -> float:
    """Rows per second from ``(broker timestamp ms, rows)`` of every record written: the rows of
    the records stamped after the first millisecond over the span of the stamps (the first
    records' rows were made before the span began)."""
    if not records:
        raise ValueError("no records")
    first = min(stamp for stamp, _ in records)
    last = max(stamp for stamp, _ in records)
    if last == first:
        raise ValueError("every record has the same timestamp: no span to measure")
    return sum(rows for stamp, rows in records if stamp > first) / ((last - first) / 1000)


def worker_env(settings: StreamSettings, overrides: dict[str, str]) -> dict[str, str]:
    # FS_STREAM__* tuning (batch size, windows) passes through; topics and app id are the run's own.
    env = dict(os.environ)
    env["FS_KAFKA__BOOTSTRAP_SERVERS"] = settings.kafka.bootstrap_servers
    env["FS_KAFKA__PARTITIONS"] = str(settings.kafka.partitions)
    env["FS_LOG_LEVEL"] = "WARNING"
    env.update(overrides)
    return env


def start_worker(env: dict[str, str], web_port: int, log_path: str, cpu: int | None = None) -> subprocess.Popen[bytes]:
    def pin() -> None:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})

    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "stream_processors", "stream", "worker", "--web-port", str(web_port)],
            env=env,
            preexec_fn=pin,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def health(web_port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/healthz", timeout=5) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def consume_until(
    config: KafkaConfig,
    topic: str,
    expected: int,
    timeout_s: float,
    alive: Callable[[], bool] = lambda: True,
    idle_s: float = 60.0,
) -> list[tuple[int, int]]:
    """(broker timestamp ms, rows) of each record until ``expected`` rows came, blocks counted by
    their rows; gives up after ``timeout_s``, or ``idle_s`` without a record (a worker that dead-
    letters or drops its input writes nothing more)."""
    consumer = make_consumer(config, private_group("bench"))
    consumer.subscribe([topic])
    seen: list[tuple[int, int]] = []
    rows = 0
    deadline = time.monotonic() + timeout_s
    quiet_since = time.monotonic()
    try:
        while rows < expected and time.monotonic() < deadline and alive():
            if time.monotonic() - quiet_since > idle_s:
                break
            for message in consumer.consume(num_messages=5000, timeout=0.5):
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(error.str())
                    continue
                count = record_rows(message.headers(), message.value() or b"")
                seen.append((message.timestamp()[1], count))
                rows += count
                quiet_since = time.monotonic()
    finally:
        consumer.close()
    return seen


def passthrough(config: KafkaConfig, source: str, target: str, expected: int, timeout_s: float) -> float:
    """events/s of a bare consume -> produce loop over ``source``: each record goes on as it is
    (key, headers, partition), its events counted from the blocks."""
    consumer = make_consumer(config, private_group("bench-passthrough"))
    producer = make_producer(config)
    report = DeliveryReport()
    consumer.subscribe([source])
    started: float | None = None
    moved = 0
    deadline = time.monotonic() + timeout_s
    try:
        while moved < expected and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=5000, timeout=0.5):
                if message.error() is not None:
                    continue
                if started is None:
                    started = time.perf_counter()
                value = message.value() or b""
                headers = message.headers()
                partition = message.partition()
                # confluent-kafka gives a consumed record its partition and its headers as a list.
                assert partition is not None and not isinstance(headers, dict)
                produce(producer, target, value, message.key(), report, headers, partition)
                moved += record_rows(headers, value)
            producer.poll(0)
        flush_or_raise(producer, report, 60)
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    if started is None or moved < expected:
        raise RuntimeError(f"passthrough moved {moved} of {expected}")
    return moved / (time.perf_counter() - started)


BARE_RATE_PREFIX = "BARE AGENT EVENTS/S "


def run_bare_agent(topic: str, expected: int, app_id: str, data_dir: str) -> None:
    """Faust's own limit on this machine: an agent that takes the input in the worker's batches,
    with the worker's loop and fetch settings, and does nothing else. Prints its rate and exits."""
    use_worker_loop()
    settings = StreamSettings()
    stream = settings.stream
    app = faust.App(app_id, datadir=data_dir, web_enabled=False, **reading_options(settings))
    source = app.topic(topic, key_type=bytes, value_type=bytes, value_serializer="raw")
    taken = 0
    first: float | None = None

    @app.agent(source, name="bare")
    async def bare(events: Any) -> None:
        nonlocal taken, first
        async for batch in events.take_events(stream.batch_size, within=stream.batch_within_s):
            first = time.perf_counter() if first is None else first
            taken += len(batch)
            if taken >= expected:
                print(f"{BARE_RATE_PREFIX}{taken / (time.perf_counter() - first):.0f}", flush=True)
                # The figure is out; Faust's orderly shutdown takes seconds and measures nothing.
                os._exit(0)

    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


def bare_agent_rate(
    env: dict[str, str], topic: str, expected: int, app_id: str, data_dir: Path, cpu: int | None
) -> float:
    def pin() -> None:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})

    command = [sys.executable, "-m", "ops.bench.stream", "--bare-agent", topic, "--expected", str(expected),
               "--bare-app-id", app_id, "--bare-data-dir", str(data_dir)]  # fmt: skip
    completed = subprocess.run(command, env=env, preexec_fn=pin, capture_output=True, text=True, timeout=300)
    # Faust's worker sends what is printed through its logging, so the line may come on either stream.
    for line in (completed.stdout + completed.stderr).splitlines():
        if BARE_RATE_PREFIX in line:
            return float(line.split(BARE_RATE_PREFIX, 1)[1].split()[0])
    raise RuntimeError(f"the bare agent gave no figure: {completed.stderr[-1000:]}")


def rss_mb(pid: int) -> tuple[float, float]:
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            fields[name] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def wait_healthy(port: int, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"worker exited with {process.returncode}")
        try:
            health(port)
            return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError("worker did not answer /healthz")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    # 600,000 events over 125,000 devices: every device comes (about 5 events each, where 200,000
    # over 100,000 left 63,000 devices with 2), so a tracker's block holds 5 or more events, and
    # about 118,000 devices have an event within the session gap and lateness of the end.
    # More events per device costs the generator about 10 GB per million (raw_stream, raw_blocks).
    parser.add_argument("--events", type=int, default=600_000)
    parser.add_argument("--devices", type=int, default=125_000)
    parser.add_argument(
        "--faust-records", type=int, default=300_000,
        help="single-event records the bare Faust agent takes (its rate is steady well before)",
    )  # fmt: skip
    parser.add_argument(
        "--tracker-flush-s",
        type=float,
        default=None,
        help="a tracker request also leaves this long (event time) after its first event; "
        "default none: every tracker request holds 5-20 events, the shape the issue asks for",
    )
    parser.add_argument(
        "--allowed-lateness-s",
        type=float,
        default=3600.0,
        help="the worker's FS_STREAM__ALLOWED_LATENESS_S: full tracker requests hold a device's events back "
        "by the minutes between them, which the default lateness (5 min) would count late",
    )
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--web-port", type=int, default=6099)
    parser.add_argument("--cpu", type=int, default=1, help="core the worker is pinned to; -1 for none")
    parser.add_argument("--bare-agent", metavar="TOPIC", help=argparse.SUPPRESS)
    parser.add_argument("--expected", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--bare-app-id", default="", help=argparse.SUPPRESS)
    parser.add_argument("--bare-data-dir", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bare_agent:
        run_bare_agent(args.bare_agent, args.expected, args.bare_app_id, args.bare_data_dir)
        return 0

    settings = StreamSettings()
    config = settings.kafka
    wait_for_broker(config)
    run = uuid.uuid4().hex[:8]
    app_id = f"bench-stream-{run}"
    bare_app_id = f"bench-bare-{run}"
    scratch = Path(tempfile.mkdtemp(prefix=f"{app_id}-"))
    topics = {
        "raw": f"bench.{run}.events.raw",
        "enriched": f"bench.{run}.events.enriched",
        "sessions": f"bench.{run}.sessions",
        "dlq": f"bench.{run}.events.dlq",
        "tools": f"bench.{run}.dimensions.tools",
        "inferences": f"bench.{run}.dimensions.inferences",
        "ceiling": f"bench.{run}.passthrough",
        "single": f"bench.{run}.events.raw.single",
    }
    compacted = {"sessions", "tools", "inferences"}
    create_topics(config, {name: kind in compacted for kind, name in topics.items()}, args.partitions)
    worker: subprocess.Popen[bytes] | None = None
    try:
        print(f"generating {args.events} events over {args.devices} devices", file=sys.stderr)
        workload = raw_stream(args.events, args.devices)
        distinct, duplicates, messages = len(workload.events), workload.duplicates, len(workload.messages)
        # The events' dicts are most of the workload's memory and nothing below reads them.
        workload.events.clear()
        blocks = raw_blocks(workload, args.partitions, tracker_flush_s=args.tracker_flush_s)
        single = workload.messages[: args.faust_records]
        workload.messages.clear()
        mix = block_mix(blocks)
        print(f"as the collector writes them: {json.dumps(mix)}", file=sys.stderr)
        env_settings = StreamSettings(kafka=config.model_copy(update={"partitions": args.partitions}))
        env = worker_env(
            env_settings,
            {
                "FS_STREAM__APP_ID": app_id,
                "FS_STREAM__INPUT_TOPIC": topics["raw"],
                "FS_STREAM__ENRICHED_TOPIC": topics["enriched"],
                "FS_STREAM__SESSIONS_TOPIC": topics["sessions"],
                "FS_STREAM__DLQ_TOPIC": topics["dlq"],
                "FS_STREAM__TOOLS_TOPIC": topics["tools"],
                "FS_STREAM__INFERENCES_TOPIC": topics["inferences"],
                "FS_STREAM__DATA_DIR": str(scratch / "state"),
                "FS_STREAM__ALLOWED_LATENESS_S": str(args.allowed_lateness_s),
            },
        )
        subprocess.run([sys.executable, "-m", "stream_processors", "dims", "load", str(SEED_FILE)], env=env, check=True)
        produce_blocks(config, topics["raw"], blocks)
        del blocks
        produce_all(config, topics["single"], single)
        print(f"produced {mix['records']} block records, {len(single)} single-event records; passthrough ceiling",
              file=sys.stderr)  # fmt: skip
        ceiling = passthrough(config, topics["raw"], topics["ceiling"], mix["events"], 300)

        log_path = str(scratch / "worker.log")
        print(f"starting the worker; its log: {log_path}", file=sys.stderr)
        worker = start_worker(env, args.web_port, log_path, None if args.cpu < 0 else args.cpu)
        wait_healthy(args.web_port, worker, 120)
        began = time.monotonic()
        running = worker
        out = consume_until(config, topics["enriched"], distinct, 600, lambda: running.poll() is None)
        enriched = sum(rows for _, rows in out)
        if enriched < distinct:
            counters = health(args.web_port) if worker.poll() is None else "worker exited"
            raise RuntimeError(f"only {enriched} of {distinct} enriched events; worker: {counters}; see {log_path}")
        elapsed = time.monotonic() - began
        time.sleep(1)
        state = health(args.web_port)
        rss, peak = rss_mb(worker.pid)
        result = {
            "events": distinct,
            "messages": messages,
            "duplicates": duplicates,
            "mix": mix,
            "tracker_flush_s": args.tracker_flush_s,
            "allowed_lateness_s": args.allowed_lateness_s,
            "enriched": enriched,
            "enriched_records": len(out),
            "events_per_s": round(rows_per_s(out)),
            "wall_s_including_startup": round(elapsed, 2),
            "ceiling_events_per_s": round(ceiling),
            "rss_mb": round(rss, 1),
            "peak_rss_mb": round(peak, 1),
            "open_sessions": state.get("open_sessions"),
            "dead_letters": state.get("dead_letters"),
            # What open_sessions depends on besides the devices: events behind the watermark, sessions
            # closed while the backlog drained, devices merged into a user.
            "late": state.get("late"),
            "sessions_closed": state.get("sessions_closed"),
            "merges": state.get("merges"),
            "partitions": args.partitions,
            "worker_cpu": args.cpu,
        }
        # With the worker gone, Faust alone on the same core, one event per record (the shape before
        # blocks): what the framework's per-record delivery leaves to the work.
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        faust_ceiling = bare_agent_rate(env, topics["single"], len(single), bare_app_id, scratch / "bare",
                                        None if args.cpu < 0 else args.cpu)  # fmt: skip
        result["faust_ceiling_events_per_s"] = round(faust_ceiling)
        result["faust_ceiling_records"] = len(single)
        result["ratio_to_faust_ceiling"] = round(result["events_per_s"] / faust_ceiling, 2)
    finally:
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
        delete_topics(config, [*topics.values(), *faust_topics(app_id), *faust_topics(bare_app_id)])
    shutil.rmtree(scratch, ignore_errors=True)  # kept when the run failed: the worker's log is there
    # Printed after the clean-up: librdkafka may log on stderr while its clients close.
    sys.stderr.flush()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
