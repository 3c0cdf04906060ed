"""Dependencies shared by the non-hot routes."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from pydantic import ValidationError

from funnelstream.errors import FieldError
from ingest.access import Source
from ingest.schemas import ErrorBody
from ingest.state import state_of
from ingest.web import cross_origin


def authorized_source(request: Request) -> Source:
    """Checked before the body is read, so an unknown key is told 401 whatever it sent."""
    return state_of(request).access.admit(request.headers.get("x-write-key"), cross_origin(request), 1)


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
    from ingest.routes.events import ERROR_RESPONSES

    invalid = {"description": "The body or a parameter is not valid; each field is named"}
    return {code: {**ERROR_RESPONSES.get(code, invalid), "model": ErrorBody} for code in (422, *codes)}
