"""Every service's /metrics, scraped after real work, holds the series the dashboard and the
on-call rely on. Services run in-process on the local Kafka, S3 server and chdb."""

from __future__ import annotations

import io
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client import start_http_server
from prometheus_client.parser import text_string_to_metric_families

from clickhouse.qa.settings import QAConfig, QASettings
from funnelstream.contract import InferenceJob, JobKind
from ops.heartbeat import HeartbeatEmitter
from tests.helpers.examples import example

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = json.loads((ROOT / "infra" / "grafana" / "dashboards" / "funnelstream.json").read_text())


def series_names(text: str) -> set[str]:
    """Every family and sample name in an exposition, with the suffixes PromQL queries use."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        if family.type == "counter":
            names.add(f"{family.name}_total")
        if family.type == "histogram":
            names |= {f"{family.name}_bucket", f"{family.name}_sum", f"{family.name}_count"}
        names |= {sample.name for sample in family.samples}
    return names


def sample_value(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


def wait_for(probe: Callable[[], str], until: Callable[[str], bool], timeout_s: float, what: str) -> str:
    deadline = time.monotonic() + timeout_s
    text = ""
    while time.monotonic() < deadline:
        text = probe()
        if until(text):
            return text
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last scrape:\n{text[-2000:]}")


@pytest.fixture
def topics(kafka) -> Iterator[Callable[[str], str]]:  # type: ignore[no-untyped-def]
    admin = AdminClient(kafka.client_config())
    created: list[str] = []

    def create(prefix: str) -> str:
        name = f"{prefix}.{uuid.uuid4().hex[:10]}"
        admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])[name].result()
        created.append(name)
        return name

    yield create
    if created:
        for future in admin.delete_topics(created).values():
            future.result()


SCRAPED: dict[str, str] = {}
"""Exposition text per service, kept for the dashboard check at the end of the module."""


def test_ingest_metrics_count_accepted_rejected_and_produce_latency(kafka, topics) -> None:  # type: ignore[no-untyped-def]
    from ingest.app import create_app
    from ingest.settings import IngestSettings, hash_write_key

    sources = {"web": {"write_key_sha256": [hash_write_key("scrape-key")], "rate_per_s": 1000, "burst": 1000}}
    settings = IngestSettings(
        _env_file=None,  # type: ignore[call-arg]
        kafka=kafka,
        ingest={
            "sources": sources,
            "results_consumer": False,
            "events_topic": topics("events.raw"),
            "dlq_topic": topics("events.dlq"),
            "jobs_topic": topics("inference.jobs"),
        },
    )
    with TestClient(create_app(settings)) as client:
        batch = [example("tool_selected"), example("score_submitted", score=0)]
        response = client.post(
            "/v1/batch",
            content=orjson.dumps({"batch": batch}),
            headers={"content-type": "application/json", "X-Write-Key": "scrape-key"},
        )
        assert response.status_code in (200, 202, 207), response.text
        text = client.get("/metrics").text
    SCRAPED["ingest"] = text
    assert sample_value(text, "ingest_events_accepted_total", source="web") == 1
    assert sample_value(text, "ingest_events_rejected_total", reason="invalid_event") == 1
    assert sample_value(text, "ingest_produce_latency_seconds_count") == 1
    assert "ingest_produce_latency_seconds_bucket" in series_names(text)


def test_warehouse_metrics_count_loader_batches_and_rows(kafka, topics, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from clickhouse.api import create_app
    from clickhouse.settings import LoaderConfig, WarehouseSettings
    from ops.heartbeat import make_heartbeat
    from tests.helpers.heartbeats import enriched
    from tests.helpers.qa_warehouse import open_warehouse

    events_topic = topics("events.enriched")
    settings = WarehouseSettings(
        kafka=kafka,
        loader=LoaderConfig(
            group_id=f"scrape-loader-{uuid.uuid4().hex[:8]}",
            events_topic=events_topic,
            sessions_topic="",
            dlq_topic="",
            tools_topic="",
            inferences_topic="",
            batch_seconds=0.2,
        ),
    )
    producer = Producer(kafka.client_config())
    for _ in range(3):
        row = enriched(make_heartbeat("scrape", datetime.now(UTC)))
        producer.produce(events_topic, value=row.model_dump_json(exclude_none=True).encode(), key=row.anonymous_id)
    producer.flush(10)
    warehouse = open_warehouse(tmp_path / "chdb")
    try:
        app = create_app(settings, warehouse=warehouse, run_loader=True)
        with TestClient(app, headers=settings.read_headers) as client:
            text = wait_for(
                lambda: client.get("/metrics").text,
                lambda t: sample_value(t, "funnelstream_loader_rows_total", table="events") == 3,
                60,
                "the loader to insert 3 rows",
            )
    finally:
        warehouse.close()
    SCRAPED["warehouse"] = text
    names = series_names(text)
    assert (sample_value(text, "funnelstream_loader_batches_total") or 0) >= 1
    assert (sample_value(text, "funnelstream_loader_insert_seconds_count", table="events") or 0) >= 1
    assert (sample_value(text, "funnelstream_loader_insert_seconds_sum", table="events") or 0) > 0
    assert sample_value(text, "funnelstream_loader_batch_rows") is not None
    assert {"funnelstream_loader_paused", "funnelstream_loader_rejected_total", "funnelstream_freshness_ms"} <= names


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((48, 64, 3), 120, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_inference_metrics_count_jobs_and_model_latency(kafka, s3, minio_client, topics) -> None:  # type: ignore[no-untyped-def]
    from inference_service.server import create_app
    from inference_service.settings import InferenceSettings

    settings = InferenceSettings(
        kafka=kafka,
        s3=s3,
        inference={
            "jobs_topic": topics("inference.jobs"),
            "results_topic": topics("inference.results"),
            "events_topic": topics("events.raw"),
            "dlq_topic": topics("events.dlq"),
            "consumer_group": f"scrape-inference-{uuid.uuid4().hex[:8]}",
            "warmup": False,
            "device": "cpu",
        },
    )
    input_key = f"inputs/2026/11/26/{uuid.uuid4()}.png"
    data = _png()
    minio_client.put_object(s3.bucket, input_key, io.BytesIO(data), len(data), content_type="image/png")
    job = InferenceJob(
        job_id=uuid.uuid4(),
        kind=JobKind.RESTORE,
        input_id=uuid.uuid4(),
        input_key=input_key,
        anonymous_id="scrape",
        inference_id=2,
        submitted_at=datetime.now(UTC),
    )
    exits: list[BaseException | None] = []
    with TestClient(create_app(settings, exits.append)) as client:
        wait_for(lambda: str(client.get("/readyz").status_code), lambda s: s == "200", 60, "inference readiness")
        producer = Producer(kafka.client_config())
        producer.produce(settings.inference.jobs_topic, value=job.model_dump_json().encode(), key=str(job.input_id))
        producer.flush(10)
        text = wait_for(
            lambda: client.get("/metrics").text,
            lambda t: sample_value(t, "inference_jobs_total", status="succeeded") is not None,
            90,
            "one finished job",
        )
    SCRAPED["inference"] = text
    names = series_names(text)
    assert {"inference_jobs_total", "inference_model_seconds_bucket", "inference_dead_letters_total"} <= names
    model_samples = [
        s for f in text_string_to_metric_families(text) for s in f.samples if s.name == "inference_model_seconds_count"
    ]
    assert model_samples and all(s.labels.get("model") for s in model_samples)


def test_heartbeat_metrics_carry_freshness_and_consumer_lag(kafka, topics) -> None:  # type: ignore[no-untyped-def]
    from ops.status import Freshness

    raw = topics("events.raw")
    settings = QASettings(kafka=kafka, qa=QAConfig(consumer_groups={"loader": f"scrape-{uuid.uuid4().hex[:8]}"}))
    server, thread = start_http_server(0, addr="127.0.0.1")
    try:
        emitter = HeartbeatEmitter(settings, topic=raw, freshness=lambda: Freshness(1, 2.5, 0.5), watch_lag=True)
        try:
            emitter.run(count=1)
        finally:
            emitter.close()
        text = httpx.get(f"http://127.0.0.1:{server.server_port}/metrics", timeout=5).text
    finally:
        server.shutdown()
        thread.join(5)
    SCRAPED["heartbeat"] = text
    assert (sample_value(text, "funnelstream_heartbeats_sent_total") or 0) >= 1
    assert sample_value(text, "funnelstream_pipeline_freshness_seconds") == 2.5
    assert {"funnelstream_consumer_group_lag", "funnelstream_heartbeat_end_to_end_seconds"} <= series_names(text)


_METRIC = re.compile(r"\b((?:ingest|inference|funnelstream|stream)_[a-z0-9_]+)")


def test_every_series_the_dashboard_plots_is_exported() -> None:
    if set(SCRAPED) != {"ingest", "warehouse", "inference", "heartbeat"}:
        pytest.skip("needs the scrapes of the tests above in the same run")
    exported = set().union(*(series_names(text) for text in SCRAPED.values()))
    plotted = {
        name
        for panel in DASHBOARD["panels"]
        if panel.get("datasource", {}).get("type") == "prometheus"
        for target in panel["targets"]
        for name in _METRIC.findall(target["expr"])
    }
    assert plotted
    assert plotted <= exported, sorted(plotted - exported)
