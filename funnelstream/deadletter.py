"""Dead letters: the one way a stage writes a message it cannot process, and reads one back.

Owns the payload encoding (UTF-8 text as is, other bytes as base64) and the size bound: an encoded
letter is at most :data:`MAX_DEAD_LETTER_BYTES`, a payload cut to fit is marked truncated with its
original size kept. A letter whose payload is not truncated gives back the original bytes.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Literal

import orjson

from funnelstream.contract import MAX_DEAD_LETTER_BYTES, DeadLetter
from funnelstream.errors import FieldError, FunnelstreamError

# Every field of a dead letter but its payload is bounded, so the payload gets what is left.
MAX_LETTER_ERRORS = 20
MAX_LETTER_FIELD = 256
MAX_LETTER_KEY = 512
MAX_LETTER_REASON = 1024

PayloadEncoding = Literal["utf-8", "base64"]


class NotReplayable(FunnelstreamError):
    """The letter's payload was cut to fit: the original bytes are not in it."""


def encode_payload(payload: bytes) -> tuple[str, PayloadEncoding]:
    """The payload as letter text: itself when it is UTF-8, else its base64."""
    try:
        return payload.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(payload).decode(), "base64"


def decode_payload(text: str, encoding: PayloadEncoding) -> bytes:
    """The inverse of :func:`encode_payload`."""
    return base64.b64decode(text, validate=True) if encoding == "base64" else text.encode("utf-8")


def dead_letter(
    *,
    stage: str,
    reason: str,
    payload: bytes,
    errors: Iterable[FieldError] = (),
    original_key: bytes | str | None = None,
    topic: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
    source: str | None = None,
    event_id: str | None = None,
    failed_at: datetime | None = None,
) -> DeadLetter:
    """The one way a stage builds a dead letter; :meth:`DeadLetter.encode` of it is at most
    :data:`MAX_DEAD_LETTER_BYTES`."""
    text, encoding = encode_payload(payload)
    key = original_key.decode("utf-8", "replace") if isinstance(original_key, bytes) else original_key
    letter = DeadLetter.model_validate(
        {
            "stage": stage,
            "reason": reason[:MAX_LETTER_REASON],
            "errors": [
                FieldError(e.field[:MAX_LETTER_FIELD], e.reason[:MAX_LETTER_REASON])
                for e in list(errors)[:MAX_LETTER_ERRORS]
            ],
            "payload": "",
            "payload_encoding": encoding,
            "original_key": None if key is None else key[:MAX_LETTER_KEY],
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "source": None if source is None else source[:MAX_LETTER_FIELD],
            "event_id": None if event_id is None else event_id[:MAX_LETTER_FIELD],
            "failed_at": failed_at or datetime.now(UTC),
        }
    )
    # Room for the payload as JSON text, and for the two fields that mark it truncated.
    room = MAX_DEAD_LETTER_BYTES - len(letter.encode()) - 64
    if len(orjson.dumps(text)) <= room:
        return letter.model_copy(update={"payload": text})
    # The longest prefix that fits once escaped (a character takes one to six bytes as JSON).
    low, high = 0, min(len(text), room)
    while low < high:
        middle = (low + high + 1) // 2
        if len(orjson.dumps(text[:middle])) <= room:
            low = middle
        else:
            high = middle - 1
    return letter.model_copy(update={"payload": text[:low], "payload_truncated": True, "payload_bytes": len(payload)})


def decode(value: bytes) -> DeadLetter:
    """The inverse of :meth:`DeadLetter.encode`; raises pydantic's ``ValidationError`` on anything else."""
    return DeadLetter.model_validate_json(value)


def original_payload(letter: DeadLetter) -> bytes:
    """The bytes the failed message carried, to replay it; :class:`NotReplayable` if they were cut."""
    if letter.payload_truncated:
        raise NotReplayable(f"payload cut from {letter.payload_bytes} bytes to fit the dead letter")
    return decode_payload(letter.payload, letter.payload_encoding)
