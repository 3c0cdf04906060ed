"""``inference serve`` as a process: ready, metrics, and SIGTERM drains the job in flight."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from confluent_kafka import Consumer, TopicPartition

from funnelstream.contract import InferenceResult, JobStatus
from funnelstream.settings import KafkaConfig
from tests.helpers.images import scene
from tests.helpers.inference import read_topic, restore_job, submit, upload_input


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else "exited"
        try:
            response = httpx.get(f"{url}/readyz", timeout=1)
            if response.status_code == 200:
                return dict(response.json())
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("inference serve never became ready")


def test_serve_reports_ready_and_drains_on_sigterm(
    kafka: KafkaConfig, s3: Any, minio_client: Any, kafka_topic: Callable[..., str]
) -> None:
    jobs, results, events, dlq = (kafka_topic(f"serve-{role}") for role in ("jobs", "results", "events", "dlq"))
    group = f"serve-test-{uuid.uuid4().hex}"
    port = _free_port()
    env = {
        **os.environ,
        "FS_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "FS_S3__ENDPOINT": s3.endpoint,
        "FS_S3__BUCKET": s3.bucket,
        "FS_INFERENCE__JOBS_TOPIC": jobs,
        "FS_INFERENCE__RESULTS_TOPIC": results,
        "FS_INFERENCE__EVENTS_TOPIC": events,
        "FS_INFERENCE__DLQ_TOPIC": dlq,
        "FS_INFERENCE__CONSUMER_GROUP": group,
        "FS_INFERENCE__DEVICE": "cpu",
        "FS_LOG_JSON": "false",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "inference_service", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        ready = _wait_ready(url, process)
        assert {model["task"] for model in ready["models"]} == {"remove_object", "enhance", "deblur", "segment"}

        submitted_at = datetime.now(UTC)
        # A ×4 enlargement of a large image takes long enough to be in flight when SIGTERM arrives.
        input_id, input_key = upload_input(minio_client, s3.bucket, scene(900, 900), submitted_at)
        job = restore_job(input_id, input_key, submitted_at, inference_id=2, params={"scale": 4})
        submit(kafka, jobs, [(str(input_id), job.model_dump_json().encode())])
        deadline = time.monotonic() + 60
        while "inference_jobs_in_flight 1.0" not in httpx.get(f"{url}/metrics", timeout=2).text:
            assert time.monotonic() < deadline, "the job was never picked up"
            time.sleep(0.01)

        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0

        result = InferenceResult.model_validate_json(read_topic(kafka, results, 1)[0].value())
        assert result.job_id == job.job_id and result.status is JobStatus.SUCCEEDED
        consumer = Consumer({**kafka.client_config(), "group.id": group})
        committed = consumer.committed([TopicPartition(jobs, 0)], timeout=10)
        consumer.close()
        assert committed[0].offset == 1, "the drained job was committed before exit"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
