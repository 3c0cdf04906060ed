from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, field_validator

from funnelstream.contract import EventType, parse_event_json
from funnelstream.errors import ContractError
from ingest.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from ingest.pipeline import (
    SentSchemaError,
    Stamp,
    as_sent_schema,
    decode_body,
    decode_json,
    prepare_batch,
    prepare_event,
    read_valid_batch,
    read_valid_event,
    stamp_valid_events,
    truncate_ip,
)
from tests.helpers.examples import example


def stamp(**overrides: object) -> Stamp:
    values: dict[str, object] = {
        "received_at": datetime.now(UTC),
        "source": "web",
        "ip": "192.0.2.0",
        "user_agent": "UA/1",
        "late_limit": timedelta(days=7),
        "future_tolerance": timedelta(seconds=5),
    }
    values.update(overrides)
    return Stamp(**values)  # type: ignore[arg-type]


def test_decode_body_reads_json_gzip_and_text_plain() -> None:
    body = orjson.dumps({"batch": [1]})
    assert decode_body(body, "application/json", None, 1000) == {"batch": [1]}
    assert decode_body(body, "text/plain;charset=UTF-8", None, 1000) == {"batch": [1]}
    assert decode_body(gzip.compress(body), None, "gzip", 1000) == {"batch": [1]}
    with pytest.raises(UnsupportedMediaType):
        decode_body(body, "multipart/form-data", None, 1000)
    with pytest.raises(UnsupportedMediaType):
        decode_body(body, None, "br", 1000)
    with pytest.raises(BadRequest):
        decode_body(gzip.compress(body)[:-6], None, "gzip", 1000)
    with pytest.raises(PayloadTooLarge):
        decode_body(gzip.compress(b" " * 5000 + body), None, "gzip", 1000)


def test_a_body_nested_past_the_reader_limit_is_read_with_the_deep_values_cut() -> None:
    deep = b"[" * 3000 + b'"]\\"{"' + b"]" * 3000
    body = b'{"batch":[{"a":"[{"},{"p":' + deep + b'},{"b":1}]}'
    with pytest.raises(BadRequest, match="depth"):
        decode_json(body)
    events = decode_json(body, prune_deep=True)["batch"]
    assert events[0] == {"a": "[{"} and events[2] == {"b": 1}
    value, levels = events[1]["p"], 0
    while isinstance(value, list):
        value, levels = value[0], levels + 1
    assert value == "<nested too deep>" and 32 < levels < 1000
    # Not JSON once cut (an unterminated string, a trailing backslash): still a 400, not a hang.
    for broken in (b"[" * 1100 + b'"' + b'\\"' * 1000, b"[" * 1100 + b"\\"):
        with pytest.raises(BadRequest):
            decode_json(broken, prune_deep=True)


@pytest.mark.parametrize(
    ("address", "truncated"),
    [
        ("203.0.113.77", "203.0.113.0"),
        ("2001:db8:abcd:12:1:2:3:4", "2001:db8:abcd::"),
        ("::ffff:198.51.100.9", "198.51.100.0"),
        ("localhost", None),
    ],
)
def test_truncate_ip(address: str, truncated: str | None) -> None:
    assert truncate_ip(address) == truncated


def test_prepare_event_serializes_what_the_contract_reads_back() -> None:
    event, value = prepare_event(example("inference_completed"), stamp(), 32_768)
    again = parse_event_json(value)
    assert again == event
    assert again.source == "web" and again.context.ip == "192.0.2.0" and again.context.user_agent == "Mozilla/5.0"


def test_timestamps_the_fast_parser_skips_are_still_stamped() -> None:
    # fromisoformat in Python 3.11 refuses a 'T'-less, comma-decimal form pydantic may accept;
    # whichever path runs, the stored event has event_ts by the skew rule.
    now = datetime.now(UTC)
    raw = example("image_saved", client_ts=int((now - timedelta(seconds=10)).timestamp()), sent_at=now.isoformat())
    event, _ = prepare_event(raw, stamp(received_at=now), 32_768)
    assert event.event_ts is not None
    assert abs((now - event.event_ts) - timedelta(seconds=10)) < timedelta(seconds=1)
    assert event.timestamp_flag == "ok"


def test_prepare_event_names_the_field() -> None:
    with pytest.raises(ContractError) as refused:
        prepare_event(example("tool_selected", tool_id="three"), stamp(), 32_768)
    assert refused.value.errors[0].field == "tool_id"


def _careful(raw: Any, at: Stamp) -> bytes | None:
    try:
        return prepare_event(raw, at, 32_768)[1]
    except ContractError:
        return None


FINITE_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=6,
)


@st.composite
def sent_events(draw: st.DrawFn) -> dict[str, Any]:
    """Events as senders write them: valid mostly, in the forms the contract reads."""
    now = datetime.now(UTC)
    event = example(draw(st.sampled_from(list(EventType))))
    if draw(st.booleans()):
        event["event_id"] = event["event_id"].upper()
    offset = draw(st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))]))
    client_ts = (now - timedelta(seconds=draw(st.integers(0, 30 * 24 * 3600)))).astimezone(offset)
    event["client_ts"] = client_ts.isoformat().replace("+00:00", draw(st.sampled_from(["Z", "+00:00"])))
    sent_at = draw(st.sampled_from(["device clock", "late device clock", "absent", "null"]))
    if sent_at == "absent":
        del event["sent_at"]
    elif sent_at == "null":
        event["sent_at"] = None
    else:
        ahead = timedelta(hours=3) if sent_at == "late device clock" else timedelta(0)
        event["sent_at"] = (client_ts + ahead + timedelta(seconds=draw(st.integers(0, 60)))).isoformat()
    if draw(st.booleans()):
        event["properties"] = draw(st.dictionaries(st.text(max_size=5), FINITE_JSON, max_size=3))
    context = dict(event["context"])
    context["ip"] = draw(st.sampled_from([None, "203.0.113.77", " 2001:db8::1 ", "not-an-address"]))
    if context["ip"] is None:
        del context["ip"]
    if draw(st.booleans()):
        context["screen"] = draw(FINITE_JSON)
    if draw(st.booleans()):
        del context["user_agent"]
    event["context"] = context
    unusual = draw(
        st.sampled_from(
            [
                *(None, None, None, "unknown field", "server field", "write key", "invalid", "too large"),
                *("id form", "clock before 2015", "clock past a year ahead", "sent before the event"),
            ]
        )
    )
    if unusual == "unknown field":
        event["plan"] = "pro"
    elif unusual == "server field":
        event[draw(st.sampled_from(["received_at", "event_ts", "timestamp_flag", "source"]))] = draw(
            st.sampled_from(["2020-01-01T00:00:00Z", "ok", "web", 3])
        )
    elif unusual == "write key":
        event["writeKey"] = "k"
    elif unusual == "invalid":
        event["anonymous_id"] = ""
    elif unusual == "too large":
        event["properties"] = {"blob": "x" * 33_000}
    elif unusual == "id form":
        # Forms the contract reads and writes back canonical.
        uuid = UUID(event["event_id"])
        event["event_id"] = draw(st.sampled_from([uuid.hex, f"{{{uuid}}}", f"urn:uuid:{uuid}", str(uuid).upper()]))
    elif unusual == "clock before 2015":
        event["client_ts"] = "2014-12-31T23:59:59.999999+00:00"
    elif unusual == "clock past a year ahead":
        event[draw(st.sampled_from(["client_ts", "sent_at"]))] = (now + timedelta(days=366)).isoformat()
    elif unusual == "sent before the event":
        event["sent_at"] = (client_ts - timedelta(seconds=draw(st.sampled_from([1.5, 3600])))).isoformat()
    return event


@given(events=st.lists(sent_events(), min_size=1, max_size=6), batch_sent_at=st.booleans())
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_the_fast_paths_write_what_the_careful_path_writes(events: list[dict[str, Any]], batch_sent_at: bool) -> None:
    """Whole-batch validation is only a shortcut: it takes a batch only when every event in it is
    valid as sent, and then writes byte for byte what event-by-event stamping and validation write."""
    at = stamp(batch_sent_at=datetime.now(UTC).isoformat() if batch_sent_at else None)
    body = orjson.dumps({"batch": events, "sent_at": at.batch_sent_at})
    careful = [_careful(raw, at) for raw in events]

    from_json = read_valid_batch(body)
    if from_json is not None:
        messages = stamp_valid_events(from_json.events, at, "raw", 32_768)
        if messages is None:
            assert None in careful, "the fast path left a batch the careful path stores whole"
        else:
            assert [value for _, _, value in messages] == careful
            assert [key for _, key, _ in messages] == [raw["anonymous_id"].strip().encode() for raw in events]

    from_dicts = prepare_batch(
        orjson.loads(body)["batch"], at, events_topic="raw", dlq_topic="dlq", max_event_bytes=32_768
    )
    stored = iter(value for topic, _, value in from_dicts.messages if topic == "raw")
    assert [next(stored) if value is not None else None for value in careful] == careful
    assert [r.index for r in from_dicts.rejections] == [i for i, value in enumerate(careful) if value is None]


def test_the_fast_path_takes_every_ordinary_event_type() -> None:
    """What a tracker sends every day must not fall to the careful path: that is the fast path's point."""
    now = datetime.now(UTC)
    events = [
        example(kind, client_ts=(now - timedelta(seconds=3)).isoformat(), sent_at=now.isoformat()) for kind in EventType
    ]
    parsed = read_valid_batch(orjson.dumps({"batch": events}))
    assert parsed is not None
    at = stamp()
    messages = stamp_valid_events(parsed.events, at, "raw", 32_768)
    assert messages is not None
    assert [value for _, _, value in messages] == [_careful(raw, at) for raw in events]


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"123456789012345678901234567890"])
def test_numbers_the_careful_reader_refuses_or_rounds_are_left_to_it(literal: bytes) -> None:
    event = orjson.dumps(example("tool_selected", properties={"x": 0}))
    body = b'{"batch": [' + event.replace(b'"x":0', b'"x":' + literal) + b"]}"
    assert b'"x":' + literal in body
    assert read_valid_batch(body) is None
    assert read_valid_event(event.replace(b'"x":0', b'"x":' + literal)) is None


def test_the_fast_path_refuses_to_derive_a_schema_from_a_validator_it_would_skip() -> None:
    """A check added to the contract must not silently stay out of the fast path."""

    class Checked(BaseModel):
        model_config = ConfigDict(extra="forbid")
        anonymous_id: str

        @field_validator("anonymous_id")
        @classmethod
        def _not_reserved(cls, value: str) -> str:
            if value == "reserved":
                raise ValueError("reserved")
            return value

    with pytest.raises(SentSchemaError, match="_not_reserved"):
        as_sent_schema(Checked.__pydantic_core_schema__, {})
