"""The read-key gate in front of the query API: who may read the warehouse and how much they may send.

A pure ASGI layer around the whole app, so no route, docs page or metrics answer without it and
nothing of a body is read before the key is checked. Invariant: a request reaches the app only
from an address the wrong-key throttle lets through, with a read key whose SHA-256 is configured
(the Authorization header, or for GET/HEAD only the workspace's login cookie), and with a body of
at most its limit, which this layer has read and hands on; ``/healthz`` and the workspace's login
and logout are the routes without a key. FastAPI's own body parsing would read a body whole first.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from urllib.parse import parse_qs, quote, unquote_to_bytes

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clickhouse.settings import WarehouseSettings
from funnelstream.ratelimit import FailedKeyThrottle

OPEN_PATHS = frozenset({"/healthz"})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
"""Only these may carry a body; any other request's limit is zero bytes."""
COOKIE_METHODS = frozenset({"GET", "HEAD"})
"""The only methods a cookie authorizes: a browser sends cookies with forms of other sites too (CSRF)."""
READ_KEY_COOKIE = "fs_read_key"
PAGES = "/ui"
LOGIN_PATH = "/ui/login"
LOGOUT_PATH = "/ui/logout"
PAGES_HOME = "/ui/funnel"
LOGIN_BODY_BYTES = 4096
PAGE_HEADERS = (
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
)
"""On every answer under /ui: pages run only the project's own scripts, so data shown in them never runs."""


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
        path, method = scope["path"], scope["method"]
        if _under(path, PAGES):
            send = _with_headers(send, PAGE_HEADERS)
        if path == LOGOUT_PATH:
            await _redirect(send, LOGIN_PATH, _cookie_header(scope, "", clear=True))
            return
        if path == LOGIN_PATH and method == "POST":
            await self.login(scope, receive, send)
            return
        if path not in OPEN_PATHS and not (path == LOGIN_PATH and method in COOKIE_METHODS):
            client = _client(scope)
            if await self.refused_as_throttled(client, send):
                return
            key = _bearer(scope)
            from_cookie = key is None and method in COOKIE_METHODS
            if from_cookie:
                key = _cookie(scope)
            if key is None or not self.knows(key):
                if key is not None:
                    self.throttle.charge(client)
                if method in COOKIE_METHODS and _is_page(path):
                    # A person at a browser: to the login form, which brings them back here.
                    stale = (_cookie_header(scope, "", clear=True),) if from_cookie and key is not None else ()
                    await _redirect(send, f"{LOGIN_PATH}?next={quote(_target(scope), safe='')}", *stale)
                    return
                detail = "unknown read key" if key else "missing read key: send Authorization: Bearer <read key>"
                await _refuse(send, 401, "unauthorized", detail, (b"www-authenticate", b"Bearer"))
                return
        limit = self.max_body_bytes if method in BODY_METHODS else 0
        try:
            body = await _read_body(scope, receive, limit)
        except _ClientGone:
            return
        if body is None:
            await _refuse(send, 413, "payload_too_large", f"request body over {limit} bytes", field="body")
            return
        await self.app(scope, _replay(body, receive), send)

    async def refused_as_throttled(self, client: str, send: Send) -> bool:
        """A 429 while ``client`` has spent its wrong keys, whatever key it sends now; True if refused."""
        wait_s = self.throttle.wait_s(client)
        if wait_s <= 0:
            return False
        retry_after = (b"retry-after", str(math.ceil(wait_s)).encode())
        await _refuse(send, 429, "rate_limited", "too many wrong read keys from this address", retry_after)
        return True

    async def login(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The login form's POST: a known key sets the cookie and goes on to ``next``; a wrong one is charged."""
        client = _client(scope)
        if await self.refused_as_throttled(client, send):
            return
        try:
            body = await _read_body(scope, receive, LOGIN_BODY_BYTES)
        except _ClientGone:
            return
        if body is None:
            await _refuse(send, 413, "payload_too_large", f"login form over {LOGIN_BODY_BYTES} bytes", field="body")
            return
        form = parse_qs(body.decode("utf-8", errors="replace"), max_num_fields=8)
        target = safe_next(form.get("next", [""])[0])
        # As a header would carry it: the key's UTF-8 bytes, one latin-1 character each.
        key = form.get("key", [""])[0].encode("utf-8").decode("latin-1")
        if not key or not self.knows(key):
            if key:
                self.throttle.charge(client)
            await _redirect(send, f"{LOGIN_PATH}?failed=1&next={quote(target, safe='')}")
            return
        await _redirect(send, target, _cookie_header(scope, key))


def safe_next(target: str) -> str:
    """``target`` when it is a page of this workspace (a local ``/ui`` path), else the workspace's home."""
    # Printable ASCII only (a browser sends the rest percent-encoded): no backslash, space or control
    # character that some client would read as another host, and no step out of /ui.
    local = _under(target, PAGES) and ".." not in target
    if len(target) > 2000 or not local or any(c == "\\" or not "!" <= c <= "~" for c in target):
        return PAGES_HOME
    return target


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith((prefix + "/", prefix + "?", prefix + "#"))


def _is_page(path: str) -> bool:
    return _under(path, PAGES) and not path.startswith(PAGES + "/static/")


def _client(scope: Scope) -> str:
    return scope["client"][0] if scope.get("client") else ""


def _target(scope: Scope) -> str:
    path: str = scope["path"]
    query = scope.get("query_string", b"").decode("latin-1")
    return path + (f"?{query}" if query else "")


def _cookie(scope: Scope) -> str | None:
    """The read key of the login cookie (percent-encoded bytes, as ``_cookie_header`` wrote them)."""
    for name, value in scope["headers"]:
        if name == b"cookie":
            for pair in value.decode("latin-1").split(";"):
                cookie, _, text = pair.strip().partition("=")
                if cookie == READ_KEY_COOKIE and text:
                    return unquote_to_bytes(text).decode("latin-1")
    return None


def _cookie_header(scope: Scope, key: str, *, clear: bool = False) -> tuple[bytes, bytes]:
    value = quote(key.encode("latin-1"), safe="")
    attributes = "Path=/; HttpOnly; SameSite=Strict" + ("; Secure" if scope.get("scheme") == "https" else "")
    if clear:
        attributes += "; Max-Age=0"
    return b"set-cookie", f"{READ_KEY_COOKIE}={value}; {attributes}".encode("latin-1")


def _with_headers(send: Send, headers: tuple[tuple[bytes, bytes], ...]) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            present = {name.lower() for name, _ in message.get("headers", [])}
            added = [header for header in headers if header[0] not in present]
            message = {**message, "headers": [*message.get("headers", []), *added]}
        await send(message)

    return sending


async def _redirect(send: Send, location: str, *headers: tuple[bytes, bytes]) -> None:
    """303 See Other: the browser follows it with a GET, whatever the request was."""
    start_headers = [(b"location", location.encode("latin-1")), (b"content-length", b"0"), *headers]
    await send({"type": "http.response.start", "status": 303, "headers": start_headers})
    await send({"type": "http.response.body", "body": b""})


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
