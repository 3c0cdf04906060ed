"""The assignment router on a minimal FastAPI app, under a stand-in for the host's access rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.testclient import TestClient

from funnelstream.contract import ExperimentExposure
from funnelstream.errors import DeliveryError
from funnelstream.experiments.definitions import DefinitionsWatcher
from ingest.experiments.assignment import Assigner, hash_assignment
from ingest.experiments.exposures import ExposureLogger
from ingest.experiments.routes import assignments_router
from ingest.experiments.store import SqliteAssignmentStore
from tests.helpers.experiment_fixtures import make_experiment

DEFINITIONS = """
version: {version}
experiments:
  - key: segmentation_tool
    status: {status}
    variants: [{{key: control, weight: 0.5}}, {{key: treatment, weight: 0.5}}]
  - key: draft_one
    status: draft
    variants: [{{key: a, weight: 0.5}}, {{key: b, weight: 0.5}}]
"""


class HostAccess:
    """Stands in for the host's access rules at the router's boundary: a key, a budget, who may bind."""

    def __init__(self) -> None:
        self.budget = 1_000
        self.binders = {"server-key"}
        self.charged: list[int] = []

    def admit(self, request: Request, cost: int) -> None:
        if request.headers.get("x-write-key") is None:
            raise HTTPException(401, "no key")
        if cost > self.budget:
            raise HTTPException(429, "over budget")
        self.budget -= cost
        self.charged.append(cost)

    def check_user_binding(self, request: Request, user_id: str) -> None:
        if request.headers.get("x-write-key") not in self.binders:
            raise HTTPException(403, "user_id: may not bind")

    def headers(self, request: Request) -> dict[str, str]:
        return {"x-host": "yes"}


class Collector:
    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "experiments.yaml"
        self.path.write_text(DEFINITIONS.format(version=1, status="running"))
        self.watcher = DefinitionsWatcher(self.path)
        self.store = SqliteAssignmentStore(tmp_path / "assignments.sqlite3")
        self.sent: list[ExperimentExposure] = []
        self.failing = False
        self.access = HostAccess()

        async def sink(event: ExperimentExposure) -> None:
            if self.failing:
                raise DeliveryError("events.raw", "broker unavailable", retriable=True)
            self.sent.append(event)

        app = FastAPI()
        app.include_router(
            assignments_router(
                lambda: self.watcher.current,
                Assigner(lambda: self.watcher.current, self.store),
                ExposureLogger(self.store, sink),
                self.access,
            )
        )
        self.client = TestClient(app, headers={"x-write-key": "server-key"})


@pytest.fixture
def collector(tmp_path: Path) -> Collector:
    return Collector(tmp_path)


def test_assignments_return_running_variants_and_log_exposure_once(collector: Collector) -> None:
    experiment = make_experiment()
    for _ in range(3):
        response = collector.client.get("/v1/assignments", params={"anonymous_id": "device-1"})
        assert response.status_code == 200
    body = response.json()
    expected = hash_assignment(experiment, "device-1").variant
    assert body["variants"] == {"segmentation_tool": expected}  # the draft is not served
    assert body["definitions_version"] == 1
    assert [(e.anonymous_id, e.experiment_key, e.variant) for e in collector.sent] == [
        ("device-1", "segmentation_tool", expected)
    ]


def test_the_unit_stays_the_device_after_login_and_the_user_keeps_one_arm(collector: Collector) -> None:
    experiment = make_experiment()
    devices = [f"device-{i}" for i in range(100)]
    laptop = next(d for d in devices if hash_assignment(experiment, d).variant == "control")
    phone = next(d for d in devices if hash_assignment(experiment, d).variant == "treatment")
    get = collector.client.get
    assert get("/v1/assignments", params={"anonymous_id": laptop}).json()["variants"]["segmentation_tool"] == "control"
    logged_in = get("/v1/assignments", params={"anonymous_id": laptop, "user_id": "ada"}).json()
    assert logged_in["variants"]["segmentation_tool"] == "control"
    assert len(collector.sent) == 1  # same unit, same experiment: no second exposure at login
    on_phone = get("/v1/assignments", params={"anonymous_id": phone, "user_id": "ada"}).json()
    assert on_phone["variants"]["segmentation_tool"] == "control"
    assert on_phone["assignments"][0]["source"] == "user_sticky"
    assert [(e.anonymous_id, e.variant, e.user_id) for e in collector.sent[1:]] == [(phone, "control", "ada")]


def test_a_published_change_applies_without_restart(collector: Collector) -> None:
    assert collector.client.get("/v1/assignments", params={"anonymous_id": "d"}).json()["variants"]
    collector.path.write_text(DEFINITIONS.format(version=2, status="stopped"))
    assert collector.watcher.poll()
    body = collector.client.get("/v1/assignments", params={"anonymous_id": "d"}).json()
    assert body == {"anonymous_id": "d", "definitions_version": 2, "variants": {}, "assignments": []}


def test_exposure_that_cannot_be_made_durable_is_a_503_and_is_retried(collector: Collector) -> None:
    collector.failing = True
    response = collector.client.get("/v1/assignments", params={"anonymous_id": "device-5"})
    assert response.status_code == 503 and response.headers["retry-after"]
    collector.failing = False
    assert collector.client.get("/v1/assignments", params={"anonymous_id": "device-5"}).status_code == 200
    assert [e.anonymous_id for e in collector.sent] == ["device-5"]


def test_bad_unit_ids_are_refused_by_name(collector: Collector) -> None:
    missing = collector.client.get("/v1/assignments")
    assert missing.status_code == 422 and "anonymous_id" in missing.text
    too_long = collector.client.get("/v1/assignments", params={"anonymous_id": "x" * 129})
    assert too_long.status_code == 422 and "anonymous_id" in too_long.text
    assert not collector.sent


def test_the_host_admits_before_anything_is_read_or_written(collector: Collector) -> None:
    # No key: refused before the query is validated; nothing stored, nothing sent.
    del collector.client.headers["x-write-key"]
    assert collector.client.get("/v1/assignments").status_code == 401
    assert collector.client.get("/v1/assignments", params={"anonymous_id": "d"}).status_code == 401
    assert not collector.sent and collector.store.get("segmentation_tool", "anon:d") is None
    assert collector.store.mark_exposed("segmentation_tool", 1, "d")  # no exposure was claimed for it


def test_each_request_is_charged_one_per_running_experiment_and_refused_past_its_budget(collector: Collector) -> None:
    collector.access.budget = 3
    answers = [collector.client.get("/v1/assignments", params={"anonymous_id": f"d{i}"}) for i in range(5)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
    assert collector.access.charged == [1, 1, 1]  # one running experiment; the draft is not charged
    assert answers[0].headers["x-host"] == "yes"
    assert [e.anonymous_id for e in collector.sent] == ["d0", "d1", "d2"]


def test_a_user_id_is_bound_only_for_a_caller_the_host_lets_bind(collector: Collector) -> None:
    refused = collector.client.get(
        "/v1/assignments", params={"anonymous_id": "d", "user_id": "victim"}, headers={"x-write-key": "browser-key"}
    )
    assert refused.status_code == 403 and "user_id" in refused.text
    assert not collector.sent and collector.store.get("segmentation_tool", "user:victim") is None
    bound = collector.client.get("/v1/assignments", params={"anonymous_id": "d", "user_id": "ada"})
    assert bound.status_code == 200
    assert collector.store.get("segmentation_tool", "user:ada") is not None
