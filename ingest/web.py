"""Reading bodies, answering errors, and CORS headers, shared by the routes."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect

from ingest.access import AccessControl
from ingest.errors import IngestError, OriginRefused, PayloadTooLarge, RequestTimeout

PREFLIGHT_HEADERS = "Content-Type, Content-Encoding, X-Write-Key"
PREFLIGHT_MAX_AGE_S = "600"


def json_response(body: Any, status_code: int, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status_code, media_type="application/json", headers=headers)


def cross_origin(request: Request) -> str | None:
    """The request's Origin when it is another site's; a page served by the collector itself is not.

    Browsers send Origin on same-origin POSTs too, but CORS only governs cross-origin requests.
    The collector's own origins are the configured public ones and the address the connection
    arrived on; never one built from the Host header, which the client writes (with
    ``Host: evil.example``, ``Origin: http://evil.example`` would pass as same-origin).
    """
    origin = request.headers.get("origin")
    if origin is None:
        return None
    if origin in request.app.state.ingest.config.public_origins or origin == _arrival_origin(request.scope):
        return None
    return origin


def _arrival_origin(scope: Any) -> str | None:
    """The origin of the socket address the request arrived on, as a browser writes it."""
    server = scope.get("server")
    if not server or server[1] is None:
        return None
    host, port = server
    scheme = scope.get("scheme", "http")
    host = f"[{host}]" if ":" in host else host
    default_port = 443 if scheme == "https" else 80
    return f"{scheme}://{host}" if port == default_port else f"{scheme}://{host}:{port}"


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
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise PayloadTooLarge(f"body exceeds {max_bytes} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        # Gone, or cut off by the server's body timeout: the answer reaches no one, but is an answer.
        raise RequestTimeout("the connection closed before the body was complete") from None
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
