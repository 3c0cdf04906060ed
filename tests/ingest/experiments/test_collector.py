"""Assignment mounted on the real collector app, exposures produced to a real Kafka topic."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from funnelstream.contract import ExperimentExposure, parse_event_json
from funnelstream.experiments.settings import ExperimentsConfig
from ingest.app import create_app
from ingest.experiments.assignment import hash_assignment
from ingest.experiments.routes import collector_router
from ingest.settings import DEV_WRITE_KEY, IngestSettings
from tests.helpers.experiment_fixtures import make_experiment
from tests.helpers.kafka_topics import read_events

DEFINITIONS = """
version: {version}
experiments:
  - key: segmentation_tool
    status: running
    variants: [{{key: control, weight: 0.5}}, {{key: treatment, weight: 0.5}}]
    coverage: {coverage}
"""


def test_collector_serves_assignments_and_produces_each_exposure_once(
    kafka: Any, kafka_topic: Any, tmp_path: Path
) -> None:
    topic = kafka_topic("exposures")
    definitions = tmp_path / "experiments.yaml"
    definitions.write_text(DEFINITIONS.format(version=1, coverage=1.0))
    settings = IngestSettings(
        _env_file=None,
        kafka=kafka,
        ingest={"events_topic": topic, "results_consumer": False, "experiments_enabled": False},
    )
    app = create_app(settings)
    config = ExperimentsConfig(
        definitions_path=definitions, store_path=tmp_path / "assignments.sqlite3", poll_interval_s=0.05
    )
    app.include_router(collector_router(app, config))

    experiment = make_experiment()
    exposed = {"device-a", "device-b"}
    with TestClient(app, headers={"x-write-key": DEV_WRITE_KEY}) as client:
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

    # Everything on the topic, to its end: a duplicate exposure would be read too.
    messages = read_events(kafka, topic)
    assert sorted(key for key, _ in messages) == sorted(d.encode() for d in exposed)
    for _, value in messages:
        event = parse_event_json(value)
        assert isinstance(event, ExperimentExposure)
        assert event.variant == hash_assignment(experiment, event.anonymous_id).variant
