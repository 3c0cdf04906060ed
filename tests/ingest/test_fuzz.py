"""Fuzzing: schemathesis against the OpenAPI, in process, plus hypothesis on the event models.

Kafka is faked at its boundary; everything above it is the real app. Together they send well over
5,000 generated requests; none may be answered 5xx or crash the app.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from funnelstream.contract import EventType, parse_event_json
from funnelstream.topics import Topic
from ingest.app import create_app
from tests.helpers.collector_fakes import WEB_KEY, FakeProducer, unit_settings
from tests.helpers.examples import example

# schemathesis runs this app's lifespan itself, once, on its own event loop.
schema = schemathesis.openapi.from_asgi(
    "/openapi.json", create_app(unit_settings(), producer_factory=lambda _: FakeProducer())
)
fake_producer = FakeProducer()
app = create_app(unit_settings(), producer_factory=lambda _: fake_producer)

SCHEMATHESIS_EXAMPLES = 400
MODEL_EXAMPLES = 700
sent: dict[str, int] = {"schemathesis": 0, "models": 0}


@pytest.fixture(scope="module")
def running_app() -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


@schema.include(path_regex="^/v1/").parametrize()
@settings(
    max_examples=SCHEMATHESIS_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_no_generated_request_gets_a_5xx(case: schemathesis.Case) -> None:
    sent["schemathesis"] += 1
    case.call_and_validate(
        headers={"X-Write-Key": WEB_KEY},
        checks=[not_a_server_error, content_type_conformance, response_schema_conformance],
    )


# --- hypothesis on the models ----------------------------------------------------------------------

JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63), st.floats(allow_nan=False), st.text(max_size=40)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=10,
)
FIELDS = sorted(
    {
        "event_id",
        "event_type",
        "schema_version",
        "anonymous_id",
        "user_id",
        "input_id",
        "client_ts",
        "sent_at",
        "context",
        "experiments",
        "properties",
        "received_at",
        "event_ts",
        "timestamp_flag",
        "source",
        "tool_id",
        "job_id",
        "score",
        "inference_id",
        "mask_url",
        "width",
        "height",
        "size_bytes",
        "content_type",
        "proposal_count",
        "latency_ms",
        "status",
        "model_name",
        "model_version",
        "experiment_key",
        "variant",
    }
)


@st.composite
def mutated_events(draw: st.DrawFn) -> Any:
    """A valid event of some type with a few fields replaced by arbitrary JSON or removed."""
    event = example(draw(st.sampled_from(list(EventType))))
    event["event_id"] = str(uuid.uuid4())
    for _ in range(draw(st.integers(0, 3))):
        field = draw(st.sampled_from(FIELDS))
        if draw(st.booleans()):
            event.pop(field, None)
        else:
            event[field] = draw(JSON_VALUES)
    if draw(st.integers(0, 20)) == 0:
        return draw(JSON_VALUES)
    return event


@given(batch=st.lists(mutated_events(), min_size=1, max_size=8))
@settings(max_examples=MODEL_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_every_event_is_either_stored_valid_or_reported(running_app: TestClient, batch: list[Any]) -> None:
    sent["models"] += 1
    before_raw = len(fake_producer.on(str(Topic.EVENTS_RAW)))
    before_dlq = len(fake_producer.on(str(Topic.EVENTS_DLQ)))
    response = running_app.post("/v1/batch", content=orjson.dumps({"batch": batch}), headers={"X-Write-Key": WEB_KEY})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["accepted"] + len(body["rejected"]) == len(batch)
    stored = fake_producer.on(str(Topic.EVENTS_RAW))[before_raw:]
    dead = fake_producer.on(str(Topic.EVENTS_DLQ))[before_dlq:]
    assert len(stored) == body["accepted"] and len(dead) == len(body["rejected"])
    for message in stored:
        event = parse_event_json(message.value())
        assert event.source == "web" and event.received_at is not None and event.event_ts is not None
    for rejected in body["rejected"]:
        assert rejected["errors"] and all(error["field"] and error["reason"] for error in rejected["errors"])


def test_enough_requests_were_generated() -> None:
    """Runs last in this module: the two fuzzers above together sent at least 5,000 requests."""
    if sent["schemathesis"] == 0 or sent["models"] == 0:
        pytest.skip("run the whole module to count the fuzzed requests")
    print(f"fuzzed requests: {sent}")
    assert sent["schemathesis"] + sent["models"] >= 5_000, sent
