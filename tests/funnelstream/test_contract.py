from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from funnelstream.contract import EVENT_MODELS, EventType, event_to_json, parse_event, parse_event_json
from funnelstream.errors import ContractError
from tests.helpers.examples import example

ALL_TYPES = list(EventType)
FUTURE = (datetime.now(UTC) + timedelta(days=800)).isoformat()


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_every_event_type_round_trips_through_json(event_type: EventType) -> None:
    event = parse_event(example(event_type))
    assert isinstance(event, EVENT_MODELS[event_type])
    again = parse_event_json(event_to_json(event))
    assert again == event


def test_unknown_fields_are_kept_in_properties() -> None:
    event = parse_event(example("tool_selected", campaign="spring", properties={"ab": 1}))
    assert event.properties == {"campaign": "spring", "ab": 1}
    assert parse_event_json(event_to_json(event)).properties == {"campaign": "spring", "ab": 1}


def test_unknown_context_fields_survive() -> None:
    event = parse_event(example("image_saved", context={"screen": "1920x1080"}))
    assert event.context.model_dump()["screen"] == "1920x1080"


def _without(event_type: str, field: str) -> dict[str, Any]:
    payload = example(event_type)
    del payload[field]
    return payload


INVALID: list[tuple[str, dict[str, Any] | Any, str]] = [
    # missing fields
    ("missing event_id", _without("tool_selected", "event_id"), "event_id"),
    ("missing anonymous_id", _without("tool_selected", "anonymous_id"), "anonymous_id"),
    ("missing client_ts", _without("image_saved", "client_ts"), "client_ts"),
    ("missing input_id on funnel event", _without("tool_selected", "input_id"), "input_id"),
    ("missing tool_id", _without("tool_selected", "tool_id"), "tool_id"),
    ("missing job_id on save", _without("image_saved", "job_id"), "job_id"),
    ("missing score", _without("score_submitted", "score"), "score"),
    ("missing width", _without("image_uploaded", "width"), "width"),
    ("missing model_name", _without("inference_completed", "model_name"), "model_name"),
    ("missing variant", _without("experiment_exposure", "variant"), "variant"),
    ("missing event_type", _without("tool_selected", "event_type"), "event_type"),
    # wrong types
    ("tool_id as text", example("tool_selected", tool_id="brush"), "tool_id"),
    ("score as float text", example("score_submitted", score="four"), "score"),
    ("width as list", example("image_uploaded", width=[800]), "width"),
    ("experiments as list", example("tool_selected", experiments=["a"]), "experiments"),
    ("context as string", example("tool_selected", context="web"), "context"),
    ("client_ts as number text", example("tool_selected", client_ts="yesterday"), "client_ts"),
    ("status not allowed", example("inference_completed", status="maybe"), "status"),
    ("schema_version zero", example("tool_selected", schema_version=0), "schema_version"),
    ("schema_version from the future", example("tool_selected", schema_version=99), "schema_version"),
    # out-of-range values
    ("score 6", example("score_submitted", score=6), "score"),
    ("score 0", example("score_submitted", score=0), "score"),
    ("negative width", example("image_uploaded", width=-1), "width"),
    ("negative latency", example("segments_proposed", latency_ms=-5), "latency_ms"),
    ("tool_id zero", example("tool_selected", tool_id=0), "tool_id"),
    ("content type not an image", example("image_uploaded", content_type="text/html"), "content_type"),
    # oversized strings
    ("anonymous_id too long", example("tool_selected", anonymous_id="a" * 129), "anonymous_id"),
    ("anonymous_id empty", example("tool_selected", anonymous_id=""), "anonymous_id"),
    ("user_id too long", example("tool_selected", user_id="u" * 500), "user_id"),
    ("input_url too long", example("image_uploaded", input_url="x" * 3000), "input_url"),
    ("experiment key with spaces", example("tool_selected", experiments={"bad key": "a"}), "experiments"),
    # bad UUIDs
    ("event_id not a uuid", example("tool_selected", event_id="123"), "event_id"),
    ("input_id not a uuid", example("tool_selected", input_id="img-1"), "input_id"),
    ("job_id not a uuid", example("image_saved", job_id="job-1"), "job_id"),
    # timestamps
    ("client_ts far in the future", example("tool_selected", client_ts=FUTURE, sent_at=FUTURE), "client_ts"),
    ("sent_at far in the future", example("tool_selected", sent_at=FUTURE), "sent_at"),
    ("client_ts in 1999", example("tool_selected", client_ts="1999-01-01T00:00:00+00:00"), "client_ts"),
    ("client_ts without a zone", example("tool_selected", client_ts="2026-11-26T10:00:00"), "client_ts"),
    (
        "client_ts after sent_at",
        example("tool_selected", client_ts="2026-11-26T10:00:10+00:00", sent_at="2026-11-26T10:00:00+00:00"),
        "client_ts",
    ),
    # unknown event types and shapes
    ("unknown event type", example("tool_selected", event_type="image_deleted"), "event_type"),
    ("event type with wrong case", example("tool_selected", event_type="TOOL_SELECTED"), "event_type"),
    ("event type not a string", example("tool_selected", event_type=7), "event_type"),
    ("not an object", ["tool_selected"], "event"),
    ("properties not an object", example("tool_selected", properties=[1], extra_field=1), "properties"),
]


@pytest.mark.parametrize(("case", "payload", "field"), INVALID, ids=[case for case, _, _ in INVALID])
def test_invalid_events_are_refused_naming_the_field(case: str, payload: Any, field: str) -> None:
    with pytest.raises(ContractError) as refused:
        parse_event(payload)
    fields = [error.field for error in refused.value.errors]
    assert any(f == field or f.startswith(field + ".") for f in fields), (case, refused.value.errors)
    assert field in str(refused.value)


def test_at_least_thirty_invalid_cases() -> None:
    assert len(INVALID) >= 30


def test_unknown_event_type_message_names_it() -> None:
    with pytest.raises(ContractError, match="image_deleted"):
        parse_event(example("tool_selected", event_type="image_deleted"))


def test_invalid_json_is_refused() -> None:
    with pytest.raises(ContractError, match="invalid JSON"):
        parse_event_json(b"{not json")


def test_every_error_is_reported_at_once() -> None:
    payload = example("score_submitted", score=9, job_id="nope")
    with pytest.raises(ContractError) as refused:
        parse_event(payload)
    assert {e.field for e in refused.value.errors} >= {"score", "job_id"}


def test_serialized_event_omits_unset_optionals() -> None:
    event = parse_event(example("tool_selected", user_id=None))
    assert "user_id" not in orjson.loads(event_to_json(event))
