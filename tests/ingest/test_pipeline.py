from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from funnelstream.contract import parse_event_json
from funnelstream.errors import ContractError
from ingest.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from ingest.pipeline import Stamp, decode_body, prepare_event, truncate_ip
from tests.funnelstream.examples import example


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
