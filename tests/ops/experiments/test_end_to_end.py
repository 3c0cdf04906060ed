"""End to end: arms from the collector's /v1/assignments, events POSTed to the collector and carried
by Kafka, processed by the stream processors' core, decoded by the warehouse loader into chdb, and
the report computed from the experiment's queries agrees with the simulation's truth and with the
same simulation inserted directly.

The Faust and loader consumer loops are left out; every transformation between them is the real
one (the same shortcut the QA status test takes)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from clickhouse.experiments.analysis import AnalysisConfig
from clickhouse.experiments.warehouse import analyze_warehouse
from funnelstream.blocks import BLOCK_VERSION, block_version, split_block
from funnelstream.experiments.settings import ExperimentsConfig
from funnelstream.settings import ClickHouseConfig
from ingest.experiments.assignment import hash_assignment
from ingest.experiments.routes import collector_router
from ops.journeys import JourneySpec, collector_payloads, simulate
from tests.helpers.experiment_fixtures import make_experiment
from tests.helpers.experiment_warehouse import analyze_events

UNITS = 1200
DEFINITIONS = """
version: 1
experiments:
  - key: segmentation_tool
    status: running
    variants: [{key: control, weight: 0.5}, {key: treatment, weight: 0.5}]
"""


def drain(kafka: Any, topic: str, expected: int, timeout_s: float = 60.0) -> list[Any]:
    """Records of ``topic`` until they hold ``expected`` events (the collector writes blocks)."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {**kafka.client_config(), "group.id": f"test-exp-e2e-{uuid.uuid4().hex[:8]}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    messages: list[Any] = []
    events = 0
    deadline = time.monotonic() + timeout_s
    try:
        while events < expected and time.monotonic() < deadline:
            for m in consumer.consume(1000, timeout=0.5):
                if m.error() is None:
                    messages.append(m)
                    events += len(split_block(m.value())) if block_version(m.headers()) is not None else 1
    finally:
        consumer.close()
    return messages


def test_collector_to_report_recovers_the_planted_effect(kafka: Any, kafka_topic: Any, tmp_path: Path) -> None:
    ingest_app = pytest.importorskip("ingest.app")
    ingest_settings = pytest.importorskip("ingest.settings")
    processor = pytest.importorskip("stream_processors.processor")
    enrich = pytest.importorskip("stream_processors.enrich")
    dimensions = pytest.importorskip("stream_processors.dimensions")
    backend = pytest.importorskip("clickhouse.backend")
    migrate = pytest.importorskip("clickhouse.migrate")
    loader = pytest.importorskip("clickhouse.loader")

    raw_topic = kafka_topic("raw", partitions=2)
    definitions = tmp_path / "experiments.yaml"
    definitions.write_text(DEFINITIONS)
    # The experiment started two days ago; the collector logs every exposure at that moment.
    exposed_at = (datetime.now(UTC) - timedelta(days=2)).replace(microsecond=0)
    settings = ingest_settings.IngestSettings(
        _env_file=None,
        kafka=kafka,
        ingest={"events_topic": raw_topic, "results_consumer": False, "experiments_enabled": False},
    )
    app = ingest_app.create_app(settings)
    app.include_router(
        collector_router(
            app,
            ExperimentsConfig(definitions_path=definitions, store_path=tmp_path / "assignments.sqlite3"),
            clock=lambda: exposed_at,
        )
    )
    experiment = make_experiment(start=exposed_at - timedelta(hours=1))
    devices = [f"e2e-device-{i}" for i in range(UNITS)]
    spec = JourneySpec(
        task_time_factor=0.7, save_conversion_lift=0.05, pre_exposure_share=0.0, start=exposed_at, exposure_window_s=0
    )

    with TestClient(app) as client:
        assigned = {}
        for device in devices:
            response = client.get(
                "/v1/assignments",
                params={"anonymous_id": device},
                headers={"x-write-key": ingest_settings.DEV_WRITE_KEY},
            )
            assert response.status_code == 200, response.text
            assigned[device] = response.json()["variants"]["segmentation_tool"]
        assert all(assigned[d] == hash_assignment(experiment, d).variant for d in devices)
        events, truth = simulate(spec, 31, assigned=assigned)
        posted = collector_payloads(events, exposures=False)
        for start in range(0, len(posted), 500):
            # A tracker stamps sent_at when it sends: a stamp from before the first batch would turn
            # each later batch's wait on a busy machine into clock skew of its own.
            batch = [{**event, "sent_at": datetime.now(UTC).isoformat()} for event in posted[start : start + 500]]
            response = client.post(
                "/v1/batch",
                json={"batch": batch},
                headers={"x-write-key": ingest_settings.DEV_WRITE_KEY},
            )
            assert response.status_code == 202, response.text

    raw = drain(kafka, raw_topic, expected=UNITS + len(posted))
    # Exposures come one per request, the posted events in 500-event requests: blocks, not events.
    assert sum(len(split_block(m.value())) for m in raw) == UNITS + len(posted)
    assert all(block_version(m.headers()) == BLOCK_VERSION for m in raw) and len(raw) < UNITS + len(posted)
    stream = processor.StreamProcessor(
        processor.MemoryStateStore(), enrich.Enricher(dimensions.DimensionStore(), enrich.UserAgentParser())
    )
    raw.sort(key=lambda m: (m.partition(), m.offset()))
    out = stream.process(
        processor.RawRecord(m.partition(), m.offset(), m.key(), m.value(), raw_topic, block_version(m.headers()))
        for m in raw
    )
    assert not out.dead_letters

    warehouse = backend.open_warehouse(ClickHouseConfig(chdb_path=tmp_path / "chdb"))
    try:
        migrate.migrate(warehouse)
        # The worker writes the rows of each record it read as one block.
        messages = [
            m
            for i, (k, v) in enumerate(out.enriched)
            for m in loader.record_messages("events.enriched", 0, i, k, v, block=True)
        ]
        table, rejected = loader.decode_events(messages)
        assert not rejected
        warehouse.insert_arrow("events", table)
        results = analyze_warehouse(warehouse, experiment, AnalysisConfig(bootstrap_resamples=200))
    finally:
        warehouse.close()

    # The same simulation inserted directly, without collector, Kafka or stream processors.
    direct = analyze_events(tmp_path / "chdb", events, experiment, AnalysisConfig(bootstrap_resamples=0))
    assert [e.units for e in results.exposures] == [e.units for e in direct.exposures]
    assert sum(e.units for e in results.exposures) == UNITS
    assert results.contamination.units_in_several_variants == 0
    assert not results.srm.alert
    save = next(m for m in results.conversion if m.name == "conversion_save").comparisons[0]
    assert save.ci_low is not None and save.ci_high is not None
    assert save.ci_low <= truth.save_conversion_difference <= save.ci_high
    assert results.task_duration is not None
    task = results.task_duration.mean.comparisons[0]
    assert task.lift_ci_low is not None and task.lift_ci_high is not None
    assert task.lift_ci_low <= truth.task_time_relative_lift <= task.lift_ci_high
    assert task.significant
    # What the pipeline adds is only the collector's clock-skew correction: milliseconds.
    direct_task = direct.task_duration.mean.comparisons[0] if direct.task_duration else None
    assert direct_task is not None and direct_task.relative_lift is not None and task.relative_lift is not None
    assert task.relative_lift == pytest.approx(direct_task.relative_lift, abs=0.002)
    direct_save = next(m for m in direct.conversion if m.name == "conversion_save").comparisons[0]
    assert save.difference == pytest.approx(direct_save.difference, abs=1e-9)
