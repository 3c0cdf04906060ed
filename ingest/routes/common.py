"""Dependencies shared by the non-hot routes."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, cast

from fastapi import Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.types import Message, Receive

from funnelstream.errors import FieldError
from ingest.access import Source
from ingest.schemas import ErrorBody
from ingest.state import state_of
from ingest.web import cross_origin, read_body

# What each refusal status means, in the API's map of every route.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "Body is not JSON, not gzip, or not the expected shape"},
    401: {"description": "Missing or unknown write key"},
    403: {"description": "Origin not in the source's CORS allowlist"},
    415: {"description": "Content type other than JSON or text/plain, or unknown encoding"},
    413: {"description": "Body over 1 MB, batch over 500 events or over a rate limit's burst, or event over 32 KB"},
    429: {"description": "Rate limit of the key or client address exceeded, or too many unknown keys; see Retry-After"},
    503: {"description": "Kafka did not confirm the events; nothing was acknowledged. See Retry-After"},
}


def authorized_source(request: Request) -> Source:
    """Checked before the body is read, so an unknown key is told 401 whatever it sent."""
    state = state_of(request)
    return state.access.admit(request.headers.get("x-write-key"), cross_origin(request), 1, state.client_ip(request))


class KeyFirstRoute(APIRoute):
    """A route whose POST body is read only after its write key is admitted, and at most its limit.

    FastAPI reads a body model before any dependency runs, so ``Depends(authorized_source)`` alone
    would let a request without a key send (and the collector buffer) any body before its 401.
    Here the key, origin and rate are checked on the headers, then at most ``max_job_body_bytes``
    are read (413 past it), and FastAPI parses the body from memory. The endpoint takes the
    admitted source with ``Depends(admitted_source)``. Routes without a body run as they are.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if "POST" not in (self.methods or ()):
            return handler

        async def key_first(request: Request) -> Response:
            state = state_of(request)
            request.state.admitted_source = authorized_source(request)
            body = await read_body(request, state.config.max_job_body_bytes)
            return await handler(Request(request.scope, _replay(body, request.receive)))

        return key_first


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the body already read, then passes on (to see a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def admitted_source(request: Request) -> Source:
    """The source a :class:`KeyFirstRoute` admitted before it read the body."""
    return cast(Source, request.state.admitted_source)


def field_errors(exc: ValidationError) -> list[FieldError]:
    errors = []
    for err in exc.errors(include_url=False):
        field = ".".join(str(part) for part in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        # Model-level validators name their field at the start of the message.
        if not field and ":" in message and message.split(":", 1)[0].isidentifier():
            field, message = (part.strip() for part in message.split(":", 1))
        errors.append(FieldError(field or "body", message))
    return errors


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    invalid = {"description": "The body or a parameter is not valid; each field is named"}
    return {code: {**ERROR_RESPONSES.get(code, invalid), "model": ErrorBody} for code in (422, *codes)}
