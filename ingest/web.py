"""Reading bodies, answering errors, and CORS headers, shared by the routes."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response

from ingest.access import AccessControl
from ingest.errors import IngestError, OriginRefused, PayloadTooLarge

PREFLIGHT_HEADERS = "Content-Type, Content-Encoding, X-Write-Key"
PREFLIGHT_MAX_AGE_S = "600"


def json_response(body: Any, status_code: int, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status_code, media_type="application/json", headers=headers)


def cross_origin(request: Request) -> str | None:
    """The request's Origin when it is another site's; a page served by the collector itself is not.

    Browsers send Origin on same-origin POSTs too, but CORS only governs cross-origin requests.
    """
    origin = request.headers.get("origin")
    if origin is not None and origin == f"{request.url.scheme}://{request.headers.get('host')}":
        return None
    return origin


def cors_headers(access: AccessControl, origin: str | None) -> dict[str, str]:
    """Headers that let a browser read the answer; only for origins some source accepts."""
    if origin is None or not access.is_known_origin(origin):
        return {}
    return {"access-control-allow-origin": origin, "vary": "Origin"}


def error_response(exc: IngestError, access: AccessControl, origin: str | None) -> Response:
    headers = {} if isinstance(exc, OriginRefused) else cors_headers(access, origin)
    if exc.retry_after_s is not None:
        headers["retry-after"] = str(exc.retry_after_s)
    return json_response(exc.body(), exc.status_code, headers)


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The raw body, refused with 413 as soon as it passes ``max_bytes`` (before reading it all)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"body of {declared} bytes exceeds {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"body exceeds {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def preflight(access: AccessControl, request: Request, methods: str) -> Response:
    """Preflights carry no key, so an origin passes here if any source accepts it; the request
    itself is then checked against its own source."""
    origin = request.headers.get("origin")
    if origin is None or not access.is_known_origin(origin):
        return Response(status_code=403)
    return Response(
        status_code=204,
        headers={
            "access-control-allow-origin": origin,
            "access-control-allow-methods": methods,
            "access-control-allow-headers": PREFLIGHT_HEADERS,
            "access-control-max-age": PREFLIGHT_MAX_AGE_S,
            "vary": "Origin",
        },
    )
