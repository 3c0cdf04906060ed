"""The hot path: bytes in, validated and stamped Kafka messages out.

Each event is stamped while still a dict (``received_at``, ``event_ts`` by the skew rule,
``source``, truncated IP, user agent), validated once by the contract, and serialized once by
pydantic-core into the bytes Kafka stores.
"""

from __future__ import annotations

import ipaddress
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import orjson

from funnelstream.clock import correct_event_ts
from funnelstream.contract import Envelope, parse_event
from funnelstream.errors import ContractError, FieldError
from funnelstream.kafka import dead_letter
from ingest.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

WRITE_KEY_FIELD = "writeKey"
# Fields only the collector may set are dropped before validation, and a beacon's key is never stored.
DROPPED_FIELDS = frozenset({"received_at", "event_ts", "timestamp_flag", "source", WRITE_KEY_FIELD})
JSON_TYPES = frozenset({"application/json", "text/plain", ""})


def decode_body(body: bytes, content_type: str | None, content_encoding: str | None, max_bytes: int) -> Any:
    """gzip-decoded, size-checked JSON. ``text/plain`` is accepted: ``navigator.sendBeacon`` uses it
    to avoid a CORS preflight."""
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
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None


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
        corrected = correct_event_ts(
            client_ts=event.client_ts,
            sent_at=event.sent_at,
            received_at=stamp.received_at,
            late_limit=stamp.late_limit,
            future_tolerance=stamp.future_tolerance,
        )
        event = event.model_copy(update={"event_ts": corrected.event_ts, "timestamp_flag": corrected.flag})
    value: bytes = type(event).__pydantic_serializer__.to_json(event, exclude_none=True)
    if len(value) > max_event_bytes:
        raise ContractError([FieldError("event", f"event is {len(value)} bytes; the limit is {max_event_bytes}")])
    return event, value


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
