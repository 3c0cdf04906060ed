"""The hot path: bytes in, validated and stamped Kafka messages out.

Two paths give the same messages. The fast one hands the whole body to pydantic-core, which
parses and validates every event in one call against the contract's models as the fast path reads
them (:data:`SENT_MODELS`), then applies the clock rule and stamps the fresh models
(``received_at``, ``event_ts`` by the skew rule, ``source``, truncated IP, user agent) and
serializes them. It serves bodies in which every event is valid and needs nothing moved: one
failure anywhere and the request takes the careful path, which stamps each event while still a
dict, moves unknown fields into ``properties``, validates it alone and reports it by index.
"""

from __future__ import annotations

import copy
import ipaddress
import math
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Any, Final, Union
from uuid import UUID

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError, create_model

from funnelstream.clock import CorrectedTime, SkewRule, correct_event_ts
from funnelstream.contract import EVENT_MODELS, Envelope, client_clock_problem, parse_event
from funnelstream.errors import ContractError, FieldError
from funnelstream.kafka import dead_letter
from ingest.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

WRITE_KEY_FIELD = "writeKey"
# Fields only the collector may set are dropped before validation, and a beacon's key is never stored.
DROPPED_FIELDS = frozenset({"received_at", "event_ts", "timestamp_flag", "source", WRITE_KEY_FIELD})
JSON_TYPES = frozenset({"application/json", "text/plain", ""})
# orjson reads integers within 64 bits exactly and larger ones as floats; pydantic-core reads any exactly.
_INT_RANGE: Final = range(-(2**63), 2**64)
_ORJSON_OPTIONS: Final = orjson.OPT_UTC_Z


def decode_body(body: bytes, content_type: str | None, content_encoding: str | None, max_bytes: int) -> Any:
    """gzip-decoded, size-checked JSON. ``text/plain`` is accepted: ``navigator.sendBeacon`` uses it
    to avoid a CORS preflight."""
    return decode_json(inflate_body(body, content_type, content_encoding, max_bytes))


def decode_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None


def inflate_body(body: bytes, content_type: str | None, content_encoding: str | None, max_bytes: int) -> bytes:
    """The body as JSON bytes: media type checked, gzip inflated within ``max_bytes``."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type not in JSON_TYPES:
        raise UnsupportedMediaType(f"content type {media_type!r}; send application/json or text/plain")
    encoding = (content_encoding or "").strip().lower()
    if encoding == "gzip":
        # Bounded inflation: a small gzip bomb must not cost more than the size limit.
        inflater = zlib.decompressobj(wbits=31)
        try:
            body = inflater.decompress(body, max_bytes + 1)
        except zlib.error as exc:
            raise BadRequest(f"body is not valid gzip: {exc}") from None
        if len(body) > max_bytes or inflater.unconsumed_tail:
            raise PayloadTooLarge(f"decompressed body exceeds {max_bytes} bytes")
        if not inflater.eof:
            raise BadRequest("body is truncated gzip")
    elif encoding not in ("", "identity"):
        raise UnsupportedMediaType(f"content encoding {encoding!r}; send gzip or identity")
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"body exceeds {max_bytes} bytes")
    return body


@lru_cache(maxsize=4096)
def truncate_ip(address: str, ipv4_prefix: int = 24, ipv6_prefix: int = 48) -> str | None:
    """The network of an address, never the address itself; None for something that is not one."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = ipv4_prefix if ip.version == 4 else ipv6_prefix
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)


@dataclass(frozen=True, slots=True)
class Stamp:
    """What the collector knows about a request, applied to each of its events."""

    received_at: datetime
    source: str
    ip: str | None
    user_agent: str | None
    late_limit: timedelta
    future_tolerance: timedelta
    ipv4_prefix: int = 24
    ipv6_prefix: int = 48
    batch_sent_at: Any = None

    def skew_rule(self) -> SkewRule:
        return SkewRule.at(self.received_at, self.late_limit, self.future_tolerance)


@dataclass(slots=True)
class Rejection:
    index: int
    event_id: str | None
    errors: list[FieldError]


@dataclass(slots=True)
class PreparedBatch:
    messages: list[tuple[str, bytes | None, bytes]] = field(default_factory=list)
    accepted: int = 0
    rejections: list[Rejection] = field(default_factory=list)


def _aware(value: Any) -> datetime | None:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo is not None else None
    return None


def _stamped(raw: dict[str, Any], stamp: Stamp) -> dict[str, Any]:
    event = raw.copy()
    if not DROPPED_FIELDS.isdisjoint(event):
        for key in DROPPED_FIELDS.intersection(event):
            del event[key]
    event["received_at"] = stamp.received_at
    event["source"] = stamp.source
    if "sent_at" not in event and stamp.batch_sent_at is not None:
        event["sent_at"] = stamp.batch_sent_at
    context = event.get("context")
    if context is None or isinstance(context, dict):
        context = dict(context) if context else {}
        client_ip = context.get("ip")
        # A server-side sender passes its end user's address in context.ip; it is truncated too.
        ip = truncate_ip(client_ip, stamp.ipv4_prefix, stamp.ipv6_prefix) if isinstance(client_ip, str) else stamp.ip
        if ip is None:
            context.pop("ip", None)
        else:
            context["ip"] = ip
        if stamp.user_agent and not context.get("user_agent"):
            context["user_agent"] = stamp.user_agent
        event["context"] = context
    # The skew rule needs both device readings; computed here so the event is validated only once.
    client_ts = _aware(event.get("client_ts"))
    raw_sent_at = event.get("sent_at")
    sent_at = None if raw_sent_at is None else _aware(raw_sent_at)
    if client_ts is not None and (sent_at is not None or raw_sent_at is None):
        try:
            corrected = correct_event_ts(
                client_ts=client_ts,
                sent_at=sent_at,
                received_at=stamp.received_at,
                late_limit=stamp.late_limit,
                future_tolerance=stamp.future_tolerance,
            )
        except OverflowError:
            # Readings centuries apart: the contract refuses them below, with the field named.
            return event
        event["event_ts"] = corrected.event_ts
        event["timestamp_flag"] = corrected.flag
    return event


def prepare_event(raw: Any, stamp: Stamp, max_event_bytes: int) -> tuple[Envelope, bytes]:
    """Stamp, validate and serialize one event; raises :class:`ContractError` naming each field."""
    if not isinstance(raw, dict):
        raise ContractError([FieldError("event", f"expected a JSON object, got {type(raw).__name__}")])
    event = parse_event(_stamped(raw, stamp))
    if event.event_ts is None:
        # A timestamp form fromisoformat does not read but the contract does: stamp after validation.
        corrected = _corrected_ts(event, stamp)
        event = event.model_copy(update={"event_ts": corrected.event_ts, "timestamp_flag": corrected.flag})
    value = event_bytes(event)
    if len(value) > max_event_bytes:
        raise ContractError([FieldError("event", f"event is {len(value)} bytes; the limit is {max_event_bytes}")])
    return event, value


def event_bytes(event: BaseModel) -> bytes:
    """What ``events.raw`` carries for a validated, stamped event: every field of the contract in
    its order, null ones included, UTC written as "Z", the context's extra keys after its fields.

    Both paths write through this one function, so they write the same bytes. Nulls are kept
    because leaving them out takes a pass over every field of every event (pydantic's
    exclude_none builds a dict per event; a comprehension costs as much): measured on the
    benchmark's 500-event batches, a fifth of the fast path's time per event, against 7% more
    bytes per event before compression. Readers parse events with the contract, where a null and
    an absent optional field are the same.
    """
    value: bytes = orjson.dumps(event.__dict__, default=_fields_of, option=_ORJSON_OPTIONS)
    return value


def _fields_of(model: Any) -> dict[str, Any]:
    """orjson's hook for the nested context model: its fields, then the keys trackers added."""
    if not isinstance(model, BaseModel):
        raise TypeError(f"{type(model).__name__} is not JSON serializable")
    extra = model.__pydantic_extra__
    fields: dict[str, Any] = model.__dict__
    return {**fields, **extra} if extra else fields


def dead_letter_message(
    raw: Any, errors: list[FieldError], stamp: Stamp, dlq_topic: str
) -> tuple[str, bytes | None, bytes]:
    """The DLQ record of a refused event: original payload, every field error, source."""
    key = raw.get("anonymous_id") if isinstance(raw, dict) else None
    key = key if isinstance(key, str) else None
    event_id = raw.get("event_id") if isinstance(raw, dict) else None
    payload = raw if not isinstance(raw, dict) else {k: v for k, v in raw.items() if k != WRITE_KEY_FIELD}
    record = dead_letter(
        stage="ingest",
        reason="; ".join(str(error) for error in errors)[:1024] or "invalid event",
        payload=orjson.dumps(payload),
        errors=errors,
        original_key=key,
        source=stamp.source,
        event_id=event_id if isinstance(event_id, str) else None,
    )
    return dlq_topic, key.encode() if key else None, record.model_dump_json(exclude_none=True).encode()


def prepare_batch(
    events: list[Any], stamp: Stamp, *, events_topic: str, dlq_topic: str, max_event_bytes: int
) -> PreparedBatch:
    """Valid events become messages for ``events_topic``; each invalid one a rejection and a DLQ record."""
    valid = _validate_all(events, stamp.batch_sent_at)
    if valid is not None:
        messages = stamp_valid_events(valid, stamp, events_topic, max_event_bytes)
        if messages is not None:
            return PreparedBatch(messages, len(messages))
    batch = PreparedBatch()
    messages = batch.messages
    for index, raw in enumerate(events):
        try:
            event, value = prepare_event(raw, stamp, max_event_bytes)
        except ContractError as exc:
            event_id = raw.get("event_id") if isinstance(raw, dict) else None
            batch.rejections.append(Rejection(index, event_id if isinstance(event_id, str) else None, exc.errors))
            messages.append(dead_letter_message(raw, exc.errors, stamp, dlq_topic))
            continue
        messages.append((events_topic, event.anonymous_id.encode(), value))
        batch.accepted += 1
    return batch


# --- the fast path -----------------------------------------------------------------------------

# The canonical text of a UUID, the form the contract writes; any other form takes the careful path.
CANONICAL_UUID = Annotated[
    str, StringConstraints(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
]
_UUID_FIELD_TYPES: Final[dict[Any, Any]] = {UUID: CANONICAL_UUID, UUID | None: CANONICAL_UUID | None}


def _as_sent(model: type[Envelope]) -> type[BaseModel]:
    """The contract's ``model`` as the fast path reads it, field for field: ids stay the canonical
    text they are written as, and the clock rule runs in the stamping loop instead of as a model
    validator. Building three ``uuid.UUID`` objects and calling back into Python for the clock
    rule made up a third of validating an event; a value these models take, the contract takes
    and writes back unchanged."""
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        fields[name] = (_UUID_FIELD_TYPES.get(info.annotation, info.annotation), copy.copy(info))
    return create_model(f"Sent{model.__name__}", __config__=model.model_config, **fields)


SENT_MODELS: Final[tuple[type[BaseModel], ...]] = tuple(_as_sent(model) for model in EVENT_MODELS.values())
if TYPE_CHECKING:
    SentEvent = BaseModel
else:
    SentEvent = Annotated[Union[SENT_MODELS], Field(discriminator="event_type")]  # noqa: UP007
SENT_ADAPTER: Final[TypeAdapter[BaseModel]] = TypeAdapter(SentEvent)
SENT_LIST_ADAPTER: Final[TypeAdapter[list[BaseModel]]] = TypeAdapter(list[SentEvent])


class BatchBody(BaseModel):
    """A POST /v1/batch body whose events are all valid as sent; other top-level fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    batch: list[SentEvent]
    sent_at: Any = None
    write_key: Any = Field(default=None, alias=WRITE_KEY_FIELD)


def read_valid_batch(body: bytes) -> BatchBody | None:
    """The body parsed and every event validated by pydantic-core in one call; None when any part
    needs the careful path (an invalid event, an unknown field, a key or stamp sent by the client)."""
    try:
        parsed = BatchBody.model_validate_json(body)
    except ValidationError:
        return None
    for event in parsed.batch:
        if event.__dict__["sent_at"] is None and parsed.sent_at is not None:
            # The batch's sent_at is part of what the contract checks in such an event.
            return None
        if not _read_alike(event):
            return None
    return parsed


def read_valid_event(body: bytes) -> BaseModel | None:
    """One event parsed and validated from its JSON bytes, or None for the careful path."""
    try:
        event = SENT_ADAPTER.validate_json(body)
    except ValidationError:
        return None
    return event if _read_alike(event) else None


def _read_alike(event: BaseModel) -> bool:
    """Whether the careful path's JSON reader (orjson) reads this event's free-form values alike:
    pydantic-core also reads NaN, Infinity, overflowing numbers and integers past 64 bits, which
    orjson refuses or rounds. Typed fields need no check: the contract bounds every number in them."""
    fields = event.__dict__
    properties = fields["properties"]
    extra = fields["context"].__pydantic_extra__
    return (not properties or _plain_json(properties)) and (not extra or _plain_json(extra))


def _validate_all(events: list[Any], batch_sent_at: Any) -> list[BaseModel] | None:
    if batch_sent_at is not None:
        events = [
            {**event, "sent_at": batch_sent_at} if isinstance(event, dict) and "sent_at" not in event else event
            for event in events
        ]
    try:
        return SENT_LIST_ADAPTER.validate_python(events)
    except ValidationError:
        return None


def stamp_valid_events(
    events: Sequence[BaseModel], stamp: Stamp, events_topic: str, max_event_bytes: int
) -> list[tuple[str, bytes | None, bytes]] | None:
    """Messages for events validated a moment ago by this module; None when one of them breaks the
    clock rule or is over the size limit, which the careful path reports by index."""
    now_s = time.time()
    rule = stamp.skew_rule()
    for event in events:
        if not _stamp_in_place(event, stamp, rule, now_s):
            return None
    messages: list[tuple[str, bytes | None, bytes]] = []
    append = messages.append
    for event in events:
        value = event_bytes(event)
        if len(value) > max_event_bytes:
            return None
        append((events_topic, event.__dict__["anonymous_id"].encode(), value))
    return messages


def stamp_valid_event(event: BaseModel, stamp: Stamp) -> tuple[str, bytes, bytes] | None:
    """``(event_id, key, value)`` of a freshly validated event, stamped and serialized to the bytes
    the careful path would write; None when it breaks the clock rule."""
    if not _stamp_in_place(event, stamp, stamp.skew_rule(), time.time()):
        return None
    fields = event.__dict__
    return fields["event_id"], fields["anonymous_id"].encode(), event_bytes(event)


def _corrected_ts(event: Envelope, stamp: Stamp) -> CorrectedTime:
    return correct_event_ts(
        client_ts=event.client_ts,
        sent_at=event.sent_at,
        received_at=stamp.received_at,
        late_limit=stamp.late_limit,
        future_tolerance=stamp.future_tolerance,
    )


def _stamp_in_place(event: BaseModel, stamp: Stamp, rule: SkewRule, now_s: float) -> bool:
    """Apply the clock rule, then write the collector's fields into the model; False, and nothing
    written, when the rule refuses the event.

    The model was made by this module's validation and nothing else holds it yet, so the fields
    are written in place: the models are frozen against accidental change, and copying each
    event twice (event, context) would cost more than validating it. The values written are the
    collector's own, within the contract's limits. The model is serialized and dropped next, so
    its record of which fields were set is left as validation made it.
    """
    fields = event.__dict__
    client_ts = fields["client_ts"]
    sent_at = fields["sent_at"]
    if client_clock_problem(client_ts, sent_at, now_s) is not None:
        return False
    fields["event_ts"], fields["timestamp_flag"] = rule.apply(client_ts, sent_at)
    fields["received_at"] = stamp.received_at
    fields["source"] = stamp.source
    context = fields["context"]
    context_fields = context.__dict__
    client_ip = context_fields["ip"]
    # A server-side sender passes its end user's address in context.ip; it is truncated too.
    context_fields["ip"] = (
        stamp.ip if client_ip is None else truncate_ip(client_ip, stamp.ipv4_prefix, stamp.ipv6_prefix)
    )
    if stamp.user_agent and not context_fields["user_agent"]:
        context_fields["user_agent"] = stamp.user_agent
    return True


def _plain_json(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, int):
        return value in _INT_RANGE
    if isinstance(value, dict):
        return all(_plain_json(item) for item in value.values())
    if isinstance(value, list):
        return all(_plain_json(item) for item in value)
    return True
