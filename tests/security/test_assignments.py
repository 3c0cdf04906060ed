"""GET /v1/assignments on the real collector, real Kafka and a real SQLite store.

Before: no key was asked, so 3,000 made-up ids wrote 3,000 exposures and grew the store 44×, and
``?anonymous_id=mine&user_id=victim`` pinned the attacker's arm on every device of the victim.
Now the write key is checked before anything is written, each request is charged the exposures it
may write, and only a source marked ``may_bind_user_id`` (keys that live on servers) binds a user.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from httpx import Response

from funnelstream.contract import ExperimentExposure, parse_event_json
from funnelstream.experiments.definitions import Definitions
from ingest.app import create_app
from ingest.experiments.assignment import hash_assignment
from ingest.settings import IngestSettings, hash_write_key
from tests.helpers.kafka_topics import read_events

pytestmark = pytest.mark.integration

BROWSER_KEY = "browser-key-in-every-page"
SERVER_KEY = "server-key-kept-on-the-backend"
LIMITED_KEY = "browser-key-with-a-small-bucket"
SHARED_KEY = "browser-key-with-small-address-buckets"
BROWSER_ORIGIN = "https://edit.example.com"
LIMITED_BURST = 100

DEFINITIONS = """
version: 1
experiments:
  - key: segmentation_tool
    status: running
    start: 2026-11-01T00:00:00Z
    variants: [{key: control, weight: 0.5}, {key: treatment, weight: 0.5}]
    forced_variants: {qa-device: treatment}
  - key: brush_size
    status: running
    start: 2026-11-01T00:00:00Z
    variants: [{key: small, weight: 0.5}, {key: large, weight: 0.5}]
"""
RUNNING = 2
EXPERIMENT = Definitions.model_validate(yaml.safe_load(DEFINITIONS)).get("segmentation_tool")


class Collector:
    """The collector app with experiments on, its exposures on a fresh topic, its store on tmp_path."""

    def __init__(self, client: TestClient, kafka: Any, topic: str, store: Path) -> None:
        self.client = client
        self.kafka = kafka
        self.topic = topic
        self.store = store

    def get(self, key: str | None, origin: str | None = None, address: str | None = None, **params: str) -> Response:
        headers = {"x-write-key": key} if key else {}
        if origin:
            headers["origin"] = origin
        if address:
            headers["x-forwarded-for"] = address
        return self.client.get("/v1/assignments", params=params, headers=headers)

    def rows(self) -> dict[str, int]:
        with sqlite3.connect(f"file:{self.store}?mode=ro", uri=True) as conn:
            return {
                table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                for table in ("assignments", "exposures")
            }

    def stored(self, unit: str) -> list[tuple[str, str]]:
        with sqlite3.connect(f"file:{self.store}?mode=ro", uri=True) as conn:
            return conn.execute("SELECT experiment_key, variant FROM assignments WHERE unit = ?", (unit,)).fetchall()

    def exposures(self) -> list[ExperimentExposure]:
        """Every exposure on the topic, read to its end."""
        events = [parse_event_json(value) for _, value in read_events(self.kafka, self.topic)]
        assert all(isinstance(event, ExperimentExposure) for event in events)
        return events  # type: ignore[return-value]


@pytest.fixture
def collector(kafka: Any, kafka_topic: Any, tmp_path: Path) -> Iterator[Collector]:
    topic = kafka_topic("assignments")
    definitions = tmp_path / "experiments.yaml"
    definitions.write_text(DEFINITIONS)
    store = tmp_path / "assignments.sqlite3"
    browser = {"cors_origins": [BROWSER_ORIGIN]}
    settings = IngestSettings(
        _env_file=None,
        kafka=kafka,
        ingest={
            "events_topic": topic,
            "results_consumer": False,
            "experiments_enabled": True,
            "demo_page": False,
            "max_batch_events": LIMITED_BURST,  # a source's burst must hold a full batch
            "trust_forwarded_for": True,  # so one test can speak from two addresses
            "sources": {
                "web": {"write_key_sha256": [hash_write_key(BROWSER_KEY)], **browser},
                "backend": {"write_key_sha256": [hash_write_key(SERVER_KEY)], "may_bind_user_id": True},
                "limited": {
                    "write_key_sha256": [hash_write_key(LIMITED_KEY)],
                    **browser,
                    "rate_per_s": 0.001,
                    "burst": LIMITED_BURST,
                },
                "shared": {
                    "write_key_sha256": [hash_write_key(SHARED_KEY)],
                    **browser,
                    "address_rate_per_s": 0.001,
                    "address_burst": LIMITED_BURST,
                },
            },
        },
        experiments={"definitions_path": definitions, "store_path": store},
    )
    with TestClient(create_app(settings)) as client:
        yield Collector(client, kafka, topic, store)


def devices_in(variant: str, count: int = 1, prefix: str = "device") -> list[str]:
    found = (f"{prefix}-{i}" for i in range(10_000))
    return [d for d in found if hash_assignment(EXPERIMENT, d).variant == variant][:count]


def test_without_a_write_key_nothing_is_assigned_stored_or_exposed(collector: Collector) -> None:
    for key, params in [
        (None, {"anonymous_id": "mine"}),
        (None, {"anonymous_id": "mine", "user_id": "victim"}),
        (None, {}),  # the key is checked before the query
        ("not-a-key", {"anonymous_id": "mine"}),
    ]:
        response = collector.get(key, **params)
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "unauthorized"
    assert collector.rows() == {"assignments": 0, "exposures": 0}
    assert collector.exposures() == []


def test_a_browser_key_cannot_bind_a_user_id_so_the_victims_arm_stays_their_own(collector: Collector) -> None:
    (mine,) = devices_in("treatment", prefix="attacker")
    (victims_phone,) = devices_in("control", prefix="victim-phone")

    forged = collector.get(BROWSER_KEY, BROWSER_ORIGIN, anonymous_id=mine, user_id="victim")
    assert forged.status_code == 403, forged.text
    assert forged.json()["errors"] == [{"field": "user_id", "reason": forged.json()["errors"][0]["reason"]}]
    assert forged.headers["access-control-allow-origin"] == BROWSER_ORIGIN  # the page can read why
    assert collector.rows() == {"assignments": 0, "exposures": 0}
    assert collector.stored("user:victim") == []

    # The victim logs in on a phone, through the site's backend: the phone keeps its own arm.
    victim = collector.get(SERVER_KEY, anonymous_id=victims_phone, user_id="victim")
    assert victim.status_code == 200, victim.text
    assert victim.json()["variants"]["segmentation_tool"] == "control"
    assert ("segmentation_tool", "control") in collector.stored("user:victim")

    # Without a user id the browser key is served as before: its device's own arm, exposure logged.
    plain = collector.get(BROWSER_KEY, BROWSER_ORIGIN, anonymous_id=mine)
    assert plain.status_code == 200 and plain.json()["variants"]["segmentation_tool"] == "treatment"
    assert plain.headers["access-control-allow-origin"] == BROWSER_ORIGIN
    exposed = {(e.anonymous_id, e.user_id) for e in collector.exposures() if e.experiment_key == "segmentation_tool"}
    assert exposed == {(victims_phone, "victim"), (mine, None)}


def test_a_server_key_binds_the_user_so_a_second_device_gets_the_first_arm(collector: Collector) -> None:
    (laptop,) = devices_in("control", prefix="laptop")
    (phone,) = devices_in("treatment", prefix="phone")
    assert collector.get(SERVER_KEY, anonymous_id=laptop, user_id="ada").json()["variants"]["segmentation_tool"] == (
        "control"
    )
    on_phone = collector.get(SERVER_KEY, anonymous_id=phone, user_id="ada").json()
    assert on_phone["variants"]["segmentation_tool"] == "control"
    assert {a["source"] for a in on_phone["assignments"] if a["experiment_key"] == "segmentation_tool"} == {
        "user_sticky"
    }
    # Asking again writes nothing more: one exposure row per experiment and device.
    before = collector.rows()
    for _ in range(5):
        assert collector.get(SERVER_KEY, anonymous_id=phone, user_id="ada").status_code == 200
    assert collector.rows() == before
    assert before["exposures"] == 2 * RUNNING
    assert len(collector.exposures()) == 2 * RUNNING


def test_cross_origin_browsers_get_cors_like_the_event_routes(collector: Collector) -> None:
    preflight = collector.client.options(
        "/v1/assignments",
        headers={
            "origin": BROWSER_ORIGIN,
            "access-control-request-method": "GET",
            "access-control-request-headers": "x-write-key",
        },
    )
    assert preflight.status_code == 204, preflight.text
    assert preflight.headers["access-control-allow-origin"] == BROWSER_ORIGIN
    assert "GET" in preflight.headers["access-control-allow-methods"]
    assert "X-Write-Key" in preflight.headers["access-control-allow-headers"]

    evil = collector.get(BROWSER_KEY, "http://evil.example", anonymous_id="mine")
    assert evil.status_code == 403 and evil.json()["error"] == "origin_not_allowed"
    assert "access-control-allow-origin" not in evil.headers
    assert collector.rows() == {"assignments": 0, "exposures": 0}


def test_made_up_ids_beyond_the_rate_are_refused_and_the_store_stops_growing(collector: Collector) -> None:
    answers = [collector.get(LIMITED_KEY, anonymous_id=f"made-up-{i}").status_code for i in range(3000)]
    served = answers.count(200)
    assert set(answers) == {200, 429}
    # Each request is charged the exposures it may write (one per running experiment).
    assert 0 < served <= LIMITED_BURST // RUNNING
    assert answers.index(429) == served  # once refused, refused: nothing refilled the bucket
    refused = collector.get(LIMITED_KEY, anonymous_id="one-more")
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert collector.rows() == {"assignments": 0, "exposures": served * RUNNING}
    assert len(collector.exposures()) == served * RUNNING


def test_one_address_cannot_take_a_shared_keys_whole_rate(collector: Collector) -> None:
    busy, other = "203.0.113.7", "198.51.100.9"
    answers = [collector.get(SHARED_KEY, address=busy, anonymous_id=f"made-up-{i}").status_code for i in range(300)]
    served = answers.count(200)
    assert 0 < served <= LIMITED_BURST // RUNNING and answers[served:] == [429] * (300 - served)
    # The key's own bucket is far from empty: another address is still served.
    assert collector.get(SHARED_KEY, address=other, anonymous_id="someone-else").status_code == 200
    assert collector.rows() == {"assignments": 0, "exposures": (served + 1) * RUNNING}


def test_a_forced_qa_device_gets_its_variant_and_no_exposure(collector: Collector) -> None:
    # Forced assignments are answered, never tracked (as GrowthBook's SDKs do), so
    # a QA device never becomes a unit of the experiment nor reaches its sample-ratio check.
    answer = collector.get(BROWSER_KEY, anonymous_id="qa-device")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["variants"]["segmentation_tool"] == "treatment"
    sources = {a["experiment_key"]: a["source"] for a in body["assignments"]}
    assert sources["segmentation_tool"] == "forced"
    exposed = {(event.experiment_key, event.anonymous_id) for event in collector.exposures()}
    assert exposed == {("brush_size", "qa-device")}
    assert collector.rows()["exposures"] == 1
