"""The real collector (and inference service) as processes, for the upload and job attack reproductions.

Each run has its own topics and consumer group (a namespace), so jobs of other runs never reach it.
What the tests measure of a process (its resident memory) is read from ``/proc``.
"""

from __future__ import annotations

import io
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
from confluent_kafka import Consumer, Producer
from PIL import Image

from funnelstream.settings import KafkaConfig, ObjectStoreConfig
from funnelstream.topics import Topic, in_namespace
from ingest.settings import DEV_WRITE_KEY
from ops.pipeline import Ports, create_namespace_topics, delete_namespace_topics, namespaced_env
from ops.processes import ServiceProcess

KEY = {"X-Write-Key": DEV_WRITE_KEY}
MIB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def peak_rss_bytes(pid: int) -> int:
    """The most resident memory the process has held so far (VmHWM): a peak, not a moment."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for process {pid}")


def pid_of(service: ServiceProcess) -> int:
    assert service.process is not None
    return service.process.pid


@dataclass
class Services:
    ingest: ServiceProcess
    inference: ServiceProcess | None
    ingest_url: str
    inference_url: str | None
    jobs_topic: str


@contextmanager
def running_services(
    workdir: Path,
    kafka: KafkaConfig,
    s3: ObjectStoreConfig,
    *,
    inference: bool,
    env: dict[str, str] | None = None,
) -> Iterator[Services]:
    """The collector, and the inference service if asked, on a namespace of their own."""
    namespace = f"sec-{uuid.uuid4().hex[:8]}"
    create_namespace_topics(kafka, namespace)
    ports = Ports(ingest=free_port(), inference=free_port())
    settings = {
        **namespaced_env(namespace),
        "FS_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "FS_S3__ENDPOINT": s3.endpoint,
        "FS_S3__BUCKET": s3.bucket,
        "FS_INGEST__EXPERIMENTS_ENABLED": "false",
        "FS_INGEST__DEMO_PAGE": "false",
        "FS_INFERENCE__WARMUP": "false",
        "FS_INFERENCE__MAX_IN_FLIGHT": "1",
        "FS_LOG_LEVEL": "WARNING",
        **(env or {}),
    }
    logs = workdir / "logs"
    local = "127.0.0.1"
    ingest = ServiceProcess(
        "ingest", ["ingest", "serve", "--host", local, "--port", str(ports.ingest)], logs, settings,
        ready_url=f"http://{local}:{ports.ingest}/readyz",
    )  # fmt: skip
    worker = None
    if inference:
        worker = ServiceProcess(
            "inference", ["inference", "serve", "--port", str(ports.inference)], logs, settings,
            ready_url=f"http://{local}:{ports.inference}/readyz",
        )  # fmt: skip
    started = [service for service in (worker, ingest) if service is not None]
    try:
        for service in started:
            service.start()
        for service in started:
            service.wait_ready(180)
        yield Services(
            ingest,
            worker,
            f"http://{local}:{ports.ingest}",
            f"http://{local}:{ports.inference}" if worker else None,
            in_namespace(Topic.INFERENCE_JOBS, namespace),
        )
    finally:
        for service in started:
            service.stop()
        delete_namespace_topics(kafka, namespace)


def flat_png(width: int, height: int) -> bytes:
    """One colour: a file of a few tens of KB that declares (and decodes to) a large image."""
    out = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 90, np.uint8)).save(out, format="PNG", optimize=True)
    return out.getvalue()


def upload(client: httpx.Client, anonymous_id: str, body: bytes, content_type: str = "image/png") -> dict[str, Any]:
    """An upload as a browser makes it: a ticket from the collector, then a form POST to the store."""
    ticket = client.post("/v1/uploads", json={"content_type": content_type, "anonymous_id": anonymous_id})
    assert ticket.status_code == 200, ticket.text
    answer = dict(ticket.json())
    stored = post_form(answer, body, content_type)
    assert stored.status_code in (200, 201, 204), stored.text
    return answer


def post_form(ticket: dict[str, Any], body: bytes, content_type: str, **fields: str) -> httpx.Response:
    """POST a file under a ticket's policy; ``fields`` replace the ticket's own (as an attacker would)."""
    with httpx.Client(timeout=60) as store:
        files = {"file": ("image", body, content_type)}
        return store.post(ticket["upload_url"], data={**ticket["fields"], **fields}, files=files)


def job_request(ticket: dict[str, Any], anonymous_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "restore",
        "inference_id": 3,
        "inference_name": "deblur",
        "input_id": ticket["input_id"],
        "input_key": ticket["input_key"],
        "input_token": ticket["upload_token"],
        "anonymous_id": anonymous_id,
        **extra,
    }


def wait_for_job(client: httpx.Client, job_id: str, timeout_s: float = 180) -> dict[str, Any]:
    """The job's state once it is no longer queued."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = client.get(f"/v1/jobs/{job_id}").json()
        if state["status"] != "queued":
            return dict(state)
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} still queued after {timeout_s}s")


def job_message(kafka: KafkaConfig, topic: str, job_id: str, timeout_s: float = 30) -> dict[str, Any]:
    """The job as the collector put it on the jobs topic, read with a consumer group of its own."""
    consumer = Consumer(
        {**kafka.client_config(), "group.id": f"sec-reader-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                job = dict(orjson.loads(message.value() or b"{}"))
                if job.get("job_id") == job_id:
                    return job
    finally:
        consumer.close()
    raise AssertionError(f"job {job_id} not on {topic} after {timeout_s}s")


def produce_job(kafka: KafkaConfig, topic: str, job: dict[str, Any]) -> None:
    producer = Producer(kafka.client_config())
    producer.produce(topic, orjson.dumps(job), str(job["input_id"]).encode())
    assert producer.flush(30) == 0
