"""SIGTERM: the worker stops taking requests, answers those in flight, flushes, then exits."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable

import httpx
import orjson
import pytest

from funnelstream.contract import parse_event_json
from funnelstream.settings import KafkaConfig
from ingest.settings import hash_write_key
from tests.helpers.examples import example
from tests.helpers.kafka_topics import read_events

KEY = "sigterm-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_sigterm_drains_in_flight_requests_and_flushes(kafka: KafkaConfig, kafka_topic: Callable[..., str]) -> None:
    topic = kafka_topic("ingest.sigterm", partitions=2)
    port = free_port()
    env = {
        **os.environ,
        "FS_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "FS_INGEST__EVENTS_TOPIC": topic,
        "FS_INGEST__RESULTS_CONSUMER": "false",
        "FS_INGEST__SOURCES": orjson.dumps(
            {"load": {"write_key_sha256": [hash_write_key(KEY)], "rate_per_s": 1e6, "burst": 1e6}}
        ).decode(),
        "FS_LOG_JSON": "true",
    }
    worker = subprocess.Popen(
        [sys.executable, "-c", "from ops.cli import main; main()", "ingest", "serve", "--port", str(port)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    accepted: list[str] = []
    lock = threading.Lock()

    def send() -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            while True:
                events = [example("image_saved", anonymous_id=f"d-{i}") for i in range(50)]
                try:
                    response = client.post(
                        "/v1/batch", content=orjson.dumps({"batch": events}), headers={"X-Write-Key": KEY}
                    )
                except httpx.TransportError:
                    return
                if response.status_code != 202:
                    return
                with lock:
                    accepted.extend(e["event_id"] for e in events)

    senders = [threading.Thread(target=send) for _ in range(4)]
    for sender in senders:
        sender.start()
    time.sleep(1.5)
    worker.send_signal(signal.SIGTERM)
    _, stderr = worker.communicate(timeout=60)
    for sender in senders:
        sender.join(timeout=30)
    assert accepted, stderr[-2000:]
    assert "collector stopped" in stderr
    assert "unconfirmed" not in stderr
    stored = Counter(str(parse_event_json(v).event_id) for _, v in read_events(kafka, topic, expect=len(accepted)))
    assert all(stored[event_id] == 1 for event_id in accepted)
