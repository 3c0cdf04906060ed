"""POST /v1/batch and POST /v1/event: the hot path.

They are plain Starlette routes: FastAPI's dependency resolution costs more per request than the
whole event pipeline of a single event. They are documented in the OpenAPI by ``OPENAPI_PATHS``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from funnelstream.errors import ContractError, FieldError
from ingest.access import AccessControl
from ingest.errors import BadRequest, IngestError, InvalidEvent, PayloadTooLarge
from ingest.pipeline import (
    WRITE_KEY_FIELD,
    PreparedBatch,
    Stamp,
    dead_letter_message,
    decode_json,
    inflate_body,
    prepare_batch,
    prepare_event,
    read_valid_batch,
    read_valid_event,
    stamp_valid_event,
    stamp_valid_events,
)
from ingest.routes.common import ERROR_RESPONSES
from ingest.state import state_of
from ingest.web import cors_headers, cross_origin, error_response, json_response, preflight, read_body

router = APIRouter(tags=["events"])

BODY_DESCRIPTION = (
    "JSON, optionally `Content-Encoding: gzip`. `text/plain` bodies are read as JSON too, so that "
    "`navigator.sendBeacon` works without a CORS preflight; beacons carry the key in `writeKey`."
)


def _write_key(request: Request, payload: dict[str, Any]) -> str | None:
    key = request.headers.get("x-write-key")
    if key:
        return key
    body_key = payload.get(WRITE_KEY_FIELD)
    return body_key if isinstance(body_key, str) else None


def _batch_payload(body: bytes, max_events: int, *, known: bool = False) -> tuple[dict[str, Any], list[Any]]:
    payload = decode_json(body, prune_deep=known)
    if not isinstance(payload, dict):
        raise BadRequest("body must be a JSON object", errors=[FieldError("batch", "field required")])
    events = payload.get("batch")
    if not isinstance(events, list) or not events:
        raise BadRequest(
            "batch must be a non-empty array", errors=[FieldError("batch", "expected a non-empty JSON array")]
        )
    if len(events) > max_events:
        raise PayloadTooLarge(f"batch holds {len(events)} events; the limit is {max_events}")
    return payload, events


async def _body(request: Request, max_bytes: int, *, inflated_limit: int) -> bytes:
    headers = request.headers
    return inflate_body(
        await read_body(request, max_bytes),
        headers.get("content-type"),
        headers.get("content-encoding"),
        inflated_limit,
    )


def refuse_unknown_header_key(access: AccessControl, header_key: str | None, client: str | None) -> bool:
    """Whether the X-Write-Key header names a known key; an unknown one is refused (401) before a
    byte of the body is read. Without the header the key may be a beacon's ``writeKey`` field, which
    only the body holds, so that body is read, at most its limit, before the key is checked."""
    access.check_client(client)
    if not header_key:
        return False
    if access.knows(header_key):
        return True
    access.authenticate(header_key, client)  # raises Unauthorized and charges the address
    return False


async def post_batch(request: Request) -> Response:
    state = state_of(request)
    config = state.config
    hot = state.hot
    headers = request.headers
    origin = cross_origin(request)

    def prepare(events: list[Any], stamp: Stamp) -> PreparedBatch:
        # Every event of a request that is not stored whole: validated one by one, refusals by index.
        return prepare_batch(
            events,
            stamp,
            events_topic=config.events_topic,
            dlq_topic=config.dlq_topic,
            max_event_bytes=config.max_event_bytes,
        )

    access = state.access
    client = state.client_ip(request)
    try:
        header_key = headers.get("x-write-key")
        known = refuse_unknown_header_key(access, header_key, client)
        body = await _body(request, config.max_body_bytes, inflated_limit=config.max_body_bytes)
        # Only a known sender's body is validated before the checks that refuse it without reading it.
        valid = read_valid_batch(body) if known else None
        if valid is not None and 0 < len(valid.events) <= config.max_batch_events:
            source = access.admit(header_key, origin, len(valid.events), client)
            stamp = state.stamp(request, source, valid.sent_at)
            messages = stamp_valid_events(valid.events, stamp, config.events_topic, config.max_event_bytes)
            if messages is not None:
                prepared = PreparedBatch(messages, len(messages))
            else:
                prepared = prepare(_batch_payload(body, config.max_batch_events)[1], stamp)
        else:
            payload, events = _batch_payload(body, config.max_batch_events, known=known)
            source = access.admit(_write_key(request, payload), origin, len(events), client)
            prepared = prepare(events, state.stamp(request, source, payload.get("sent_at")))
        waited = await state.producer.send(prepared.messages)
    except IngestError as exc:
        state.metrics.requests.labels("batch", str(exc.status_code)).inc()
        state.metrics.rejected.labels(exc.code).inc()
        return error_response(exc, access, origin)
    hot.produce_latency.observe(waited)
    hot.batch_accepted.inc()
    hot.accepted(source.name).inc(prepared.accepted)
    if prepared.rejections:
        hot.invalid_events.inc(len(prepared.rejections))
    answer = {
        "accepted": prepared.accepted,
        "rejected": [
            {
                "index": r.index,
                "event_id": r.event_id,
                "errors": [{"field": e.field, "reason": e.reason} for e in r.errors],
            }
            for r in prepared.rejections
        ],
    }
    return json_response(answer, 202, cors_headers(access, origin))


async def post_event(request: Request) -> Response:
    state = state_of(request)
    config = state.config
    hot = state.hot
    headers = request.headers
    origin = cross_origin(request)
    access = state.access
    client = state.client_ip(request)
    try:
        header_key = headers.get("x-write-key")
        known = refuse_unknown_header_key(access, header_key, client)
        body = await _body(request, config.max_body_bytes, inflated_limit=config.max_event_bytes)
        message = None
        event = read_valid_event(body) if known else None
        if event is not None:
            source = access.admit(header_key, origin, 1, client)
            stamp = state.stamp(request, source)
            stamped = stamp_valid_event(event, stamp)
            if stamped is not None and len(stamped[2]) <= config.max_event_bytes:
                event_id, key, value = stamped
                message = (config.events_topic, key, value)
            raw = None
        else:
            raw = decode_json(body, prune_deep=known)
            if not isinstance(raw, dict):
                raise BadRequest("body must be one JSON object", errors=[FieldError("event", "expected a JSON object")])
            source = access.admit(_write_key(request, raw), origin, 1, client)
            stamp = state.stamp(request, source)
        if message is None:
            # An event the fast path did not take: stamped and validated as a dict, reported by field.
            raw = decode_json(body) if raw is None else raw
            try:
                accepted, value = prepare_event(raw, stamp, config.max_event_bytes)
            except ContractError as exc:
                await state.producer.send([dead_letter_message(raw, exc.errors, stamp, config.dlq_topic)])
                hot.invalid_events.inc()
                raise InvalidEvent("the event does not follow the contract", errors=exc.errors) from None
            message = (config.events_topic, accepted.anonymous_id.encode(), value)
            event_id = str(accepted.event_id)
        waited = await state.producer.send([message])
    except IngestError as exc:
        state.metrics.requests.labels("event", str(exc.status_code)).inc()
        if not isinstance(exc, InvalidEvent):
            state.metrics.rejected.labels(exc.code).inc()
        return error_response(exc, access, origin)
    hot.produce_latency.observe(waited)
    hot.event_accepted.inc()
    hot.accepted(source.name).inc()
    return json_response({"accepted": 1, "event_id": str(event_id)}, 202, cors_headers(access, origin))


async def events_preflight(request: Request) -> Response:
    return preflight(state_of(request).access, request, "POST")


for _path, _endpoint in (("/v1/batch", post_batch), ("/v1/event", post_event)):
    router.add_route(_path, _endpoint, methods=["POST"], include_in_schema=False)
    router.add_route(_path, events_preflight, methods=["OPTIONS"], include_in_schema=False)


def _operation(summary: str, description: str, body_schema: str, accepted_schema: str) -> dict[str, Any]:
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    responses: dict[str, Any] = {
        "202": {
            "description": "Stored in Kafka",
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{accepted_schema}"}}},
        }
    }
    for status, response in ERROR_RESPONSES.items():
        responses[str(status)] = {**response, "content": error}
    return {
        "tags": ["events"],
        "summary": summary,
        "description": description + " " + BODY_DESCRIPTION,
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body_schema}"}}},
        },
        "responses": responses,
    }


OPENAPI_PATHS: dict[str, dict[str, Any]] = {
    "/v1/batch": {
        "post": _operation(
            "Send up to 500 events",
            "202 means every accepted event is stored in Kafka (acks=all). Invalid events do not cost the "
            "others: each is reported by index with its field errors and written to events.dlq.",
            "BatchRequest",
            "BatchAccepted",
        )
    },
    "/v1/event": {
        "post": {
            **_operation(
                "Send one event",
                "202 means the event is stored in Kafka. An invalid event is answered 422 with its field "
                "errors and written to events.dlq.",
                "EventRequest",
                "EventAccepted",
            ),
        }
    },
}
OPENAPI_PATHS["/v1/event"]["post"]["responses"]["422"] = {
    "description": "The event does not follow the contract; it is in events.dlq",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
}
