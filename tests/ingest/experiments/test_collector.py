"""Assignment mounted on the real collector app, exposures produced to a real Kafka topic."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from funnelstream.contract import ExperimentExposure, parse_event_json
from funnelstream.experiments.settings import ExperimentsConfig
from ingest.experiments.assignment import hash_assignment
from ingest.experiments.routes import collector_router
from tests.helpers.experiment_fixtures import make_experiment

DEFINITIONS = """
version: {version}
experiments:
  - key: segmentation_tool
    status: running
    variants: [{{key: control, weight: 0.5}}, {{key: treatment, weight: 0.5}}]
    coverage: {coverage}
"""


def consume(kafka: Any, topic: str, expected: int, timeout_s: float = 20.0) -> list[Any]:
    from confluent_kafka import Consumer

    consumer = Consumer(
        {**kafka.client_config(), "group.id": f"test-exp-{uuid.uuid4().hex[:8]}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    messages: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(messages) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                messages.append(message)
        # Anything beyond what was expected would be a duplicate exposure.
        extra = consumer.poll(1.0)
        if extra is not None and extra.error() is None:
            messages.append(extra)
    finally:
        consumer.close()
    return messages


def test_collector_serves_assignments_and_produces_each_exposure_once(
    kafka: Any, kafka_topic: Any, tmp_path: Path
) -> None:
    ingest_app = pytest.importorskip("ingest.app")
    ingest_settings = pytest.importorskip("ingest.settings")

    topic = kafka_topic("exposures")
    definitions = tmp_path / "experiments.yaml"
    definitions.write_text(DEFINITIONS.format(version=1, coverage=1.0))
    settings = ingest_settings.IngestSettings(
        _env_file=None,
        kafka=kafka,
        ingest={"events_topic": topic, "results_consumer": False, "experiments_enabled": False},
    )
    app = ingest_app.create_app(settings)
    config = ExperimentsConfig(
        definitions_path=definitions, store_path=tmp_path / "assignments.sqlite3", poll_interval_s=0.05
    )
    app.include_router(collector_router(app, config))

    experiment = make_experiment()
    exposed = {"device-a", "device-b"}
    with TestClient(app, headers={"x-write-key": ingest_settings.DEV_WRITE_KEY}) as client:
        for device in ("device-a", "device-b", "device-a"):
            response = client.get("/v1/assignments", params={"anonymous_id": device})
            assert response.status_code == 200, response.text
            assert response.json()["variants"] == {"segmentation_tool": hash_assignment(experiment, device).variant}
        # Publish coverage 0: the running collector stops assigning without a restart.
        definitions.write_text(DEFINITIONS.format(version=2, coverage=0.0))
        deadline = time.monotonic() + 5
        body: dict[str, Any] = {}
        for probe in range(100):
            device = f"probe-{probe}"
            body = client.get("/v1/assignments", params={"anonymous_id": device}).json()
            if body["definitions_version"] == 2 or time.monotonic() > deadline:
                break
            exposed.add(device)  # served under version 1, so exposed
            time.sleep(0.05)
        assert body == {"anonymous_id": device, "definitions_version": 2, "variants": {}, "assignments": []}

    messages = consume(kafka, topic, expected=len(exposed))
    assert sorted(m.key() for m in messages) == sorted(d.encode() for d in exposed)
    for message in messages:
        event = parse_event_json(message.value())
        assert isinstance(event, ExperimentExposure)
        assert event.variant == hash_assignment(experiment, event.anonymous_id).variant
