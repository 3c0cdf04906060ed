"""The hot path: bytes in, validated and stamped Kafka messages out.

Invariant: two paths give the same messages. The fast one validates the whole body in one
pydantic-core call against :data:`SENT_EVENT_SCHEMA` and stamps the fresh dicts (``received_at``,
``event_ts``, ``source``, truncated IP, user agent); one failure anywhere and the request takes the
careful path, which stamps and validates each event alone, moves unknown fields into ``properties``
and reports it by index.
"""

from __future__ import annotations

import ipaddress
import math
import re
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache, partial
from typing import Any, Final

import orjson
from pydantic import BaseModel, ValidationError
from pydantic_core import SchemaValidator, core_schema

from funnelstream.clock import SkewRule
from funnelstream.contract import (
    EVENT_MODELS,
    MAX_JSON_DEPTH,
    Context,
    Envelope,
    client_clock_problem,
    parse_event,
)
from funnelstream.deadletter import dead_letter
from funnelstream.errors import ContractError, FieldError
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


def decode_json(body: bytes, *, prune_deep: bool = False) -> Any:
    """The decoded body. With ``prune_deep``, a body nested past orjson's limit (1024 levels) is
    read with its too-deep values replaced by a marker, so the events around one such value are
    still read, and that event is refused by the contract's own (much smaller) nesting limit.
    The rescan is a Python loop over brackets, so only bodies with few of them get it."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if prune_deep and "depth limit" in str(exc) and body.count(b"[") + body.count(b"{") <= _PRUNE_MAX_OPENINGS:
            try:
                return orjson.loads(_pruned_json(body, _PRUNE_DEPTH))
            except orjson.JSONDecodeError:
                pass
        raise BadRequest(f"body is not valid JSON: {exc}") from None


# Deeper than any event may nest (MAX_JSON_DEPTH and the batch around it), far below orjson's limit.
_PRUNE_DEPTH: Final = 4 * MAX_JSON_DEPTH
# The next bracket outside strings: strings (an unterminated one runs to the end) and other bytes
# are skipped inside the regex engine, possessively, so a scan never backtracks or starts over.
_NEXT_BRACKET: Final = re.compile(rb'(?:"(?:[^"\\]++|\\.?)*+(?:"|\Z)|[^"\[\]{}]++)*+([\[\]{}])', re.DOTALL)
_TOO_DEEP: Final = b'"<nested too deep>"'
# A Python step per bracket, so this bounds the scan's time; a batch of 500 ordinary events opens a few thousand.
_PRUNE_MAX_OPENINGS: Final = 20_000


def _pruned_json(body: bytes, depth_limit: int) -> bytes:
    """``body`` with every object or array that opens deeper than ``depth_limit`` replaced by a
    marker string. Brackets inside strings do not count; the scan is linear in the body and
    runs only for bodies orjson refused as too deep."""
    pieces: list[bytes] = []
    depth = 0
    kept_from = 0
    cut_at = -1
    position = 0
    while (found := _NEXT_BRACKET.match(body, position)) is not None:
        at = found.start(1)
        position = found.end()
        if body[at] in b"[{":
            depth += 1
            if depth == depth_limit + 1:
                cut_at = at
        else:
            if depth == depth_limit + 1 and cut_at >= 0:
                pieces += (body[kept_from:cut_at], _TOO_DEEP)
                kept_from, cut_at = position, -1
            depth -= 1
    pieces.append(body[kept_from:])
    return b"".join(pieces)


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
            event["event_ts"], event["timestamp_flag"] = stamp.skew_rule().apply(client_ts, sent_at)
        except OverflowError:
            # Readings centuries apart: the contract refuses them below, with the field named.
            return event
    return event


def prepare_event(raw: Any, stamp: Stamp, max_event_bytes: int) -> tuple[Envelope, bytes]:
    """Stamp, validate and serialize one event; raises :class:`ContractError` naming each field."""
    if not isinstance(raw, dict):
        raise ContractError([FieldError("event", f"expected a JSON object, got {type(raw).__name__}")])
    event = parse_event(_stamped(raw, stamp))
    if event.event_ts is None:
        # A timestamp form fromisoformat does not read but the contract does: stamp after validation.
        event_ts, flag = stamp.skew_rule().apply(event.client_ts, event.sent_at)
        event = event.model_copy(update={"event_ts": event_ts, "timestamp_flag": flag})
    value = event_bytes(event.__dict__)
    if len(value) > max_event_bytes:
        raise ContractError([FieldError("event", f"event is {len(value)} bytes; the limit is {max_event_bytes}")])
    return event, value


def event_bytes(fields: dict[str, Any]) -> bytes:
    """What ``events.raw`` carries for a validated, stamped event, given its fields (a model's
    ``__dict__`` or the fast path's dict): every field of the contract in its order, null ones
    included, UTC written as "Z", the context's extra keys after its fields.

    Both paths write through this one function, so they write the same bytes. Nulls are kept
    because leaving them out takes a pass over every field of every event (pydantic's
    exclude_none builds a dict per event; a comprehension costs as much), which on the benchmark's
    batches cost more of the fast path's time than the few bytes per event it saves before
    compression. Readers parse events with the contract, where a null and
    an absent optional field are the same.
    """
    value: bytes = orjson.dumps(fields, default=_fields_of, option=_ORJSON_OPTIONS)
    return value


def _fields_of(model: Any) -> dict[str, Any]:
    """orjson's hook for the careful path's nested context model: its fields, then the keys
    trackers added."""
    if not isinstance(model, BaseModel):
        raise TypeError(f"{type(model).__name__} is not JSON serializable")
    extra = model.__pydantic_extra__
    fields: dict[str, Any] = model.__dict__
    return {**fields, **extra} if extra else fields


def dead_letter_message(
    raw: Any, errors: list[FieldError], stamp: Stamp, dlq_topic: str
) -> tuple[str, bytes | None, bytes]:
    """The DLQ record of a refused event: original payload, every field error, source; keyed by
    its device, as its valid neighbours are, with the key cut as the letter's ``original_key`` is."""
    key = raw.get("anonymous_id") if isinstance(raw, dict) else None
    key = key if isinstance(key, str) else None
    event_id = raw.get("event_id") if isinstance(raw, dict) else None
    payload = raw if not isinstance(raw, dict) else {k: v for k, v in raw.items() if k != WRITE_KEY_FIELD}
    record = dead_letter(
        stage="ingest",
        reason="; ".join(str(error) for error in errors)[:1024] or "invalid event",
        payload=_payload_bytes(payload),
        errors=errors,
        original_key=key,
        source=stamp.source,
        event_id=event_id if isinstance(event_id, str) else None,
    )
    letter_key = record.original_key
    return dlq_topic, letter_key.encode() if letter_key else None, record.encode()


def _payload_bytes(payload: Any) -> bytes:
    """The refused value as JSON; a value orjson cannot write (nested past its limit of 254) is
    written with its containers below the contract's nesting limit replaced by a marker."""
    try:
        return orjson.dumps(payload)
    except orjson.JSONEncodeError:
        return orjson.dumps(_pruned(payload, MAX_JSON_DEPTH * 2))


def _pruned(value: Any, depth: int) -> Any:
    if isinstance(value, dict):
        return {k: _pruned(v, depth - 1) for k, v in value.items()} if depth > 0 else "<nested too deep>"
    if isinstance(value, list):
        return [_pruned(v, depth - 1) for v in value] if depth > 0 else "<nested too deep>"
    return value


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
CANONICAL_UUID_PATTERN: Final = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
# Schema keys that hold nested schemas, in the kinds the contract is built from.
_NESTED_SCHEMA_KEYS: Final = ("schema", "items_schema", "keys_schema", "values_schema")


class SentSchemaError(TypeError):
    """The contract uses a construct the fast path's reading of it does not know how to carry over."""


# Validators the fast path applies in its own loop instead: the clock rule when stamping, the
# nesting limit of free-form JSON in :func:`_read_alike`, which walks those values anyway.
_LOOP_VALIDATORS: Final = frozenset(
    {"Envelope._client_clock_is_plausible", "Context._extra_keys_are_shallow", "_shallow_json"}
)


def _is_loop_validator(schema: Mapping[str, Any]) -> bool:
    function = schema.get("function", {}).get("function")
    return getattr(function, "__qualname__", None) in _LOOP_VALIDATORS


def as_sent_schema(schema: Mapping[str, Any], definitions: dict[str, Any]) -> Any:
    """The contract's core schema as the fast path reads it: the same fields, in the same order,
    with the same constraints and defaults, but validated into plain dicts instead of models, ids
    kept as the canonical text they are written as, and the clock rule and the nesting limit left
    to the loops that stamp and check each event.

    Measured in process on the benchmark's 500-event batches, building a model per event and one
    per context, with their fields-set records, and freeing them again, took a large share of the
    fast path's time per event. Derived from the
    models, not written beside them, so the two cannot drift apart; any validator other than the
    ones named in ``_LOOP_VALIDATORS`` stops the import instead of being skipped.
    """
    kind = schema["type"]
    if kind == "definitions":
        definitions.update({item["ref"]: item for item in schema["definitions"]})
        return as_sent_schema(schema["schema"], definitions)
    if kind == "definition-ref":
        return as_sent_schema(definitions[schema["schema_ref"]], definitions)
    if kind.startswith("function-"):
        if kind == "function-after" and _is_loop_validator(schema):
            return as_sent_schema(schema["schema"], definitions)
        raise SentSchemaError(f"the fast path cannot carry over the validator {schema.get('function')!r}")
    if kind == "uuid":
        return core_schema.str_schema(pattern=CANONICAL_UUID_PATTERN)
    if kind == "model":
        fields = schema["schema"]["fields"]
        return core_schema.typed_dict_schema(
            {
                name: core_schema.typed_dict_field(
                    as_sent_schema(item["schema"], definitions), required=item["schema"]["type"] != "default"
                )
                for name, item in fields.items()
            },
            extra_behavior=schema.get("config", {}).get("extra_fields_behavior", "ignore"),
        )
    sent = {key: value for key, value in schema.items() if key != "ref"}
    for key in _NESTED_SCHEMA_KEYS:
        if key in sent:
            sent[key] = as_sent_schema(sent[key], definitions)
    if kind == "default" and "default_factory" in sent and sent["schema"]["type"] == "typed-dict":
        # A nested model's default becomes the dict its reading of ``{}`` gives.
        sent["default_factory"] = partial(SchemaValidator(sent["schema"]).validate_python, {})
    choices = sent.get("choices")
    if isinstance(choices, dict):
        sent["choices"] = {tag: as_sent_schema(choice, definitions) for tag, choice in choices.items()}
    elif isinstance(choices, list):
        sent["choices"] = [
            (as_sent_schema(choice[0], definitions), choice[1])
            if isinstance(choice, tuple)
            else as_sent_schema(choice, definitions)
            for choice in choices
        ]
    if isinstance(sent.get("default"), BaseModel):
        raise SentSchemaError(f"the fast path cannot carry over the model default {sent['default']!r}")
    return sent


SENT_EVENT_SCHEMA: Final = core_schema.tagged_union_schema(
    {kind.value: as_sent_schema(model.__pydantic_core_schema__, {}) for kind, model in EVENT_MODELS.items()},
    discriminator="event_type",
)
SENT_EVENT: Final = SchemaValidator(SENT_EVENT_SCHEMA)
SENT_EVENTS: Final = SchemaValidator(core_schema.list_schema(SENT_EVENT_SCHEMA))
# A POST /v1/batch body whose events are all valid as sent; other top-level fields are ignored.
SENT_BATCH: Final = SchemaValidator(
    core_schema.typed_dict_schema(
        {
            "batch": core_schema.typed_dict_field(core_schema.list_schema(SENT_EVENT_SCHEMA)),
            "sent_at": core_schema.typed_dict_field(core_schema.any_schema(), required=False),
        },
        extra_behavior="ignore",
    )
)
_CONTEXT_FIELD_COUNT: Final = len(Context.model_fields)


@dataclass(slots=True)
class ValidBatch:
    events: list[dict[str, Any]]
    sent_at: Any


def read_valid_batch(body: bytes) -> ValidBatch | None:
    """The body parsed and every event validated by pydantic-core in one call; None when any part
    needs the careful path (an invalid event, an unknown field, a key or stamp sent by the client)."""
    try:
        parsed = SENT_BATCH.validate_json(body)
    except ValidationError:
        return None
    events: list[dict[str, Any]] = parsed["batch"]
    sent_at = parsed.get("sent_at")
    for event in events:
        if event["sent_at"] is None and sent_at is not None:
            # The batch's sent_at is part of what the contract checks in such an event.
            return None
        if not _read_alike(event):
            return None
    return ValidBatch(events, sent_at)


def read_valid_event(body: bytes) -> dict[str, Any] | None:
    """One event parsed and validated from its JSON bytes, or None for the careful path."""
    try:
        event: dict[str, Any] = SENT_EVENT.validate_json(body)
    except ValidationError:
        return None
    return event if _read_alike(event) else None


def _read_alike(event: dict[str, Any]) -> bool:
    """Whether the careful path's JSON reader (orjson) reads this event's free-form values alike:
    pydantic-core also reads NaN, Infinity, overflowing numbers and integers past 64 bits, which
    orjson refuses or rounds. Typed fields need no check: the contract bounds every number in them.
    The same walk checks the contract's nesting limit, which the careful path then reports."""
    properties = event["properties"]
    context = event["context"]
    return (not properties or _plain_json(properties, MAX_JSON_DEPTH)) and (
        len(context) == _CONTEXT_FIELD_COUNT or _plain_json(context, MAX_JSON_DEPTH)
    )


def _validate_all(events: list[Any], batch_sent_at: Any) -> list[dict[str, Any]] | None:
    if batch_sent_at is not None:
        events = [
            {**event, "sent_at": batch_sent_at} if isinstance(event, dict) and "sent_at" not in event else event
            for event in events
        ]
    try:
        valid: list[dict[str, Any]] = SENT_EVENTS.validate_python(events)
    except ValidationError:
        return None
    return valid if all(_read_alike(event) for event in valid) else None


def stamp_valid_events(
    events: Sequence[dict[str, Any]], stamp: Stamp, events_topic: str, max_event_bytes: int
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
        append((events_topic, event["anonymous_id"].encode(), value))
    return messages


def stamp_valid_event(event: dict[str, Any], stamp: Stamp) -> tuple[str, bytes, bytes] | None:
    """``(event_id, key, value)`` of a freshly validated event, stamped and serialized to the bytes
    the careful path would write; None when it breaks the clock rule."""
    if not _stamp_in_place(event, stamp, stamp.skew_rule(), time.time()):
        return None
    return event["event_id"], event["anonymous_id"].encode(), event_bytes(event)


def _stamp_in_place(event: dict[str, Any], stamp: Stamp, rule: SkewRule, now_s: float) -> bool:
    """Apply the clock rule, then write the collector's fields into the event; False, and nothing
    written, when the rule refuses it."""
    client_ts = event["client_ts"]
    sent_at = event["sent_at"]
    if client_clock_problem(client_ts, sent_at, now_s) is not None:
        return False
    event["event_ts"], event["timestamp_flag"] = rule.apply(client_ts, sent_at)
    event["received_at"] = stamp.received_at
    event["source"] = stamp.source
    context = event["context"]
    client_ip = context["ip"]
    # A server-side sender passes its end user's address in context.ip; it is truncated too.
    context["ip"] = stamp.ip if client_ip is None else truncate_ip(client_ip, stamp.ipv4_prefix, stamp.ipv6_prefix)
    if stamp.user_agent and not context["user_agent"]:
        context["user_agent"] = stamp.user_agent
    return True


def _plain_json(value: Any, depth: int) -> bool:
    """Numbers orjson reads alike, and containers at most ``depth`` levels deep."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, int):
        return value in _INT_RANGE
    if isinstance(value, dict):
        return depth > 0 and all(_plain_json(item, depth - 1) for item in value.values())
    if isinstance(value, list):
        return depth > 0 and all(_plain_json(item, depth - 1) for item in value)
    return True
