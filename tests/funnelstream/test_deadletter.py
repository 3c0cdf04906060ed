"""Dead letters: encoded once for every stage, bounded, and replayable when not cut."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from funnelstream.contract import MAX_DEAD_LETTER_BYTES
from funnelstream.deadletter import (
    NotReplayable,
    dead_letter,
    decode,
    decode_payload,
    encode_payload,
    original_payload,
)
from funnelstream.errors import FieldError


@given(st.binary(max_size=2048))
def test_any_payload_comes_back_byte_for_byte(payload: bytes) -> None:
    letter = dead_letter(stage="stream", reason="contract violation", payload=payload)
    assert original_payload(decode(letter.encode())) == payload
    assert decode_payload(*encode_payload(payload)) == payload


def test_a_letter_keeps_where_and_why() -> None:
    failed_at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    letter = dead_letter(
        stage="loader",
        reason="no such tool",
        payload=b'{"a": 1}',
        errors=[FieldError("tool_id", "unknown")],
        original_key=b"device-1",
        topic="events.enriched",
        partition=3,
        offset=42,
        event_id="e-1",
        failed_at=failed_at,
    )
    back = decode(letter.encode())
    assert back == letter
    assert (back.stage, back.reason, back.failed_at) == ("loader", "no such tool", failed_at)
    assert (back.topic, back.partition, back.offset, back.original_key) == ("events.enriched", 3, 42, "device-1")
    assert back.errors == [FieldError("tool_id", "unknown")]
    assert back.payload == '{"a": 1}'
    assert back.payload_encoding == "utf-8"


def test_bytes_that_are_not_text_travel_as_base64() -> None:
    letter = dead_letter(stage="inference", reason="r", payload=b"\xff\x00\xfe")
    assert letter.payload_encoding == "base64"
    assert original_payload(letter) == b"\xff\x00\xfe"


@pytest.mark.parametrize("payload", [b"x" * (MAX_DEAD_LETTER_BYTES * 2), "é\n".encode() * MAX_DEAD_LETTER_BYTES])
def test_a_payload_too_large_is_cut_to_fit_and_not_replayable(payload: bytes) -> None:
    letter = dead_letter(stage="ingest", reason="r" * 5000, payload=payload, errors=[FieldError("f", "x")] * 100)
    encoded = letter.encode()
    assert len(encoded) <= MAX_DEAD_LETTER_BYTES
    assert letter.payload_truncated
    assert letter.payload_bytes == len(payload)
    assert len(letter.errors) == 20
    assert payload.decode().startswith(letter.payload)
    with pytest.raises(NotReplayable):
        original_payload(decode(encoded))
