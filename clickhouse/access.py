"""The read-key gate in front of the query API: who may read the warehouse and how much they may send.

A pure ASGI layer around the whole app, so no route, docs page or metrics answer without it and
nothing of a body is read before the key is checked. Invariant: a request reaches the app only
from an address the wrong-key throttle lets through, with a read key whose SHA-256 is configured,
and with a body of at most its limit, which this layer has read and hands on; ``/healthz`` is the
one route without a key. FastAPI's own body parsing would read a body whole before any check.
"""

from __future__ import annotations

import hashlib
import hmac
import math

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clickhouse.settings import WarehouseSettings
from funnelstream.ratelimit import FailedKeyThrottle

OPEN_PATHS = frozenset({"/healthz"})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
"""Only these may carry a body; any other request's limit is zero bytes."""


class ReadKeyGate:
    """ASGI middleware: throttle, then read key, then the body limit, then the app."""

    def __init__(self, app: ASGIApp, settings: WarehouseSettings) -> None:
        self.app = app
        self.digests = tuple(bytes.fromhex(digest) for digest in settings.warehouse.read_key_sha256)
        self.max_body_bytes = settings.warehouse.max_body_bytes
        # The setting counts per minute, as people think of guesses; the bucket refills per second.
        self.throttle = FailedKeyThrottle(
            settings.warehouse.auth_failures_burst,
            settings.warehouse.auth_failures_per_minute / 60.0,
            settings.warehouse.auth_clients_tracked,
        )

    def knows(self, key: str) -> bool:
        digest = hashlib.sha256(key.encode("latin-1")).digest()
        # Every digest is compared, each in constant time: the answer's timing says nothing of which.
        known = False
        for candidate in self.digests:
            known |= hmac.compare_digest(digest, candidate)
        return known

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            # Lifespan passes; the API has no websocket routes, so any other kind is closed.
            if scope["type"] == "lifespan":
                await self.app(scope, receive, send)
            elif scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        if scope["path"] not in OPEN_PATHS:
            client = scope["client"][0] if scope.get("client") else ""
            wait_s = self.throttle.wait_s(client)
            if wait_s > 0:
                retry_after = (b"retry-after", str(math.ceil(wait_s)).encode())
                await _refuse(send, 429, "rate_limited", "too many wrong read keys from this address", retry_after)
                return
            key = _bearer(scope)
            if key is None or not self.knows(key):
                if key is not None:
                    self.throttle.charge(client)
                detail = "unknown read key" if key else "missing read key: send Authorization: Bearer <read key>"
                await _refuse(send, 401, "unauthorized", detail, (b"www-authenticate", b"Bearer"))
                return
        limit = self.max_body_bytes if scope["method"] in BODY_METHODS else 0
        try:
            body = await _read_body(scope, receive, limit)
        except _ClientGone:
            return
        if body is None:
            await _refuse(send, 413, "payload_too_large", f"request body over {limit} bytes", field="body")
            return
        await self.app(scope, _replay(body, receive), send)


class _ClientGone(Exception):
    """The client disconnected before its body was read; there is no one to answer."""


def _bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            return token if scheme.lower() == "bearer" and token else None
    return None


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """The whole body when it is at most ``limit`` bytes, else None, having read at most ``limit`` + one message."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                return None  # uvicorn refuses such a request itself; a bare ASGI server might not
            if declared > limit:
                return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _refuse(
    send: Send, status: int, error: str, detail: str, *headers: tuple[bytes, bytes], field: str = "Authorization"
) -> None:
    """A JSON refusal naming the field; the connection closes, so a body still on its way is not read."""
    content = orjson.dumps({"error": error, "detail": detail, "field": field})
    start_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(content)).encode()),
        (b"connection", b"close"),
        *headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": start_headers})
    await send({"type": "http.response.body", "body": content})
