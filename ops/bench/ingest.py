"""``make bench-ingest``: the collector against the real local Kafka (acks=all), one uvicorn worker in
its own process driven by wrk; the last line printed is one JSON object.

Figures: ``batch_events_per_s`` (500-event batches), ``single_requests_per_s`` (closed loop),
``single_p99_ms`` at 5,000 requests/s open loop (``ops.bench.loadgen``), ``rss_mb``, against
``ceiling_events_per_s`` (the same events produced straight to Kafka in the collector's blocks, no
HTTP, no validation) and ``ceiling_validated_events_per_s`` (plus stamp, validate, serialize).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

from funnelstream.blocks import BLOCK_HEADERS, blocks_by_partition
from funnelstream.kafka import make_admin, wait_for_broker
from ingest.pipeline import Stamp, prepare_batch
from ingest.producer import collector_producer_config
from ingest.server import keep_freed_heap
from ingest.settings import DEV_WRITE_KEY, IngestSettings
from ops.journeys import collector_payloads, journeys, live_spec

BATCH_SIZE = 500
PACED_RPS = 5_000

# wrk's done() hook prints one JSON line the bench reads back.
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Write-Key"] = "{write_key}"
local f = io.open("{body_path}", "rb")
wrk.body = f:read("*all")
f:close()
function done(summary, latency, requests)
  io.write(string.format('WRK {{"requests": %d, "duration_us": %d, "status_errors": %d, ' ..
    '"connect_errors": %d, "read_errors": %d, "timeouts": %d, "p50_us": %d, "p99_us": %d}}\\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.timeout, latency:percentile(50.0), latency:percentile(99.0)))
end
"""


def sample_events(count: int, now: datetime) -> list[dict[str, Any]]:
    """``count`` events of the journey generator's visits of the last hour, as a tracker sends them now."""
    spec = live_spec(count // 4 + 1, 1, end=now, window=timedelta(hours=1))
    events = collector_payloads(journeys(spec, 1), sent_at=now, library="funnelstream-js")
    # Whole journeys, device after device, rather than the first minutes of every one.
    return sorted(events, key=lambda event: event["anonymous_id"])[:count]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_mb = 0.0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(0.2):
            try:
                self.peak_mb = max(self.peak_mb, _rss_mb(self.pid))
            except OSError:
                return

    def stop(self) -> float:
        self._stop_event.set()
        self.join()
        return self.peak_mb


def run_wrk(url: str, body_path: Path, workdir: Path, *, connections: int, duration_s: int) -> dict[str, Any]:
    script = workdir / f"wrk-{uuid.uuid4().hex[:6]}.lua"
    script.write_text(WRK_SCRIPT.format(write_key=DEV_WRITE_KEY, body_path=body_path))
    result = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration_s}s", "--timeout", "10s", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(line for line in result.stdout.splitlines() if line.startswith("WRK "))
    stats: dict[str, Any] = json.loads(line[4:])
    seconds = stats["duration_us"] / 1e6
    stats["ok_per_s"] = (stats["requests"] - stats["status_errors"]) / seconds
    return stats


def run_paced(url: str, body_path: Path, *, rate: int, duration_s: int) -> dict[str, Any]:
    """Open loop at a fixed rate (wrk only runs closed loop), from a separate process."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ops.bench.loadgen",
            "--url",
            url,
            "--body",
            str(body_path),
            "--header",
            "Content-Type: application/json",
            "--header",
            f"X-Write-Key: {DEV_WRITE_KEY}",
            "--rate",
            str(rate),
            "--duration",
            str(duration_s),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    stats: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return stats


def _wait_ready(base_url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base_url}/readyz", timeout=2) as response:  # noqa: S310 -- loopback
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError("the collector did not become ready")


def ceiling(
    settings: IngestSettings, topic: str, events: list[dict[str, Any]], duration_s: float, validate: bool
) -> float:
    """Events per second one Python process gets into Kafka without HTTP, all confirmed, one block
    per partition of each batch as the collector writes them."""
    producer = Producer(collector_producer_config(settings.kafka, settings.ingest))
    delivered = 0
    failed = 0

    def on_delivery(err: Any, msg: Any) -> None:
        nonlocal delivered, failed
        if err is None:
            delivered += 1
        else:
            failed += 1

    stamp = Stamp(
        received_at=datetime.now(UTC),
        source="bench",
        ip="127.0.0.0",
        user_agent=None,
        late_limit=timedelta(days=7),
        future_tolerance=timedelta(seconds=5),
    )
    produced = 0
    records = 0
    partitions = settings.kafka.partitions
    started = time.perf_counter()
    while time.perf_counter() - started < duration_s:
        if validate:
            prepared = prepare_batch(
                events, stamp, events_topic=topic, dlq_topic=topic, max_event_bytes=settings.ingest.max_event_bytes
            )
            documents = [(key or b"", value) for _, key, value in prepared.messages]
        else:
            documents = [(event["anonymous_id"].encode(), orjson.dumps(event)) for event in events]
        # Written as the collector writes them: one block per partition of the request.
        for block in blocks_by_partition(documents, partitions):
            while True:
                try:
                    producer.produce(
                        topic, block.value, block.key, partition=block.partition, headers=BLOCK_HEADERS,
                        on_delivery=on_delivery,
                    )  # fmt: skip
                    records += 1
                    break
                except BufferError:
                    producer.poll(0.01)
        produced += len(documents)
        producer.poll(0)
    producer.flush(60)
    elapsed = time.perf_counter() - started
    if failed or delivered != records:
        raise RuntimeError(f"ceiling run: {failed} failed, {delivered}/{records} delivered")
    return produced / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per phase")
    parser.add_argument("--port", type=int, default=18000)
    parser.add_argument("--batch-connections", type=int, default=4)
    parser.add_argument("--single-connections", type=int, default=32)
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not on PATH (apt-get install -y wrk)", file=sys.stderr)
        return 2

    settings = IngestSettings()
    # The ceilings run in this process: with the worker's allocator settings, so that they measure
    # the same pipeline the worker runs.
    keep_freed_heap()
    wait_for_broker(settings.kafka)
    admin = make_admin(settings.kafka)
    suffix = uuid.uuid4().hex[:8]
    topics = [f"bench.events.{suffix}", f"bench.dlq.{suffix}"]
    for future in admin.create_topics(
        [NewTopic(t, num_partitions=settings.kafka.partitions, replication_factor=1) for t in topics]
    ).values():
        future.result()

    now = datetime.now(UTC)
    events = sample_events(BATCH_SIZE, now)
    workdir = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    batch_path = workdir / "batch.json"
    batch_path.write_bytes(orjson.dumps({"batch": events}))
    single_path = workdir / "event.json"
    single_path.write_bytes(orjson.dumps(events[0]))

    env = {
        **os.environ,
        "FS_INGEST__EVENTS_TOPIC": topics[0],
        "FS_INGEST__DLQ_TOPIC": topics[1],
        "FS_LOG_LEVEL": "WARNING",
    }
    worker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from ops.cli import main; main()",
            "ingest",
            "serve",
            "--port",
            str(args.port),
        ],
        env=env,
    )
    base_url = f"http://127.0.0.1:{args.port}"
    result: dict[str, Any] = {}
    try:
        _wait_ready(base_url)
        sampler = RssSampler(worker.pid)
        sampler.start()
        # A short warm-up so connection set-up and first metadata lookups are not measured.
        run_wrk(f"{base_url}/v1/batch", batch_path, workdir, connections=2, duration_s=2)
        batch = run_wrk(
            f"{base_url}/v1/batch", batch_path, workdir, connections=args.batch_connections, duration_s=args.duration
        )
        single = run_wrk(
            f"{base_url}/v1/event", single_path, workdir, connections=args.single_connections, duration_s=args.duration
        )
        paced = run_paced(f"{base_url}/v1/event", single_path, rate=PACED_RPS, duration_s=args.duration)
        rss_mb = sampler.stop()
        result = {
            "batch_events_per_s": round(batch["ok_per_s"] * BATCH_SIZE),
            "batch_p99_ms": round(batch["p99_us"] / 1000, 2),
            "batch_errors": batch["status_errors"] + batch["timeouts"],
            "single_requests_per_s": round(single["ok_per_s"]),
            "single_errors": single["status_errors"] + single["timeouts"],
            "single_paced_offered_rps": PACED_RPS,
            "single_paced_rps": paced["achieved_rps"],
            "single_p50_ms": paced["p50_ms"],
            "single_p99_ms": paced["p99_ms"],
            "single_paced_errors": paced["requests"] - paced["ok"],
            "rss_mb": round(rss_mb, 1),
        }
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    # The worker is gone, so the ceiling has the same machine to itself.
    result["ceiling_events_per_s"] = round(ceiling(settings, topics[0], events, args.duration, validate=False))
    result["ceiling_validated_events_per_s"] = round(ceiling(settings, topics[0], events, args.duration, validate=True))
    result["worker_exit_code"] = worker.returncode
    for future in admin.delete_topics(topics).values():
        future.result()
    shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
