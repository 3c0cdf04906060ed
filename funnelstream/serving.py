"""What a service's HTTP server lets one connection do: uvicorn's httptools protocol with limits.

Owns the connection limits every service's server applies before its app sees a request (head and
body read timeouts, answered 408; head size and header count, 431; keep-alive) and the options that
give them to ``uvicorn.run``. Invariant: a connection that sends too slowly or too much is answered
and closed by the protocol, so no app, middleware or route has to guard against it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """What one connection may send, and how slowly; each service sets them from its own settings."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_header_bytes: int = 16_384
    max_header_count: int = 64
    keep_alive_timeout_s: int = 5


class _Refused(Exception):
    """Stops the parser inside a callback once the connection has been answered and closed."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with limits it does not have.

    - A request's line and headers must arrive within ``header_timeout_s`` of its first byte (of
      the connection being opened, for the first one), its body within ``body_timeout_s`` after
      them: else 408 and the connection is closed. Without this a sender of one byte a second
      held a connection (and its buffers) for as long as it liked.
    - At most ``max_header_bytes`` of request line and headers and ``max_header_count`` headers:
      else 431 and closed. Counted as bytes arrive too, so a header that never ends is cut when
      it passes the limit instead of being buffered whole by the parser.
    ``limits`` is set on a subclass made by :func:`guarded_protocol`.
    """

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._in_head = True
        self._head_bytes = 0
        self._head_received = 0
        self._head_count = 0
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.limits.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head:
            self._head_received += len(data)
        super().data_received(data)
        # Bytes of a head still incomplete: the parser would keep them all until it ends.
        if self._in_head and not self._refused and self._head_received > self.limits.max_header_bytes:
            self._refuse(431, "request headers too large")

    def send_400_response(self, msg: str) -> None:
        if not self._refused:
            super().send_400_response(msg)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = self._head_count = 0
        self._arm(self.limits.header_timeout_s)

    def on_url(self, url: bytes) -> None:
        self._head_bytes += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        self._head_count += 1
        if self._head_count > self.limits.max_header_count:
            self._refuse(431, "too many request headers")
            raise _Refused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._head_bytes > self.limits.max_header_bytes:
            self._refuse(431, "request headers too large")
            raise _Refused
        self._in_head = False
        self._head_received = 0
        self._arm(self.limits.body_timeout_s)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._in_head = True
        super().on_message_complete()

    def _arm(self, timeout_s: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(timeout_s, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._in_head:
            self._refuse(408, "request headers not received in time")
        elif self.cycle is not None and not self.cycle.response_started:
            # The handler waiting for the body sees a disconnect; what it answers is dropped.
            self._refuse(408, "request body not received in time")
        else:
            self.transport.close()

    def _refuse(self, status: int, reason: str) -> None:
        self._refused = True
        self._disarm()
        body = reason.encode()
        self.transport.write(
            STATUS_LINE[status]
            + b"content-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
            + b"content-length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
        self.transport.close()


def guarded_protocol(
    limits: ConnectionLimits, base: type[HttpToolsProtocol] = HttpToolsProtocol
) -> type[GuardedHttpToolsProtocol]:
    """The protocol class uvicorn is given (it takes a class, not an instance): the limits over
    ``base``, a subclass of uvicorn's protocol that a service may have for its own reasons."""
    bases = (GuardedHttpToolsProtocol,) if base is HttpToolsProtocol else (GuardedHttpToolsProtocol, base)
    return type(f"Guarded{base.__name__}", bases, {"limits": limits})


def uvicorn_options(limits: ConnectionLimits, base: type[HttpToolsProtocol] = HttpToolsProtocol) -> dict[str, Any]:
    """The ``uvicorn.run`` keyword arguments that put ``limits`` on every connection."""
    return {"http": guarded_protocol(limits, base), "timeout_keep_alive": limits.keep_alive_timeout_s}
